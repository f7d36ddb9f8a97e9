//go:build system

package system

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rolodex/rolodex/connectors/clickhouse"
	"github.com/rolodex/rolodex/internal/kafkaclient"
	"github.com/rolodex/rolodex/schemas"
)

// wave2Tenant is the tenant of wave 2's rooms in TestRolodexOnKafka: its
// own, so that its rules (a routing rule for every lead, a tag rule) touch
// none of the traffic's profiles.
const wave2Tenant = "wave2"

// wave2Partners are the partners of wave 2's tenant: the brand (every
// scope: it writes the rules, owns the fan-out topic and sends the
// events), a dealer that receives leads by webhook, and two subscribers of
// the topic, one by webhook and one on Kafka.
var wave2Partners = []partner{
	{name: "w2brand", tenant: wave2Tenant, key: "w2brand-system-key-5d1c88"},
	{name: "w2dealer", tenant: wave2Tenant, key: "w2dealer-system-key-0e9b42"},
	{name: "w2bank", tenant: wave2Tenant, key: "w2bank-system-key-a7730f"},
	{name: "w2leasing", tenant: wave2Tenant, key: "w2leasing-system-key-3b6e15"},
}

const (
	w2brand   = 2 // index in allPartners
	w2dealer  = 3
	w2bank    = 4
	w2leasing = 5
)

// wave2Config is wave 2's partners in the configuration file: scoped keys,
// and the dealer's lead delivery, a webhook to the test's receiver.
func wave2Config(dealer *receiver) string {
	var b strings.Builder
	for i, p := range allPartners[w2brand:] {
		scopes := "[events:write]"
		if i == 0 {
			scopes = "[events:write, profiles:read, profiles:write, admin, topics:write]"
		}
		fmt.Fprintf(&b, "  - name: %s\n    tenant: %s\n    keys: [{key: %s, scopes: %s}]\n    rate_limit: {rps: -1}\n", p.name, p.tenant, p.key, scopes)
		if p.name == "w2dealer" {
			fmt.Fprintf(&b, "    delivery: {webhook: {url: %q, secret: %q, timeout: 5s}}\n", dealer.srv.URL, dealer.secret())
		}
	}
	return b.String()
}

// receiver is a partner's webhook endpoint: it checks every request's
// Standard Webhooks signature with its own code (webhook-signature: "v1,"
// and the base64 HMAC-SHA256 of "id.timestamp.body" under the whsec_
// secret's key), answers 200 to a signed request and 401 to anything else.
type receiver struct {
	srv    *httptest.Server
	mu     sync.Mutex
	key    []byte
	got    []hookRequest // signed requests, in order
	badSig int
}

type hookRequest struct {
	id   string
	body map[string]any
}

func newReceiver(t *testing.T) *receiver {
	rc := &receiver{}
	rc.srv = httptest.NewServer(http.HandlerFunc(rc.serve))
	t.Cleanup(rc.srv.Close)
	return rc
}

// secret makes the receiver's signing key and returns it as a whsec_
// secret (a dealer's, written in the configuration).
func (rc *receiver) secret() string {
	key := make([]byte, 24)
	rand.Read(key)
	rc.mu.Lock()
	rc.key = key
	rc.mu.Unlock()
	return "whsec_" + base64.StdEncoding.EncodeToString(key)
}

// setSecret takes the whsec_ secret a subscription's creation answered.
func (rc *receiver) setSecret(secret string) error {
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil || !strings.HasPrefix(secret, "whsec_") || len(key) == 0 {
		return fmt.Errorf("signing secret %q: %v", secret, err)
	}
	rc.mu.Lock()
	rc.key = key
	rc.mu.Unlock()
	return nil
}

func (rc *receiver) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	id, ts := r.Header.Get("webhook-id"), r.Header.Get("webhook-timestamp")
	rc.mu.Lock()
	defer rc.mu.Unlock()
	mac := hmac.New(sha256.New, rc.key)
	fmt.Fprintf(mac, "%s.%s.", id, ts)
	mac.Write(body)
	want := "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
	signed := false
	for _, sig := range strings.Fields(r.Header.Get("webhook-signature")) {
		signed = signed || hmac.Equal([]byte(sig), []byte(want))
	}
	if rc.key == nil || !signed || id == "" || ts == "" {
		rc.badSig++
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	var m map[string]any
	_ = json.Unmarshal(body, &m)
	rc.got = append(rc.got, hookRequest{id: id, body: m})
	w.WriteHeader(http.StatusOK)
}

// requests returns the signed requests so far and how many came with a
// bad signature.
func (rc *receiver) requests() ([]hookRequest, int) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return slices.Clone(rc.got), rc.badSig
}

// wave2Hooks are the test's webhook receivers: the dealer's CRM (its
// secret is in the configuration) and the bank's endpoint (its secret
// comes with its subscription); and the ids of the fan-out subscriptions.
type wave2Hooks struct {
	dealer, bank        *receiver
	subBank, subLeasing string
}

// call sends a request with partner p's key to base+path and decodes the
// JSON answer; it returns the answer's headers too.
func (r *rolodex) call(t *testing.T, p partner, method, base, path, body string) (int, map[string]any, http.Header) {
	t.Helper()
	req, err := http.NewRequest(method, base+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	a, h, err := sendHeaders(r.client, req, p)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	var m map[string]any
	_ = json.Unmarshal(a.body, &m)
	return a.status, m, h
}

func sendHeaders(client *http.Client, req *http.Request, p partner) (answer, http.Header, error) {
	req.Header.Set("Authorization", "Bearer "+p.key)
	resp, err := client.Do(req)
	if err != nil {
		return answer{}, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return answer{resp.StatusCode, body}, resp.Header, err
}

// w2event makes an event of wave 2's brand and what Rolodex must make of
// it: one email, traits and properties given as JSON values.
func (tr *traffic) w2event(t *testing.T, id, typ, email string, tm time.Time, traits, props map[string]string) sent {
	t.Helper()
	nv, err := tr.norm.Identifier("email", email)
	if err != nil {
		t.Fatal(err)
	}
	p := allPartners[w2brand]
	ident := schemas.Identifier{Type: "email", Value: nv}
	tm = tm.UTC().Truncate(time.Millisecond)
	ev := &schemas.Event{Tenant: p.tenant, ID: id, Type: typ, Time: tm, Source: "wave2", Partner: p.name,
		Identifiers: []schemas.Identifier{ident}, Traits: traits, Properties: props}
	body := map[string]any{"id": id, "type": typ, "time": tm.Format(time.RFC3339Nano), "source": "wave2",
		"identifiers": map[string]string{"email": email}}
	raw := func(m map[string]string) map[string]json.RawMessage {
		out := map[string]json.RawMessage{}
		for k, v := range m {
			out[k] = json.RawMessage(v)
		}
		return out
	}
	if len(traits) > 0 {
		body["traits"] = raw(traits)
	}
	if len(props) > 0 {
		body["properties"] = raw(props)
	}
	return sent{partner: w2brand, body: body, ev: ev, idents: []sentIdent{{"email", email, schemas.NodeID(p.tenant, ident)}}}
}

// w2post posts ss as wave 2's brand to path of the ingest API (202, into
// the reference model).
func (r *rolodex) w2post(t *testing.T, path string, ss ...sent) {
	t.Helper()
	var payload any = bodiesOf(ss)
	if len(ss) == 1 {
		payload = ss[0].body
	}
	b, _ := json.Marshal(payload)
	code, ans, _ := r.call(t, allPartners[w2brand], http.MethodPost, r.ingest, path, string(b))
	if code != http.StatusAccepted {
		t.Fatalf("POST %s %s: %d %v, want 202", path, b, code, ans)
	}
	r.traffic.accept(ss, true)
}

// wave2 drives each of wave 2's rooms once through the running processes,
// in a tenant of its own: a tag rule (the tag stage puts its tag on the
// profile an event makes match), a message's lifecycle (sent, then a hard
// bounce: the message's state, and the address invalid on the profile
// through the identifier.invalidated event the lifecycle writes to
// rolodex.events), lead routing (a rule sends the lead to a dealer whose
// CRM, a webhook receiver here, gets it signed; the lead reads delivered),
// and partner fan-out (a topic, a webhook and a Kafka subscription, an
// event published into the topic reaching both). The sink's report rows
// of the deliveries are in ClickHouse and in `rolodex report leads` and
// `report deliveries`. Every event is in the reference model, so the
// phases after this one compare wave 2's profiles too.
func (r *rolodex) wave2(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()
	brand := allPartners[w2brand]
	api := func(want int, p partner, method, path, body string) (map[string]any, http.Header) {
		t.Helper()
		code, ans, h := r.call(t, p, method, r.api, path, body)
		if code != want {
			t.Fatalf("%s %s %s as %s: %d %v, want %d", method, path, body, p.name, code, ans, want)
		}
		return ans, h
	}
	// A change of the fan-out directory is answered once the fan-out
	// stage has it in every partition: an event published after the
	// answer is decided with it.
	inForce := func(want int, p partner, method, path, body string) map[string]any {
		t.Helper()
		ans, h := api(want, p, method, path, body)
		if h.Get("Rolodex-In-Force") != "true" {
			t.Fatalf("%s %s as %s: Rolodex-In-Force: %q, want true", method, path, p.name, h.Get("Rolodex-In-Force"))
		}
		return ans
	}
	now := time.Now()
	var took []string // how long after the phase's start each outcome was seen
	seen := func(what string) { took = append(took, fmt.Sprintf("%s %.1fs", what, time.Since(now).Seconds())) }

	// The rules and the directory first.
	rule, _ := api(http.StatusOK, brand, http.MethodPut, "/v1/tag-rules/w2-gold",
		`{"tag":"w2-gold","condition":"has(traits.plan) && traits.plan == \"gold\"","description":"gold plan"}`)
	if rule["change"] != "created" || rule["version"] != 1.0 {
		t.Fatalf("PUT /v1/tag-rules/w2-gold: %v, want created, version 1", rule)
	}
	api(http.StatusOK, brand, http.MethodPut, "/v1/routing/rules",
		`{"rules":[{"id":"all","condition":"true","strategy":"first","pool":[{"partner":"w2dealer"}]}]}`)
	inForce(http.StatusCreated, brand, http.MethodPost, "/v1/topics", `{"name":"w2-cars","allowed":["w2bank","w2leasing"]}`)
	sub := inForce(http.StatusCreated, allPartners[w2bank], http.MethodPost, "/v1/subscriptions",
		fmt.Sprintf(`{"topic":"w2-cars","webhook":{"url":%q}}`, r.hooks.bank.srv.URL))
	if err := r.hooks.bank.setSecret(fmt.Sprint(sub["secret"])); err != nil {
		t.Fatal(err)
	}
	r.hooks.subBank = fmt.Sprint(sub["id"])
	r.hooks.subLeasing = fmt.Sprint(inForce(http.StatusCreated, allPartners[w2leasing], http.MethodPost, "/v1/subscriptions", `{"topic":"w2-cars","kafka":true}`)["id"])
	seen("rules, topic and subscriptions written")

	// Then the events: a gold customer, a message that bounces hard, a
	// car chosen published into the topic.
	gold := r.traffic.w2event(t, "w2-signup-1", "signup", "gold@wave2.example", now, map[string]string{"plan": `"gold"`}, nil)
	r.w2post(t, "/v1/events", gold,
		r.traffic.w2event(t, "w2-sent-1", "message.sent", "bounce@wave2.example", now, nil,
			map[string]string{"message_id": `"w2-welcome"`, "channel": `"email"`}),
		r.traffic.w2event(t, "w2-bounce-1", "message.bounced", "bounce@wave2.example", now.Add(time.Second), nil,
			map[string]string{"message_id": `"w2-welcome"`, "bounce": `"hard"`}))
	r.w2post(t, "/v1/topics/w2-cars/events", r.traffic.w2event(t, "w2-car-1", "car.chosen", "car@wave2.example", now, nil,
		map[string]string{"model": `"Tracker"`}))

	// A lead: the routing rule reaches the routing group on its own
	// topic, and a lead decided before it is unrouted (no_match); send
	// leads until one is routed.
	var leadID string
	for i := 0; leadID == ""; i++ {
		if i == 10 {
			t.Fatal("10 leads and none routed: the routing rule is not in force")
		}
		id := fmt.Sprintf("W2-L%d", i)
		switch l := r.w2lead(t, ctx, id); {
		case l["status"] == "routed" && l["partner"] == "w2dealer":
			leadID = id
			seen(fmt.Sprintf("lead %s routed (lead %d)", id, i+1))
		case l["status"] != "unrouted":
			t.Fatalf("lead %s: %v, want routed to w2dealer (or unrouted before the rule was in force)", id, l)
		}
	}

	// Each room's outcome, through the API.
	profile := func(email string) map[string]any {
		code, p, _ := r.call(t, brand, http.MethodGet, r.api, "/v1/lookup?"+url.Values{"type": {"email"}, "value": {email}}.Encode(), "")
		if code != http.StatusOK {
			return nil
		}
		return p
	}
	waitFor(t, ctx, "the rule tag w2-gold on the gold customer's profile", func() error {
		p := profile("gold@wave2.example")
		if p == nil {
			return fmt.Errorf("no profile yet")
		}
		ts, _ := p["tags"].([]any)
		for _, x := range ts {
			if tg, _ := x.(map[string]any); tg["tag"] == "w2-gold" && tg["source"] == "rule" && tg["rule"] == "w2-gold" {
				r.traffic.setRuleTags(fmt.Sprint(p["id"]), "w2-gold")
				return nil
			}
		}
		return fmt.Errorf("tags %v", p["tags"])
	})
	seen("rule tag")
	waitFor(t, ctx, "message w2-welcome bounced hard", func() error {
		code, m, _ := r.call(t, brand, http.MethodGet, r.api, "/v1/messages/w2-welcome", "")
		if code != http.StatusOK || m["state"] != "bounced" || m["bounce"] != "hard" {
			return fmt.Errorf("GET /v1/messages/w2-welcome: %d %v", code, m)
		}
		return nil
	})
	seen("message bounced")
	waitFor(t, ctx, "the bounced address invalid (hard_bounce) on its profile", func() error {
		p := profile("bounce@wave2.example")
		inv, _ := p["invalid_identifiers"].([]any)
		for _, x := range inv {
			if i, _ := x.(map[string]any); i["type"] == "email" && i["value"] == "bounce@wave2.example" && i["reason"] == "hard_bounce" {
				if ch, _ := p["channels"].(map[string]any); ch["email"] != nil {
					return fmt.Errorf("still a channel: %v", p["channels"])
				}
				return nil
			}
		}
		return fmt.Errorf("invalid identifiers %v", p["invalid_identifiers"])
	})
	seen("address invalid")
	r.w2leadDelivered(t, ctx, leadID)
	seen("lead delivered")
	r.w2delivered(t, ctx, "w2-car-1")
	seen("fan-out webhook and Kafka record")

	// The lifecycle's identifier.invalidated is an event of the profile:
	// into the reference model with the rest.
	inv := r.consumeOne(t, ctx, schemas.TopicEvents, func(rec *kgo.Record) bool {
		v, err := schemas.EventCodec{}.Decode(rec.Value)
		ev, _ := v.(*schemas.Event)
		return err == nil && ev.Tenant == wave2Tenant && ev.Source == schemas.SourceLifecycle
	})
	v, err := schemas.EventCodec{}.Decode(inv.Value)
	if err != nil {
		t.Fatal(err)
	}
	ev := v.(*schemas.Event)
	if ev.Type != schemas.EventIdentifierInvalidated || ev.Properties["reason"] != `"hard_bounce"` {
		t.Fatalf("the lifecycle's event on %s: %+v, want identifier.invalidated, hard_bounce", schemas.TopicEvents, ev)
	}
	r.traffic.accept([]sent{{partner: w2brand, ev: ev}}, false)

	// Wave 2's profiles equal the reference (the phases after this one
	// compare every profile).
	m, _ := r.traffic.model()
	ruleTags := r.traffic.ruleTagsNow()
	for _, email := range []string{"gold@wave2.example", "bounce@wave2.example", "car@wave2.example", "lead@wave2.example"} {
		want := m.Profile(m.Root(schemas.NodeID(wave2Tenant, schemas.Identifier{Type: "email", Value: email})))
		waitFor(t, ctx, "the profile of "+email+" to equal the reference", func() error {
			a, err := get(r.client, r.api, brand, "/v1/profiles/"+want.ID)
			if err != nil {
				return err
			}
			if d := sameProfileRuleTags(a, want, ruleTags[want.ID]); d != "" {
				return fmt.Errorf("%s", d)
			}
			return nil
		})
	}

	// The sink's report rows, and the reports.
	waitFor(t, ctx, "lead_deliveries and deliveries rows in ClickHouse", func() error {
		for _, q := range []string{
			"SELECT count() FROM " + r.db + ".lead_deliveries FINAL WHERE tenant = 'wave2' AND lead_id = '" + leadID + "' AND partner = 'w2dealer' AND type = 'lead.distributed' AND ok = 1",
			"SELECT count() FROM " + r.db + ".deliveries FINAL WHERE tenant = 'wave2' AND webhook_id = '" + r.hooks.subBank + ".w2-car-1' AND type = 'delivery.succeeded'",
			"SELECT count() FROM " + r.db + ".deliveries FINAL WHERE tenant = 'wave2' AND webhook_id = '" + r.hooks.subLeasing + ".w2-car-1' AND type = 'delivery.succeeded'",
		} {
			res, err := clickhouse.Query(ctx, r.ch, q)
			if err != nil {
				return err
			}
			if res.Rows[0][0] != "1" {
				return fmt.Errorf("%s: %v, want 1", q, res.Rows)
			}
		}
		return nil
	})
	seen("ClickHouse rows")
	report := func(name string) []map[string]any {
		out := run(t, ctx, r.bin, "report", name, "--clickhouse", r.chAddr, "--database", r.db, "--tenant", wave2Tenant, "--format", "json")
		var rows []map[string]any
		if err := json.Unmarshal([]byte(out), &rows); err != nil {
			t.Fatalf("rolodex report %s: %v\n%s", name, err, out)
		}
		return rows
	}
	if rows := report("leads"); len(rows) != 1 || rows[0]["partner"] != "w2dealer" || rows[0]["routed"] != 1.0 || rows[0]["delivered"] != 1.0 {
		t.Errorf("rolodex report leads --tenant wave2: %v, want w2dealer's lead routed and delivered", rows)
	}
	rows := report("deliveries")
	slices.SortFunc(rows, func(a, b map[string]any) int {
		return strings.Compare(fmt.Sprint(a["partner"]), fmt.Sprint(b["partner"]))
	})
	if len(rows) != 2 || rows[0]["partner"] != "w2bank" || rows[1]["partner"] != "w2leasing" {
		t.Fatalf("rolodex report deliveries --tenant wave2: %v, want a row of w2bank and one of w2leasing", rows)
	}
	for _, row := range rows {
		if row["topic"] != "w2-cars" || row["deliveries"] != 1.0 || row["delivered"] != 1.0 {
			t.Errorf("rolodex report deliveries --tenant wave2: %v, want one delivery of w2-cars delivered", row)
		}
	}
	seen("reports")
	t.Logf("wave 2: %s", strings.Join(took, ", "))
}

// w2lead sends wave 2's lead id (lead.created) and returns the lead once
// routing decided it.
func (r *rolodex) w2lead(t *testing.T, ctx context.Context, id string) map[string]any {
	t.Helper()
	r.w2post(t, "/v1/events", r.traffic.w2event(t, "w2-lead-"+id, "lead.created", "lead@wave2.example", time.Now(),
		map[string]string{"name": `"Davi"`}, map[string]string{"lead_id": fmt.Sprintf("%q", id)}))
	var l map[string]any
	waitFor(t, ctx, "lead "+id+" decided", func() error {
		var code int
		if code, l, _ = r.call(t, allPartners[w2brand], http.MethodGet, r.api, "/v1/leads/"+url.PathEscape(id), ""); code != http.StatusOK || l["status"] == nil {
			return fmt.Errorf("GET /v1/leads/%s: %d %v", id, code, l)
		}
		return nil
	})
	return l
}

// w2leadDelivered waits until lead id reads delivered and the dealer's
// CRM has it, signed.
func (r *rolodex) w2leadDelivered(t *testing.T, ctx context.Context, id string) {
	t.Helper()
	waitFor(t, ctx, "lead "+id+" delivered to w2dealer's CRM", func() error {
		code, l, _ := r.call(t, allPartners[w2brand], http.MethodGet, r.api, "/v1/leads/"+url.PathEscape(id), "")
		if code != http.StatusOK || l["status"] != "routed" || l["partner"] != "w2dealer" || l["delivered_at"] == nil {
			return fmt.Errorf("GET /v1/leads/%s: %d %v", id, code, l)
		}
		got, bad := r.hooks.dealer.requests()
		for _, h := range got {
			if strings.HasPrefix(h.id, id+".") && h.body["lead_id"] == id && h.body["partner"] == "w2dealer" {
				return nil
			}
		}
		return fmt.Errorf("the CRM has %d signed requests (%d with a bad signature): %v", len(got), bad, got)
	})
	if _, bad := r.hooks.dealer.requests(); bad != 0 {
		t.Errorf("the dealer's CRM: %d requests with a bad signature", bad)
	}
}

// w2delivered waits until event, published into w2-cars, reached both
// subscribers: the bank's webhook, signed, and the leasing's record on
// rolodex.out.w2leasing with its CloudEvents headers.
func (r *rolodex) w2delivered(t *testing.T, ctx context.Context, event string) {
	t.Helper()
	waitFor(t, ctx, "the bank's webhook of "+event, func() error {
		got, bad := r.hooks.bank.requests()
		for _, h := range got {
			if h.id == r.hooks.subBank+"."+event && h.body["event_id"] == event && h.body["topic"] == "w2-cars" && h.body["publisher"] == "w2brand" {
				return nil
			}
		}
		return fmt.Errorf("the bank has %d signed requests (%d with a bad signature): %v", len(got), bad, got)
	})
	if _, bad := r.hooks.bank.requests(); bad != 0 {
		t.Errorf("the bank's endpoint: %d requests with a bad signature", bad)
	}
	ceID := r.hooks.subLeasing + "." + event
	rec := r.consumeOne(t, ctx, "rolodex.out.w2leasing", func(rec *kgo.Record) bool {
		for _, x := range rec.Headers {
			if x.Key == "ce_id" {
				return string(x.Value) == ceID
			}
		}
		return false
	})
	h := map[string]string{}
	for _, x := range rec.Headers {
		h[x.Key] = string(x.Value)
	}
	var body map[string]any
	_ = json.Unmarshal(rec.Value, &body)
	if h["ce_specversion"] != "1.0" || h["ce_type"] != "car.chosen" || h["ce_source"] != "/rolodex/tenants/wave2/topics/w2-cars" ||
		h["ce_subject"] != string(rec.Key) || h["rolodex_subscription"] != r.hooks.subLeasing || h["rolodex_topic"] != "w2-cars" ||
		body["event_id"] != event || body["profile_id"] != string(rec.Key) {
		t.Errorf("rolodex.out.w2leasing: key %s headers %v body %s", rec.Key, h, rec.Value)
	}
}

// wave2Again checks, after the broker failure, that lead routing and
// delivery and partner fan-out still deliver: wave 2's groups outlived
// the failure.
func (r *rolodex) wave2Again(t *testing.T, ctx context.Context) {
	t.Helper()
	if l := r.w2lead(t, ctx, "W2-after"); l["status"] != "routed" || l["partner"] != "w2dealer" {
		t.Fatalf("lead W2-after, after the broker failure: %v, want routed to w2dealer", l)
	}
	r.w2leadDelivered(t, ctx, "W2-after")
	r.w2post(t, "/v1/topics/w2-cars/events", r.traffic.w2event(t, "w2-car-2", "car.chosen", "car2@wave2.example", time.Now(), nil,
		map[string]string{"model": `"Onix"`}))
	r.w2delivered(t, ctx, "w2-car-2")
}

// consumeOne reads topic from the start until a record matches, and
// returns it.
func (r *rolodex) consumeOne(t *testing.T, ctx context.Context, topic string, match func(*kgo.Record) bool) *kgo.Record {
	t.Helper()
	cl, err := kafkaclient.NewClient(kafkaclient.Config{Brokers: r.brokers, ClientID: "rolodex-system-reader"},
		kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	n := 0
	for {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("%s: no matching record in %d read: %v", topic, n, err)
		}
		fs.EachError(func(tp string, p int32, err error) { t.Fatalf("fetch %s/%d: %v", tp, p, err) })
		var found *kgo.Record
		fs.EachRecord(func(rec *kgo.Record) {
			n++
			if found == nil && match(rec) {
				found = rec
			}
		})
		if found != nil {
			return found
		}
	}
}
