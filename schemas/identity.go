package schemas

// The state of the identity stage (docs/identity.md): the value of its
// table, its loopback messages and the records it emits. Views read the
// table, so the types live here, with the contract.

import (
	"encoding/json"
	"slices"
	"sort"
	"time"
)

// RecentLimit is how many recent events a profile keeps.
const RecentLimit = 20

// EventTimesLimit is how many of its latest event times per event type a
// node and a profile keep, for rule conditions' events() and last()
// (docs/tags.md, "Memory bound").
const EventTimesLimit = 100

// Trait is one trait value with what decides last-write-wins: the event time,
// then source, event id and value, so the winner never depends on arrival
// order.
type Trait struct {
	Value  string `json:"v"`
	Time   int64  `json:"t"`
	Source string `json:"s"`
	Event  string `json:"e"`
}

func (a Trait) Newer(b Trait) bool {
	if a.Time != b.Time {
		return a.Time > b.Time
	}
	if a.Source != b.Source {
		return a.Source > b.Source
	}
	if a.Event != b.Event {
		return a.Event > b.Event
	}
	return a.Value > b.Value
}

// Activity is one recent event.
type Activity struct {
	ID     string `json:"id"`
	Type   string `json:"type"`
	Source string `json:"source"`
	Time   int64  `json:"time"`
}

func (a Activity) After(b Activity) bool {
	if a.Time != b.Time {
		return a.Time > b.Time
	}
	if a.Source != b.Source {
		return a.Source > b.Source
	}
	return a.ID > b.ID
}

// RecentEvent is one of a profile's latest events, as the API shows it.
type RecentEvent struct {
	ID     string `json:"id"`
	Type   string `json:"type"`
	Source string `json:"source"`
	Time   string `json:"time"`
}

// RecentEvents renders activities for the API, times in RFC 3339 UTC.
func RecentEvents(as []Activity) []RecentEvent {
	out := make([]RecentEvent, len(as))
	for i, a := range as {
		out[i] = RecentEvent{ID: a.ID, Type: a.Type, Source: a.Source, Time: time.UnixMilli(a.Time).UTC().Format(time.RFC3339Nano)}
	}
	return out
}

// Contribution is what the events of one node (the events whose primary
// identifier is that node) add to its profile. Version counts the events
// folded in; of two copies of one node's contribution the higher version is
// the newer.
type Contribution struct {
	Node       string           `json:"n"`
	Identifier Identifier       `json:"i"`
	Version    int64            `json:"ver,omitempty"`
	Counters   map[string]int64 `json:"c,omitempty"`
	Traits     map[string]Trait `json:"t,omitempty"`
	FirstSeen  int64            `json:"f,omitempty"`
	LastSeen   int64            `json:"l,omitempty"`
	Recent     []Activity       `json:"r,omitempty"`
	// Times holds, per event type, the latest EventTimesLimit event times
	// (Unix ms), newest first; equal times repeat. It stays nil while
	// Recent holds every event of the contribution (RecentLimit or
	// fewer): the times are Recent's then, and the node's value, which
	// every message of the identity stage reads and writes, does not
	// carry them twice. EventTimes gives them either way.
	Times map[string][]int64 `json:"et,omitempty"`
	// Status (docs/profile-status.md): per tag, the blacklist, per
	// consent purpose and per identifier ("type:value"), the latest write.
	Tags      map[string]TagMark     `json:"tg,omitempty"`
	Blacklist *FlagMark              `json:"bl,omitempty"`
	Consent   map[string]ConsentMark `json:"cn,omitempty"`
	Invalid   map[string]FlagMark    `json:"iv,omitempty"`
}

// Add folds one event to the contribution.
func (c *Contribution) Add(ev *Event) {
	t := ev.Time.UnixMilli()
	c.Version++
	if c.Counters == nil {
		c.Counters = map[string]int64{}
	}
	c.Counters[ev.Type]++
	if c.Version == 1 || t < c.FirstSeen {
		c.FirstSeen = t
	}
	if c.Version == 1 || t > c.LastSeen {
		c.LastSeen = t
	}
	for k, v := range ev.Traits {
		nt := Trait{Value: v, Time: t, Source: ev.Source, Event: ev.ID}
		if old, ok := c.Traits[k]; !ok || nt.Newer(old) {
			if c.Traits == nil {
				c.Traits = map[string]Trait{}
			}
			c.Traits[k] = nt
		}
	}
	if c.Times == nil && len(c.Recent) >= RecentLimit {
		c.Times = c.EventTimes() // Recent is about to drop its oldest event
	}
	c.Recent = AddRecent(c.Recent, Activity{ID: ev.ID, Type: ev.Type, Source: ev.Source, Time: t})
	if c.Times != nil {
		c.Times[ev.Type] = AddTime(c.Times[ev.Type], t)
	}
	if IsStatusEvent(ev.Type) {
		c.addStatus(ev)
	}
}

// EventTimes returns, per event type, the contribution's latest
// EventTimesLimit event times, newest first: Times, or while it is nil
// the times of Recent (sorted by time, newest first). The caller must not
// change them.
func (c *Contribution) EventTimes() map[string][]int64 {
	if c.Times != nil || len(c.Recent) == 0 {
		return c.Times
	}
	out := make(map[string][]int64, 4)
	for _, a := range c.Recent {
		out[a.Type] = append(out[a.Type], a.Time)
	}
	return out
}

// foldTimes returns, per event type, the latest EventTimesLimit event
// times of the contributions' events together, newest first; nil when
// they have none. The latest k of a union are among each part's latest k,
// so each type's list is its parts' lists merged and cut (MergeTimes),
// here in one array for the whole profile: a snapshot is folded after
// most events, so it allocates twice, not per type and part. Each list is
// capped at its length: appending to one copies it.
func foldTimes(cs []Contribution) map[string][]int64 {
	total := 0
	var small [8]string
	types := small[:0]
	for i := range cs {
		c := &cs[i]
		if c.Version == 0 {
			continue
		}
		if c.Times != nil {
			for typ, ts := range c.Times {
				total += len(ts)
				if !slices.Contains(types, typ) {
					types = append(types, typ)
				}
			}
			continue
		}
		total += len(c.Recent)
		for _, a := range c.Recent {
			if !slices.Contains(types, a.Type) {
				types = append(types, a.Type)
			}
		}
	}
	if total == 0 {
		return nil
	}
	out := make(map[string][]int64, len(types))
	all := make([]int64, 0, min(total, len(types)*EventTimesLimit))
	var recent [RecentLimit]int64
	var merged [EventTimesLimit]int64
	for _, typ := range types {
		start := len(all)
		for i := range cs {
			c := &cs[i]
			var part []int64 // newest first
			switch {
			case c.Version == 0:
				continue
			case c.Times != nil:
				part = c.Times[typ]
			default: // Recent holds every event of c, newest first
				part = recent[:0]
				for _, a := range c.Recent {
					if a.Type == typ {
						part = append(part, a.Time)
					}
				}
			}
			if len(all) == start {
				all = append(all, part[:min(len(part), EventTimesLimit)]...)
				continue
			}
			m := mergeTimesInto(merged[:0], all[start:], part)
			all = append(all[:start], m...)
		}
		if n := len(all) - start; n > 0 {
			out[typ] = all[start : start+n : start+n]
		}
	}
	return out
}

// mergeTimesInto appends to out (empty, with room for EventTimesLimit)
// the latest EventTimesLimit of a and b together, both newest first.
func mergeTimesInto(out, a, b []int64) []int64 {
	for len(out) < EventTimesLimit && (len(a) > 0 || len(b) > 0) {
		if len(b) == 0 || len(a) > 0 && a[0] >= b[0] {
			out, a = append(out, a[0]), a[1:]
		} else {
			out, b = append(out, b[0]), b[1:]
		}
	}
	return out
}

// AddTime inserts t into l (newest first), keeping the latest
// EventTimesLimit.
func AddTime(l []int64, t int64) []int64 {
	i := sort.Search(len(l), func(i int) bool { return l[i] < t })
	if i >= EventTimesLimit {
		return l
	}
	if len(l) < EventTimesLimit {
		l = append(l, 0)
	}
	copy(l[i+1:], l[i:])
	l[i] = t
	return l
}

// MergeTimes returns the latest EventTimesLimit of a and b together
// (both newest first), newest first: the latest k of a union are among
// each part's latest k.
func MergeTimes(a, b []int64) []int64 {
	return mergeTimesInto(make([]int64, 0, min(len(a)+len(b), EventTimesLimit)), a, b)
}

func AddRecent(l []Activity, a ...Activity) []Activity {
	l = append(l, a...)
	sort.Slice(l, func(i, j int) bool { return l[i].After(l[j]) })
	out := l[:0]
	for i, x := range l {
		if i > 0 && x == out[len(out)-1] {
			continue
		}
		out = append(out, x)
		if len(out) == RecentLimit {
			break
		}
	}
	return out
}

// Node is the value of the identity table, keyed by node id.
type Node struct {
	Tenant     string                  `json:"tn"`
	Identifier Identifier              `json:"id"`
	Parent     string                  `json:"p,omitempty"`
	Own        Contribution            `json:"o"`
	Seen       map[uint64]int64        `json:"s,omitempty"`
	Members    map[string]Contribution `json:"m,omitempty"`
	Pending    string                  `json:"pd,omitempty"`
	Deferred   []Message               `json:"df,omitempty"`
	// The origins (docs/identity.md, "Replays, not repeats") of the
	// messages that made an effect, so that only a replay of that message
	// repeats it: PendingBy made Pending, AppliedBy folded the latest
	// event into Own, Linked[i] first sent Link to node i.
	PendingBy int64 `json:"pb,omitempty"`
	// PendingRef is the id of the pending proposal (Message.Ref): a digest
	// of PendingBy and the contributions it carried (node, version,
	// identifier), so that a proposal made again from a state a crash
	// lost, with other contents, has another id.
	PendingRef int64            `json:"pr,omitempty"`
	AppliedBy  int64            `json:"ab,omitempty"`
	Linked     map[string]int64 `json:"lk,omitempty"`
	// SnapshotDue: the root changed while its proposal was in flight and
	// owes rolodex.profiles a snapshot unless it merges away; SnapshotBy
	// is the origin of the message that emitted the latest snapshot (a
	// replay of it emits it again). Dirty: the root's contributions
	// changed since its last proposal.
	SnapshotDue bool  `json:"sd,omitempty"`
	SnapshotBy  int64 `json:"sb,omitempty"`
	Dirty       bool  `json:"dt,omitempty"`
	// StatusDigest is FanoutStatusDigest of the blacklist and consent the
	// root last wrote to rolodex.fanout.input; StatusBy the origin of the
	// message that wrote it (a replay of it writes it again).
	StatusDigest uint64 `json:"fd,omitempty"`
	StatusBy     int64  `json:"fb,omitempty"`
	// MergedBy is the origin of the accept that merged the node away: a
	// replay of it repeats the Update and the merge record.
	MergedBy int64 `json:"mb,omitempty"`
	// Redeliveries are the settlements of this root's proposals whose
	// re-delivered deferred messages have not all come back yet: a
	// replay of the settling answer sends the rest again.
	Redeliveries []Settlement `json:"rd,omitempty"`
	// Held are the leads and topic events of events that link this root's
	// profile to nodes it does not hold yet: they wait until those nodes
	// joined it, or a refusal kept them apart, so that they go out with
	// the whole person's profile (a blacklist, consent) and not with the
	// part the event landed on (docs/identity.md, "Leads and topic events
	// wait for their event's links").
	Held []Held `json:"hd,omitempty"`
	// Apart: roots only, the nodes of profiles merge protection kept
	// apart from this one (it refused their proposal, or they refused its
	// own, or a profile it absorbed was told so), which a held event does
	// not wait for: limits only grow with a profile, so a refused pair
	// stays apart. ApartFull ("*") last: more were refused than Apart
	// keeps (ApartLimit), and held events no longer wait at this profile.
	Apart []string `json:"ap,omitempty"`
}

// ApartLimit is how many nodes a root keeps in Apart; ApartFull marks a
// list that reached it.
const (
	ApartLimit = 1024
	ApartFull  = "*"
)

// HeldEvent names an event among a root's held ones: its source and id,
// as the dedupe does (two sources may use the same id).
func HeldEvent(source, id string) string { return source + "\x00" + id }

// Held is what one event's leads and topic events wait for.
type Held struct {
	Event  string        `json:"e"` // the event: its source and id (HeldEvent)
	Node   string        `json:"n"` // the node the event was folded into
	Wait   []Identifier  `json:"w"` // identifiers not in the profile yet
	Leads  []RoutingLead `json:"ld,omitempty"`
	Fanout []FanoutEvent `json:"fo,omitempty"`
}

// Settlement is what one answer to a root's proposal re-delivered.
type Settlement struct {
	By       int64     `json:"by"` // origin of the answer
	Messages []Message `json:"m"`  // those not back yet; each has Of == By
}

// IsRoot reports whether the node is a profile's root.
func (n *Node) IsRoot() bool { return n.Parent == "" }

// Contributions returns the node's own contribution and, for a root, those
// of every member.
func (n *Node) Contributions() []Contribution {
	out := make([]Contribution, 0, 1+len(n.Members))
	out = append(out, n.Own)
	for _, k := range SortedKeys(n.Members) {
		out = append(out, n.Members[k])
	}
	return out
}

// Join merges contributions into the root's members, keeping per node the
// higher version. It returns whether anything changed.
func (n *Node) Join(cs []Contribution) bool {
	changed := false
	for _, c := range cs {
		if c.Node == n.Own.Node {
			continue // a node's own contribution is authoritative where it lives
		}
		old, ok := n.Members[c.Node]
		newer := c.Version > old.Version || (c.Version == old.Version && old.Identifier.Type == "" && c.Identifier.Type != "")
		if ok && !newer {
			continue
		}
		if n.Members == nil {
			n.Members = map[string]Contribution{}
		}
		n.Members[c.Node] = c
		changed = true
	}
	return changed
}

// SortedKeys returns the keys of m, sorted.
func SortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// Message is what the identity group sends itself through its loopback.
type Message struct {
	Kind   string `json:"k"`
	Tenant string `json:"tn"`
	// Identifier is the target node's identifier (link).
	Identifier *Identifier `json:"id,omitempty"`
	// Other is the node to unite with (link, union), the proposer
	// (propose) or the accepting root (accept).
	Other    string         `json:"o,omitempty"`
	Contribs []Contribution `json:"c,omitempty"`
	// Ref is the id of a proposal (Node.PendingRef), carried by the
	// proposal and its answers.
	Ref int64 `json:"r,omitempty"`
	// Of and Seq mark a deferred message re-delivered by a settlement:
	// the settling answer's origin and the message's id in it.
	Of  int64 `json:"of,omitempty"`
	Seq int   `json:"sq,omitempty"`
	// Leads ride an update to the root, which writes each with its
	// profile to rolodex.routing.input (docs/routing.md).
	Leads []RoutingLead `json:"ld,omitempty"`
	// Fanout: topic events ride an update to the root too, which writes
	// each with its profile's facts to rolodex.fanout.input
	// (docs/fanout.md).
	Fanout []FanoutEvent `json:"fo,omitempty"`
	// Wait: the event's other identifiers, which the root holds Leads
	// and Fanout for until they joined its profile, and Event the event
	// (HeldEvent) (an update). Nodes: the refusing root's nodes (a
	// refuse), which will not join the proposer's profile; the
	// proposer's Apart (a propose, and the update a merged-away root
	// sends the survivor), which the survivor keeps.
	Wait  []Identifier `json:"wt,omitempty"`
	Event string       `json:"ev,omitempty"`
	Nodes []string     `json:"nd,omitempty"`
}

// Message kinds.
const (
	KindLink    = "link"
	KindUnion   = "union"
	KindPropose = "propose"
	KindAccept  = "accept"
	KindRefuse  = "refuse"
	KindUpdate  = "update"
)

// Merge is a record on TopicMerges.
type Merge struct {
	Tenant string `json:"tenant"`
	From   string `json:"from"`
	Into   string `json:"into"`
	Time   int64  `json:"time"`
}

// Refusal is a record on TopicAudit: a link merge protection refused.
type Refusal struct {
	Tenant string `json:"tenant"`
	From   string `json:"from"`
	Into   string `json:"into"`
	Type   string `json:"type"`
	Count  int    `json:"count"`
	Limit  int    `json:"limit"`
	Time   int64  `json:"time"`
}

// Profile is a materialized profile: the contract of the query API
// (docs/api.md) and of TopicProfiles.
type Profile struct {
	ID          string                     `json:"id"`
	Tenant      string                     `json:"tenant"`
	Identifiers map[string][]string        `json:"identifiers"`
	Traits      map[string]json.RawMessage `json:"traits"`
	FirstSeen   string                     `json:"first_seen,omitempty"`
	LastSeen    string                     `json:"last_seen,omitempty"`
	EventCount  int64                      `json:"event_count"`
	Counters    map[string]int64           `json:"counters"`
	MergedIDs   []string                   `json:"merged_ids"`
	Recent      []RecentEvent              `json:"recent"`
	// EventTimes holds, per event type, the profile's latest
	// EventTimesLimit event times (Unix ms), newest first: on the
	// snapshots of rolodex.profiles (FoldOptions.EventTimes), for the tag
	// stage's rules; the API leaves them out.
	EventTimes map[string][]int64 `json:"event_times,omitempty"`
	// Status (docs/profile-status.md). RemovedTags are the tags the
	// profile had a write of that are off: what removed each and since
	// when (the tag stage needs the time of a removal).
	Tags               []ProfileTag            `json:"tags"`
	RemovedTags        []ProfileTag            `json:"removed_tags,omitempty"`
	Blacklisted        bool                    `json:"blacklisted"`
	Blacklist          *BlacklistState         `json:"blacklist,omitempty"`
	Consent            map[string]ConsentState `json:"consent"`
	InvalidIdentifiers []InvalidIdentifier     `json:"invalid_identifiers"`
	// Channels maps each channel the profile can be reached on (email,
	// sms, whatsapp, facebook) to its valid identifier values.
	Channels map[string][]string `json:"channels"`
	// MergedInto is set (and nothing else but ID and Tenant) on
	// TopicProfiles when a root merged away.
	MergedInto string `json:"merged_into,omitempty"`
}

// Fold materializes the profile of a root node with no status config
// (no default tags or groups) at the current time.
func Fold(key string, n *Node) *Profile { return FoldWith(key, n, &FoldOptions{}) }

// FoldWith materializes the profile of a root node.
func FoldWith(key string, n *Node, opts *FoldOptions) *Profile {
	p := &Profile{ID: key, Tenant: n.Tenant, Identifiers: map[string][]string{}, Traits: map[string]json.RawMessage{},
		Counters: map[string]int64{}, MergedIDs: []string{}}
	traits := map[string]Trait{}
	var recent []Activity
	var first, last int64
	seen := false
	var st status
	cs := n.Contributions()
	for _, c := range cs {
		if c.Identifier.Type != "" {
			p.Identifiers[c.Identifier.Type] = append(p.Identifiers[c.Identifier.Type], c.Identifier.Value)
		}
		if c.Node != key {
			p.MergedIDs = append(p.MergedIDs, c.Node)
		}
		if c.Version == 0 {
			continue
		}
		p.EventCount += c.Version
		for t, v := range c.Counters {
			p.Counters[t] += v
		}
		for k, t := range c.Traits {
			if old, ok := traits[k]; !ok || t.Newer(old) {
				traits[k] = t
			}
		}
		if !seen || c.FirstSeen < first {
			first = c.FirstSeen
		}
		if !seen || c.LastSeen > last {
			last = c.LastSeen
		}
		seen = true
		recent = AddRecent(recent, c.Recent...)
		st.join(&c)
	}
	if opts.EventTimes {
		p.EventTimes = foldTimes(cs)
	}
	for _, vs := range p.Identifiers {
		sort.Strings(vs)
	}
	sort.Strings(p.MergedIDs)
	p.Recent = RecentEvents(recent)
	for k, t := range traits {
		p.Traits[k] = json.RawMessage(t.Value)
	}
	if seen {
		p.FirstSeen = time.UnixMilli(first).UTC().Format(time.RFC3339Nano)
		p.LastSeen = time.UnixMilli(last).UTC().Format(time.RFC3339Nano)
	}
	foldStatus(p, &st, first, seen, opts)
	return p
}
