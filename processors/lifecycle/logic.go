// Package lifecycle is the message lifecycle (docs/lifecycle.md): the
// state machine of a message, the fold of a message's events in their
// order, and the handling of one input with its dead letters. This file is
// pure: no goka, no Kafka.
package lifecycle

import (
	"sort"

	"github.com/rolodex/rolodex/schemas"
)

// State is the lifecycle's table value, keyed by schemas.MessageKey.
type State = schemas.MessageTable

// OutboxLimit is how many of its latest letters a message keeps to write
// again when the input that made them is replayed.
const OutboxLimit = 256

const (
	none         schemas.MessageState = "" // ∅: a message with no event yet
	draft                             = schemas.MessageDraft
	saved                             = schemas.MessageSaved
	sent                              = schemas.MessageSent
	deferred                          = schemas.MessageDeferred
	delivered                         = schemas.MessageDelivered
	opened                            = schemas.MessageOpened
	clicked                           = schemas.MessageClicked
	unsubscribed                      = schemas.MessageUnsubscribed
	spam                              = schemas.MessageSpam
	bounced                           = schemas.MessageBounced
	cancelled                         = schemas.MessageCancelled
	resent                            = schemas.MessageResent
	edited                            = schemas.MessageEdited
	deleted                           = schemas.MessageDeleted
)

// edges are the direct transitions ("The machine", Edges).
var edges = map[schemas.MessageState][]schemas.MessageState{
	none:         {draft},
	draft:        {saved, sent},
	saved:        {deleted},
	sent:         {deferred, delivered, bounced, cancelled},
	resent:       {deferred, delivered, bounced, cancelled},
	deferred:     {delivered, bounced, cancelled},
	delivered:    {opened, unsubscribed, spam, bounced},
	opened:       {clicked, unsubscribed, spam},
	clicked:      {unsubscribed, spam},
	unsubscribed: {spam},
	bounced:      {resent, edited},
	edited:       {resent, saved},
	cancelled:    {saved},
}

// implies gives the state each state needs before it ("Implies").
var implies = map[schemas.MessageState]schemas.MessageState{
	saved: draft, sent: draft,
	deferred: sent, delivered: sent, bounced: sent, cancelled: sent,
	opened: delivered, unsubscribed: delivered, spam: delivered,
	clicked: opened,
	resent:  bounced,
	edited:  bounced,
	deleted: saved,
}

// rank orders the states of a sending attempt ("Absorbs").
var rank = map[schemas.MessageState]int{
	sent: 1, resent: 1, deferred: 2, delivered: 3, opened: 4, clicked: 5, unsubscribed: 6, spam: 7,
}

func hasEdge(from, to schemas.MessageState) bool {
	for _, s := range edges[from] {
		if s == to {
			return true
		}
	}
	return false
}

// absorbs reports whether a message in state c has necessarily been
// through t already.
func absorbs(c, t schemas.MessageState) bool {
	if c == none {
		return false
	}
	if t == c || t == draft {
		return true
	}
	for x := c; x != resent; { // the chain of c, up to an attempt's start
		x = implies[x]
		if x == none {
			break
		}
		if x == t {
			return true
		}
	}
	if rc, ok := rank[c]; ok && t != resent {
		if rt, ok := rank[t]; ok && rt <= rc {
			return true
		}
	}
	return false
}

// Outcome is what asking for a state does.
type Outcome int

// Outcomes.
const (
	Refused Outcome = iota
	Moved
	Implied
	Absorbed
)

func (o Outcome) String() string {
	switch o {
	case Moved:
		return "moved"
	case Implied:
		return "implied"
	case Absorbed:
		return "absorbed"
	}
	return "refused"
}

// Step is the outcome of asking for a state, and for a move the states
// entered in order: implied ones, the state asked for, and the automatic
// save after a cancel.
type Step struct {
	Outcome Outcome
	Path    []schemas.MessageState
}

// Transition is the machine: what asking for state t does to a message in
// state c (none: a new message). It never returns a path for an unknown
// state.
func Transition(c, t schemas.MessageState) Step {
	if _, ok := schemas.MessageStateOf(schemas.MessageEventType(t)); !ok {
		return Step{Outcome: Refused}
	}
	if absorbs(c, t) {
		return Step{Outcome: Absorbed}
	}
	var chain []schemas.MessageState // t, what t implies, ...
	for x := t; x != none; x = implies[x] {
		chain = append(chain, x)
	}
	for k, x := range chain {
		var path []schemas.MessageState
		switch {
		case x == c:
			path = chain[:k]
		case hasEdge(c, x):
			path = chain[:k+1]
		default:
			continue
		}
		rev := make([]schemas.MessageState, 0, len(path)+1)
		for i := len(path) - 1; i >= 0; i-- {
			rev = append(rev, path[i])
		}
		out := Moved
		if len(rev) > 1 {
			out = Implied
		}
		if t == cancelled {
			rev = append(rev, saved)
		}
		return Step{Outcome: out, Path: rev}
	}
	return Step{Outcome: Refused}
}

// Fold is a message's state: the machine folded over its events.
type Fold struct {
	State     schemas.MessageState
	Bounce    string
	Channel   string
	Recipient []schemas.Identifier
	History   []schemas.HistoryEntry
	Refused   map[string]schemas.MessageRefusal
}

// FoldEvents folds the machine over a message's distinct events, sorted
// by (time, id) (docs/lifecycle.md, "Order"), with the recipient verdicts
// of its sends.
func FoldEvents(events []schemas.MessageEvent, verdicts map[string]schemas.RecipientVerdict) Fold {
	var f Fold
	state, bounce := none, ""
	seen := map[string]bool{}
	for i := range events {
		e := &events[i]
		entry := schemas.HistoryEntry{State: e.State, Time: e.Time, Event: e.ID}
		if e.ProviderEventID != "" {
			k := string(e.State) + "\x00" + e.ProviderEventID
			if seen[k] {
				entry.How = schemas.HowDuplicate
				f.History = append(f.History, entry)
				continue
			}
			seen[k] = true
		}
		refuse := func(reason string) {
			entry.How, entry.From, entry.Reason = schemas.HowRefused, state, reason
			f.History = append(f.History, entry)
			if f.Refused == nil {
				f.Refused = map[string]schemas.MessageRefusal{}
			}
			f.Refused[e.ID] = schemas.MessageRefusal{From: state, Asked: e.State, Reason: reason}
		}
		if (e.State == sent || e.State == resent) && verdicts[e.ID].Invalid {
			refuse(schemas.ReasonInvalidRecipient)
			continue
		}
		step := Transition(state, e.State)
		switch step.Outcome {
		case Refused:
			refuse(schemas.ReasonInvalidTransition)
			continue
		case Absorbed:
			entry.How = schemas.HowAbsorbed
			entry.Bounce = e.Bounce
			f.History = append(f.History, entry)
			continue
		}
		for _, s := range step.Path {
			h := schemas.HistoryEntry{State: s, Time: e.Time, Event: e.ID, How: schemas.HowImplied}
			switch {
			case s == e.State:
				h.How, h.Bounce = schemas.HowEvent, e.Bounce
			case s == saved && e.State == cancelled:
				h.How = schemas.HowAutomatic
			}
			if s == bounced {
				bounce = h.Bounce
			}
			f.History = append(f.History, h)
			state = s
		}
	}
	f.State = state
	if state == bounced {
		f.Bounce = bounce
	}
	if n := len(events); n > 0 {
		f.Channel = events[n-1].Channel
		f.Recipient = events[n-1].Identifiers
	}
	return f
}

// Input is one input of a message: an event, a verdict, or both (a send
// the recipients group forwards with its first verdict). Origin is its
// offset on its partition plus one (0: never replayed, in tests).
type Input struct {
	Event   *schemas.MessageEvent
	Verdict *schemas.RecipientVerdict
	Origin  int64
}

// Result is what handling an input makes.
type Result struct {
	State *State
	// Letters are the dead letters to write, in the message's order.
	Letters []schemas.MessageLetter
	// Write: the state must be written (else it is unchanged).
	Write bool
	// Replayed: the input was handled before; Letters are its letters,
	// written again.
	Replayed bool
}

// Apply handles one input of message key (tenant and message id come from
// the input). An input already reflected in the state (its origin is at
// most the state's) is a replay after a crash: it changes nothing, writes
// its letters again from the outbox and the state again (goka's local
// store may hold a write its table topic lost). A known event id or a verdict
// no newer than the one kept changes nothing.
func Apply(s *State, in Input) Result {
	if s != nil && in.Origin > 0 && in.Origin <= s.By {
		var again []schemas.MessageLetter
		for _, o := range s.Outbox {
			if o.By == in.Origin {
				again = append(again, o.Letter)
			}
		}
		// Written again too: the local store may hold the state while the
		// table topic lost it, and the input is about to be committed.
		return Result{State: s, Letters: again, Write: true, Replayed: true}
	}
	next := &State{}
	if s != nil {
		*next = *s
	}
	var letters []schemas.MessageLetter
	changed := false
	if e := in.Event; e != nil {
		next.Tenant, next.MessageID = e.Tenant, e.MessageID
		// An event id is one event: a reused id keeps the first event
		// (docs/lifecycle.md, "Duplicates").
		known := false
		for j := range next.Events {
			if next.Events[j].ID == e.ID {
				known = true
				break
			}
		}
		switch {
		case known:
		case len(next.Events) >= schemas.MessageHistoryLimit:
			letters = append(letters, schemas.MessageLetter{MessageID: e.MessageID, Event: e.ID,
				Refusal: schemas.MessageRefusal{From: next.State, Asked: e.State, Reason: schemas.ReasonHistoryFull}})
		default:
			i := sort.Search(len(next.Events), func(i int) bool { return !next.Events[i].Before(e) })
			evs := make([]schemas.MessageEvent, 0, len(next.Events)+1)
			evs = append(evs, next.Events[:i]...)
			evs = append(evs, *e)
			next.Events = append(evs, next.Events[i:]...)
			changed = true
		}
	}
	if v := in.Verdict; v != nil {
		if next.MessageID == "" {
			next.MessageID = v.MessageID
		}
		if old, ok := next.Verdicts[v.Event]; !ok || v.Version > old.Version {
			vs := make(map[string]schemas.RecipientVerdict, len(next.Verdicts)+1)
			for k, x := range next.Verdicts {
				vs[k] = x
			}
			vs[v.Event] = *v
			next.Verdicts = vs
			changed = true
		}
	}
	if !changed && len(letters) == 0 {
		return Result{State: s}
	}
	if changed {
		f := FoldEvents(next.Events, next.Verdicts)
		for _, e := range next.Events {
			old, was := next.Refused[e.ID]
			now, is := f.Refused[e.ID]
			switch {
			case is && (!was || old != now):
				letters = append(letters, schemas.MessageLetter{MessageID: next.MessageID, Event: e.ID, Refusal: now})
			case was && !is:
				letters = append(letters, schemas.MessageLetter{MessageID: next.MessageID, Event: e.ID, Refusal: old, Withdrawn: true})
			}
		}
		next.State, next.Bounce, next.Channel, next.Recipient = f.State, f.Bounce, f.Channel, f.Recipient
		next.History, next.Refused = f.History, f.Refused
	}
	if in.Origin > 0 {
		next.By = in.Origin
	}
	if len(letters) > 0 {
		ob := make([]schemas.SentLetter, 0, len(next.Outbox)+len(letters))
		ob = append(ob, next.Outbox...)
		for _, l := range letters {
			ob = append(ob, schemas.SentLetter{By: in.Origin, Letter: l})
		}
		if drop := len(ob) - max(OutboxLimit, len(letters)); drop > 0 {
			ob = ob[drop:]
		}
		next.Outbox = ob
	}
	return Result{State: next, Letters: letters, Write: true}
}
