package reference

import (
	"encoding/json"
	"reflect"
	"slices"
	"strconv"
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

// EventTimes: per type, newest first, equal times repeated, the latest
// schemas.EventTimesLimit; Options.EventTimes puts them on the profiles.
func TestEventTimes(t *testing.T) {
	at := func(s int) time.Time { return time.Date(2026, 11, 1, 0, 0, s, 0, time.UTC) }
	ms := func(s int) int64 { return at(s).UnixMilli() }
	ev := func(eid, typ string, s int, ids ...schemas.Identifier) *schemas.Event {
		return &schemas.Event{Tenant: "t1", ID: eid, Type: typ, Source: "web", Time: at(s), Identifiers: ids}
	}
	if got := EventTimes(nil); got != nil {
		t.Fatalf("EventTimes(nil) = %v, want nil", got)
	}
	var evs []*schemas.Event
	var views []int64
	for i := range schemas.EventTimesLimit + 30 {
		s := (i * 7) % 200 // out of order, some equal
		evs = append(evs, ev("v"+strconv.Itoa(i), "page.viewed", s))
		views = append(views, ms(s))
	}
	evs = append(evs, ev("b1", "purchase.completed", 5), ev("b2", "purchase.completed", 9), ev("b3", "purchase.completed", 5))
	slices.Sort(views)
	slices.Reverse(views)
	want := map[string][]int64{"page.viewed": views[:schemas.EventTimesLimit], "purchase.completed": {ms(9), ms(5), ms(5)}}
	if got := EventTimes(evs); !reflect.DeepEqual(got, want) {
		t.Fatalf("EventTimes =\n %v\nwant\n %v", got, want)
	}

	u1, u2 := schemas.Identifier{Type: "user_id", Value: "u1"}, schemas.Identifier{Type: "user_id", Value: "u2"}
	with, without := NewIdentityWith(Options{EventTimes: true}), NewIdentity()
	for _, m := range []*Identity{with, without} {
		m.Add(ev("a", "page.viewed", 3, u1))
		m.Add(ev("b", "page.viewed", 8, u2))
		m.Add(ev("a", "page.viewed", 3, u1)) // a re-send counts once
		m.Add(ev("c", "form.submitted", 1, u2, u1))
	}
	root := with.Root(schemas.NodeID("t1", u1))
	if got, want := with.Profile(root).EventTimes, map[string][]int64{"page.viewed": {ms(8), ms(3)}, "form.submitted": {ms(1)}}; !reflect.DeepEqual(got, want) {
		t.Fatalf("profile event times = %v, want %v", got, want)
	}
	if got := EventTimes(with.Events(root)); !reflect.DeepEqual(got, with.Profile(root).EventTimes) {
		t.Fatalf("EventTimes(Events(root)) = %v, the profile has %v", got, with.Profile(root).EventTimes)
	}
	if got := without.Profile(root).EventTimes; got != nil {
		t.Fatalf("without Options.EventTimes the profile has %v", got)
	}
	if with.Events("p_nobody") != nil {
		t.Fatal("Events of no root is not nil")
	}
}
