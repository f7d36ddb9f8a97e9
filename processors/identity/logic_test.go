package identity

import (
	"encoding/json"
	"fmt"
	"math/rand"
	"os"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/rolodex/rolodex/reference"
	"github.com/rolodex/rolodex/schemas"
)

// sim runs the protocol in memory: every input is delivered in a random
// order (much weaker than Kafka's per-partition order), some twice.
type sim struct {
	e       *Engine
	nodes   map[string]*schemas.Node
	queue   []simMsg
	rng     *rand.Rand
	dup     int // percent of deliveries repeated
	crash   int // per mille of deliveries that crash
	origins int64
	// replays holds, per key and input topic in order, the inputs to
	// handle again after a crash lost their node writes (step).
	replays map[replayKey][]simMsg
	// phantom holds, for a key whose write a crash lost, the node as the
	// crashed processor's local store still had it: inputs handled
	// before the crash took effect read it, and their writes are lost too.
	phantom map[string]*phantom
	// replaying: the input being handled is the first of its replays
	// (popReplay); a crash that loses its write again keeps it first.
	replaying bool
	trace     func(m simMsg, before, after *schemas.Node, fx effects)
	crashed   func(m simMsg, landed bool)
	out       struct {
		merges   []schemas.Merge
		refusals []schemas.Refusal
		profiles map[string]*schemas.Profile // the latest record per key on rolodex.profiles
		leads    []schemas.RoutingLead       // the records on rolodex.routing.input
		fanout   []fanoutOut                 // the records on rolodex.fanout.input
	}
}

// fanoutOut is a record of rolodex.fanout.input and its key.
type fanoutOut struct {
	key string
	in  *schemas.FanoutInput
}

// phantom is a crashed processor's local store for a key whose write was
// lost, with the input topics whose inputs may still be handled on it: not
// one with replays from an earlier crash pending (the processor would
// handle those first).
type phantom struct {
	node *schemas.Node
	open map[bool]bool // by replayKey.event
}

type replayKey struct {
	key   string
	event bool // rolodex.events, not the loopback
}

type simMsg struct {
	key    string
	ev     *schemas.Event
	msg    *schemas.Message
	origin int64 // the same for a replay of this delivery
}

// push queues a new delivery.
func (s *sim) push(m simMsg) {
	s.origins++
	m.origin = s.origins
	s.queue = append(s.queue, m)
}

func newSim(t *testing.T, cfg Config, seed int64) *sim {
	e, err := NewEngine(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &sim{e: e, nodes: map[string]*schemas.Node{}, rng: rand.New(rand.NewSource(seed)),
		replays: map[replayKey][]simMsg{}, phantom: map[string]*phantom{}}
}

// roundTrip stores nodes and messages the way Kafka does: encoded.
func roundTrip[T any](t *testing.T, v *T) *T {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	out := new(T)
	if err := json.Unmarshal(b, out); err != nil {
		t.Fatal(err)
	}
	return out
}

func (s *sim) run(t *testing.T) {
	steps := 0
	for len(s.queue) > 0 || len(s.replays) > 0 {
		if len(s.replays) == 0 && len(s.phantom) > 0 {
			clear(s.phantom) // nothing is lost: the crashes took effect
		}
		if steps++; steps > 5_000_000 {
			t.Fatal("the protocol does not settle")
		}
		if len(s.queue) == 0 {
			s.replayOne(t)
			continue
		}
		i := s.rng.Intn(len(s.queue))
		m := s.queue[i]
		if p, ok := s.phantom[m.key]; ok {
			if p.open[m.ev != nil] && s.rng.Intn(2) == 0 {
				// Handled before the crash took effect, on the local
				// store that still has the lost write.
				s.queue[i] = s.queue[len(s.queue)-1]
				s.queue = s.queue[:len(s.queue)-1]
				s.stepPhantom(t, m)
				continue
			}
			delete(s.phantom, m.key) // the crash took effect
		}
		if rs := s.replays[replayKey{m.key, m.ev != nil}]; len(rs) > 0 {
			// A lost write's replay comes before every later input of
			// its key from the same topic partition (m stays queued).
			s.popReplay(t, replayKey{m.key, m.ev != nil})
			continue
		}
		switch {
		case s.rng.Intn(100) >= s.dup:
			s.queue[i] = s.queue[len(s.queue)-1]
			s.queue = s.queue[:len(s.queue)-1]
		case s.rng.Intn(2) == 0:
			// Delivered again later as a repeat (a partner's re-send,
			// a sender's replay), not as a replay of this delivery.
			s.queue[i] = s.queue[len(s.queue)-1]
			s.queue = s.queue[:len(s.queue)-1]
			s.push(m)
		}
		// Otherwise it stays queued: a replay of the same delivery.
		s.step(t, m)
	}
}

// replayOne delivers one pending replay (of the smallest key).
func (s *sim) replayOne(t *testing.T) {
	var first replayKey
	found := false
	for k := range s.replays {
		if !found || k.key < first.key || (k.key == first.key && k.event && !first.event) {
			first, found = k, true
		}
	}
	s.popReplay(t, first)
}

// popReplay delivers the first replay of k, after the crash took effect.
func (s *sim) popReplay(t *testing.T, k replayKey) {
	rs := s.replays[k]
	r := rs[0]
	if len(rs) == 1 {
		delete(s.replays, k)
	} else {
		s.replays[k] = rs[1:]
	}
	delete(s.phantom, k.key)
	s.replaying = true
	s.step(t, r)
	s.replaying = false
}

// stepPhantom handles m on the crashed processor before the crash took
// effect: on the local store ahead of the table, any of its sends and
// outputs may land, its write is lost or (after the failed one) lands, and
// it is handled again after the replays of its topic before it.
func (s *sim) stepPhantom(t *testing.T, m simMsg) {
	n, fx := s.handle(t, m, s.phantom[m.key].node)
	if s.crashed != nil {
		s.crashed(m, false)
	}
	s.phantom[m.key].node = n
	if s.rng.Intn(4) == 0 {
		// Its write landed after all (sarama's next producer epoch),
		// carrying the lost writes' effects: the replays now read it.
		s.nodes[m.key] = n
	}
	s.lose(m, n, fx)
	k := replayKey{m.key, m.ev != nil}
	s.replays[k] = append(s.replays[k], m)
}

// lose delivers a random subset of what handling m sent and emitted.
func (s *sim) lose(m simMsg, n *schemas.Node, fx effects) {
	for _, sd := range fx.sends {
		if s.rng.Intn(2) == 0 {
			s.push(simMsg{key: sd.key, msg: sd.msg})
		}
	}
	if s.rng.Intn(2) == 0 {
		s.output(m.key, n, fx)
	}
}

// handle runs the engine on m at node value cur, both through the codec
// as the processor stores and sends them.
func (s *sim) handle(t *testing.T, m simMsg, cur *schemas.Node) (*schemas.Node, effects) {
	if cur != nil {
		cur = roundTrip(t, cur)
	}
	var (
		n  *schemas.Node
		fx effects
	)
	if m.ev != nil {
		n, fx = s.e.Event(m.key, cur, m.ev, m.origin)
	} else {
		n, fx = s.e.Message(m.key, cur, roundTrip(t, m.msg), m.origin)
	}
	if s.trace != nil {
		s.trace(m, cur, n, fx)
	}
	return n, fx
}

// step delivers m.
func (s *sim) step(t *testing.T, m simMsg) {
	n, fx := s.handle(t, m, s.nodes[m.key])
	if s.rng.Intn(1000) < s.crash {
		// A crash mid-callback: the node write may or may not have
		// landed, any of the sends may be lost, and the input is
		// delivered again (its offset was not committed). If the write
		// was lost, every later write of the key was lost too or
		// carries this one's effect (the producer computed it from the
		// local store), and goka delivers a partition's inputs in
		// order: the replay comes before every later input of the key
		// from the same topic (rolodex.events or the loopback), while
		// inputs from the other topic may come first. Until the crash
		// takes effect, later inputs of the key may still be handled
		// on the local store, which has the lost write (stepPhantom).
		// If it landed, later inputs of the key may be handled before
		// the replay.
		landed := s.rng.Intn(2) == 0
		if s.crashed != nil {
			s.crashed(m, landed)
		}
		if landed {
			s.nodes[m.key] = n
		}
		s.lose(m, n, fx)
		if landed {
			s.queue = append(s.queue, m)
		} else {
			k := replayKey{m.key, m.ev != nil}
			s.phantom[m.key] = &phantom{node: n, open: map[bool]bool{
				true:  len(s.replays[replayKey{m.key, true}]) == 0,
				false: len(s.replays[replayKey{m.key, false}]) == 0,
			}}
			if s.replaying {
				// Lost again: still the first of its topic.
				s.replays[k] = append([]simMsg{m}, s.replays[k]...)
			} else {
				s.replays[k] = append(s.replays[k], m)
			}
		}
		return
	}
	s.output(m.key, n, fx)
	if fx.changed {
		s.nodes[m.key] = n
	}
	for _, sd := range fx.sends {
		s.push(simMsg{key: sd.key, msg: sd.msg})
	}
}

// output records what the processor emits to rolodex.merges, .audit and
// .profiles (the last record per key wins, as in the compacted topic).
func (s *sim) output(key string, n *schemas.Node, fx effects) {
	s.out.merges = append(s.out.merges, fx.merges...)
	s.out.refusals = append(s.out.refusals, fx.refusals...)
	if s.out.profiles == nil {
		s.out.profiles = map[string]*schemas.Profile{}
	}
	for _, l := range fx.leads {
		if !n.IsRoot() {
			panic("a lead written by " + key + ", not a root")
		}
		l.Profile = s.fold(key, n)
		s.out.leads = append(s.out.leads, l)
	}
	if len(fx.fanout) > 0 || fx.status || fx.absorbed != "" {
		if !n.IsRoot() {
			panic("a fan-out record written by " + key + ", not a root")
		}
		for _, in := range s.e.fanoutRecords(s.fold(key, n), n, fx) {
			s.out.fanout = append(s.out.fanout, fanoutOut{key, in})
		}
	}
	switch {
	case fx.mergedAway:
		s.out.profiles[key] = &schemas.Profile{ID: key, Tenant: n.Tenant, MergedInto: n.Parent}
	case fx.snapshot:
		s.out.profiles[key] = s.fold(key, n)
	}
}

// checkOutputs checks what a consumer of the outputs sees once the stage
// settled: every root's latest record on rolodex.profiles is its profile,
// every merged node's is {merged_into: parent}, and a merge record exists
// for each merged node.
func (s *sim) checkOutputs(t *testing.T) {
	t.Helper()
	merged := map[string]string{}
	for _, m := range s.out.merges {
		merged[m.From] = m.Into
	}
	for k, n := range s.nodes {
		got, _ := json.Marshal(s.out.profiles[k])
		var want []byte
		if n.IsRoot() {
			want, _ = json.Marshal(s.fold(k, n))
		} else {
			want, _ = json.Marshal(&schemas.Profile{ID: k, Tenant: n.Tenant, MergedInto: n.Parent})
			if merged[k] != n.Parent {
				t.Fatalf("node %s merged into %s, merge records say %q", k, n.Parent, merged[k])
			}
		}
		if string(got) != string(want) {
			t.Fatalf("latest rolodex.profiles record of %s:\n got %s\nwant %s", k, got, want)
		}
	}
}

// checkLeads checks the lead records (docs/routing.md, "How the router
// gets the profile"): every lead event is written at least once, crashes
// and replays included, and each record's profile is a root's profile of
// the lead's own person with the lead folded in.
func (s *sim) checkLeads(t *testing.T, events []*schemas.Event) {
	t.Helper()
	got := map[string][]schemas.RoutingLead{}
	for _, l := range s.out.leads {
		got[l.EventID] = append(got[l.EventID], l)
	}
	leads := 0
	for _, ev := range events {
		if ev.Type != schemas.DefaultLeadType {
			continue
		}
		leads++
		ls := got[ev.ID]
		if len(ls) == 0 {
			t.Fatalf("lead event %s was never written to rolodex.routing.input", ev.ID)
		}
		for _, l := range ls {
			if l.ID != ev.ID || l.Type != ev.Type || l.Time != ev.Time.UnixMilli() || l.Profile == nil {
				t.Fatalf("lead record %+v does not match its event %s", l, ev.ID)
			}
			if s.root(t, l.Profile.ID) != s.root(t, ev.Key()) {
				t.Fatalf("lead %s went out with profile %s, which is not its person's", ev.ID, l.Profile.ID)
			}
			// This event folded in: its time is among the profile's event
			// times of its type (unless newer ones pushed it out).
			times := l.Profile.EventTimes[ev.Type]
			at := ev.Time.UnixMilli()
			if !slices.Contains(times, at) && (len(times) < schemas.EventTimesLimit || times[len(times)-1] < at) {
				t.Fatalf("lead %s went out with a profile that has not folded it: event times %v", ev.ID, times)
			}
			s.checkJoined(t, "lead", ev, l.Profile.Identifiers)
		}
	}
	if leads == 0 {
		t.Fatal("no lead events: the check does not run")
	}
	for id := range got {
		if !slices.ContainsFunc(events, func(e *schemas.Event) bool { return e.ID == id && e.Type == schemas.DefaultLeadType }) {
			t.Fatalf("lead record for event %s, which is not a lead", id)
		}
	}
}

// checkJoined checks that a lead or topic event went out with a profile
// holding every identifier of its event that ended in the same profile
// (docs/identity.md, "Leads and topic events wait for their event's
// links"): not before the merges its event started completed. One that
// merge protection kept apart ends under another root.
func (s *sim) checkJoined(t *testing.T, what string, ev *schemas.Event, ids map[string][]string) {
	t.Helper()
	own := s.root(t, ev.Key())
	for _, id := range ev.Identifiers {
		if !slices.Contains(ids[id.Type], id.Value) && s.root(t, schemas.NodeID(ev.Tenant, id)) == own {
			t.Fatalf("%s %s went out before its identifier %s joined the profile: %v", what, ev.ID, id, ids)
		}
	}
}

// checkFanout checks the records of rolodex.fanout.input (docs/fanout.md,
// "How a topic event gets its profile"), crashes and replays included:
// every topic event is written at least once, keyed by a root of its own
// person, with facts of that profile (its id, tenant, and the event's
// primary identifier folded in); every status record is keyed by its
// profile; and the blacklist and consent every profile settled with are
// in a status record of it (none lost: the fan-out stage sees the last
// change); every merge is told to fan-out by a FanoutAbsorbed naming the
// merged-away root, keyed by a root of the same person.
func (s *sim) checkFanout(t *testing.T, events []*schemas.Event) {
	t.Helper()
	got := map[string][]fanoutOut{}
	status := map[string][]*schemas.FanoutProfile{}
	absorbedFrom := map[string]bool{} // the profiles an absorbed record names
	for _, o := range s.out.fanout {
		switch {
		case o.in.Absorbed != nil && o.in.Event == nil && o.in.Status == nil:
			if from := o.in.Absorbed.From; from == "" || from == o.key || s.root(t, from) != s.root(t, o.key) {
				t.Fatalf("absorbed record keyed %s names %q, not another profile of its person", o.key, from)
			}
			absorbedFrom[o.in.Absorbed.From] = true
		case o.in.Event != nil && o.in.Status == nil:
			got[o.in.Event.EventID] = append(got[o.in.Event.EventID], o)
		case o.in.Status != nil && o.in.Event == nil:
			p := o.in.Status.Profile
			if p == nil || p.ID != o.key {
				t.Fatalf("status record keyed %s with facts %+v", o.key, p)
			}
			status[o.key] = append(status[o.key], p)
		default:
			t.Fatalf("fan-out record %+v is neither an event nor a status", o.in)
		}
	}
	topics := 0
	for _, ev := range events {
		if ev.Topic == "" {
			if len(got[ev.ID]) > 0 {
				t.Fatalf("fan-out record for event %s, which has no topic", ev.ID)
			}
			continue
		}
		topics++
		os := got[ev.ID]
		if len(os) == 0 {
			t.Fatalf("topic event %s was never written to rolodex.fanout.input", ev.ID)
		}
		for _, o := range os {
			f := o.in.Event
			if f.Topic != ev.Topic || f.Tenant != ev.Tenant || f.Publisher != ev.Partner || f.Type != ev.Type ||
				f.Time != ev.Time.UnixMilli() || !reflect.DeepEqual(f.Properties, ev.Properties) || f.Profile == nil {
				t.Fatalf("fan-out record %+v does not match its event %+v", f, ev)
			}
			if f.Profile.ID != o.key || f.Profile.Tenant != ev.Tenant {
				t.Fatalf("topic event %s keyed %s went out with facts of %s/%s", ev.ID, o.key, f.Profile.Tenant, f.Profile.ID)
			}
			if s.root(t, o.key) != s.root(t, ev.Key()) {
				t.Fatalf("topic event %s went out keyed %s, which is not its person's", ev.ID, o.key)
			}
			primary := ev.Identifiers[0]
			if !slices.Contains(f.Profile.Identifiers[primary.Type], primary.Value) {
				t.Fatalf("topic event %s went out with facts that have not folded it: %v", ev.ID, f.Profile.Identifiers)
			}
			s.checkJoined(t, "topic event", ev, f.Profile.Identifiers)
		}
	}
	if topics == 0 {
		t.Fatal("no topic events: the check does not run")
	}
	// Every merge is told: by the root that took the merged-away one in,
	// or, when a crash lost that record and the proposal's replay was
	// deferred until the root had merged on itself, by the root it reached
	// (fan-out then hands the holdings straight to it). Every absorbed
	// record is keyed by a root of the same person (checked above).
	for _, m := range s.out.merges {
		if !absorbedFrom[m.From] {
			t.Fatalf("%s merged into %s; no absorbed record names it", m.From, m.Into)
		}
	}
	if len(s.out.merges) == 0 {
		t.Fatal("no merges: the absorbed check does not run")
	}
	statuses := 0
	for k, n := range s.nodes {
		if !n.IsRoot() {
			continue
		}
		bl, consent := n.FanoutStatus()
		if !bl && len(consent) == 0 {
			continue
		}
		statuses++
		if !slices.ContainsFunc(status[k], func(p *schemas.FanoutProfile) bool {
			return p.Blacklisted == bl && reflect.DeepEqual(p.Consent, consent)
		}) {
			t.Fatalf("profile %s settled with blacklisted %v, consent %v; no status record says so (%d records)", k, bl, consent, len(status[k]))
		}
	}
	if statuses == 0 {
		t.Fatal("no profile with a blacklist or consent: the status check does not run")
	}
}

func (s *sim) root(t *testing.T, key string) string {
	for i := 0; ; i++ {
		n := s.nodes[key]
		if n == nil {
			t.Fatalf("node %s missing", key)
		}
		if n.IsRoot() {
			return key
		}
		if n.Parent >= key {
			t.Fatalf("parent %s of %s is not smaller", n.Parent, key)
		}
		key = n.Parent
	}
}

// fold materializes the profile of root n as the processor's snapshots
// do: with the engine's tag configuration, consent expiry read now, and
// the event times.
func (s *sim) fold(key string, n *schemas.Node) *schemas.Profile {
	return s.e.snapshot(key, n)
}

// profiles folds every root.
func (s *sim) profiles(t *testing.T) map[string]*schemas.Profile {
	out := map[string]*schemas.Profile{}
	for k, n := range s.nodes {
		if n.IsRoot() {
			if n.Pending != "" || len(n.Deferred) > 0 {
				t.Fatalf("root %s settled with a pending proposal", k)
			}
			out[k] = s.fold(k, n)
		}
	}
	return out
}

func compare(t *testing.T, got, want map[string]*schemas.Profile) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%d profiles, want %d", len(got), len(want))
	}
	bad := 0
	for id, w := range want {
		g := got[id]
		if !reflect.DeepEqual(g, w) {
			gj, _ := json.Marshal(g)
			wj, _ := json.Marshal(w)
			t.Errorf("profile %s:\n got %s\nwant %s", id, gj, wj)
			if bad++; bad > 3 {
				t.FailNow()
			}
		}
	}
}

// simSeeds is the number of random streams each simulation runs: 30, 6
// under -short or the race detector (~10x slower), or ROLODEX_SIM_SEEDS.
func simSeeds() int64 {
	seeds := int64(30)
	if testing.Short() || raceEnabled {
		seeds = 6
	}
	if v, err := strconv.ParseInt(os.Getenv("ROLODEX_SIM_SEEDS"), 10, 64); err == nil {
		seeds = v
	}
	return seeds
}

// feed gives the events to the reference and to the simulation, and runs
// the simulation until nothing is left to deliver.
func (s *sim) feed(t *testing.T, ref *reference.Identity, events []*schemas.Event) {
	for _, ev := range events {
		ref.Add(ev)
		s.push(simMsg{key: ev.Key(), ev: ev})
	}
	s.run(t)
}

// The protocol, delivered in random order with duplicates, ends exactly
// where the offline reference does.
func TestProtocolMatchesReference(t *testing.T) {
	seeds := simSeeds()
	cov := map[string]int{}
	cut := 0 // profiles with more events of a type than they keep times of
	for seed := int64(1); seed <= seeds; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewSource(seed))
			events := genEvents(rng, 300+rng.Intn(700), 20+rng.Intn(80))
			if seed%2 == 1 {
				events = addBusy(rng, events)
			}
			ref := reference.NewIdentityWith(reference.Options{Status: statusConfig, EventTimes: true})
			s := newSim(t, Config{DefaultLimit: 1000, Limits: map[string]int{}, Status: statusConfig, LeadTypes: []string{schemas.DefaultLeadType}}, seed)
			s.dup = rng.Intn(20)
			s.crash = rng.Intn(50)
			s.feed(t, ref, events)
			compare(t, s.profiles(t), ref.Profiles())
			s.checkOutputs(t)
			s.checkLeads(t, events)
			s.checkFanout(t, events)
			statusCoverage(ref, events, cov)
			want := ref.Profiles()
			// The latest snapshot of every profile carries the event times
			// of all its events (the latest 100 per type), as the
			// reference collects them.
			for id, w := range want {
				if got := s.out.profiles[id].EventTimes; !reflect.DeepEqual(got, w.EventTimes) {
					t.Fatalf("event times of %s's latest snapshot:\n got %v\nwant %v", id, got, w.EventTimes)
				}
				for _, c := range w.Counters {
					if c > schemas.EventTimesLimit {
						cut++
						break
					}
				}
			}
			// Every node resolves to the root of its reference component.
			for _, n := range ref.Nodes() {
				if r := s.root(t, n); want[r] == nil {
					t.Fatalf("node %s resolves to %s, which is no reference profile", n, r)
				}
			}
		})
	}
	checkStatusCoverage(t, cov)
	t.Logf("%d profiles had more than %d events of a type", cut, schemas.EventTimesLimit)
	if cut == 0 {
		t.Fatalf("no profile had more than %d events of a type: the bound on event times is not exercised", schemas.EventTimesLimit)
	}
}

// checkStatusCoverage fails the test when its random streams did not
// exercise every status rule the reference models.
func checkStatusCoverage(t *testing.T, cov map[string]int) {
	t.Helper()
	t.Logf("status coverage: %v", cov)
	for _, k := range []string{"tag on, default", "tag on, manual", "tag removed", "default tag removed", "exclusive group decided",
		"blacklisted", "consent granted", "consent expired", "consent denied", "consent revoked", "invalid identifier",
		"channel withheld", "writes tied on time", "tag write at the first event time"} {
		if cov[k] == 0 {
			t.Errorf("no profile of the random streams shows %q: the streams do not exercise it", k)
		}
	}
}

func ev(tenant, id string, minute int, ids ...string) *schemas.Event {
	e := &schemas.Event{Tenant: tenant, ID: id, Type: "t", Source: "s", Time: time.Date(2026, 11, 1, 0, minute, 0, 0, time.UTC)}
	for i := 0; i+1 < len(ids); i += 2 {
		e.Identifiers = append(e.Identifiers, schemas.Identifier{Type: ids[i], Value: ids[i+1]})
	}
	schemas.SortIdentifiers(e.Identifiers)
	e.ReceivedAt = e.Time
	return e
}

func TestMergeProtection(t *testing.T) {
	tests := []struct {
		name     string
		limits   map[string]int
		events   []*schemas.Event
		together [][2]string // identifiers (type:value) on one profile
		apart    [][2]string // identifiers on different profiles
		refusals int
	}{
		{
			name:     "second user_id does not link",
			events:   []*schemas.Event{ev("t", "1", 0, "user_id", "u1", "email", "a@x.com"), ev("t", "2", 1, "user_id", "u2", "email", "a@x.com")},
			together: [][2]string{{"user_id:u1", "email:a@x.com"}},
			apart:    [][2]string{{"user_id:u1", "user_id:u2"}},
			refusals: 1,
		},
		{
			name:   "email limit 2",
			limits: map[string]int{"email": 2},
			events: []*schemas.Event{
				ev("t", "1", 0, "phone", "+5511900000001", "email", "a@x.com"),
				ev("t", "2", 1, "phone", "+5511900000001", "email", "b@x.com"),
				ev("t", "3", 2, "phone", "+5511900000001", "email", "c@x.com"),
			},
			together: [][2]string{{"email:a@x.com", "email:b@x.com"}},
			apart:    [][2]string{{"phone:+5511900000001", "email:c@x.com"}},
			refusals: 1,
		},
		{
			name:     "under the limits everything links",
			events:   []*schemas.Event{ev("t", "1", 0, "user_id", "u1", "email", "a@x.com"), ev("t", "2", 1, "email", "a@x.com", "phone", "+5511900000001")},
			together: [][2]string{{"user_id:u1", "phone:+5511900000001"}},
		},
		{
			name:     "tenants never link",
			events:   []*schemas.Event{ev("t1", "1", 0, "email", "a@x.com", "phone", "+5511900000001"), ev("t2", "1", 0, "email", "a@x.com")},
			together: [][2]string{{"email:a@x.com", "phone:+5511900000001"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for seed := int64(0); seed < 5; seed++ {
				s := newSim(t, Config{Limits: tt.limits}, seed)
				for _, e := range tt.events {
					// In order: protection depends on arrival order.
					s.push(simMsg{key: e.Key(), ev: e})
					s.run(t)
				}
				node := func(s string) string {
					for i := range s {
						if s[i] == ':' {
							return schemas.NodeID(tt.events[0].Tenant, schemas.Identifier{Type: s[:i], Value: s[i+1:]})
						}
					}
					return ""
				}
				for _, p := range tt.together {
					if a, b := s.root(t, node(p[0])), s.root(t, node(p[1])); a != b {
						t.Fatalf("%s and %s are on %s and %s, want one profile", p[0], p[1], a, b)
					}
				}
				for _, p := range tt.apart {
					if a, b := s.root(t, node(p[0])), s.root(t, node(p[1])); a == b {
						t.Fatalf("%s and %s share profile %s", p[0], p[1], a)
					}
				}
				if len(s.out.refusals) != tt.refusals {
					t.Fatalf("%d refusals (%+v), want %d", len(s.out.refusals), s.out.refusals, tt.refusals)
				}
				// The event still lands on its primary identifier's profile.
				total := int64(0)
				for _, p := range s.profiles(t) {
					total += p.EventCount
				}
				if total != int64(len(tt.events)) {
					t.Fatalf("%d events on profiles, want %d", total, len(tt.events))
				}
			}
		})
	}
}

func TestDedupeWindow(t *testing.T) {
	e, err := NewEngine(Config{DedupeWindow: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	a := ev("t", "1", 0, "email", "a@x.com")
	key := a.Key()
	n, fx := e.Event(key, nil, a, 1)
	if !fx.applied {
		t.Fatal("first delivery not applied")
	}
	n, fx = e.Event(key, n, a, 2)
	if fx.applied || !fx.duplicate || n.Own.Version != 1 {
		t.Fatalf("a duplicate changed the node: %+v", fx)
	}
	later := ev("t", "2", 0, "email", "a@x.com")
	later.ReceivedAt = a.ReceivedAt.Add(2 * time.Hour)
	n, _ = e.Event(key, n, later, 3)
	again := *a
	again.ReceivedAt = later.ReceivedAt
	n, fx = e.Event(key, n, &again, 4)
	if !fx.applied || n.Own.Version != 3 {
		t.Fatalf("an event past the dedupe window was not counted again: version %d", n.Own.Version)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, c := range []Config{{DefaultLimit: -1}, {Limits: map[string]int{"email": 0}}, {DedupeWindow: -time.Second}} {
		if _, err := NewEngine(c); err == nil {
			t.Errorf("config %+v accepted", c)
		}
	}
}

var _ = sort.Strings

// With tight merge-protection limits the result depends on arrival order,
// so there is no reference partition to compare with; the protocol must
// still end in a state that keeps every invariant of docs/identity.md:
// nothing pending, every node on exactly one profile whose members are
// exactly the nodes that resolve to it, every event counted once, no
// profile over a limit, and no two profiles linked by an event that could
// still merge (a lost union or an unanswered proposal would leave one).
// Crashes, replays and repeats as in TestProtocolMatchesReference; the
// limits make roots settle many refused proposals, with messages deferred
// in between.
func TestProtocolInvariantsUnderProtection(t *testing.T) {
	seeds := simSeeds()
	configs := []Config{
		{Status: statusConfig}, // the defaults: user_id 1, every other type 5
		{DefaultLimit: 2, Limits: map[string]int{"user_id": 1}, Status: statusConfig},
		{DefaultLimit: 1, Limits: map[string]int{"anonymous_id": 3}, Status: statusConfig},
	}
	refusals := 0
	for seed := int64(1); seed <= seeds; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewSource(seed))
			events := genEvents(rng, 300+rng.Intn(700), 10+rng.Intn(40))
			ref := reference.NewIdentityWith(reference.Options{Status: statusConfig, EventTimes: true})
			cfg := configs[rng.Intn(len(configs))]
			cfg.LeadTypes = []string{schemas.DefaultLeadType}
			s := newSim(t, cfg, seed)
			s.dup = rng.Intn(60)
			s.crash = rng.Intn(300)
			s.feed(t, ref, events)
			s.checkInvariants(t, ref, events)
			s.checkOutputs(t)
			// Leads and topic events wait for their event's links, and
			// a refusal ends the wait for the nodes it keeps apart.
			s.checkLeads(t, events)
			s.checkFanout(t, events)
			refusals += len(s.out.refusals)
		})
	}
	t.Logf("%d refusals", refusals)
	if refusals == 0 {
		t.Fatal("no proposal was refused: the test does not exercise protection")
	}
}

// checkInvariants checks the settled state against the invariants that
// hold whatever the arrival order (see TestProtocolInvariantsUnderProtection).
func (s *sim) checkInvariants(t *testing.T, ref *reference.Identity, events []*schemas.Event) {
	t.Helper()
	profiles := s.profiles(t)
	comps := map[string][]string{}
	for _, k := range ref.Nodes() {
		if s.nodes[k] == nil {
			t.Fatalf("node %s missing", k)
		}
	}
	for k := range s.nodes {
		if ref.Root(k) == "" {
			t.Fatalf("node %s of no event", k)
		}
		r := s.root(t, k)
		comps[r] = append(comps[r], k)
	}
	for r, nodes := range comps {
		root := s.nodes[r]
		if len(root.Members) != len(nodes)-1 {
			t.Fatalf("root %s has %d members, %d nodes resolve to it", r, len(root.Members), len(nodes)-1)
		}
		for _, k := range nodes {
			if _, ok := root.Members[k]; !ok && k != r {
				t.Fatalf("node %s resolves to %s, which does not hold it", k, r)
			}
		}
		want, got := ref.Fold(nodes), profiles[r]
		if want.ID != r {
			t.Fatalf("profile %s is not its smallest node %s", r, want.ID)
		}
		if !reflect.DeepEqual(got, want) {
			gj, _ := json.Marshal(got)
			wj, _ := json.Marshal(want)
			t.Fatalf("profile %s:\n got %s\nwant %s", r, gj, wj)
		}
		for typ, vs := range got.Identifiers {
			if len(vs) > s.e.cfg.limit(typ) {
				t.Fatalf("profile %s has %d identifiers of type %s, limit %d", r, len(vs), typ, s.e.cfg.limit(typ))
			}
		}
	}
	for _, ev := range events {
		a := s.root(t, schemas.NodeID(ev.Tenant, ev.Identifiers[0]))
		for _, id := range ev.Identifiers[1:] {
			b := s.root(t, schemas.NodeID(ev.Tenant, id))
			if a == b {
				continue
			}
			if typ, _, _ := s.e.exceeds(s.nodes[a].Contributions(), s.nodes[b].Contributions()); typ == "" {
				t.Fatalf("event %s links profiles %s and %s, which stayed apart though they fit the limits", ev.ID, a, b)
			}
		}
	}
}
