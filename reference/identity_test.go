package reference

import (
	"encoding/json"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/rolodex/rolodex/schemas"
)

func TestIdentity(t *testing.T) {
	at := func(h int) time.Time { return time.Date(2026, 11, 1, h, 0, 0, 0, time.UTC) }
	id := func(typ, v string) schemas.Identifier { return schemas.Identifier{Type: typ, Value: v} }
	email, u1, u2 := id("email", "a@example.com"), id("user_id", "u1"), id("user_id", "u2")
	ev := func(tenant, eid string, h int, traits map[string]string, ids ...schemas.Identifier) *schemas.Event {
		return &schemas.Event{Tenant: tenant, ID: eid, Type: "page.viewed", Source: "web", Time: at(h), Identifiers: ids, Traits: traits}
	}
	nEmail, nU1, nU2, nOther := schemas.NodeID("t1", email), schemas.NodeID("t1", u1), schemas.NodeID("t1", u2), schemas.NodeID("t2", u1)
	nodes := []string{nEmail, nU1, nU2}
	slices.Sort(nodes)
	root := nodes[0]

	m := NewIdentity()
	steps := []struct {
		ev   *schemas.Event
		want Step
	}{
		{ev("t1", "e1", 10, map[string]string{"city": `"A"`}, email, u1), Step{
			New: []string{nEmail, nU1}, Applied: true,
			Merges:  []Merge{{From: max(nEmail, nU1), Into: min(nEmail, nU1)}},
			Changed: []string{min(nEmail, nU1)},
		}},
		{ev("t1", "e2", 9, map[string]string{"city": `"B"`}, u2), Step{New: []string{nU2}, Applied: true, Changed: []string{nU2}}},
		{ev("t1", "e1", 10, nil, email, u1), Step{Changed: []string{}}}, // a re-send
		{ev("t1", "e3", 11, nil, email, u2), Step{
			Applied: true,
			Merges:  []Merge{{From: max(min(nEmail, nU1), nU2), Into: root}},
			Changed: []string{root},
		}},
		{ev("t2", "e4", 12, nil, u1), Step{New: []string{nOther}, Applied: true, Changed: []string{nOther}}},
	}
	for _, s := range steps {
		if got := m.Add(s.ev); !reflect.DeepEqual(got, s.want) {
			t.Fatalf("Add(%s) = %+v, want %+v", s.ev.ID, got, s.want)
		}
	}

	for _, n := range nodes {
		if got := m.Root(n); got != root {
			t.Errorf("Root(%s) = %s, want %s", n, got, root)
		}
	}
	if got := m.Root("unknown"); got != "" {
		t.Errorf("Root of an unknown node = %q, want \"\"", got)
	}
	if got, want := m.Nodes(), append(slices.Clone(nodes), nOther); !slices.Equal(got, slices.Sorted(slices.Values(want))) {
		t.Errorf("Nodes() = %v, want %v", got, want)
	}

	profiles := m.Profiles()
	if len(profiles) != 2 || profiles[nOther] == nil {
		t.Fatalf("%d profiles, want the merged one and the other tenant's", len(profiles))
	}
	want := &schemas.Profile{
		ID: root, Tenant: "t1", MergedIDs: nodes[1:],
		Identifiers: map[string][]string{"email": {"a@example.com"}, "user_id": {"u1", "u2"}},
		Traits:      map[string]json.RawMessage{"city": json.RawMessage(`"A"`)}, // the newest value wins
		FirstSeen:   "2026-11-01T09:00:00Z", LastSeen: "2026-11-01T11:00:00Z",
		EventCount: 3, Counters: map[string]int64{"page.viewed": 3},
		Recent: []schemas.RecentEvent{
			{ID: "e3", Type: "page.viewed", Source: "web", Time: "2026-11-01T11:00:00Z"},
			{ID: "e1", Type: "page.viewed", Source: "web", Time: "2026-11-01T10:00:00Z"},
			{ID: "e2", Type: "page.viewed", Source: "web", Time: "2026-11-01T09:00:00Z"},
		},
		// No status events, no tag configuration: no status, and the
		// email is a channel.
		Tags: []schemas.ProfileTag{}, Consent: map[string]schemas.ConsentState{}, InvalidIdentifiers: []schemas.InvalidIdentifier{},
		Channels: map[string][]string{"email": {"a@example.com"}},
	}
	for name, got := range map[string]*schemas.Profile{"Profiles": profiles[root], "Profile": m.Profile(root)} {
		if !reflect.DeepEqual(got, want) {
			gj, _ := json.Marshal(got)
			wj, _ := json.Marshal(want)
			t.Errorf("%s: profile %s:\n got %s\nwant %s", name, root, gj, wj)
		}
	}
	if p := m.Profile(nodes[1]); p != nil {
		t.Errorf("Profile of a merged-away node = %+v, want nil", p)
	}
	if p := m.Fold([]string{nU2}); p.ID != nU2 || p.EventCount != 1 || len(p.MergedIDs) != 0 {
		t.Errorf("Fold of one node: %+v, want its own profile with its one event", p)
	}
}
