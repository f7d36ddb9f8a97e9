package identity

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"time"

	"github.com/rolodex/rolodex/schemas"
)

// Config of the identity stage.
type Config struct {
	// Limits caps identifiers per type in one profile (merge protection).
	// Types not listed get DefaultLimit. Default: user_id 1.
	Limits map[string]int
	// DefaultLimit is the cap of the types not in Limits. Default 5.
	DefaultLimit int
	// DedupeWindow is how long an event id is remembered. Default 7 days.
	DedupeWindow time.Duration
	// Status is the tag configuration profiles are folded with (default
	// tags, tag groups; docs/profile-status.md).
	Status schemas.StatusConfig
	// LeadTypes are the event types that are leads (routing.lead_types):
	// the root of the profile an event of one of them lands on writes the
	// lead with its profile to rolodex.routing.input. None: no leads.
	LeadTypes []string
}

func (c *Config) setDefaults() {
	if c.Limits == nil {
		c.Limits = map[string]int{schemas.IDUserID: 1}
	}
	if c.DefaultLimit == 0 {
		c.DefaultLimit = 5
	}
	if c.DedupeWindow == 0 {
		c.DedupeWindow = 7 * 24 * time.Hour
	}
}

// Validate reports a config that cannot work.
func (c *Config) Validate() error {
	if c.DefaultLimit < 1 {
		return errors.New("identity: the default identifier limit must be at least 1")
	}
	for t, l := range c.Limits {
		if l < 1 {
			return fmt.Errorf("identity: limit of %s must be at least 1", t)
		}
	}
	if c.DedupeWindow < 0 {
		return errors.New("identity: the dedupe window must not be negative")
	}
	return nil
}

func (c *Config) limit(typ string) int {
	if l, ok := c.Limits[typ]; ok {
		return l
	}
	return c.DefaultLimit
}

// send is a loopback message to a node.
type send struct {
	key string
	msg *schemas.Message
}

// effects is what handling one input produces besides the new node value.
type effects struct {
	sends      []send
	merges     []schemas.Merge
	refusals   []schemas.Refusal
	changed    bool // the node must be written
	applied    bool // an event was folded in
	duplicate  bool // an event was already folded in
	rootUpdate bool // the node is a root whose profile changed
	mergedAway bool // the node stopped being a root (or a replay of that)
	snapshot   bool // emit the root's profile to rolodex.profiles
	proposed   bool // this message made a proposal
	// leads to write with the root's profile (the node is a root).
	leads []schemas.RoutingLead
	// fanout: topic events to write with the root's profile facts to
	// rolodex.fanout.input (the node is a root).
	fanout []schemas.FanoutEvent
	// status: write the root's blacklist and consent to
	// rolodex.fanout.input (they changed, or a replay of the message
	// that changed them); statusEvent is the event that changed them,
	// when the root folded it itself.
	status      bool
	statusEvent string
	// absorbed: the root took in the root of this proposal (a merge, or a
	// repeat of one): fan-out is told, after the status, so that the
	// merged-away profile's subscriptions follow the survivor
	// (docs/fanout.md, "Merges").
	absorbed string
	// held: an event's leads or topic events started waiting (hold).
	held bool
	// released: held events sent on (their waits over, or to the
	// survivor of a merge), by release.
	released int
	// apartFull: the root's Apart reached schemas.ApartFull here (its
	// profile's leads and topic events stop waiting).
	apartFull bool
}

// Engine is the pure decision logic of the identity protocol
// (docs/identity.md): given a node and an input it returns the new node and
// the effects. It does no I/O, so tests drive it directly.
type Engine struct {
	cfg Config
	now func() time.Time
}

// NewEngine returns the engine for cfg.
func NewEngine(cfg Config) (*Engine, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Engine{cfg: cfg, now: time.Now}, nil
}

// snapshot materializes the profile of root n as rolodex.profiles carries
// it: folded with the configured tags, consent expiry read now, and with
// its event times (the latest schemas.EventTimesLimit per type), which the
// tag stage's rules read (docs/tags.md, "Memory bound").
func (e *Engine) snapshot(key string, n *schemas.Node) *schemas.Profile {
	return schemas.FoldWith(key, n, &schemas.FoldOptions{Status: e.cfg.Status, EventTimes: true})
}

func eventHash(source, id string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(source))
	h.Write([]byte{0})
	h.Write([]byte(id))
	return h.Sum64()
}

func ensure(key string, n *schemas.Node, tenant string, id *schemas.Identifier, fx *effects) *schemas.Node {
	if n == nil {
		n = &schemas.Node{Tenant: tenant, Own: schemas.Contribution{Node: key}}
		fx.changed = true
	}
	if id != nil && n.Identifier.Type == "" {
		n.Identifier = *id
		n.Own.Identifier = *id
		fx.changed = true
		if n.IsRoot() {
			fx.rootUpdate = true
		} else {
			fx.sends = append(fx.sends, send{n.Parent, &schemas.Message{Kind: schemas.KindUpdate, Tenant: n.Tenant, Contribs: []schemas.Contribution{n.Own}}})
		}
	}
	return n
}

// Event handles an event at the node of its primary identifier. origin
// identifies the delivery (docs/identity.md): the same message delivered
// again after a crash has the same origin.
func (e *Engine) Event(key string, n *schemas.Node, ev *schemas.Event, origin int64) (*schemas.Node, effects) {
	var fx effects
	primary := ev.Identifiers[0]
	n = ensure(key, n, ev.Tenant, &primary, &fx)
	h := eventHash(ev.Source, ev.ID)
	if _, seen := n.Seen[h]; seen {
		fx.duplicate = true
	} else {
		received := ev.ReceivedAt.UnixMilli()
		n.Own.Add(ev)
		if n.Seen == nil {
			n.Seen = map[uint64]int64{}
		}
		n.Seen[h] = received
		horizon := received - e.cfg.DedupeWindow.Milliseconds()
		for k, r := range n.Seen {
			if r < horizon {
				delete(n.Seen, k)
			}
		}
		n.AppliedBy = origin
		fx.applied, fx.changed = true, true
		if n.IsRoot() {
			fx.rootUpdate = true
		}
	}
	// Sent when the event was folded now, and again by a replay of the
	// message that folded the latest one: a crash may have lost the send.
	// A repeat of an older event sends nothing; the message that folded
	// the latest event sent (or, replayed, will send) all of Own.
	// A lead goes out from the root of its profile every time its event
	// is handled, a duplicate too: a crash may have lost the first record,
	// and a later event may have folded since (so the replay sends no
	// update). The routing stage dedupes by lead id.
	var leads []schemas.RoutingLead
	if slices.Contains(e.cfg.LeadTypes, ev.Type) {
		leads = []schemas.RoutingLead{*schemas.LeadOf(ev)}
	}
	// A topic event likewise (docs/fanout.md): the fan-out stage dedupes
	// by event id.
	var fanout []schemas.FanoutEvent
	if ev.Topic != "" {
		fanout = []schemas.FanoutEvent{*schemas.FanoutEventOf(ev)}
	}
	// They wait at the root until the event's other identifiers joined
	// its profile (hold).
	var wait []schemas.Identifier
	var held string
	if leads != nil || fanout != nil {
		wait, held = peers(key, ev), schemas.HeldEvent(ev.Source, ev.ID)
	}
	switch {
	case !n.IsRoot() && (n.AppliedBy == origin || leads != nil || fanout != nil):
		// Folded by this delivery, or a lead or topic event: with this
		// node's contribution (again, for a repeat: versioned, so it
		// changes nothing), so that the root's profile has the lead
		// folded in even when the update that first carried it was lost.
		fx.sends = append(fx.sends, send{n.Parent, &schemas.Message{Kind: schemas.KindUpdate, Tenant: n.Tenant, Contribs: []schemas.Contribution{n.Own}, Leads: leads, Fanout: fanout, Wait: wait, Event: held}})
	case n.IsRoot():
		hold(key, n, held, key, wait, leads, fanout, &fx)
		fx.statusEvent = ev.ID
	}
	// A link goes out once per peer, and again only by a replay of the
	// message that sent it.
	for _, id := range ev.Identifiers[1:] {
		id := id
		peer := schemas.NodeID(ev.Tenant, id)
		if by, ok := n.Linked[peer]; ok && by != origin {
			continue
		} else if !ok {
			if n.Linked == nil {
				n.Linked = map[string]int64{}
			}
			n.Linked[peer] = origin
			fx.changed = true
		}
		fx.sends = append(fx.sends, send{peer, &schemas.Message{Kind: schemas.KindLink, Tenant: ev.Tenant, Identifier: &id, Other: key}})
	}
	finish(n, origin, &fx)
	return n, fx
}

// Message handles a loopback message at node key; origin as for Event.
func (e *Engine) Message(key string, n *schemas.Node, m *schemas.Message, origin int64) (*schemas.Node, effects) {
	var fx effects
	n = ensure(key, n, m.Tenant, m.Identifier, &fx)
	// A replay of an answer that settled a proposal: the re-deliveries
	// that have not come back may have been lost with a crash.
	for _, s := range n.Redeliveries {
		if s.By == origin {
			for _, r := range s.Messages {
				r := r
				fx.sends = append(fx.sends, send{key, &r})
			}
		}
	}
	if m.Of != 0 {
		// A re-delivery came back: it is in the log, no replay needs to
		// send it again.
		if returned(n, m.Of, m.Seq) {
			fx.changed = true
		}
		c := *m
		c.Of, c.Seq = 0, 0
		m = &c
	}
	switch m.Kind {
	case schemas.KindLink, schemas.KindUnion:
		e.union(key, n, m, origin, &fx)
	case schemas.KindPropose:
		e.propose(key, n, m, origin, &fx)
	case schemas.KindAccept:
		e.accept(key, n, m, origin, &fx)
	case schemas.KindRefuse:
		// The refusing root's nodes stay apart from this profile: what
		// waited for them goes out (any answer, a stale one too: the
		// limits that refused a part of this profile refuse the whole).
		switch {
		case !n.IsRoot():
			// An answer to a proposal made before this node merged away
			// (a crash replayed the proposer from another state): the
			// survivor keeps what it says.
			if len(m.Nodes) > 0 {
				fx.sends = append(fx.sends, send{n.Parent, m})
			}
		case m.Nodes == nil && n.Pending != "" && m.Ref == n.PendingRef:
			// From the previous version, which does not name the nodes:
			// nothing waits any more.
			unwaitAll(n, &fx)
		default:
			apart(n, m.Nodes, &fx)
		}
		// Only the answer to the pending proposal settles it; another is
		// a repeat or replay of the answer to an earlier one.
		if n.IsRoot() && n.Pending != "" && m.Ref == n.PendingRef {
			e.settle(key, n, origin, &fx)
		}
	case schemas.KindUpdate:
		if !n.IsRoot() {
			fx.sends = append(fx.sends, send{n.Parent, m})
			break
		}
		if n.Join(m.Contribs) {
			fx.changed, fx.rootUpdate = true, true
		}
		apart(n, m.Nodes, &fx)
		if c := m.Contribs; len(c) == 1 && c[0].Node == key && c[0].Version > n.Own.Version {
			// Released from this root's own events by a handling whose
			// write a crash lost (its sends landed): the event is not
			// folded here yet, and its replay, which will come, writes
			// them with it (hold).
			break
		}
		hold(key, n, heldEvent(m), heldNode(m), m.Wait, m.Leads, m.Fanout, &fx)
	}
	release(key, n, origin, &fx)
	finish(n, origin, &fx)
	return n, fx
}

// peers are an event's identifiers but that of node key.
func peers(key string, ev *schemas.Event) []schemas.Identifier {
	var out []schemas.Identifier
	for _, id := range ev.Identifiers {
		if schemas.NodeID(ev.Tenant, id) != key && !slices.Contains(out, id) {
			out = append(out, id)
		}
	}
	return out
}

// heldEvent is the event whose leads and topic events an update carries
// (an update of the previous version names it by its id alone).
func heldEvent(m *schemas.Message) string {
	if m.Event != "" {
		return m.Event
	}
	if len(m.Leads) > 0 {
		return m.Leads[0].EventID
	}
	if len(m.Fanout) > 0 {
		return m.Fanout[0].EventID
	}
	return ""
}

// heldNode is the node that folded the event of an update's leads and
// topic events: the contribution the update carries.
func heldNode(m *schemas.Message) string {
	if len(m.Contribs) > 0 {
		return m.Contribs[0].Node
	}
	return ""
}

// outside returns the identifiers of wait that root n's profile does not
// hold (its own, or a member's: a member whose node has no identifier yet
// does not count, a union can make a node before the link that brings its
// identifier) and that merge protection did not keep apart from it.
func outside(key string, n *schemas.Node, wait []schemas.Identifier) []schemas.Identifier {
	if slices.Contains(n.Apart, schemas.ApartFull) {
		return nil
	}
	var out []schemas.Identifier
	for _, id := range wait {
		x := schemas.NodeID(n.Tenant, id)
		if x == key && n.Own.Identifier == id {
			continue
		}
		if c, member := n.Members[x]; member && c.Identifier == id {
			continue
		}
		if slices.Contains(n.Apart, x) {
			continue
		}
		out = append(out, id)
	}
	return out
}

// apart records nodes that merge protection keeps apart from root n's
// profile (schemas.Node.Apart), up to schemas.ApartLimit; past it, the
// list ends with schemas.ApartFull and held events stop waiting here.
func apart(n *schemas.Node, nodes []string, fx *effects) {
	for _, x := range nodes {
		if slices.Contains(n.Apart, schemas.ApartFull) {
			return
		}
		if slices.Contains(n.Apart, x) {
			continue
		}
		if x != schemas.ApartFull && len(n.Apart) < schemas.ApartLimit {
			n.Apart = append(n.Apart, x)
		} else {
			n.Apart = append(n.Apart, schemas.ApartFull)
			fx.apartFull = true
		}
		fx.changed = true
	}
}

// hold writes an event's leads and topic events with root n's profile
// now, when the profile holds every identifier of the event or knows it
// apart (outside); otherwise they wait in n.Held until it does (release). An event linking
// a new identifier to a blacklisted person would otherwise go out from the
// new identifier's root before the merge, with a profile that is not
// blacklisted (docs/identity.md, "Leads and topic events wait for their
// event's links"). A repeat of a held event changes nothing.
func hold(key string, n *schemas.Node, event, node string, wait []schemas.Identifier, leads []schemas.RoutingLead, fanout []schemas.FanoutEvent, fx *effects) {
	if leads == nil && fanout == nil {
		return
	}
	w := outside(key, n, wait)
	if len(w) == 0 {
		fx.leads, fx.fanout = leads, fanout
		return
	}
	// An event is its source and id at the node of its primary identifier
	// (the dedupe's): the same source and id at another node is another.
	if slices.ContainsFunc(n.Held, func(h schemas.Held) bool { return h.Event == event && h.Node == node }) {
		return
	}
	n.Held = append(n.Held, schemas.Held{Event: event, Node: node, Wait: w, Leads: leads, Fanout: fanout})
	fx.changed, fx.held = true, true
}

// unwaitAll ends every wait of root n's held events.
func unwaitAll(n *schemas.Node, fx *effects) {
	for i := range n.Held {
		if len(n.Held[i].Wait) > 0 {
			n.Held[i].Wait = nil
			fx.changed = true
		}
	}
}

// release sends the held events whose waits are over back to the root
// itself as updates, which write them with the profile (hold again finds
// nothing to wait for); a merged-away node sends all of them, with what
// they still wait for, to be held by the survivor. The sends are kept as
// re-deliveries of this message (redeliver), so that a replay of it sends
// again those a crash may have lost.
func release(key string, n *schemas.Node, origin int64, fx *effects) {
	if len(n.Held) == 0 {
		return
	}
	var out []schemas.Message
	keep := n.Held[:0]
	for _, h := range n.Held {
		w := h.Wait
		if n.IsRoot() {
			if w = outside(key, n, h.Wait); len(w) > 0 {
				if len(w) != len(h.Wait) {
					h.Wait = w
					fx.changed = true
				}
				keep = append(keep, h)
				continue
			}
		}
		// With the contribution that folded the event, as the update
		// that brought it carried it: wherever the update lands, the
		// profile it goes out with has the event folded in.
		var cs []schemas.Contribution
		if c, ok := n.Members[h.Node]; ok {
			cs = []schemas.Contribution{c}
		} else if h.Node == key {
			cs = []schemas.Contribution{n.Own}
		}
		out = append(out, schemas.Message{Kind: schemas.KindUpdate, Tenant: n.Tenant, Contribs: cs, Leads: h.Leads, Fanout: h.Fanout, Wait: w, Event: h.Event})
	}
	if len(out) == 0 {
		return
	}
	n.Held = keep
	if len(n.Held) == 0 {
		n.Held = nil
	}
	fx.changed, fx.released = true, len(out)
	redeliver(key, n, origin, out, fx)
}

// returned drops re-delivered message seq of the settlement by origin of,
// reporting whether it was still there.
func returned(n *schemas.Node, of int64, seq int) bool {
	for i := range n.Redeliveries {
		s := &n.Redeliveries[i]
		if s.By != of {
			continue
		}
		for j := range s.Messages {
			if s.Messages[j].Seq == seq {
				s.Messages = append(s.Messages[:j], s.Messages[j+1:]...)
				if len(s.Messages) == 0 {
					n.Redeliveries = append(n.Redeliveries[:i], n.Redeliveries[i+1:]...)
				}
				return true
			}
		}
	}
	return false
}

// finish decides the profile snapshot. A root emits one after every change,
// except while its proposal is in flight: it is then likely to merge away
// (its merged_into record and the survivor's snapshot supersede it), and
// the snapshot is due when the proposal is refused. A replay of the
// message that emitted the latest snapshot emits it again: the crash may
// have lost it. It also records whether a pending root changed since its
// proposal (Dirty): only then does the accept need an Update.
func finish(n *schemas.Node, origin int64, fx *effects) {
	if !n.IsRoot() {
		if n.SnapshotDue || n.Dirty {
			n.SnapshotDue, n.Dirty = false, false
			fx.changed = true
		}
		return
	}
	status(n, origin, fx)
	if fx.rootUpdate && !fx.proposed && !n.Dirty {
		n.Dirty = true
		fx.changed = true
	}
	switch {
	case (fx.rootUpdate || n.SnapshotDue) && n.Pending != "":
		if !n.SnapshotDue {
			n.SnapshotDue = true
			fx.changed = true
		}
	case fx.rootUpdate || n.SnapshotDue:
		n.SnapshotDue, n.SnapshotBy = false, origin
		fx.snapshot, fx.changed = true, true
	case n.SnapshotBy == origin:
		fx.snapshot = true
	}
}

// status decides the root's status record for fan-out (docs/fanout.md):
// written when the profile's blacklist or consent changed, also while a
// proposal is pending (fan-out orders it with the profile's topic events
// by the root's key), and again by a replay of the message that wrote the
// latest one, since a crash may have lost it.
func status(n *schemas.Node, origin int64, fx *effects) {
	if fx.rootUpdate {
		if d := schemas.FanoutStatusDigest(n.FanoutStatus()); d != n.StatusDigest {
			n.StatusDigest, n.StatusBy = d, origin
			fx.status, fx.changed = true, true
			return
		}
	}
	if n.StatusBy == origin {
		fx.status = true
	}
}

func (e *Engine) union(key string, n *schemas.Node, m *schemas.Message, origin int64, fx *effects) {
	other := m.Other
	switch _, member := n.Members[other]; {
	case !n.IsRoot():
		fx.sends = append(fx.sends, send{n.Parent, &schemas.Message{Kind: schemas.KindUnion, Tenant: n.Tenant, Other: other}})
	case other == key || member || other == "":
	case other > key:
		// The larger side proposes to the smaller.
		fx.sends = append(fx.sends, send{other, &schemas.Message{Kind: schemas.KindUnion, Tenant: n.Tenant, Other: key}})
	case n.Pending == other:
		// A replay of the message that made the proposal: the proposal
		// may have been lost with the crash, so send it again. Any other
		// union with the same root is settled by the proposal in flight.
		if origin == n.PendingBy {
			fx.sends = append(fx.sends, send{other, e.proposal(key, n)})
		}
	case n.Pending != "":
		deferMsg(n, schemas.Message{Kind: schemas.KindUnion, Tenant: n.Tenant, Other: other})
		fx.changed = true
	default:
		cs := n.Contributions()
		n.Pending, n.PendingBy, n.PendingRef, n.Dirty = other, origin, proposalRef(origin, cs), false
		fx.changed, fx.proposed = true, true
		fx.sends = append(fx.sends, send{other, &schemas.Message{Kind: schemas.KindPropose, Tenant: n.Tenant, Other: key, Ref: n.PendingRef, Contribs: cs, Nodes: n.Apart}})
	}
}

// fanoutRecords are the records of rolodex.fanout.input for root n with
// profile prof (its fold; nil when there is no status and no topic
// event): the status first (a topic event's own status change is in the
// facts the event carries too), then a merge's FanoutAbsorbed (fan-out
// settles the merged-away profile's holdings with the facts before it),
// then the topic events.
func (e *Engine) fanoutRecords(prof *schemas.Profile, n *schemas.Node, fx effects) []*schemas.FanoutInput {
	var facts *schemas.FanoutProfile
	if prof != nil {
		facts = schemas.FanoutFacts(prof, n)
	}
	var out []*schemas.FanoutInput
	if fx.status {
		out = append(out, &schemas.FanoutInput{Status: &schemas.FanoutStatus{EventID: fx.statusEvent, Profile: facts}})
	}
	if fx.absorbed != "" {
		out = append(out, &schemas.FanoutInput{Absorbed: &schemas.FanoutAbsorbed{From: fx.absorbed}})
	}
	for i := range fx.fanout {
		ev := fx.fanout[i]
		ev.Profile = facts
		out = append(out, &schemas.FanoutInput{Event: &ev})
	}
	return out
}

// proposal is the root's pending proposal, sent again: all its
// contributions (a superset of those it first carried; what changed since
// is also marked Dirty), with its id.
func (e *Engine) proposal(key string, n *schemas.Node) *schemas.Message {
	return &schemas.Message{Kind: schemas.KindPropose, Tenant: n.Tenant, Other: key, Ref: n.PendingRef, Contribs: n.Contributions(), Nodes: n.Apart}
}

// proposalRef is the id of a proposal made by the message of origin with
// contributions cs. Origin alone is not enough: a message whose node write
// a crash lost is handled again, possibly from another state (other inputs
// of the node can come first after a restart), and its first proposal may
// have reached the other root. The survivor joins whichever proposal it
// accepts, and the accept is followed by an Update only if the root
// changed since its proposal; so two proposals with different contents
// must not share an id, or an accept of the first would settle the
// second and lose what only the second carried.
func proposalRef(origin int64, cs []schemas.Contribution) int64 {
	h := fnv.New64a()
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(origin))
	h.Write(b[:])
	for _, c := range cs {
		h.Write([]byte(c.Node))
		binary.BigEndian.PutUint64(b[:], uint64(c.Version))
		h.Write(b[:])
		h.Write([]byte(c.Identifier.Type))
		h.Write([]byte{0})
		h.Write([]byte(c.Identifier.Value))
		h.Write([]byte{0})
	}
	// Never 0: messages without a proposal carry Ref 0.
	return int64(h.Sum64()>>1) | 1
}

func (e *Engine) propose(key string, n *schemas.Node, m *schemas.Message, origin int64, fx *effects) {
	from := m.Other
	_, member := n.Members[from]
	switch {
	case !n.IsRoot():
		fx.sends = append(fx.sends, send{n.Parent, m})
	case from == key:
		// The proposal came back to its sender: both sides were one
		// profile already.
		if n.Pending != "" && m.Ref == n.PendingRef {
			e.settle(key, n, origin, fx)
		}
	case member:
		// A repeated proposal that was accepted before (or the replay of
		// the message that accepted it: the records may have been lost).
		if n.Join(m.Contribs) {
			fx.changed, fx.rootUpdate = true, true
		}
		apart(n, m.Nodes, fx)
		// With the status again: a later message may have written the
		// latest status since (StatusBy), and fan-out settles the
		// merged-away profile's holdings with the facts before the
		// absorbed record.
		fx.absorbed, fx.status = from, true
		fx.sends = append(fx.sends, send{from, &schemas.Message{Kind: schemas.KindAccept, Tenant: n.Tenant, Other: key, Ref: m.Ref}})
	case n.Pending != "":
		deferMsg(n, *m)
		fx.changed = true
	default:
		if typ, count, limit := e.exceeds(n.Contributions(), m.Contribs); typ != "" {
			fx.refusals = append(fx.refusals, schemas.Refusal{Tenant: n.Tenant, From: from, Into: key, Type: typ, Count: count, Limit: limit, Time: e.now().UnixMilli()})
			fx.sends = append(fx.sends, send{from, &schemas.Message{Kind: schemas.KindRefuse, Tenant: n.Tenant, Other: key, Ref: m.Ref, Nodes: nodesOf(key, n)}})
			// The proposer's nodes stay apart from this profile likewise.
			proposer := make([]string, 0, len(m.Contribs))
			for _, c := range m.Contribs {
				proposer = append(proposer, c.Node)
			}
			apart(n, proposer, fx)
			return
		}
		n.Join(m.Contribs)
		// What protection kept apart from the proposer stays apart from
		// the union.
		apart(n, m.Nodes, fx)
		fx.changed, fx.rootUpdate = true, true
		fx.absorbed = from
		fx.sends = append(fx.sends, send{from, &schemas.Message{Kind: schemas.KindAccept, Tenant: n.Tenant, Other: key, Ref: m.Ref}})
	}
}

func (e *Engine) accept(key string, n *schemas.Node, m *schemas.Message, origin int64, fx *effects) {
	into := m.Other
	switch {
	case n.Parent == into:
		// A replay of the accept that merged this root away: repair a
		// lost update and merge record (Message re-sends the lost
		// re-deliveries). A repeated accept (the answer to a re-sent
		// proposal) needs nothing: the first one was handled, or will
		// be again.
		if n.MergedBy == origin {
			fx.sends = append(fx.sends, send{into, &schemas.Message{Kind: schemas.KindUpdate, Tenant: n.Tenant, Contribs: n.Contributions(), Nodes: n.Apart}})
			fx.mergedAway = true
			fx.merges = append(fx.merges, schemas.Merge{Tenant: n.Tenant, From: key, Into: into, Time: e.now().UnixMilli()})
		}
	case !n.IsRoot() || n.Pending == "" || m.Ref != n.PendingRef:
		// Accepted by a root this one is not waiting for: after it
		// merged elsewhere, or an answer to an earlier proposal. That
		// root holds this profile's nodes, so they belong together.
		e.union(key, n, &schemas.Message{Kind: schemas.KindUnion, Tenant: n.Tenant, Other: into}, origin, fx)
	default:
		// The survivor joined the contributions the proposal carried;
		// what changed here since (Dirty) goes in an Update.
		n.Parent, n.MergedBy = into, origin
		fx.changed, fx.mergedAway = true, true
		fx.merges = append(fx.merges, schemas.Merge{Tenant: n.Tenant, From: key, Into: into, Time: e.now().UnixMilli()})
		// With what protection kept apart from this profile: the
		// proposal carried it, but an earlier proposal's answer may have
		// added to it since.
		if n.Dirty || len(n.Apart) > 0 {
			fx.sends = append(fx.sends, send{into, &schemas.Message{Kind: schemas.KindUpdate, Tenant: n.Tenant, Contribs: n.Contributions(), Nodes: n.Apart}})
		}
		e.settle(key, n, origin, fx)
	}
}

// deferMsg keeps m until the pending proposal is answered. One message per
// kind, peer and proposal id is enough (a repeated proposal carries newer
// contributions; a union is a union), so repeats replace instead of
// piling up: the list stays as small as the set of peers. Proposals with
// different ids are both kept: the sender waits for the answer to one of
// them, and only it can tell which.
func deferMsg(n *schemas.Node, m schemas.Message) {
	for i := range n.Deferred {
		if d := &n.Deferred[i]; d.Kind == m.Kind && d.Other == m.Other && d.Ref == m.Ref {
			*d = m
			return
		}
	}
	n.Deferred = append(n.Deferred, m)
}

// settle clears the pending proposal and re-delivers what waited for it to
// the node itself, keeping the re-deliveries until they come back
// (docs/identity.md, "Replays, not repeats").
func (e *Engine) settle(key string, n *schemas.Node, origin int64, fx *effects) {
	n.Pending, n.PendingBy, n.PendingRef = "", 0, 0
	fx.changed = true
	if len(n.Deferred) == 0 {
		return
	}
	redeliver(key, n, origin, n.Deferred, fx)
	n.Deferred = nil
}

// nodesOf are root n's nodes: itself and its members.
func nodesOf(key string, n *schemas.Node) []string {
	return append([]string{key}, schemas.SortedKeys(n.Members)...)
}

// redeliver sends msgs to the node itself as re-deliveries of the message
// of origin, keeping them until they come back.
func redeliver(key string, n *schemas.Node, origin int64, msgs []schemas.Message, fx *effects) {
	// One entry per answer: an answer replayed from a state where it
	// settles again adds to its entry. A message's Seq is derived from
	// what deferMsg keeps one of (kind, peer, proposal id), or for a held
	// event's update from the event, so a late copy of a re-delivery can
	// only drop the same message from the list, whatever the entry went
	// through in between.
	var s *schemas.Settlement
	for i := range n.Redeliveries {
		if r := &n.Redeliveries[i]; r.By == origin {
			s = r
		}
	}
	if s == nil {
		n.Redeliveries = append(n.Redeliveries, schemas.Settlement{By: origin})
		s = &n.Redeliveries[len(n.Redeliveries)-1]
	}
next:
	for _, m := range msgs {
		m.Of, m.Seq = origin, redeliveryID(&m)
		r := m
		fx.sends = append(fx.sends, send{key, &r})
		for j := range s.Messages {
			if s.Messages[j].Seq == m.Seq {
				s.Messages[j] = m
				continue next
			}
		}
		s.Messages = append(s.Messages, m)
	}
}

// redeliveryID identifies a re-delivered message within a settlement: a
// deferred one by what deferMsg keeps one of (kind, peer and proposal id),
// a held event's update by its event and the node that folded it.
func redeliveryID(m *schemas.Message) int {
	h := fnv.New64a()
	h.Write([]byte(m.Kind))
	h.Write([]byte{0})
	h.Write([]byte(m.Other))
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(m.Ref))
	h.Write(b[:])
	if m.Kind == schemas.KindUpdate {
		h.Write([]byte(heldEvent(m)))
		h.Write([]byte{0})
		h.Write([]byte(heldNode(m)))
	}
	return int(h.Sum64()>>1) | 1
}

// exceeds returns the first identifier type whose count in the union of
// both contribution sets is over its limit.
func (e *Engine) exceeds(a, b []schemas.Contribution) (typ string, count, limit int) {
	ids := map[schemas.Identifier]bool{}
	for _, cs := range [][]schemas.Contribution{a, b} {
		for _, c := range cs {
			if c.Identifier.Type != "" {
				ids[c.Identifier] = true
			}
		}
	}
	counts := map[string]int{}
	for id := range ids {
		counts[id.Type]++
	}
	types := schemas.SortedKeys(counts)
	for _, t := range types {
		if l := e.cfg.limit(t); counts[t] > l {
			return t, counts[t], l
		}
	}
	return "", 0, 0
}
