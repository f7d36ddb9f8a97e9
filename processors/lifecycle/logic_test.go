package lifecycle

import (
	"fmt"
	"strings"
	"testing"

	"github.com/rolodex/rolodex/reference"
	"github.com/rolodex/rolodex/schemas"
)

func path(p []schemas.MessageState) string {
	var s []string
	for _, x := range p {
		s = append(s, string(x))
	}
	return strings.Join(s, ",")
}

// TestTransitionTable: every cell of the machine (14 asked states from 14
// resting states and a new message) equals docs/lifecycle.md's table, as
// the reference model writes it out (reference.TestMessageTableIsTheDocs
// checks that against the page).
func TestTransitionTable(t *testing.T) {
	rows := append([]schemas.MessageState{none}, schemas.MessageStates()...)
	n := 0
	for _, from := range rows {
		if from == cancelled {
			continue // never a resting state
		}
		for _, asked := range schemas.MessageStates() {
			absorbed, refused, want, ok := reference.MessageCell(from, asked)
			if !ok {
				t.Fatalf("the reference has no cell %q → %q", from, asked)
			}
			got := Transition(from, asked)
			switch {
			case absorbed && got.Outcome != Absorbed, refused && got.Outcome != Refused:
				t.Errorf("%q → %q: %v %s, want absorbed %v refused %v", from, asked, got.Outcome, path(got.Path), absorbed, refused)
			case !absorbed && !refused && path(got.Path) != path(want):
				t.Errorf("%q → %q: %v %s, want %s", from, asked, got.Outcome, path(got.Path), path(want))
			}
			n++
		}
	}
	if n != 14*14 {
		t.Fatalf("%d cells checked", n)
	}
}

// TestTransitions: the cases the page argues for, written out here.
func TestTransitions(t *testing.T) {
	for _, tc := range []struct {
		from, asked schemas.MessageState
		out         Outcome
		path        string
	}{
		// the seed's machine
		{draft, sent, Moved, "sent"},
		{draft, saved, Moved, "saved"},
		{sent, opened, Implied, "delivered,opened"},
		{sent, spam, Implied, "delivered,spam"},
		{sent, cancelled, Moved, "cancelled,saved"},
		{sent, bounced, Moved, "bounced"},
		{saved, deleted, Moved, "deleted"},
		{bounced, resent, Moved, "resent"},
		{bounced, edited, Moved, "edited"},
		// providers: out of order, repeated, dropped
		{none, clicked, Implied, "draft,sent,delivered,opened,clicked"},
		{opened, delivered, Absorbed, ""},
		{clicked, opened, Absorbed, ""},
		{delivered, sent, Absorbed, ""},
		{spam, unsubscribed, Absorbed, ""},
		{unsubscribed, spam, Moved, "spam"},
		{deferred, deferred, Absorbed, ""},
		{delivered, bounced, Moved, "bounced"},
		// a new attempt
		{resent, bounced, Moved, "bounced"},
		{resent, sent, Absorbed, ""},
		{resent, resent, Absorbed, ""},
		{sent, resent, Implied, "bounced,resent"},
		// invalid
		{sent, deleted, Refused, ""},
		{saved, sent, Refused, ""},
		{opened, bounced, Refused, ""},
		{delivered, cancelled, Refused, ""},
		{bounced, delivered, Refused, ""},
		{deleted, opened, Refused, ""},
		{saved, cancelled, Refused, ""},
		{sent, "exploded", Refused, ""},
	} {
		got := Transition(tc.from, tc.asked)
		if got.Outcome != tc.out || path(got.Path) != tc.path {
			t.Errorf("%q → %q: %v %q, want %v %q", tc.from, tc.asked, got.Outcome, path(got.Path), tc.out, tc.path)
		}
	}
}

func mev(id string, st schemas.MessageState, ms int64) *schemas.MessageEvent {
	return &schemas.MessageEvent{ID: id, Tenant: "t", MessageID: "m1", State: st, Time: ms, Channel: "email"}
}

func hist(s *State) string {
	var h []string
	for _, e := range s.History {
		x := string(e.State) + ":" + e.How
		if e.How == schemas.HowRefused {
			x += "(" + e.Reason + " from " + string(e.From) + ")"
		}
		h = append(h, x)
	}
	return strings.Join(h, " ")
}

func letters(ls []schemas.MessageLetter) string {
	var s []string
	for _, l := range ls {
		x := fmt.Sprintf("%s:%s %s→%s", l.Event, l.Refusal.Reason, l.Refusal.From, l.Refusal.Asked)
		if l.Withdrawn {
			x = "withdrawn " + x
		}
		s = append(s, x)
	}
	return strings.Join(s, "; ")
}

// TestApplyRefoldsLateEvents: a late event that sorts before others folds
// the message again; a refusal it makes hold no longer is withdrawn, and
// one it makes appear is written.
func TestApplyRefoldsLateEvents(t *testing.T) {
	var s *State
	step := func(e *schemas.MessageEvent, origin int64, wantLetters string) {
		t.Helper()
		r := Apply(s, Input{Event: e, Origin: origin})
		if got := letters(r.Letters); got != wantLetters {
			t.Fatalf("after %s: letters %q, want %q", e.ID, got, wantLetters)
		}
		s = r.State
	}
	step(mev("a", sent, 10), 1, "")
	step(mev("c", deleted, 30), 2, "c:invalid_transition sent→deleted")
	if s.State != sent || hist(s) != "draft:implied sent:event deleted:refused(invalid_transition from sent)" {
		t.Fatalf("state %q history %s", s.State, hist(s))
	}
	step(mev("d", bounced, 40), 3, "")
	if s.State != bounced {
		t.Fatalf("state %q", s.State)
	}
	// the cancel at 20 makes the delete valid, and the bounce (from
	// deleted now) refused
	step(mev("b", cancelled, 20), 4, "withdrawn c:invalid_transition sent→deleted; d:invalid_transition deleted→bounced")
	if s.State != deleted {
		t.Fatalf("state %q, history %s", s.State, hist(s))
	}
	want := "draft:implied sent:event cancelled:event saved:automatic deleted:event bounced:refused(invalid_transition from deleted)"
	if hist(s) != want {
		t.Fatalf("history %s\nwant    %s", hist(s), want)
	}
	if len(s.Refused) != 1 || s.Refused["d"].From != deleted {
		t.Fatalf("refused %+v", s.Refused)
	}
}

// TestApplyDedupe: the same event id, and the same provider event id under
// another id, change nothing.
func TestApplyDedupe(t *testing.T) {
	r := Apply(nil, Input{Event: mev("a", sent, 10), Origin: 1})
	s := r.State
	if r2 := Apply(s, Input{Event: mev("a", sent, 10), Origin: 2}); r2.Write || r2.State != s || len(r2.Letters) != 0 {
		t.Fatalf("a repeated event id wrote %v, letters %v", r2.Write, r2.Letters)
	}
	o1 := mev("o1", opened, 20)
	o1.ProviderEventID = "sg-1"
	s = Apply(s, Input{Event: o1, Origin: 3}).State
	o2 := mev("o2", opened, 25)
	o2.ProviderEventID = "sg-1"
	s = Apply(s, Input{Event: o2, Origin: 4}).State
	if s.State != opened || hist(s) != "draft:implied sent:event delivered:implied opened:event opened:duplicate" {
		t.Fatalf("state %q history %s", s.State, hist(s))
	}
	// a retry that sorts first becomes the one that counts
	o0 := mev("o0", opened, 15)
	o0.ProviderEventID = "sg-1"
	s = Apply(s, Input{Event: o0, Origin: 5}).State
	if s.History[3].Event != "o0" || s.History[3].How != schemas.HowEvent || s.History[4].How != schemas.HowDuplicate || s.History[5].How != schemas.HowDuplicate {
		t.Fatalf("history %+v", s.History)
	}
	// the same provider id on another type is another report
	c := mev("c1", clicked, 30)
	c.ProviderEventID = "sg-1"
	if s = Apply(s, Input{Event: c, Origin: 6}).State; s.State != clicked {
		t.Fatalf("state %q", s.State)
	}
}

// TestApplyReplay: an input at or below the state's origin writes its
// letters again from the outbox and changes nothing.
func TestApplyReplay(t *testing.T) {
	s := Apply(nil, Input{Event: mev("a", sent, 10), Origin: 1}).State
	r := Apply(s, Input{Event: mev("b", deleted, 20), Origin: 2})
	if len(r.Letters) != 1 || !r.Write {
		t.Fatalf("letters %v", r.Letters)
	}
	s = r.State
	again := Apply(s, Input{Event: mev("b", deleted, 20), Origin: 2})
	if !again.Replayed || !again.Write || again.State != s || letters(again.Letters) != letters(r.Letters) {
		t.Fatalf("replay: %+v", again)
	}
	if again := Apply(s, Input{Event: mev("a", sent, 10), Origin: 1}); !again.Replayed || len(again.Letters) != 0 {
		t.Fatalf("replay of a: %+v", again)
	}
}

// TestApplyVerdicts: a send to an invalid address is refused with
// invalid_recipient; a newer verdict withdraws it, an older one is
// ignored; a delivery still implies the send.
func TestApplyVerdicts(t *testing.T) {
	send := mev("s", sent, 10)
	r := Apply(nil, Input{Event: send, Verdict: &schemas.RecipientVerdict{MessageID: "m1", Event: "s", Invalid: true, Version: 1}, Origin: 1})
	if letters(r.Letters) != "s:invalid_recipient →sent" || r.State.State != none {
		t.Fatalf("letters %q state %q", letters(r.Letters), r.State.State)
	}
	s := r.State
	if r := Apply(s, Input{Verdict: &schemas.RecipientVerdict{MessageID: "m1", Event: "s", Version: 1}, Origin: 2}); r.Write {
		t.Fatalf("a verdict of the same version changed the state")
	}
	r = Apply(s, Input{Verdict: &schemas.RecipientVerdict{MessageID: "m1", Event: "s", Version: 2}, Origin: 3})
	if letters(r.Letters) != "withdrawn s:invalid_recipient →sent" || r.State.State != sent {
		t.Fatalf("letters %q state %q", letters(r.Letters), r.State.State)
	}
	s = Apply(r.State, Input{Verdict: &schemas.RecipientVerdict{MessageID: "m1", Event: "s", Invalid: true, Version: 3}, Origin: 4}).State
	s = Apply(s, Input{Event: mev("d", delivered, 20), Origin: 5}).State
	if s.State != delivered || hist(s) != "sent:refused(invalid_recipient from ) draft:implied sent:implied delivered:event" {
		t.Fatalf("state %q history %s", s.State, hist(s))
	}
}

// TestApplyHistoryFull: beyond MessageHistoryLimit events, an event is
// refused with history_full and kept nowhere.
func TestApplyHistoryFull(t *testing.T) {
	s := Apply(nil, Input{Event: mev("a", sent, 1), Origin: 1}).State
	for i := 1; i < schemas.MessageHistoryLimit; i++ {
		s = Apply(s, Input{Event: mev(fmt.Sprintf("o%04d", i), opened, int64(i+1)), Origin: int64(i + 1)}).State
	}
	r := Apply(s, Input{Event: mev("late", clicked, 1000), Origin: 1000})
	if letters(r.Letters) != "late:history_full opened→clicked" || !r.Write || len(r.State.Events) != schemas.MessageHistoryLimit || r.State.State != opened {
		t.Fatalf("letters %q events %d state %q", letters(r.Letters), len(r.State.Events), r.State.State)
	}
	if again := Apply(r.State, Input{Event: mev("late", clicked, 1000), Origin: 1000}); letters(again.Letters) != letters(r.Letters) {
		t.Fatalf("replay letters %q", letters(again.Letters))
	}
}

// TestBounceKind: the message's bounce is the kind of the event that moved
// it into bounced.
func TestBounceKind(t *testing.T) {
	b := mev("b", bounced, 20)
	b.Bounce = schemas.BounceHard
	f := FoldEvents([]schemas.MessageEvent{*mev("a", sent, 10), *b, *mev("c", bounced, 30)}, nil)
	if f.State != bounced || f.Bounce != schemas.BounceHard {
		t.Fatalf("state %q bounce %q", f.State, f.Bounce)
	}
	f = FoldEvents([]schemas.MessageEvent{*mev("a", resent, 10)}, nil)
	if f.State != resent || f.Bounce != "" {
		t.Fatalf("state %q bounce %q", f.State, f.Bounce)
	}
}
