package lifecycle

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rolodex/rolodex/schemas"
)

var addr = schemas.Identifier{Type: schemas.IDEmail, Value: "ana@example.com"}

func msgEv(id, msg string, st schemas.MessageState, at int64, bounce string) *schemas.MessageEvent {
	return &schemas.MessageEvent{ID: id, Tenant: "t", Partner: "p", MessageID: msg, State: st, Time: at,
		Channel: schemas.ChannelEmail, Bounce: bounce, Identifiers: []schemas.Identifier{addr}}
}

// feed applies inputs in order (origins 1, 2, ...) and returns the state
// and every output.
func feed(t *testing.T, cfg RecipientsConfig, ins ...schemas.RecipientInput) (*Recipient, []schemas.RecipientOutput) {
	t.Helper()
	var s *Recipient
	var outs []schemas.RecipientOutput
	for i, in := range ins {
		in.Tenant, in.Address = "t", addr
		r := ApplyRecipient(s, in, int64(i+1), cfg)
		if r.Write {
			s = r.State
		}
		outs = append(outs, r.Outputs...)
	}
	return s, outs
}

func verdicts(outs []schemas.RecipientOutput) map[string]schemas.RecipientVerdict {
	v := map[string]schemas.RecipientVerdict{}
	for _, o := range outs {
		if o.Message != nil && o.Message.Verdict != nil {
			if old, ok := v[o.Message.Verdict.Event]; !ok || o.Message.Verdict.Version > old.Version {
				v[o.Message.Verdict.Event] = *o.Message.Verdict
			}
		}
	}
	return v
}

func events(outs []schemas.RecipientOutput) []*schemas.Event {
	var evs []*schemas.Event
	for _, o := range outs {
		if o.Event != nil {
			evs = append(evs, o.Event)
		}
	}
	return evs
}

// A hard bounce writes identifier.invalidated for the address (derived
// id, the bounce's time and identifiers, reason hard_bounce); a send timed
// after it is judged invalid, one before it valid — whichever arrived
// first, the later arrival re-judges.
func TestHardBounceInvalidatesLaterSends(t *testing.T) {
	cfg := DefaultRecipientsConfig()
	s, outs := feed(t, cfg,
		schemas.RecipientInput{Message: msgEv("s1", "m1", sent, 100, "")},
		schemas.RecipientInput{Message: msgEv("s2", "m2", sent, 300, "")},
		schemas.RecipientInput{Message: msgEv("b1", "m1", bounced, 200, schemas.BounceHard)},
	)
	evs := events(outs)
	if len(evs) != 1 || evs[0].Type != schemas.EventIdentifierInvalidated || evs[0].ID != DerivedID("b1", schemas.ReasonHardBounce) ||
		evs[0].Time.UnixMilli() != 200 || schemas.StringProperty(evs[0], "reason") != schemas.ReasonHardBounce ||
		schemas.StringProperty(evs[0], "value") != addr.Value || evs[0].Key() != schemas.NodeID("t", addr) {
		t.Fatalf("events %+v", evs)
	}
	v := verdicts(outs)
	if v["s1"].Invalid || !v["s2"].Invalid || v["s2"].Version != 2 {
		t.Fatalf("verdicts %+v", v)
	}
	// The first output of each send carries the send itself.
	if outs[0].Message.Event == nil || outs[0].Message.Event.ID != "s1" || outs[0].Key != schemas.MessageKey("t", "m1") {
		t.Fatalf("first output %+v", outs[0])
	}
	// The invalidation coming back from rolodex.events changes nothing.
	back := schemas.RecipientInput{Tenant: "t", Address: addr, Validity: &schemas.ValidityWrite{ID: evs[0].ID, Time: 200,
		Source: schemas.SourceLifecycle, Invalid: true, Reason: schemas.ReasonHardBounce}}
	if r := ApplyRecipient(s, back, 10, cfg); r.Write || len(r.Outputs) != 0 {
		t.Fatalf("the returning invalidation wrote %+v", r)
	}
	// A revalidation at 250 makes s2 valid again (version 3).
	rev := schemas.RecipientInput{Tenant: "t", Address: addr, Validity: &schemas.ValidityWrite{ID: "r1", Time: 250, Source: "crm"}}
	r := ApplyRecipient(s, rev, 11, cfg)
	if v := verdicts(r.Outputs); len(v) != 1 || v["s2"].Invalid || v["s2"].Version != 3 {
		t.Fatalf("after revalidation %+v", r.Outputs)
	}
	// A replay of that input writes the same outputs again.
	again := ApplyRecipient(r.State, rev, 11, cfg)
	if !again.Replayed || len(again.Outputs) != len(r.Outputs) || again.Outputs[0].Message.Verdict.Version != 3 {
		t.Fatalf("replay %+v", again)
	}
}

// Three soft bounces in a row invalidate (reason soft_bounces, at the
// third's time); a late delivery between them withdraws it
// (identifier.revalidated, soft_bounces_withdrawn, an id that sorts after
// the invalidation's); a limit of 0 never invalidates.
func TestSoftBounceStreak(t *testing.T) {
	cfg := DefaultRecipientsConfig()
	var ins []schemas.RecipientInput
	for i := 1; i <= 3; i++ {
		ins = append(ins, schemas.RecipientInput{Message: msgEv("b"+strconv.Itoa(i), "m"+strconv.Itoa(i), bounced, int64(100*i), schemas.BounceSoft)})
	}
	s, outs := feed(t, cfg, ins...)
	evs := events(outs)
	if len(evs) != 1 || evs[0].Type != schemas.EventIdentifierInvalidated || evs[0].Time.UnixMilli() != 300 ||
		schemas.StringProperty(evs[0], "reason") != schemas.ReasonSoftBounces {
		t.Fatalf("events %+v", evs)
	}
	late := schemas.RecipientInput{Tenant: "t", Address: addr, Message: msgEv("d1", "m9", delivered, 150, "")}
	r := ApplyRecipient(s, late, 10, cfg)
	evs = events(r.Outputs)
	if len(evs) != 1 || evs[0].Type != schemas.EventIdentifierRevalidated || evs[0].Time.UnixMilli() != 300 ||
		schemas.StringProperty(evs[0], "reason") != schemas.ReasonSoftBouncesWithdrawn {
		t.Fatalf("withdrawal %+v", evs)
	}
	inv := schemas.ValidityWrite{ID: softID("b3", 0, false), Time: 300, Source: schemas.SourceLifecycle}
	rev := schemas.ValidityWrite{ID: evs[0].ID, Time: 300, Source: schemas.SourceLifecycle}
	if !rev.After(&inv) {
		t.Fatalf("the withdrawal %s does not sort after the invalidation %s", rev.ID, inv.ID)
	}
	if _, outs := feed(t, RecipientsConfig{}, ins...); len(events(outs)) != 0 {
		t.Fatalf("limit 0 wrote %+v", events(outs))
	}
}

// A complaint and an unsubscribe revoke the channel's marketing purpose,
// with the message as the cause.
func TestComplaintRevokesConsent(t *testing.T) {
	_, outs := feed(t, DefaultRecipientsConfig(),
		schemas.RecipientInput{Message: msgEv("c1", "m1", spam, 100, "")},
		schemas.RecipientInput{Message: msgEv("u1", "m2", unsubscribed, 200, "")})
	evs := events(outs)
	if len(evs) != 2 {
		t.Fatalf("events %+v", evs)
	}
	for i, want := range []string{"spam", "unsubscribed"} {
		e := evs[i]
		if e.Type != schemas.EventConsentRevoked || schemas.StringProperty(e, "purpose") != "email_marketing" ||
			schemas.StringProperty(e, "reason") != want || schemas.StringProperty(e, schemas.PropMessageID) != "m"+strconv.Itoa(i+1) ||
			!e.Time.Equal(time.UnixMilli(int64(100*(i+1)))) {
			t.Fatalf("event %d: %+v", i, e)
		}
	}
}

// The router: a send with an address goes to the recipients only; a
// bounce to both; a draft to the lifecycle only; an invalid message event
// nowhere, with its error; an invalidation of an email to the recipients.
func TestRoute(t *testing.T) {
	ev := func(typ string, props map[string]string) *schemas.Event {
		return &schemas.Event{Tenant: "t", ID: "e", Type: typ, Time: time.UnixMilli(5), Identifiers: []schemas.Identifier{addr}, Properties: props}
	}
	mid := map[string]string{"message_id": `"m1"`}
	if r := Route(ev("message.sent", mid), 0); r.Message != nil || r.Recipient == nil || r.RecipientKey != schemas.NodeID("t", addr) {
		t.Fatalf("send %+v", r)
	}
	if r := Route(ev("message.bounced", mid), 0); r.Message == nil || r.Recipient == nil || r.MessageKey != "t/m1" {
		t.Fatalf("bounce %+v", r)
	}
	if r := Route(ev("message.draft", mid), 0); r.Message == nil || r.Recipient != nil {
		t.Fatalf("draft %+v", r)
	}
	sms := map[string]string{"message_id": `"m1"`, "channel": `"sms"`}
	if r := Route(ev("message.sent", sms), 0); r.Message == nil || r.Recipient != nil {
		t.Fatalf("an sms send without a phone %+v", r)
	}
	if r := Route(ev("message.sent", nil), 0); r.Invalid == nil || r.Message != nil || r.Recipient != nil {
		t.Fatalf("no message id %+v", r)
	}
	if r := Route(ev("message.received", nil), 0); r.Invalid != nil || r.Message != nil || r.Recipient != nil {
		t.Fatalf("an ordinary message.* event %+v", r)
	}
	inv := ev(schemas.EventIdentifierInvalidated, map[string]string{"type": `"email"`, "value": `"ana@example.com"`, "reason": `"crm"`})
	if r := Route(inv, 0); r.Recipient == nil || r.Recipient.Validity == nil || !r.Recipient.Validity.Invalid || r.RecipientKey != schemas.NodeID("t", addr) {
		t.Fatalf("invalidation %+v", r)
	}
}

// A configuration that cannot work is refused, by Validate and by New.
func TestRecipientsConfigValidate(t *testing.T) {
	if err := DefaultRecipientsConfig().Validate(); err != nil {
		t.Fatalf("the defaults: %v", err)
	}
	if err := (RecipientsConfig{Purposes: map[string]string{"sms": ""}}).Validate(); err != nil {
		t.Fatalf("limit 0 and no sms purpose: %v", err)
	}
	for _, tt := range []struct {
		cfg  RecipientsConfig
		want string
	}{
		{RecipientsConfig{SoftBounceLimit: -1}, "soft_bounce_limit -1"},
		{RecipientsConfig{Purposes: map[string]string{"fax": "x"}}, `unknown channel "fax"`},
		{RecipientsConfig{Purposes: map[string]string{"email": "e mail"}}, `"e mail" is not a consent purpose`},
	} {
		if err := tt.cfg.Validate(); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Validate(%+v) = %v, want %q", tt.cfg, err, tt.want)
		}
		cfg := tt.cfg
		if _, err := New(Config{Brokers: []string{"127.0.0.1:1"}, StorageDir: t.TempDir(), Recipients: &cfg}); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("New with %+v = %v, want %q", tt.cfg, err, tt.want)
		}
	}
}

// A send older than the address's RecipientSendLimit newest kept sends is
// still forwarded with its verdict (judged once, then not kept): here
// after a hard bounce at 50, so refused.
func TestOldSendBeyondLimitIsForwarded(t *testing.T) {
	cfg := DefaultRecipientsConfig()
	ins := []schemas.RecipientInput{{Message: msgEv("b0", "m0", bounced, 50, schemas.BounceHard)}}
	for i := 0; i < RecipientSendLimit; i++ {
		ins = append(ins, schemas.RecipientInput{Message: msgEv("s"+strconv.Itoa(i), "m"+strconv.Itoa(i), sent, int64(1000+i), "")})
	}
	s, _ := feed(t, cfg, ins...)
	old := schemas.RecipientInput{Tenant: "t", Address: addr, Message: msgEv("old", "mold", sent, 100, "")}
	r := ApplyRecipient(s, old, int64(len(ins)+1), cfg)
	var fwd *schemas.MessageInput
	for _, o := range r.Outputs {
		if o.Message != nil && o.Message.Event != nil && o.Message.Event.ID == "old" {
			fwd = o.Message
		}
	}
	if fwd == nil || fwd.Verdict == nil || !fwd.Verdict.Invalid || fwd.Verdict.Event != "old" || fwd.Verdict.Version != 1 {
		t.Fatalf("the old send was not forwarded with its verdict: %+v", r.Outputs)
	}
	if n := len(r.State.Sends); n != RecipientSendLimit {
		t.Fatalf("kept %d sends", n)
	}
	for _, x := range r.State.Sends {
		if x.Event == "old" {
			t.Fatal("the old send is kept beyond the limit")
		}
	}
	if len(r.Outputs) != 1 {
		t.Fatalf("the old send re-judged others: %+v", r.Outputs)
	}
}

// A hard bounce of message m1 timed before m1's own sent (whole-second
// provider timestamps) does not refuse that sent; it refuses m1's resent
// and other messages' later sends. The invalidation coming back from
// rolodex.events (routed, with its message_id) keeps it so.
func TestOwnHardBounceDoesNotRefuseOwnSend(t *testing.T) {
	cfg := DefaultRecipientsConfig()
	_, outs := feed(t, cfg,
		schemas.RecipientInput{Message: msgEv("b1", "m1", bounced, 10000, schemas.BounceHard)},
		schemas.RecipientInput{Message: msgEv("s1", "m1", sent, 10500, "")},
		schemas.RecipientInput{Message: msgEv("r1", "m1", resent, 11000, "")},
		schemas.RecipientInput{Message: msgEv("s2", "m2", sent, 10600, "")},
	)
	v := verdicts(outs)
	if v["s1"].Invalid || !v["r1"].Invalid || !v["s2"].Invalid {
		t.Fatalf("verdicts %+v", v)
	}
	evs := events(outs)
	if len(evs) != 1 {
		t.Fatalf("events %+v", evs)
	}
	// The same invalidation arriving first through the router (its
	// message_id kept), then the sends: the same verdicts.
	rt := Route(evs[0], 1)
	if rt.Recipient == nil || rt.Recipient.Validity == nil || rt.Recipient.Validity.MessageID != "m1" {
		t.Fatalf("route %+v", rt.Recipient)
	}
	_, outs = feed(t, cfg, *rt.Recipient,
		schemas.RecipientInput{Message: msgEv("s1", "m1", sent, 10500, "")},
		schemas.RecipientInput{Message: msgEv("r1", "m1", resent, 11000, "")})
	if v := verdicts(outs); v["s1"].Invalid || !v["r1"].Invalid {
		t.Fatalf("verdicts after the routed invalidation %+v", v)
	}
}

// 260 soft bounces in a row (limit 3), in order: 86 invalidations (one
// per completed streak), no withdrawal, at most one write per bounce,
// though the streak keeps only its latest RecipientStreakLimit entries.
func TestLongSoftStreakNoChurn(t *testing.T) {
	cfg := DefaultRecipientsConfig()
	var s *Recipient
	inv := 0
	for i := 1; i <= 260; i++ {
		in := schemas.RecipientInput{Tenant: "t", Address: addr, Message: msgEv("b"+strconv.Itoa(i), "m"+strconv.Itoa(i), bounced, int64(1000+i), schemas.BounceSoft)}
		r := ApplyRecipient(s, in, int64(i), cfg)
		s = r.State
		evs := events(r.Outputs)
		if len(evs) > 1 || (len(evs) == 1) != (i%3 == 0) {
			t.Fatalf("bounce %d wrote %d events: %+v", i, len(evs), evs)
		}
		for _, e := range evs {
			if e.Type != schemas.EventIdentifierInvalidated || e.Time.UnixMilli() != int64(1000+i) {
				t.Fatalf("bounce %d: %+v", i, e)
			}
			inv++
		}
	}
	if inv != 86 {
		t.Fatalf("%d invalidations, want 86", inv)
	}
	if len(s.Streak) > RecipientStreakLimit || len(s.Soft) > RecipientStreakLimit || len(s.Validity) > RecipientValidityLimit {
		t.Fatalf("kept %d streak, %d soft, %d validity", len(s.Streak), len(s.Soft), len(s.Validity))
	}
	// A soft bounce older than the kept streak does not count.
	old := schemas.RecipientInput{Tenant: "t", Address: addr, Message: msgEv("old", "mo", bounced, 1001, schemas.BounceSoft)}
	if r := ApplyRecipient(s, old, 999, cfg); len(events(r.Outputs)) != 0 {
		t.Fatalf("an old soft bounce wrote %+v", events(r.Outputs))
	}
}

// A hard bounce's invalidation still refuses sends after a thousand soft
// bounces and deliveries made more validity writes than the address
// keeps: the send kept from before is not re-judged valid, a late send
// after the bounce is refused, and a late delivery breaking a streak
// writes no withdrawal (a real invalidation holds).
func TestHardBounceOutlivesSoftChurn(t *testing.T) {
	cfg := DefaultRecipientsConfig()
	ins := []schemas.RecipientInput{
		{Message: msgEv("hb", "m0", bounced, 10, schemas.BounceHard)},
		{Message: msgEv("s-early", "m1", sent, 20, "")},
	}
	for i := 0; i < 1000; i++ {
		st, b := bounced, schemas.BounceSoft
		if i%4 == 3 {
			st, b = delivered, ""
		}
		ins = append(ins, schemas.RecipientInput{Message: msgEv("x"+strconv.Itoa(i), "mx"+strconv.Itoa(i), st, int64(1000+10*i), b)})
	}
	s, outs := feed(t, cfg, ins...)
	if v := verdicts(outs); !v["s-early"].Invalid {
		t.Fatalf("the send after the hard bounce was re-judged valid: %+v", v["s-early"])
	}
	for _, e := range events(outs) {
		if e.Type == schemas.EventIdentifierRevalidated {
			t.Fatalf("a withdrawal while a hard bounce holds: %+v", e)
		}
	}
	late := schemas.RecipientInput{Tenant: "t", Address: addr, Message: msgEv("s-late", "m2", sent, 30, "")}
	r := ApplyRecipient(s, late, int64(len(ins)+1), cfg)
	if v := verdicts(r.Outputs); !v["s-late"].Invalid || v["s-early"].Version != 0 {
		t.Fatalf("late send: %+v", r.Outputs)
	}
	brk := schemas.RecipientInput{Tenant: "t", Address: addr, Message: msgEv("d-late", "m3", delivered, 1000+10*993+5, "")}
	r = ApplyRecipient(r.State, brk, int64(len(ins)+2), cfg)
	for _, e := range events(r.Outputs) {
		if e.Type == schemas.EventIdentifierRevalidated {
			t.Fatalf("a withdrawal while a hard bounce holds: %+v", e)
		}
	}
	if v := verdicts(r.Outputs); v["s-early"].Version != 0 || v["s-late"].Version != 0 {
		t.Fatalf("re-judged: %+v", v)
	}
}
