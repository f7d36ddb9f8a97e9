package reference

import (
	"reflect"
	"testing"
	"time"

	"github.com/rolodex/rolodex/schemas"
)

// A tenant's two people merge on day 2; a re-sent event counts once; the
// other tenant's person is new on day 2 only.
func TestReports(t *testing.T) {
	day := func(d int) time.Time { return time.Date(2026, 11, d, 12, 0, 0, 0, time.UTC) }
	id := func(typ, v string) schemas.Identifier { return schemas.Identifier{Type: typ, Value: v} }
	a, b := id("email", "a@example.com"), id("user_id", "b")
	evs := []*schemas.Event{
		{Tenant: "t1", ID: "e1", Type: "page.viewed", Source: "web", Time: day(1), Identifiers: []schemas.Identifier{a}},
		{Tenant: "t1", ID: "e2", Type: "page.viewed", Source: "web", Time: day(1), Identifiers: []schemas.Identifier{b}},
		{Tenant: "t1", ID: "e3", Type: "signup", Source: "app", Time: day(2), Identifiers: []schemas.Identifier{b, a}},
		{Tenant: "t1", ID: "e3", Type: "signup", Source: "app", Time: day(2), Identifiers: []schemas.Identifier{b, a}},
		{Tenant: "t2", ID: "e1", Type: "page.viewed", Source: "web", Time: day(2), Identifiers: []schemas.Identifier{a}},
	}
	m := NewIdentity()
	for _, e := range evs {
		m.Add(e)
	}
	got := m.Reports(evs)
	want := Reports{
		// Both t1 events of day 1 are now on the one merged profile.
		Activity: [][]string{
			{"2026-11-01", "t1", "web", "page.viewed", "2", "1"},
			{"2026-11-02", "t1", "app", "signup", "1", "1"},
			{"2026-11-02", "t2", "web", "page.viewed", "1", "1"},
		},
		Profiles: [][]string{
			{"2026-11-01", "t1", "1", "1", "0"},
			{"2026-11-02", "t1", "1", "0", "1"},
			{"2026-11-02", "t2", "1", "1", "0"},
		},
		Merges: map[string]int{"t1": 1, "t2": 0},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Reports:\n got %+v\nwant %+v", got, want)
	}
}
