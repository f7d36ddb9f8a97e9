package routing

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/rolodex/rolodex/schemas"
)

const tenant = "demo"

func mustEnv(t testing.TB, partners ...schemas.PartnerRouting) *Env {
	t.Helper()
	e, err := NewEnv(partners, 0)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func ruleList(v int64, rs ...schemas.RoutingRule) Message {
	return Message{Rules: &schemas.RoutingRules{Tenant: tenant, Version: v, Rules: rs}}
}

func leadMsg(id string, at time.Time, props map[string]string) Message {
	return Message{At: at.UnixMilli(), Input: &schemas.RoutingInput{Tenant: tenant, Lead: &schemas.RoutingLead{
		ID: id, EventID: "e-" + id, Type: "lead.created", Time: at.UnixMilli(), Properties: props}}}
}

func feedback(id, partner string, accepted bool, at time.Time) Message {
	return Message{At: at.UnixMilli(), Input: &schemas.RoutingInput{Tenant: tenant, Feedback: &schemas.LeadFeedback{LeadID: id, Partner: partner, Accepted: accepted}}}
}

// run applies messages in order and returns the state and every outcome.
func run(t testing.TB, env *Env, s *State, ms ...Message) (*State, []schemas.LeadOutcome) {
	t.Helper()
	var out []schemas.LeadOutcome
	for _, m := range ms {
		r := Apply(s, tenant, m, env)
		s = r.State
		out = append(out, r.Outcomes...)
	}
	return s, out
}

func partnerOf(s *State, id string) string { return s.Leads[id].Partner }

var t0 = time.Date(2025, 6, 2, 12, 0, 0, 0, time.UTC) // a Monday

func TestWeightedExactSplit(t *testing.T) {
	for _, weights := range [][]int{{2, 1}, {5, 1, 1}, {3, 2, 4}, {1, 1, 1, 1}, {7, 3}} {
		t.Run(fmt.Sprint(weights), func(t *testing.T) {
			var pool []schemas.RoutingPoolEntry
			sum := 0
			for i, w := range weights {
				pool = append(pool, schemas.RoutingPoolEntry{Partner: fmt.Sprintf("d%d", i), Weight: w})
				sum += w
			}
			env := mustEnv(t)
			s, _ := run(t, env, nil, ruleList(1, schemas.RoutingRule{ID: "w", Condition: "true", Strategy: schemas.StrategyWeighted, Pool: pool}))
			n := 5 * sum
			var seq []string
			for i := 0; i < n; i++ {
				id := fmt.Sprintf("L%03d", i)
				s, _ = run(t, env, s, leadMsg(id, t0.Add(time.Duration(i)*time.Second), nil))
				seq = append(seq, partnerOf(s, id))
			}
			// Every window of sum(weights) consecutive leads splits exactly.
			for start := 0; start+sum <= n; start++ {
				count := map[string]int{}
				for _, p := range seq[start : start+sum] {
					count[p]++
				}
				for i, w := range weights {
					if got := count[fmt.Sprintf("d%d", i)]; got != w {
						t.Fatalf("window at %d: d%d got %d, want %d (sequence %v)", start, i, got, w, seq)
					}
				}
			}
		})
	}
}

func TestWeightedSmooth(t *testing.T) {
	env := mustEnv(t)
	s, _ := run(t, env, nil, ruleList(1, schemas.RoutingRule{ID: "w", Condition: "true", Strategy: schemas.StrategyWeighted,
		Pool: []schemas.RoutingPoolEntry{{Partner: "a", Weight: 5}, {Partner: "b", Weight: 1}, {Partner: "c", Weight: 1}}}))
	var seq []string
	for i := 0; i < 7; i++ {
		id := fmt.Sprint("L", i)
		s, _ = run(t, env, s, leadMsg(id, t0, nil))
		seq = append(seq, partnerOf(s, id))
	}
	// nginx's smooth weighted round robin for {a:5, b:1, c:1}.
	if want := []string{"a", "a", "b", "a", "c", "a", "a"}; !slices.Equal(seq, want) {
		t.Fatalf("got %v, want %v", seq, want)
	}
}

func TestRoundRobinSkipsIneligible(t *testing.T) {
	env := mustEnv(t)
	s, _ := run(t, env, nil, ruleList(1, schemas.RoutingRule{ID: "rr", Condition: "true", Strategy: schemas.StrategyRoundRobin,
		Pool: []schemas.RoutingPoolEntry{{Partner: "a"}, {Partner: "b"}, {Partner: "c"}}, CapPerDay: map[string]int{"b": 1}}))
	var seq []string
	for i := 0; i < 6; i++ {
		id := fmt.Sprint("L", i)
		s, _ = run(t, env, s, leadMsg(id, t0, nil))
		seq = append(seq, partnerOf(s, id))
	}
	if want := []string{"a", "b", "c", "a", "c", "a"}; !slices.Equal(seq, want) {
		t.Fatalf("got %v, want %v", seq, want)
	}
	h := s.Leads["L4"].History[0]
	want := []schemas.RoutingCandidate{{Rule: "rr", Partner: "a", Skip: schemas.SkipTurn}, {Rule: "rr", Partner: "b", Skip: schemas.SkipCap}, {Rule: "rr", Partner: "c"}}
	if !slices.Equal(h.Candidates, want) {
		t.Fatalf("candidates %+v, want %+v", h.Candidates, want)
	}
}

func TestFirstAndOrderedRules(t *testing.T) {
	env := mustEnv(t)
	s, _ := run(t, env, nil, ruleList(1,
		schemas.RoutingRule{ID: "sp", Condition: `has(lead.properties.region) && lead.properties.region == "SP"`, Strategy: schemas.StrategyFirst,
			Pool: []schemas.RoutingPoolEntry{{Partner: "sp1"}, {Partner: "sp2"}}},
		schemas.RoutingRule{ID: "all", Condition: "true", Pool: []schemas.RoutingPoolEntry{{Partner: "nat"}}}),
		leadMsg("a", t0, map[string]string{"region": `"SP"`}),
		leadMsg("b", t0, map[string]string{"region": `"RJ"`}),
		leadMsg("c", t0, map[string]string{"region": `"SP"`}))
	if partnerOf(s, "a") != "sp1" || partnerOf(s, "b") != "nat" || partnerOf(s, "c") != "sp1" {
		t.Fatalf("partners a=%s b=%s c=%s", partnerOf(s, "a"), partnerOf(s, "b"), partnerOf(s, "c"))
	}
	if h := s.Leads["b"].History[0]; h.Rule != "all" || h.RuleVersion != 1 || h.Candidates[0] != (schemas.RoutingCandidate{Rule: "sp", Skip: schemas.SkipNoMatch}) {
		t.Fatalf("history %+v", h)
	}
}

// Caps count per day of the partner's own zone: São Paulo's day turns at
// 03:00 UTC.
func TestCapResetsAtLocalMidnight(t *testing.T) {
	env := mustEnv(t, schemas.PartnerRouting{Name: "sp", Timezone: "America/Sao_Paulo"})
	s, _ := run(t, env, nil, ruleList(1, schemas.RoutingRule{ID: "r", Condition: "true", Pool: []schemas.RoutingPoolEntry{{Partner: "sp"}}, CapPerDay: map[string]int{"sp": 2}}))
	evening := time.Date(2025, 6, 2, 23, 0, 0, 0, time.UTC) // 20:00 in São Paulo
	s, _ = run(t, env, s, leadMsg("1", evening, nil), leadMsg("2", evening.Add(time.Hour), nil), leadMsg("3", evening.Add(3*time.Hour+59*time.Minute), nil))
	if got := s.Leads["3"]; got.Status != schemas.LeadUnrouted || got.Reason != schemas.UnroutedNoEligible || got.History[0].Candidates[0].Skip != schemas.SkipCap {
		t.Fatalf("third lead at 23:59 local: %+v", got)
	}
	s, _ = run(t, env, s, leadMsg("4", evening.Add(4*time.Hour), nil)) // 00:00 local
	if partnerOf(s, "4") != "sp" {
		t.Fatalf("after local midnight: %+v", s.Leads["4"])
	}
	if s.Counters["sp"]["2025-06-02"] != 2 || s.Counters["sp"]["2025-06-03"] != 1 {
		t.Fatalf("counters %v", s.Counters)
	}
	// On the 4th (local), the 2nd's counter is dropped, the 3rd's kept.
	s, _ = run(t, env, s, leadMsg("5", evening.Add(40*time.Hour), nil))
	if _, kept := s.Counters["sp"]["2025-06-02"]; kept || s.Counters["sp"]["2025-06-03"] != 1 {
		t.Fatalf("counters after two days %v", s.Counters)
	}
}

// Working hours are wall-clock time: in Lisbon 08:00 is 07:00 UTC in
// summer and 08:00 UTC in winter; the DST change of 2025-03-30 moves it.
func TestWorkingHoursAcrossDST(t *testing.T) {
	env := mustEnv(t,
		schemas.PartnerRouting{Name: "lis", Timezone: "Europe/Lisbon", WorkingHours: map[string]string{"mon-sun": "08:00-18:00"}},
		schemas.PartnerRouting{Name: "sp", Timezone: "America/Sao_Paulo", WorkingHours: map[string]string{"mon-fri": "08:00-18:00", "sat": "09:00-13:00"}})
	cases := []struct {
		partner string
		at      time.Time
		open    bool
	}{
		{"lis", time.Date(2025, 3, 29, 7, 30, 0, 0, time.UTC), false},  // Saturday, WET: 07:30 local
		{"lis", time.Date(2025, 3, 29, 8, 0, 0, 0, time.UTC), true},    // 08:00 local
		{"lis", time.Date(2025, 3, 30, 7, 0, 0, 0, time.UTC), true},    // Sunday, WEST since 01:00 UTC: 08:00 local
		{"lis", time.Date(2025, 3, 30, 6, 59, 0, 0, time.UTC), false},  // 07:59 local
		{"lis", time.Date(2025, 3, 30, 17, 0, 0, 0, time.UTC), false},  // 18:00 local: the end is exclusive
		{"lis", time.Date(2025, 10, 26, 7, 30, 0, 0, time.UTC), false}, // back to WET: 07:30 local
		{"sp", time.Date(2025, 6, 2, 11, 0, 0, 0, time.UTC), true},     // Monday 08:00 in São Paulo (UTC-3, no DST)
		{"sp", time.Date(2025, 6, 2, 10, 59, 0, 0, time.UTC), false},
		{"sp", time.Date(2025, 6, 7, 15, 59, 0, 0, time.UTC), true}, // Saturday 12:59
		{"sp", time.Date(2025, 6, 7, 16, 0, 0, 0, time.UTC), false}, // Saturday 13:00
		{"sp", time.Date(2025, 6, 8, 14, 0, 0, 0, time.UTC), false}, // Sunday
	}
	for i, c := range cases {
		t.Run(fmt.Sprint(c.partner, c.at), func(t *testing.T) {
			s, _ := run(t, env, nil, ruleList(1, schemas.RoutingRule{ID: "r", Condition: "true", Pool: []schemas.RoutingPoolEntry{{Partner: c.partner}}}),
				leadMsg(fmt.Sprint(i), c.at, nil))
			l := s.Leads[fmt.Sprint(i)]
			if got := l.Status == schemas.LeadRouted; got != c.open {
				t.Fatalf("routed %v, want %v: %+v", got, c.open, l.History)
			}
			// outside_hours routes regardless.
			s, _ = run(t, env, nil, ruleList(1, schemas.RoutingRule{ID: "r", Condition: "true", OutsideHours: true, Pool: []schemas.RoutingPoolEntry{{Partner: c.partner}}}),
				leadMsg("x", c.at, nil))
			if s.Leads["x"].Status != schemas.LeadRouted {
				t.Fatal("outside_hours: not routed")
			}
		})
	}
}

func TestFallbackChainAndCycle(t *testing.T) {
	env := mustEnv(t)
	capped := map[string]int{"a": 0, "b": 0}
	s, _ := run(t, env, nil, ruleList(3,
		schemas.RoutingRule{ID: "x", Condition: "true", Pool: []schemas.RoutingPoolEntry{{Partner: "a"}}, CapPerDay: capped, Fallback: "y"},
		schemas.RoutingRule{ID: "y", Condition: "false", Pool: []schemas.RoutingPoolEntry{{Partner: "b"}}, CapPerDay: capped, Fallback: "x"},
		schemas.RoutingRule{ID: "z", Condition: "true", Pool: []schemas.RoutingPoolEntry{{Partner: "c"}}, Fallback: "last-resort"}),
		leadMsg("1", t0, nil))
	h := s.Leads["1"].History[0]
	want := []schemas.RoutingCandidate{
		{Rule: "x", Partner: "a", Skip: schemas.SkipCap},
		{Rule: "y", Partner: "b", Skip: schemas.SkipCap}, // y's condition is not evaluated as a fallback
		{Rule: "x", Skip: schemas.SkipVisited},
		{Rule: "y", Skip: schemas.SkipNoMatch},
		{Rule: "z", Partner: "c"},
	}
	if partnerOf(s, "1") != "c" || h.Rule != "z" || !slices.Equal(h.Candidates, want) {
		t.Fatalf("decision %+v", h)
	}
	// c rejects: z's pool is exhausted, its fallback partner takes it.
	s, out := run(t, env, s, feedback("1", "c", false, t0.Add(time.Minute)))
	if partnerOf(s, "1") != "last-resort" || len(out) != 2 || out[0].Type != schemas.OutcomeRejected || out[1].Type != schemas.OutcomeRouted || out[1].Cause != schemas.CauseRejected {
		t.Fatalf("after rejection: %+v, outcomes %+v", s.Leads["1"], out)
	}
	// It rejects too: nothing left.
	s, _ = run(t, env, s, feedback("1", "last-resort", false, t0.Add(2*time.Minute)))
	if l := s.Leads["1"]; l.Status != schemas.LeadUnrouted || l.Reason != schemas.UnroutedNoEligible || !slices.Equal(l.Tried, []string{"c", "last-resort"}) {
		t.Fatalf("final %+v", l)
	}
}

func TestBlacklistConsentAndNoMatch(t *testing.T) {
	env := mustEnv(t)
	s, _ := run(t, env, nil, ruleList(1,
		schemas.RoutingRule{ID: "c", Condition: "true", Consent: "lead_sharing", Pool: []schemas.RoutingPoolEntry{{Partner: "a"}}},
		schemas.RoutingRule{ID: "r", Condition: `lead.properties.region == "RJ"`, Pool: []schemas.RoutingPoolEntry{{Partner: "b"}}}))
	bl := leadMsg("bl", t0, nil)
	bl.Input.Lead.Profile = &schemas.Profile{Blacklisted: true}
	ok := leadMsg("ok", t0, map[string]string{"region": `"SP"`})
	ok.Input.Lead.Profile = &schemas.Profile{Consent: map[string]schemas.ConsentState{"lead_sharing": {Status: schemas.ConsentGranted}}}
	s, out := run(t, env, s, bl, ok, leadMsg("none", t0, map[string]string{"region": `"SP"`}), leadMsg("err", t0, nil))
	for id, want := range map[string]string{"bl": schemas.UnroutedBlacklisted, "none": schemas.UnroutedNoMatch, "err": schemas.UnroutedNoMatch} {
		if l := s.Leads[id]; l.Status != schemas.LeadUnrouted || l.Reason != want {
			t.Errorf("%s: %+v, want unrouted %s", id, l, want)
		}
	}
	if partnerOf(s, "ok") != "a" {
		t.Errorf("ok: %+v", s.Leads["ok"])
	}
	if c := s.Leads["err"].History[0].Candidates; c[0].Skip != schemas.SkipConsent || c[1].Skip != schemas.SkipError || c[1].Error == "" {
		t.Errorf("err candidates %+v", c)
	}
	if len(out) != 4 || out[0].Type != schemas.OutcomeUnrouted || out[0].Reason != schemas.UnroutedBlacklisted {
		t.Errorf("outcomes %+v", out)
	}
}

func TestDuplicateLeadTakesNoSlot(t *testing.T) {
	env := mustEnv(t)
	s, _ := run(t, env, nil, ruleList(1, schemas.RoutingRule{ID: "r", Condition: "true", Strategy: schemas.StrategyRoundRobin,
		Pool: []schemas.RoutingPoolEntry{{Partner: "a"}, {Partner: "b"}}, CapPerDay: map[string]int{"a": 5}}),
		leadMsg("1", t0, nil))
	s, out := run(t, env, s, leadMsg("1", t0.Add(time.Minute), nil))
	if len(out) != 0 || s.Counters["a"]["2025-06-02"] != 1 || len(s.Leads["1"].History) != 1 {
		t.Fatalf("duplicate: outcomes %+v, counters %v", out, s.Counters)
	}
	s, _ = run(t, env, s, leadMsg("2", t0, nil))
	if partnerOf(s, "2") != "b" {
		t.Fatalf("the duplicate moved the cursor: %s", partnerOf(s, "2"))
	}
}

func TestReplayResendsOutbox(t *testing.T) {
	env := mustEnv(t)
	rl := ruleList(1, schemas.RoutingRule{ID: "r", Condition: "true", Strategy: schemas.StrategyRoundRobin, Pool: []schemas.RoutingPoolEntry{{Partner: "a"}, {Partner: "b"}}})
	rl.Origin = 1
	m := leadMsg("1", t0, nil)
	m.Origin = 7
	s, first := run(t, env, nil, rl, m)
	r := Apply(s, tenant, m, env)
	if !r.Replayed || r.Write || !slices.EqualFunc(r.Outcomes, first, func(a, b schemas.LeadOutcome) bool {
		return a.Type == b.Type && a.LeadID == b.LeadID && a.Partner == b.Partner && a.Attempt == b.Attempt
	}) {
		t.Fatalf("replay: %+v, first %+v", r, first)
	}
	// A tick with the same origin number is another topic: not a replay.
	tick := Message{Tick: true, Origin: 7, At: t0.UnixMilli()}
	if r := Apply(s, tenant, tick, env); r.Replayed {
		t.Fatal("a tick taken for a replay of an input")
	}
}

func TestSLAReroutesThenExhausts(t *testing.T) {
	env := mustEnv(t)
	s, _ := run(t, env, nil, ruleList(1, schemas.RoutingRule{ID: "r", Condition: "true", Strategy: schemas.StrategyFirst, SLA: "30m", MaxReroutes: 1,
		Pool: []schemas.RoutingPoolEntry{{Partner: "a"}, {Partner: "b"}, {Partner: "c"}}}),
		leadMsg("1", t0, nil))
	l := s.Leads["1"]
	if l.Deadline != t0.Add(30*time.Minute).UnixMilli() || s.Wake != l.Deadline {
		t.Fatalf("deadline %d wake %d", l.Deadline, s.Wake)
	}
	if Due(s, l.Deadline-1) || !Due(s, l.Deadline) {
		t.Fatal("Due")
	}
	// A tick before the deadline changes nothing.
	s, out := run(t, env, s, Message{Tick: true, At: l.Deadline - 1})
	if len(out) != 0 || partnerOf(s, "1") != "a" {
		t.Fatalf("early tick: %+v", out)
	}
	s, out = run(t, env, s, Message{Tick: true, At: l.Deadline})
	if partnerOf(s, "1") != "b" || len(out) != 1 || out[0].Cause != schemas.CauseSLA || s.Leads["1"].SLAReroutes != 1 {
		t.Fatalf("after the first SLA: %+v %+v", s.Leads["1"], out)
	}
	s, out = run(t, env, s, Message{Tick: true, At: s.Wake})
	if l := s.Leads["1"]; l.Status != schemas.LeadUnrouted || l.Reason != schemas.UnroutedSLAExhausted || s.Wake != 0 || len(out) != 1 {
		t.Fatalf("after the second SLA: %+v %+v", l, out)
	}
	// Acceptance in time stops the clock; feedback from another partner is ignored.
	s, _ = run(t, env, s, leadMsg("2", t0.Add(2*time.Hour), nil), feedback("2", "b", true, t0.Add(2*time.Hour+time.Minute)))
	if l := s.Leads["2"]; l.Status != schemas.LeadRouted || l.Partner != "a" {
		t.Fatalf("foreign feedback: %+v", l)
	}
	s, out = run(t, env, s, feedback("2", "a", true, t0.Add(2*time.Hour+time.Minute)), Message{Tick: true, At: t0.Add(5 * time.Hour).UnixMilli()})
	if l := s.Leads["2"]; l.Status != schemas.LeadAccepted || s.Wake != 0 || len(out) != 1 || out[0].Type != schemas.OutcomeAccepted {
		t.Fatalf("accepted: %+v %+v", l, out)
	}
}

func TestFollowUpForwardedToHolder(t *testing.T) {
	env := mustEnv(t)
	s, _ := run(t, env, nil, ruleList(1, schemas.RoutingRule{ID: "r", Condition: "true", Pool: []schemas.RoutingPoolEntry{{Partner: "a"}}}), leadMsg("1", t0, nil))
	fu := Message{At: t0.UnixMilli(), Input: &schemas.RoutingInput{Tenant: tenant, FollowUp: &schemas.LeadFollowUp{LeadID: "1", EventID: "e9", Type: "opportunity.updated"}}}
	unknown := Message{At: t0.UnixMilli(), Input: &schemas.RoutingInput{Tenant: tenant, FollowUp: &schemas.LeadFollowUp{LeadID: "nope", Type: "lead.updated"}}}
	_, out := run(t, env, s, fu, unknown)
	if len(out) != 1 || out[0].Type != schemas.OutcomeForwarded || out[0].Partner != "a" || out[0].FollowUp.EventID != "e9" {
		t.Fatalf("outcomes %+v", out)
	}
}

func TestRuleChangeKeepsOrResetsCursor(t *testing.T) {
	env := mustEnv(t)
	pool := []schemas.RoutingPoolEntry{{Partner: "a"}, {Partner: "b"}, {Partner: "c"}}
	rr := schemas.RoutingRule{ID: "r", Condition: "true", Strategy: schemas.StrategyRoundRobin, Pool: pool}
	s, _ := run(t, env, nil, ruleList(1, rr), leadMsg("1", t0, nil))
	other := schemas.RoutingRule{ID: "o", Condition: "false", Pool: pool}
	s, _ = run(t, env, s, ruleList(2, other, rr), leadMsg("2", t0, nil))
	if partnerOf(s, "2") != "b" {
		t.Fatalf("an unrelated change reset the cursor: %s", partnerOf(s, "2"))
	}
	rr.Pool = pool[:2]
	s, _ = run(t, env, s, ruleList(3, rr), leadMsg("3", t0, nil), ruleList(2, other), leadMsg("4", t0, nil))
	if partnerOf(s, "3") != "a" || partnerOf(s, "4") != "b" || s.Rules.Version != 3 {
		t.Fatalf("a new pool starts afresh, an older list is ignored: %s %s v%d", partnerOf(s, "3"), partnerOf(s, "4"), s.Rules.Version)
	}
}

func TestRetentionForgetsClosedLeads(t *testing.T) {
	env, err := NewEnv(nil, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	s, _ := run(t, env, nil, ruleList(1, schemas.RoutingRule{ID: "r", Condition: "true", Pool: []schemas.RoutingPoolEntry{{Partner: "a"}}}),
		leadMsg("1", t0, nil), feedback("1", "a", true, t0))
	s, _ = run(t, env, s, leadMsg("2", t0.Add(24*time.Hour), nil))
	if s.Leads["1"] == nil {
		t.Fatal("forgotten at exactly the retention")
	}
	s, _ = run(t, env, s, leadMsg("3", t0.Add(24*time.Hour+time.Millisecond), nil))
	if s.Leads["1"] != nil || s.Leads["2"] == nil {
		t.Fatal("retention: closed lead kept or open lead dropped")
	}
}

func TestNewEnvRefusesBadConfig(t *testing.T) {
	for _, c := range []schemas.PartnerRouting{
		{Name: "a", Timezone: "Mars/Olympus"},
		{Name: "a", WorkingHours: map[string]string{"mon-fry": "08:00-18:00"}},
		{Name: "a", WorkingHours: map[string]string{"mon": "18:00-08:00"}},
		{Name: "a", WorkingHours: map[string]string{"mon": "8:00-18:00"}},
		{Name: "a", WorkingHours: map[string]string{"mon": "08:00-24:01"}},
	} {
		if _, err := NewEnv([]schemas.PartnerRouting{c}, 0); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
	if _, err := NewEnv([]schemas.PartnerRouting{{Name: "a", Timezone: "Europe/Lisbon", WorkingHours: map[string]string{"fri-mon": "00:00-24:00", "wed": "09:00-12:00"}}}, 0); err != nil {
		t.Fatal(err)
	}
}
