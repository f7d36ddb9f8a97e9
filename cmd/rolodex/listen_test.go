package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rolodex/rolodex/internal/stdwebhooks"
)

const listenSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

// listenRun is a "rolodex webhooks listen" running in this process.
type listenRun struct {
	url            string
	stdout, stderr *syncBuffer
	done           chan struct{} // closed when the command returned err
	err            error
	cancel         context.CancelFunc
}

// wait returns the command's error once it returned, or fails the test
// after d.
func (l *listenRun) wait(t *testing.T, d time.Duration, what string) error {
	t.Helper()
	select {
	case <-l.done:
		return l.err
	case <-time.After(d):
		t.Fatalf("webhooks listen: %s; stderr:\n%s", what, l.stderr.String())
	}
	return nil
}

// startListen runs "rolodex webhooks listen --addr 127.0.0.1:0 args..."
// and waits until it says where it listens.
func startListen(t *testing.T, args ...string) *listenRun {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	l := &listenRun{stdout: &syncBuffer{}, stderr: &syncBuffer{}, done: make(chan struct{}), cancel: cancel}
	go func() {
		l.err = run(ctx, append([]string{"webhooks", "listen", "--addr", "127.0.0.1:0"}, args...), l.stdout, l.stderr)
		close(l.done)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-l.done:
		case <-time.After(10 * time.Second):
			t.Error("webhooks listen did not stop")
		}
	})
	on := regexp.MustCompile(`on (http://127\.0\.0\.1:\d+/)`)
	deadline := time.Now().Add(5 * time.Second)
	for {
		if m := on.FindStringSubmatch(l.stderr.String()); m != nil {
			l.url = m[1]
			return l
		}
		select {
		case <-l.done:
			t.Fatalf("webhooks listen exited: %v; stderr:\n%s", l.err, l.stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("webhooks listen did not start; stderr:\n%s", l.stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// post sends body as webhook id, signed with secret at ts; sig, when
// set, replaces the signature.
func (l *listenRun) post(t *testing.T, secret, id string, ts time.Time, body, sig string) int {
	t.Helper()
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodPost, l.url+"hooks", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if sig == "" {
		sig = stdwebhooks.Sign(key, id, ts, []byte(body))
	}
	req.Header.Set("webhook-id", id)
	req.Header.Set("webhook-timestamp", strconv.FormatInt(ts.Unix(), 10))
	req.Header.Set("webhook-signature", sig)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	return res.StatusCode
}

func TestWebhooksListen(t *testing.T) {
	now := time.Now()
	const other = "whsec_" + "YbKYtJjFQOYNYlxDDh3Tg7Mv/Q8X0j2R7DMz0GMJoLo="
	l := startListen(t, "--secret", listenSecret)
	steps := []struct {
		name, secret, id string
		ts               time.Time
		body, sig        string
		status           int
		stdout, stderr   string // what the step adds
	}{
		{"good", listenSecret, "sub_1.e-1", now, `{"b": 1,  "a": [1, 2]}`, "", 200, "sub_1.e-1 {\"b\":1,\"a\":[1,2]}\n", ""},
		{"another secret", other, "sub_1.e-2", now, `{"x":1}`, "", 401, "", `"sub_1.e-2"): signature: no matching signature`},
		{"no v1 signature", listenSecret, "sub_1.e-3", now, `{"x":1}`, "v2,abc", 401, "", "no v1 entry"},
		{"too old", listenSecret, "sub_1.e-4", now.Add(-6 * time.Minute), `{"x":1}`, "", 401, "", "old, more than the 5m0s tolerance"},
		{"in the future", listenSecret, "sub_1.e-5", now.Add(6 * time.Minute), `{"x":1}`, "", 401, "", "in the future"},
		{"duplicate", listenSecret, "sub_1.e-1", now, `{"b": 1,  "a": [1, 2]}`, "", 200, "sub_1.e-1 duplicate\n", ""},
		{"not JSON", listenSecret, "sub_1.e-6", now, "plain text", "", 200, "sub_1.e-6 \"plain text\"\n", "the body is not JSON"},
	}
	for _, s := range steps {
		out0, err0 := l.stdout.String(), l.stderr.String()
		if code := l.post(t, s.secret, s.id, s.ts, s.body, s.sig); code != s.status {
			t.Fatalf("%s: answered %d, want %d; stderr:\n%s", s.name, code, s.status, l.stderr.String())
		}
		if got := strings.TrimPrefix(l.stdout.String(), out0); got != s.stdout {
			t.Fatalf("%s: printed %q, want %q", s.name, got, s.stdout)
		}
		if got := strings.TrimPrefix(l.stderr.String(), err0); !strings.Contains(got, s.stderr) || (s.stderr == "") != (got == "") {
			t.Fatalf("%s: stderr %q, want it to say %q", s.name, got, s.stderr)
		}
	}
	// Not a POST.
	res, err := http.Get(l.url)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 405 {
		t.Fatalf("GET: %d", res.StatusCode)
	}
	// Ctrl-C: exits without an error.
	l.cancel()
	if err := l.wait(t, 10*time.Second, "did not stop after Ctrl-C"); err != nil {
		t.Fatalf("after Ctrl-C: %v", err)
	}
}

// --status answers every new verified request with that status, so a
// sender retries: each retry prints again (it is not a duplicate of one
// accepted), and --once counts distinct ids, whatever the answer.
func TestWebhooksListenStatusAndOnce(t *testing.T) {
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "hook.secret")
	if err := os.WriteFile(secretFile, []byte(listenSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	l := startListen(t, "--secret-file", secretFile, "--status", "500", "--once", "2")
	now := time.Now()
	for i, id := range []string{"s.e-1", "s.e-1", "s.e-1"} {
		if code := l.post(t, listenSecret, id, now, `{"n":`+strconv.Itoa(i)+`}`, ""); code != 500 {
			t.Fatalf("request %d: %d", i, code)
		}
	}
	select {
	case <-l.done:
		t.Fatalf("exited after one distinct id: %v", l.err)
	case <-time.After(100 * time.Millisecond):
	}
	if code := l.post(t, listenSecret, "s.e-2", now, `{"n":3}`, ""); code != 500 {
		t.Fatalf("second id: %d", code)
	}
	if err := l.wait(t, 10*time.Second, "--once 2: still running after two distinct ids"); err != nil {
		t.Fatal(err)
	}
	if want := "s.e-1 {\"n\":0}\ns.e-1 {\"n\":1}\ns.e-1 {\"n\":2}\ns.e-2 {\"n\":3}\n"; l.stdout.String() != want {
		t.Fatalf("stdout %q, want %q", l.stdout.String(), want)
	}
	if n := strings.Count(l.stderr.String(), "answered 500 (--status)"); n != 4 {
		t.Fatalf("stderr notes %d answers of 500, want 4:\n%s", n, l.stderr.String())
	}
}

// --once with 2xx: a duplicate is not a new id.
func TestWebhooksListenOnceCountsDistinct(t *testing.T) {
	l := startListen(t, "--secret", listenSecret, "--once", "2", "--status", "204")
	now := time.Now()
	for i, id := range []string{"a", "a", "b"} {
		if code := l.post(t, listenSecret, id, now, `{}`, ""); code/100 != 2 {
			t.Fatalf("request %d: %d", i, code)
		}
	}
	if err := l.wait(t, 10*time.Second, "--once 2: still running"); err != nil {
		t.Fatal(err)
	}
	if want := "a {}\na duplicate\nb {}\n"; l.stdout.String() != want {
		t.Fatalf("stdout %q, want %q", l.stdout.String(), want)
	}
}

func TestWebhooksListenUsage(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "none")
	for _, c := range []struct {
		args []string
		code int
		says string
	}{
		{nil, 2, "give the signing secret"},
		{[]string{"--secret", listenSecret, "--secret-file", "f"}, 2, "one of them"},
		{[]string{"--secret", "not base64!"}, 2, "the secret: signing_secret is not base64"},
		{[]string{"--secret", listenSecret, "--status", "99"}, 2, "--status 99 is not an HTTP status"},
		{[]string{"--secret", listenSecret, "--once", "-1"}, 2, "--once -1 is negative"},
		{[]string{"--secret", listenSecret, "extra"}, 2, `unexpected argument "extra"`},
		{[]string{"--secret", listenSecret, "--nope"}, 2, "flag provided but not defined"},
		{[]string{"--secret-file", missing}, 1, "--secret-file: open"},
		{[]string{"--secret", listenSecret, "--addr", "127.0.0.1:99999"}, 1, "webhooks listen: listen tcp"},
	} {
		var out, errOut bytes.Buffer
		err := run(context.Background(), append([]string{"webhooks", "listen"}, c.args...), &out, &errOut)
		if code := exitCode(err); code != c.code || out.Len() != 0 || err == nil || !strings.Contains(err.Error()+errOut.String(), c.says) {
			t.Errorf("webhooks listen %q: exit %d (%v), stdout %q, stderr %q; want exit %d saying %q", c.args, code, err, out.String(), errOut.String(), c.code, c.says)
		}
	}
}
