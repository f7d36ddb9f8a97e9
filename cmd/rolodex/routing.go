package main

// The routing commands: rolodex routing apply and get, clients of the
// routing-rule API, and rolodex lead get (docs/routing.md, "Rules" and
// "Lead states").

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"

	"gopkg.in/yaml.v3"
)

// routingFile is a routing rules file: the tenant's whole ordered list
// under rules:, each rule as PUT /v1/routing/rules takes it (the API
// checks the fields).
type routingFile struct {
	Rules []map[string]any `yaml:"rules"`
}

// readRoutingFile reads a routing rules file.
func readRoutingFile(path string) ([]map[string]any, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	var f routingFile
	if err := dec.Decode(&f); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%s: empty (want rules: a list of {id, condition, strategy, pool, ...})", path)
		}
		return nil, fmt.Errorf("%s: want rules: a list of {id, condition, strategy, pool, ...}: %w", path, err)
	}
	if f.Rules == nil {
		return nil, fmt.Errorf("%s: rules: is missing or null (write rules: [] to remove every rule)", path)
	}
	return f.Rules, nil
}

// cmdRoutingApply is "rolodex routing apply -f routing.yaml": PUT the
// file's list as the tenant's whole list and print its new version.
func cmdRoutingApply(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	const name = "routing apply"
	cl, file, err := applyCommand(name, "the routing rules file: rules: an ordered list of {id, condition, strategy, pool, cap_per_day, outside_hours, consent, sla, max_reroutes, fallback}",
		args, stdout, stderr)
	if err != nil {
		return err
	}
	rs, err := readRoutingFile(file)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	var out struct {
		Version int64 `json:"version"`
		Rules   []any `json:"rules"`
	}
	if err := cl.call(ctx, http.MethodPut, "/v1/routing/rules", map[string]any{"rules": rs}, &out); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "routing rules: version %d (%d rules)\n", out.Version, len(out.Rules))
	return nil
}

// getCommand is a command that GETs one path of the API, made of its
// nargs arguments, and prints the JSON answer: profile get and lookup,
// message get, lead get, routing get.
func getCommand(ctx context.Context, name, what string, nargs int, path func(args []string) string, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet(name, stdout, stderr)
	api := fs.String("api", "http://127.0.0.1:8080", "base URL of the query API")
	key := fs.String("key", os.Getenv("ROLODEX_KEY"), "partner bearer key (default $ROLODEX_KEY)")
	pos, err := fs.parseInterleaved(args)
	if err != nil {
		return err
	}
	if len(pos) != nargs {
		c, _ := findCommand(name)
		return usageError{fmt.Sprintf("usage: rolodex %s %s", c.name, c.args)}
	}
	return getAndPrint(ctx, what, *api, *key, path(pos), stdout)
}

// byID is the path prefix plus the one argument, escaped.
func byID(prefix string) func([]string) string {
	return func(args []string) string { return prefix + url.PathEscape(args[0]) }
}
