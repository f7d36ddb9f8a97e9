package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// cliEnv returns write, which writes a file into a fresh directory and
// returns its path, and rolodex, which runs a command against the API at
// api with the demo key (errOut: stderr and the error main would print).
func cliEnv(t *testing.T, api string) (write func(name, body string) string, rolodex func(args ...string) (out, errOut string, code int)) {
	dir := t.TempDir()
	write = func(name, body string) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	rolodex = func(args ...string) (out, errOut string, code int) {
		t.Helper()
		var stdout, stderr bytes.Buffer
		err := run(context.Background(), append(args, "--api", api, "--key", "demo-key"), &stdout, &stderr)
		if err != nil {
			errOut = err.Error()
		}
		return stdout.String(), stderr.String() + errOut, exitCode(err)
	}
	return write, rolodex
}

// The rules commands against dev mode (the real API and rule store on the
// embedded broker): apply creates, updates and leaves unchanged, prints
// each rule's version, and reports a refused condition with its reason
// and position after trying every rule; list and delete.
func TestRulesCommands(t *testing.T) {
	write, rolodex := cliEnv(t, startDev(t))
	first := write("rules.yaml", `
- id: hot-lead
  tag: hot-lead
  condition: 'events("page.viewed", duration("168h")) >= 3'
  description: 3 page views in 7 days
- id: broken
  tag: broken
  condition: 'traits.city == '
- id: campinas
  tag: campinas
  condition: 'has(traits.city) && traits.city == "Campinas" && "email" in channels'
  enabled: false
`)
	out, errOut, code := rolodex("rules", "apply", "-f", first)
	for _, want := range []string{
		"hot-lead: created (version 1)\n",
		"broken: refused: syntax at line 1, column 16: ",
		"campinas: created (version 1)\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("apply: stdout lacks %q:\n%s", want, out)
		}
	}
	if code != 1 || !strings.Contains(errOut, "1 of 3 rules not applied") {
		t.Fatalf("apply with a refused rule: exit %d, stderr %q", code, errOut)
	}

	out, _, code = rolodex("rules", "list")
	if code != 0 || !strings.Contains(out, "campinas  campinas  false    1") || !strings.Contains(out, "hot-lead  hot-lead  true     1") ||
		strings.Contains(out, "broken") || !strings.HasSuffix(out, "2 rules\n") || strings.Index(out, "campinas") > strings.Index(out, "hot-lead") {
		t.Fatalf("list: exit %d:\n%s", code, out)
	}

	second := write("rules2.yaml", `
- id: hot-lead
  tag: hot-lead
  condition: 'events("page.viewed", duration("168h")) >= 5'
- id: campinas
  tag: campinas
  condition: 'has(traits.city) && traits.city == "Campinas" && "email" in channels'
  enabled: false
`)
	out, errOut, code = rolodex("rules", "apply", "-f", second)
	if code != 0 || out != "hot-lead: updated (version 2)\ncampinas: unchanged (version 1)\n" {
		t.Fatalf("apply again: exit %d, stderr %q, stdout:\n%s", code, errOut, out)
	}

	if out, errOut, code = rolodex("rules", "delete", "hot-lead"); code != 0 || out != "rule hot-lead deleted\n" {
		t.Fatalf("delete: exit %d, stderr %q, stdout %q", code, errOut, out)
	}
	if _, errOut, code = rolodex("rules", "delete", "hot-lead"); code != 1 || !strings.Contains(errOut, "no rule hot-lead in this tenant (404 not_found)") {
		t.Fatalf("delete again: exit %d, stderr %q", code, errOut)
	}
	if out, _, _ = rolodex("rules", "list"); strings.Contains(out, "hot-lead") || !strings.HasSuffix(out, "1 rules\n") {
		t.Fatalf("list after the delete:\n%s", out)
	}
	// Applied again after the delete, the rule's count goes on.
	if out, _, code = rolodex("rules", "apply", "-f", second); code != 0 || !strings.Contains(out, "hot-lead: created (version 4)\n") {
		t.Fatalf("apply after the delete: exit %d:\n%s", code, out)
	}

	// A file the command cannot read sends nothing.
	for _, tt := range []struct{ body, want string }{
		{"- id: a\n  tag: a\n  condition: 'true'\n- id: a\n  tag: b\n  condition: 'true'\n", `rules 1 and 2 both have the id "a"`},
		{"- id: a\n  tag: a\n  conditon: 'true'\n", "field conditon not found"},
		{"- tag: a\n  condition: 'true'\n", "rule 1 has no id"},
		{"", "no rules"},
	} {
		_, errOut, code := rolodex("rules", "apply", "-f", write("bad.yaml", tt.body))
		if code != 1 || !strings.Contains(errOut, tt.want) {
			t.Errorf("apply %q: exit %d, stderr %q, want %q", tt.body, code, errOut, tt.want)
		}
	}
	if _, _, code := rolodex("rules", "apply"); code != 2 {
		t.Errorf("apply without -f: exit %d, want 2", code)
	}
	if _, _, code := rolodex("rules", "delete"); code != 2 {
		t.Errorf("delete without an id: exit %d, want 2", code)
	}
}
