package fanout

import (
	"fmt"
	"slices"
	"testing"

	"github.com/rolodex/rolodex/schemas"
)

const t0 = int64(1_735_725_600_000) // 2025-01-01T10:00:00Z

// world is a directory with one topic of tenant t1 owned by dealer, read
// by bank (a webhook) and insurer (Kafka), and a profile of t1 with consent.
type world struct {
	d *Directory
	s *State
	n int64 // origins
}

func topicRec(v int64, allowed ...string) *schemas.TopicRecord {
	return &schemas.TopicRecord{Version: v, Topic: schemas.Topic{Tenant: "t1", Name: "car-chosen", Owner: "dealer",
		Allowed: allowed, RequiresConsent: "offers", IncludeProfile: []string{"traits.name", "identifiers.email", "tags"}}}
}

func subRec(id, tenant, partner, status string, v int64) *schemas.SubscriptionRecord {
	return &schemas.SubscriptionRecord{Version: v, Secret: "whsec_c2VjcmV0", Subscription: schemas.Subscription{ID: id,
		Tenant: tenant, Partner: partner, Topic: "car-chosen", Status: status, Webhook: &schemas.SubscriptionHook{URL: "https://x.example"}}}
}

func facts() *schemas.FanoutProfile {
	return &schemas.FanoutProfile{ID: "p1", Tenant: "t1",
		Consent:     map[string]schemas.FanoutConsent{"offers": {Status: schemas.ConsentGranted, Since: t0 - 1000}},
		Traits:      map[string]string{"name": `"Ana & Bia <x>"`, "city": `"Campinas"`},
		Identifiers: map[string][]string{"email": {"ana@example.com"}, "phone": {"+5511912345678"}}, Tags: []string{"vip"}}
}

func newWorld(t *testing.T) *world {
	w := &world{}
	w.dir(&schemas.FanoutInput{Topic: topicRec(1, "bank", "insurer")})
	w.dir(&schemas.FanoutInput{Subscription: subRec("sub-bank", "t1", "bank", schemas.SubscriptionActive, 1)})
	k := subRec("sub-ins", "t1", "insurer", schemas.SubscriptionActive, 1)
	k.Subscription.Webhook, k.Subscription.Kafka = nil, true
	w.dir(&schemas.FanoutInput{Subscription: k})
	if w.d.Subscriptions["sub-bank"].Secret != "" {
		t.Fatal("the directory holds a secret")
	}
	return w
}

func (w *world) dir(in *schemas.FanoutInput) {
	w.n++
	w.d = ApplyDirectory(w.d, Message{Input: in, Origin: w.n, At: t0}).Directory
}

func (w *world) apply(in *schemas.FanoutInput, at int64) Result {
	w.n++
	r := Apply(w.d, w.s, "p1", Message{Input: in, Origin: w.n, At: at})
	w.s = r.State
	return r
}

func event(id string, f *schemas.FanoutProfile) *schemas.FanoutInput {
	return &schemas.FanoutInput{Event: &schemas.FanoutEvent{Tenant: "t1", Topic: "car-chosen", Publisher: "dealer",
		EventID: id, Type: "car.chosen", Time: t0, Properties: map[string]string{"model": `"Tracker"`, "price": `89900.5`}, Profile: f}}
}

func subsOf(r Result) []string {
	var out []string
	for _, d := range r.Deliveries {
		out = append(out, d.Subscription)
	}
	return out
}

func TestBodyAndIDs(t *testing.T) {
	w := newWorld(t)
	f := facts()
	c := f.Consent["offers"]
	c.Expires = t0 + 86_400_000
	f.Consent["offers"] = c
	r := w.apply(event("e1", f), t0)
	if r.Outcome != Fanned || len(r.Deliveries) != 2 {
		t.Fatalf("outcome %s, deliveries %+v", r.Outcome, r.Deliveries)
	}
	want := `{"consent":{"expires_at":"2025-01-02T10:00:00.000Z","purpose":"offers"},"event_id":"e1","kind":"topic_event",` +
		`"profile":{"identifiers":{"email":["ana@example.com"]},"tags":["vip"],"traits":{"name":"Ana & Bia <x>"}},` +
		`"profile_id":"p1","properties":{"model":"Tracker","price":89900.5},"publisher":"dealer","tenant":"t1",` +
		`"time":"2025-01-01T10:00:00.000Z","topic":"car-chosen","type":"car.chosen"}`
	d := r.Deliveries[0]
	if d.Body != want {
		t.Fatalf("body\n got %s\nwant %s", d.Body, want)
	}
	if d.Subscription != "sub-bank" || d.WebhookID != "sub-bank.e1" || d.Kafka || d.Partner != "bank" || d.Kind != schemas.KindTopicEvent {
		t.Fatalf("delivery %+v", d)
	}
	if k := r.Deliveries[1]; k.Subscription != "sub-ins" || !k.Kafka || k.WebhookID != "sub-ins.e1" || k.Body != want {
		t.Fatalf("kafka delivery %+v", k)
	}
	// The same event again (identity wrote it twice), with newer facts:
	// nothing.
	if r := w.apply(event("e1", facts()), t0+5); r.Outcome != schemas.FanoutDuplicate || len(r.Deliveries) != 0 {
		t.Fatalf("duplicate: %s %+v", r.Outcome, r.Deliveries)
	}
	// A crash replay of the first message sends the same records.
	r2 := Apply(w.d, w.s, "p1", Message{Input: event("e1", f), Origin: w.n - 1, At: t0})
	if !r2.Replayed || len(r2.Deliveries) != 2 || r2.Deliveries[0] != r.Deliveries[0] {
		t.Fatalf("replay: %+v", r2)
	}
}

// TestEntitlementRules breaks one rule at a time: nothing reaches the
// subscription, and the reason is that rule.
func TestEntitlementRules(t *testing.T) {
	type tc struct {
		name    string
		setup   func(w *world, f *schemas.FanoutProfile, in *schemas.FanoutInput) int64 // returns the instant
		outcome string                                                                  // whole event dropped
		skip    string                                                                  // sub-bank skipped for this reason
	}
	cases := []tc{
		{"entitled", func(*world, *schemas.FanoutProfile, *schemas.FanoutInput) int64 { return t0 }, Fanned, ""},
		{"not on the list", func(w *world, _ *schemas.FanoutProfile, _ *schemas.FanoutInput) int64 {
			w.dir(&schemas.FanoutInput{Topic: topicRec(2, "insurer")})
			return t0
		}, Fanned, schemas.FanoutNotAllowed},
		{"older list ignored", func(w *world, _ *schemas.FanoutProfile, _ *schemas.FanoutInput) int64 {
			w.dir(&schemas.FanoutInput{Topic: topicRec(1, "insurer")}) // version 1 again: ignored
			return t0
		}, Fanned, ""},
		{"other tenant", func(w *world, _ *schemas.FanoutProfile, _ *schemas.FanoutInput) int64 {
			w.dir(&schemas.FanoutInput{Subscription: subRec("sub-bank", "t2", "bank", schemas.SubscriptionActive, 2)})
			return t0
		}, Fanned, schemas.FanoutOtherTenant},
		{"disabled", func(w *world, _ *schemas.FanoutProfile, _ *schemas.FanoutInput) int64 {
			w.dir(&schemas.FanoutInput{Subscription: subRec("sub-bank", "t1", "bank", schemas.SubscriptionDisabled, 2)})
			return t0
		}, Fanned, schemas.FanoutInactive},
		{"deleted", func(w *world, _ *schemas.FanoutProfile, _ *schemas.FanoutInput) int64 {
			w.dir(&schemas.FanoutInput{Subscription: subRec("sub-bank", "t1", "bank", schemas.SubscriptionDeleted, 2)})
			return t0
		}, Fanned, schemas.FanoutInactive},
		{"no consent", func(_ *world, f *schemas.FanoutProfile, _ *schemas.FanoutInput) int64 {
			delete(f.Consent, "offers")
			return t0
		}, Fanned, schemas.FanoutNoConsent},
		{"consent denied", func(_ *world, f *schemas.FanoutProfile, _ *schemas.FanoutInput) int64 {
			f.Consent["offers"] = schemas.FanoutConsent{Status: schemas.ConsentDenied, Since: t0}
			return t0
		}, Fanned, schemas.FanoutNoConsent},
		{"consent expired at delivery", func(_ *world, f *schemas.FanoutProfile, _ *schemas.FanoutInput) int64 {
			f.Consent["offers"] = schemas.FanoutConsent{Status: schemas.ConsentGranted, Since: t0 - 10, Expires: t0 + 1000}
			return t0 + 1000
		}, Fanned, schemas.FanoutNoConsent},
		{"consent not yet expired", func(_ *world, f *schemas.FanoutProfile, _ *schemas.FanoutInput) int64 {
			f.Consent["offers"] = schemas.FanoutConsent{Status: schemas.ConsentGranted, Since: t0 - 10, Expires: t0 + 1000}
			return t0 + 999
		}, Fanned, ""},
		{"blacklisted", func(_ *world, f *schemas.FanoutProfile, _ *schemas.FanoutInput) int64 {
			f.Blacklisted = true
			return t0
		}, schemas.FanoutBlacklisted, ""},
		{"profile of another tenant", func(_ *world, f *schemas.FanoutProfile, _ *schemas.FanoutInput) int64 {
			f.Tenant = "t2"
			return t0
		}, schemas.FanoutNoProfile, ""},
		{"no profile", func(_ *world, _ *schemas.FanoutProfile, in *schemas.FanoutInput) int64 {
			in.Event.Profile = nil
			return t0
		}, schemas.FanoutNoProfile, ""},
		{"not the owner", func(_ *world, _ *schemas.FanoutProfile, in *schemas.FanoutInput) int64 {
			in.Event.Publisher = "bank"
			return t0
		}, schemas.FanoutNotOwner, ""},
		{"topic deleted", func(w *world, _ *schemas.FanoutProfile, _ *schemas.FanoutInput) int64 {
			rec := topicRec(2, "bank", "insurer")
			rec.Deleted = true
			w.dir(&schemas.FanoutInput{Topic: rec})
			return t0
		}, schemas.FanoutNoTopic, ""},
		{"topic of another tenant", func(_ *world, _ *schemas.FanoutProfile, in *schemas.FanoutInput) int64 {
			in.Event.Tenant = "t2"
			in.Event.Profile.Tenant = "t2"
			return t0
		}, schemas.FanoutNoTopic, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w := newWorld(t)
			f := facts()
			in := event("e1", f)
			at := c.setup(w, f, in)
			r := w.apply(in, at)
			if r.Outcome != c.outcome {
				t.Fatalf("outcome %q, want %q", r.Outcome, c.outcome)
			}
			got := map[string]bool{}
			for _, s := range subsOf(r) {
				got[s] = true
			}
			switch {
			case c.outcome != Fanned:
				if len(r.Deliveries) != 0 || len(r.Skips) != 0 {
					t.Fatalf("dropped event delivered %v, skips %v", subsOf(r), r.Skips)
				}
			case c.skip == "":
				if !got["sub-bank"] || len(r.Skips) != 0 {
					t.Fatalf("entitled: delivered %v, skips %v", subsOf(r), r.Skips)
				}
			default:
				if got["sub-bank"] {
					t.Fatalf("%s: delivered to sub-bank", c.name)
				}
				if len(r.Skips) == 0 || r.Skips[0] != (Skip{"sub-bank", c.skip}) {
					t.Fatalf("skips %v, want sub-bank %s", r.Skips, c.skip)
				}
			}
		})
	}
}

// TestRemovedMidStream: records before the removal reach the partner,
// none after it; a replay after it reaches nobody removed.
func TestRemovedMidStream(t *testing.T) {
	w := newWorld(t)
	if r := w.apply(event("e1", facts()), t0); len(r.Deliveries) != 2 {
		t.Fatalf("before: %v", subsOf(r))
	}
	w.dir(&schemas.FanoutInput{Topic: topicRec(2, "insurer")})
	if r := w.apply(event("e2", facts()), t0+1); len(r.Deliveries) != 1 || r.Deliveries[0].Subscription != "sub-ins" {
		t.Fatalf("after: %v", subsOf(r))
	}
	ev := event("e1", facts()).Event
	if r := w.apply(&schemas.FanoutInput{Replay: &schemas.FanoutReplay{Subscription: "sub-bank", Event: *ev}}, t0+2); len(r.Deliveries) != 0 {
		t.Fatalf("replay to a removed partner: %v", subsOf(r))
	}
	r := w.apply(&schemas.FanoutInput{Replay: &schemas.FanoutReplay{Subscription: "sub-ins", Event: *ev}}, t0+3)
	if len(r.Deliveries) != 1 || r.Deliveries[0].WebhookID != "sub-ins.e1" || !r.Deliveries[0].Replay {
		t.Fatalf("replay: %+v", r.Deliveries)
	}
}

// TestConsentRevoked: the holders of the profile under the purpose are
// told once, a subscription since deleted is not, and nothing more is
// delivered; a new grant delivers again and a second revocation tells
// again.
func TestConsentRevoked(t *testing.T) {
	w := newWorld(t)
	w.apply(event("e1", facts()), t0)
	w.dir(&schemas.FanoutInput{Subscription: subRec("sub-bank", "t1", "bank", schemas.SubscriptionDeleted, 2)})
	f := facts()
	f.Consent["offers"] = schemas.FanoutConsent{Status: schemas.ConsentRevoked, Since: t0 + 500}
	r := w.apply(&schemas.FanoutInput{Status: &schemas.FanoutStatus{EventID: "c1", Profile: f}}, t0+600)
	if len(r.Deliveries) != 1 {
		t.Fatalf("revocations %+v", r.Deliveries)
	}
	d := r.Deliveries[0]
	want := `{"kind":"consent_revoked","profile_id":"p1","purpose":"offers","tenant":"t1","time":"2025-01-01T10:00:00.500Z","topic":"car-chosen","type":"profile.consent_revoked"}`
	if d.Subscription != "sub-ins" || d.Kind != schemas.KindConsentRevoked || d.WebhookID != "sub-ins.revoked.p1.offers."+"1735725600500" || d.Body != want {
		t.Fatalf("revocation %+v", d)
	}
	if len(w.s.Held) != 0 {
		t.Fatalf("held after revocation: %v", w.s.Held)
	}
	// The same status again: nothing.
	if r := w.apply(&schemas.FanoutInput{Status: &schemas.FanoutStatus{EventID: "c1", Profile: f}}, t0+700); len(r.Deliveries) != 0 {
		t.Fatalf("again: %+v", r.Deliveries)
	}
	if r := w.apply(event("e2", f), t0+800); len(r.Deliveries) != 0 || len(r.Skips) != 2 {
		t.Fatalf("after revocation: %v %v", subsOf(r), r.Skips)
	}
	g := facts()
	g.Consent["offers"] = schemas.FanoutConsent{Status: schemas.ConsentGranted, Since: t0 + 900}
	if r := w.apply(event("e3", g), t0+1000); len(r.Deliveries) != 1 {
		t.Fatalf("granted again: %v", subsOf(r))
	}
	// Revoked inside the next topic event's facts: the revocation first,
	// then the event is not delivered.
	h := facts()
	h.Consent["offers"] = schemas.FanoutConsent{Status: schemas.ConsentDenied, Since: t0 + 1100}
	r = w.apply(event("e4", h), t0+1200)
	if len(r.Deliveries) != 1 || r.Deliveries[0].WebhookID != "sub-ins.revoked.p1.offers.1735725601100" {
		t.Fatalf("second revocation %+v", r.Deliveries)
	}
	// An expiry alone tells nobody.
	w2 := newWorld(t)
	x := facts()
	x.Consent["offers"] = schemas.FanoutConsent{Status: schemas.ConsentGranted, Since: t0, Expires: t0 + 10}
	w2.apply(event("e1", x), t0)
	if r := w2.apply(&schemas.FanoutInput{Status: &schemas.FanoutStatus{Profile: x}}, t0+20); len(r.Deliveries) != 0 {
		t.Fatalf("expiry: %+v", r.Deliveries)
	}
}

func TestValidateTopic(t *testing.T) {
	ok := schemas.Topic{Tenant: "t1", Name: "car-chosen", Owner: "dealer", Allowed: []string{"bank"},
		RequiresConsent: "offers", IncludeProfile: []string{"traits", "traits.name", "identifiers.email", "identifiers", "tags"}}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, mut := range map[string]func(*schemas.Topic){
		"name":    func(t *schemas.Topic) { t.Name = "Car Chosen" },
		"twice":   func(t *schemas.Topic) { t.Allowed = []string{"bank", "bank"} },
		"purpose": func(t *schemas.Topic) { t.RequiresConsent = "no way" },
		"include": func(t *schemas.Topic) { t.IncludeProfile = []string{"traits."} },
		"field":   func(t *schemas.Topic) { t.IncludeProfile = []string{"consent"} },
		"owner":   func(t *schemas.Topic) { t.Owner = "" },
	} {
		c := ok
		c.Allowed = append([]string(nil), ok.Allowed...)
		mut(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestMergeMovesHoldings: when p2 merges into p1, what p2's subscriptions
// received moves to p1 (FanoutAbsorbed → handover → moved), and p1's
// facts reach them under the id they know: a revocation at once when
// the merged facts already revoke, a blacklisting's cancel later. A
// replay of p2's event goes to p1; a record p2 still writes as a root
// moves at once; a replayed handover writes its move again; a chain of
// merges carries the alias on.
func TestMergeMovesHoldings(t *testing.T) {
	w := newWorld(t)
	states := map[string]*State{}
	apply := func(key string, in *schemas.FanoutInput, at int64) Result {
		t.Helper()
		w.n++
		r := Apply(w.d, states[key], key, Message{Input: in, Origin: w.n, At: at})
		states[key] = r.State
		return r
	}
	f2 := facts()
	f2.ID = "p2"
	if r := apply("p2", event("e1", f2), t0); len(r.Deliveries) != 2 || r.Deliveries[0].ProfileID != "p2" {
		t.Fatalf("e1: %+v", r.Deliveries)
	}
	// The merged profile p1: offers revoked after p2's grant.
	f1 := facts()
	f1.Consent["offers"] = schemas.FanoutConsent{Status: schemas.ConsentRevoked, Since: t0 + 500}
	if r := apply("p1", &schemas.FanoutInput{Status: &schemas.FanoutStatus{Profile: f1}}, t0+600); len(r.Deliveries) != 0 {
		t.Fatalf("p1's status: %+v", r.Deliveries)
	}
	r := apply("p1", &schemas.FanoutInput{Absorbed: &schemas.FanoutAbsorbed{From: "p2"}}, t0+700)
	if len(r.Deliveries) != 0 || len(r.Forwards) != 1 || r.Forwards[0].Key != "p2" || r.Forwards[0].Input.Handover == nil ||
		r.Forwards[0].Input.Handover.To != "p1" {
		t.Fatalf("absorbed: %+v", r)
	}
	handoverOrigin := w.n + 1
	r = apply("p2", &r.Forwards[0].Input, t0+800)
	if len(r.Forwards) != 1 || r.Forwards[0].Key != "p1" {
		t.Fatalf("handover: %+v", r)
	}
	mv := r.Forwards[0].Input.Moved
	if mv == nil || mv.From != "p2" || len(mv.Holdings) != 1 || !slices.Equal(mv.Holdings["p2"].Sent, []string{"sub-bank", "sub-ins"}) ||
		!slices.Equal(mv.Holdings["p2"].Held["sub-ins"], []string{"offers"}) || !slices.Equal(mv.Seen, []string{"e1"}) {
		t.Fatalf("moved: %+v", mv)
	}
	if s := states["p2"]; s.MergedInto != "p1" || len(s.Held) != 0 || len(s.Sent) != 0 {
		t.Fatalf("p2 after its handover: %+v", s)
	}
	// The handover replayed after a crash writes the same move again.
	again := Apply(w.d, states["p2"], "p2", Message{Input: &schemas.FanoutInput{Handover: &schemas.FanoutHandover{To: "p1"}}, Origin: handoverOrigin, At: t0 + 800})
	if !again.Replayed || len(again.Forwards) != 1 || again.Forwards[0].Input.Moved == nil || again.Forwards[0].Input.Moved.From != "p2" {
		t.Fatalf("replayed handover: %+v", again)
	}
	// p1 takes the holdings: its facts revoke offers, so both holders are
	// told at once, under p2.
	r = apply("p1", &schemas.FanoutInput{Moved: mv}, t0+900)
	if len(r.Deliveries) != 2 {
		t.Fatalf("moved at p1: %+v", r.Deliveries)
	}
	for _, d := range r.Deliveries {
		want := `{"kind":"consent_revoked","profile_id":"p2","purpose":"offers","tenant":"t1","time":"2025-01-01T10:00:00.500Z","topic":"car-chosen","type":"profile.consent_revoked"}`
		if d.Kind != schemas.KindConsentRevoked || d.ProfileID != "p2" || d.DeliveryKey() != d.Subscription+"/p2" ||
			d.WebhookID != d.Subscription+".revoked.p2.offers.1735725600500" || d.Body != want {
			t.Fatalf("revocation under p2: %+v", d)
		}
	}
	if a := states["p1"].Aliases["p2"]; a == nil || len(a.Held) != 0 || len(a.Sent) != 2 {
		t.Fatalf("p1's alias p2: %+v", a)
	}
	// An event p2 still wrote as a root (its accept not yet handled) is
	// decided with its own facts and moved at once.
	r = apply("p2", event("e2", f2), t0+1000)
	if len(r.Deliveries) != 2 || len(r.Forwards) != 1 || r.Forwards[0].Input.Moved == nil ||
		!slices.Equal(r.Forwards[0].Input.Moved.Seen, []string{"e2"}) || len(states["p2"].Sent) != 0 {
		t.Fatalf("p2's late event: %+v", r)
	}
	r = apply("p1", &r.Forwards[0].Input, t0+1100)
	if len(r.Deliveries) != 2 || r.Deliveries[0].Kind != schemas.KindConsentRevoked || r.Deliveries[0].ProfileID != "p2" {
		t.Fatalf("the late move at p1: %+v", r.Deliveries)
	}
	// A replay of p2's event goes to p1, which decides with its facts
	// (offers revoked: not delivered).
	rp := &schemas.FanoutInput{Replay: &schemas.FanoutReplay{Subscription: "sub-bank", Event: *event("e1", f2).Event}}
	r = apply("p2", rp, t0+1200)
	if len(r.Deliveries) != 0 || len(r.Forwards) != 1 || r.Forwards[0].Key != "p1" || r.Forwards[0].Input.Replay == nil {
		t.Fatalf("replay at p2: %+v", r)
	}
	if r = apply("p1", &r.Forwards[0].Input, t0+1300); len(r.Deliveries) != 0 || r.Skips[0].Reason != schemas.FanoutNoConsent {
		t.Fatalf("replay at p1: %+v", r)
	}
	// Granted again at p1: the replay is delivered under p2 and held as
	// p2's; then p1 is blacklisted: p2's holders get a cancel under p2.
	g := facts()
	g.Consent["offers"] = schemas.FanoutConsent{Status: schemas.ConsentGranted, Since: t0 + 1400}
	apply("p1", &schemas.FanoutInput{Status: &schemas.FanoutStatus{Profile: g}}, t0+1400)
	if r = apply("p1", rp, t0+1500); len(r.Deliveries) != 1 || r.Deliveries[0].ProfileID != "p2" || !r.Deliveries[0].Replay {
		t.Fatalf("replay granted: %+v", r.Deliveries)
	}
	if a := states["p1"].Aliases["p2"]; !slices.Equal(a.Held["sub-bank"], []string{"offers"}) {
		t.Fatalf("p1's alias p2 after the replay: %+v", a)
	}
	b := facts()
	b.Blacklisted = true
	r = apply("p1", &schemas.FanoutInput{Status: &schemas.FanoutStatus{Profile: b}}, t0+1600)
	var cancels []string
	for _, d := range r.Deliveries {
		if d.Kind == schemas.KindBlacklisted {
			cancels = append(cancels, d.DeliveryKey())
		}
	}
	if !slices.Equal(cancels, []string{"sub-bank/p2", "sub-ins/p2"}) {
		t.Fatalf("cancels: %v (%+v)", cancels, r.Deliveries)
	}
	// p1 merges into p0: its alias goes on with it.
	b.Blacklisted = false
	apply("p1", &schemas.FanoutInput{Status: &schemas.FanoutStatus{Profile: b}}, t0+1700)
	apply("p1", rp, t0+1800) // held again under p2
	r = apply("p1", &schemas.FanoutInput{Handover: &schemas.FanoutHandover{To: "p0"}}, t0+1900)
	if len(r.Forwards) != 1 || r.Forwards[0].Key != "p0" || r.Forwards[0].Input.Moved.Holdings["p2"] == nil || len(states["p1"].Aliases) != 0 {
		t.Fatalf("p1's handover: %+v", r.Forwards)
	}
	// A record the merged-away p2 gets after p1 merged still goes to p1,
	// which passes it on.
	r = apply("p1", &schemas.FanoutInput{Moved: &schemas.FanoutMoved{From: "p2", Holdings: map[string]*schemas.FanoutHoldings{"p2": {Sent: []string{"sub-bank"}}}}}, t0+2000)
	if len(r.Forwards) != 1 || r.Forwards[0].Key != "p0" || r.Forwards[0].Input.Moved.Holdings["p2"] == nil || len(r.Deliveries) != 0 {
		t.Fatalf("a late move at the merged p1: %+v", r)
	}
}

// A crash after A handled absorbed, before its offset was committed, with
// a fan-out of more than OutboxLimit records at A in between: the replay
// of absorbed still writes the handover (forwards are kept apart from the
// deliveries' cap; found by review: B's holdings never moved).
func TestOutboxKeepsForwards(t *testing.T) {
	w := newWorld(t)
	for i := 0; i < OutboxLimit+10; i++ {
		w.dir(&schemas.FanoutInput{Subscription: subRec(fmt.Sprintf("sub-x%03d", i), "t1", "bank", schemas.SubscriptionActive, 1)})
	}
	states := map[string]*State{}
	apply := func(key string, in *schemas.FanoutInput, origin int64) Result {
		r := Apply(w.d, states[key], key, Message{Input: in, Origin: origin, At: t0})
		states[key] = r.State
		return r
	}
	f2 := facts()
	f2.ID = "p2"
	apply("p2", event("e1", f2), 1000) // p2's subscriptions hold e1 (offers)
	f1 := facts()
	apply("p1", &schemas.FanoutInput{Status: &schemas.FanoutStatus{Profile: f1}}, 1001)
	abs := &schemas.FanoutInput{Absorbed: &schemas.FanoutAbsorbed{From: "p2"}}
	if r := apply("p1", abs, 1002); len(r.Forwards) != 1 {
		t.Fatalf("absorbed: %+v", r.Forwards)
	}
	apply("p1", event("e2", f1), 1003) // > OutboxLimit deliveries
	// crash: the handover's write was lost, the state (By 1003) was written.
	r := Apply(w.d, states["p1"], "p1", Message{Input: abs, Origin: 1002, At: t0})
	if !r.Replayed {
		t.Fatal("not a replay")
	}
	if len(r.Forwards) != 1 || r.Forwards[0].Input.Handover == nil {
		t.Fatalf("replay of absorbed wrote no handover: p2's holdings (%v) never move to p1", states["p2"].Sent)
	}
}

// B's Seen (up to SeenLimit ids) moved to A goes in as the oldest: A's own
// recent event ids stay, and identity writing A's event again (a replay
// after a crash) is a duplicate (found by review: it was delivered again).
func TestMovedSeenIsOldest(t *testing.T) {
	w := newWorld(t)
	states := map[string]*State{}
	var n int64
	apply := func(key string, in *schemas.FanoutInput) Result {
		n++
		r := Apply(w.d, states[key], key, Message{Input: in, Origin: n + 100, At: t0})
		states[key] = r.State
		return r
	}
	f1 := facts()
	if r := apply("p1", event("a1", f1)); len(r.Deliveries) != 2 {
		t.Fatalf("a1: %+v", r.Deliveries)
	}
	f2 := facts()
	f2.ID = "p2"
	for i := 0; i < SeenLimit; i++ {
		ev := event(fmt.Sprintf("b%d", i), f2)
		ev.Event.Topic = "other" // no such topic: only Seen grows
		apply("p2", ev)
	}
	r := apply("p1", &schemas.FanoutInput{Absorbed: &schemas.FanoutAbsorbed{From: "p2"}})
	r = apply("p2", &r.Forwards[0].Input)
	apply("p1", &r.Forwards[0].Input)
	if r := apply("p1", event("a1", f1)); len(r.Deliveries) != 0 {
		t.Fatalf("a1 written again after the move: %d deliveries again (outcome %q)", len(r.Deliveries), r.Outcome)
	}
}

// Revoked and granted again at A while B's move is on its way: B's
// holders are told of the revocation when the move arrives (found by
// review: only A's own holders were), under B's id and the revocation's
// instant; a holding granted after the revocation is not.
func TestRevokedBeforeMoveIsTold(t *testing.T) {
	w := newWorld(t)
	states := map[string]*State{}
	var n int64
	apply := func(key string, in *schemas.FanoutInput) Result {
		n++
		r := Apply(w.d, states[key], key, Message{Input: in, Origin: n, At: t0 + n})
		states[key] = r.State
		return r
	}
	f2 := facts()
	f2.ID = "p2"
	apply("p2", event("e1", f2)) // granted at t0-1000
	f1 := facts()
	apply("p1", event("a1", f1))
	r := apply("p1", &schemas.FanoutInput{Absorbed: &schemas.FanoutAbsorbed{From: "p2"}})
	r = apply("p2", &r.Forwards[0].Input)
	mv := r.Forwards[0].Input
	rv := facts()
	rv.Consent["offers"] = schemas.FanoutConsent{Status: schemas.ConsentRevoked, Since: t0 + 50}
	if own := apply("p1", &schemas.FanoutInput{Status: &schemas.FanoutStatus{Profile: rv}}); len(own.Deliveries) != 2 {
		t.Fatalf("p1's own holders: %+v", own.Deliveries)
	}
	gr := facts()
	gr.Consent["offers"] = schemas.FanoutConsent{Status: schemas.ConsentGranted, Since: t0 + 60}
	apply("p1", &schemas.FanoutInput{Status: &schemas.FanoutStatus{Profile: gr}})
	r = apply("p1", &mv)
	if len(r.Deliveries) != 2 {
		t.Fatalf("p2's holders at the move: %+v", r.Deliveries)
	}
	for _, d := range r.Deliveries {
		if d.Kind != schemas.KindConsentRevoked || d.ProfileID != "p2" || d.WebhookID != d.Subscription+".revoked.p2.offers.1735725600050" {
			t.Fatalf("revocation at the move: %+v", d)
		}
	}
	// A holding of p2 granted after the revocation (a replay of e1 at p1,
	// granted at t0+60) is not told of it again.
	rp := &schemas.FanoutInput{Replay: &schemas.FanoutReplay{Subscription: "sub-bank", Event: *event("e1", f2).Event}}
	if r := apply("p1", rp); len(r.Deliveries) != 1 || r.Deliveries[0].ProfileID != "p2" {
		t.Fatalf("replay: %+v", r.Deliveries)
	}
	if r := apply("p1", &schemas.FanoutInput{Status: &schemas.FanoutStatus{Profile: gr}}); len(r.Deliveries) != 0 {
		t.Fatalf("a later status told a holding granted after the revocation: %+v", r.Deliveries)
	}
	if g := states["p1"].Aliases["p2"].Granted["sub-bank/offers"]; g != t0+60 {
		t.Fatalf("granted %d, want the re-grant's %d", g, t0+60)
	}
}
