package reference

import (
	"sort"
	"strconv"
	"strings"

	"github.com/rolodex/rolodex/schemas"
)

// Reports is what the ClickHouse report views must show for a set of
// accepted events: the rows of "rolodex report activity" and "rolodex
// report profiles" as text, and the merges per tenant.
type Reports struct {
	// Activity rows: day, tenant, source, type, events, profiles; sorted.
	Activity [][]string
	// Profiles rows: day, tenant, active, new, returning; sorted.
	Profiles [][]string
	// Merges counts the nodes merged away into another, per tenant.
	Merges map[string]int
}

// Reports computes the reports of events, every one of which m has folded
// in. An event counts once per (tenant, source, id), the key of ClickHouse's
// events table, however often it was delivered; its day is the UTC date of
// its time, and its profile that of its primary node.
func (m *Identity) Reports(events []*schemas.Event) Reports {
	var counted []ReportEvent
	seen := map[[3]string]bool{}
	for _, e := range events {
		key := [3]string{e.Tenant, e.Source, e.ID}
		if seen[key] {
			continue
		}
		seen[key] = true
		counted = append(counted, ReportEvent{Day: e.Time.UTC().Format("2006-01-02"), Tenant: e.Tenant, Source: e.Source,
			Type: e.Type, Profile: m.Root(e.Key())})
	}
	r := Reports{Merges: map[string]int{}}
	r.Activity, r.Profiles = ReportRows(counted)
	for root, nodes := range m.members {
		r.Merges[m.tenant[root]] += len(nodes) - 1
	}
	return r
}

// ReportEvent is an event as the reports count it: on its day, under its
// profile.
type ReportEvent struct{ Day, Tenant, Source, Type, Profile string }

// ReportRows returns the rows of reports activity (day, tenant, source,
// type, events, profiles) and profiles (day, tenant, active, new,
// returning) over events, each counted once, sorted. A profile is new on
// its first day over all events, returning on a later one.
func ReportRows(events []ReportEvent) (activity, profiles [][]string) {
	type act struct{ day, tenant, source, typ string }
	type pd struct{ tenant, profile string }
	counts, people := map[act]int{}, map[act]map[string]bool{}
	days, first := map[pd]map[string]bool{}, map[pd]string{}
	for _, e := range events {
		k := act{e.Day, e.Tenant, e.Source, e.Type}
		counts[k]++
		if people[k] == nil {
			people[k] = map[string]bool{}
		}
		people[k][e.Profile] = true
		p := pd{e.Tenant, e.Profile}
		if days[p] == nil {
			days[p] = map[string]bool{}
		}
		days[p][e.Day] = true
		if f, ok := first[p]; !ok || e.Day < f {
			first[p] = e.Day
		}
	}
	for k, n := range counts {
		activity = append(activity, []string{k.day, k.tenant, k.source, k.typ, strconv.Itoa(n), strconv.Itoa(len(people[k]))})
	}
	type dt struct{ day, tenant string }
	active, fresh := map[dt]int{}, map[dt]int{}
	for p, ds := range days {
		for d := range ds {
			active[dt{d, p.tenant}]++
			if d == first[p] {
				fresh[dt{d, p.tenant}]++
			}
		}
	}
	for k, a := range active {
		profiles = append(profiles, []string{k.day, k.tenant, strconv.Itoa(a), strconv.Itoa(fresh[k]), strconv.Itoa(a - fresh[k])})
	}
	SortRows(activity)
	SortRows(profiles)
	return activity, profiles
}

// SortRows sorts rows of text by their columns in order.
func SortRows(rows [][]string) {
	sort.Slice(rows, func(a, b int) bool { return strings.Join(rows[a], "\x00") < strings.Join(rows[b], "\x00") })
}
