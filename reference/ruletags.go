package reference

import (
	"sort"
	"time"

	"github.com/rolodex/rolodex/rules"
	"github.com/rolodex/rolodex/schemas"
)

// RuleTags is the offline model of a profile's tags at an instant
// (docs/tags.md, "Semantics"): from its profile (status tags, traits,
// counters, consent: what the identity model folds), every event time of
// the profile (all of them, not the latest 100: comparing with it checks
// that the bound is exact), the tenant's rules, the exclusive groups and
// the clock. prev is the outcome of each rule at the previous evaluation
// (a rule that fails keeps it); RuleTags returns the new outcomes too.
//
// It is written without the tag stage's types, so comparing with it checks
// them.
func RuleTags(p *schemas.Profile, events map[string][]int64, rs []schemas.TagRule, groups []schemas.TagGroup, now int64, prev map[string]bool) (map[string]bool, map[string]bool) {
	tags := map[string]bool{}
	status := map[string]string{} // tag → source
	for _, t := range p.Tags {
		tags[t.Tag] = true
		status[t.Tag] = t.Source
	}
	all := map[string][]time.Time{}
	for typ, ts := range events {
		l := make([]time.Time, len(ts))
		for i, t := range ts {
			l[i] = time.UnixMilli(t)
		}
		sort.Slice(l, func(i, j int) bool { return l[i].After(l[j]) })
		all[typ] = l
	}
	in := rules.FromProfile(p, all, time.UnixMilli(now))
	sorted := append([]schemas.TagRule(nil), rs...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].ID < sorted[j].ID })
	outcome := map[string]bool{}
	ruleOf := map[string]string{} // tag → smallest rule id that holds it
	for _, r := range sorted {
		if !r.Active() {
			continue
		}
		prog, err := rules.Compile(r.Condition)
		if err != nil {
			continue
		}
		on, err := prog.Eval(in)
		if err != nil {
			on = prev[r.ID]
		}
		outcome[r.ID] = on
		if on {
			if _, ok := ruleOf[r.Tag]; !ok {
				ruleOf[r.Tag] = r.ID
			}
		}
	}
	for _, g := range groups {
		if !g.Exclusive {
			continue
		}
		in := map[string]bool{}
		for _, t := range g.Tags {
			in[t] = true
		}
		var person, def string
		for t, src := range status {
			if !in[t] {
				continue
			}
			if src == schemas.TagSourceDefault {
				def = t
			} else {
				person = t
			}
		}
		win := ""
		for t, id := range ruleOf {
			if in[t] && (win == "" || id < ruleOf[win]) {
				win = t
			}
		}
		if win == "" {
			continue
		}
		for t := range ruleOf {
			if !in[t] {
				continue
			}
			if (person != "" && t != person) || (person == "" && t != win) {
				delete(ruleOf, t)
			}
		}
		if person == "" && def != "" && def != win {
			delete(tags, def)
		}
	}
	for t := range ruleOf {
		tags[t] = true
	}
	return tags, outcome
}
