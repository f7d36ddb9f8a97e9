package identity

import (
	"testing"
	"time"

	"github.com/rolodex/rolodex/schemas"
)

// Deterministic message sequences at one root for the protocol's rare
// paths (docs/identity.md, steps 3–5 and "Replays, not repeats"): the
// random simulations reach them too seldom to fail when they break.

type scenario struct {
	t   *testing.T
	e   *Engine
	key string
	n   *schemas.Node
	fx  effects
}

func newScenario(t *testing.T, key string) *scenario {
	t.Helper()
	e, err := NewEngine(Config{})
	if err != nil {
		t.Fatal(err)
	}
	return &scenario{t: t, e: e, key: key}
}

// deliver hands m to the node at origin, through the codec as the
// processor would.
func (s *scenario) deliver(m schemas.Message, origin int64) {
	s.t.Helper()
	s.n, s.fx = s.e.Message(s.key, s.n, roundTrip(s.t, &m), origin)
}

func (s *scenario) union(other string, origin int64) {
	s.deliver(schemas.Message{Kind: schemas.KindUnion, Tenant: "t", Other: other}, origin)
}

func (s *scenario) answer(kind, from string, ref, origin int64) {
	s.deliver(schemas.Message{Kind: kind, Tenant: "t", Other: from, Ref: ref}, origin)
}

// sent returns the messages of the last delivery to key.
func (s *scenario) sent(key string) []schemas.Message {
	var out []schemas.Message
	for _, snd := range s.fx.sends {
		if snd.key == key {
			out = append(out, *snd.msg)
		}
	}
	return out
}

func (s *scenario) wantPending(other string, ref int64) {
	s.t.Helper()
	if s.n.Pending != other || s.n.PendingBy != ref {
		s.t.Fatalf("pending %q by %d, want %q by %d", s.n.Pending, s.n.PendingBy, other, ref)
	}
}

func (s *scenario) wantRoot() {
	s.t.Helper()
	if s.n.Parent != "" {
		s.t.Fatalf("merged into %q, want a root", s.n.Parent)
	}
}

// An answer to an earlier proposal (a repeat, or a replay) must not settle
// the proposal in flight: its re-deliveries would be processed while the
// real answer may still merge the root away.
func TestStaleRefuseDoesNotSettle(t *testing.T) {
	s := newScenario(t, "c")
	s.union("a", 10)
	s.wantPending("a", 10)
	r10 := s.n.PendingRef
	if p := s.sent("a"); len(p) != 1 || p[0].Kind != schemas.KindPropose || p[0].Ref != r10 || r10 == 0 {
		t.Fatalf("proposal sent: %+v; want one Propose with ref %d", p, r10)
	}
	s.union("b", 11) // waits for the answer
	if len(s.n.Deferred) != 1 {
		t.Fatalf("deferred %+v, want the union with b", s.n.Deferred)
	}
	s.answer(schemas.KindRefuse, "a", r10^2, 12)
	s.wantPending("a", 10)
	if len(s.fx.sends) != 0 || len(s.n.Deferred) != 1 {
		t.Fatalf("a stale refuse settled: sends %+v, deferred %+v", s.fx.sends, s.n.Deferred)
	}
	s.answer(schemas.KindRefuse, "a", r10, 13)
	s.wantPending("", 0)
	got := s.sent("c")
	if len(got) != 1 || got[0].Kind != schemas.KindUnion || got[0].Other != "b" || got[0].Of != 13 || got[0].Seq == 0 {
		t.Fatalf("re-delivered %+v; want the union with b, of 13, with a seq", got)
	}
}

// A settlement's re-deliveries survive a later settlement until they come
// back: a replay of the first answer re-sends them even after the root
// settled again (a crash lost them while later messages were processed).
func TestReplayResendsEarlierSettlement(t *testing.T) {
	s := newScenario(t, "c")
	s.union("a", 10)
	r10 := s.n.PendingRef
	s.union("b", 11)
	s.answer(schemas.KindRefuse, "a", r10, 13) // settlement 1 re-delivers the union with b (lost)
	s.union("a", 14)                           // a second proposal
	s.wantPending("a", 14)
	r14 := s.n.PendingRef
	if r14 == r10 {
		t.Fatal("two proposals of different origins share an id")
	}
	s.union("ab", 15)
	s.answer(schemas.KindRefuse, "a", r14, 16) // settlement 2 re-delivers the union with ab
	if len(s.n.Redeliveries) != 2 {
		t.Fatalf("redeliveries %+v, want both settlements", s.n.Redeliveries)
	}

	s.answer(schemas.KindRefuse, "a", r10, 13) // replay of settlement 1's answer
	s.wantPending("", 0)
	got := s.sent("c")
	if len(got) != 1 || got[0].Other != "b" || got[0].Of != 13 {
		t.Fatalf("replay re-sent %+v; want settlement 1's union with b", got)
	}

	// The re-delivery comes back: it is dropped from the list and handled
	// as a plain union (b < c, so c proposes to b).
	back := got[0]
	s.deliver(back, 17)
	if len(s.n.Redeliveries) != 1 || s.n.Redeliveries[0].By != 16 {
		t.Fatalf("redeliveries %+v, want only settlement 2's", s.n.Redeliveries)
	}
	if !s.fx.changed {
		t.Fatal("dropping a returned re-delivery did not write the node")
	}
	s.wantPending("b", 17)
	// Another replay of settlement 1's answer has nothing left to send.
	s.answer(schemas.KindRefuse, "a", r10, 13)
	if got := s.sent("c"); len(got) != 0 {
		t.Fatalf("replay after the re-delivery came back re-sent %+v", got)
	}
	// A duplicate of the returned message (re-sent by a replay and
	// delivered twice) is harmless: the proposal to b is not repeated.
	s.deliver(back, 18)
	s.wantPending("b", 17)
	if len(s.fx.sends) != 0 {
		t.Fatalf("duplicate re-delivery sent %+v", s.fx.sends)
	}
}

// An Accept that does not answer the pending proposal does not merge the
// root away: an old answer while another proposal is in flight changes
// nothing (the proposal in flight settles it), and one at a root with
// nothing pending means both belong together, so the root proposes again.
func TestStaleAccept(t *testing.T) {
	s := newScenario(t, "c")
	s.union("a", 10)
	r10 := s.n.PendingRef
	s.answer(schemas.KindRefuse, "a", r10, 11)
	s.union("a", 12)
	s.wantPending("a", 12)
	r12 := s.n.PendingRef
	s.answer(schemas.KindAccept, "a", r10, 13) // answers the first proposal
	s.wantRoot()
	s.wantPending("a", 12)
	if len(s.fx.sends) != 0 || len(s.fx.merges) != 0 {
		t.Fatalf("stale accept while pending: sends %+v merges %+v", s.fx.sends, s.fx.merges)
	}
	s.answer(schemas.KindRefuse, "a", r12, 14)
	s.wantPending("", 0)

	s.answer(schemas.KindAccept, "a", r12, 15) // a late accept of a re-sent proposal
	s.wantRoot()
	s.wantPending("a", 15)
	r15 := s.n.PendingRef
	if p := s.sent("a"); len(p) != 1 || p[0].Kind != schemas.KindPropose || p[0].Ref != r15 {
		t.Fatalf("stale accept at a settled root sent %+v; want a new proposal with ref %d", p, r15)
	}

	s.answer(schemas.KindAccept, "a", r15, 16) // the real answer merges
	if s.n.Parent != "a" || s.n.MergedBy != 16 || len(s.fx.merges) != 1 {
		t.Fatalf("accept of the pending proposal: parent %q merged by %d merges %+v", s.n.Parent, s.n.MergedBy, s.fx.merges)
	}
	// Its replay repairs the merge record and the update; a repeat
	// (another origin) does nothing.
	s.answer(schemas.KindAccept, "a", r15, 16)
	if len(s.fx.merges) != 1 || len(s.sent("a")) != 1 || s.sent("a")[0].Kind != schemas.KindUpdate {
		t.Fatalf("replayed accept: merges %+v sends %+v", s.fx.merges, s.fx.sends)
	}
	s.answer(schemas.KindAccept, "a", r15, 17)
	if len(s.fx.merges) != 0 || len(s.fx.sends) != 0 {
		t.Fatalf("repeated accept: merges %+v sends %+v", s.fx.merges, s.fx.sends)
	}
}

// A message whose node write a crash lost is handled again, and after a
// restart another input of the node (from the other input topic) can come
// first: the proposal it makes again can carry more than the first one,
// which may already have reached the other root. An accept of the first
// must not settle the second, or what only the second carried (here an
// event) never reaches the survivor.
func TestProposalRemadeFromAnotherStateHasAnotherID(t *testing.T) {
	s := newScenario(t, "c")
	s.union("a", 10)
	first := s.sent("a")[0]
	s.n, s.fx = nil, effects{} // the node write was lost
	ev := &schemas.Event{ID: "e1", Tenant: "t", Type: "page.viewed", Source: "web",
		Time: time.Unix(1_700_000_000, 0), ReceivedAt: time.Unix(1_700_000_000, 0),
		Identifiers: []schemas.Identifier{{Type: "email", Value: "c@example.com"}}}
	s.n, s.fx = s.e.Event("c", s.n, ev, 20) // another input first
	s.union("a", 10)                        // the replay
	second := s.sent("a")[0]
	if second.Ref == first.Ref {
		t.Fatalf("the proposal made again with an event more has the first one's id %d", first.Ref)
	}
	s.answer(schemas.KindAccept, "a", first.Ref, 21) // the survivor accepted the first
	s.wantRoot()
	s.answer(schemas.KindAccept, "a", second.Ref, 22) // and the second (joining the event)
	if s.n.Parent != "a" {
		t.Fatalf("accept of the proposal in flight did not merge: parent %q", s.n.Parent)
	}
	// A replay that makes the same proposal from the same state gets the
	// same id: the answer to either is the answer to both.
	r := newScenario(t, "c")
	r.union("a", 10)
	if r.sent("a")[0].Ref != first.Ref {
		t.Fatal("the same proposal made twice got two ids")
	}
}

// A proposal that comes back to its sender settles only the proposal it
// belongs to.
func TestReturnedProposalSettlesOnlyItsOwn(t *testing.T) {
	s := newScenario(t, "c")
	s.union("a", 10)
	ref := s.n.PendingRef
	s.deliver(schemas.Message{Kind: schemas.KindPropose, Tenant: "t", Other: "c", Ref: ref ^ 2}, 11)
	s.wantPending("a", 10)
	s.deliver(schemas.Message{Kind: schemas.KindPropose, Tenant: "t", Other: "c", Ref: ref}, 12)
	s.wantPending("", 0)
}
