package main

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// subscriber is a partner's webhook endpoint standing in for the real
// one: it learns its subscription's signing secret from the creation
// answer, checks every request's Standard Webhooks signature with its own
// code, answers from a script, and dedupes by webhook-id as the spec
// tells receivers to.
type subscriber struct {
	t   *testing.T
	srv *httptest.Server

	mu     sync.Mutex
	key    []byte
	script []hookAnswer // script[n] answers the n-th request; past its end: 200
	reqs   []hookRequest
	badSig int
}

type hookAnswer struct {
	status     int
	retryAfter string
	delay      time.Duration // before answering (a receiver that hangs)
}

type hookRequest struct {
	id     string
	at     time.Time
	status int // what the subscriber answered
	raw    string
	body   map[string]any
}

func newSubscriber(t *testing.T, script ...hookAnswer) *subscriber {
	s := &subscriber{t: t, script: script}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.srv.Close)
	return s
}

// setSecret takes the whsec_ secret of the subscription's creation answer.
func (s *subscriber) setSecret(secret string) {
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil || !strings.HasPrefix(secret, "whsec_") {
		s.t.Fatalf("signing secret %q: %v", secret, err)
	}
	s.mu.Lock()
	s.key = key
	s.mu.Unlock()
}

func (s *subscriber) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	id, ts := r.Header.Get("webhook-id"), r.Header.Get("webhook-timestamp")
	s.mu.Lock()
	mac := hmac.New(sha256.New, s.key)
	fmt.Fprintf(mac, "%s.%s.", id, ts)
	mac.Write(body)
	want := "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
	ok := s.key != nil
	signed := false
	for _, sig := range strings.Fields(r.Header.Get("webhook-signature")) {
		signed = signed || hmac.Equal([]byte(sig), []byte(want))
	}
	if !ok || !signed || id == "" || ts == "" {
		s.badSig++
		s.mu.Unlock()
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	var m map[string]any
	_ = json.Unmarshal(body, &m)
	n := len(s.reqs)
	a := hookAnswer{status: 200}
	if n < len(s.script) {
		a = s.script[n]
	}
	s.reqs = append(s.reqs, hookRequest{id: id, at: time.Now(), status: a.status, raw: string(body), body: m})
	s.mu.Unlock()
	time.Sleep(a.delay)
	if a.retryAfter != "" {
		w.Header().Set("Retry-After", a.retryAfter)
	}
	w.WriteHeader(a.status)
}

func (s *subscriber) requests() []hookRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]hookRequest(nil), s.reqs...)
}

// received is what a receiver that dedupes by webhook-id keeps: the first
// body of each id it accepted (answered 2xx). It fails the test when an id
// came with two bodies.
func (s *subscriber) received() map[string]map[string]any {
	s.t.Helper()
	out := map[string]map[string]any{}
	raw := map[string]string{}
	for _, r := range s.requests() {
		if prev, ok := raw[r.id]; ok {
			if prev != r.raw {
				s.t.Fatalf("webhook-id %s sent with two bodies:\n%s\n%s", r.id, prev, r.raw)
			}
		}
		raw[r.id] = r.raw
		if _, ok := out[r.id]; !ok && r.status/100 == 2 {
			out[r.id] = r.body
		}
	}
	return out
}

func (s *subscriber) ids() []string {
	var ids []string
	for id := range s.received() {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// Partner fan-out end to end, in dev mode (ingest, identity, the fan-out
// group and its directory broadcast, delivery, the API) with real HTTP
// servers as the subscribers' endpoints and a Kafka consumer as a Kafka
// subscriber. A publisher creates topics with access lists and publishes;
// the test checks signatures with its own code, exactly once after dedupe
// by webhook-id over 500s, a 429 with Retry-After, a hanging receiver and
// a 410 that disables the subscription; the Kafka subscriber's CloudEvents
// headers; and every entitlement rule: a partner not on the list, one
// removed from it mid-stream, another tenant's topic of the same name, a
// blacklisted profile, no consent, consent expired, and a revocation told
// to the subscriber that received the profile under that purpose.
func TestFanoutEndToEnd(t *testing.T) {
	bank := newSubscriber(t, hookAnswer{status: 500}, hookAnswer{status: 500}) // then 200
	insurer := newSubscriber(t, hookAnswer{status: 429, retryAfter: "2"})
	broker := newSubscriber(t, hookAnswer{status: 200, delay: 2500 * time.Millisecond})
	gone := newSubscriber(t, hookAnswer{status: 410}, hookAnswer{status: 410}, hookAnswer{status: 410})
	offers := newSubscriber(t)
	otherBank := newSubscriber(t)
	cfg := `fanout:
  delivery: {retry_schedule: [0s, 300ms, 300ms, 300ms, 300ms, 300ms], timeout: 1s}
partners:
  - name: demo
    tenant: demo
    keys: [{key: demo-key, scopes: [events:write, profiles:read, profiles:write, admin, topics:write]}]
  - name: autoexpress
    tenant: demo
    keys: [{key: auto-key, scopes: [events:write, topics:write]}]
  - name: bank
    tenant: demo
    keys: [{key: bank-key, scopes: [events:write]}]
  - name: insurer
    tenant: demo
    keys: [{key: insurer-key, scopes: [events:write]}]
  - name: broker
    tenant: demo
    keys: [{key: broker-key, scopes: [events:write]}]
  - name: leasing
    tenant: demo
    keys: [{key: leasing-key, scopes: [events:write]}]
  - name: gone
    tenant: demo
    keys: [{key: gone-key, scopes: [events:write]}]
  - name: outsider
    tenant: demo
    keys: [{key: outsider-key, scopes: [events:write, admin, topics:write]}]
  - name: other-bank
    tenant: other
    keys: [{key: other-key, scopes: [events:write, profiles:read, admin, topics:write]}]
`
	path := filepath.Join(t.TempDir(), "rolodex.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	api, broker0 := startDevArgs(t, "--config", path)

	must := func(want int, key, method, path, body string) map[string]any {
		t.Helper()
		code, ans, _ := callAPI(t, key, method, api+path, body)
		if code != want {
			t.Fatalf("%s %s %s: %d %v, want %d", method, path, body, code, ans, want)
		}
		return ans
	}
	// A change of the directory (topics, subscriptions) is answered once
	// it is in every partition of the fan-out stage's input, so an event
	// published after the answer is decided with it: no waiting here.
	change := func(want int, key, method, path, body string) map[string]any {
		t.Helper()
		code, ans, h := callAPI(t, key, method, api+path, body)
		if code != want || h.Get("Rolodex-In-Force") != "true" {
			t.Fatalf("%s %s %s: %d %v (Rolodex-In-Force: %q), want %d and in force", method, path, body, code, ans, h.Get("Rolodex-In-Force"), want)
		}
		return ans
	}
	eventually(t, "the topic store answers", func() bool {
		code, _ := httpAs(t, "auto-key", "GET", api+"/v1/topics", "")
		return code == 200
	})
	change(201, "auto-key", "POST", "/v1/topics", `{"name":"car-chosen","description":"a customer chose a car",
		"allowed":["bank","insurer","broker","leasing","gone"],"include_profile":["traits.name","identifiers.email"]}`)
	change(201, "auto-key", "POST", "/v1/topics", `{"name":"offers","allowed":["bank"],"requires_consent":"partner_offers"}`)
	// Another tenant's topic of the same name, and its subscription.
	change(201, "other-key", "POST", "/v1/topics", `{"name":"car-chosen","allowed":["other-bank"]}`)
	subscribe := func(key, body string, s *subscriber) string {
		t.Helper()
		ans := change(201, key, "POST", "/v1/subscriptions", body)
		if s != nil {
			s.setSecret(fmt.Sprint(ans["secret"]))
		}
		return fmt.Sprint(ans["id"])
	}
	hook := func(topic string, s *subscriber) string {
		return fmt.Sprintf(`{"topic":%q,"webhook":{"url":%q}}`, topic, s.srv.URL)
	}
	subBank := subscribe("bank-key", hook("car-chosen", bank), bank)
	subInsurer := subscribe("insurer-key", hook("car-chosen", insurer), insurer)
	subBroker := subscribe("broker-key", hook("car-chosen", broker), broker)
	subGone := subscribe("gone-key", hook("car-chosen", gone), gone)
	subLeasing := subscribe("leasing-key", `{"topic":"car-chosen","kafka":true}`, nil)
	subOffers := subscribe("bank-key", hook("offers", offers), offers)
	subOther := subscribe("other-key", hook("car-chosen", otherBank), otherBank)
	// A partner of the tenant that is not on the list may not subscribe.
	if code, ans := httpAs(t, "outsider-key", "POST", api+"/v1/subscriptions", `{"topic":"car-chosen","kafka":true}`); code != 403 || ans["error"] != "forbidden" {
		t.Fatalf("outsider subscribes: %d %v", code, ans)
	}

	publish := func(id, email, topic string) {
		t.Helper()
		must(202, "auto-key", "POST", "/v1/topics/"+topic+"/events",
			fmt.Sprintf(`{"id":%q,"type":"car.chosen","identifiers":{"email":%q},"traits":{"name":%q,"city":"Lisboa"},"properties":{"model":"Tracker"}}`,
				id, email, strings.Split(email, "@")[0]))
	}
	profileOf := func(email string) map[string]any {
		t.Helper()
		var p map[string]any
		eventually(t, "the profile of "+email, func() bool {
			var code int
			code, p = httpAs(t, "demo-key", "GET", api+"/v1/lookup?type=email&value="+url.QueryEscape(email), "")
			return code == 200
		})
		return p
	}
	wantIDs := func(s *subscriber, what string, want ...string) {
		t.Helper()
		sort.Strings(want)
		eventually(t, what+" received "+strings.Join(want, " "), func() bool { return reflect.DeepEqual(s.ids(), want) })
	}
	idOf := func(sub, event string) string { return sub + "." + event }

	// 1. Three events of three people reach every subscriber of the topic.
	for _, e := range []struct{ id, email string }{{"e1", "ana@example.com"}, {"e2", "bia@example.com"}, {"e3", "cid@example.com"}} {
		publish(e.id, e.email, "car-chosen")
	}
	wantIDs(bank, "bank (500s, then 200)", idOf(subBank, "e1"), idOf(subBank, "e2"), idOf(subBank, "e3"))
	wantIDs(insurer, "insurer (429 Retry-After: 2)", idOf(subInsurer, "e1"), idOf(subInsurer, "e2"), idOf(subInsurer, "e3"))
	wantIDs(broker, "broker (hangs once)", idOf(subBroker, "e1"), idOf(subBroker, "e2"), idOf(subBroker, "e3"))
	ana := profileOf("ana@example.com")
	body := bank.received()[idOf(subBank, "e1")]
	if body["kind"] != "topic_event" || body["topic"] != "car-chosen" || body["tenant"] != "demo" || body["publisher"] != "autoexpress" ||
		body["event_id"] != "e1" || body["type"] != "car.chosen" || body["profile_id"] != ana["id"] {
		t.Fatalf("bank's body of e1: %v (profile %v)", body, ana["id"])
	}
	if got, want := fmt.Sprint(body["profile"]), "map[identifiers:map[email:[ana@example.com]] traits:map[name:ana]]"; got != want {
		t.Fatalf("e1's profile part: %s, want %s (include_profile: traits.name, identifiers.email; the city is not shared)", got, want)
	}
	if props := fmt.Sprint(body["properties"]); props != "map[model:Tracker]" {
		t.Fatalf("e1's properties: %s", props)
	}
	// The 500s were retried under one id; the 429's Retry-After held the
	// next attempt back longer than the schedule's 300 ms; the hanging
	// receiver's request timed out (1 s) and was sent again.
	if n := len(bank.requests()); n < 5 {
		t.Fatalf("bank got %d requests, want at least 5 (two 500s retried)", n)
	}
	for _, s := range []*subscriber{bank, insurer, broker, gone, offers, otherBank} {
		if s.badSig != 0 {
			t.Fatalf("%s: %d requests with a bad signature", s.srv.URL, s.badSig)
		}
	}
	ireqs := insurer.requests()
	for _, r := range ireqs[1:] {
		if r.id == ireqs[0].id {
			if gap := r.at.Sub(ireqs[0].at); gap < 1900*time.Millisecond {
				t.Fatalf("insurer: the retry of %s came %s after the 429 with Retry-After: 2", r.id, gap)
			}
			break
		}
	}
	if breqs := broker.requests(); len(breqs) < 4 {
		t.Fatalf("broker got %d requests, want the hung one sent again", len(breqs))
	}
	// The 410 disabled the gone partner's subscription.
	eventually(t, "the 410 disabled the subscription", func() bool {
		code, s := httpAs(t, "gone-key", "GET", api+"/v1/subscriptions/"+subGone, "")
		return code == 200 && s["status"] == "disabled"
	})
	// The Kafka subscriber's records, with their CloudEvents headers.
	recs := consumeOut(t, broker0, "leasing", 3)
	for _, r := range recs {
		h := map[string]string{}
		for _, x := range r.Headers {
			h[x.Key] = string(x.Value)
		}
		ev := strings.TrimPrefix(h["ce_id"], subLeasing+".")
		var b map[string]any
		_ = json.Unmarshal(r.Value, &b)
		if h["ce_specversion"] != "1.0" || h["ce_type"] != "car.chosen" || h["ce_source"] != "/rolodex/tenants/demo/topics/car-chosen" ||
			h["ce_subject"] != string(r.Key) || h["content-type"] != "application/json" || h["rolodex_kind"] != "topic_event" ||
			h["rolodex_subscription"] != subLeasing || b["event_id"] != ev || b["profile_id"] != string(r.Key) {
			t.Fatalf("rolodex.out.leasing record: key %s headers %v body %s", r.Key, h, r.Value)
		}
	}

	// 2. The owner takes the insurer off the list: the next event reaches
	// the bank, not the insurer; nor the disabled subscription.
	change(200, "auto-key", "PUT", "/v1/topics/car-chosen/access", `{"allowed":["bank","broker","leasing","gone"]}`)
	notAllowed := metricValue(t, api, `rolodex_fanout_skipped_total{reason="not_allowed"}`)
	publish("e4", "dan@example.com", "car-chosen")
	wantIDs(bank, "bank", idOf(subBank, "e1"), idOf(subBank, "e2"), idOf(subBank, "e3"), idOf(subBank, "e4"))
	eventually(t, "the insurer skipped as not allowed", func() bool {
		return metricValue(t, api, `rolodex_fanout_skipped_total{reason="not_allowed"}`) >= notAllowed+1
	})

	// 3. A blacklisted profile's data is delivered to nobody.
	must(202, "demo-key", "POST", "/v1/blacklist", fmt.Sprintf(`{"profiles":[%q],"reason":"asked to be left alone"}`, ana["id"]))
	eventually(t, "ana blacklisted", func() bool { return profileOf("ana@example.com")["blacklisted"] == true })
	blacklisted := metricValue(t, api, `rolodex_fanout_events_total{result="blacklisted"}`)
	publish("e5", "ana@example.com", "car-chosen")
	eventually(t, "e5 decided as blacklisted", func() bool {
		return metricValue(t, api, `rolodex_fanout_events_total{result="blacklisted"}`) >= blacklisted+1
	})
	// Nor when the event itself joins a new identifier (its primary:
	// user_id comes first) to ana: it waits for that merge (docs/identity.md,
	// "Leads and topic events wait for their event's links") and is decided
	// with ana's blacklisted profile. The exact lists at the end show that
	// no subscriber got e6.
	must(202, "auto-key", "POST", "/v1/topics/car-chosen/events",
		`{"id":"e6","type":"car.chosen","identifiers":{"user_id":"new-ana-6","email":"ana@example.com"},"properties":{"model":"Tracker"}}`)
	eventually(t, "e6 decided as blacklisted", func() bool {
		return metricValue(t, api, `rolodex_fanout_events_total{result="blacklisted"}`) >= blacklisted+2
	})
	// The blacklisting sent the subscriptions that received ana a cancel
	// (nothing waits for them now: each sender reads it and sends nothing).
	eventually(t, "ana's cancels read by both senders", func() bool {
		return metricValue(t, api, `rolodex_fanout_deliveries_total{kind="blacklisted"}`) >= 1 &&
			metricValue(t, api, `rolodex_fanout_webhook_skipped_total{reason="blacklisted"}`) >= 1 &&
			metricValue(t, api, `rolodex_fanout_kafka_skipped_total{reason="blacklisted"}`) >= 1
	})

	// 4. Consent: granted is delivered (with the purpose in the body), none
	// or expired is not; a revocation is told to the subscriber.
	consent := func(email, status, expires string) {
		t.Helper()
		p := profileOf(email)
		body := fmt.Sprintf(`{"status":%q}`, status)
		if expires != "" {
			body = fmt.Sprintf(`{"status":%q,"expires_at":%q}`, status, expires)
		}
		must(202, "demo-key", "PUT", fmt.Sprintf("/v1/profiles/%s/consent/partner_offers", p["id"]), body)
		eventually(t, email+"'s consent "+status, func() bool {
			c, _ := profileOf(email)["consent"].(map[string]any)
			po, _ := c["partner_offers"].(map[string]any)
			return po != nil && po["status"] == status
		})
	}
	consent("bia@example.com", "granted", "")
	expires := time.Now().Add(4 * time.Second)
	consent("dan@example.com", "granted", expires.UTC().Format(time.RFC3339))
	time.Sleep(time.Until(expires) + 500*time.Millisecond)
	noConsent := metricValue(t, api, `rolodex_fanout_skipped_total{reason="consent"}`)
	publish("o1", "bia@example.com", "offers")
	publish("o2", "cid@example.com", "offers") // no consent
	publish("o3", "dan@example.com", "offers") // expired
	wantIDs(offers, "offers (bia's consent granted)", idOf(subOffers, "o1"))
	eventually(t, "cid's and dan's offers skipped for consent", func() bool {
		return metricValue(t, api, `rolodex_fanout_skipped_total{reason="consent"}`) >= noConsent+2
	})
	if c, _ := offers.received()[idOf(subOffers, "o1")]["consent"].(map[string]any); c == nil || c["purpose"] != "partner_offers" {
		t.Fatalf("o1's consent part: %v", offers.received()[idOf(subOffers, "o1")])
	}
	bia := profileOf("bia@example.com")
	consent("bia@example.com", "revoked", "")
	var revoked map[string]any
	eventually(t, "the offers subscriber told of bia's revocation", func() bool {
		for id, b := range offers.received() {
			if id != idOf(subOffers, "o1") {
				revoked = b
				return true
			}
		}
		return false
	})
	if revoked["kind"] != "consent_revoked" || revoked["type"] != "profile.consent_revoked" || revoked["profile_id"] != bia["id"] || revoked["purpose"] != "partner_offers" {
		t.Fatalf("the revocation record: %v", revoked)
	}

	// Exactly once after dedupe, and nothing to anyone not entitled: the
	// insurer has nothing after its removal, the gone partner nothing
	// after its 410s (at most the first three, each answered 410), the
	// blacklisted e5 reached nobody, the other tenant's topic of the same
	// name nothing at all.
	wantIDs(bank, "bank, finally", idOf(subBank, "e1"), idOf(subBank, "e2"), idOf(subBank, "e3"), idOf(subBank, "e4"))
	wantIDs(insurer, "insurer, finally", idOf(subInsurer, "e1"), idOf(subInsurer, "e2"), idOf(subInsurer, "e3"))
	wantIDs(broker, "broker, finally", idOf(subBroker, "e1"), idOf(subBroker, "e2"), idOf(subBroker, "e3"), idOf(subBroker, "e4"))
	for _, id := range gone.ids() {
		if id == idOf(subGone, "e4") || id == idOf(subGone, "e5") || id == idOf(subGone, "e6") {
			t.Fatalf("the disabled subscription got %s", id)
		}
	}
	if ids := otherBank.ids(); len(ids) != 0 {
		t.Fatalf("another tenant's subscriber got %v (sub %s)", ids, subOther)
	}
	if recs := consumeOut(t, broker0, "leasing", 4); len(recs) != 4 {
		t.Fatalf("rolodex.out.leasing: %d records", len(recs))
	}
}

// callAPI sends a request with key and decodes the JSON answer; it
// returns the answer's headers too.
func callAPI(t *testing.T, key, method, u, body string) (int, map[string]any, http.Header) {
	t.Helper()
	req, err := http.NewRequest(method, u, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	var m map[string]any
	_ = json.Unmarshal(raw, &m)
	return res.StatusCode, m, res.Header
}

// consumeOut reads a partner's out topic from the start until it holds at
// least n records (a minute at most), and a second more, and returns
// them.
func consumeOut(t *testing.T, brokers, partner string, n int) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers), kgo.ConsumeTopics("rolodex.out."+partner),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var recs []*kgo.Record
	deadline := time.Now().Add(time.Minute)
	for len(recs) < n && time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		recs = append(recs, cl.PollFetches(ctx).Records()...)
		cancel()
	}
	if len(recs) < n {
		t.Fatalf("rolodex.out.%s: %d records after a minute, want %d", partner, len(recs), n)
	}
	// A record too many would come in the same breath.
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	return append(recs, cl.PollFetches(ctx).Records()...)
}
