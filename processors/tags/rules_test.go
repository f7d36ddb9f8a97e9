package tags

import (
	"encoding/json"
	"fmt"
	"math/rand"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/rolodex/rolodex/reference"
	"github.com/rolodex/rolodex/schedule"
	"github.com/rolodex/rolodex/schemas"
)

const day = int64(24 * time.Hour / time.Millisecond)

// "new" is a default tag; the rule tag "newbie" displaces it in "life".
var testGroups = []schemas.TagGroup{
	{Name: "stage", Tags: []string{"lead", "customer", "churned"}, Exclusive: true},
	{Name: "life", Tags: []string{"new", "newbie"}, Exclusive: true},
}

// ruleVariants are the rules the property test turns on, off and changes.
var ruleVariants = map[string][]string{
	"hot":     {`events("a", duration("168h")) >= 3`, `events("a", duration("72h")) >= 2`},
	"lapsed":  {`counters["b"] > 0 && last("b") < now - duration("240h")`, `last("b") < now - duration("120h")`},
	"lead":    {`events("b", duration("72h")) >= 1`, `events("b", duration("48h")) > 1`},
	"churned": {`now - last_seen > duration("96h")`},
	"mkt":     {`consent["marketing"] == "granted"`},
	"newbie":  {`now - first_seen < duration("48h") && !blacklisted`},
	"broken":  {`traits.city == "x"`},
	"many":    {`events("a", duration("2400h")) >= 100`, `events("a", duration("2400h")) > 99`},
}

// ruleTag is the tag each test rule sets; "lead" and "churned" are in the
// exclusive group stage, with the manual "customer".
var ruleTag = map[string]string{"hot": "hot", "lapsed": "lapsed", "lead": "lead", "churned": "churned", "mkt": "mkt", "newbie": "newbie", "broken": "broken", "many": "many"}

func randomRules(r *rand.Rand, old []schemas.TagRule) []schemas.TagRule {
	byID := map[string]schemas.TagRule{}
	for _, x := range old {
		byID[x.ID] = x
	}
	var out []schemas.TagRule
	for _, id := range schemas.SortedKeys(ruleVariants) {
		x, had := byID[id]
		if !had && r.Intn(3) == 0 {
			continue
		}
		cond := ruleVariants[id][r.Intn(len(ruleVariants[id]))]
		enabled := r.Intn(6) != 0
		deleted := had && r.Intn(8) == 0
		if had && x.Condition == cond && x.Enabled == enabled && !deleted {
			out = append(out, x)
			continue
		}
		out = append(out, schemas.TagRule{Tenant: "t", ID: id, Tag: ruleTag[id], Condition: cond, Enabled: enabled, Deleted: deleted, Version: x.Version + 1})
	}
	return out
}

type simEvent struct {
	ev  *schemas.Event
	key string // the profile whose node it belongs to
}

// TestRuleTagsMatchReference runs the tag stage's logic (Apply, Visit, the
// scheduler) over random profiles whose events arrive shuffled, some twice,
// with a merge, rule changes and crashes in the middle of the stream, on a
// controllable clock, and checks at every step that each profile's tags
// are the reference model's at that instant, and that the records written
// (distinct, as the sink keeps them) take each profile through exactly its
// changes: an add only of a tag that is off, a remove only of one that is
// on, ending at the state's tags.
func TestRuleTagsMatchReference(t *testing.T) {
	seeds := int64(150)
	if testing.Short() {
		seeds = 40
	}
	for seed := int64(1); seed <= seeds; seed++ {
		t.Run(strconv.FormatInt(seed, 10), func(t *testing.T) { ruleTagsSeed(t, seed) })
	}
}

func ruleTagsSeed(t *testing.T, seed int64) {
	r := rand.New(rand.NewSource(seed))
	status := schemas.StatusConfig{Default: []string{"new"}, Groups: testGroups}
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	clock := base
	keys := []string{"p_a", "p_b", "p_c"}
	// Events: their times spread over 30 days; they arrive in random
	// order, at most 5 days late, a few twice.
	var pending []simEvent
	for i := 0; i < 60+r.Intn(80); i++ {
		key := keys[r.Intn(len(keys))]
		at := base + r.Int63n(30*day)
		ev := &schemas.Event{ID: fmt.Sprintf("e%d", i), Tenant: "t", Source: "crm", Time: time.UnixMilli(at).UTC()}
		switch x := r.Intn(20); {
		case x < 9:
			ev.Type = "a"
		case x < 15:
			ev.Type = "b"
		case x < 17:
			ev.Type = schemas.EventTagAdded
			ev.Properties = map[string]string{"tag": strconv.Quote([]string{"customer", "vip", "lead"}[r.Intn(3)])}
		case x < 18:
			ev.Type = schemas.EventTagRemoved
			ev.Properties = map[string]string{"tag": strconv.Quote([]string{"customer", "new"}[r.Intn(2)])}
		default:
			ev.Type = schemas.EventConsentGranted
			exp := time.UnixMilli(at + r.Int63n(6*day)).UTC().Format(time.RFC3339Nano)
			ev.Properties = map[string]string{"purpose": `"marketing"`, "expires_at": strconv.Quote(exp)}
		}
		pending = append(pending, simEvent{ev, key})
	}
	sort.Slice(pending, func(i, j int) bool { return pending[i].ev.Time.Before(pending[j].ev.Time) })
	for i := range pending { // a little out of order
		j := i + r.Intn(4)
		if j < len(pending) {
			pending[i], pending[j] = pending[j], pending[i]
		}
	}
	var arrivals []simEvent
	for _, e := range pending {
		arrivals = append(arrivals, e)
		if r.Intn(10) == 0 {
			arrivals = append(arrivals, e)
		}
	}

	// The identity side: one node per key; p_b may merge into p_a.
	nodes := map[string]*schemas.Node{}
	for _, k := range keys {
		nodes[k] = &schemas.Node{Tenant: "t", Identifier: schemas.Identifier{Type: "email", Value: k + "@x.com"}, Own: schemas.Contribution{Node: k, Identifier: schemas.Identifier{Type: "email", Value: k + "@x.com"}}}
	}
	seen := map[string]bool{}
	mergedInto := map[string]string{}
	mergeAt := -1
	if r.Intn(2) == 0 {
		mergeAt = r.Intn(len(arrivals))
	}
	eventsOf := map[string][]*schemas.Event{} // per node
	rootOf := func(k string) string {
		if m, ok := mergedInto[k]; ok {
			return m
		}
		return k
	}

	// The stage.
	var rs []schemas.TagRule
	var ruleSet *RuleSet
	env := &Env{Groups: NewGroups(status)}
	setRules := func(next []schemas.TagRule) {
		rs = next
		var errs []error
		ruleSet, errs = NewRuleSet(append([]schemas.TagRule(nil), rs...))
		if len(errs) > 0 {
			t.Fatal(errs)
		}
		env = &Env{Rules: ruleSet, Groups: NewGroups(status)}
	}
	setRules(randomRules(r, nil))
	states := map[string]*State{}
	sched := schedule.New()
	records := map[string][]schemas.TagChange{}
	distinct := map[schemas.TagChange]bool{}
	offsets := map[bool]int64{} // per topic (tick or not): the latest offset
	refPrev := map[string]map[string]bool{}

	var deliver func(key string, m Message)
	deliver = func(key string, m Message) {
		offsets[m.Tick]++
		m.Origin = offsets[m.Tick]
		for attempt := 0; ; attempt++ {
			before := states[key]
			res := Apply(before, key, m, env)
			crash := attempt < 2 && r.Intn(8) == 0
			keepState := !crash || r.Intn(2) == 0
			keepOut := len(res.Changes)
			if crash {
				keepOut = r.Intn(len(res.Changes) + 1)
			}
			for _, c := range res.Changes[:keepOut] {
				if !distinct[c] {
					distinct[c] = true
					records[key] = append(records[key], c)
				}
			}
			if res.Write && !res.Replayed && keepState {
				states[key] = res.State
			}
			if !crash {
				if res.State != nil {
					sched.Set(key, res.State.Wake)
				}
				return
			}
			// A crash: the message is delivered again, with its origin.
		}
	}
	runTicks := func() {
		for round := 0; ; round++ {
			if round > 10000 {
				t.Fatalf("wakes keep coming due at +%dms: the ticks do not move them", clock-base)
			}
			due := sched.Pop(clock, 1<<30)
			if len(due) == 0 {
				return
			}
			for _, w := range due {
				deliver(w.Key, Message{Tick: true, At: w.At})
			}
		}
	}
	snapshot := func(k string) {
		root := rootOf(k)
		p := schemas.FoldWith(root, nodes[root], &schemas.FoldOptions{Status: status, Now: time.UnixMilli(clock), EventTimes: true})
		deliver(root, Message{Snapshot: p, At: clock})
	}
	check := func(step string) {
		for _, k := range keys {
			s := states[k]
			if _, merged := mergedInto[k]; merged {
				if s != nil && len(s.Tags) > 0 {
					t.Fatalf("%s: merged-away %s still holds %v", step, k, s.Tags)
				}
				continue
			}
			if s == nil || s.Profile == nil {
				continue
			}
			var evTimes = map[string][]int64{}
			for _, n := range append([]string{k}, mergedFrom(mergedInto, k)...) {
				for _, e := range eventsOf[n] {
					evTimes[e.Type] = append(evTimes[e.Type], e.Time.UnixMilli())
				}
			}
			p := schemas.FoldWith(k, nodes[k], &schemas.FoldOptions{Status: status, Now: time.UnixMilli(clock)})
			want, outcome := reference.RuleTags(p, evTimes, rs, testGroups, clock, refPrev[k])
			refPrev[k] = outcome
			got := map[string]bool{}
			for tag := range s.Tags {
				got[tag] = true
			}
			if missing, extra := diffSets(want, got); len(missing)+len(extra) > 0 {
				t.Fatalf("%s at +%dms, %s: missing %v, extra %v\nrules %+v\nstate %+v", step, clock-base, k, missing, extra, rs, s)
			}
		}
	}

	for i, a := range arrivals {
		clock = max(clock, a.ev.Time.UnixMilli()) + r.Int63n(day/2)
		runTicks()
		if i == mergeAt {
			// p_b merges into p_a: p_a's root holds p_b's contribution,
			// p_b's id says where it went.
			mergedInto["p_b"] = "p_a"
			nodes["p_a"].Members = map[string]schemas.Contribution{"p_b": nodes["p_b"].Own}
			deliver("p_b", Message{Snapshot: &schemas.Profile{ID: "p_b", Tenant: "t", MergedInto: "p_a"}, At: clock})
			snapshot("p_a")
		}
		if !seen[a.ev.ID] {
			seen[a.ev.ID] = true
			n := nodes[a.key]
			n.Own.Add(a.ev)
			eventsOf[a.key] = append(eventsOf[a.key], a.ev)
			if root := rootOf(a.key); root != a.key {
				nodes[root].Members[a.key] = n.Own
			}
		}
		snapshot(a.key)
		if r.Intn(15) == 0 {
			// A rule change: every instance visits its profiles.
			setRules(randomRules(r, rs))
			for _, k := range keys {
				if at, ok := Visit(states[k], k, clock, env); ok {
					deliver(k, Message{Tick: true, At: at})
				}
			}
		}
		check(fmt.Sprintf("after arrival %d (%s)", i, a.ev.Type))
	}
	// Time passes with no event: tags leave their windows on their own.
	for i := 0; i < 12; i++ {
		clock += r.Int63n(3 * day)
		runTicks()
		check(fmt.Sprintf("quiet step %d", i))
	}
	// The records take each profile through its changes, ending at its
	// tags.
	for _, k := range keys {
		on := map[string]bool{}
		for _, c := range records[k] {
			switch c.Op {
			case schemas.TagAdded:
				if on[c.Tag] {
					t.Fatalf("%s: %s added twice: %v", k, c.Tag, records[k])
				}
				on[c.Tag] = true
			case schemas.TagRemoved:
				if !on[c.Tag] {
					t.Fatalf("%s: %s removed while off: %v", k, c.Tag, records[k])
				}
				delete(on, c.Tag)
			}
		}
		want := map[string]bool{}
		if s := states[k]; s != nil {
			for tag := range s.Tags {
				want[tag] = true
			}
		}
		if missing, extra := diffSets(want, on); len(missing)+len(extra) > 0 {
			t.Fatalf("%s: records end at %v, the state holds %v", k, on, want)
		}
	}
}

func mergedFrom(mergedInto map[string]string, root string) []string {
	var out []string
	for k, r := range mergedInto {
		if r == root {
			out = append(out, k)
		}
	}
	return out
}

// A rule that fails at run time leaves its tag as it was, and writes one
// audit record when a version starts failing on a profile: not one per
// evaluation, again for a new version, and again on a replay of the
// message that made it.
func TestRuleFailureAudit(t *testing.T) {
	rules := func(v int64, cond string) *Env {
		rs, errs := NewRuleSet([]schemas.TagRule{{Tenant: "t", ID: "city", Tag: "campinas", Condition: cond, Enabled: true, Version: v}})
		if len(errs) > 0 {
			t.Fatal(errs)
		}
		return &Env{Rules: rs}
	}
	withCity := &schemas.Profile{ID: "p", Tenant: "t", Traits: map[string]json.RawMessage{"city": json.RawMessage(`"Campinas"`)}}
	without := &schemas.Profile{ID: "p", Tenant: "t"}
	env := rules(1, `traits.city == "Campinas"`)
	r := Apply(nil, "p", Message{Snapshot: withCity, Origin: 1, At: 10}, env)
	if len(r.Changes) != 1 || r.Changes[0].Op != schemas.TagAdded || len(r.Failures) != 0 {
		t.Fatalf("with the trait: %+v %+v", r.Changes, r.Failures)
	}
	// The trait goes (a later snapshot without it): the tag stays, one
	// failure record.
	r = Apply(r.State, "p", Message{Snapshot: without, Origin: 2, At: 20}, env)
	want := schemas.RuleFailure{Tenant: "t", Profile: "p", Rule: "city", Version: 1, Tag: "campinas", Error: "rules: evaluate: no such key: city", Time: 20}
	if len(r.Changes) != 0 || len(r.Failures) != 1 || r.Failures[0] != want {
		t.Fatalf("failing: %+v %+v", r.Changes, r.Failures)
	}
	if _, on := r.State.Tags["campinas"]; !on {
		t.Fatal("the tag did not stay")
	}
	failed := r.State
	// A replay sends the record again; a later evaluation does not.
	if again := Apply(failed, "p", Message{Snapshot: without, Origin: 2, At: 20}, env); !again.Replayed || len(again.Failures) != 1 || again.Failures[0] != want {
		t.Fatalf("replay: %+v", again)
	}
	r = Apply(failed, "p", Message{Snapshot: without, Origin: 3, At: 30}, env)
	if len(r.Failures) != 0 {
		t.Fatalf("still failing: %+v", r.Failures)
	}
	// A new version that fails too: a record of its own.
	r = Apply(r.State, "p", Message{Tick: true, Origin: 1, At: 40}, rules(2, `traits.city == "Recife"`))
	if len(r.Failures) != 1 || r.Failures[0].Version != 2 {
		t.Fatalf("new version: %+v", r.Failures)
	}
}
