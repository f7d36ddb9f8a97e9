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
	return getAndPrint(ctx, "profile", *api, *key, path, stdout)
}

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

// cmdMessageGet is "rolodex message get ID".
func cmdMessageGet(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("message get", stdout, stderr)
	api := fs.String("api", "http://127.0.0.1:8080", "base URL of the query API")
	key := fs.String("key", os.Getenv("ROLODEX_KEY"), "partner bearer key (default $ROLODEX_KEY)")
	pos, err := fs.parseInterleaved(args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		c, _ := findCommand(fs.Name())
		return usageError{fmt.Sprintf("usage: rolodex %s %s", c.name, c.args)}
	}
	return getAndPrint(ctx, "message", *api, *key, "/v1/messages/"+url.PathEscape(pos[0]), stdout)
}
