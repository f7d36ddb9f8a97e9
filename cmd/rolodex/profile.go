package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

// cmdProfile is "rolodex profile get" and "rolodex profile lookup" (what
// is get or lookup).
func cmdProfile(ctx context.Context, what string, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("profile "+what, stdout, stderr)
	api := fs.String("api", "http://127.0.0.1:8080", "base URL of the query API")
	key := fs.String("key", os.Getenv("ROLODEX_KEY"), "partner bearer key (default $ROLODEX_KEY)")
	pos, err := fs.parseInterleaved(args)
	if err != nil {
		return err
	}
	var path string
	switch {
	case what == "get" && len(pos) == 1:
		path = "/v1/profiles/" + url.PathEscape(pos[0])
	case what == "lookup" && len(pos) == 2:
		path = "/v1/lookup?" + url.Values{"type": {pos[0]}, "value": {pos[1]}}.Encode()
	default:
		c, _ := findCommand(fs.Name())
		return usageError{fmt.Sprintf("usage: rolodex %s %s", c.name, c.args)}
	}
	if *key == "" {
		return usageError{"profile: --key (or $ROLODEX_KEY) is required"}
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(*api, "/")+path, nil)
	if err != nil {
		return usageError{"profile: " + err.Error()}
	}
	req.Header.Set("Authorization", "Bearer "+*key)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("profile: %w", err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		return fmt.Errorf("profile: %w", err)
	}
	if res.StatusCode != http.StatusOK {
		var e struct{ Error, Message string }
		if json.Unmarshal(body, &e) == nil && e.Message != "" {
			return fmt.Errorf("profile: %s (%d %s)", e.Message, res.StatusCode, e.Error)
		}
		return fmt.Errorf("profile: %s", res.Status)
	}
	var out bytes.Buffer
	if err := json.Indent(&out, body, "", "  "); err != nil {
		out.Write(body)
	}
	_, err = stdout.Write(bytes.TrimRight(out.Bytes(), "\n"))
	fmt.Fprintln(stdout)
	return err
}
