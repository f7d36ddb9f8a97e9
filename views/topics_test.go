package views

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/rolodex/rolodex/internal/kafkaclient"
	"github.com/rolodex/rolodex/internal/kafkatest"
	"github.com/rolodex/rolodex/normalize"
	"github.com/rolodex/rolodex/partners"
	"github.com/rolodex/rolodex/schemas"
)

// fanoutEnv serves the fan-out API on kfake (over TCP). Tenant t1: the
// dealer (topics:write), the bank and the insurer (default scopes), ops
// (admin); tenant t2: the dealer2 (topics:write) and bank2.
type fanoutEnv struct {
	cluster *kfake.Cluster
	brokers []string
	srv     *httptest.Server
	topics  *TopicStore
	subs    *SubscriptionStore
}

const (
	dealerKey  = "dealer-key"
	bankKey    = "bank-key-1"
	bankKey2   = "bank-key-2"
	insurerKey = "insurer-key"
	opsKey     = "ops-admin-key"
	dealer2Key = "dealer2-key"
	bank2Key   = "bank2-key-1"
)

func fanoutRegistry(t *testing.T) *partners.Registry {
	t.Helper()
	tw := []partners.Scope{partners.ScopeTopicsWrite}
	reg, err := partners.New([]partners.Partner{
		{Name: "dealer", Tenant: "t1", ScopedKeys: partners.KeyList{{Key: dealerKey, Scopes: tw}}},
		{Name: "bank", Tenant: "t1", Keys: []string{bankKey}, ScopedKeys: partners.KeyList{{Key: bankKey2, Scopes: []partners.Scope{partners.ScopeEventsWrite}}}},
		{Name: "insurer", Tenant: "t1", Keys: []string{insurerKey}},
		{Name: "ops", Tenant: "t1", ScopedKeys: partners.KeyList{{Key: opsKey, Scopes: []partners.Scope{partners.ScopeAdmin}}}},
		{Name: "dealer2", Tenant: "t2", ScopedKeys: partners.KeyList{{Key: dealer2Key, Scopes: tw}}},
		{Name: "bank2", Tenant: "t2", Keys: []string{bank2Key}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return reg
}

func newFanoutEnv(t *testing.T) *fanoutEnv {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(4, schemas.TopicEvents))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	for _, topic := range []string{schemas.TopicFanoutTopics, schemas.TopicFanoutSubscriptions} {
		if err := c.CreateTopic(topic, 4, map[string]string{"cleanup.policy": "compact"}); err != nil {
			t.Fatal(err)
		}
	}
	e := &fanoutEnv{cluster: c, brokers: c.ListenAddrs()}
	e.srv, e.topics, e.subs = e.serve(t, true, Config{})
	return e
}

// serve starts an API instance with its own stores; run false leaves them
// not started (never ready).
func (e *fanoutEnv) serve(t *testing.T, run bool, cfg Config) (*httptest.Server, *TopicStore, *SubscriptionStore) {
	t.Helper()
	norm, err := normalize.New(normalize.Config{})
	if err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	scfg := RuleStoreConfig{Kafka: kafkaclient.Config{Brokers: e.brokers}, Logger: logger, Now: func() time.Time { return clock }}
	topics, err := NewTopicStore(scfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(topics.Close)
	subs, err := NewSubscriptionStore(scfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(subs.Close)
	if run {
		runStore(t, "topic store", topics.compactedCopy)
		runStore(t, "subscription store", subs.compactedCopy)
	}
	cfg.Publisher, cfg.Topics, cfg.Subscriptions, cfg.Logger = noPublisher{}, topics, subs, logger
	cfg.Now = func() time.Time { return clock }
	api, err := NewAPI(&memNodes{ready: true}, fanoutRegistry(t), norm, cfg)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	api.Register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv, topics, subs
}

func (e *fanoutEnv) topicRecords(t *testing.T) []schemas.TopicRecord {
	t.Helper()
	var out []schemas.TopicRecord
	for _, r := range topicRecords(t, e.brokers, schemas.TopicFanoutTopics) {
		var rec schemas.TopicRecord
		if err := json.Unmarshal(r.Value, &rec); err != nil || string(r.Key) != rec.Topic.Key() {
			t.Fatalf("record %s: %s (%v)", r.Key, r.Value, err)
		}
		out = append(out, rec)
	}
	return out
}

func (e *fanoutEnv) subRecords(t *testing.T) map[string][]schemas.SubscriptionRecord {
	t.Helper()
	out := map[string][]schemas.SubscriptionRecord{}
	for _, r := range topicRecords(t, e.brokers, schemas.TopicFanoutSubscriptions) {
		var rec schemas.SubscriptionRecord
		if err := json.Unmarshal(r.Value, &rec); err != nil || string(r.Key) != rec.Subscription.ID {
			t.Fatalf("record %s: %s (%v)", r.Key, r.Value, err)
		}
		out[rec.Subscription.ID] = append(out[rec.Subscription.ID], rec)
	}
	return out
}

const carChosen = `{"name":"car-chosen","description":"a customer chose a car","allowed":["bank","insurer"],
 "requires_consent":"partner_offers","include_profile":["traits.name","identifiers.email"]}`

func names(t *testing.T, v any) string {
	t.Helper()
	var out []string
	for _, x := range v.([]any) {
		out = append(out, x.(map[string]any)["name"].(string))
	}
	return strings.Join(out, ",")
}

// Topics: created by a key with topics:write (or admin) as the key's
// partner's; listed as owned (with the access list and version) and as
// readable (without); the access list changed by its owner only, as a new
// version; deleted by its owner only, after which its name is free again
// and counts its versions on. Every write is a record of the topic, read
// by a second instance.
func TestTopics(t *testing.T) {
	e := newFanoutEnv(t)
	a := call(t, e.srv, "POST", "/v1/topics", dealerKey, carChosen)
	if a.status != 201 || a.body["owner"] != "dealer" || a.body["version"] != 1.0 || a.body["updated_by"] != "dealer" ||
		a.body["updated_at"] != "2026-12-06T12:00:00.123Z" || a.body["requires_consent"] != "partner_offers" ||
		strings.Join(toStrings(a.body["allowed"]), ",") != "bank,insurer" || strings.Join(toStrings(a.body["include_profile"]), ",") != "traits.name,identifiers.email" {
		t.Fatalf("POST: %d %v", a.status, a.body)
	}
	// An admin key makes its own partner the owner; the other tenant may
	// use the same name.
	a = call(t, e.srv, "POST", "/v1/topics", opsKey, `{"name":"ops-news","allowed":[]}`)
	if a.status != 201 || a.body["owner"] != "ops" || len(a.body["allowed"].([]any)) != 0 {
		t.Fatalf("POST by admin: %d %v", a.status, a.body)
	}
	a = call(t, e.srv, "POST", "/v1/topics", dealer2Key, `{"name":"car-chosen","allowed":["bank2"]}`)
	if a.status != 201 || a.body["owner"] != "dealer2" || a.body["version"] != 1.0 {
		t.Fatalf("POST in t2: %d %v", a.status, a.body)
	}
	// The same name twice in a tenant: 409, whoever asks.
	want(t, call(t, e.srv, "POST", "/v1/topics", dealerKey, carChosen), 409, "conflict")
	want(t, call(t, e.srv, "POST", "/v1/topics", opsKey, `{"name":"car-chosen"}`), 409, "conflict")

	// GET: the owner sees its own with the list; the bank sees it as
	// readable without the list; ops owns ops-news and reads nothing;
	// nothing of t2.
	a = call(t, e.srv, "GET", "/v1/topics", dealerKey, "")
	if a.status != 200 || names(t, a.body["owned"]) != "car-chosen" || names(t, a.body["readable"]) != "" ||
		a.body["owned"].([]any)[0].(map[string]any)["allowed"] == nil {
		t.Fatalf("GET by the owner: %v", a.body)
	}
	a = call(t, e.srv, "GET", "/v1/topics", bankKey2, "") // any key of the partner
	if a.status != 200 || names(t, a.body["owned"]) != "" || names(t, a.body["readable"]) != "car-chosen" {
		t.Fatalf("GET by the bank: %v", a.body)
	}
	r := a.body["readable"].([]any)[0].(map[string]any)
	if r["allowed"] != nil || r["version"] != nil || r["owner"] != "dealer" || r["description"] != "a customer chose a car" || r["requires_consent"] != "partner_offers" {
		t.Fatalf("a readable topic shows: %v", r)
	}
	a = call(t, e.srv, "GET", "/v1/topics", opsKey, "")
	if names(t, a.body["owned"]) != "ops-news" || names(t, a.body["readable"]) != "" {
		t.Fatalf("GET by ops: %v", a.body)
	}
	a = call(t, e.srv, "GET", "/v1/topics", bank2Key, "")
	if names(t, a.body["owned"]) != "" || names(t, a.body["readable"]) != "car-chosen" {
		t.Fatalf("GET by bank2: %v", a.body)
	}
	if r := a.body["readable"].([]any)[0].(map[string]any); r["owner"] != "dealer2" {
		t.Fatalf("bank2 reads t2's car-chosen: %v", r)
	}

	// The access list: owner only (an admin of the tenant, another
	// tenant's owner of a same-named topic, a reader: 403 or 404).
	a = call(t, e.srv, "PUT", "/v1/topics/car-chosen/access", opsKey, `{"allowed":["ops"]}`)
	want(t, a, 403, "forbidden")
	if !strings.Contains(a.body["message"].(string), "belongs to dealer: only its owner may change its access list") {
		t.Fatalf("403: %v", a.body)
	}
	a = call(t, e.srv, "PUT", "/v1/topics/car-chosen/access", bankKey, `{"allowed":["bank"]}`)
	want(t, a, 403, "forbidden")
	if a.body["required_scope"] != "topics:write" {
		t.Fatalf("a key without topics:write: %v", a.body)
	}
	a = call(t, e.srv, "PUT", "/v1/topics/car-chosen/access", dealerKey, `{"allowed":["insurer","dealer"]}`)
	if a.status != 200 || a.body["version"] != 2.0 || strings.Join(toStrings(a.body["allowed"]), ",") != "insurer,dealer" {
		t.Fatalf("PUT access: %d %v", a.status, a.body)
	}
	a = call(t, e.srv, "GET", "/v1/topics", bankKey, "")
	if names(t, a.body["readable"]) != "" {
		t.Fatalf("the bank reads car-chosen after its removal: %v", a.body)
	}
	// t2's topic of the same name is untouched.
	a = call(t, e.srv, "GET", "/v1/topics", dealer2Key, "")
	if o := a.body["owned"].([]any)[0].(map[string]any); o["version"] != 1.0 || strings.Join(toStrings(o["allowed"]), ",") != "bank2" {
		t.Fatalf("t2's topic: %v", o)
	}
	want(t, call(t, e.srv, "PUT", "/v1/topics/nope/access", dealerKey, `{"allowed":[]}`), 404, "not_found")

	// A second instance reads the records and counts on.
	srv2, _, _ := e.serve(t, true, Config{})
	a = call(t, srv2, "GET", "/v1/topics", dealerKey, "")
	if o := a.body["owned"].([]any)[0].(map[string]any); o["version"] != 2.0 || strings.Join(toStrings(o["allowed"]), ",") != "insurer,dealer" {
		t.Fatalf("second instance: %v", a.body)
	}
	// Delete: owner only; then gone from every list; the name free again,
	// its version counting on.
	want(t, call(t, srv2, "DELETE", "/v1/topics/car-chosen", opsKey, ""), 403, "forbidden")
	want(t, call(t, srv2, "DELETE", "/v1/topics/car-chosen", dealer2Key, ""), 200, "") // t2's own
	a = call(t, srv2, "DELETE", "/v1/topics/car-chosen", dealerKey, "")
	if a.status != 200 || a.body["deleted"] != true || a.body["version"] != 3.0 || a.body["subscriptions_ended"] != 0.0 {
		t.Fatalf("DELETE: %d %v", a.status, a.body)
	}
	want(t, call(t, srv2, "DELETE", "/v1/topics/car-chosen", dealerKey, ""), 404, "not_found")
	a = call(t, e.srv, "GET", "/v1/topics", dealerKey, "") // the first instance read it
	if names(t, a.body["owned"]) != "" {
		t.Fatalf("GET after DELETE: %v", a.body)
	}
	a = call(t, e.srv, "POST", "/v1/topics", opsKey, `{"name":"car-chosen"}`)
	if a.status != 201 || a.body["owner"] != "ops" || a.body["version"] != 4.0 {
		t.Fatalf("the name used again: %d %v", a.status, a.body)
	}

	var got []string
	for _, rec := range e.topicRecords(t) {
		got = append(got, rec.Topic.Key()+":"+itoa(rec.Version)+":"+rec.UpdatedBy+":"+map[bool]string{true: "deleted", false: "live"}[rec.Deleted])
	}
	wantRecs := map[string]bool{"t1/car-chosen:1:dealer:live": true, "t1/car-chosen:2:dealer:live": true, "t1/car-chosen:3:dealer:deleted": true,
		"t1/car-chosen:4:ops:live": true, "t1/ops-news:1:ops:live": true, "t2/car-chosen:1:dealer2:live": true, "t2/car-chosen:2:dealer2:deleted": true}
	if len(got) != len(wantRecs) {
		t.Fatalf("records %v", got)
	}
	for _, g := range got {
		if !wantRecs[g] {
			t.Fatalf("record %s not expected; records %v", g, got)
		}
	}
}

func toStrings(v any) []string {
	var out []string
	for _, x := range v.([]any) {
		out = append(out, x.(string))
	}
	return out
}

func itoa(n int64) string { b, _ := json.Marshal(n); return string(b) }

// Every refusal of a topic names the field; nothing is written.
func TestTopicRefusals(t *testing.T) {
	e := newFanoutEnv(t)
	for _, tt := range []struct {
		body, code, message string
	}{
		{`{"name":"Car"}`, "invalid_topic", `name: "Car" is not a topic name (^[a-z0-9][a-z0-9_.-]{0,99}$)`},
		{`{"description":"x"}`, "invalid_topic", `name is required (^[a-z0-9][a-z0-9_.-]{0,99}$)`},
		{`{"name":"a","allowed":["bank","bank"]}`, "invalid_topic", `allowed: "bank" is empty or listed twice`},
		{`{"name":"a","allowed":["bank2"]}`, "invalid_topic", `allowed[0]: "bank2" is not a partner of this tenant`},
		{`{"name":"a","allowed":["bank","nobody"]}`, "invalid_topic", `allowed[1]: "nobody" is not a partner of this tenant`},
		{`{"name":"a","requires_consent":"no way"}`, "invalid_topic", `requires_consent: "no way" is not a consent purpose (^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$)`},
		{`{"name":"a","include_profile":["email"]}`, "invalid_topic", `include_profile: "email" is not a profile field (traits, traits.NAME, identifiers, identifiers.TYPE, tags)`},
		{`{"name":"a","include_profile":["tags","tags"]}`, "invalid_topic", `include_profile: "tags" is listed twice`},
		{`{"name":"a","description":"` + strings.Repeat("x", 1001) + `"}`, "invalid_topic", `description: 1001 bytes; at most 1000`},
		{`{"name":"a","owner":"bank"}`, "bad_request", `the body is not the JSON this endpoint takes: json: unknown field "owner"`},
		// The contract tier found "allowed": null accepted (201) where the
		// document says array.
		{`{"name":"a","allowed":null}`, "bad_request", `the body is not the JSON this endpoint takes: a list of strings was null: send [] or leave the field out`},
		{`{"name":"a","include_profile":null}`, "bad_request", `the body is not the JSON this endpoint takes: a list of strings was null: send [] or leave the field out`},
	} {
		a := call(t, e.srv, "POST", "/v1/topics", dealerKey, tt.body)
		want(t, a, 400, tt.code)
		if a.body["message"] != tt.message {
			t.Errorf("POST %.60s: message %q, want %q", tt.body, a.body["message"], tt.message)
		}
	}
	// Scopes: a key without topics:write or admin is 403; no key 401.
	a := call(t, e.srv, "POST", "/v1/topics", bankKey, `{"name":"a"}`)
	want(t, a, 403, "forbidden")
	if a.body["required_scope"] != "topics:write" {
		t.Fatalf("403: %v", a.body)
	}
	want(t, call(t, e.srv, "POST", "/v1/topics", "", `{"name":"a"}`), 401, "unauthorized")
	want(t, call(t, e.srv, "GET", "/v1/topics", "", ""), 401, "unauthorized")
	// The access list: required, checked like a creation's.
	want(t, call(t, e.srv, "POST", "/v1/topics", dealerKey, `{"name":"a"}`), 201, "")
	for _, tt := range []struct{ body, message string }{
		{`{}`, `allowed is required: the topic's whole access list ({"allowed": []} removes every partner)`},
		{`{"allowed":["bank2"]}`, `allowed[0]: "bank2" is not a partner of this tenant`},
		{`{"allowed":["bank","bank"]}`, `allowed: "bank" is empty or listed twice`},
	} {
		a := call(t, e.srv, "PUT", "/v1/topics/a/access", dealerKey, tt.body)
		if a.status != 400 || a.body["message"] != tt.message {
			t.Errorf("PUT access %s: %d %v, want %q", tt.body, a.status, a.body, tt.message)
		}
	}
	want(t, call(t, e.srv, "PUT", "/v1/topics/A/access", dealerKey, `{"allowed":[]}`), 400, "bad_request")
	if n := len(e.topicRecords(t)); n != 1 {
		t.Fatalf("%d records; refusals wrote", n)
	}
}

// Subscriptions: any key of a partner on the access list subscribes it
// (webhook or Kafka); the answer holds the secret once (whsec_ and 32
// bytes); GET and the list never show it; the record holds it for the
// sender. A partner not on the list: 403; no topic: 404; the same target
// twice: 409. A subscription is its partner's: another partner (of the
// tenant or not) sees 404. Delete, replay, and a topic's deletion ending
// its subscriptions.
func TestSubscriptions(t *testing.T) {
	e := newFanoutEnv(t)
	want(t, call(t, e.srv, "POST", "/v1/topics", dealerKey, carChosen), 201, "")
	want(t, call(t, e.srv, "POST", "/v1/topics", dealer2Key, `{"name":"car-chosen","allowed":["bank2"]}`), 201, "")

	a := call(t, e.srv, "POST", "/v1/subscriptions", bankKey2, `{"topic":"car-chosen","webhook":{"url":"https://bank.example/hooks"}}`)
	if a.status != 201 || a.body["partner"] != "bank" || a.body["status"] != "active" || a.body["topic"] != "car-chosen" ||
		a.body["webhook"].(map[string]any)["url"] != "https://bank.example/hooks" || a.body["created_at"] != "2026-12-06T12:00:00.123Z" || a.body["version"] != 1.0 {
		t.Fatalf("POST webhook: %d %v", a.status, a.body)
	}
	hook := a.body["id"].(string)
	secret, _ := a.body["secret"].(string)
	if key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_")); !strings.HasPrefix(secret, "whsec_") || err != nil || len(key) != 32 {
		t.Fatalf("secret %q: %v", secret, err)
	}
	if _, err := partners.ParseSigningSecret(secret); err != nil {
		t.Fatalf("the sender cannot use the secret: %v", err)
	}
	a = call(t, e.srv, "POST", "/v1/subscriptions", bankKey, `{"topic":"car-chosen","kafka":true}`)
	if a.status != 201 || a.body["kafka"] != true || a.body["webhook"] != nil || a.body["secret"] == secret {
		t.Fatalf("POST kafka: %d %v", a.status, a.body)
	}
	kafkaSub := a.body["id"].(string)
	// The same target again: 409.
	want(t, call(t, e.srv, "POST", "/v1/subscriptions", bankKey, `{"topic":"car-chosen","kafka":true}`), 409, "conflict")
	want(t, call(t, e.srv, "POST", "/v1/subscriptions", bankKey, `{"topic":"car-chosen","webhook":{"url":"https://bank.example/hooks"}}`), 409, "conflict")

	// GET never shows the secret.
	for _, path := range []string{"/v1/subscriptions/" + hook, "/v1/subscriptions"} {
		a = call(t, e.srv, "GET", path, bankKey, "")
		raw, _ := json.Marshal(a.body)
		if a.status != 200 || strings.Contains(string(raw), secret) || strings.Contains(string(raw), "whsec_") {
			t.Fatalf("GET %s: %d %s", path, a.status, raw)
		}
	}
	if subs := a.body["subscriptions"].([]any); len(subs) != 2 || subs[0].(map[string]any)["id"] == subs[1].(map[string]any)["id"] {
		t.Fatalf("list: %v", a.body)
	}
	// The record holds the secret (the sender signs with it).
	recs := e.subRecords(t)
	if len(recs[hook]) != 1 || recs[hook][0].Secret != secret || recs[hook][0].Subscription.Tenant != "t1" || len(recs) != 2 {
		t.Fatalf("records: %+v", recs)
	}

	// Not on the list: 403 naming the partner; no topic: 404; another
	// tenant's topic of the same name does not open t1's, and the reverse.
	a = call(t, e.srv, "POST", "/v1/subscriptions", opsKey, `{"topic":"car-chosen","kafka":true}`)
	want(t, a, 403, "forbidden")
	if a.body["message"] != "topic: ops is not on the access list of topic car-chosen (its owner dealer decides)" {
		t.Fatalf("403: %v", a.body)
	}
	want(t, call(t, e.srv, "POST", "/v1/subscriptions", dealerKey, `{"topic":"car-chosen","kafka":true}`), 403, "forbidden") // the owner is not implied
	want(t, call(t, e.srv, "POST", "/v1/subscriptions", bankKey, `{"topic":"nope","kafka":true}`), 404, "not_found")
	a = call(t, e.srv, "POST", "/v1/subscriptions", bank2Key, `{"topic":"car-chosen","kafka":true}`)
	if a.status != 201 || a.body["partner"] != "bank2" {
		t.Fatalf("bank2 on t2's topic: %d %v", a.status, a.body)
	}
	bank2Sub := a.body["id"].(string)

	// A subscription is its partner's alone.
	for _, key := range []string{insurerKey, dealerKey, opsKey, bank2Key} {
		want(t, call(t, e.srv, "GET", "/v1/subscriptions/"+hook, key, ""), 404, "not_found")
		want(t, call(t, e.srv, "DELETE", "/v1/subscriptions/"+hook, key, ""), 404, "not_found")
		want(t, call(t, e.srv, "POST", "/v1/subscriptions/"+hook+"/replay", key, `{"since":"2026-12-01T00:00:00Z"}`), 404, "not_found")
	}
	if a = call(t, e.srv, "GET", "/v1/subscriptions", bank2Key, ""); len(a.body["subscriptions"].([]any)) != 1 {
		t.Fatalf("bank2's list: %v", a.body)
	}
	if a = call(t, e.srv, "GET", "/v1/subscriptions", insurerKey, ""); len(a.body["subscriptions"].([]any)) != 0 {
		t.Fatalf("insurer's list: %v", a.body)
	}

	// Replay: recorded on the subscription's record as a new version.
	a = call(t, e.srv, "POST", "/v1/subscriptions/"+hook+"/replay", bankKey, `{"since":"2026-12-01T10:00:00+02:00"}`)
	rp, _ := a.body["replay"].(map[string]any)
	if a.status != 202 || a.body["version"] != 2.0 || rp["since"] != "2026-12-01T08:00:00Z" || rp["requested_at"] != "2026-12-06T12:00:00.123Z" ||
		rp["requested_by"] != "bank" || !strings.HasPrefix(rp["id"].(string), "rpl_") || a.body["secret"] != nil {
		t.Fatalf("replay: %d %v", a.status, a.body)
	}
	if r := e.subRecords(t)[hook]; len(r) != 2 || r[1].Replay == nil || r[1].Replay.ID != rp["id"] || r[1].Secret != secret || r[1].Version != 2 {
		t.Fatalf("records after the replay: %+v", r)
	}
	for _, body := range []string{`{}`, `{"since":"yesterday"}`, `{"since":"2027-01-01T00:00:00Z"}`} {
		want(t, call(t, e.srv, "POST", "/v1/subscriptions/"+hook+"/replay", bankKey, body), 400, "bad_request")
	}

	// Refusals of a subscription, naming the field.
	for _, tt := range []struct{ body, message string }{
		{`{"kafka":true}`, "topic is required: the name of a topic of this tenant"},
		{`{"topic":"car-chosen"}`, `set webhook {"url": ...} or kafka: true (records on rolodex.out.bank)`},
		{`{"topic":"car-chosen","kafka":true,"webhook":{"url":"https://x.example"}}`, `set webhook {"url": ...} or kafka: true, not both`},
		{`{"topic":"car-chosen","webhook":{"url":"ftp://x.example"}}`, `webhook.url: "ftp://x.example" is not an absolute http or https URL of at most 2000 bytes`},
		{`{"topic":"Car","kafka":true}`, `topic: "Car" is not a topic name (^[a-z0-9][a-z0-9_.-]{0,99}$)`},
	} {
		a := call(t, e.srv, "POST", "/v1/subscriptions", bankKey, tt.body)
		if a.status != 400 || a.body["error"] != "invalid_subscription" || a.body["message"] != tt.message {
			t.Errorf("POST %s: %d %v, want %q", tt.body, a.status, a.body, tt.message)
		}
	}
	want(t, call(t, e.srv, "GET", "/v1/subscriptions/sub_x", bankKey, ""), 400, "bad_request")
	want(t, call(t, e.srv, "GET", "/v1/subscriptions", "", ""), 401, "unauthorized")

	// Delete: status deleted, out of the list; again: the same answer,
	// nothing written; a replay of it: 409.
	a = call(t, e.srv, "DELETE", "/v1/subscriptions/"+kafkaSub, bankKey2, "")
	if a.status != 200 || a.body["status"] != "deleted" || a.body["version"] != 2.0 || a.body["reason"] != "deleted by bank" {
		t.Fatalf("DELETE: %d %v", a.status, a.body)
	}
	if a = call(t, e.srv, "DELETE", "/v1/subscriptions/"+kafkaSub, bankKey, ""); a.status != 200 || a.body["version"] != 2.0 {
		t.Fatalf("DELETE again: %d %v", a.status, a.body)
	}
	want(t, call(t, e.srv, "POST", "/v1/subscriptions/"+kafkaSub+"/replay", bankKey, `{"since":"2026-12-01T00:00:00Z"}`), 409, "conflict")
	if a = call(t, e.srv, "GET", "/v1/subscriptions", bankKey, ""); len(a.body["subscriptions"].([]any)) != 1 {
		t.Fatalf("list after DELETE: %v", a.body)
	}
	// After the delete the same target may subscribe again (a new id, a
	// new secret).
	a = call(t, e.srv, "POST", "/v1/subscriptions", bankKey, `{"topic":"car-chosen","kafka":true}`)
	want(t, a, 201, "")
	again := a.body["id"].(string)

	// A second instance reads the subscriptions.
	srv2, _, _ := e.serve(t, true, Config{})
	if a = call(t, srv2, "GET", "/v1/subscriptions/"+hook, bankKey, ""); a.status != 200 || a.body["version"] != 2.0 || a.body["replay"] == nil {
		t.Fatalf("second instance: %d %v", a.status, a.body)
	}
	// The topic's deletion ends its live subscriptions (of t1 only).
	a = call(t, srv2, "DELETE", "/v1/topics/car-chosen", dealerKey, "")
	if a.status != 200 || a.body["subscriptions_ended"] != 2.0 {
		t.Fatalf("DELETE topic: %d %v", a.status, a.body)
	}
	for _, id := range []string{hook, again} {
		if a = call(t, e.srv, "GET", "/v1/subscriptions/"+id, bankKey, ""); a.body["status"] != "deleted" || a.body["reason"] != "topic deleted" {
			t.Fatalf("%s after its topic's deletion: %v", id, a.body)
		}
	}
	if a = call(t, e.srv, "GET", "/v1/subscriptions/"+bank2Sub, bank2Key, ""); a.body["status"] != "active" || a.body["version"] != 1.0 {
		t.Fatalf("t2's subscription after t1's topic's deletion: %v", a.body)
	}
	// The instance that wrote the deletion has read it (another instance
	// reads it a moment later: a fresh-clone run created a subscription on
	// the first instance before its topic store had).
	want(t, call(t, srv2, "POST", "/v1/subscriptions", bankKey, `{"topic":"car-chosen","kafka":true}`), 404, "not_found")
}

// Stores that have not read their topics answer 503 not_ready (with
// Retry-After) after the write timeout, and write nothing.
func TestFanoutNotReady(t *testing.T) {
	e := newFanoutEnv(t)
	srv, _, _ := e.serve(t, false, Config{WriteTimeout: 100 * time.Millisecond})
	for _, op := range []struct{ method, path, key, body string }{
		{"POST", "/v1/topics", dealerKey, `{"name":"a"}`},
		{"GET", "/v1/topics", dealerKey, ""},
		{"PUT", "/v1/topics/a/access", dealerKey, `{"allowed":[]}`},
		{"DELETE", "/v1/topics/a", dealerKey, ""},
		{"POST", "/v1/subscriptions", bankKey, `{"topic":"a","kafka":true}`},
		{"GET", "/v1/subscriptions", bankKey, ""},
		{"GET", "/v1/subscriptions/sub_00000000000000000000000000000000", bankKey, ""},
	} {
		a := call(t, srv, op.method, op.path, op.key, op.body)
		want(t, a, 503, "not_ready")
		if a.header.Get("Retry-After") == "" {
			t.Errorf("%s %s: no Retry-After", op.method, op.path)
		}
	}
	if n := len(e.topicRecords(t)) + len(e.subRecords(t)); n != 0 {
		t.Fatalf("%d records written while not ready", n)
	}
}

// The stores keep the newest version of a key: an older record read
// after a newer one (two instances racing, or a late write) changes
// nothing, so a deleted topic never comes back.
func TestTopicStoreVersions(t *testing.T) {
	e := newFanoutEnv(t)
	want(t, call(t, e.srv, "POST", "/v1/topics", dealerKey, `{"name":"a","allowed":["bank"]}`), 201, "")
	want(t, call(t, e.srv, "DELETE", "/v1/topics/a", dealerKey, ""), 200, "")
	// A late write of version 1 (live) lands after the deletion.
	cl, err := kafkaclient.NewClient(kafkaclient.Config{Brokers: e.brokers})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	old, _ := json.Marshal(schemas.TopicRecord{Topic: schemas.Topic{Tenant: "t1", Name: "a", Owner: "dealer", Allowed: []string{"bank"}}, Version: 1})
	if err := produceSync(t, cl, schemas.TopicFanoutTopics, "t1/a", old); err != nil {
		t.Fatal(err)
	}
	srv2, topics2, _ := e.serve(t, true, Config{})
	rec, ok, err := topics2.Get("t1", "a")
	if err != nil || !ok || !rec.Deleted || rec.Version != 2 {
		t.Fatalf("the second instance holds %+v %v %v", rec, ok, err)
	}
	if a := call(t, srv2, "GET", "/v1/topics", bankKey, ""); names(t, a.body["readable"]) != "" {
		t.Fatalf("a deleted topic came back: %v", a.body)
	}
	want(t, call(t, srv2, "POST", "/v1/subscriptions", bankKey, `{"topic":"a","kafka":true}`), 404, "not_found")
}

// produceSync writes one record and waits for Kafka's acknowledgement.
func produceSync(t *testing.T, cl *kgo.Client, topic, key string, value []byte) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Key: []byte(key), Value: value}).FirstErr()
}

// A change is answered in force once the directory broadcast's group
// committed past its record: Rolodex-In-Force false while nothing copies
// it (after the store's wait), true once the group committed past it, and
// false again for a later write it has not committed.
func TestInForce(t *testing.T) {
	e := newFanoutEnv(t)
	const group = "test-broadcast"
	e.topics.SetInForce(group, 300*time.Millisecond)
	e.subs.SetInForce(group, 300*time.Millisecond)
	start := time.Now()
	a := call(t, e.srv, "POST", "/v1/topics", dealerKey, `{"name":"a","allowed":["bank"]}`)
	want(t, a, 201, "")
	if got := a.header.Get(HeaderInForce); got != "false" || time.Since(start) < 300*time.Millisecond {
		t.Fatalf("no broadcast: Rolodex-In-Force %q after %s, want false after the wait", got, time.Since(start))
	}
	// The group commits past every record of the topic store so far.
	cl, err := kafkaclient.NewClient(kafkaclient.Config{Brokers: e.brokers})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	commitEnds := func(topic string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		ends, err := adm.ListEndOffsets(ctx, topic)
		if err != nil {
			t.Fatal(err)
		}
		offs := kadm.Offsets{}
		ends.Each(func(o kadm.ListedOffset) { offs.AddOffset(o.Topic, o.Partition, o.Offset, -1) })
		if _, err := adm.CommitOffsets(ctx, group, offs); err != nil {
			t.Fatal(err)
		}
	}
	commitEnds(schemas.TopicFanoutTopics)
	go func() {
		time.Sleep(100 * time.Millisecond)
		commitEnds(schemas.TopicFanoutSubscriptions)
	}()
	// The wait sees a commit that comes while it waits.
	e.subs.SetInForce(group, 20*time.Second)
	a = call(t, e.srv, "POST", "/v1/subscriptions", bankKey, `{"topic":"a","kafka":true}`, HeaderIdempotencyKey, "k-1")
	want(t, a, 201, "")
	if got := a.header.Get(HeaderInForce); got != "true" {
		t.Fatalf("after the commit: Rolodex-In-Force %q, want true", got)
	}
	// Its retry, answered by another instance from its copy: in force too.
	srv2, _, subs2 := e.serve(t, true, Config{})
	subs2.SetInForce(group, 20*time.Second)
	b := call(t, srv2, "POST", "/v1/subscriptions", bankKey, `{"topic":"a","kafka":true}`, HeaderIdempotencyKey, "k-1")
	if b.status != 201 || b.body["id"] != a.body["id"] || b.header.Get(HeaderInForce) != "true" {
		t.Fatalf("the retry on another instance: %d %v, Rolodex-In-Force %q; want %v, true", b.status, b.body, b.header.Get(HeaderInForce), a.body["id"])
	}
	a = call(t, e.srv, "PUT", "/v1/topics/a/access", dealerKey, `{"allowed":["bank","insurer"]}`)
	want(t, a, 200, "")
	if got := a.header.Get(HeaderInForce); got != "false" {
		t.Fatalf("a write past the commit: Rolodex-In-Force %q, want false", got)
	}
	commitEnds(schemas.TopicFanoutTopics)
	a = call(t, e.srv, "DELETE", "/v1/topics/a", dealerKey, "")
	want(t, a, 200, "")
	if got := a.header.Get(HeaderInForce); got != "false" {
		t.Fatalf("the deletion, not committed: Rolodex-In-Force %q, want false", got)
	}
}

// TestSubscriptionRefusedNotWrittenLater: a store write that Kafka refused
// until the write timeout (every produce answered with a retriable error:
// the record never went out) is answered 503, and must not be written once
// Kafka takes writes again. A subscription's id and secret are drawn per
// request: had the refused record landed later, the partner's retry would
// make a second active subscription to the same place (every record
// delivered twice, one of them signed with a secret the partner never got),
// or a 409 naming that unknown one.
func TestSubscriptionRefusedNotWrittenLater(t *testing.T) {
	e := newFanoutEnv(t)
	srv, _, subs := e.serve(t, true, Config{WriteTimeout: 300 * time.Millisecond})
	want(t, call(t, srv, "POST", "/v1/topics", dealerKey, carChosen), 201, "")

	var refuse atomic.Bool
	refuse.Store(true)
	e.cluster.ControlKey(int16(kmsg.Produce), func(kr kmsg.Request) (kmsg.Response, error, bool) {
		e.cluster.KeepControl()
		req := kr.(*kmsg.ProduceRequest)
		if !refuse.Load() { // (v13 names topics by id: every produce is refused meanwhile)
			return nil, nil, false
		}
		resp := req.ResponseKind().(*kmsg.ProduceResponse)
		for _, rt := range req.Topics {
			st := kmsg.NewProduceResponseTopic()
			st.Topic, st.TopicID = rt.Topic, rt.TopicID
			for _, rp := range rt.Partitions {
				sp := kmsg.NewProduceResponseTopicPartition()
				sp.Partition, sp.ErrorCode = rp.Partition, kerr.NotEnoughReplicas.Code
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		return resp, nil, true
	})
	const body = `{"topic":"car-chosen","kafka":true}`
	want(t, call(t, srv, "POST", "/v1/subscriptions", bankKey, body), 503, "kafka_unavailable")

	// Kafka takes writes again; a kept record would go out at the retry,
	// after the metadata refresh the error asks for (franz-go's
	// MetadataMinAge, 5 s): it landed 5 s later before the fix.
	refuse.Store(false)
	for end := time.Now().Add(7 * time.Second); time.Now().Before(end); time.Sleep(250 * time.Millisecond) {
		if recs := e.subRecords(t); len(recs) != 0 {
			t.Fatalf("the write answered 503 was written after all: %+v", recs)
		}
	}
	a := call(t, srv, "POST", "/v1/subscriptions", bankKey, body)
	want(t, a, 201, "")
	if recs := e.subRecords(t); len(recs) != 1 || len(recs[a.body["id"].(string)]) != 1 {
		t.Fatalf("records after the retry: %+v, want the retried subscription alone", recs)
	}
	if l, err := subs.List(func(*schemas.Subscription) bool { return true }); err != nil || len(l) != 1 {
		t.Fatalf("the store holds %d subscriptions (%v), want 1", len(l), err)
	}
}

// A create with an Idempotency-Key keeps the key on its record: a retry
// with it is answered with what the first try made (its secret too) and
// writes nothing; the key with another request, or after the subscription
// ended, is a 409; another partner's same key is another subscription.
func TestSubscriptionIdempotencyKey(t *testing.T) {
	e := newFanoutEnv(t)
	want(t, call(t, e.srv, "POST", "/v1/topics", dealerKey, carChosen), 201, "")
	const body = `{"topic":"car-chosen","kafka":true}`
	first := call(t, e.srv, "POST", "/v1/subscriptions", bankKey, body, HeaderIdempotencyKey, "create-1")
	want(t, first, 201, "")
	id, secret := first.body["id"].(string), first.body["secret"].(string)
	again := call(t, e.srv, "POST", "/v1/subscriptions", bankKey2, body, HeaderIdempotencyKey, "create-1") // another key of the partner
	if again.status != 201 || again.body["id"] != id || again.body["secret"] != secret || again.body["version"] != 1.0 {
		t.Fatalf("the retry: %d %v, want subscription %s with its secret", again.status, again.body, id)
	}
	if recs := e.subRecords(t); len(recs) != 1 || len(recs[id]) != 1 || recs[id][0].IdempotencyKey != "create-1" {
		t.Fatalf("records %+v, want the one of the first try, with its key", recs)
	}
	a := call(t, e.srv, "POST", "/v1/subscriptions", bankKey, `{"topic":"car-chosen","webhook":{"url":"https://bank.example/hooks"}}`, HeaderIdempotencyKey, "create-1")
	want(t, a, 409, "conflict")
	if msg := a.body["message"].(string); !strings.Contains(msg, id) || !strings.Contains(msg, "needs a new key") {
		t.Fatalf("409: %s", msg)
	}
	other := call(t, e.srv, "POST", "/v1/subscriptions", insurerKey, body, HeaderIdempotencyKey, "create-1")
	if other.status != 201 || other.body["id"] == id || other.body["partner"] != "insurer" {
		t.Fatalf("the insurer's create with the same key: %d %v", other.status, other.body)
	}
	want(t, call(t, e.srv, "DELETE", "/v1/subscriptions/"+id, bankKey, ""), 200, "")
	a = call(t, e.srv, "POST", "/v1/subscriptions", bankKey, body, HeaderIdempotencyKey, "create-1")
	want(t, a, 409, "conflict")
	if msg := a.body["message"].(string); !strings.Contains(msg, "deleted") {
		t.Fatalf("409 after the delete: %s", msg)
	}
	want(t, call(t, e.srv, "POST", "/v1/subscriptions", bankKey, body, HeaderIdempotencyKey, strings.Repeat("k", maxIdempotencyKey+1)), 400, "invalid_subscription")
	want(t, call(t, e.srv, "POST", "/v1/subscriptions", bankKey, body, HeaderIdempotencyKey, "tab\tkey"), 400, "invalid_subscription")
}

// The first try of a create landed after its 503 (here: written straight
// to the topic, as a record already sent lands), or through another
// instance: a retry with its key, to this instance, is answered with it
// and writes nothing. Two tries at once on one instance make one
// subscription (the store's write lock).
func TestSubscriptionIdempotencyKeyLandedFirstTry(t *testing.T) {
	e := newFanoutEnv(t)
	want(t, call(t, e.srv, "POST", "/v1/topics", dealerKey, carChosen), 201, "")
	firstTry := schemas.SubscriptionRecord{Secret: "whsec_" + base64.StdEncoding.EncodeToString(make([]byte, 32)), IdempotencyKey: "create-2",
		Subscription: schemas.Subscription{ID: "sub_" + strings.Repeat("0", 31) + "1", Tenant: "t1", Partner: "bank", Topic: "car-chosen", Kafka: true,
			Status: schemas.SubscriptionActive, CreatedAt: "2026-12-06T11:59:59Z"}, Version: 1, UpdatedAt: "2026-12-06T11:59:59Z"}
	// Two earlier tries of another key both landed, one since deleted:
	// the live one answers.
	ended, live := firstTry, firstTry
	ended.IdempotencyKey, ended.Subscription.ID, ended.Subscription.Status = "create-4", "sub_"+strings.Repeat("0", 31)+"2", schemas.SubscriptionDeleted
	live.IdempotencyKey, live.Subscription.ID, live.Subscription.Webhook, live.Subscription.Kafka = "create-4", "sub_"+strings.Repeat("0", 31)+"3",
		&schemas.SubscriptionHook{URL: "https://bank.example/other"}, false
	cl := kafkatest.Client(t, e.brokers)
	for _, r := range []schemas.SubscriptionRecord{firstTry, ended, live} {
		val, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		if err := produceSync(t, cl, schemas.TopicFanoutSubscriptions, r.Subscription.ID, val); err != nil {
			t.Fatal(err)
		}
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, ok, _ := e.subs.Get(live.Subscription.ID); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the store did not read the earlier tries")
		}
	}
	if a := call(t, e.srv, "POST", "/v1/subscriptions", bankKey, `{"topic":"car-chosen","webhook":{"url":"https://bank.example/other"}}`, HeaderIdempotencyKey, "create-4"); a.status != 201 || a.body["id"] != live.Subscription.ID {
		t.Fatalf("two tries landed, one deleted: %d %v, want the live one %s", a.status, a.body, live.Subscription.ID)
	}
	a := call(t, e.srv, "POST", "/v1/subscriptions", bankKey, `{"topic":"car-chosen","kafka":true}`, HeaderIdempotencyKey, "create-2")
	if a.status != 201 || a.body["id"] != firstTry.Subscription.ID || a.body["secret"] != firstTry.Secret {
		t.Fatalf("the retry: %d %v, want the first try with its secret", a.status, a.body)
	}
	if recs := e.subRecords(t); len(recs) != 3 {
		t.Fatalf("records %+v, want the earlier tries' alone", recs)
	}

	// Two tries at once, on one instance.
	const hook = `{"topic":"car-chosen","webhook":{"url":"https://bank.example/hooks"}}`
	answers := make(chan answer, 2)
	for i := 0; i < 2; i++ {
		go func() {
			answers <- call(t, e.srv, "POST", "/v1/subscriptions", bankKey, hook, HeaderIdempotencyKey, "create-3")
		}()
	}
	a, b := <-answers, <-answers
	if a.status != 201 || b.status != 201 || a.body["id"] != b.body["id"] || a.body["secret"] != b.body["secret"] {
		t.Fatalf("two tries at once: %d %v and %d %v, want one subscription", a.status, a.body, b.status, b.body)
	}
	if recs := e.subRecords(t); len(recs) != 4 {
		t.Fatalf("%d subscriptions, want 4", len(recs))
	}
}
