package routing

import (
	"encoding/json"
	"fmt"
	"math/rand"
	"testing"
	"time"

	"github.com/rolodex/rolodex/reference"
	"github.com/rolodex/rolodex/schemas"
)

var propPartners = []schemas.PartnerRouting{
	{Name: "p1"},
	{Name: "p2", Timezone: "America/Sao_Paulo", WorkingHours: map[string]string{"mon-fri": "08:00-18:00", "sat": "09:00-13:00"}},
	{Name: "p3", Timezone: "Europe/Lisbon", WorkingHours: map[string]string{"mon-sun": "07:00-22:00"}},
	{Name: "p4", Timezone: "Asia/Tokyo"},
	{Name: "p5", Timezone: "America/Sao_Paulo"},
	{Name: "p6", Tenant: "another"}, // never chosen for this tenant's leads
	{Name: "p7", Tenant: tenant},
}

var propConditions = []string{
	"true",
	`has(lead.properties.region) && lead.properties.region == "SP"`,
	`has(lead.properties.region) && lead.properties.region in ["RJ", "MG"]`,
	`has(traits.tier) && traits.tier == "gold"`,
	`lead.properties.value > 50000`, // fails at run time on leads without a value
	`!("vip" in tags)`,
}

func randRules(rnd *rand.Rand, version int64) *schemas.RoutingRules {
	n := 1 + rnd.Intn(4)
	ids := []string{"a", "b", "c", "d"}[:n]
	list := &schemas.RoutingRules{Tenant: tenant, Version: version}
	for _, id := range ids {
		r := schemas.RoutingRule{ID: id, Condition: propConditions[rnd.Intn(len(propConditions))],
			Strategy: []string{schemas.StrategyFirst, schemas.StrategyRoundRobin, schemas.StrategyWeighted}[rnd.Intn(3)]}
		for _, i := range rnd.Perm(len(propPartners))[:1+rnd.Intn(3)] {
			r.Pool = append(r.Pool, schemas.RoutingPoolEntry{Partner: propPartners[i].Name, Weight: rnd.Intn(4)})
		}
		if rnd.Intn(2) == 0 {
			r.CapPerDay = map[string]int{r.Pool[0].Partner: rnd.Intn(4)}
		}
		r.OutsideHours = rnd.Intn(3) == 0
		if rnd.Intn(4) == 0 {
			r.Consent = "lead_sharing"
		}
		r.SLA = []string{"", "20m", "45m", "3h"}[rnd.Intn(4)]
		r.MaxReroutes = rnd.Intn(3)
		switch rnd.Intn(4) {
		case 0:
			r.Fallback = ids[rnd.Intn(n)] // may make a cycle
		case 1:
			r.Fallback = propPartners[rnd.Intn(len(propPartners))].Name
		}
		list.Rules = append(list.Rules, r)
	}
	return list
}

type propMsg struct {
	ref reference.RouterMessage
	msg Message
}

// genSequence makes a tenant's logical sequence: rule lists, leads (some
// ids again), feedback (from the holder or not), follow-ups and ticks, on
// a clock that mostly goes forward, sometimes by hours, sometimes back.
func genSequence(rnd *rand.Rand, n int) []propMsg {
	var out []propMsg
	clock := time.Date(2025, 3, 28, 20, 0, 0, 0, time.UTC).UnixMilli() // before Lisbon's DST change
	version := int64(0)
	var ids []string
	add := func(r reference.RouterMessage, m Message) { out = append(out, propMsg{r, m}) }
	version++
	rl := randRules(rnd, version)
	add(reference.RouterMessage{At: clock, Rules: rl}, Message{At: clock, Rules: rl})
	for len(out) < n {
		switch k := rnd.Intn(100); {
		case k < 70:
			clock += int64(rnd.Intn(40)) * 60_000
		case k < 90:
			clock += int64(rnd.Intn(12)) * 3_600_000
		default:
			clock -= int64(rnd.Intn(30)) * 60_000 // a late record
		}
		at := clock
		switch k := rnd.Intn(100); {
		case k < 5:
			version++
			if rnd.Intn(5) == 0 {
				version -= 2 // an older list: ignored
			}
			rl := randRules(rnd, version)
			add(reference.RouterMessage{At: at, Rules: rl}, Message{At: at, Rules: rl})
		case k < 45:
			id := fmt.Sprintf("L%d", len(ids))
			if len(ids) > 0 && rnd.Intn(8) == 0 {
				id = ids[rnd.Intn(len(ids))] // the same lead again
			} else {
				ids = append(ids, id)
			}
			l := &schemas.RoutingLead{ID: id, EventID: "e" + fmt.Sprint(len(out)), Type: schemas.DefaultLeadType, Time: at,
				Properties: map[string]string{}, Profile: &schemas.Profile{ID: "pr" + id, Tenant: tenant}}
			if rnd.Intn(4) > 0 {
				l.Properties["region"] = []string{`"SP"`, `"RJ"`, `"MG"`, `"BA"`}[rnd.Intn(4)]
			}
			if rnd.Intn(2) == 0 {
				l.Properties["value"] = fmt.Sprint(rnd.Intn(100000))
			}
			if rnd.Intn(3) == 0 {
				l.Profile.Traits = map[string]json.RawMessage{"tier": json.RawMessage(`"gold"`)}
			}
			if rnd.Intn(10) == 0 {
				l.Profile.Blacklisted = true
			}
			if rnd.Intn(2) == 0 {
				l.Profile.Consent = map[string]schemas.ConsentState{"lead_sharing": {Status: schemas.ConsentGranted}}
			}
			if rnd.Intn(6) == 0 {
				l.Profile.Tags = []schemas.ProfileTag{{Tag: "vip"}}
			}
			in := &schemas.RoutingInput{Tenant: tenant, Lead: l}
			add(reference.RouterMessage{At: at, Lead: l}, Message{At: at, Input: in})
		case k < 75 && len(ids) > 0:
			id := ids[rnd.Intn(len(ids))]
			f := &schemas.LeadFeedback{LeadID: id, Partner: propPartners[rnd.Intn(len(propPartners))].Name, Accepted: rnd.Intn(3) == 0}
			if rnd.Intn(2) == 0 {
				f.Partner = "" // filled with the holder when the sequence is replayed (below)
			}
			add(reference.RouterMessage{At: at, Feedback: f}, Message{At: at, Input: &schemas.RoutingInput{Tenant: tenant, Feedback: f}})
		case k < 77 && len(ids) > 0:
			// A delivery report: usually about the holder's current attempt
			// (filled in below), sometimes a stale or another partner's.
			dl := &schemas.LeadDelivery{LeadID: ids[rnd.Intn(len(ids))], OK: rnd.Intn(2) == 0, Attempt: -1}
			if rnd.Intn(4) == 0 {
				dl.Partner, dl.Attempt = propPartners[rnd.Intn(len(propPartners))].Name, 1+rnd.Intn(3)
			}
			add(reference.RouterMessage{At: at, Delivery: dl}, Message{At: at, Input: &schemas.RoutingInput{Tenant: tenant, Delivery: dl}})
		case k < 80 && len(ids) > 0:
			f := &schemas.LeadFollowUp{LeadID: ids[rnd.Intn(len(ids))], EventID: fmt.Sprint("f", len(out)), Type: "opportunity.updated"}
			add(reference.RouterMessage{At: at, FollowUp: f}, Message{At: at, Input: &schemas.RoutingInput{Tenant: tenant, FollowUp: f}})
		default:
			add(reference.RouterMessage{At: at, Tick: true}, Message{At: at, Tick: true})
		}
	}
	return out
}

// outcomeKey identifies an outcome for consumers' dedupe: the instant too,
// because a lead id forgotten after the retention starts again at attempt 1.
func outcomeKey(o schemas.LeadOutcome) string {
	k := fmt.Sprintf("%s/%d/%s/%d", o.LeadID, o.Attempt, o.Type, o.At)
	if o.FollowUp != nil {
		k += "/" + o.FollowUp.EventID
	}
	return k
}

func encode(t testing.TB, s *State) []byte {
	if s == nil {
		return nil
	}
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func decode(t testing.TB, b []byte) *State {
	if b == nil {
		return nil
	}
	var s State
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatal(err)
	}
	return &s
}

// TestPropertyAgainstReference streams random sequences through Apply the
// way the goka group will (the table value encoded and decoded per
// message; origins per topic; crashes that lose table writes and offset
// commits; duplicated deliveries) and compares with the reference router
// handling each logical message once.
func TestPropertyAgainstReference(t *testing.T) {
	seeds, n := 20, 400
	if testing.Short() {
		seeds, n = 10, 250
	}
	for seed := 1; seed <= seeds; seed++ {
		retention := time.Duration(0)
		if seed%3 == 0 {
			retention = 8 * time.Hour
		}
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) { checkSequence(t, int64(seed), n, retention) })
	}
}

func checkSequence(t *testing.T, seed int64, n int, retention time.Duration) {
	rnd := rand.New(rand.NewSource(seed))
	seq := genSequence(rnd, n)
	env, err := NewEnv(propPartners, retention)
	if err != nil {
		t.Fatal(err)
	}
	ref := reference.NewRouter(tenant, propPartners, retention)

	// Feedback without a partner goes to whoever holds the lead when the
	// reference reaches it (so that many feedbacks count); the same record
	// then goes to the stream.
	// Origins: per topic, in sequence order.
	origins := map[string]int64{}
	for i := range seq {
		m := &seq[i]
		if f := m.ref.Feedback; f != nil && f.Partner == "" {
			if l := ref.Leads[f.LeadID]; l != nil {
				f.Partner = l.Partner
			}
		}
		if dl := m.ref.Delivery; dl != nil && dl.Attempt < 0 {
			dl.Attempt = 1
			if l := ref.Leads[dl.LeadID]; l != nil {
				dl.Partner, dl.Attempt = l.Partner, len(l.History)
			}
		}
		ref.Handle(m.ref)
		topic := m.msg.Topic()
		origins[topic]++
		m.msg.Origin = origins[topic]
	}

	// The stream: writes[j] is the table after message j (nil: none yet).
	var table []byte
	var written [][]byte // written[j]: the table value after handling seq[j]
	sent := map[string]schemas.LeadOutcome{}
	committed := 0 // the next message to deliver after a crash
	for pos := 0; pos < len(seq); {
		m := seq[pos].msg
		r := Apply(decode(t, table), tenant, m, env)
		if r.State == nil {
			t.Fatalf("message %d: no state", pos)
		}
		send := func() {
			for _, o := range r.Outcomes {
				k := outcomeKey(o)
				if prev, ok := sent[k]; ok {
					pj, _ := json.Marshal(prev)
					oj, _ := json.Marshal(o)
					if string(pj) != string(oj) {
						t.Fatalf("message %d: outcome %s sent twice, differently:\n%s\n%s", pos, k, pj, oj)
					}
				}
				sent[k] = o
			}
		}
		write := func() {
			if r.Write {
				table = encode(t, r.State)
			}
			written = append(written[:pos], table)
		}
		// crash: the table keeps its writes up to some message at or
		// after the commit (often all of them), and delivery starts again
		// at the commit.
		crash := func() {
			if len(written) > committed && rnd.Intn(2) == 0 {
				j := committed + rnd.Intn(len(written)-committed+1)
				if j == 0 {
					table = nil
				} else {
					table = written[j-1]
				}
				written = written[:j]
			}
			pos = committed
		}
		switch c := rnd.Intn(100); {
		case c < 3: // crash before the table write; the outcomes may have gone out
			if rnd.Intn(2) == 0 {
				send()
			}
			crash()
		case c < 6: // crash after the table write, the outcomes lost
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
	got := decode(t, table)

	// Every lead's state and history equal the reference's.
	if len(got.Leads) != len(ref.Leads) {
		t.Fatalf("%d leads, reference %d", len(got.Leads), len(ref.Leads))
	}
	for id, want := range ref.Leads {
		g := got.Leads[id]
		if g == nil {
			t.Fatalf("lead %s missing", id)
		}
		gj, _ := json.Marshal(g)
		wj, _ := json.Marshal(want)
		if string(gj) != string(wj) {
			t.Fatalf("lead %s:\n got %s\nwant %s", id, gj, wj)
		}
	}
	// The counters kept equal the reference's for those days; the
	// reference keeps every day, the stage drops the days before
	// yesterday (in each partner's zone).
	for p, days := range got.Counters {
		for day, c := range days {
			if ref.Count[p][day] != c {
				t.Fatalf("counter %s %s: %d, reference %d", p, day, c, ref.Count[p][day])
			}
		}
	}
	for p, days := range ref.Count {
		y := env.partner(p).yesterday(got.At)
		for day, c := range days {
			if day >= y && got.Counters[p][day] != c {
				t.Fatalf("counter %s %s: %d, reference %d", p, day, got.Counters[p][day], c)
			}
		}
	}
	// The outcomes sent, deduped, are the reference's.
	want := map[string]schemas.LeadOutcome{}
	for _, o := range ref.Outcomes {
		k := outcomeKey(o)
		if _, dup := want[k]; dup {
			t.Fatalf("reference made %s twice", k)
		}
		want[k] = o
	}
	if len(sent) != len(want) {
		t.Fatalf("%d outcomes sent, reference %d", len(sent), len(want))
	}
	for k, w := range want {
		g, ok := sent[k]
		if !ok {
			t.Fatalf("outcome %s lost", k)
		}
		gj, _ := json.Marshal(g)
		wj, _ := json.Marshal(w)
		if string(gj) != string(wj) {
			t.Fatalf("outcome %s:\n got %s\nwant %s", k, gj, wj)
		}
	}
}
