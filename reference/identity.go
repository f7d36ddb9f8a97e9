// Package reference holds the plain offline models that Rolodex's tests
// compare streamed results with: one model per concern, shared by every
// test that needs it (processors/identity, connectors/clickhouse, e2e,
// bench/identity), so that a change of behaviour is modelled once. It is
// test support: only _test.go files import it. It imports nothing of
// Rolodex but schemas, so tests of any room can use it.
package reference

import (
	"encoding/json"
	"sort"
	"time"

	"github.com/rolodex/rolodex/schemas"
)

// Identity is the offline model of identity resolution with merge
// protection off: a union-find over the identifiers of each event (every
// identifier of an event ends in one profile), and a fold of each
// component's deduplicated events into the profile the identity stage must
// show, status included (status.go). A component's root, and its profile's
// id, is its smallest node id.
//
// It is written without the identity stage's types (schemas.Node,
// schemas.Fold), so that comparing with it checks those too.
type Identity struct {
	parent  map[string]string             // node -> parent; a root is its own parent
	members map[string][]string           // root -> every node of its component
	ident   map[string]schemas.Identifier // node -> its identifier
	tenant  map[string]string             // node -> its tenant
	events  map[string][]*schemas.Event   // primary node -> its events, deduplicated
	seen    map[string]bool               // primary node, source and id of every event folded in
	opts    Options
}

// NewIdentity returns an empty model with no tag configuration (no default
// tags, no groups) that reads consent expiry at the time of each fold.
func NewIdentity() *Identity { return NewIdentityWith(Options{}) }

// NewIdentityWith returns an empty model folding status with opts; the
// stage it is compared with must have the same tag configuration
// (identity.Config.Status).
func NewIdentityWith(opts Options) *Identity {
	return &Identity{parent: map[string]string{}, members: map[string][]string{}, ident: map[string]schemas.Identifier{},
		tenant: map[string]string{}, events: map[string][]*schemas.Event{}, seen: map[string]bool{}, opts: opts}
}

// Merge is one root merged away into another.
type Merge struct{ From, Into string }

// Step is what one event changed, as the identity stage applies it: the
// event's new nodes first, then the event itself on its primary (first)
// identifier's node, then the merges.
type Step struct {
	// New are the nodes the event created, in the order of its identifiers.
	New []string
	// Applied is false when the event was folded in already: same primary
	// node, source and id (a partner's re-send or a replay).
	Applied bool
	// Merges are the roots the event merged away, by From, each into the
	// smallest root the event's identifiers had.
	Merges []Merge
	// Changed are the roots whose profile the event changed, sorted.
	Changed []string
}

// Add folds ev in. ev must have at least one identifier.
func (m *Identity) Add(ev *schemas.Event) Step {
	var st Step
	changed := map[string]bool{}
	nodes := make([]string, len(ev.Identifiers))
	for i, id := range ev.Identifiers {
		n := schemas.NodeID(ev.Tenant, id)
		nodes[i] = n
		if _, ok := m.parent[n]; !ok {
			m.parent[n], m.members[n] = n, []string{n}
			m.ident[n], m.tenant[n] = id, ev.Tenant
			st.New = append(st.New, n)
			changed[n] = true
		}
	}
	primary := nodes[0]
	if k := primary + "\x00" + ev.Source + "\x00" + ev.ID; !m.seen[k] {
		m.seen[k] = true
		m.events[primary] = append(m.events[primary], ev)
		st.Applied = true
		changed[primary] = true
	}
	roots := map[string]bool{}
	for _, n := range nodes {
		roots[m.find(n)] = true
	}
	into := ""
	for r := range roots {
		if into == "" || r < into {
			into = r
		}
	}
	for _, from := range schemas.SortedKeys(roots) {
		if from == into {
			continue
		}
		m.parent[from] = into
		m.members[into] = append(m.members[into], m.members[from]...)
		delete(m.members, from)
		st.Merges = append(st.Merges, Merge{From: from, Into: into})
		changed[into] = true
	}
	touched := map[string]bool{}
	for n := range changed {
		touched[m.find(n)] = true
	}
	st.Changed = schemas.SortedKeys(touched)
	return st
}

// find returns the root of node x, compressing the path.
func (m *Identity) find(x string) string {
	root := x
	for m.parent[root] != root {
		root = m.parent[root]
	}
	for x != root {
		next := m.parent[x]
		m.parent[x] = root
		x = next
	}
	return root
}

// Root returns the root of node's component: the id of the profile node
// belongs to, "" when no event carried node.
func (m *Identity) Root(node string) string {
	if _, ok := m.parent[node]; !ok {
		return ""
	}
	return m.find(node)
}

// Nodes returns every node, sorted.
func (m *Identity) Nodes() []string { return schemas.SortedKeys(m.parent) }

// Profile returns the profile of the component whose root is root, nil
// when root is not a root.
func (m *Identity) Profile(root string) *schemas.Profile {
	nodes, ok := m.members[root]
	if !ok {
		return nil
	}
	return m.Fold(nodes)
}

// Profiles returns every profile, keyed by its id.
func (m *Identity) Profiles() map[string]*schemas.Profile {
	out := make(map[string]*schemas.Profile, len(m.members))
	for _, nodes := range m.members {
		p := m.Fold(nodes)
		out[p.ID] = p
	}
	return out
}

// Fold returns the profile of nodes taken as one component, whichever
// component they are in: its id is the smallest node, the others are its
// merged ids, and it holds every identifier of nodes and every event folded
// in on them. Tests of merge protection, where the partition into profiles
// depends on arrival order, fold the nodes the stage put together.
func (m *Identity) Fold(nodes []string) *schemas.Profile {
	nodes = append([]string(nil), nodes...)
	sort.Strings(nodes)
	id := nodes[0]
	p := &schemas.Profile{ID: id, Tenant: m.tenant[id], Identifiers: map[string][]string{}, Traits: map[string]json.RawMessage{},
		Counters: map[string]int64{}, MergedIDs: append([]string{}, nodes[1:]...)}
	var recent []schemas.Activity
	traits := map[string]schemas.Trait{}
	var first, last int64
	var evs []*schemas.Event
	for _, n := range nodes {
		ident := m.ident[n]
		p.Identifiers[ident.Type] = append(p.Identifiers[ident.Type], ident.Value)
		evs = append(evs, m.events[n]...)
		for _, ev := range m.events[n] {
			t := ev.Time.UnixMilli()
			if p.EventCount == 0 || t < first {
				first = t
			}
			if p.EventCount == 0 || t > last {
				last = t
			}
			p.EventCount++
			p.Counters[ev.Type]++
			for k, v := range ev.Traits {
				nt := schemas.Trait{Value: v, Time: t, Source: ev.Source, Event: ev.ID}
				if old, ok := traits[k]; !ok || nt.Newer(old) {
					traits[k] = nt
				}
			}
			recent = append(recent, schemas.Activity{ID: ev.ID, Type: ev.Type, Source: ev.Source, Time: t})
		}
	}
	for _, vs := range p.Identifiers {
		sort.Strings(vs)
	}
	for k, t := range traits {
		p.Traits[k] = json.RawMessage(t.Value)
	}
	sort.Slice(recent, func(i, j int) bool { return recent[i].After(recent[j]) })
	if len(recent) > schemas.RecentLimit {
		recent = recent[:schemas.RecentLimit]
	}
	p.Recent = schemas.RecentEvents(recent)
	if p.EventCount > 0 {
		p.FirstSeen = time.UnixMilli(first).UTC().Format(time.RFC3339Nano)
		p.LastSeen = time.UnixMilli(last).UTC().Format(time.RFC3339Nano)
	}
	m.foldStatus(p, evs, first)
	if m.opts.EventTimes {
		p.EventTimes = EventTimes(evs)
	}
	return p
}
