package main

import (
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
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

// dealerCRM is a dealer's CRM standing in for the real one: it checks
// every request's Standard Webhooks signature with its own code (not
// Rolodex's) and answers from a script.
type dealerCRM struct {
	t      *testing.T
	secret string // whsec_...
	key    []byte
	srv    *httptest.Server

	mu sync.Mutex
	// script[n] answers the n-th request (from 0); past its end: 200.
	script []crmAnswer
	got    []crmRequest
	badSig int
}

type crmAnswer struct {
	status int
	delay  time.Duration // before answering (a slow dealer)
}

type crmRequest struct {
	id   string
	body map[string]any
}

func newDealerCRM(t *testing.T, script ...crmAnswer) *dealerCRM {
	key := make([]byte, 24)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	d := &dealerCRM{t: t, key: key, secret: "whsec_" + base64.StdEncoding.EncodeToString(key), script: script}
	d.srv = httptest.NewServer(http.HandlerFunc(d.serve))
	t.Cleanup(d.srv.Close)
	return d
}

// serve verifies the signature (webhook-signature: space-separated
// "v1,<base64 HMAC-SHA256 of id.timestamp.body>") and answers.
func (d *dealerCRM) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	id, ts := r.Header.Get("webhook-id"), r.Header.Get("webhook-timestamp")
	mac := hmac.New(sha256.New, d.key)
	fmt.Fprintf(mac, "%s.%s.", id, ts)
	mac.Write(body)
	want := "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
	ok := false
	for _, s := range strings.Fields(r.Header.Get("webhook-signature")) {
		ok = ok || hmac.Equal([]byte(s), []byte(want))
	}
	d.mu.Lock()
	if !ok || id == "" || ts == "" {
		d.badSig++
		d.mu.Unlock()
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	var m map[string]any
	_ = json.Unmarshal(body, &m)
	n := len(d.got)
	d.got = append(d.got, crmRequest{id: id, body: m})
	a := crmAnswer{status: 200}
	if n < len(d.script) {
		a = d.script[n]
	}
	d.mu.Unlock()
	time.Sleep(a.delay)
	w.WriteHeader(a.status)
}

func (d *dealerCRM) requests() []crmRequest {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]crmRequest(nil), d.got...)
}

// httpAs sends a request with key and decodes the JSON answer.
func httpAs(t *testing.T, key, method, u, body string) (int, map[string]any) {
	t.Helper()
	code, m, _ := callAPI(t, key, method, u, body)
	return code, m
}

// Lead routing end to end, in dev mode (ingest, identity with its lead
// snapshots, the routing group and its SLA scheduler, delivery, the API)
// with real HTTP servers as the dealers' CRMs: rules written with the API,
// a dealer outside its working hours skipped, a CRM that answers 500 twice
// then takes the lead (one webhook id, every signature valid, the mapped
// body), acceptance over HTTP with the dealer's own key, a duplicate lead
// never routed twice, a daily cap sending the next lead to the fallback
// rule, a 410 that re-routes (delivery_failed), a slow CRM that times out
// and then takes the lead, an SLA that expires in real time
// (sla_exhausted), a rejection over HTTP re-routing until no partner is
// left (no_eligible), feedback from a dealer that does not hold the lead
// ignored, a blacklisted profile never routed, and another tenant's
// dealer refused in a rule.
func TestLeadRoutingEndToEnd(t *testing.T) {
	crmA := newDealerCRM(t, crmAnswer{status: 500}, crmAnswer{status: 500}) // then 200
	crmB := newDealerCRM(t, crmAnswer{status: 410}, crmAnswer{status: 410}) // gone
	crmC := newDealerCRM(t, crmAnswer{status: 200, delay: 2500 * time.Millisecond})
	// dealer-closed's only working half hour is twelve hours away.
	closed := (time.Now().UTC().Hour() + 12) % 24
	cfg := fmt.Sprintf(`routing:
  tick: 200ms
  delivery: {retry_schedule: [0s, 300ms, 300ms, 300ms]}
partners:
  - name: demo
    tenant: demo
    keys: [{key: demo-key, scopes: [events:write, profiles:read, profiles:write, admin]}]
  - name: dealer-a
    tenant: demo
    keys: [{key: dealer-a-key, scopes: [events:write]}]
    timezone: America/Sao_Paulo
    delivery:
      webhook: {url: %q, secret: %q, timeout: 1s}
      mapping: {cliente.nome: traits.name, cliente.email: identifiers.email, regiao: properties.region, origem: "=rolodex"}
  - name: dealer-b
    tenant: demo
    keys: [{key: dealer-b-key, scopes: [events:write]}]
    delivery: {webhook: {url: %q, secret: %q, timeout: 1s}}
  - name: dealer-c
    tenant: demo
    keys: [{key: dealer-c-key, scopes: [events:write]}]
    delivery: {webhook: {url: %q, secret: %q, timeout: 1s}}
  - name: dealer-closed
    tenant: demo
    keys: [{key: dealer-closed-key, scopes: [events:write]}]
    working_hours: {mon-sun: "%02d:00-%02d:30"}
    delivery: {kafka: true}
  - name: other-dealer
    tenant: other
    keys: [{key: other-dealer-key, scopes: [events:write, profiles:read, admin]}]
    delivery: {kafka: true}
`, crmA.srv.URL, crmA.secret, crmB.srv.URL, crmB.secret, crmC.srv.URL, crmC.secret, closed, closed)
	path := filepath.Join(t.TempDir(), "rolodex.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	api, _ := startDevArgs(t, "--config", path)

	post := func(key, body string) {
		t.Helper()
		if code, ans := httpAs(t, key, "POST", api+"/v1/events", body); code != 202 {
			t.Fatalf("POST /v1/events %s: %d %v", body, code, ans)
		}
	}
	lead := func(id string) map[string]any {
		code, l := httpAs(t, "demo-key", "GET", api+"/v1/leads/"+url.PathEscape(id), "")
		if code != 200 {
			return nil
		}
		return l
	}
	history := func(l map[string]any) []map[string]any {
		var out []map[string]any
		hs, _ := l["history"].([]any)
		for _, h := range hs {
			out = append(out, h.(map[string]any))
		}
		return out
	}
	waitLead := func(id, what string, cond func(l map[string]any) bool) map[string]any {
		t.Helper()
		var l map[string]any
		eventually(t, "lead "+id+": "+what, func() bool {
			l = lead(id)
			return l != nil && cond(l)
		})
		return l
	}

	// Another tenant's dealer cannot be in demo's rules.
	code, ans := httpAs(t, "demo-key", "PUT", api+"/v1/routing/rules",
		`{"rules":[{"id":"x","condition":"true","strategy":"first","pool":[{"partner":"other-dealer"}]}]}`)
	if code != 400 || !strings.Contains(fmt.Sprint(ans), "other-dealer") {
		t.Fatalf("a rule with another tenant's dealer: %d %v, want 400 naming it", code, ans)
	}
	// A cap counts the dealer's local day: keep clear of São Paulo's midnight.
	sp, _ := time.LoadLocation("America/Sao_Paulo")
	if now := time.Now().In(sp); now.Hour() == 23 && now.Minute() == 59 {
		time.Sleep(time.Duration(61-now.Second()) * time.Second)
	}
	code, ans = httpAs(t, "demo-key", "PUT", api+"/v1/routing/rules", `{"rules":[
		{"id":"probe","condition":"has(lead.properties.region) && lead.properties.region == \"PROBE\"","strategy":"first",
		 "pool":[{"partner":"dealer-closed"}],"outside_hours":true},
		{"id":"sp","condition":"has(lead.properties.region) && lead.properties.region == \"SP\"","strategy":"first",
		 "pool":[{"partner":"dealer-closed"},{"partner":"dealer-a"}],"cap_per_day":{"dealer-a":1},"sla":"1h","fallback":"national"},
		{"id":"national","condition":"true","strategy":"round_robin","pool":[{"partner":"dealer-b"},{"partner":"dealer-c"}],"sla":"12s"}]}`)
	if code != 200 {
		t.Fatalf("PUT /v1/routing/rules: %d %v", code, ans)
	}
	// The rules reach the routing group on their own topic, the leads on
	// another: which the group reads first is not ordered. Probe leads
	// (their own rule, a dealer with no cap) until one is routed: the
	// rules are then in force.
	for i := 0; ; i++ {
		id := fmt.Sprint("probe-", i)
		post("demo-key", `{"id":"ev-`+id+`","type":"lead.created","identifiers":{"email":"probe@example.com"},"properties":{"lead_id":"`+id+`","region":"PROBE"}}`)
		l := waitLead(id, "decided", func(l map[string]any) bool { return l["status"] != nil })
		if l["status"] == "routed" && l["partner"] == "dealer-closed" {
			break
		}
		if i == 20 {
			t.Fatalf("the rules are not in force after 20 probe leads: %v", l)
		}
	}

	// L1: São Paulo. dealer-closed is outside its working hours; dealer-a's
	// CRM fails twice, then takes it.
	post("demo-key", `{"id":"ev-l1","type":"lead.created","identifiers":{"email":"ana@example.com"},"traits":{"name":"Ana"},"properties":{"lead_id":"L1","region":"SP"}}`)
	l1 := waitLead("L1", "delivered to dealer-a", func(l map[string]any) bool {
		return l["partner"] == "dealer-a" && l["delivered_at"] != nil
	})
	h := history(l1)
	if len(h) != 1 || h[0]["rule"] != "sp" || h[0]["cause"] != "lead" {
		t.Fatalf("L1 history: %v", h)
	}
	skips := map[string]string{}
	for _, c := range h[0]["candidates"].([]any) {
		c := c.(map[string]any)
		s, _ := c["skip"].(string)
		skips[fmt.Sprint(c["rule"], "/", c["partner"])] = s
	}
	if skips["sp/dealer-closed"] != "hours" || skips["sp/dealer-a"] != "" || skips["probe/<nil>"] != "no_match" {
		t.Fatalf("L1 candidates: %v; want probe not matching, dealer-closed skipped for hours, dealer-a chosen", h[0]["candidates"])
	}
	reqs := crmA.requests()
	if len(reqs) != 3 {
		t.Fatalf("dealer-a's CRM got %d requests, want 3 (500, 500, 200)", len(reqs))
	}
	for _, r := range reqs {
		if r.id != reqs[0].id {
			t.Fatalf("webhook ids %q and %q: a retry must carry the same id", reqs[0].id, r.id)
		}
	}
	wantBody := map[string]any{"cliente": map[string]any{"nome": "Ana", "email": "ana@example.com"}, "regiao": "SP", "origem": "rolodex"}
	if !reflect.DeepEqual(reqs[2].body, wantBody) {
		t.Fatalf("dealer-a's CRM got %v, want the mapped body %v", reqs[2].body, wantBody)
	}

	// dealer-b rejects L1: not its lead, ignored (else L1 would move). dealer-a accepts
	// it with its own key.
	post("dealer-b-key", `{"id":"fb-forged","type":"lead.rejected","identifiers":{"email":"ana@example.com"},"properties":{"lead_id":"L1"}}`)
	post("dealer-a-key", `{"id":"fb-l1","type":"lead.accepted","identifiers":{"email":"ana@example.com"},"properties":{"lead_id":"L1"}}`)
	waitLead("L1", "accepted by dealer-a", func(l map[string]any) bool { return l["status"] == "accepted" && l["partner"] == "dealer-a" })

	// The same lead again (another event, the same CRM lead id): never
	// routed twice.
	post("demo-key", `{"id":"ev-l1-again","type":"lead.created","identifiers":{"email":"ana@example.com"},"properties":{"lead_id":"L1","region":"SP"}}`)

	// L2: São Paulo, Bia. dealer-a is at its cap for today: the fallback
	// rule national, round robin: dealer-b, whose CRM answers 410 (gone):
	// re-routed (delivery_failed) to dealer-c, whose CRM is slow the first
	// time (timed out, retried with the same id) and then takes it. Nobody
	// accepts it: after the 12s SLA it is unrouted, sla_exhausted. (The
	// SLA is long enough for the 410's report to come back first on a
	// loaded machine, and for L3's rejection below.)
	post("demo-key", `{"id":"ev-l2","type":"lead.created","identifiers":{"email":"bia@example.com"},"traits":{"name":"Bia"},"properties":{"lead_id":"L2","region":"SP"}}`)
	l2 := waitLead("L2", "unrouted sla_exhausted", func(l map[string]any) bool { return l["status"] == "unrouted" })
	h = history(l2)
	got := []string{}
	for _, d := range h {
		got = append(got, fmt.Sprintf("%v/%v/%v/%v/%v", d["attempt"], d["cause"], d["rule"], d["partner"], d["unrouted"]))
	}
	want := []string{"1/lead/national/dealer-b/<nil>", "2/delivery_failed/national/dealer-c/<nil>", "3/sla/<nil>/<nil>/sla_exhausted"}
	if !reflect.DeepEqual(got, want) || l2["reason"] != "sla_exhausted" {
		t.Fatalf("L2 history %v reason %v, want %v and sla_exhausted", got, l2["reason"], want)
	}
	capSkip := false
	for _, c := range h[0]["candidates"].([]any) {
		c := c.(map[string]any)
		capSkip = capSkip || (c["rule"] == "sp" && c["partner"] == "dealer-a" && c["skip"] == "cap")
	}
	if !capSkip {
		t.Fatalf("L2's first decision should show dealer-a skipped for its cap: %v", h[0]["candidates"])
	}
	if rs := crmC.requests(); len(rs) < 2 || rs[0].id != rs[1].id {
		t.Fatalf("dealer-c's CRM: %v; want the slow first request and its retry with the same webhook id", rs)
	}

	// L3: Rio. Round robin goes on (dealer-b again: 410, re-routed to
	// dealer-c); dealer-c rejects it over HTTP: every partner of the rule
	// was tried, no fallback: unrouted, no_eligible.
	post("demo-key", `{"id":"ev-l3","type":"lead.created","identifiers":{"email":"caio@example.com"},"properties":{"lead_id":"L3","region":"RJ"}}`)
	waitLead("L3", "with dealer-c", func(l map[string]any) bool { return l["partner"] == "dealer-c" })
	post("dealer-c-key", `{"id":"fb-l3","type":"lead.rejected","identifiers":{"email":"caio@example.com"},"properties":{"lead_id":"L3","reason":"no stock"}}`)
	l3 := waitLead("L3", "unrouted", func(l map[string]any) bool { return l["status"] == "unrouted" })
	if l3["reason"] != "no_eligible" {
		t.Fatalf("L3: %v, want unrouted no_eligible", l3)
	}

	// A blacklisted profile's lead is never routed.
	post("demo-key", `{"id":"bl-1","type":"blacklist.added","identifiers":{"email":"spam@example.com"},"properties":{"reason":"fraud"}}`)
	eventually(t, "spam@example.com blacklisted", func() bool {
		code, p := httpJSON(t, "GET", api+"/v1/lookup?type=email&value=spam%40example.com", "")
		return code == 200 && p["blacklisted"] == true
	})
	post("demo-key", `{"id":"ev-l4","type":"lead.created","identifiers":{"email":"spam@example.com"},"properties":{"lead_id":"L4","region":"SP"}}`)
	l4 := waitLead("L4", "unrouted", func(l map[string]any) bool { return l["status"] == "unrouted" })
	if l4["reason"] != "blacklisted" {
		t.Fatalf("L4: %v, want unrouted blacklisted", l4)
	}
	// Nor is one whose own event joins a new identifier (its primary:
	// user_id comes first) to the blacklisted person: the lead waits at
	// the new identifier's root until the merge its event starts is done
	// (docs/identity.md, "Leads and topic events wait for their event's
	// links"), and goes out with the blacklisted profile.
	post("demo-key", `{"id":"ev-l5","type":"lead.created","identifiers":{"user_id":"new-spammer-5","email":"spam@example.com"},"properties":{"lead_id":"L5","region":"SP"}}`)
	l5 := waitLead("L5", "decided", func(l map[string]any) bool { return l["status"] != nil })
	if l5["status"] != "unrouted" || l5["reason"] != "blacklisted" {
		t.Fatalf("L5 (a new user_id with the blacklisted email): %v, want unrouted blacklisted", l5)
	}
	held, released := metricValue(t, api, "rolodex_identity_held_total"), metricValue(t, api, "rolodex_identity_released_total")
	if held < 1 || released < held {
		t.Fatalf("rolodex_identity_held_total = %v, released_total = %v after L5 waited for its email to join and went out, want held >= 1 and released >= held", held, released)
	}

	// The duplicate L1 was read (the counter says so) and changed nothing:
	// still accepted by dealer-a, one decision by rule sp; dealer-a's CRM
	// still at three requests. Signatures were valid throughout.
	eventually(t, "the duplicate L1 read by routing", func() bool {
		return metricValue(t, api, `rolodex_routing_leads_total{result="duplicate"}`) >= 1
	})
	if l := lead("L1"); l["status"] != "accepted" || l["partner"] != "dealer-a" || len(history(l)) != 1 || history(l)[0]["rule"] != "sp" {
		t.Fatalf("the duplicate lead changed L1: %v", l)
	}
	if n := len(crmA.requests()); n != 3 {
		t.Fatalf("dealer-a's CRM got %d requests after the duplicate, want 3", n)
	}
	for name, d := range map[string]*dealerCRM{"a": crmA, "b": crmB, "c": crmC} {
		if d.badSig != 0 {
			t.Fatalf("dealer-%s's CRM saw %d requests with a bad signature", name, d.badSig)
		}
	}
	// Another tenant's key (with every scope needed) sees none of demo's
	// leads, nor its rules.
	if code, ans := httpAs(t, "other-dealer-key", "GET", api+"/v1/leads/L1", ""); code != 404 || strings.Contains(fmt.Sprint(ans), "dealer-a") {
		t.Fatalf("another tenant's key read demo's lead: %d %v", code, ans)
	}
	if code, ans := httpAs(t, "other-dealer-key", "GET", api+"/v1/routing/rules", ""); code != 200 || ans["version"] != 0.0 {
		t.Fatalf("another tenant's key read demo's rules: %d %v", code, ans)
	}
}

// metricValue is the value of one sample (name with its labels, as
// /metrics writes it) of the server at api, 0 when absent.
func metricValue(t *testing.T, api, sample string) float64 {
	t.Helper()
	res, err := http.Get(api + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, sample+" "); ok {
			var f float64
			fmt.Sscan(v, &f)
			return f
		}
	}
	return 0
}
