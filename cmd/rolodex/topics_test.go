package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// The fan-out commands against dev mode (the real API and stores on the
// embedded broker): topics create, access, list, delete; subscriptions
// create (the secret printed once), list (no secret), replay, delete; a
// refusal is the API's message naming the field.
func TestFanoutCommands(t *testing.T) {
	api := startDev(t)
	_, rolodex := cliEnv(t, api)
	var out, errOut string
	var code int
	eventually(t, "topics list answers", func() bool {
		out, errOut, code = rolodex("topics", "list")
		return code == 0
	})
	out, errOut, code = rolodex("topics", "create", "car-chosen", "--description", "a customer chose a car", "--allow", "demo",
		"--requires-consent", "partner_offers", "--include", "traits.name,identifiers.email")
	if code != 0 || !strings.Contains(out, `"owner": "demo"`) || !strings.Contains(out, `"version": 1`) || !strings.Contains(out, `"identifiers.email"`) {
		t.Fatalf("topics create: exit %d\n%s\n%s", code, out, errOut)
	}
	if _, errOut, code = rolodex("topics", "create", "x", "--allow", "nobody"); code != 1 || !strings.Contains(errOut, `allowed[0]: "nobody" is not a partner of this tenant (400 invalid_topic)`) {
		t.Fatalf("topics create refused: exit %d, stderr %q", code, errOut)
	}
	if _, errOut, code = rolodex("topics", "access", "car-chosen"); code != 2 || !strings.Contains(errOut, "--allow is required") {
		t.Fatalf("topics access without --allow: exit %d, stderr %q", code, errOut)
	}
	if out, errOut, code = rolodex("topics", "access", "car-chosen", "--allow", ""); code != 0 || !strings.Contains(out, `"allowed": []`) || !strings.Contains(out, `"version": 2`) {
		t.Fatalf("topics access: exit %d\n%s\n%s", code, out, errOut)
	}
	if _, errOut, code = rolodex("subscriptions", "create", "car-chosen", "--kafka"); code != 1 || !strings.Contains(errOut, "is not on the access list of topic car-chosen (its owner demo decides) (403 forbidden)") {
		t.Fatalf("subscriptions create off the list: exit %d, stderr %q", code, errOut)
	}
	if _, _, code = rolodex("topics", "access", "car-chosen", "--allow", "demo"); code != 0 {
		t.Fatal("topics access --allow demo")
	}
	// --secret-out also writes the secret to a file, for webhooks listen
	// --secret-file; a file already there is replaced and made 0600.
	secretFile := filepath.Join(t.TempDir(), "hook.secret")
	if err := os.WriteFile(secretFile, []byte("an older, longer secret of another subscription\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, errOut, code = rolodex("subscriptions", "create", "car-chosen", "--webhook", "https://bank.example/hooks", "--secret-out", secretFile)
	var sub struct{ ID, Secret, Status string }
	if code != 0 || json.Unmarshal([]byte(out), &sub) != nil || !strings.HasPrefix(sub.Secret, "whsec_") || sub.Status != "active" || !strings.Contains(errOut, "shown this once") {
		t.Fatalf("subscriptions create: exit %d\n%s\n%s", code, out, errOut)
	}
	if b, err := os.ReadFile(secretFile); err != nil || string(b) != sub.Secret+"\n" {
		t.Fatalf("--secret-out file holds %q (%v), want %q", b, err, sub.Secret+"\n")
	}
	if fi, err := os.Stat(secretFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("--secret-out file: %v, mode %v", err, fi.Mode())
	}
	// A Kafka subscription with an --idempotency-key; the same key again:
	// the same subscription, its secret shown again; another key for the
	// same place: 409.
	create := func(key string) (string, string, int) {
		return rolodex("subscriptions", "create", "car-chosen", "--kafka", "--idempotency-key", key)
	}
	out, errOut, code = create("cli-test-1")
	var keyed struct{ ID, Secret string }
	if code != 0 || json.Unmarshal([]byte(out), &keyed) != nil || keyed.ID == sub.ID || keyed.Secret == "" {
		t.Fatalf("subscriptions create --idempotency-key: exit %d\n%s\n%s", code, out, errOut)
	}
	if out, errOut, code = create("cli-test-1"); code != 0 || !strings.Contains(out, keyed.ID) || !strings.Contains(out, keyed.Secret) {
		t.Fatalf("the same --idempotency-key again: exit %d\n%s\n%s, want %s with its secret", code, out, errOut, keyed.ID)
	}
	if _, errOut, code = create("cli-test-2"); code != 1 || !strings.Contains(errOut, "already delivers topic car-chosen to the same place") {
		t.Fatalf("another key, the same place: exit %d, stderr %q", code, errOut)
	}
	if out, _, code = rolodex("subscriptions", "list"); code != 0 || !strings.Contains(out, sub.ID) || strings.Contains(out, "whsec_") {
		t.Fatalf("subscriptions list: exit %d\n%s", code, out)
	}
	if out, errOut, code = rolodex("subscriptions", "replay", sub.ID, "--since", "2026-01-01T00:00:00Z"); code != 0 || !strings.Contains(out, `"since": "2026-01-01T00:00:00Z"`) {
		t.Fatalf("subscriptions replay: exit %d\n%s\n%s", code, out, errOut)
	}
	if out, _, code = rolodex("topics", "list"); code != 0 || !strings.Contains(out, `"name": "car-chosen"`) {
		t.Fatalf("topics list: exit %d\n%s", code, out)
	}
	if out, errOut, code = rolodex("topics", "delete", "car-chosen"); code != 0 || !strings.Contains(out, `"subscriptions_ended": 2`) {
		t.Fatalf("topics delete: exit %d\n%s\n%s", code, out, errOut)
	}
	if out, _, code = rolodex("subscriptions", "delete", sub.ID); code != 0 || !strings.Contains(out, `"status": "deleted"`) || !strings.Contains(out, `"reason": "topic deleted"`) {
		t.Fatalf("subscriptions delete: exit %d\n%s", code, out)
	}
	if out, _, _ = rolodex("subscriptions", "list"); strings.Contains(out, sub.ID) {
		t.Fatalf("subscriptions list after delete:\n%s", out)
	}
}

// Publishing into a topic end to end on dev mode: a topic created with the
// API, an event posted to POST /v1/topics/{name}/events by its owner goes
// through identity, whose root writes the fan-out record
// (rolodex_identity_fanout_records_total{kind="event"} rises); another
// partner of the tenant is refused 403, an unknown topic 404, and neither
// writes a topic event.
func TestPublishToTopic(t *testing.T) {
	api := startDev(t)
	const sample = `rolodex_identity_fanout_records_total{kind="event"}`
	eventually(t, "the topic store answers", func() bool {
		code, _ := httpJSON(t, "GET", api+"/v1/topics", "")
		return code == 200
	})
	if code, ans := httpJSON(t, "POST", api+"/v1/topics", `{"name":"car-chosen","allowed":["demo"]}`); code != 201 {
		t.Fatalf("create topic: %d %v", code, ans)
	}
	before := metricValue(t, api, sample)
	// The ingest server's copy of the store may read the new topic a
	// moment after the API's answer: 404 until then.
	var code int
	var ans map[string]any
	eventually(t, "the owner's event accepted", func() bool {
		code, ans = httpJSON(t, "POST", api+"/v1/topics/car-chosen/events", `{"id":"te-1","type":"car.chosen","identifiers":{"email":"ana@example.com"},"properties":{"model":"Tracker"}}`)
		return code == 202
	})
	eventually(t, "identity wrote the fan-out record", func() bool { return metricValue(t, api, sample) >= before+1 })
	if code, ans = httpAs(t, "dealer-sp-key", "POST", api+"/v1/topics/car-chosen/events", `{"id":"te-2","type":"car.chosen","identifiers":{"email":"bia@example.com"}}`); code != 403 || ans["error"] != "forbidden" {
		t.Fatalf("another partner of the tenant: %d %v", code, ans)
	}
	if code, ans = httpJSON(t, "POST", api+"/v1/topics/nope/events", `{"id":"te-3","type":"car.chosen","identifiers":{"email":"bia@example.com"}}`); code != 404 || ans["error"] != "not_found" {
		t.Fatalf("unknown topic: %d %v", code, ans)
	}
	// A plain event on /v1/events writes no fan-out record; once it is
	// folded (its profile readable), the count has not moved past the one
	// topic event.
	if code, ans = httpJSON(t, "POST", api+"/v1/events", `{"id":"pe-1","type":"page.viewed","identifiers":{"email":"cid@example.com"}}`); code != 202 {
		t.Fatalf("plain event: %d %v", code, ans)
	}
	eventually(t, "the plain event folded", func() bool {
		code, _ := httpJSON(t, "GET", api+"/v1/lookup?type=email&value=cid@example.com", "")
		return code == 200
	})
	if got := metricValue(t, api, sample); got != before+1 {
		t.Fatalf("%s = %v, want %v (one topic event; the refused and the plain ones write none)", sample, got, before+1)
	}
}

// subscriptions create sends an Idempotency-Key and tries again, with the
// same key, while the API answers 503 kafka_unavailable; past its tries it
// names the key to try again with. A refusal (409) or 503 not_ready is not
// tried again.
func TestSubscriptionsCreateRetries(t *testing.T) {
	defer func(tries int, wait time.Duration) { subscribeTries, subscribeRetryWait = tries, wait }(subscribeTries, subscribeRetryWait)
	subscribeRetryWait = 10 * time.Millisecond
	var mu sync.Mutex
	var keys []string
	unavailable, refusal, refusalStatus := 0, "", 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		keys = append(keys, r.Header.Get("Idempotency-Key"))
		w.Header().Set("Content-Type", "application/json")
		if len(keys) <= unavailable {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = io.WriteString(w, `{"error":"kafka_unavailable","message":"Kafka did not acknowledge the write in time"}`)
			return
		}
		if refusal != "" {
			w.WriteHeader(refusalStatus)
			_, _ = io.WriteString(w, refusal)
			return
		}
		w.WriteHeader(http.StatusCreated)
		_, _ = io.WriteString(w, `{"id":"sub_1","secret":"whsec_x","status":"active"}`)
	}))
	defer srv.Close()
	create := func(args ...string) (string, string, error) {
		var out, errb strings.Builder
		err := run(context.Background(), append([]string{"subscriptions", "create", "car-chosen", "--kafka", "--api", srv.URL, "--key", "k"}, args...), &out, &errb)
		return out.String(), errb.String(), err
	}

	unavailable = 2
	out, errOut, err := create()
	if err != nil || !strings.Contains(out, `"sub_1"`) || len(keys) != 3 || keys[0] == "" || keys[1] != keys[0] || keys[2] != keys[0] ||
		strings.Count(errOut, "trying again") != 2 {
		t.Fatalf("%v, keys %q\n%s\n%s", err, keys, out, errOut)
	}
	mu.Lock()
	keys, unavailable = nil, 3
	mu.Unlock()
	_, _, err = create("--idempotency-key", "mine")
	if exitCode(err) != 1 || len(keys) != 3 || keys[0] != "mine" || keys[2] != "mine" || !strings.Contains(err.Error(), "try again with --idempotency-key mine") {
		t.Fatalf("three 503s: %v (exit %d), keys %q", err, exitCode(err), keys)
	}
	for _, r := range []struct {
		status int
		body   string
	}{
		{409, `{"error":"conflict","message":"subscription sub_2 already delivers topic car-chosen to the same place"}`},
		{503, `{"error":"not_ready","message":"the fan-out stores are still loading"}`},
	} {
		mu.Lock()
		keys, unavailable, refusal, refusalStatus = nil, 0, r.body, r.status
		mu.Unlock()
		if _, _, err = create(); exitCode(err) != 1 || len(keys) != 1 {
			t.Fatalf("%d: %v (exit %d) after %d tries, want 1", r.status, err, exitCode(err), len(keys))
		}
	}

	// A request never sent (nothing listens) made nothing: no retry, no
	// "may have been made". An answer lost after the request was sent
	// (the server hangs up) is tried again with the key.
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	var out2, errb strings.Builder
	err = run(context.Background(), []string{"subscriptions", "create", "car-chosen", "--kafka", "--api", closed.URL, "--key", "k"}, &out2, &errb)
	if exitCode(err) != 1 || strings.Contains(err.Error(), "may have been made") || strings.Contains(errb.String(), "trying again") {
		t.Fatalf("nothing listening: %v (exit %d), stderr %q", err, exitCode(err), errb.String())
	}
	var hungUp []string
	hangUp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		hungUp = append(hungUp, r.Header.Get("Idempotency-Key"))
		mu.Unlock()
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close()
		}
	}))
	defer hangUp.Close()
	errb.Reset()
	err = run(context.Background(), []string{"subscriptions", "create", "car-chosen", "--kafka", "--api", hangUp.URL, "--key", "k", "--idempotency-key", "lost"}, &out2, &errb)
	mu.Lock()
	defer mu.Unlock()
	if exitCode(err) != 1 || len(hungUp) < 3 || hungUp[len(hungUp)-1] != "lost" || !strings.Contains(err.Error(), "try again with --idempotency-key lost") {
		t.Fatalf("answers lost: %v (exit %d), keys %q", err, exitCode(err), hungUp)
	}
}
