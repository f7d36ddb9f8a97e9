package tags

import (
	"math/rand"
	"testing"
	"time"

	"github.com/rolodex/rolodex/rules"
	"github.com/rolodex/rolodex/schemas"
)

// allTimes is every kept event time of a snapshot, converted: what the
// rules engine would read without RuleSet.times.
func allTimes(et map[string][]int64) map[string][]time.Time {
	out := map[string][]time.Time{}
	for typ, ts := range et {
		for _, t := range ts {
			out[typ] = append(out[typ], time.UnixMilli(t))
		}
	}
	return out
}

// TestRuleSetTimesDecideTheSame: the event times RuleSet.times keeps (the
// types the rules name, inside their longest window, and the newest) give
// every rule the result and the next change it gets from all of them.
func TestRuleSetTimesDecideTheSame(t *testing.T) {
	conds := []string{
		`events("a", duration("168h")) >= 3`,
		`events("a", duration("24h")) > 1 && events("a", duration("720h")) < 10`,
		`last("a") < now - duration("72h")`,
		`last("b") > now - duration("1h") || events("c", duration("2h")) == 2`,
		`events("b", duration("1ms")) >= 1`,
		`last("d") < now`,
	}
	var recs []schemas.TagRule
	for i, c := range conds {
		recs = append(recs, schemas.TagRule{Tenant: "t", ID: string(rune('a' + i)), Tag: "x", Condition: c, Enabled: true, Version: 1})
	}
	rs, errs := NewRuleSet(recs)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	r := rand.New(rand.NewSource(1))
	const hour = int64(time.Hour / time.Millisecond)
	for n := 0; n < 2000; n++ {
		now := int64(1_800_000_000_000) + r.Int63n(hour)
		et := map[string][]int64{}
		for _, typ := range []string{"a", "b", "c", "d", "unread"} {
			k := r.Intn(12)
			t := now + r.Int63n(2*hour) - hour // some in the future
			for range k {
				et[typ] = append(et[typ], t)
				t -= r.Int63n(48 * hour)
			}
		}
		p := &schemas.Profile{ID: "p", Tenant: "t", EventTimes: et}
		at := time.UnixMilli(now)
		full := rules.FromProfile(p, allTimes(et), at)
		kept := rules.FromProfile(p, rs.times("t", et, now), at)
		if _, ok := kept.Times["unread"]; ok {
			t.Fatal("times of a type no rule reads were converted")
		}
		for _, rule := range rs.Active("t") {
			want, err1 := rule.Program.Eval(full)
			got, err2 := rule.Program.Eval(kept)
			if err1 != nil || err2 != nil || got != want {
				t.Fatalf("%s at %d on %v: %v (%v) with the kept times, %v (%v) with all", rule.Condition, now, et, got, err2, want, err1)
			}
			wantAt, wantOK := rule.Program.NextChange(full)
			gotAt, gotOK := rule.Program.NextChange(kept)
			if !gotAt.Equal(wantAt) || gotOK != wantOK {
				t.Fatalf("%s at %d on %v: next change %v %v with the kept times, %v %v with all", rule.Condition, now, et, gotAt, gotOK, wantAt, wantOK)
			}
		}
	}
}
