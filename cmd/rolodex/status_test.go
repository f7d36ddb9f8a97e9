package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// startDev runs "rolodex dev" in this process on its embedded broker and
// returns the base URL of its HTTP API.
func startDev(t *testing.T) string {
	t.Helper()
	api, _ := startDevKafka(t)
	return api
}

// startDevKafka is startDev that also returns the embedded broker's
// address (host:port).
func startDevKafka(t *testing.T) (api, kafka string) {
	t.Helper()
	return startDevArgs(t)
}

// startDevArgs is startDevKafka with more arguments for dev mode (a
// --config).
func startDevArgs(t *testing.T, args ...string) (api, kafka string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	found := make(chan struct{})
	stdout := &signalWriter{want: "\nTry:", found: found}
	var stderr signalWriter
	done := make(chan error, 1)
	// The data dir is made before the cleanup below is registered, so that
	// it is removed after dev mode stopped (cleanups run last first).
	data := t.TempDir()
	go func() {
		done <- run(ctx, append([]string{"dev", "--broker-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--data-dir", data}, args...), stdout, &stderr)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(time.Minute):
			t.Error("dev did not stop within a minute")
		}
	})
	select {
	case <-found:
	case err := <-done:
		t.Fatalf("dev stopped before it was up: %v\n%s\n%s", err, stdout, stderr.String())
	case <-time.After(2 * time.Minute):
		t.Fatalf("dev not up after 2 minutes:\n%s\n%s", stdout, stderr.String())
	}
	_, rest, _ := strings.Cut(stdout.String(), "HTTP:    http://")
	addr, _, _ := strings.Cut(rest, " ")
	_, rest, _ = strings.Cut(stdout.String(), "Kafka:   ")
	kafka, _, _ = strings.Cut(rest, "\n")
	return "http://" + addr, strings.TrimSpace(kafka)
}

// httpJSON sends a request with the demo key and decodes the JSON answer.
func httpJSON(t *testing.T, method, u, body string) (int, map[string]any) {
	t.Helper()
	return httpAs(t, "demo-key", method, u, body)
}

// eventually polls cond until it holds, for up to a minute.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after a minute, still not: %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// The status commands against dev mode (the real API, identity stage and
// view on the embedded broker): each change shows in the profile once the
// identity stage folded it.
func TestStatusCommands(t *testing.T) {
	api := startDev(t)
	for _, email := range []string{"ana@example.com", "bia@example.com"} {
		if code, body := httpJSON(t, "POST", api+"/v1/events", `{"id":"e-`+email+`","type":"signup","identifiers":{"email":"`+email+`"}}`); code != 202 {
			t.Fatalf("POST event: %d %v", code, body)
		}
	}
	// Before both profiles exist, a lookup may answer 404 (not folded yet)
	// or 503 (the views still loading); after, only 200: a view that
	// loaded once keeps answering (views.recoveredOnce).
	exist := false
	profileOf := func(email string) map[string]any {
		t.Helper()
		code, p := httpJSON(t, "GET", api+"/v1/lookup?type=email&value="+url.QueryEscape(email), "")
		if code != 200 {
			if exist || (code != 404 && code != 503) {
				t.Fatalf("lookup %s: %d %v", email, code, p)
			}
			return nil
		}
		return p
	}
	eventually(t, "both profiles exist", func() bool { return profileOf("ana@example.com") != nil && profileOf("bia@example.com") != nil })
	exist = true
	ana := profileOf("ana@example.com")["id"].(string)
	hasTag := func(p map[string]any, tag string) bool {
		for _, x := range p["tags"].([]any) {
			if x.(map[string]any)["tag"] == tag {
				return true
			}
		}
		return false
	}
	if !hasTag(profileOf("ana@example.com"), "new") {
		t.Fatalf("the default tag new is not on the profile: %v", profileOf("ana@example.com"))
	}
	rolodex := func(args ...string) (string, string, int) {
		t.Helper()
		return runInProcess(append(args, "--api", api, "--key", "demo-key")...)
	}
	ok := func(want string, args ...string) {
		t.Helper()
		out, errOut, code := rolodex(args...)
		if code != 0 || !strings.Contains(out, want) {
			t.Fatalf("rolodex %s: exit %d, stdout:\n%s\nstderr:\n%s\nwant stdout with %q", strings.Join(args, " "), code, out, errOut, want)
		}
	}

	ok("tag vip added: applied 1, not found 0\n", "tag", "add", "vip", "--lookup", "email=Ana@Example.com")
	csvFile := filepath.Join(t.TempDir(), "leads.csv")
	if err := os.WriteFile(csvFile, []byte("type,value\nemail,ana@example.com\nemail,bia@example.com\nemail,nobody@example.com\nemail,ana@\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ok("tag gold added: applied 2, not found 1, invalid 1\n  not found: row 3: email nobody@example.com\n  invalid:   row 4: email ana@ (", "tag", "add", "gold", "--file", csvFile)
	eventually(t, "ana has vip and gold, bia has gold", func() bool {
		a, b := profileOf("ana@example.com"), profileOf("bia@example.com")
		return hasTag(a, "vip") && hasTag(a, "gold") && hasTag(b, "gold") && !hasTag(b, "vip")
	})
	ok("tag vip removed: applied 1", "tag", "remove", "vip", "--profile", ana)
	eventually(t, "vip is off ana", func() bool { return !hasTag(profileOf("ana@example.com"), "vip") })

	ok("blacklisted: applied 1, not found 0", "blacklist", "add", "--profile", ana, "--reason", "asked to be left alone")
	eventually(t, "ana is blacklisted", func() bool { return profileOf("ana@example.com")["blacklisted"] == true })
	out, _, code := rolodex("blacklist", "list", "--limit", "1")
	if code != 0 || !strings.Contains(out, ana) || !strings.Contains(out, "asked to be left alone") || !strings.HasSuffix(out, "1 blacklisted profiles\n") {
		t.Fatalf("blacklist list: exit %d\n%s", code, out)
	}
	ok(ana+" removed from the blacklist", "blacklist", "remove", ana)
	eventually(t, "ana is off the blacklist", func() bool { return profileOf("ana@example.com")["blacklisted"] == false })
	out, _, _ = rolodex("blacklist", "list")
	if !strings.HasSuffix(out, "0 blacklisted profiles\n") {
		t.Fatalf("blacklist list after remove:\n%s", out)
	}

	ok("consent marketing of "+ana+": granted until ", "consent", "set", ana, "marketing", "granted", "--expires", "720h")
	eventually(t, "ana's marketing consent is granted", func() bool {
		c, _ := profileOf("ana@example.com")["consent"].(map[string]any)["marketing"].(map[string]any)
		return c != nil && c["status"] == "granted" && c["expires_at"] != nil
	})

	// Failures: exit 1 with the API's message, or 2 for a usage error.
	for _, tt := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"tag", "add", "vip", "--profile", "p_0000000000000000000000000a"}, 1, "no profile p_0000000000000000000000000a in this tenant"},
		{[]string{"tag", "add", "no spaces", "--profile", ana}, 1, "is not valid"},
		{[]string{"blacklist", "add", "--lookup", "email=nobody@example.com"}, 1, "no email nobody@example.com in this tenant"},
		{[]string{"blacklist", "remove", "p_0000000000000000000000000a"}, 1, "(404 not_found)"},
		{[]string{"consent", "set", ana, "marketing", "granted", "--expires", "2020-01-01T00:00:00Z"}, 1, "is not in the future (400 bad_request)"},
		{[]string{"tag", "add", "vip"}, 2, "which profiles?"},
		{[]string{"tag", "add", "vip", "--profile", ana, "--file", csvFile}, 2, "one of --profile, --lookup and --file"},
		{[]string{"tag", "add", "vip", "--lookup", "ana@example.com"}, 2, "want TYPE=VALUE"},
		{[]string{"blacklist", "add"}, 2, "which profile?"},
		{[]string{"consent", "set", ana, "marketing", "maybe"}, 2, "granted, denied or revoked"},
		{[]string{"consent", "set", ana, "marketing", "denied", "--expires", "720h"}, 2, "--expires goes only with granted"},
		{[]string{"consent", "set", ana, "marketing", "granted", "--expires", "soon"}, 2, "neither an RFC 3339 time"},
		{[]string{"blacklist", "list", "--limit", "0"}, 2, "from 1 to 1000"},
	} {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var outb, errb strings.Builder
			err := run(context.Background(), append(tt.args, "--api", api, "--key", "demo-key"), &outb, &errb)
			if exitCode(err) != tt.code || err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v (exit %d), want exit %d mentioning %q", err, exitCode(err), tt.code, tt.want)
			}
		})
	}
	// A key without profiles:write (dev's dealer-sp-key has events:write
	// only) is refused with the scope named; an unknown key is 401.
	for _, tt := range []struct{ key, want string }{
		{"dealer-sp-key", "this key lacks the scope profiles:write (403 forbidden)"},
		{"nobodys-key", "unknown partner key (401 unauthorized)"},
	} {
		var outb, errb strings.Builder
		err := run(context.Background(), []string{"tag", "add", "vip", "--profile", ana, "--api", api, "--key", tt.key}, &outb, &errb)
		if exitCode(err) != 1 || err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Fatalf("key %s: err = %v (exit %d), want exit 1 mentioning %q", tt.key, err, exitCode(err), tt.want)
		}
	}
}

// tag --file sends its rows in requests of 10,000 and numbers the rows it
// lists across requests; no key is a usage error.
func TestTagFileChunks(t *testing.T) {
	var mu sync.Mutex
	var sizes []int
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Action   string   `json:"action"`
			Profiles []string `json:"profiles"`
		}
		if r.URL.Path != "/v1/tags/vip" || r.Header.Get("Authorization") != "Bearer k-1" || json.NewDecoder(r.Body).Decode(&req) != nil || req.Action != "remove" {
			http.Error(w, `{"error":"bad_request","message":"unexpected request"}`, 400)
			return
		}
		mu.Lock()
		sizes = append(sizes, len(req.Profiles))
		mu.Unlock()
		// The last profile of every request is not found.
		last := len(req.Profiles) - 1
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(202)
		fmt.Fprintf(w, `{"applied":%d,"not_found":[{"index":%d,"profile":%q}]}`, last, last, req.Profiles[last])
	}))
	defer srv.Close()
	var b strings.Builder
	b.WriteString("name,profile_id\n")
	for i := 1; i <= 25000; i++ {
		fmt.Fprintf(&b, "n%d,p_%026d\n", i, i)
	}
	f := filepath.Join(t.TempDir(), "ids.csv")
	if err := os.WriteFile(f, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := runInProcess("tag", "remove", "vip", "--file", f, "--api", srv.URL, "--key", "k-1")
	want := fmt.Sprintf("tag vip removed: applied 24997, not found 3\n  not found: row 10000: profile p_%026d\n  not found: row 20000: profile p_%026d\n  not found: row 25000: profile p_%026d\n", 10000, 20000, 25000)
	if code != 0 || out != want {
		t.Fatalf("exit %d, stdout:\n%s\nwant:\n%s\nstderr: %s", code, out, want, errOut)
	}
	if fmt.Sprint(sizes) != "[10000 10000 5000]" {
		t.Fatalf("request sizes %v, want [10000 10000 5000]", sizes)
	}
	if strings.Contains(errOut, "tagging") {
		t.Fatalf("a progress bar drawn on stderr that is not a terminal:\n%s", errOut)
	}
	// On a terminal (stderr taken for one) the bar starts at 0 of the
	// file's rows and ends at all of them.
	isTerminal = func(io.Writer) bool { return true }
	defer func() { isTerminal = isTerminalFile }()
	out, errOut, code = runInProcess("tag", "remove", "vip", "--file", f, "--api", srv.URL, "--key", "k-1")
	if code != 0 || out != want {
		t.Fatalf("with the bar: exit %d, stdout:\n%s\nwant:\n%s\nstderr: %s", code, out, want, errOut)
	}
	if !strings.Contains(errOut, "\rtagging   0% |") || !strings.Contains(errOut, "(0/25000") || !strings.Contains(errOut, "100% |") ||
		!strings.Contains(errOut, "(25000/25000") || !strings.HasSuffix(errOut, "\n") {
		t.Fatalf("the progress bar on stderr:\n%q", errOut)
	}
	isTerminal = isTerminalFile
	t.Setenv("ROLODEX_KEY", "")
	if _, _, code := runInProcess("tag", "remove", "vip", "--file", f, "--api", srv.URL); code != 2 {
		t.Fatalf("no key: exit %d, want 2", code)
	}
	bad := filepath.Join(t.TempDir(), "bad.csv")
	if err := os.WriteFile(bad, []byte("email\nana@example.com\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, code := runInProcess("tag", "remove", "vip", "--file", bad, "--api", srv.URL, "--key", "k-1"); code != 1 {
		t.Fatalf("a file without profile_id or type,value: exit %d, want 1", code)
	}
}

// The export's bar (drawn by profiles export on a terminal) counts
// profiles from 0 to the total ClickHouse counted, and ends its line.
func TestExportBar(t *testing.T) {
	var b strings.Builder
	bar := newExportBar(&b, 1200)
	if !strings.Contains(b.String(), "\rexporting   0% |") || !strings.Contains(b.String(), "(0/1200") {
		t.Fatalf("blank state: %q", b.String())
	}
	for range 1200 {
		if err := bar.Add(1); err != nil {
			t.Fatal(err)
		}
	}
	endBar(bar, nil)
	if s := b.String(); !strings.Contains(s, "100% |") || !strings.Contains(s, "(1200/1200") || !strings.Contains(s, "profiles") || !strings.HasSuffix(s, "\n") {
		t.Fatalf("finished: %q", s)
	}
}
