package main

// The tag-rule commands: rolodex rules apply, list and delete, clients of
// the tag-rule API (docs/tags.md, "Rules: API, storage, CLI").

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"

	"gopkg.in/yaml.v3"
)

// addAdminAPIFlags adds --api and --key, as the profile commands have
// them, for a key with the scope admin.
func addAdminAPIFlags(fs *flagSet) (api, key *string) {
	api = fs.String("api", "http://127.0.0.1:8080", "base URL of the API (rolodex run api, or dev)")
	key = fs.String("key", os.Getenv("ROLODEX_KEY"), "partner bearer key with the scope admin (default $ROLODEX_KEY)")
	return api, key
}

// applyCommand parses the flags of an apply command (rules apply,
// routing apply): --api, --key (admin) and -f, which is required, and no
// argument; it returns the API client and the file.
func applyCommand(name, fileHelp string, args []string, stdout, stderr io.Writer) (*apiClient, string, error) {
	fs := newFlagSet(name, stdout, stderr)
	api, key := addAdminAPIFlags(fs)
	file := fs.String("f", "", fileHelp)
	pos, err := fs.parseInterleaved(args)
	if err != nil {
		return nil, "", err
	}
	if len(pos) != 0 || *file == "" {
		c, _ := findCommand(name)
		return nil, "", usageError{fmt.Sprintf("usage: rolodex %s %s", c.name, c.args)}
	}
	cl, err := newAPIClient(name, *api, *key)
	return cl, *file, err
}

// ruleFile is one rule of a rules file.
type ruleFile struct {
	ID          string `yaml:"id"`
	Tag         string `yaml:"tag"`
	Condition   string `yaml:"condition"`
	Description string `yaml:"description"`
	Enabled     *bool  `yaml:"enabled"`
}

// tagRule is a rule as the API answers it.
type tagRule struct {
	ID          string `json:"id"`
	Tag         string `json:"tag"`
	Condition   string `json:"condition"`
	Description string `json:"description"`
	Enabled     bool   `json:"enabled"`
	Version     int64  `json:"version"`
	UpdatedAt   string `json:"updated_at"`
	Change      string `json:"change"`
}

// readRulesFile reads a YAML list of rules; every rule needs an id, once.
func readRulesFile(path string) ([]ruleFile, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	var rs []ruleFile
	if err := dec.Decode(&rs); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%s: no rules (want a YAML list of {id, tag, condition, description, enabled})", path)
		}
		return nil, fmt.Errorf("%s: want a YAML list of {id, tag, condition, description, enabled}: %w", path, err)
	}
	seen := map[string]int{}
	for i, r := range rs {
		if r.ID == "" {
			return nil, fmt.Errorf("%s: rule %d has no id", path, i+1)
		}
		if j, dup := seen[r.ID]; dup {
			return nil, fmt.Errorf("%s: rules %d and %d both have the id %q", path, j+1, i+1, r.ID)
		}
		seen[r.ID] = i
	}
	if len(rs) == 0 {
		return nil, fmt.Errorf("%s: no rules", path)
	}
	return rs, nil
}

// cmdRulesApply is "rolodex rules apply -f rules.yaml": PUT each rule,
// print what each did; a refused rule does not stop the others, but the
// command fails.
func cmdRulesApply(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	const name = "rules apply"
	cl, file, err := applyCommand(name, "the rules file: a YAML list of {id, tag, condition, description, enabled}", args, stdout, stderr)
	if err != nil {
		return err
	}
	rs, err := readRulesFile(file)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	failed := 0
	for _, r := range rs {
		body := map[string]any{"tag": r.Tag, "condition": r.Condition, "description": r.Description}
		if r.Enabled != nil {
			body["enabled"] = *r.Enabled
		}
		var out tagRule
		err := cl.call(ctx, http.MethodPut, "/v1/tag-rules/"+url.PathEscape(r.ID), body, &out)
		var ae *apiError
		switch {
		case err == nil:
			fmt.Fprintf(stdout, "%s: %s (version %d)\n", r.ID, out.Change, out.Version)
			continue
		case errors.As(err, &ae) && ae.body.Error == "invalid_condition":
			fmt.Fprintf(stdout, "%s: refused: %s at line %d, column %d: %s\n", r.ID, ae.body.Reason, ae.body.Line, ae.body.Column, ae.body.Message)
		case errors.As(err, &ae) && ae.status/100 == 4 && ae.body.Message != "":
			fmt.Fprintf(stdout, "%s: refused: %s (%d %s)\n", r.ID, ae.body.Message, ae.status, ae.body.Error)
		default:
			fmt.Fprintf(stdout, "%s: failed: %v\n", r.ID, err)
		}
		failed++
	}
	if failed > 0 {
		return fmt.Errorf("%s: %d of %d rules not applied (the others were)", name, failed, len(rs))
	}
	return nil
}

// cmdRulesList is "rolodex rules list".
func cmdRulesList(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	const name = "rules list"
	fs := newFlagSet(name, stdout, stderr)
	api, key := addAdminAPIFlags(fs)
	pos, err := fs.parseInterleaved(args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return usageError{fmt.Sprintf("%s: unexpected argument %q", name, pos[0])}
	}
	cl, err := newAPIClient(name, *api, *key)
	if err != nil {
		return err
	}
	var list struct {
		Rules []tagRule `json:"rules"`
	}
	if err := cl.call(ctx, http.MethodGet, "/v1/tag-rules", nil, &list); err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tTAG\tENABLED\tVERSION\tCONDITION")
	for _, r := range list.Rules {
		fmt.Fprintf(tw, "%s\t%s\t%v\t%d\t%s\n", r.ID, r.Tag, r.Enabled, r.Version, strings.Join(strings.Fields(r.Condition), " "))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%d rules\n", len(list.Rules))
	return nil
}

// cmdRulesDelete is "rolodex rules delete ID".
func cmdRulesDelete(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	const name = "rules delete"
	fs := newFlagSet(name, stdout, stderr)
	api, key := addAdminAPIFlags(fs)
	pos, err := fs.parseInterleaved(args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		c, _ := findCommand(name)
		return usageError{fmt.Sprintf("usage: rolodex %s %s", c.name, c.args)}
	}
	cl, err := newAPIClient(name, *api, *key)
	if err != nil {
		return err
	}
	if err := cl.call(ctx, http.MethodDelete, "/v1/tag-rules/"+url.PathEscape(pos[0]), nil, nil); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "rule %s deleted\n", pos[0])
	return nil
}
