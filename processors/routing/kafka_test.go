package routing

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand"
	"path/filepath"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rolodex/rolodex/internal/childtest"
	"github.com/rolodex/rolodex/reference"
	"github.com/rolodex/rolodex/schemas"
)

// Child processes run lead routing until they are killed.
const envChild = "ROLODEX_TEST_ROUTING"

// killPartners are the partners of the kill test (the child's config).
var killPartners = []schemas.PartnerRouting{
	{Name: "d-sp", Timezone: "America/Sao_Paulo", WorkingHours: map[string]string{"mon-fri": "08:00-18:00", "sat": "09:00-13:00"}},
	{Name: "d-cps", Timezone: "America/Sao_Paulo"},
	{Name: "d-rj", Timezone: "Europe/Lisbon", WorkingHours: map[string]string{"mon-sun": "07:00-22:00"}},
	{Name: "d-bh"},
	{Name: "d-nat"},
}

func TestMain(m *testing.M) {
	childtest.Main(m, envChild, func(ctx context.Context, brokers []string, dir string) error {
		p, err := New(Config{Brokers: brokers, StorageDir: dir, Partners: killPartners})
		if err != nil {
			return err
		}
		return p.Run(ctx)
	})
}

// killRules is a tenant's rule list: version 1, or version 2 with other
// weights, caps and pools (the cursors of the changed pools start afresh).
func killRules(tenant string, version int64) *schemas.RoutingRules {
	rl := &schemas.RoutingRules{Tenant: tenant, Version: version, Rules: []schemas.RoutingRule{
		{ID: "sp", Condition: `has(lead.properties.region) && lead.properties.region == "SP"`, Strategy: schemas.StrategyWeighted,
			Pool:      []schemas.RoutingPoolEntry{{Partner: "d-sp", Weight: 2}, {Partner: "d-cps", Weight: 1}},
			CapPerDay: map[string]int{"d-sp": 5}, Fallback: "national"},
		{ID: "vip", Condition: `has(traits.tier) && traits.tier == "gold"`, Strategy: schemas.StrategyFirst,
			Pool: []schemas.RoutingPoolEntry{{Partner: "d-rj"}, {Partner: "d-bh"}}, Consent: "lead_sharing"},
		{ID: "national", Condition: "true", Strategy: schemas.StrategyRoundRobin,
			Pool:      []schemas.RoutingPoolEntry{{Partner: "d-rj"}, {Partner: "d-bh"}},
			CapPerDay: map[string]int{"d-bh": 4}, Fallback: "d-nat"},
	}}
	if version > 1 {
		rl.Rules[0].Pool[0].Weight = 3
		rl.Rules[0].CapPerDay["d-sp"] = 8
		rl.Rules[2].Pool = append(rl.Rules[2].Pool, schemas.RoutingPoolEntry{Partner: "d-nat"})
	}
	return rl
}

// killMsg is one record of the routing input, for one tenant.
type killMsg struct {
	tenant string
	at     int64
	in     *schemas.RoutingInput
}

// killStream makes the tenants' inputs, interleaved: leads (some ids
// again, some blacklisted, some gold with or without consent, regions),
// feedback from the holder (the reference's) or from another dealer,
// follow-ups; each tenant's clock goes forward by minutes, sometimes by
// hours (caps reset at local midnights, working hours close), sometimes
// back a little (a late record). The references handle each tenant's
// messages as they are made, with the rule list changed to version 2 at
// message change.
func killStream(rnd *rand.Rand, tenants []string, n, change int) ([]killMsg, map[string]*reference.Router) {
	refs := map[string]*reference.Router{}
	clocks := map[string]int64{}
	ids := map[string][]string{}
	for _, tn := range tenants {
		refs[tn] = reference.NewRouter(tn, killPartners, DefaultRetention)
		refs[tn].Handle(reference.RouterMessage{At: 0, Rules: killRules(tn, 1)})
		clocks[tn] = time.Date(2025, 6, 2, 9, 0, 0, 0, time.UTC).UnixMilli() // a Monday
	}
	var out []killMsg
	for i := 0; i < n; i++ {
		if i == change {
			for _, tn := range tenants {
				refs[tn].Handle(reference.RouterMessage{At: 0, Rules: killRules(tn, 2)})
			}
		}
		tn := tenants[rnd.Intn(len(tenants))]
		switch k := rnd.Intn(100); {
		case k < 75:
			clocks[tn] += int64(rnd.Intn(25)) * 60_000
		case k < 92:
			clocks[tn] += int64(2+rnd.Intn(10)) * 3_600_000
		default:
			clocks[tn] -= int64(rnd.Intn(20)) * 60_000
		}
		at := clocks[tn]
		ref := refs[tn]
		in := &schemas.RoutingInput{Tenant: tn}
		switch k := rnd.Intn(100); {
		case k < 60 || len(ids[tn]) == 0:
			id := fmt.Sprintf("%s-L%03d", tn, len(ids[tn]))
			if len(ids[tn]) > 0 && rnd.Intn(8) == 0 {
				id = ids[tn][rnd.Intn(len(ids[tn]))] // the CRM sends the same lead again
			} else {
				ids[tn] = append(ids[tn], id)
			}
			l := &schemas.RoutingLead{ID: id, EventID: fmt.Sprintf("e%d", i), Type: schemas.DefaultLeadType, Time: at,
				Properties: map[string]string{}, Profile: &schemas.Profile{ID: "pr-" + id, Tenant: tn}}
			if rnd.Intn(5) > 0 {
				l.Properties["region"] = []string{`"SP"`, `"SP"`, `"RJ"`, `"MG"`}[rnd.Intn(4)]
			}
			if rnd.Intn(4) == 0 {
				l.Profile.Traits = map[string]json.RawMessage{"tier": json.RawMessage(`"gold"`)}
			}
			if rnd.Intn(2) == 0 {
				l.Profile.Consent = map[string]schemas.ConsentState{"lead_sharing": {Status: schemas.ConsentGranted}}
			}
			if rnd.Intn(12) == 0 {
				l.Profile.Blacklisted = true
			}
			in.Lead = l
		case k < 90:
			id := ids[tn][rnd.Intn(len(ids[tn]))]
			f := &schemas.LeadFeedback{LeadID: id, Accepted: rnd.Intn(3) == 0, Partner: killPartners[rnd.Intn(len(killPartners))].Name}
			if l := ref.Leads[id]; l != nil && l.Partner != "" && rnd.Intn(4) > 0 {
				f.Partner = l.Partner // mostly the holder
			}
			in.Feedback = f
		default:
			in.FollowUp = &schemas.LeadFollowUp{LeadID: ids[tn][rnd.Intn(len(ids[tn]))], EventID: fmt.Sprintf("f%d", i), Type: "opportunity.updated",
				Properties: map[string]string{"stage": `"won"`}}
		}
		ref.Handle(reference.RouterMessage{At: at, Lead: in.Lead, Feedback: in.Feedback, FollowUp: in.FollowUp})
		out = append(out, killMsg{tn, at, in})
	}
	return out, refs
}

// Lead routing on Kafka (kfake over TCP) in a child process killed with
// SIGKILL mid-stream and restarted (once with -short, twice without):
// three tenants' leads, feedback and follow-ups produced to
// rolodex.routing.input, and a rule change between the first restart and
// the rest of the stream. The outcomes on rolodex.routing.outcomes,
// deduped by (lead, attempt, type, instant), equal the reference router's
// (none lost, none extra, a record written twice by a replay the same
// record); every lead's state and decision history in the table equals the
// reference's, and so do the cap counters.
func TestRoutingOnKafkaUnderKills(t *testing.T) {
	n, kills := 900, 2
	if testing.Short() {
		n, kills = 240, 1
	}
	k := newKafkaEnv(t)
	tenants := []string{"t1", "t2", "t3"}
	rnd := rand.New(rand.NewSource(15))
	chunk := n / (kills + 1)
	stream, refs := killStream(rnd, tenants, n, chunk)

	version := func(v int64) func(map[string]*State) bool {
		return func(m map[string]*State) bool {
			for _, tn := range tenants {
				if m[tn] == nil || m[tn].Rules == nil || m[tn].Rules.Version != v {
					return false
				}
			}
			return true
		}
	}
	for _, tn := range tenants {
		k.produceJSON(schemas.TopicRoutingRules, tn, killRules(tn, 1), time.UnixMilli(0))
	}
	dir := filepath.Join(t.TempDir(), "routing")
	ch := childtest.Start(t, envChild, k.brokers, dir, 0)
	ch.WaitJoined(t, schemas.GroupRouting, schemas.GroupRoutingRouter)
	// Rules and inputs are two topics: the references apply the rules
	// first, so the stage must have them before the first input.
	k.waitTable("rules v1 in force", version(1))

	last := map[string]int64{} // per tenant, the origin of its last input
	produced := 0
	produce := func(upto int) {
		for ; produced < min(upto, len(stream)); produced++ {
			m := stream[produced]
			b, _ := json.Marshal(m.in)
			r, err := k.prod.ProduceSync(context.Background(), &kgo.Record{Topic: schemas.TopicRoutingInput, Key: []byte(m.tenant), Value: b,
				Timestamp: time.UnixMilli(m.at)}).First()
			if err != nil {
				t.Fatal(err)
			}
			last[m.tenant] = r.Offset + 1
		}
	}
	handled := func(m map[string]*State) bool {
		for tn, o := range last {
			if m[tn] == nil || m[tn].By[schemas.TopicRoutingInput] < o {
				return false
			}
		}
		return true
	}
	for i := 1; i <= kills; i++ {
		produce(i * chunk)
		time.Sleep(time.Duration(rnd.Intn(300)) * time.Millisecond)
		_ = ch.Cmd.Process.Kill()
		<-ch.Exited
		t.Logf("killed after %d of %d inputs", produced, len(stream))
		ch = childtest.Start(t, envChild, k.brokers, dir, i)
		ch.WaitJoined(t, schemas.GroupRouting, schemas.GroupRoutingRouter)
		if i == 1 {
			// The rule change, after the first chunk and before the rest.
			k.waitTable("first chunk handled", handled)
			for _, tn := range tenants {
				k.produceJSON(schemas.TopicRoutingRules, tn, killRules(tn, 2), time.UnixMilli(0))
			}
			k.waitTable("rules v2 in force", version(2))
		}
	}
	produce(len(stream))

	var want []schemas.LeadOutcome
	for _, tn := range tenants {
		want = append(want, refs[tn].Outcomes...)
	}
	records := k.waitOutcomes("outcomes", want, ch.Logs)
	k.waitTable("every input handled", handled)
	got := k.table()
	routed, unrouted, leads := 0, 0, 0
	for _, tn := range tenants {
		ref, s := refs[tn], got[tn]
		if len(s.Leads) != len(ref.Leads) {
			t.Fatalf("%s: %d leads, reference %d", tn, len(s.Leads), len(ref.Leads))
		}
		for id, w := range ref.Leads {
			gj, _ := json.Marshal(s.Leads[id])
			wj, _ := json.Marshal(w)
			if string(gj) != string(wj) {
				t.Fatalf("%s lead %s:\n got %s\nwant %s", tn, id, gj, wj)
			}
			for _, d := range w.History {
				if d.Partner != "" {
					routed++
				} else {
					unrouted++
				}
			}
		}
		leads += len(ref.Leads)
		for p, days := range s.Counters {
			for day, c := range days {
				if ref.Count[p][day] != c {
					t.Fatalf("%s: counter %s %s: %d, reference %d", tn, p, day, c, ref.Count[p][day])
				}
			}
		}
	}
	t.Logf("%d inputs, %d leads, %d decisions routed, %d unrouted; %d outcomes (%d records)", len(stream), leads, routed, unrouted, len(want), records)
	if routed == 0 || unrouted == 0 {
		t.Fatal("the stream routed or unrouted nothing: it proves little")
	}
}
