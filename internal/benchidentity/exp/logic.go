package exp

import (
	"errors"
	"fmt"
	"hash/fnv"
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
	msg *Message
}

// effects is what handling one input produces besides the new node value.
type effects struct {
	sends      []send
	merges     []Merge
	refusals   []Refusal
	changed    bool // the node must be written
	applied    bool // an event was folded in
	duplicate  bool // an event was already folded in
	rootUpdate bool // the node is a root whose profile changed
	mergedAway bool // the node stopped being a root
}

// Engine is the pure decision logic of the identity protocol
// (docs/identity.md): given a node and an input it returns the new node and
// the effects. It does no I/O, so tests drive it directly.
type Engine struct {
	V   Variant
	at  int64 // origin of the message being handled (experiment)
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

func eventHash(source, id string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(source))
	h.Write([]byte{0})
	h.Write([]byte(id))
	return h.Sum64()
}

func ensure(key string, n *Node, tenant string, id *schemas.Identifier, fx *effects) *Node {
	if n == nil {
		n = &Node{Tenant: tenant, Own: Contribution{Node: key}}
		fx.changed = true
	}
	if id != nil && n.Identifier.Type == "" {
		n.Identifier = *id
		n.Own.Identifier = *id
		fx.changed = true
		if n.IsRoot() {
			fx.rootUpdate = true
		} else {
			fx.sends = append(fx.sends, send{n.Parent, &Message{Kind: KindUpdate, Tenant: n.Tenant, Contribs: []Contribution{n.Own}}})
		}
	}
	return n
}

// Event handles an event at the node of its primary identifier.
func (e *Engine) Event(key string, n *Node, ev *schemas.Event) (*Node, effects) {
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
		fx.applied, fx.changed = true, true
		if n.IsRoot() {
			fx.rootUpdate = true
		}
	}
	// Re-sent on every delivery: a replay after a crash must repair what
	// the crash lost, and every receiver is idempotent.
	if !n.IsRoot() && (!e.V.LinkMemo || fx.applied || n.ChangedBy == e.at) {
		fx.sends = append(fx.sends, send{n.Parent, &Message{Kind: KindUpdate, Tenant: n.Tenant, Contribs: []Contribution{n.Own}}})
	}
	for _, id := range ev.Identifiers[1:] {
		id := id
		if e.V.LinkMemo {
			nid := schemas.NodeID(ev.Tenant, id)
			if o, ok := n.Linked[nid]; ok && o != e.at {
				continue // sent by another message, whose sends were acknowledged before its commit
			}
			if n.Linked == nil {
				n.Linked = map[string]int64{}
			}
			if n.Linked[nid] != e.at {
				n.Linked[nid] = e.at
				fx.changed = true
			}
		}
		fx.sends = append(fx.sends, send{schemas.NodeID(ev.Tenant, id), &Message{Kind: KindLink, Tenant: ev.Tenant, Identifier: &id, Other: key}})
	}
	return n, fx
}

// Message handles a loopback message at node key.
func (e *Engine) Message(key string, n *Node, m *Message) (*Node, effects) {
	var fx effects
	n = ensure(key, n, m.Tenant, m.Identifier, &fx)
	switch m.Kind {
	case KindLink, KindUnion:
		e.union(key, n, m, &fx)
	case KindPropose:
		e.propose(key, n, m, &fx)
	case KindAccept:
		e.accept(key, n, m.Other, &fx)
	case KindRefuse, KindNoop:
		if n.IsRoot() && n.Pending != "" {
			e.settle(key, n, trigger(m), &fx)
		} else {
			e.resettle(key, n, trigger(m), &fx)
		}
	case KindUpdate:
		if !n.IsRoot() {
			fx.sends = append(fx.sends, send{n.Parent, m})
		} else if n.Join(m.Contribs) {
			fx.changed, fx.rootUpdate = true, true
		}
	}
	return n, fx
}

func (e *Engine) union(key string, n *Node, m *Message, fx *effects) {
	other := m.Other
	switch _, member := n.Members[other]; {
	case !n.IsRoot():
		fx.sends = append(fx.sends, send{n.Parent, &Message{Kind: KindUnion, Tenant: n.Tenant, Other: other}})
	case other == key || member || other == "":
	case other > key:
		// The larger side proposes to the smaller.
		fx.sends = append(fx.sends, send{other, &Message{Kind: KindUnion, Tenant: n.Tenant, Other: key}})
	case n.Pending == other && e.V.ProposeOnReplayOnly && n.PendingBy != e.at:
		// The proposal is in flight; its answer settles this union too.
	case n.Pending == other:
		// A replay of the message that made the proposal: the proposal
		// may have been lost with the crash, so send it again.
		fx.sends = append(fx.sends, send{other, &Message{Kind: KindPropose, Tenant: n.Tenant, Other: key, Contribs: n.Contributions()}})
	case n.Pending != "":
		n.Deferred = append(n.Deferred, Message{Kind: KindUnion, Tenant: n.Tenant, Other: other})
		fx.changed = true
	default:
		n.Pending = other
		n.PendingBy = e.at
		fx.changed = true
		fx.sends = append(fx.sends, send{other, &Message{Kind: KindPropose, Tenant: n.Tenant, Other: key, Contribs: n.Contributions()}})
	}
}

func (e *Engine) propose(key string, n *Node, m *Message, fx *effects) {
	from := m.Other
	_, member := n.Members[from]
	switch {
	case !n.IsRoot():
		fx.sends = append(fx.sends, send{n.Parent, m})
	case from == key:
		// The proposal came back to its sender: both sides were one
		// profile already.
		if n.Pending != "" {
			e.settle(key, n, trigger(m), fx)
		} else {
			e.resettle(key, n, trigger(m), fx)
		}
	case member:
		// A repeated proposal that was accepted before.
		if n.Join(m.Contribs) {
			fx.changed, fx.rootUpdate = true, true
		}
		fx.sends = append(fx.sends, send{from, &Message{Kind: KindAccept, Tenant: n.Tenant, Other: key}})
	case n.Pending != "":
		n.Deferred = append(n.Deferred, *m)
		fx.changed = true
	default:
		if typ, count, limit := e.exceeds(n.Contributions(), m.Contribs); typ != "" {
			fx.refusals = append(fx.refusals, Refusal{Tenant: n.Tenant, From: from, Into: key, Type: typ, Count: count, Limit: limit, Time: e.now().UnixMilli()})
			fx.sends = append(fx.sends, send{from, &Message{Kind: KindRefuse, Tenant: n.Tenant, Other: key}})
			return
		}
		n.Join(m.Contribs)
		fx.changed, fx.rootUpdate = true, true
		fx.merges = append(fx.merges, Merge{Tenant: n.Tenant, From: from, Into: key, Time: e.now().UnixMilli()})
		fx.sends = append(fx.sends, send{from, &Message{Kind: KindAccept, Tenant: n.Tenant, Other: key}})
	}
}

func (e *Engine) accept(key string, n *Node, into string, fx *effects) {
	switch {
	case n.Parent == into:
		// Repeated: repair a lost update and lost re-deliveries.
		fx.sends = append(fx.sends, send{into, &Message{Kind: KindUpdate, Tenant: n.Tenant, Contribs: n.Contributions()}})
		e.resettle(key, n, KindAccept+":"+into, fx)
	case !n.IsRoot():
		// Accepted by another root after this one already merged
		// elsewhere: both hold this profile's nodes, so they belong
		// together.
		fx.sends = append(fx.sends, send{key, &Message{Kind: KindUnion, Tenant: n.Tenant, Other: into}})
	default:
		n.Parent = into
		fx.changed, fx.mergedAway = true, true
		fx.sends = append(fx.sends, send{into, &Message{Kind: KindUpdate, Tenant: n.Tenant, Contribs: n.Contributions()}})
		e.settle(key, n, KindAccept+":"+into, fx)
	}
}

// trigger names the answer that settles a proposal.
func trigger(m *Message) string { return m.Kind + ":" + m.Other }

// settle clears the pending proposal and re-delivers what waited for it.
// It remembers what it re-delivered, for resettle.
func (e *Engine) settle(key string, n *Node, trigger string, fx *effects) {
	n.Pending = ""
	n.Settled = &Settled{Trigger: trigger, Messages: n.Deferred}
	n.Deferred = nil
	e.resettle(key, n, trigger, fx)
	fx.changed = true
}

// resettle re-delivers the messages of the last settlement when trigger is
// a replay of the answer that caused it: the re-deliveries may have been
// lost with a crash.
func (e *Engine) resettle(key string, n *Node, trigger string, fx *effects) {
	if n.Settled == nil || n.Settled.Trigger != trigger {
		return
	}
	for i := range n.Settled.Messages {
		fx.sends = append(fx.sends, send{key, &n.Settled.Messages[i]})
	}
}

// exceeds returns the first identifier type whose count in the union of
// both contribution sets is over its limit.
func (e *Engine) exceeds(a, b []Contribution) (typ string, count, limit int) {
	ids := map[schemas.Identifier]bool{}
	for _, cs := range [][]Contribution{a, b} {
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
	types := SortedKeys(counts)
	for _, t := range types {
		if l := e.cfg.limit(t); counts[t] > l {
			return t, counts[t], l
		}
	}
	return "", 0, 0
}

// Variant selects the experimental changes.
type Variant struct {
	// LinkMemo: a node remembers the identifiers it sent a Link to, and
	// which message sent it; only that message (replayed) sends it again.
	LinkMemo bool
	// ProposeOnReplayOnly: a Union for the pending proposal re-sends the
	// proposal only when it is a replay of the message that made it.
	ProposeOnReplayOnly bool
	// WriteOnChange: the node is written only when it changed, or when the
	// message is a replay of the one that last changed it.
	WriteOnChange bool
	// NodeCache: decoded nodes are cached per partition.
	NodeCache bool
}
