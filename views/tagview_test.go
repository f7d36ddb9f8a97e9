package views

import (
	"reflect"
	"testing"

	"github.com/rolodex/rolodex/schemas"
)

// The profile the API returns carries the rule tags of the tag stage's
// state, with their rule, next to its own tags; a default tag displaced
// by a rule tag of its exclusive group is gone.
func TestWithRuleTags(t *testing.T) {
	cfg := schemas.StatusConfig{Default: []string{"new", "lead"}, Groups: []schemas.TagGroup{{Name: "stage", Tags: []string{"lead", "customer"}, Exclusive: true}}}
	p := &schemas.Profile{ID: "p", Tags: []schemas.ProfileTag{
		{Tag: "lead", Source: schemas.TagSourceDefault, SinceMs: 1},
		{Tag: "new", Source: schemas.TagSourceDefault, SinceMs: 1},
		{Tag: "vip", Source: schemas.TagSourceManual, SinceMs: 5},
	}}
	st := &schemas.TagTable{Tags: map[string]schemas.HeldTag{
		"new":      {Cause: schemas.TagSourceDefault, Since: 1},
		"vip":      {Cause: schemas.TagSourceManual, Since: 5},
		"hot":      {Cause: schemas.RuleCause("hot-7d", 2), Since: 9},
		"customer": {Cause: schemas.RuleCause("buyer", 1), Since: 8},
	}}
	WithRuleTags(p, st, cfg)
	var got []string
	for _, t := range p.Tags {
		got = append(got, t.Tag+"/"+t.Source+"/"+t.Rule)
	}
	want := []string{"customer/rule/buyer", "hot/rule/hot-7d", "new/default/", "vip/manual/"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("tags %v, want %v", got, want)
	}
	if p.Tags[1].Since != "1970-01-01T00:00:00.009Z" || p.Tags[1].SinceMs != 9 {
		t.Fatalf("since %+v", p.Tags[1])
	}
	// No tag state (the tag stage has not seen the profile): unchanged.
	q := &schemas.Profile{Tags: []schemas.ProfileTag{{Tag: "new", Source: schemas.TagSourceDefault}}}
	WithRuleTags(q, nil, cfg)
	if len(q.Tags) != 1 {
		t.Fatalf("without a state: %v", q.Tags)
	}
}
