package views

import (
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"

	"github.com/rolodex/rolodex/normalize"
	"github.com/rolodex/rolodex/partners"
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

// A rule tag of a group where a person set a tag is left out: the
// profile's fold saw the manual tag before the tag stage took the rule tag
// off.
func TestWithRuleTagsManualHoldsGroup(t *testing.T) {
	cfg := schemas.StatusConfig{Groups: []schemas.TagGroup{{Name: "stage", Tags: []string{"lead", "customer"}, Exclusive: true}}}
	p := &schemas.Profile{ID: "p", Tags: []schemas.ProfileTag{{Tag: "customer", Source: schemas.TagSourceManual, SinceMs: 9}}}
	st := &schemas.TagTable{Tags: map[string]schemas.HeldTag{"lead": {Cause: schemas.RuleCause("lead", 1), Since: 5}}}
	WithRuleTags(p, st, cfg)
	if len(p.Tags) != 1 || p.Tags[0].Tag != "customer" {
		t.Fatalf("tags %+v, want customer alone", p.Tags)
	}
}

type fakeTagStates struct {
	ready bool
	m     map[string]*schemas.TagTable
}

func (f *fakeTagStates) TagState(key string) (*schemas.TagTable, error) { return f.m[key], nil }
func (f *fakeTagStates) Ready() bool                                    { return f.ready }

// The profile API answers 503 not_ready while the tag view loads (rule
// tags would be missing), then the profile with its rule tags.
func TestProfileWithRuleTagsWaitsForTheTagView(t *testing.T) {
	email := id("email", "ana@example.com")
	key := schemas.NodeID("t1", email)
	nodes := &memNodes{ready: true, m: map[string]*schemas.Node{
		key: {Tenant: "t1", Identifier: email, Own: schemas.Contribution{Node: key, Identifier: email, Version: 1, FirstSeen: 1000, LastSeen: 1000}},
	}}
	reg, err := partners.New([]partners.Partner{{Name: "p1", Tenant: "t1", Keys: []string{"key-of-t1"}}})
	if err != nil {
		t.Fatal(err)
	}
	norm, err := normalize.New(normalize.Config{})
	if err != nil {
		t.Fatal(err)
	}
	tags := &fakeTagStates{m: map[string]*schemas.TagTable{key: {Tags: map[string]schemas.HeldTag{"hot": {Cause: schemas.RuleCause("hot", 3), Since: 2000}}}}}
	api, err := NewAPI(nodes, reg, norm, Config{Publisher: noPublisher{}, RuleTags: tags})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	api.Register(mux)
	get := func() (int, string) {
		req := httptest.NewRequest(http.MethodGet, "/v1/profiles/"+key, nil)
		req.Header.Set("Authorization", "Bearer key-of-t1")
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, req)
		return rec.Code, rec.Body.String()
	}
	if code, body := get(); code != http.StatusServiceUnavailable || !strings.Contains(body, "not_ready") {
		t.Fatalf("while the tag view loads: %d %s", code, body)
	}
	tags.ready = true
	if code, body := get(); code != http.StatusOK || !strings.Contains(body, `"source": "rule"`) || !strings.Contains(body, `"rule": "hot"`) {
		t.Fatalf("once loaded: %d %s", code, body)
	}
}
