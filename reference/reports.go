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
	type act struct{ day, tenant, source, typ string }
	type pd struct{ tenant, profile string }
	counts, people := map[act]int{}, map[act]map[string]bool{}
	days, first := map[pd]map[string]bool{}, map[pd]string{}
	seen := map[[3]string]bool{}
	for _, e := range events {
		key := [3]string{e.Tenant, e.Source, e.ID}
		if seen[key] {
			continue
		}
		seen[key] = true
		day, root := e.Time.UTC().Format("2006-01-02"), m.Root(e.Key())
		k := act{day, e.Tenant, e.Source, e.Type}
		counts[k]++
		if people[k] == nil {
			people[k] = map[string]bool{}
		}
		people[k][root] = true
		p := pd{e.Tenant, root}
		if days[p] == nil {
			days[p] = map[string]bool{}
		}
		days[p][day] = true
		if f, ok := first[p]; !ok || day < f {
			first[p] = day
		}
	}
	r := Reports{Merges: map[string]int{}}
	for k, n := range counts {
		r.Activity = append(r.Activity, []string{k.day, k.tenant, k.source, k.typ, strconv.Itoa(n), strconv.Itoa(len(people[k]))})
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
		r.Profiles = append(r.Profiles, []string{k.day, k.tenant, strconv.Itoa(a), strconv.Itoa(fresh[k]), strconv.Itoa(a - fresh[k])})
	}
	SortRows(r.Activity)
	SortRows(r.Profiles)
	for root, nodes := range m.members {
		r.Merges[m.tenant[root]] += len(nodes) - 1
	}
	return r
}

// SortRows sorts rows of text by their columns in order.
func SortRows(rows [][]string) {
	sort.Slice(rows, func(a, b int) bool { return strings.Join(rows[a], "\x00") < strings.Join(rows[b], "\x00") })
}
