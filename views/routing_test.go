package views

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/rolodex/rolodex/internal/kafkaclient"
	"github.com/rolodex/rolodex/normalize"
	"github.com/rolodex/rolodex/partners"
	"github.com/rolodex/rolodex/schemas"
)

// routingEnv serves the routing API on kfake (over TCP): admin1 (t1) and
// admin2 (t2) with every scope, readerKey (t1) with the default scopes,
// "admin-only-t1" with admin alone, "writer-of-t1" with events:write
// alone; the dealers dealer-sp, dealer-cps, dealer-rj of t1 and dealer-x
// of t2.
type routingEnv struct {
	cluster *kfake.Cluster
	brokers []string
	srv     *httptest.Server
	store   *RoutingStore
}

func routingRegistry(t *testing.T) *partners.Registry {
	t.Helper()
	all := partners.AllScopes
	reg, err := partners.New([]partners.Partner{
		{Name: "p1", Tenant: "t1", Keys: []string{readerKey}},
		{Name: "a1", Tenant: "t1", ScopedKeys: partners.KeyList{{Key: admin1, Scopes: all}}},
		{Name: "a2", Tenant: "t2", ScopedKeys: partners.KeyList{{Key: admin2, Scopes: all}}},
		{Name: "ops", Tenant: "t1", ScopedKeys: partners.KeyList{{Key: "admin-only-t1", Scopes: []partners.Scope{partners.ScopeAdmin}}}},
		{Name: "w1", Tenant: "t1", ScopedKeys: partners.KeyList{{Key: writerKey, Scopes: []partners.Scope{partners.ScopeEventsWrite}}}},
		{Name: "dealer-sp", Tenant: "t1", Keys: []string{"dealer-sp-key"}, Delivery: &schemas.PartnerDelivery{Kafka: true}},
		{Name: "dealer-cps", Tenant: "t1", Keys: []string{"dealer-cps-key"}, Delivery: &schemas.PartnerDelivery{Kafka: true}},
		{Name: "dealer-rj", Tenant: "t1", Keys: []string{"dealer-rj-key"}, Delivery: &schemas.PartnerDelivery{Kafka: true}},
		{Name: "dealer-x", Tenant: "t2", Keys: []string{"dealer-x-key"}, Delivery: &schemas.PartnerDelivery{Kafka: true}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return reg
}

func newRoutingEnv(t *testing.T) *routingEnv {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(4, schemas.TopicEvents))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	// Compacted, as routing.EnsureTopics creates it.
	if err := c.CreateTopic(schemas.TopicRoutingRules, 4, map[string]string{"cleanup.policy": "compact"}); err != nil {
		t.Fatal(err)
	}
	e := &routingEnv{cluster: c, brokers: c.ListenAddrs()}
	e.srv, e.store = e.serve(t, true, Config{})
	return e
}

// serve starts an API instance with its own routing-rule store; run false
// leaves the store not started (never ready).
func (e *routingEnv) serve(t *testing.T, run bool, cfg Config) (*httptest.Server, *RoutingStore) {
	t.Helper()
	norm, err := normalize.New(normalize.Config{})
	if err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	store, err := NewRoutingStore(RuleStoreConfig{Kafka: kafkaclient.Config{Brokers: e.brokers}, Logger: logger,
		Now: func() time.Time { return clock }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	if run {
		runStore(t, "routing-rule store", store.compactedCopy)
	}
	cfg.Publisher, cfg.Routing, cfg.Logger = noPublisher{}, store, logger
	api, err := NewAPI(&memNodes{ready: true}, routingRegistry(t), norm, cfg)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	api.Register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv, store
}

// records reads every record of rolodex.routing.rules.
func (e *routingEnv) records(t *testing.T) []*kgo.Record {
	t.Helper()
	return topicRecords(t, e.brokers, schemas.TopicRoutingRules)
}

// The issue's example, as the API takes it.
const issueRouting = `{"rules":[
 {"id":"sp","condition":"lead.properties.region == \"SP\"","strategy":"weighted",
  "pool":[{"partner":"dealer-sp","weight":2},{"partner":"dealer-cps","weight":1}],
  "cap_per_day":{"dealer-sp":50},"sla":"30m","max_reroutes":2,"fallback":"national"},
 {"id":"national","condition":"true","strategy":"round_robin","pool":[{"partner":"dealer-rj"}]}]}`

func wantRouting(t *testing.T, a answer, version int, ids string) {
	t.Helper()
	if a.status != 200 || a.body["version"] != float64(version) {
		t.Fatalf("answer %d %v, want version %d", a.status, a.body, version)
	}
	var got []string
	for _, r := range a.body["rules"].([]any) {
		got = append(got, r.(map[string]any)["id"].(string))
	}
	if strings.Join(got, ",") != ids {
		t.Fatalf("rules %v, want %s", got, ids)
	}
	if version > 0 && (a.body["updated_at"] != "2026-12-06T12:00:00.123Z" || a.body["updated_by"] == nil) {
		t.Fatalf("answer %v: updated_at, updated_by", a.body)
	}
}

// A tenant's list: version 0 and [] before any write; each PUT writes the
// whole list as the next version, visible at once to the next GET; the
// record on the topic is the tenant's (key and value), and another
// instance reads it and counts on. Another tenant sees only its own.
func TestRoutingRules(t *testing.T) {
	e := newRoutingEnv(t)
	a := call(t, e.srv, "GET", "/v1/routing/rules", admin1, "")
	if a.status != 200 || a.body["version"] != 0.0 || len(a.body["rules"].([]any)) != 0 || a.body["updated_at"] != nil {
		t.Fatalf("GET before any write: %d %v", a.status, a.body)
	}
	a = call(t, e.srv, "PUT", "/v1/routing/rules", admin1, issueRouting)
	wantRouting(t, a, 1, "sp,national")
	sp := a.body["rules"].([]any)[0].(map[string]any)
	if sp["sla"] != "30m" || sp["fallback"] != "national" || sp["max_reroutes"] != 2.0 || sp["cap_per_day"].(map[string]any)["dealer-sp"] != 50.0 ||
		sp["pool"].([]any)[0].(map[string]any)["weight"] != 2.0 {
		t.Fatalf("rule sp as stored: %v", sp)
	}
	wantRouting(t, call(t, e.srv, "GET", "/v1/routing/rules", admin1, ""), 1, "sp,national")
	// The other tenant has none.
	wantRouting(t, call(t, e.srv, "GET", "/v1/routing/rules", admin2, ""), 0, "")
	// The same list again is a new version (a PUT is the whole list).
	wantRouting(t, call(t, e.srv, "PUT", "/v1/routing/rules", "admin-only-t1", issueRouting), 2, "sp,national")
	a = call(t, e.srv, "PUT", "/v1/routing/rules", admin2, `{"rules":[{"id":"all","condition":"true","strategy":"first","pool":[{"partner":"dealer-x"}]}]}`)
	wantRouting(t, a, 1, "all")

	var got []string
	for _, r := range e.records(t) {
		var rl schemas.RoutingRules
		if err := json.Unmarshal(r.Value, &rl); err != nil {
			t.Fatal(err)
		}
		if string(r.Key) != rl.Tenant || rl.UpdatedAt != "2026-12-06T12:00:00.123Z" {
			t.Fatalf("record %s: %+v", r.Key, rl)
		}
		got = append(got, rl.Tenant+":"+strconv.FormatInt(rl.Version, 10)+":"+rl.UpdatedBy)
	}
	if strings.Join(got, " ") != "t1:1:a1 t1:2:ops t2:1:a2" && strings.Join(got, " ") != "t2:1:a2 t1:1:a1 t1:2:ops" {
		t.Fatalf("records (tenant:version:by): %v", got)
	}

	// Another instance reads the topic and counts on; an empty list is a
	// list (every rule removed).
	srv2, _ := e.serve(t, true, Config{})
	wantRouting(t, call(t, srv2, "GET", "/v1/routing/rules", admin1, ""), 2, "sp,national")
	wantRouting(t, call(t, srv2, "PUT", "/v1/routing/rules", admin1, `{"rules":[]}`), 3, "")
	wantRouting(t, call(t, srv2, "GET", "/v1/routing/rules", admin1, ""), 3, "")
	if got := testutil.ToFloat64(e.store.writes); got != 3 {
		t.Fatalf("writes of the first instance: %v, want 3", got)
	}
}

// What ValidateRouting refuses is 400 with the rule and field named
// (invalid_condition with reason, line and column for a condition), and
// nothing is written; a partner of another tenant is never accepted.
func TestRoutingRefusals(t *testing.T) {
	e := newRoutingEnv(t)
	rule := func(fields string) string {
		return `{"rules":[{"id":"a","condition":"true","strategy":"first","pool":[{"partner":"dealer-sp"}]` + fields + `}]}`
	}
	for _, tt := range []struct{ body, code, message string }{
		{rule(`,"id":""`), "invalid_rules", "rule 1: id: the rule has no id"},
		{`{"rules":[{"id":"a","condition":"true","strategy":"first","pool":[{"partner":"dealer-x"}]}]}`, "invalid_rules",
			`rule 1 (a): pool[0].partner: "dealer-x" is not a partner of this tenant with a delivery`},
		{rule(`,"fallback":"dealer-x"`), "invalid_rules", `rule 1 (a): fallback: "dealer-x" is neither a rule id of this list nor a partner of this tenant`},
		{rule(`,"cap_per_day":{"dealer-x":1}`), "invalid_rules", `rule 1 (a): cap_per_day.dealer-x: "dealer-x" is not a partner of this tenant with a delivery`},
		{rule(`,"strategy":"random"`), "invalid_rules", `rule 1 (a): strategy: "random" is not a strategy: first, round_robin or weighted`},
		{rule(`,"sla":"soon"`), "invalid_rules", `rule 1 (a): sla: "soon" is not a positive Go duration (30m, 1h30m)`},
		{rule(`,"fallback":"a"`), "invalid_rules", `rule 1 (a): fallback: a cycle of fallbacks: a -> a`},
		{rule(`,"when":"now"`), "bad_request", `the body is not the JSON this endpoint takes: json: unknown field "when"`},
		{`{}`, "bad_request", `rules is required: the tenant's whole ordered list ({"rules": []} removes every rule)`},
		{`{"rules":null}`, "bad_request", `rules is required: the tenant's whole ordered list ({"rules": []} removes every rule)`},
		// Found by the contract tier: null, which the document does not
		// allow, was read as the field left out.
		{rule(`,"fallback":null`), "bad_request", `the body is not the JSON this endpoint takes: a rule's fallback is null: leave the field out instead`},
		{`{"rules":[{"id":"a","condition":"true","strategy":"first","pool":[{"partner":"dealer-sp","weight":null}]}]}`, "bad_request",
			`the body is not the JSON this endpoint takes: a rule's weight is null: leave the field out instead`},
		{rule(`,"cap_per_day":{"dealer-sp":null}`), "bad_request", `the body is not the JSON this endpoint takes: a rule's dealer-sp is null: leave the field out instead`},
		{`{"rules":[null]}`, "bad_request", `the body is not the JSON this endpoint takes: a rule is null: send an object`},
	} {
		a := call(t, e.srv, "PUT", "/v1/routing/rules", admin1, tt.body)
		want(t, a, 400, tt.code)
		if a.body["message"] != tt.message {
			t.Errorf("PUT %s: message %q, want %q", tt.body, a.body["message"], tt.message)
		}
	}
	a := call(t, e.srv, "PUT", "/v1/routing/rules", admin1, rule(`,"condition":"lead.properties.region == \"SP\" &&\n  tags == \"x\""`))
	want(t, a, 400, "invalid_condition")
	if a.body["reason"] != "type" || a.body["line"] != 2.0 || a.body["column"] != 8.0 || !strings.HasPrefix(a.body["message"].(string), "rule 1 (a): condition: refused at 2:8 (type): ") {
		t.Fatalf("a condition refused: %v", a.body)
	}
	// A list over the bound is 413, nothing written.
	var b strings.Builder
	b.WriteString(`{"rules":[`)
	for i := range 250 {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString(`{"id":"r` + strconv.Itoa(i) + `","condition":"lead.id != \"` + strings.Repeat("x", 3900) + `\"","strategy":"first","pool":[{"partner":"dealer-sp"}]}`)
	}
	b.WriteString("]}")
	want(t, call(t, e.srv, "PUT", "/v1/routing/rules", admin1, b.String()), 413, "too_large")
	if n := len(e.records(t)); n != 0 {
		t.Fatalf("%d records written by refused requests", n)
	}
	wantRouting(t, call(t, e.srv, "GET", "/v1/routing/rules", admin1, ""), 0, "")
}

// Both routes need the admin scope: 403 naming it, 401 without a key.
func TestRoutingScopes(t *testing.T) {
	e := newRoutingEnv(t)
	for _, op := range []struct{ method, body string }{{"PUT", issueRouting}, {"GET", ""}} {
		a := call(t, e.srv, op.method, "/v1/routing/rules", readerKey, op.body)
		want(t, a, 403, "forbidden")
		if a.body["required_scope"] != "admin" {
			t.Errorf("%s: %v", op.method, a.body)
		}
		want(t, call(t, e.srv, op.method, "/v1/routing/rules", "", op.body), 401, "unauthorized")
	}
	if n := len(e.records(t)); n != 0 {
		t.Fatalf("%d records written without the scope", n)
	}
}

// A store that has not read its topic answers 503 not_ready after the
// write timeout; a write's 200 comes only after Kafka acknowledged it
// (produce requests held back 700ms: the answer waits for them).
func TestRoutingUnavailable(t *testing.T) {
	e := newRoutingEnv(t)
	srv, _ := e.serve(t, false, Config{WriteTimeout: 100 * time.Millisecond})
	for _, op := range []struct{ method, body string }{{"PUT", issueRouting}, {"GET", ""}} {
		a := call(t, srv, op.method, "/v1/routing/rules", admin1, op.body)
		want(t, a, 503, "not_ready")
		if a.header.Get("Retry-After") == "" {
			t.Errorf("%s: no Retry-After", op.method)
		}
	}

	var slow atomic.Bool
	e.cluster.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		e.cluster.KeepControl()
		if slow.Load() {
			e.cluster.SleepControl(func() { time.Sleep(700 * time.Millisecond) })
		}
		return nil, nil, false
	})
	slow.Store(true)
	start := time.Now()
	wantRouting(t, call(t, e.srv, "PUT", "/v1/routing/rules", admin1, issueRouting), 1, "sp,national")
	if took := time.Since(start); took < 700*time.Millisecond {
		t.Fatalf("the PUT answered after %v, before Kafka acknowledged (700ms)", took)
	}
	slow.Store(false)
	if n := len(e.records(t)); n != 1 {
		t.Fatalf("%d records after the PUT's 200", n)
	}
}

// A write Kafka holds past the write timeout (a produce request in flight,
// which the idempotent producer does not fail) is answered 503
// kafka_unavailable at the timeout, not when Kafka answers; the record may
// still land (a retry writes the same list again).
func TestRoutingWriteHeldPastTimeout(t *testing.T) {
	e := newRoutingEnv(t)
	srv, _ := e.serve(t, true, Config{WriteTimeout: 200 * time.Millisecond})
	release := make(chan struct{})
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	t.Cleanup(unblock)
	e.cluster.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		e.cluster.KeepControl()
		e.cluster.SleepControl(func() { <-release })
		return nil, nil, false
	})
	time.AfterFunc(5*time.Second, unblock) // so that a server that waits for Kafka answers at all
	start := time.Now()
	a := call(t, srv, "PUT", "/v1/routing/rules", admin1, issueRouting)
	took := time.Since(start)
	unblock()
	want(t, a, 503, "kafka_unavailable")
	if took > 2*time.Second {
		t.Fatalf("answered after %v; the write timeout is 200ms", took)
	}
}

type memLeads struct {
	m     map[string]*schemas.RoutingTable
	ready bool
}

func (m *memLeads) Routing(tenant string) (*schemas.RoutingTable, error) { return m.m[tenant], nil }
func (m *memLeads) Ready() bool                                          { return m.ready }

// GET /v1/leads/{id}: the lead of the caller's tenant with its times as
// RFC 3339 and every decision (rule, version, cause, instant, candidates
// and skip reasons); profiles:read or admin; another tenant's lead and an
// unknown one are 404; a loading view 503.
func TestGetLead(t *testing.T) {
	ms := func(s string) int64 {
		tm, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return tm.UnixMilli()
	}
	lead := &schemas.LeadState{ID: "L-1", Status: schemas.LeadRouted, Partner: "dealer-cps", Tried: []string{"dealer-sp", "dealer-cps"},
		Deadline: ms("2026-12-06T11:10:00Z"), MaxReroutes: 2, SLAReroutes: 0,
		Lead: &schemas.RoutingLead{ID: "L-1", EventID: "e-1", Type: "lead.created", Time: ms("2026-12-06T10:00:00Z"),
			Properties:  map[string]string{"region": `"SP"`, "value": `42000`, "raw": `not json`},
			Traits:      map[string]string{"name": `"Ana"`},
			Identifiers: map[string][]string{"email": {"ana@example.com"}},
			Profile:     &schemas.Profile{ID: "p_1", Tenant: "t1"}},
		History: []schemas.RoutingDecision{
			{Attempt: 1, Cause: schemas.CauseLead, At: ms("2026-12-06T10:00:00Z"), Rule: "sp", RuleVersion: 3, Partner: "dealer-sp",
				Candidates: []schemas.RoutingCandidate{{Rule: "sp", Partner: "dealer-sp"}, {Rule: "sp", Partner: "dealer-cps", Skip: schemas.SkipTurn}}},
			{Attempt: 2, Cause: schemas.CauseRejected, At: ms("2026-12-06T10:40:00Z"), Rule: "sp", RuleVersion: 3, Partner: "dealer-cps",
				Candidates: []schemas.RoutingCandidate{{Rule: "sp", Partner: "dealer-sp", Skip: schemas.SkipTried}, {Rule: "sp", Partner: "dealer-cps"}}},
		}}
	closed := &schemas.LeadState{ID: "L-2", Status: schemas.LeadUnrouted, Reason: schemas.UnroutedNoMatch, ClosedAt: ms("2026-12-06T09:00:00Z"),
		Lead: &schemas.RoutingLead{ID: "L-2", EventID: "L-2", Type: "lead.created", Time: ms("2026-12-06T09:00:00Z")},
		History: []schemas.RoutingDecision{{Attempt: 1, Cause: schemas.CauseLead, At: ms("2026-12-06T09:00:00Z"), Unrouted: schemas.UnroutedNoMatch,
			Candidates: []schemas.RoutingCandidate{{Rule: "sp", Skip: schemas.SkipNoMatch}, {Rule: "gold", Skip: schemas.SkipError, Error: "no such key: tier"}}}}}
	leads := &memLeads{ready: true, m: map[string]*schemas.RoutingTable{
		"t1": {Tenant: "t1", Leads: map[string]*schemas.LeadState{"L-1": lead, "L-2": closed, "a/b c": {ID: "a/b c", Status: schemas.LeadAccepted, Partner: "dealer-rj"}}},
		"t2": {Tenant: "t2", Leads: map[string]*schemas.LeadState{"L-9": {ID: "L-9", Status: schemas.LeadRouted}}},
	}}
	norm, _ := normalize.New(normalize.Config{})
	api, err := NewAPI(&memNodes{ready: true}, routingRegistry(t), norm, Config{Publisher: noPublisher{}, Leads: leads})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	api.Register(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	get := func(id, key string) (answer, string) {
		t.Helper()
		a := call(t, srv, "GET", "/v1/leads/"+url.PathEscape(id), key, "")
		raw, _ := json.Marshal(a.body)
		return a, string(raw)
	}

	a, _ := get("L-1", readerKey)
	wantBody := map[string]any{
		"id": "L-1", "status": "routed", "partner": "dealer-cps", "tried": []any{"dealer-sp", "dealer-cps"},
		"deadline": "2026-12-06T11:10:00Z", "max_reroutes": 2.0, "sla_reroutes": 0.0,
		"lead": map[string]any{"id": "L-1", "event_id": "e-1", "type": "lead.created", "time": "2026-12-06T10:00:00Z",
			"properties":  map[string]any{"region": "SP", "value": 42000.0, "raw": "not json"},
			"traits":      map[string]any{"name": "Ana"},
			"identifiers": map[string]any{"email": []any{"ana@example.com"}},
			"profile":     a.body["lead"].(map[string]any)["profile"]},
		"history": []any{
			map[string]any{"attempt": 1.0, "cause": "lead", "at": "2026-12-06T10:00:00Z", "rule": "sp", "rule_version": 3.0, "partner": "dealer-sp",
				"candidates": []any{map[string]any{"rule": "sp", "partner": "dealer-sp"}, map[string]any{"rule": "sp", "partner": "dealer-cps", "skip": "turn"}}},
			map[string]any{"attempt": 2.0, "cause": "rejected", "at": "2026-12-06T10:40:00Z", "rule": "sp", "rule_version": 3.0, "partner": "dealer-cps",
				"candidates": []any{map[string]any{"rule": "sp", "partner": "dealer-sp", "skip": "tried"}, map[string]any{"rule": "sp", "partner": "dealer-cps"}}},
		},
	}
	if a.status != 200 || !reflect.DeepEqual(a.body, wantBody) {
		t.Fatalf("GET L-1: %d\n%v\nwant\n%v", a.status, a.body, wantBody)
	}
	if p := a.body["lead"].(map[string]any)["profile"].(map[string]any); p["id"] != "p_1" {
		t.Fatalf("the lead's profile: %v", p)
	}
	// Closed and unrouted: closed_at, the reason, the rules skipped with
	// their reasons; no partner, no deadline.
	a, raw := get("L-2", "admin-only-t1")
	h := a.body["history"].([]any)[0].(map[string]any)
	if a.status != 200 || a.body["status"] != "unrouted" || a.body["reason"] != "no_match" || a.body["closed_at"] != "2026-12-06T09:00:00Z" ||
		a.body["partner"] != nil || a.body["deadline"] != nil || h["unrouted"] != "no_match" || h["rule"] != nil ||
		!strings.Contains(raw, `{"error":"no such key: tier","rule":"gold","skip":"error"}`) || len(a.body["tried"].([]any)) != 0 {
		t.Fatalf("GET L-2: %d %s", a.status, raw)
	}
	// An id with a slash and a space (escaped in the path).
	if a, raw := get("a/b c", admin1); a.status != 200 || a.body["status"] != "accepted" || a.body["lead"] != nil {
		t.Fatalf("GET a/b c: %d %s", a.status, raw)
	}
	// Another tenant's lead, an unknown one, a tenant with no state.
	a, _ = get("L-9", readerKey)
	want(t, a, 404, "not_found")
	a, _ = get("L-1", admin2)
	want(t, a, 404, "not_found")
	a, _ = get("nope", readerKey)
	want(t, a, 404, "not_found")
	a, _ = get(" L-1", readerKey)
	want(t, a, 400, "bad_request")
	a, _ = get(strings.Repeat("x", 1001), readerKey)
	want(t, a, 400, "bad_request")
	// Scopes: events:write alone is not enough; no key is 401.
	a, _ = get("L-1", writerKey)
	want(t, a, 403, "forbidden")
	if a.body["required_scope"] != "profiles:read" || !strings.Contains(a.body["message"].(string), "profiles:read, admin") {
		t.Fatalf("403: %v", a.body)
	}
	a, _ = get("L-1", "")
	want(t, a, 401, "unauthorized")
	// While the view loads: 503 with Retry-After.
	leads.ready = false
	a, _ = get("L-1", readerKey)
	want(t, a, 503, "not_ready")
	if a.header.Get("Retry-After") != "1" {
		t.Fatalf("503 without Retry-After: %v", a.header)
	}
}
