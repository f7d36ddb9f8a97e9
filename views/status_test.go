package views

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rolodex/rolodex/intake"
	"github.com/rolodex/rolodex/internal/kafkaclient"
	"github.com/rolodex/rolodex/normalize"
	"github.com/rolodex/rolodex/partners"
	"github.com/rolodex/rolodex/schemas"
)

// Keys of the status tests: reader (plain: events:write, profiles:read),
// admins (every scope) of t1 and t2, and a writer of t1 without
// profiles:read.
const (
	readerKey = "key-of-t1"
	admin1    = "admin-of-t1"
	admin2    = "admin-of-t2"
	writerKey = "writer-of-t1"
)

var clock = time.Date(2026, 12, 6, 12, 0, 0, 123_000_000, time.UTC)

type statusEnv struct {
	srv     *httptest.Server
	cluster *kfake.Cluster
	brokers []string
	nodes   *memNodes
	prom    *prometheus.Registry
}

// fixture: in t1, ana's email and phone merged into one profile (root and
// child), a lone user_id; in t2, the same email (another profile).
type fixture struct {
	root, child, lone, other string
	ids                      map[string]schemas.Identifier
}

func newFixture() (*memNodes, fixture) {
	email, phone, user := id("email", "ana@example.com"), id("phone", "+5511912345678"), id("user_id", "u-1")
	a, b := schemas.NodeID("t1", email), schemas.NodeID("t1", phone)
	f := fixture{root: a, child: b, lone: schemas.NodeID("t1", user), other: schemas.NodeID("t2", email),
		ids: map[string]schemas.Identifier{a: email, b: phone}}
	if b < a {
		f.root, f.child = b, a
	}
	f.ids[f.lone], f.ids[f.other] = user, email
	nodes := &memNodes{ready: true, m: map[string]*schemas.Node{
		f.root: {Tenant: "t1", Identifier: f.ids[f.root], Own: schemas.Contribution{Node: f.root, Identifier: f.ids[f.root], Version: 1, FirstSeen: 1000, LastSeen: 1000},
			Members: map[string]schemas.Contribution{f.child: {Node: f.child, Identifier: f.ids[f.child], Version: 1, FirstSeen: 500, LastSeen: 500}}},
		f.child: {Tenant: "t1", Identifier: f.ids[f.child], Parent: f.root, Own: schemas.Contribution{Node: f.child, Identifier: f.ids[f.child]}},
		f.lone:  {Tenant: "t1", Identifier: user, Own: schemas.Contribution{Node: f.lone, Identifier: user, Version: 1, FirstSeen: 2000, LastSeen: 2000}},
		f.other: {Tenant: "t2", Identifier: email, Own: schemas.Contribution{Node: f.other, Identifier: email, Version: 1, FirstSeen: 3000, LastSeen: 3000}},
	}}
	return nodes, f
}

func newStatusEnv(t *testing.T, nodes *memNodes, cfg Config) *statusEnv {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(4, schemas.TopicEvents))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	all := partners.AllScopes
	reg, err := partners.New([]partners.Partner{
		{Name: "p1", Tenant: "t1", Keys: []string{readerKey}},
		{Name: "a1", Tenant: "t1", ScopedKeys: partners.KeyList{{Key: admin1, Scopes: all}}},
		{Name: "a2", Tenant: "t2", ScopedKeys: partners.KeyList{{Key: admin2, Scopes: all}}},
		{Name: "w1", Tenant: "t1", ScopedKeys: partners.KeyList{{Key: writerKey, Scopes: []partners.Scope{partners.ScopeEventsWrite, partners.ScopeProfilesWrite, partners.ScopeAdmin}}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	norm, err := normalize.New(normalize.Config{})
	if err != nil {
		t.Fatal(err)
	}
	cl, err := kafkaclient.NewClient(kafkaclient.Config{Brokers: c.ListenAddrs()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	e := &statusEnv{cluster: c, brokers: c.ListenAddrs(), nodes: nodes, prom: prometheus.NewRegistry()}
	cfg.Publisher = intake.NewPublisher(cl)
	cfg.Registerer = e.prom
	cfg.Now = func() time.Time { return clock }
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	api, err := NewAPI(nodes, reg, norm, cfg)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	api.Register(mux)
	e.srv = httptest.NewServer(mux)
	t.Cleanup(e.srv.Close)
	return e
}

type answer struct {
	status int
	header http.Header
	body   map[string]any
}

func (e *statusEnv) do(t *testing.T, method, path, key, body string, headers ...string) answer {
	t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("%s %s: %d, body is not JSON: %q", method, path, res.StatusCode, raw)
	}
	if res.Header.Get("Content-Type") != "application/json" {
		t.Errorf("%s %s: Content-Type %q", method, path, res.Header.Get("Content-Type"))
	}
	// Every answer has a request id; an error body repeats it (and the
	// tests compare the rest).
	id := res.Header.Get("X-Request-Id")
	if id == "" {
		t.Errorf("%s %s: no X-Request-Id", method, path)
	}
	if res.StatusCode >= 400 {
		if m["request_id"] != id {
			t.Errorf("%s %s: request_id %v, X-Request-Id %q", method, path, m["request_id"], id)
		}
		delete(m, "request_id")
	}
	return answer{res.StatusCode, res.Header, m}
}

func want(t *testing.T, a answer, status int, code string) {
	t.Helper()
	if a.status != status {
		t.Fatalf("status %d, want %d: %v", a.status, status, a.body)
	}
	if code != "" && (a.body["error"] != code || a.body["message"] == nil || a.body["message"] == "") {
		t.Fatalf("error %v, want %s with a message: %v", a.body["error"], code, a.body)
	}
}

// events reads every record on rolodex.events, checks its key, and
// returns the events in order of id.
func (e *statusEnv) events(t *testing.T) []*schemas.Event {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.brokers...), kgo.ConsumeTopics(schemas.TopicEvents))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, schemas.TopicEvents)
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	ends.Each(func(o kadm.ListedOffset) { n += o.Offset })
	var out []*schemas.Event
	for int64(len(out)) < n {
		f := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %d of %d records", len(out), n)
		}
		for _, r := range f.Records() {
			ev, err := schemas.DecodeEvent(r.Value)
			if err != nil {
				t.Fatal(err)
			}
			if string(r.Key) != ev.Key() {
				t.Errorf("record key %q, want %q", r.Key, ev.Key())
			}
			out = append(out, ev)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// wantEvent checks the server-built fields of ev: tenant, source, partner,
// times, the one identifier, and the type and properties given.
func wantEvent(t *testing.T, ev *schemas.Event, tenant, partner string, id schemas.Identifier, typ string, props map[string]string) {
	t.Helper()
	if ev.Tenant != tenant || ev.Source != SourceAPI || ev.Partner != partner || ev.Type != typ ||
		!ev.Time.Equal(clock) || !ev.ReceivedAt.Equal(clock) || len(ev.Identifiers) != 1 || ev.Identifiers[0] != id ||
		!strings.HasPrefix(ev.ID, "api_") || !reflect.DeepEqual(ev.Properties, props) {
		t.Errorf("event %+v, want tenant %s, partner %s, %s of %v with %v at %s", ev, tenant, partner, typ, id, props, clock)
	}
}

func TestProfileTags(t *testing.T) {
	nodes, f := newFixture()
	e := newStatusEnv(t, nodes, Config{})
	path := "/v1/profiles/" + f.child + "/tags"
	a := e.do(t, http.MethodPost, path, admin1, `{"add":["vip","lead","vip"],"remove":["old"]}`)
	want(t, a, http.StatusAccepted, "")
	if a.body["published"] != 3.0 {
		t.Fatalf("answer %v, want published 3", a.body)
	}
	evs := e.events(t)
	if len(evs) != 3 {
		t.Fatalf("%d events, want 3", len(evs))
	}
	byTag := map[string]*schemas.Event{}
	for _, ev := range evs {
		byTag[ev.Properties["tag"]] = ev
	}
	// Any node of the profile addresses it: the events carry the child's
	// identifier (the identity stage folds them into the profile).
	wantEvent(t, byTag[`"vip"`], "t1", "a1", f.ids[f.child], schemas.EventTagAdded, map[string]string{"tag": `"vip"`})
	wantEvent(t, byTag[`"lead"`], "t1", "a1", f.ids[f.child], schemas.EventTagAdded, map[string]string{"tag": `"lead"`})
	wantEvent(t, byTag[`"old"`], "t1", "a1", f.ids[f.child], schemas.EventTagRemoved, map[string]string{"tag": `"old"`})
	if got := counter(t, e, schemas.EventTagAdded); got != 2 {
		t.Errorf("rolodex_api_status_changes_total{type=tag.added} = %v, want 2", got)
	}

	tests := []struct {
		name, path, key, body string
		status                int
		code                  string
	}{
		{"no key", path, "", `{"add":["a"]}`, 401, "unauthorized"},
		{"read-only key", path, readerKey, `{"add":["a"]}`, 403, "forbidden"},
		{"bad tag", path, admin1, `{"add":["no spaces"]}`, 400, "invalid_name"},
		{"added and removed", path, admin1, `{"add":["a"],"remove":["a"]}`, 400, "bad_request"},
		{"nothing", path, admin1, `{}`, 400, "bad_request"},
		{"empty body", path, admin1, ``, 400, "bad_request"},
		{"not JSON", path, admin1, `{"add":`, 400, "bad_request"},
		{"unknown field", path, admin1, `{"add":["a"],"tags":["b"]}`, 400, "bad_request"},
		{"bad id", "/v1/profiles/nope/tags", admin1, `{"add":["a"]}`, 400, "bad_request"},
		{"unknown id", "/v1/profiles/p_0000000000000000000000000a/tags", admin1, `{"add":["a"]}`, 404, "not_found"},
		{"another tenant's profile", "/v1/profiles/" + f.other + "/tags", admin1, `{"add":["a"]}`, 404, "not_found"},
		{"body too large", path, admin1, `{"add":["` + strings.Repeat("a", 5<<20) + `"]}`, 413, "too_large"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want(t, e.do(t, http.MethodPost, tt.path, tt.key, tt.body), tt.status, tt.code)
		})
	}
	if n := len(e.events(t)); n != 3 {
		t.Fatalf("%d events after the refused requests, want the 3 of the accepted one", n)
	}
}

// counter is the value of rolodex_api_status_changes_total{type}.
func counter(t *testing.T, e *statusEnv, typ string) float64 {
	t.Helper()
	mfs, err := e.prom.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "rolodex_api_status_changes_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if m.GetLabel()[0].GetValue() == typ {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// A request retried with the same Idempotency-Key publishes the same event
// ids (the identity stage drops the repeats); without one, or with another
// key, the ids differ.
func TestIdempotencyKey(t *testing.T) {
	nodes, f := newFixture()
	e := newStatusEnv(t, nodes, Config{})
	send := func(path, body string, headers ...string) {
		t.Helper()
		want(t, e.do(t, http.MethodPost, path, admin1, body, headers...), http.StatusAccepted, "")
	}
	tags := "/v1/profiles/" + f.root + "/tags"
	send(tags, `{"add":["vip"]}`, HeaderIdempotencyKey, "k-1")
	send(tags, `{"add":["vip"]}`, HeaderIdempotencyKey, "k-1")
	send(tags, `{"add":["vip"]}`, HeaderIdempotencyKey, "k-2")
	send(tags, `{"add":["vip"]}`)
	send(tags, `{"add":["vip"]}`)
	// The same key on another profile, type or tag: other ids.
	send("/v1/profiles/"+f.lone+"/tags", `{"add":["vip"]}`, HeaderIdempotencyKey, "k-1")
	send(tags, `{"remove":["vip"]}`, HeaderIdempotencyKey, "k-1")
	send(tags, `{"add":["gold"]}`, HeaderIdempotencyKey, "k-1")
	// A bulk retry: the same ids per profile.
	send("/v1/tags/vip", `{"action":"add","profiles":["`+f.root+`","`+f.lone+`"]}`, HeaderIdempotencyKey, "bulk-1")
	send("/v1/tags/vip", `{"action":"add","profiles":["`+f.root+`","`+f.lone+`"]}`, HeaderIdempotencyKey, "bulk-1")
	ids := map[string]int{}
	for _, ev := range e.events(t) {
		ids[ev.ID]++
	}
	counts := []int{}
	for _, n := range ids {
		counts = append(counts, n)
	}
	sort.Ints(counts)
	// k-1 twice, bulk-1 twice for each of two profiles; every other id once.
	wantCounts := []int{1, 1, 1, 1, 1, 1, 2, 2, 2}
	if !reflect.DeepEqual(counts, wantCounts) {
		t.Fatalf("id multiplicities %v, want %v (%v)", counts, wantCounts, ids)
	}
}

func TestBulkTag(t *testing.T) {
	nodes, f := newFixture()
	e := newStatusEnv(t, nodes, Config{})
	a := e.do(t, http.MethodPost, "/v1/tags/vip", admin1,
		`{"action":"add","profiles":["`+f.root+`","p_0000000000000000000000000a","nope","`+f.other+`","`+f.lone+`","`+f.root+`"]}`)
	want(t, a, http.StatusAccepted, "")
	wantBody := map[string]any{"applied": 2.0,
		"not_found": []any{map[string]any{"index": 1.0, "profile": "p_0000000000000000000000000a"}, map[string]any{"index": 3.0, "profile": f.other}},
		"invalid":   []any{map[string]any{"index": 2.0, "profile": "nope", "reason": "invalid_profile_id", "message": badIDMessage}}}
	if !reflect.DeepEqual(a.body, wantBody) {
		t.Fatalf("answer %v\nwant %v", a.body, wantBody)
	}
	// Identifiers are normalised like ingest and GET /v1/lookup; they
	// resolve in the key's tenant only.
	a = e.do(t, http.MethodPost, "/v1/tags/lead", admin2,
		`{"action":"remove","identifiers":[{"type":"EMAIL","value":" Ana@Example.COM "},{"type":"phone","value":"+5511912345678"},{"type":"emial","value":"x"},{"type":"email","value":"ana@"}]}`)
	want(t, a, http.StatusAccepted, "")
	if a.body["applied"] != 1.0 || len(a.body["not_found"].([]any)) != 1 || len(a.body["invalid"].([]any)) != 2 {
		t.Fatalf("answer %v", a.body)
	}
	nf := a.body["not_found"].([]any)[0].(map[string]any)
	inv := a.body["invalid"].([]any)
	if nf["index"] != 1.0 || nf["type"] != "phone" || inv[0].(map[string]any)["reason"] != "unknown_identifier_type" || inv[1].(map[string]any)["index"] != 3.0 {
		t.Fatalf("not found %v, invalid %v", nf, inv)
	}
	evs := e.events(t)
	if len(evs) != 3 {
		t.Fatalf("%d events, want 3", len(evs))
	}
	got := map[string]*schemas.Event{}
	for _, ev := range evs {
		got[ev.Tenant+" "+ev.Identifiers[0].String()] = ev
	}
	wantEvent(t, got["t1 "+f.ids[f.root].String()], "t1", "a1", f.ids[f.root], schemas.EventTagAdded, map[string]string{"tag": `"vip"`})
	wantEvent(t, got["t1 user_id:u-1"], "t1", "a1", f.ids[f.lone], schemas.EventTagAdded, map[string]string{"tag": `"vip"`})
	wantEvent(t, got["t2 email:ana@example.com"], "t2", "a2", f.ids[f.other], schemas.EventTagRemoved, map[string]string{"tag": `"lead"`})

	// 10,000 profiles is the limit of one request; one more is 413.
	ids := make([]string, 10001)
	for i := range ids {
		ids[i] = fmt.Sprintf("p_%026d", i)
	}
	body := func(n int) string {
		b, _ := json.Marshal(map[string]any{"action": "add", "profiles": ids[:n]})
		return string(b)
	}
	a = e.do(t, http.MethodPost, "/v1/tags/vip", admin1, body(10000))
	want(t, a, http.StatusAccepted, "")
	if a.body["applied"] != 0.0 || len(a.body["not_found"].([]any)) != 10000 {
		t.Fatalf("10,000 unknown profiles: applied %v, %d not found", a.body["applied"], len(a.body["not_found"].([]any)))
	}
	a = e.do(t, http.MethodPost, "/v1/tags/vip", admin1, body(10001))
	want(t, a, http.StatusRequestEntityTooLarge, "too_large")
	if !strings.Contains(a.body["message"].(string), "the limit is 10000") {
		t.Fatalf("413 message %q does not say the limit", a.body["message"])
	}

	tests := []struct {
		name, path, key, body string
		status                int
		code                  string
	}{
		{"no key", "/v1/tags/vip", "", `{"action":"add","profiles":["` + f.root + `"]}`, 401, "unauthorized"},
		{"read-only key", "/v1/tags/vip", readerKey, `{"action":"add","profiles":["` + f.root + `"]}`, 403, "forbidden"},
		{"bad tag", "/v1/tags/-vip", admin1, `{"action":"add","profiles":["` + f.root + `"]}`, 400, "invalid_name"},
		{"bad action", "/v1/tags/vip", admin1, `{"action":"toggle","profiles":["` + f.root + `"]}`, 400, "bad_request"},
		{"no profiles", "/v1/tags/vip", admin1, `{"action":"add"}`, 400, "bad_request"},
		{"both lists", "/v1/tags/vip", admin1, `{"action":"add","profiles":["` + f.root + `"],"identifiers":[{"type":"user_id","value":"u-1"}]}`, 400, "bad_request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want(t, e.do(t, http.MethodPost, tt.path, tt.key, tt.body), tt.status, tt.code)
		})
	}
	if n := len(e.events(t)); n != 3 {
		t.Fatalf("%d events after the refused requests, want 3", n)
	}
	e.nodes.ready = false
	a = e.do(t, http.MethodPost, "/v1/tags/vip", admin1, `{"action":"add","profiles":["`+f.root+`"]}`)
	want(t, a, http.StatusServiceUnavailable, "not_ready")
}

func TestBlacklistWrites(t *testing.T) {
	nodes, f := newFixture()
	e := newStatusEnv(t, nodes, Config{})
	a := e.do(t, http.MethodPost, "/v1/blacklist", admin1, `{"profiles":["`+f.child+`","p_0000000000000000000000000a"],"reason":"asked to be left alone"}`)
	want(t, a, http.StatusAccepted, "")
	if a.body["applied"] != 1.0 || len(a.body["not_found"].([]any)) != 1 {
		t.Fatalf("answer %v", a.body)
	}
	a = e.do(t, http.MethodPost, "/v1/blacklist", admin1, `{"identifiers":[{"type":"user_id","value":"u-1"}]}`)
	want(t, a, http.StatusAccepted, "")
	if a.body["applied"] != 1.0 {
		t.Fatalf("answer %v", a.body)
	}
	a = e.do(t, http.MethodDelete, "/v1/blacklist/"+f.root, admin1, "")
	want(t, a, http.StatusAccepted, "")
	if a.body["published"] != 1.0 {
		t.Fatalf("answer %v", a.body)
	}
	evs := e.events(t)
	if len(evs) != 3 {
		t.Fatalf("%d events, want 3", len(evs))
	}
	got := map[string]*schemas.Event{}
	for _, ev := range evs {
		got[ev.Type+" "+ev.Identifiers[0].String()] = ev
	}
	wantEvent(t, got["blacklist.added "+f.ids[f.child].String()], "t1", "a1", f.ids[f.child], schemas.EventBlacklistAdded, map[string]string{"reason": `"asked to be left alone"`})
	wantEvent(t, got["blacklist.added user_id:u-1"], "t1", "a1", f.ids[f.lone], schemas.EventBlacklistAdded, nil)
	wantEvent(t, got["blacklist.removed "+f.ids[f.root].String()], "t1", "a1", f.ids[f.root], schemas.EventBlacklistRemoved, nil)

	tests := []struct {
		name, method, path, key, body string
		status                        int
		code                          string
	}{
		{"POST no key", "POST", "/v1/blacklist", "", `{"profiles":["` + f.root + `"]}`, 401, "unauthorized"},
		{"POST read-only key", "POST", "/v1/blacklist", readerKey, `{"profiles":["` + f.root + `"]}`, 403, "forbidden"},
		{"POST no profiles", "POST", "/v1/blacklist", admin1, `{"reason":"x"}`, 400, "bad_request"},
		{"POST reason too long", "POST", "/v1/blacklist", admin1, `{"profiles":["` + f.root + `"],"reason":"` + strings.Repeat("x", 501) + `"}`, 400, "bad_request"},
		{"POST too many", "POST", "/v1/blacklist", admin1, `{"profiles":[` + strings.TrimSuffix(strings.Repeat(`"p_x",`, 10001), ",") + `]}`, 413, "too_large"},
		{"DELETE no key", "DELETE", "/v1/blacklist/" + f.root, "", "", 401, "unauthorized"},
		{"DELETE read-only key", "DELETE", "/v1/blacklist/" + f.root, readerKey, "", 403, "forbidden"},
		{"DELETE bad id", "DELETE", "/v1/blacklist/nope", admin1, "", 400, "bad_request"},
		{"DELETE unknown", "DELETE", "/v1/blacklist/p_0000000000000000000000000a", admin1, "", 404, "not_found"},
		{"DELETE another tenant's", "DELETE", "/v1/blacklist/" + f.other, admin1, "", 404, "not_found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want(t, e.do(t, tt.method, tt.path, tt.key, tt.body), tt.status, tt.code)
		})
	}
	if n := len(e.events(t)); n != 3 {
		t.Fatalf("%d events after the refused requests, want 3", n)
	}
}

func TestConsent(t *testing.T) {
	nodes, f := newFixture()
	e := newStatusEnv(t, nodes, Config{})
	path := "/v1/profiles/" + f.root + "/consent/marketing"
	a := e.do(t, http.MethodPut, path, admin1, `{"status":"granted","expires_at":"2027-01-31T00:00:00-03:00"}`)
	want(t, a, http.StatusAccepted, "")
	// A null expires_at is an absent one (docs/openapi.yaml).
	want(t, e.do(t, http.MethodPut, "/v1/profiles/"+f.lone+"/consent/sms", admin1, `{"status":"revoked","expires_at":null}`), http.StatusAccepted, "")
	evs := e.events(t)
	if len(evs) != 2 {
		t.Fatalf("%d events, want 2", len(evs))
	}
	got := map[string]*schemas.Event{}
	for _, ev := range evs {
		got[ev.Type] = ev
	}
	wantEvent(t, got[schemas.EventConsentGranted], "t1", "a1", f.ids[f.root], schemas.EventConsentGranted,
		map[string]string{"purpose": `"marketing"`, "expires_at": `"2027-01-31T03:00:00Z"`})
	wantEvent(t, got[schemas.EventConsentRevoked], "t1", "a1", f.ids[f.lone], schemas.EventConsentRevoked, map[string]string{"purpose": `"sms"`})

	tests := []struct {
		name, path, key, body string
		status                int
		code                  string
	}{
		{"no key", path, "", `{"status":"granted"}`, 401, "unauthorized"},
		{"read-only key", path, readerKey, `{"status":"granted"}`, 403, "forbidden"},
		{"bad status", path, admin1, `{"status":"maybe"}`, 400, "bad_request"},
		{"expiry in the past", path, admin1, `{"status":"granted","expires_at":"2026-12-06T11:59:59Z"}`, 400, "bad_request"},
		{"expiry not a time", path, admin1, `{"status":"granted","expires_at":"tomorrow"}`, 400, "bad_request"},
		// Found by the contract tier (schemathesis): an empty expires_at was
		// read as no expiry, granting consent forever.
		{"expiry empty", path, admin1, `{"status":"granted","expires_at":""}`, 400, "bad_request"},
		{"expiry without granted", path, admin1, `{"status":"denied","expires_at":"2027-01-01T00:00:00Z"}`, 400, "bad_request"},
		{"bad purpose", "/v1/profiles/" + f.root + "/consent/mark%20eting", admin1, `{"status":"granted"}`, 400, "invalid_name"},
		{"bad id", "/v1/profiles/nope/consent/marketing", admin1, `{"status":"granted"}`, 400, "bad_request"},
		{"unknown", "/v1/profiles/p_0000000000000000000000000a/consent/marketing", admin1, `{"status":"granted"}`, 404, "not_found"},
		{"another tenant's", "/v1/profiles/" + f.other + "/consent/marketing", admin1, `{"status":"granted"}`, 404, "not_found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want(t, e.do(t, http.MethodPut, tt.path, tt.key, tt.body), tt.status, tt.code)
		})
	}
	if n := len(e.events(t)); n != 2 {
		t.Fatalf("%d events after the refused requests, want 2", n)
	}
}

// Every write answers 503 when Kafka does not acknowledge in time, and
// publishes nothing it answered 202 for.
func TestStatusKafkaUnavailable(t *testing.T) {
	nodes, f := newFixture()
	e := newStatusEnv(t, nodes, Config{WriteTimeout: 300 * time.Millisecond})
	e.cluster.Close()
	for _, r := range []struct{ method, path, body string }{
		{"POST", "/v1/profiles/" + f.root + "/tags", `{"add":["vip"]}`},
		{"POST", "/v1/tags/vip", `{"action":"add","profiles":["` + f.root + `"]}`},
		{"POST", "/v1/blacklist", `{"profiles":["` + f.root + `"]}`},
		{"DELETE", "/v1/blacklist/" + f.root, ``},
		{"PUT", "/v1/profiles/" + f.root + "/consent/marketing", `{"status":"granted"}`},
	} {
		t.Run(r.method+" "+r.path, func(t *testing.T) {
			a := e.do(t, r.method, r.path, admin1, r.body)
			want(t, a, http.StatusServiceUnavailable, "kafka_unavailable")
			if a.header.Get("Retry-After") == "" {
				t.Fatal("503 without Retry-After")
			}
		})
	}
}

// Every endpoint needs its scope: a key without it is answered 403 with
// the scope named.
func TestStatusForbidden(t *testing.T) {
	nodes, f := newFixture()
	e := newStatusEnv(t, nodes, Config{})
	tests := []struct {
		method, path, key, body string
		scope                   partners.Scope
	}{
		{"GET", "/v1/profiles/" + f.root, writerKey, "", partners.ScopeProfilesRead},
		{"GET", "/v1/lookup?type=user_id&value=u-1", writerKey, "", partners.ScopeProfilesRead},
		{"GET", "/v1/blacklist", writerKey, "", partners.ScopeProfilesRead},
		{"POST", "/v1/profiles/" + f.root + "/tags", readerKey, `{"add":["vip"]}`, partners.ScopeProfilesWrite},
		{"POST", "/v1/tags/vip", readerKey, `{"action":"add","profiles":["` + f.root + `"]}`, partners.ScopeProfilesWrite},
		{"POST", "/v1/blacklist", readerKey, `{"profiles":["` + f.root + `"]}`, partners.ScopeProfilesWrite},
		{"DELETE", "/v1/blacklist/" + f.root, readerKey, "", partners.ScopeProfilesWrite},
		{"PUT", "/v1/profiles/" + f.root + "/consent/marketing", readerKey, `{"status":"granted"}`, partners.ScopeProfilesWrite},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			a := e.do(t, tt.method, tt.path, tt.key, tt.body)
			wantBody := map[string]any{"error": "forbidden", "message": "this key lacks the scope " + string(tt.scope), "required_scope": string(tt.scope)}
			if a.status != http.StatusForbidden || !reflect.DeepEqual(a.body, wantBody) {
				t.Fatalf("%d %v, want 403 %v", a.status, a.body, wantBody)
			}
			// The admin key passes the scope check.
			if a := e.do(t, tt.method, tt.path, admin1, tt.body); a.status == http.StatusForbidden || a.status >= 500 {
				t.Fatalf("with every scope: %d %v", a.status, a.body)
			}
		})
	}
}

// The profile answers fold with the configured tags: default tags show,
// with their source.
func TestProfileFoldsWithStatusConfig(t *testing.T) {
	nodes, f := newFixture()
	e := newStatusEnv(t, nodes, Config{Status: schemas.StatusConfig{Default: []string{"new"}}})
	a := e.do(t, http.MethodGet, "/v1/profiles/"+f.child, readerKey, "")
	want(t, a, http.StatusOK, "")
	tags := a.body["tags"].([]any)
	if len(tags) != 1 || tags[0].(map[string]any)["tag"] != "new" || tags[0].(map[string]any)["source"] != "default" || a.body["id"] != f.root {
		t.Fatalf("profile %v: want the default tag new", a.body)
	}
}

// blacklisted returns a root of tenant whose member (or own contribution)
// is blacklisted with reason at ms.
func blacklisted(tenant, user string, ms int64, onMember bool) (string, *schemas.Node) {
	uid := id("user_id", user)
	key := schemas.NodeID(tenant, uid)
	mark := &schemas.FlagMark{On: true, Reason: "r-" + user, Last: schemas.Stamp{Time: ms, Source: SourceAPI, Event: "e-" + user}}
	n := &schemas.Node{Tenant: tenant, Identifier: uid, Own: schemas.Contribution{Node: key, Identifier: uid, Version: 1, FirstSeen: ms, LastSeen: ms}}
	if onMember {
		m := "p_zz" + user
		n.Members = map[string]schemas.Contribution{m: {Node: m, Identifier: id("email", user+"@example.com"), Version: 1, FirstSeen: ms, LastSeen: ms, Blacklist: mark}}
	} else {
		n.Own.Blacklist = mark
	}
	return key, n
}

// GET /v1/blacklist lists the tenant's blacklisted live profiles across
// pages: every one once, none of another tenant, none unlisted; a page
// reads at most ScanPerPage nodes, so pages may be short.
func TestBlacklistList(t *testing.T) {
	nodes, f := newFixture()
	wantT1 := map[string]BlacklistEntry{}
	for i := 0; i < 23; i++ {
		for _, tenant := range []string{"t1", "t2"} {
			user := fmt.Sprintf("u%02d-%s", i, tenant)
			key, n := blacklisted(tenant, user, int64(1000+i), i%3 == 0)
			if i%5 == 4 { // blacklisted, then removed later
				n.Own.Blacklist = &schemas.FlagMark{On: false, Last: schemas.Stamp{Time: 5000, Source: SourceAPI}}
				if n.Members == nil {
					n.Members = map[string]schemas.Contribution{"p_zzold" + user: {Node: "p_zzold" + user, Version: 1, FirstSeen: 1, LastSeen: 1,
						Blacklist: &schemas.FlagMark{On: true, Last: schemas.Stamp{Time: 900}}}}
				}
			} else if tenant == "t1" {
				wantT1[key] = BlacklistEntry{ID: key, Reason: "r-" + user, Since: time.UnixMilli(int64(1000 + i)).UTC().Format(time.RFC3339Nano)}
			}
			nodes.m[key] = n
		}
	}
	// A merged-away node carrying a blacklist mark is not a profile of its own.
	nodes.m[f.child].Own.Blacklist = &schemas.FlagMark{On: true, Last: schemas.Stamp{Time: 1}}
	e := newStatusEnv(t, nodes, Config{ScanPerPage: 7})

	var got []BlacklistEntry
	cursor, pages, short := "", 0, 0
	for {
		path := "/v1/blacklist?limit=3"
		if cursor != "" {
			path += "&cursor=" + cursor
		}
		a := e.do(t, http.MethodGet, path, readerKey, "")
		want(t, a, http.StatusOK, "")
		var page BlacklistPage
		raw, _ := json.Marshal(a.body)
		if err := json.Unmarshal(raw, &page); err != nil {
			t.Fatal(err)
		}
		if len(page.Profiles) > 3 {
			t.Fatalf("page of %d profiles, limit 3", len(page.Profiles))
		}
		if len(page.Profiles) < 3 && page.NextCursor != "" {
			short++
		}
		got = append(got, page.Profiles...)
		pages++
		if page.NextCursor == "" {
			break
		}
		if pages > 100 {
			t.Fatal("the cursor does not advance")
		}
		cursor = page.NextCursor
	}
	if short == 0 {
		t.Errorf("no short page with ScanPerPage 7 over %d nodes", len(nodes.m))
	}
	gotMap := map[string]BlacklistEntry{}
	for i, b := range got {
		if _, dup := gotMap[b.ID]; dup {
			t.Errorf("%s listed twice", b.ID)
		}
		if i > 0 && got[i-1].ID >= b.ID {
			t.Errorf("not in id order: %s then %s", got[i-1].ID, b.ID)
		}
		gotMap[b.ID] = b
	}
	if !reflect.DeepEqual(gotMap, wantT1) {
		t.Fatalf("listed %d profiles, want %d:\n%v\n%v", len(gotMap), len(wantT1), gotMap, wantT1)
	}

	// Without a limit, up to 100 on a page; t2 sees its own only.
	a := e.do(t, http.MethodGet, "/v1/blacklist", admin2, "")
	want(t, a, http.StatusOK, "")
	for _, p := range a.body["profiles"].([]any) {
		if nodes.m[p.(map[string]any)["id"].(string)].Tenant != "t2" {
			t.Fatalf("t2 listed %v", p)
		}
	}
	for _, tt := range []struct {
		path, key string
		status    int
		code      string
	}{
		{"/v1/blacklist", "", 401, "unauthorized"},
		{"/v1/blacklist", writerKey, 403, "forbidden"},
		{"/v1/blacklist?limit=0", readerKey, 400, "bad_request"},
		{"/v1/blacklist?limit=1001", readerKey, 400, "bad_request"},
		{"/v1/blacklist?limit=ten", readerKey, 400, "bad_request"},
		// Found by the contract tier (schemathesis): an empty limit read
		// as the default; it is not a number.
		{"/v1/blacklist?limit=", readerKey, 400, "bad_request"},
		// An empty cursor is the first page (docs/openapi.yaml).
		{"/v1/blacklist?cursor=", readerKey, 200, ""},
		{"/v1/blacklist?cursor=p_00", readerKey, 400, "bad_request"},
	} {
		t.Run(tt.path, func(t *testing.T) { want(t, e.do(t, http.MethodGet, tt.path, tt.key, ""), tt.status, tt.code) })
	}
	e.nodes.ready = false
	want(t, e.do(t, http.MethodGet, "/v1/blacklist", readerKey, ""), http.StatusServiceUnavailable, "not_ready")
}

// Two adds of one exclusive group in one request are refused: they would
// be set at the same instant. One add and a remove of another are fine.
func TestProfileTagsExclusiveGroup(t *testing.T) {
	nodes, f := newFixture()
	e := newStatusEnv(t, nodes, Config{Status: schemas.StatusConfig{Groups: []schemas.TagGroup{{Name: "stage", Tags: []string{"lead", "customer"}, Exclusive: true}}}})
	a := e.do(t, http.MethodPost, "/v1/profiles/"+f.child+"/tags", admin1, `{"add":["lead","customer"]}`)
	want(t, a, http.StatusBadRequest, "bad_request")
	if !strings.Contains(fmt.Sprint(a.body["message"]), `"stage"`) {
		t.Fatalf("message %v: want the group named", a.body["message"])
	}
	a = e.do(t, http.MethodPost, "/v1/profiles/"+f.child+"/tags", admin1, `{"add":["lead"],"remove":["customer"]}`)
	want(t, a, http.StatusAccepted, "")
}
