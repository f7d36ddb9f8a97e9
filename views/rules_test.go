package views

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/rolodex/rolodex/intake"
	"github.com/rolodex/rolodex/internal/kafkaclient"
	"github.com/rolodex/rolodex/normalize"
	"github.com/rolodex/rolodex/partners"
	"github.com/rolodex/rolodex/schemas"
)

// rulesEnv serves the API with a rule store on kfake (over TCP): keys
// admin1 (t1), admin2 (t2) with every scope, readerKey (t1) without admin.
type rulesEnv struct {
	cluster *kfake.Cluster
	srv     *httptest.Server
	brokers []string
	store   *RuleStore
	prom    *prometheus.Registry
}

func newRulesEnv(t *testing.T, nodes *memNodes) *rulesEnv {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(4, schemas.TopicEvents))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	// Compacted, as cmd creates it.
	if err := c.CreateTopic(schemas.TopicTagRules, 4, map[string]string{"cleanup.policy": "compact"}); err != nil {
		t.Fatal(err)
	}
	e := &rulesEnv{cluster: c, brokers: c.ListenAddrs()}
	e.srv, e.store, e.prom = e.serve(t, nodes, true)
	return e
}

// serve starts an API instance with its own rule store on the cluster;
// run false leaves the store not started (never ready).
func (e *rulesEnv) serve(t *testing.T, nodes *memNodes, run bool) (*httptest.Server, *RuleStore, *prometheus.Registry) {
	return e.serveWith(t, nodes, run, Config{})
}

func (e *rulesEnv) serveWith(t *testing.T, nodes *memNodes, run bool, cfg Config) (*httptest.Server, *RuleStore, *prometheus.Registry) {
	t.Helper()
	all := partners.AllScopes
	reg, err := partners.New([]partners.Partner{
		{Name: "p1", Tenant: "t1", Keys: []string{readerKey}},
		{Name: "a1", Tenant: "t1", ScopedKeys: partners.KeyList{{Key: admin1, Scopes: all}}},
		{Name: "a2", Tenant: "t2", ScopedKeys: partners.KeyList{{Key: admin2, Scopes: all}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	norm, err := normalize.New(normalize.Config{})
	if err != nil {
		t.Fatal(err)
	}
	cl, err := kafkaclient.NewClient(kafkaclient.Config{Brokers: e.brokers})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	prom := prometheus.NewRegistry()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	store, err := NewRuleStore(RuleStoreConfig{Kafka: kafkaclient.Config{Brokers: e.brokers}, Registerer: prom, Logger: logger,
		Now: func() time.Time { return clock }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	if run {
		runStore(t, "rule store", store.compactedCopy)
	}
	cfg.Publisher, cfg.Rules, cfg.Registerer, cfg.Logger = intake.NewPublisher(cl), store, prom, logger
	cfg.Now = func() time.Time { return clock }
	api, err := NewAPI(nodes, reg, norm, cfg)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	api.Register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv, store, prom
}

// runStore runs a store's copy until the test ends and waits until it is
// ready.
func runStore(t *testing.T, what string, c *compactedCopy) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("%s: %v", what, err)
		}
	})
	wctx, wcancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer wcancel()
	if err := c.waitReady(wctx, errors.New("not ready")); err != nil {
		t.Fatalf("the %s is not ready after 30s", what)
	}
}

// call sends a request to srv and decodes a JSON answer (nil for none);
// header is more headers, name and value.
func call(t *testing.T, srv *httptest.Server, method, path, key, body string, header ...string) answer {
	t.Helper()
	req, err := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	var m map[string]any
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &m); err != nil {
			t.Fatalf("%s %s: %d, body is not JSON: %q", method, path, res.StatusCode, raw)
		}
	}
	if res.StatusCode >= 400 && (m["request_id"] == nil || m["request_id"] != res.Header.Get("X-Request-Id")) {
		t.Errorf("%s %s: request_id %v, X-Request-Id %q", method, path, m["request_id"], res.Header.Get("X-Request-Id"))
	}
	return answer{res.StatusCode, res.Header, m}
}

func (e *rulesEnv) call(t *testing.T, method, path, key, body string) answer {
	t.Helper()
	return call(t, e.srv, method, path, key, body)
}

// records reads every record of rolodex.tag.rules.
func (e *rulesEnv) records(t *testing.T) []*kgo.Record {
	t.Helper()
	return topicRecords(t, e.brokers, schemas.TopicTagRules)
}

// topicRecords reads every record of topic, each partition up to its end
// offset (compaction leaves gaps).
func topicRecords(t *testing.T, brokers []string, topic string) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	left := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			left[o.Partition] = o.Offset
		}
	})
	var out []*kgo.Record
	for len(left) > 0 {
		f := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %d records; partitions %v not to their end", len(out), left)
		}
		for _, r := range f.Records() {
			out = append(out, r)
			if r.Offset+1 >= left[r.Partition] {
				delete(left, r.Partition)
			}
		}
	}
	return out
}

// wantRule checks a rule answer's fields.
func wantRule(t *testing.T, a answer, status int, id, tag, condition string, enabled bool, version int, change string) {
	t.Helper()
	b := a.body
	if a.status != status || b["id"] != id || b["tag"] != tag || b["condition"] != condition || b["enabled"] != enabled ||
		b["version"] != float64(version) || b["updated_at"] != "2026-12-06T12:00:00.123Z" || b["updated_by"] != "a1" {
		t.Fatalf("answer %d %v, want %d: rule %s tag %s condition %q enabled %v version %d", a.status, b, status, id, tag, condition, enabled, version)
	}
	if change != "" && b["change"] != change {
		t.Fatalf("change %v, want %s", b["change"], change)
	}
}

const hotLead = `events("page.viewed", duration("168h")) >= 3`

// A rule's life: created at version 1, an unchanged PUT writes nothing,
// every change and the delete is a new version, a PUT after the delete
// continues the count; each answer is visible to the next read at once.
// The records on the topic are exactly the versions, the delete one with
// deleted set (no tombstone), and a new instance reads the same rules.
func TestRuleLifecycle(t *testing.T) {
	e := newRulesEnv(t, &memNodes{ready: true})
	path := "/v1/tag-rules/hot-lead"
	a := e.call(t, "PUT", path, admin1, `{"tag":"hot","condition":`+jsonString(hotLead)+`,"description":"3 views in 7 days"}`)
	wantRule(t, a, 200, "hot-lead", "hot", hotLead, true, 1, "created")
	if a.body["description"] != "3 views in 7 days" {
		t.Fatalf("description: %v", a.body)
	}
	wantRule(t, e.call(t, "GET", path, admin1, ""), 200, "hot-lead", "hot", hotLead, true, 1, "")
	// The same rule again: nothing written, the version stays.
	a = e.call(t, "PUT", path, admin1, `{"tag":"hot","condition":`+jsonString(hotLead)+`,"description":"3 views in 7 days","enabled":true}`)
	wantRule(t, a, 200, "hot-lead", "hot", hotLead, true, 1, "unchanged")
	// A change of the description, then of enabled.
	wantRule(t, e.call(t, "PUT", path, admin1, `{"tag":"hot","condition":`+jsonString(hotLead)+`}`), 200, "hot-lead", "hot", hotLead, true, 2, "updated")
	wantRule(t, e.call(t, "PUT", path, admin1, `{"tag":"hot","condition":`+jsonString(hotLead)+`,"enabled":false}`), 200, "hot-lead", "hot", hotLead, false, 3, "updated")
	wantRule(t, e.call(t, "GET", path, admin1, ""), 200, "hot-lead", "hot", hotLead, false, 3, "")
	// A second rule; the list is by id.
	wantRule(t, e.call(t, "PUT", "/v1/tag-rules/a-city", admin1, `{"tag":"campinas","condition":"has(traits.city) && traits.city == \"Campinas\""}`),
		200, "a-city", "campinas", `has(traits.city) && traits.city == "Campinas"`, true, 1, "created")
	if ids := listIDs(t, e.call(t, "GET", "/v1/tag-rules", admin1, "")); ids != "a-city,hot-lead" {
		t.Fatalf("list: %s", ids)
	}
	if got := testutil.ToFloat64(e.store.active.WithLabelValues("t1")); got != 1 {
		t.Fatalf("active rules of t1: %v, want 1 (hot-lead is disabled)", got)
	}
	// Delete: 204, then 404 everywhere, and left out of the list.
	if a := e.call(t, "DELETE", path, admin1, ""); a.status != 204 || a.body != nil {
		t.Fatalf("DELETE: %d %v", a.status, a.body)
	}
	want(t, e.call(t, "GET", path, admin1, ""), 404, "not_found")
	want(t, e.call(t, "DELETE", path, admin1, ""), 404, "not_found")
	if ids := listIDs(t, e.call(t, "GET", "/v1/tag-rules", admin1, "")); ids != "a-city" {
		t.Fatalf("list after the delete: %s", ids)
	}
	// Created again: the count goes on from the delete's version 4.
	wantRule(t, e.call(t, "PUT", path, admin1, `{"tag":"hot","condition":`+jsonString(hotLead)+`}`), 200, "hot-lead", "hot", hotLead, true, 5, "created")

	var versions []string
	for _, r := range e.records(t) {
		if r.Value == nil {
			t.Fatalf("a tombstone for %s", r.Key)
		}
		var rule schemas.TagRule
		if err := json.Unmarshal(r.Value, &rule); err != nil {
			t.Fatal(err)
		}
		if string(r.Key) != schemas.RuleKey("t1", rule.ID) || rule.Tenant != "t1" || rule.UpdatedBy != "a1" {
			t.Fatalf("record %s: %+v", r.Key, rule)
		}
		if rule.ID == "hot-lead" {
			versions = append(versions, fmt.Sprintf("%d:%v:%v", rule.Version, rule.Enabled, rule.Deleted))
		}
	}
	if got := strings.Join(versions, " "); got != "1:true:false 2:true:false 3:false:false 4:false:true 5:true:false" {
		t.Fatalf("records of hot-lead (version:enabled:deleted): %s", got)
	}
	for op, n := range map[string]float64{"create": 3, "update": 2, "delete": 1} {
		if got := testutil.ToFloat64(e.store.writes.WithLabelValues(op)); got != n {
			t.Errorf("writes{op=%s} = %v, want %v", op, got, n)
		}
	}

	// Another instance reads the topic and continues the versions.
	srv2, _, _ := e.serve(t, &memNodes{ready: true}, true)
	a = call(t, srv2, "GET", "/v1/tag-rules/hot-lead", admin1, "")
	wantRule(t, a, 200, "hot-lead", "hot", hotLead, true, 5, "")
	wantRule(t, call(t, srv2, "PUT", path, admin1, `{"tag":"hotter","condition":`+jsonString(hotLead)+`}`), 200, "hot-lead", "hotter", hotLead, true, 6, "updated")
}

// Read your writes: with the store's fetches delayed, the answer of a PUT
// or DELETE waits until the store has read the record, so a GET right
// after it sees the change.
func TestRuleReadYourWrites(t *testing.T) {
	e := newRulesEnv(t, &memNodes{ready: true})
	var slow atomic.Bool
	e.cluster.ControlKey(int16(kmsg.Fetch), func(kmsg.Request) (kmsg.Response, error, bool) {
		e.cluster.KeepControl()
		if slow.Load() {
			e.cluster.SleepControl(func() { time.Sleep(150 * time.Millisecond) })
		}
		return nil, nil, false
	})
	slow.Store(true)
	for i := 1; i <= 5; i++ {
		a := e.call(t, "PUT", "/v1/tag-rules/r", admin1, fmt.Sprintf(`{"tag":"t","condition":"event_count > %d"}`, i))
		if a.status != 200 || a.body["version"] != float64(i) {
			t.Fatalf("PUT %d: %d %v", i, a.status, a.body)
		}
		if a := e.call(t, "GET", "/v1/tag-rules/r", admin1, ""); a.body["version"] != float64(i) {
			t.Fatalf("GET right after PUT %d: %d %v", i, a.status, a.body)
		}
	}
	if a := e.call(t, "DELETE", "/v1/tag-rules/r", admin1, ""); a.status != 204 {
		t.Fatalf("DELETE: %d %v", a.status, a.body)
	}
	want(t, e.call(t, "GET", "/v1/tag-rules/r", admin1, ""), 404, "not_found")
	slow.Store(false)
}

// A deleted rule's version survives compaction: the topic keeps its
// deleted record, and a new instance counts on from it.
func TestRuleVersionSurvivesCompaction(t *testing.T) {
	e := newRulesEnv(t, &memNodes{ready: true})
	e.call(t, "PUT", "/v1/tag-rules/r", admin1, `{"tag":"t","condition":"true"}`)
	e.call(t, "PUT", "/v1/tag-rules/r", admin1, `{"tag":"t","condition":"false"}`)
	if a := e.call(t, "DELETE", "/v1/tag-rules/r", admin1, ""); a.status != 204 {
		t.Fatalf("DELETE: %d %v", a.status, a.body)
	}
	e.cluster.Compact()
	// kfake, like Kafka, keeps the latest record of a key (and may keep
	// more in the segment it writes to).
	recs := e.records(t)
	last := string(recs[len(recs)-1].Value)
	if len(recs) >= 3 || !strings.Contains(last, `"deleted":true`) || !strings.Contains(last, `"version":3`) {
		t.Fatalf("after compaction: %d records, the last %s", len(recs), last)
	}
	srv, _, _ := e.serve(t, &memNodes{ready: true}, true)
	want(t, call(t, srv, "GET", "/v1/tag-rules/r", admin1, ""), 404, "not_found")
	wantRule(t, call(t, srv, "PUT", "/v1/tag-rules/r", admin1, `{"tag":"t","condition":"true"}`), 200, "r", "t", "true", true, 4, "created")
}

func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func listIDs(t *testing.T, a answer) string {
	t.Helper()
	if a.status != 200 {
		t.Fatalf("list: %d %v", a.status, a.body)
	}
	var ids []string
	for _, r := range a.body["rules"].([]any) {
		ids = append(ids, r.(map[string]any)["id"].(string))
	}
	return strings.Join(ids, ",")
}

// Concurrent PUTs of one rule to one instance get distinct versions, and
// the last answer's version is what GET shows.
func TestRuleConcurrentVersions(t *testing.T) {
	e := newRulesEnv(t, &memNodes{ready: true})
	const n = 8
	var wg sync.WaitGroup
	got := make([]float64, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a := e.call(t, "PUT", "/v1/tag-rules/r", admin1, fmt.Sprintf(`{"tag":"t","condition":"event_count > %d"}`, i))
			got[i], _ = a.body["version"].(float64)
		}()
	}
	wg.Wait()
	seen := map[float64]bool{}
	for _, v := range got {
		if v < 1 || v > n || seen[v] {
			t.Fatalf("versions %v: want each of 1..%d once", got, n)
		}
		seen[v] = true
	}
	if a := e.call(t, "GET", "/v1/tag-rules/r", admin1, ""); a.body["version"] != float64(n) {
		t.Fatalf("GET: %v, want version %d", a.body, n)
	}
}

// A condition rules.Compile refuses is 400 invalid_condition with the
// reason, line and column, and nothing is written; so are bad names.
func TestRuleRefusals(t *testing.T) {
	e := newRulesEnv(t, &memNodes{ready: true})
	for _, tt := range []struct {
		condition, reason string
		line, column      float64
	}{
		{"traits.city == ", "syntax", 1, 16},
		{`events("a", duration("1h")) >= 101`, "events", 1, 1},
		{"event_count > 1 &&\n  tags == \"x\"", "type", 2, 8},
		{"traits.vip", "result", 1, 1},
	} {
		for _, path := range []string{"/v1/tag-rules/r", "/v1/tag-rules/evaluate"} {
			method, body := "PUT", `{"tag":"t","condition":`+jsonString(tt.condition)+`}`
			if strings.HasSuffix(path, "evaluate") {
				method, body = "POST", `{"condition":`+jsonString(tt.condition)+`,"profile":{}}`
			}
			a := e.call(t, method, path, admin1, body)
			want(t, a, 400, "invalid_condition")
			if a.body["reason"] != tt.reason || a.body["line"] != tt.line || a.body["column"] != tt.column {
				t.Errorf("%s %q: %v, want %s at %v:%v", method, tt.condition, a.body, tt.reason, tt.line, tt.column)
			}
		}
	}
	for _, tt := range []struct{ path, body, code string }{
		{"/v1/tag-rules/bad%20id", `{"tag":"t","condition":"true"}`, "invalid_name"},
		{"/v1/tag-rules/r", `{"tag":"a tag","condition":"true"}`, "invalid_name"},
		{"/v1/tag-rules/r", `{"tag":"t","condition":"true","when":"now"}`, "bad_request"},
		{"/v1/tag-rules/r", `{"tag":"t","condition":"true","description":"` + strings.Repeat("x", 1001) + `"}`, "bad_request"},
	} {
		want(t, e.call(t, "PUT", tt.path, admin1, tt.body), 400, tt.code)
	}
	// evaluate is the dry run's path, not a rule id.
	for _, method := range []string{"PUT", "GET", "DELETE"} {
		a := e.call(t, method, "/v1/tag-rules/evaluate", admin1, `{"tag":"t","condition":"true"}`)
		want(t, a, 405, "method_not_allowed")
		if a.header.Get("Allow") != "POST" {
			t.Errorf("%s /v1/tag-rules/evaluate: Allow %q", method, a.header.Get("Allow"))
		}
	}
	if n := len(e.records(t)); n != 0 {
		t.Fatalf("%d records written by refused requests", n)
	}
	if got := testutil.ToFloat64(e.store.writes.WithLabelValues("create")); got != 0 {
		t.Fatalf("writes: %v", got)
	}
}

// Every rule operation needs the admin scope: 403 with required_scope for
// a key without it, 401 without a key.
func TestRuleScopes(t *testing.T) {
	e := newRulesEnv(t, &memNodes{ready: true})
	for _, op := range []struct{ method, path, body string }{
		{"PUT", "/v1/tag-rules/r", `{"tag":"t","condition":"true"}`},
		{"GET", "/v1/tag-rules", ""},
		{"GET", "/v1/tag-rules/r", ""},
		{"DELETE", "/v1/tag-rules/r", ""},
		{"POST", "/v1/tag-rules/evaluate", `{"condition":"true","profile":{}}`},
	} {
		a := e.call(t, op.method, op.path, readerKey, op.body)
		want(t, a, 403, "forbidden")
		if a.body["required_scope"] != "admin" {
			t.Errorf("%s %s: %v", op.method, op.path, a.body)
		}
		want(t, e.call(t, op.method, op.path, "", op.body), 401, "unauthorized")
	}
	if n := len(e.records(t)); n != 0 {
		t.Fatalf("%d records written without the scope", n)
	}
}

// Nothing crosses tenants: t2 neither sees nor deletes t1's rule, and its
// rule of the same id is its own, with its own versions.
func TestRuleTenants(t *testing.T) {
	e := newRulesEnv(t, &memNodes{ready: true})
	wantRule(t, e.call(t, "PUT", "/v1/tag-rules/r", admin1, `{"tag":"t1-tag","condition":"true"}`), 200, "r", "t1-tag", "true", true, 1, "created")
	wantRule(t, e.call(t, "PUT", "/v1/tag-rules/r", admin1, `{"tag":"t1-tag","condition":"false"}`), 200, "r", "t1-tag", "false", true, 2, "updated")
	want(t, e.call(t, "GET", "/v1/tag-rules/r", admin2, ""), 404, "not_found")
	want(t, e.call(t, "DELETE", "/v1/tag-rules/r", admin2, ""), 404, "not_found")
	if ids := listIDs(t, e.call(t, "GET", "/v1/tag-rules", admin2, "")); ids != "" {
		t.Fatalf("t2 lists %s", ids)
	}
	a := e.call(t, "PUT", "/v1/tag-rules/r", admin2, `{"tag":"t2-tag","condition":"true"}`)
	if a.status != 200 || a.body["version"] != 1.0 || a.body["tag"] != "t2-tag" || a.body["change"] != "created" {
		t.Fatalf("t2's PUT: %d %v", a.status, a.body)
	}
	wantRule(t, e.call(t, "GET", "/v1/tag-rules/r", admin1, ""), 200, "r", "t1-tag", "false", true, 2, "")
	if got := testutil.ToFloat64(e.store.active.WithLabelValues("t2")); got != 1 {
		t.Fatalf("active rules of t2: %v", got)
	}
}

// While the store has not read the topic, rule operations wait for it up
// to the write timeout, then answer 503 not_ready.
func TestRuleStoreNotReady(t *testing.T) {
	e := newRulesEnv(t, &memNodes{ready: true})
	srv, _, _ := e.serveWith(t, &memNodes{ready: true}, false, Config{WriteTimeout: 100 * time.Millisecond})
	for _, op := range []struct{ method, path, body string }{
		{"PUT", "/v1/tag-rules/r", `{"tag":"t","condition":"true"}`},
		{"GET", "/v1/tag-rules", ""},
		{"GET", "/v1/tag-rules/r", ""},
		{"DELETE", "/v1/tag-rules/r", ""},
	} {
		a := call(t, srv, op.method, op.path, admin1, op.body)
		want(t, a, 503, "not_ready")
		if a.header.Get("Retry-After") == "" {
			t.Errorf("%s %s: no Retry-After", op.method, op.path)
		}
	}
}

// The dry run: on a profile of the tenant by id (folded with its event
// times, so events() and last() see them) and on a profile given inline
// (event_times in Unix ms or RFC 3339), at the current time or at "now";
// a runtime error is 200 with result false and the error.
func TestEvaluate(t *testing.T) {
	nodes, f := newFixture()
	ms := func(d time.Duration) int64 { return clock.Add(-d).UnixMilli() }
	root := nodes.m[f.root]
	root.Own.Times = map[string][]int64{"page.viewed": {ms(time.Hour), ms(100 * time.Hour)}}
	root.Own.Counters = map[string]int64{"page.viewed": 3}
	child := root.Members[f.child]
	child.Times = map[string][]int64{"page.viewed": {ms(2 * time.Hour)}, "purchase.completed": {ms(24 * time.Hour)}}
	root.Members[f.child] = child
	e := newRulesEnv(t, nodes)
	eval := func(key, body string) answer {
		t.Helper()
		return e.call(t, "POST", "/v1/tag-rules/evaluate", key, body)
	}
	reads := func(a answer) map[string]any {
		t.Helper()
		out := map[string]any{}
		for _, r := range a.body["reads"].([]any) {
			m := r.(map[string]any)
			out[m["expression"].(string)] = m["value"]
			if m["error"] != nil {
				out[m["expression"].(string)] = "error: " + m["error"].(string)
			}
		}
		return out
	}

	// By id (the child's id addresses the profile): three views within 7
	// days across the two nodes.
	a := eval(admin1, `{"condition":`+jsonString(hotLead)+`,"profile":"`+f.child+`"}`)
	if a.status != 200 || a.body["result"] != true || a.body["error"] != nil || a.body["now"] != "2026-12-06T12:00:00.123Z" {
		t.Fatalf("by id: %d %v", a.status, a.body)
	}
	if r := reads(a); r[`events("page.viewed", duration("168h"))`] != 3.0 {
		t.Fatalf("reads: %v", r)
	}
	// At a later "now" the oldest view (100h before the clock) has left a
	// 101h window.
	a = eval(admin1, `{"condition":"events(\"page.viewed\", duration(\"101h\")) >= 3","profile":"`+f.root+`","now":"2026-12-06T13:00:00.123Z"}`)
	if a.status != 200 || a.body["result"] != false {
		t.Fatalf("later now: %d %v", a.status, a.body)
	}
	if r := reads(a); r[`events("page.viewed", duration("101h"))`] != 2.0 {
		t.Fatalf("reads: %v", r)
	}
	a = eval(admin1, `{"condition":"last(\"purchase.completed\") > now - duration(\"48h\") && counters[\"page.viewed\"] == 3","profile":"`+f.root+`"}`)
	if a.status != 200 || a.body["result"] != true {
		t.Fatalf("last(): %d %v", a.status, a.body)
	}
	if r := reads(a); r[`last("purchase.completed")`] != "2026-12-05T12:00:00.123Z" || r[`counters["page.viewed"]`] != 3.0 {
		t.Fatalf("reads: %v", r)
	}
	// Another tenant's profile, or an unknown one, is not found.
	want(t, eval(admin2, `{"condition":"true","profile":"`+f.root+`"}`), 404, "not_found")
	want(t, eval(admin1, `{"condition":"true","profile":"p_0000000000000000000000000a"}`), 404, "not_found")
	want(t, eval(admin1, `{"condition":"true","profile":"nope"}`), 400, "bad_request")

	// Inline, with event times in both forms and in any order.
	inline := `{"id":"p_x","traits":{"city":"Campinas"},"channels":{"email":["ana@example.com"]},"counters":{"form.submitted":1},` +
		`"event_times":{"page.viewed":["2026-12-06T10:00:00Z",` + fmt.Sprint(ms(30*time.Hour)) + `,"2026-12-01T00:00:00Z","2026-11-01T00:00:00Z"]}}`
	for _, tt := range []struct {
		condition string
		result    bool
		read      string
		value     any
	}{
		{hotLead, true, `events("page.viewed", duration("168h"))`, 3.0},
		{`traits.city == "Campinas" && "email" in channels`, true, "traits.city", "Campinas"},
		{`counters["form.submitted"] > 0 && !blacklisted`, true, "blacklisted", false},
		{`last("purchase.completed") < now - duration("2160h")`, true, `last("purchase.completed")`, "1970-01-01T00:00:00Z"},
	} {
		a := eval(admin1, `{"condition":`+jsonString(tt.condition)+`,"profile":`+inline+`}`)
		if a.status != 200 || a.body["result"] != tt.result || a.body["error"] != nil {
			t.Errorf("inline %s: %d %v", tt.condition, a.status, a.body)
			continue
		}
		if r := reads(a); r[tt.read] != tt.value {
			t.Errorf("inline %s: reads %v, want %s = %v", tt.condition, r, tt.read, tt.value)
		}
	}
	// A runtime error: a missing trait.
	a = eval(admin1, `{"condition":"traits.plan == \"pro\"","profile":`+inline+`}`)
	if a.status != 200 || a.body["result"] != false || a.body["error"] == nil || !strings.Contains(a.body["error"].(string), "plan") {
		t.Fatalf("runtime error: %d %v", a.status, a.body)
	}
	for _, body := range []string{
		`{"condition":"true"}`,
		`{"condition":"true","profile":42}`,
		`{"condition":"true","profile":{"trait":{}}}`,
		`{"condition":"true","profile":{"event_times":{"a":["yesterday"]}}}`,
		`{"condition":"true","profile":{},"now":"today"}`,
	} {
		want(t, eval(admin1, body), 400, "bad_request")
	}
}
