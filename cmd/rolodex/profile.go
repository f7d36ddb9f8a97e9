package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// getAndPrint GETs path of the API at api with key and prints the JSON
// answer indented; what names the command in errors. An error answer
// becomes an error with its message and code.
func getAndPrint(ctx context.Context, what, api, key, path string, stdout io.Writer) error {
	if key == "" {
		return usageError{what + ": --key (or $ROLODEX_KEY) is required"}
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(api, "/")+path, nil)
	if err != nil {
		return usageError{what + ": " + err.Error()}
	}
	req.Header.Set("Authorization", "Bearer "+key)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if res.StatusCode != http.StatusOK {
		var e struct{ Error, Message string }
		if json.Unmarshal(body, &e) == nil && e.Message != "" {
			return fmt.Errorf("%s: %s (%d %s)", what, e.Message, res.StatusCode, e.Error)
		}
		return fmt.Errorf("%s: %s", what, res.Status)
	}
	var out bytes.Buffer
	if err := json.Indent(&out, body, "", "  "); err != nil {
		out.Write(body)
	}
	_, err = stdout.Write(bytes.TrimRight(out.Bytes(), "\n"))
	fmt.Fprintln(stdout)
	return err
}
