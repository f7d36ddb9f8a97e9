package fanout

import (
	"encoding/json"
	"fmt"
	"maps"
	"math/rand"
	"slices"
	"strings"
	"testing"

	"github.com/rolodex/rolodex/reference"
	"github.com/rolodex/rolodex/schemas"
)

// dirKey stands for the partition's DirectoryKey in the simulation.
const dirKey = "~directory/0/0"

// Two tenants; t2 has a topic of the same name as t1's (another topic).
var (
	propTopics = []schemas.Topic{
		{Tenant: "t1", Name: "cars", Owner: "dealer", IncludeProfile: []string{"traits.name", "identifiers.email"}},
		{Tenant: "t1", Name: "loans", Owner: "bank", RequiresConsent: "offers", IncludeProfile: []string{"traits", "tags"}},
		{Tenant: "t1", Name: "quotes", Owner: "dealer", RequiresConsent: "quotes", IncludeProfile: []string{"identifiers"}},
		{Tenant: "t2", Name: "cars", Owner: "shop", RequiresConsent: "offers"},
	}
	propPartners = map[string][]string{"t1": {"dealer", "bank", "insurer", "broker"}, "t2": {"shop", "lender"}}
	propSubs     = []schemas.Subscription{
		{ID: "s1", Tenant: "t1", Partner: "bank", Topic: "cars"},
		{ID: "s2", Tenant: "t1", Partner: "insurer", Topic: "cars", Kafka: true},
		{ID: "s3", Tenant: "t1", Partner: "insurer", Topic: "loans"},
		{ID: "s4", Tenant: "t1", Partner: "broker", Topic: "loans", Kafka: true},
		{ID: "s5", Tenant: "t1", Partner: "dealer", Topic: "quotes"},
		{ID: "s6", Tenant: "t1", Partner: "broker", Topic: "quotes"},
		{ID: "s7", Tenant: "t2", Partner: "lender", Topic: "cars"}, // t2's cars, also sees t1's cars events by name
		{ID: "s8", Tenant: "t2", Partner: "shop", Topic: "cars", Kafka: true},
		{ID: "s9", Tenant: "t1", Partner: "bank", Topic: "quotes"},
	}
	propProfiles = map[string]string{"p1": "t1", "p2": "t1", "p3": "t1", "p4": "t1", "p5": "t2", "p6": "t2"}
)

type propMsg struct {
	key string // a profile id, or dirKey
	ref reference.FanoutMessage
}

// genFanout makes a partition's logical sequence: directory changes
// (access lists changing, topics deleted and made again, subscriptions
// disabled, deleted, made again; some older versions), topic events (some
// from a publisher that is not the owner, some ids again with newer
// facts), status changes (blacklist, consent granted, denied, revoked,
// expiring) and replays; with merges, profiles merging into others as
// identity reports them (the survivor's status with the merged facts,
// then its FanoutAbsorbed; the merged-away root may still write a few
// records of its own, as a root whose proposal is pending does).
func genFanout(rnd *rand.Rand, n int, merges bool) []propMsg {
	var out []propMsg
	clock := t0
	topicV := map[string]int64{}
	subV := map[string]int64{}
	facts := map[string]*schemas.FanoutProfile{}
	var events []schemas.FanoutEvent // every event sent, for duplicates and replays
	for _, p := range slices.Sorted(maps.Keys(propProfiles)) {
		facts[p] = &schemas.FanoutProfile{ID: p, Tenant: propProfiles[p],
			Traits:      map[string]string{"name": fmt.Sprintf(`"%s & <co>"`, p), "tier": `"gold"`, "bad": `not json`},
			Identifiers: map[string][]string{"email": {p + "@example.com"}, "phone": {}}, Tags: []string{"t-" + p},
			Consent: map[string]schemas.FanoutConsent{}}
		if p != "p3" {
			facts[p].Consent["offers"] = schemas.FanoutConsent{Status: schemas.ConsentGranted, Since: t0 - 1}
		}
		if p == "p1" || p == "p2" {
			facts[p].Consent["quotes"] = schemas.FanoutConsent{Status: schemas.ConsentGranted, Since: t0 - 1}
		}
	}
	dir := func(in schemas.FanoutInput) {
		out = append(out, propMsg{key: dirKey, ref: reference.FanoutMessage{At: clock, Input: in}})
	}
	topicRecord := func(i int) schemas.FanoutInput {
		t := propTopics[i]
		k := t.Key()
		topicV[k]++
		v := topicV[k]
		if rnd.Intn(8) == 0 && v > 2 {
			v -= 2 // an older write: changes nothing
		}
		for _, p := range propPartners[t.Tenant] {
			if rnd.Intn(3) > 0 {
				t.Allowed = append(t.Allowed, p)
			}
		}
		if rnd.Intn(6) == 0 {
			t.Allowed = append(t.Allowed, "lender") // another tenant's partner name on the list
		}
		return schemas.FanoutInput{Topic: &schemas.TopicRecord{Topic: t, Version: v, Deleted: rnd.Intn(10) == 0}}
	}
	subRecord := func(i int) schemas.FanoutInput {
		s := propSubs[i]
		subV[s.ID]++
		s.Status = []string{schemas.SubscriptionActive, schemas.SubscriptionActive, schemas.SubscriptionActive,
			schemas.SubscriptionDisabled, schemas.SubscriptionDeleted}[rnd.Intn(5)]
		if !s.Kafka {
			s.Webhook = &schemas.SubscriptionHook{URL: "https://" + s.Partner + ".example/hook"}
		}
		return schemas.FanoutInput{Subscription: &schemas.SubscriptionRecord{Subscription: s, Version: subV[s.ID], Secret: "whsec_eA=="}}
	}
	for i := range propTopics {
		dir(topicRecord(i))
	}
	for i := range propSubs {
		dir(subRecord(i))
	}
	profiles := slices.Sorted(maps.Keys(propProfiles))
	into := map[string]string{} // a merged-away profile → its survivor
	pending := map[string]int{} // records a merged-away root may still write
	root := func(p string) string {
		for into[p] != "" {
			p = into[p]
		}
		return p
	}
	for len(out) < n {
		clock += int64(rnd.Intn(60_000))
		p := profiles[rnd.Intn(len(profiles))]
		if merges && rnd.Intn(30) == 0 {
			// p's profile merges into another of its tenant.
			a, b := root(p), root(profiles[rnd.Intn(len(profiles))])
			if a == b || propProfiles[a] != propProfiles[b] {
				continue
			}
			f := clone(facts[b])
			for purpose, c := range facts[a].Consent {
				if old, ok := f.Consent[purpose]; !ok || c.Since > old.Since {
					f.Consent[purpose] = c
				}
			}
			f.Blacklisted = f.Blacklisted || facts[a].Blacklisted
			changed := string(enc(nil, f.Consent)) != string(enc(nil, facts[b].Consent)) || f.Blacklisted != facts[b].Blacklisted
			facts[b] = f
			if changed {
				out = append(out, propMsg{key: b, ref: reference.FanoutMessage{Profile: b, At: clock,
					Input: schemas.FanoutInput{Status: &schemas.FanoutStatus{Profile: clone(f)}}}})
			}
			out = append(out, propMsg{key: b, ref: reference.FanoutMessage{Profile: b, At: clock,
				Input: schemas.FanoutInput{Absorbed: &schemas.FanoutAbsorbed{From: a}}}})
			into[a], pending[a] = b, rnd.Intn(4)
			continue
		}
		if r := root(p); r != p {
			if pending[p] > 0 {
				pending[p]-- // a record of p's own, from before it merged
			} else {
				p = r
			}
		}
		switch k := rnd.Intn(100); {
		case k < 6:
			dir(topicRecord(rnd.Intn(len(propTopics))))
		case k < 11:
			dir(subRecord(rnd.Intn(len(propSubs))))
		case k < 30:
			// A status change: blacklist, or consent of a purpose.
			f := clone(facts[p])
			if rnd.Intn(4) == 0 {
				f.Blacklisted = !f.Blacklisted
			} else {
				purpose := []string{"offers", "quotes"}[rnd.Intn(2)]
				c := schemas.FanoutConsent{Status: []string{schemas.ConsentGranted, schemas.ConsentGranted,
					schemas.ConsentRevoked, schemas.ConsentDenied}[rnd.Intn(4)], Since: clock}
				if c.Status == schemas.ConsentGranted && rnd.Intn(3) == 0 {
					c.Expires = clock + int64(rnd.Intn(600_000)) // expires within minutes
				}
				f.Consent[purpose] = c
			}
			facts[p] = f
			if rnd.Intn(4) > 0 { // else the next event of the profile carries it
				out = append(out, propMsg{key: p, ref: reference.FanoutMessage{Profile: p, At: clock,
					Input: schemas.FanoutInput{Status: &schemas.FanoutStatus{EventID: fmt.Sprint("c", len(out)), Profile: clone(f)}}}})
			}
		case k < 36 && len(events) > 0:
			// A replay of an earlier event to one subscription; often one
			// of a profile that merged away since (the survivor decides).
			ev := events[rnd.Intn(len(events))]
			if merges && rnd.Intn(2) == 0 {
				var gone []schemas.FanoutEvent
				for _, e := range events {
					if into[e.Profile.ID] != "" {
						gone = append(gone, e)
					}
				}
				if len(gone) > 0 {
					ev = gone[rnd.Intn(len(gone))]
				}
			}
			sub := propSubs[rnd.Intn(len(propSubs))].ID
			if rnd.Intn(2) == 0 { // one of the event's topic
				for _, s := range propSubs {
					if s.Tenant == ev.Tenant && s.Topic == ev.Topic && rnd.Intn(2) == 0 {
						sub = s.ID
					}
				}
			}
			out = append(out, propMsg{key: ev.Profile.ID, ref: reference.FanoutMessage{Profile: ev.Profile.ID, At: clock,
				Input: schemas.FanoutInput{Replay: &schemas.FanoutReplay{Subscription: sub, Event: ev}}}})
		case k < 44 && len(events) > 0:
			// Identity wrote an event again, with the profile as it is now.
			ev := events[rnd.Intn(len(events))]
			if root(ev.Profile.ID) != ev.Profile.ID {
				// After a merge identity writes it under the survivor,
				// whose Seen may not have the id yet: a second delivery
				// under the survivor's id (docs/fanout.md, "Merges").
				continue
			}
			ev.Profile = clone(facts[ev.Profile.ID])
			out = append(out, propMsg{key: ev.Profile.ID, ref: reference.FanoutMessage{Profile: ev.Profile.ID, At: clock,
				Input: schemas.FanoutInput{Event: &ev}}})
		default:
			tenant := propProfiles[p]
			var names []schemas.Topic
			for _, t := range propTopics {
				if t.Tenant == tenant {
					names = append(names, t)
				}
			}
			t := names[rnd.Intn(len(names))]
			pub := t.Owner
			if rnd.Intn(10) == 0 {
				pub = propPartners[tenant][rnd.Intn(len(propPartners[tenant]))]
			}
			ev := schemas.FanoutEvent{Tenant: tenant, Topic: t.Name, Publisher: pub, EventID: fmt.Sprint("e", len(out)),
				Type: t.Name + ".happened", Time: clock - int64(rnd.Intn(5000)),
				Properties: map[string]string{"n": fmt.Sprint(len(out)), "text": `"a&b<c>"`}, Profile: clone(facts[p])}
			if rnd.Intn(20) == 0 {
				ev.Topic = "nope" // a topic that does not exist
			}
			events = append(events, ev)
			out = append(out, propMsg{key: p, ref: reference.FanoutMessage{Profile: p, At: clock, Input: schemas.FanoutInput{Event: &ev}}})
		}
	}
	return out
}

func clone(f *schemas.FanoutProfile) *schemas.FanoutProfile {
	b, _ := json.Marshal(f)
	var c schemas.FanoutProfile
	_ = json.Unmarshal(b, &c)
	if c.Consent == nil {
		c.Consent = map[string]schemas.FanoutConsent{}
	}
	return &c
}

func enc(t testing.TB, v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// forwardsText is forwards in one comparable form: key and record, the
// event ids of a move sorted.
func forwardsText(t testing.TB, fs []schemas.FanoutForward) string {
	var out []string
	for _, f := range fs {
		in := f.Input
		if in.Moved != nil {
			mv := *in.Moved
			mv.Seen = slices.Sorted(slices.Values(mv.Seen))
			if len(mv.Seen) == 0 {
				mv.Seen = nil
			}
			in.Moved = &mv
		}
		out = append(out, f.Key+" "+string(enc(t, in)))
	}
	return strings.Join(out, "\n")
}

// interleave runs the reference over the base sequence and places each
// record it writes to its own input (a merge's handover and moves, a
// replay passed on) later in the sequence, in order (sometimes twice: a
// replay after a crash writes one again), as the partition would hold
// it; it returns the sequence with the reference's answer to each
// message.
func interleave(rnd *rand.Rand, base []propMsg) ([]propMsg, []expected) {
	ref := reference.NewFanout()
	var seq []propMsg
	var want []expected
	var pending []propMsg
	at := t0
	for len(base) > 0 || len(pending) > 0 {
		var m propMsg
		if len(pending) > 0 && (len(base) == 0 || rnd.Intn(3) == 0) {
			m, pending = pending[0], pending[1:]
			m.ref.At = at
		} else {
			m, base = base[0], base[1:]
			at = m.ref.At
		}
		w := expected{entitled: entitledNow(ref, m.ref), key: m.key}
		before := len(ref.Deliveries)
		ref.Handle(m.ref)
		w.deliveries = ref.Deliveries[before:]
		w.outcome, w.skips = ref.Outcome, ref.Skips
		for _, f := range ref.Forwards {
			w.forwards = append(w.forwards, schemas.FanoutForward{Key: f.Profile, Input: f.Input})
			pm := propMsg{key: f.Profile, ref: f}
			pending = append(pending, pm)
			if rnd.Intn(10) == 0 {
				pending = append(pending, pm)
			}
		}
		seq = append(seq, m)
		want = append(want, w)
	}
	return seq, want
}

// expected is the reference's answer to one logical message.
type expected struct {
	deliveries []reference.FanoutDelivered
	outcome    string
	skips      map[string]string
	// entitled: the subscriptions every entitlement rule lets through,
	// checked rule by rule by the test itself before the reference
	// handled the message.
	entitled map[string]bool
	// forwards: the records written to the stage's own input.
	forwards []schemas.FanoutForward
	key      string // the message's key
}

// entitledNow checks each rule of docs/fanout.md for message m against the
// reference's state before m, independently of both implementations.
func entitledNow(ref *reference.Fanout, m reference.FanoutMessage) map[string]bool {
	out := map[string]bool{}
	var ev *schemas.FanoutEvent
	var facts *schemas.FanoutProfile
	var only string
	switch {
	case m.Input.Event != nil:
		ev, facts = m.Input.Event, m.Input.Event.Profile
		if ref.Seen[m.Profile][ev.EventID] {
			return out
		}
	case m.Input.Replay != nil:
		ev, facts, only = &m.Input.Replay.Event, ref.Facts[m.Profile], m.Input.Replay.Subscription
		if facts == nil {
			facts = ev.Profile
		}
	default:
		return out
	}
	topic := ref.Topics[ev.Tenant+"/"+ev.Topic]
	if topic == nil || topic.Deleted || topic.Topic.Owner != ev.Publisher || facts == nil || facts.Tenant != ev.Tenant || facts.Blacklisted {
		return out
	}
	for id, s := range ref.Subs {
		sub := s.Subscription
		if (only != "" && id != only) || sub.Topic != ev.Topic || sub.Tenant != topic.Topic.Tenant ||
			sub.Status != schemas.SubscriptionActive || !slices.Contains(topic.Topic.Allowed, sub.Partner) {
			continue
		}
		if p := topic.Topic.RequiresConsent; p != "" {
			c, ok := facts.Consent[p]
			if !ok || c.Status != schemas.ConsentGranted || (c.Expires > 0 && m.At >= c.Expires) {
				continue
			}
		}
		out[id] = true
	}
	return out
}

// TestPropertyAgainstReference streams random sequences through
// ApplyDirectory and Apply the way the goka group will (every value
// encoded and decoded per message, one partition, origins in sequence;
// crashes that lose table writes and offset commits; records delivered
// again) and compares with the reference handling each logical message
// once.
func TestPropertyAgainstReference(t *testing.T) {
	seeds, n := 30, 500
	if testing.Short() {
		seeds, n = 12, 300
	}
	total := map[string]int{}
	for seed := 1; seed <= seeds; seed++ {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			for k, v := range checkFanout(t, int64(seed), n) {
				total[k] += v
			}
		})
	}
	// What the sequences exercised, over all seeds.
	t.Logf("exercised: %v", total)
	for _, k := range []string{schemas.KindTopicEvent, schemas.KindConsentRevoked, "cancel", "replay", "crash", "replayed",
		"forward", "moved", "alias " + schemas.KindTopicEvent, "alias " + schemas.KindConsentRevoked, "alias cancel",
		schemas.FanoutDuplicate, schemas.FanoutNoTopic, schemas.FanoutNotOwner, schemas.FanoutBlacklisted,
		schemas.FanoutOtherTenant, schemas.FanoutInactive, schemas.FanoutNotAllowed, schemas.FanoutNoConsent} {
		least := 5
		if k == "alias "+schemas.KindTopicEvent {
			least = 2 // a replay of a merged-away profile's event, entitled: rarer
		}
		if total[k] < least {
			t.Errorf("the sequences exercised %s %d times: %v", k, total[k], total)
		}
	}
}

func checkFanout(t *testing.T, seed int64, n int) map[string]int {
	rnd := rand.New(rand.NewSource(seed))
	seq, want := interleave(rnd, genFanout(rnd, n, true))

	// The stream: table holds every key's value; written[j] is a copy of
	// the table after message j.
	table := map[string][]byte{}
	var written []map[string][]byte
	sent := map[string]schemas.FanoutDelivery{} // webhook id → record
	received := map[string]bool{}               // subscription/profile: a topic event was sent
	committed := 0
	counts := map[string]int{}
	for pos := 0; pos < len(seq); {
		m := seq[pos]
		msg := Message{Input: &m.ref.Input, Origin: int64(pos) + 1, At: m.ref.At}
		var dir *Directory
		if b := table[dirKey]; b != nil {
			dir = new(Directory)
			if err := json.Unmarshal(b, dir); err != nil {
				t.Fatal(err)
			}
		}
		var r Result
		var value any
		if m.key == dirKey {
			r = ApplyDirectory(dir, msg)
			value = r.Directory
		} else {
			var s *State
			if b := table[m.key]; b != nil {
				s = new(State)
				if err := json.Unmarshal(b, s); err != nil {
					t.Fatal(err)
				}
			}
			r = Apply(dir, s, m.key, msg)
			value = r.State
		}
		if !r.Replayed {
			checkFresh(t, pos, m, r, want[pos])
		}
		// A replay writes the same records to the input again.
		if got, w := forwardsText(t, r.Forwards), forwardsText(t, want[pos].forwards); got != w {
			t.Fatalf("message %d (%s, replayed %v): wrote to the input\n%s\nreference\n%s", pos, enc(t, m.ref.Input), r.Replayed, got, w)
		}
		if len(r.Forwards) > 0 {
			counts["forward"]++
		}
		if m.ref.Input.Moved != nil {
			counts["moved"]++
		}
		send := func() {
			for _, d := range r.Deliveries {
				if prev, ok := sent[d.WebhookID]; ok && (prev.Body != d.Body || prev.Subscription != d.Subscription) {
					t.Fatalf("message %d: webhook id %s sent twice, differently:\n%+v\n%+v", pos, d.WebhookID, prev, d)
				}
				if d.Kind == schemas.KindConsentRevoked && !received[d.Subscription+"/"+d.ProfileID] {
					t.Fatalf("message %d: %s revoked at a subscription that never received the profile", pos, d.WebhookID)
				}
				if d.Kind == schemas.KindBlacklisted && (!received[d.Subscription+"/"+d.ProfileID] || d.Body != "") {
					t.Fatalf("message %d: %s cancels at a subscription that never received the profile, or has a body", pos, d.WebhookID)
				}
				if d.Kind == schemas.KindTopicEvent {
					received[d.Subscription+"/"+d.ProfileID] = true
				}
				sent[d.WebhookID] = d
			}
		}
		write := func() {
			if r.Write {
				table[m.key] = enc(t, value)
			}
			written = append(written[:pos], maps.Clone(table))
		}
		crash := func() {
			counts["crash"]++
			if len(written) > committed && rnd.Intn(2) == 0 {
				j := committed + rnd.Intn(len(written)-committed+1)
				if j == 0 {
					table = map[string][]byte{}
				} else {
					table = maps.Clone(written[j-1])
				}
				written = written[:j]
			}
			pos = committed
		}
		if r.Replayed {
			counts["replayed"]++
		}
		switch c := rnd.Intn(100); {
		case c < 3: // crash before the write; the records may have gone out
			if rnd.Intn(2) == 0 {
				send()
			}
			crash()
		case c < 6: // crash after the write, the records lost
			write()
			crash()
		case c < 9: // written and sent, then the same record delivered again
			write()
			send()
		default:
			write()
			send()
			pos++
			if rnd.Intn(3) == 0 {
				committed = pos
			}
		}
	}

	// The set of (subscription, webhook id, body) equals the reference's.
	wantSet := map[string]reference.FanoutDelivered{}
	for _, w := range want {
		for _, d := range w.deliveries {
			if prev, ok := wantSet[d.WebhookID]; ok && prev != d {
				t.Fatalf("reference: webhook id %s twice, differently", d.WebhookID)
			}
			wantSet[d.WebhookID] = d
			kind := d.Kind
			if d.Kind == schemas.KindBlacklisted {
				kind = "cancel" // "blacklisted" counts the outcome
			}
			counts[kind]++
			if d.Profile != w.key {
				counts["alias "+kind]++ // under a profile id merged into the key
			}
		}
	}
	if len(sent) != len(wantSet) {
		t.Fatalf("%d records sent, reference %d", len(sent), len(wantSet))
	}
	for id, w := range wantSet {
		g, ok := sent[id]
		if !ok {
			t.Fatalf("record %s lost", id)
		}
		if g.Subscription != w.Subscription || g.Body != w.Body || g.Kind != w.Kind || g.Partner != w.Partner ||
			g.Tenant != w.Tenant || g.Topic != w.Topic || g.ProfileID != w.Profile {
			t.Fatalf("record %s:\n got %+v\nwant %+v", id, g, w)
		}
	}
	for _, w := range want {
		counts[w.outcome]++
		for _, why := range w.skips {
			counts[why]++
		}
	}
	for _, m := range seq {
		if m.ref.Input.Replay != nil {
			counts["replay"]++
		}
	}
	return counts
}

// checkFresh compares one handling of message pos (not a replay of it)
// with the reference's answer, and checks every topic event delivered
// against the rules.
func checkFresh(t *testing.T, pos int, m propMsg, r Result, w expected) {
	t.Helper()
	if len(r.Deliveries) != len(w.deliveries) {
		t.Fatalf("message %d (%s): %d records, reference %d:\n got %+v\nwant %+v", pos, enc(t, m.ref.Input), len(r.Deliveries), len(w.deliveries), r.Deliveries, w.deliveries)
	}
	for i, d := range r.Deliveries {
		wd := w.deliveries[i]
		if d.WebhookID != wd.WebhookID || d.Body != wd.Body || d.Subscription != wd.Subscription {
			t.Fatalf("message %d record %d:\n got %+v\nwant %+v", pos, i, d, wd)
		}
		if d.Kind == schemas.KindTopicEvent && !w.entitled[d.Subscription] {
			t.Fatalf("message %d: %s delivered to %s (partner %s), which is not entitled", pos, d.EventID, d.Subscription, d.Partner)
		}
	}
	if m.key == dirKey {
		return
	}
	if r.Outcome != w.outcome {
		t.Fatalf("message %d: outcome %q, reference %q", pos, r.Outcome, w.outcome)
	}
	skips := map[string]string{}
	for _, s := range r.Skips {
		skips[s.Subscription] = s.Reason
	}
	if !maps.Equal(skips, w.skips) {
		t.Fatalf("message %d: skips %v, reference %v", pos, skips, w.skips)
	}
}
