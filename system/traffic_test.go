//go:build system

package system

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/rolodex/rolodex/connectors/httpin"
	"github.com/rolodex/rolodex/normalize"
	"github.com/rolodex/rolodex/reference"
	"github.com/rolodex/rolodex/schemas"
)

// partner is one partner of the test's configuration.
type partner struct{ name, tenant, key string }

// partners are two partners of two tenants, with real keys: production
// commands refuse the built-in demo credential.
var partners = []partner{
	{name: "shop", tenant: "shop-br", key: "shop-system-key-7f3a9c"},
	{name: "dealer", tenant: "dealers", key: "dealer-system-key-b41e07"},
}

// allPartners are the partners of the configuration: the traffic's, then
// wave 2's (wave2_test.go). A sent event's partner indexes it.
var allPartners = append(slices.Clip(partners), wave2Partners...)

// identTypes are the identifier types a person has.
var identTypes = []string{"email", "phone", "user_id"}

// badPhone is a phone number the normaliser refuses: an event carrying it
// beside a valid identifier is accepted without it.
const badPhone = "12"

// sent is one generated event: the JSON a partner sends, and what Rolodex
// must make of it (normalised identifiers, the partner's tenant).
type sent struct {
	partner int
	body    map[string]any
	ev      *schemas.Event
	// idents are the identifiers as sent, each with its node.
	idents []sentIdent
}

type sentIdent struct{ typ, raw, node string }

// traffic generates the events of the test and keeps what Rolodex
// acknowledged. It is safe for concurrent use.
type traffic struct {
	norm   *normalize.Normalizer
	people [][]map[string]string // by partner: each person's identifiers as the partner spells them

	mu          sync.Mutex
	rng         *rand.Rand
	seq         int
	accepted    []*schemas.Event  // every acknowledged delivery, copies included
	nodes       map[sentIdent]int // identifiers of acknowledged events, with the partner that sent them
	deadLetters map[string]int    // by partner
	overHTTP    []sent            // acknowledged over HTTP, copies included
	// ruleTags are the rule tags the live profiles hold by the rules the
	// test wrote (profile id -> tags): the reference model folds events
	// only.
	ruleTags map[string][]string
}

// newTraffic makes people customers per partner. It normalises
// identifiers as the configuration of the Rolodex under test does (default
// region BR).
func newTraffic(t *testing.T, seed uint64, people int) *traffic {
	t.Helper()
	norm, err := normalize.New(normalize.Config{DefaultRegion: "BR"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := norm.Identifier("phone", badPhone); err == nil {
		t.Fatalf("phone %q normalises; the test needs one that does not", badPhone)
	}
	tr := &traffic{norm: norm, rng: rand.New(rand.NewPCG(seed, seed^0x5eed)), nodes: map[sentIdent]int{},
		deadLetters: map[string]int{}, ruleTags: map[string][]string{}}
	for pi := range partners {
		var ps []map[string]string
		for i := 0; i < people; i++ {
			p := map[string]string{
				"email":   fmt.Sprintf("Customer.%d@%s.Example.COM", i, partners[pi].name),
				"phone":   fmt.Sprintf("(%d) 9%04d-%04d", 11+10*pi, 4000+i, (i*37)%10000),
				"user_id": fmt.Sprintf("u-%d", i),
			}
			for typ, v := range p {
				if _, err := norm.Identifier(typ, v); err != nil {
					t.Fatalf("generated %s %q does not normalise: %v", typ, v, err)
				}
			}
			ps = append(ps, p)
		}
		tr.people = append(tr.people, ps)
	}
	return tr
}

// event makes a new event of partner pi: one to three identifiers of one
// of its people, sometimes one of another person (which links the two
// into one profile), sometimes an invalid phone (dropped), a time in the
// last three days.
func (tr *traffic) event(pi int) sent {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	r := tr.rng
	ppl := tr.people[pi]
	p := ppl[r.IntN(len(ppl))]
	raw := map[string][]string{}
	for _, typ := range identTypes {
		if r.IntN(2) == 0 {
			raw[typ] = append(raw[typ], p[typ])
		}
	}
	if len(raw) == 0 {
		typ := identTypes[r.IntN(len(identTypes))]
		raw[typ] = append(raw[typ], p[typ])
	}
	if q := ppl[r.IntN(len(ppl))]; r.IntN(40) == 0 && q["email"] != p["email"] {
		typ := identTypes[r.IntN(len(identTypes))]
		raw[typ] = append(raw[typ], q[typ])
	}
	if r.IntN(25) == 0 {
		raw["phone"] = append(raw["phone"], badPhone)
	}
	tr.seq++
	id := fmt.Sprintf("sys-%d", tr.seq)
	tm := time.Now().UTC().Add(-time.Duration(r.Int64N(int64(72*time.Hour/time.Millisecond))) * time.Millisecond).Truncate(time.Millisecond)
	s := sent{partner: pi}
	ev := &schemas.Event{Tenant: partners[pi].tenant, ID: id, Time: tm, Partner: partners[pi].name,
		Type:   []string{"page.viewed", "form.submitted", "lead.created", "email.opened"}[r.IntN(4)],
		Source: []string{"web", "app", "crm", "whatsapp"}[r.IntN(4)],
		Traits: map[string]string{"seq": strconv.Itoa(tr.seq), "tier": `"` + []string{"gold", "silver", "bronze"}[r.IntN(3)] + `"`},
	}
	idents := map[string]any{}
	for typ, vs := range raw {
		for _, v := range vs {
			nv, err := tr.norm.Identifier(typ, v)
			if err != nil {
				continue // dropped, as ingest drops it
			}
			ident := schemas.Identifier{Type: typ, Value: nv}
			ev.Identifiers = append(ev.Identifiers, ident)
			s.idents = append(s.idents, sentIdent{typ, v, schemas.NodeID(ev.Tenant, ident)})
		}
		if len(vs) == 1 {
			idents[typ] = vs[0] // one value: a string; several: a list
		} else {
			idents[typ] = vs
		}
	}
	schemas.SortIdentifiers(ev.Identifiers)
	s.ev = ev
	s.body = map[string]any{"id": id, "type": ev.Type, "time": tm.Format(time.RFC3339Nano), "source": ev.Source,
		"identifiers": idents, "traits": map[string]any{"seq": tr.seq, "tier": json.RawMessage(ev.Traits["tier"])}}
	return s
}

// batch makes n events of partner pi.
func (tr *traffic) batch(pi, n int) []sent {
	out := make([]sent, n)
	for i := range out {
		out[i] = tr.event(pi)
	}
	return out
}

// accept records that Rolodex acknowledged ss (over HTTP when http).
func (tr *traffic) accept(ss []sent, http bool) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	for _, s := range ss {
		tr.accepted = append(tr.accepted, s.ev)
		for _, id := range s.idents {
			tr.nodes[id] = s.partner
		}
		if http {
			tr.overHTTP = append(tr.overHTTP, s)
		}
	}
}

// deadLettered records n dead letters of partner pi.
func (tr *traffic) deadLettered(pi, n int) {
	tr.mu.Lock()
	tr.deadLetters[partners[pi].name] += n
	tr.mu.Unlock()
}

// model returns the reference model of every acknowledged event and the
// events themselves.
func (tr *traffic) model() (*reference.Identity, []*schemas.Event) {
	tr.mu.Lock()
	evs := append([]*schemas.Event(nil), tr.accepted...)
	tr.mu.Unlock()
	m := reference.NewIdentity()
	for _, ev := range evs {
		m.Add(ev)
	}
	return m, evs
}

// httpCount returns how many events were acknowledged over HTTP, copies
// included.
func (tr *traffic) httpCount() int {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return len(tr.overHTTP)
}

// viaHTTP returns up to n events of partner pi acknowledged over HTTP.
func (tr *traffic) viaHTTP(pi, n int) []sent {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	var out []sent
	for _, s := range tr.overHTTP {
		if s.partner == pi && len(out) < n {
			out = append(out, s)
		}
	}
	return out
}

// setRuleTags records that the live profile id holds the rule tags tags
// (sorted).
func (tr *traffic) setRuleTags(id string, tags ...string) {
	tr.mu.Lock()
	tr.ruleTags[id] = slices.Sorted(slices.Values(tags))
	tr.mu.Unlock()
}

// ruleTagsNow returns a copy of the rule tags by profile id.
func (tr *traffic) ruleTagsNow() map[string][]string {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return maps.Clone(tr.ruleTags)
}

func (tr *traffic) totalDeadLetters() int {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	n := 0
	for _, c := range tr.deadLetters {
		n += c
	}
	return n
}

// bodiesOf returns the JSON bodies of ss.
func bodiesOf(ss []sent) []map[string]any {
	out := make([]map[string]any, len(ss))
	for i, s := range ss {
		out[i] = s.body
	}
	return out
}

// answer is an HTTP answer of the ingest API.
type answer struct {
	status int
	body   []byte
}

func (a answer) String() string { return fmt.Sprintf("%d %s", a.status, bytes.TrimSpace(a.body)) }

// post sends bodies to the ingest API as partner p: one object when there
// is one, else an array (a batch).
func post(client *http.Client, base string, p partner, bodies []map[string]any) (answer, error) {
	var payload any = bodies
	if len(bodies) == 1 {
		payload = bodies[0]
	}
	b, err := json.Marshal(payload)
	if err != nil {
		return answer{}, err
	}
	req, err := http.NewRequest(http.MethodPost, base+"/v1/events", bytes.NewReader(b))
	if err != nil {
		return answer{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	return send(client, req, p)
}

// get reads path from the query API as partner p.
func get(client *http.Client, base string, p partner, path string) (answer, error) {
	req, err := http.NewRequest(http.MethodGet, base+path, nil)
	if err != nil {
		return answer{}, err
	}
	return send(client, req, p)
}

// send sends req with partner p's key and reads the answer.
func send(client *http.Client, req *http.Request, p partner) (answer, error) {
	req.Header.Set("Authorization", "Bearer "+p.key)
	resp, err := client.Do(req)
	if err != nil {
		return answer{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return answer{resp.StatusCode, body}, err
}

// profilesDiff reads every reference profile by its id, and the profile of
// every identifier an acknowledged event carried by a lookup with the value
// as the partner spelled it, from the query API; it returns the first
// difference from the reference, "" when there is none.
func (tr *traffic) profilesDiff(client *http.Client, api string, m *reference.Identity) string {
	byTenant := map[string]partner{} // the first partner of each tenant reads its profiles
	for _, p := range allPartners {
		if _, ok := byTenant[p.tenant]; !ok {
			byTenant[p.tenant] = p
		}
	}
	ruleTags := tr.ruleTagsNow()
	for id, want := range m.Profiles() {
		a, err := get(client, api, byTenant[want.Tenant], "/v1/profiles/"+id)
		if err != nil {
			return err.Error()
		}
		if d := sameProfileRuleTags(a, want, ruleTags[id]); d != "" {
			return "profile " + id + ": " + d
		}
	}
	tr.mu.Lock()
	nodes := make(map[sentIdent]int, len(tr.nodes))
	for k, v := range tr.nodes {
		nodes[k] = v
	}
	tr.mu.Unlock()
	for id, pi := range nodes {
		p := allPartners[pi]
		a, err := get(client, api, p, "/v1/lookup?"+url.Values{"type": {id.typ}, "value": {id.raw}}.Encode())
		if err != nil {
			return err.Error()
		}
		var got schemas.Profile
		if a.status != http.StatusOK || json.Unmarshal(a.body, &got) != nil {
			return fmt.Sprintf("lookup %s %q of %s: %v", id.typ, id.raw, p.name, a)
		}
		if want := m.Root(id.node); got.ID != want {
			return fmt.Sprintf("lookup %s %q of %s: profile %s, want %s", id.typ, id.raw, p.name, got.ID, want)
		}
	}
	return ""
}

// sameProfile compares an answer of the query API with a reference
// profile, as JSON.
func sameProfile(a answer, want *schemas.Profile) string { return sameProfileRuleTags(a, want, nil) }

// sameProfileRuleTags compares an answer of the query API with a
// reference profile, as JSON, once the answer's rule tags (source "rule",
// which the API adds from the tag stage's table) are taken out: they must
// be ruleTags, sorted.
func sameProfileRuleTags(a answer, want *schemas.Profile, ruleTags []string) string {
	var got schemas.Profile
	if a.status != http.StatusOK {
		return a.String()
	}
	if err := json.Unmarshal(a.body, &got); err != nil {
		return fmt.Sprintf("%v: %s", err, a.body)
	}
	var gotRule []string
	got.Tags = slices.DeleteFunc(got.Tags, func(t schemas.ProfileTag) bool {
		if t.Source == schemas.TagSourceRule {
			gotRule = append(gotRule, t.Tag)
			return true
		}
		return false
	})
	slices.Sort(gotRule)
	if !slices.Equal(gotRule, ruleTags) {
		return fmt.Sprintf("rule tags %v, want %v: %s", gotRule, ruleTags, a.body)
	}
	gj, _ := json.Marshal(&got)
	wj, _ := json.Marshal(want)
	if !bytes.Equal(gj, wj) {
		return fmt.Sprintf("\n got %s\nwant %s", gj, wj)
	}
	return ""
}

// rejected decodes a 400 answer's list of invalid events.
func rejected(a answer) (httpin.ErrorBody, error) {
	var eb httpin.ErrorBody
	err := json.Unmarshal(a.body, &eb)
	return eb, err
}
