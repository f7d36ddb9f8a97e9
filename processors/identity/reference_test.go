package identity

import (
	"encoding/json"
	"fmt"
	"math/rand"
	"sort"
	"time"

	"github.com/rolodex/rolodex/schemas"
)

// reference is the plain offline model the streamed result must equal:
// union-find over the identifiers of each event, and a fold of the deduped
// events of each component.
type reference struct {
	parent map[string]string
	ident  map[string]schemas.Identifier
	tenant map[string]string
	events map[string][]*schemas.Event // root-independent: by primary node
	seen   map[string]bool
}

func newReference() *reference {
	return &reference{parent: map[string]string{}, ident: map[string]schemas.Identifier{}, tenant: map[string]string{},
		events: map[string][]*schemas.Event{}, seen: map[string]bool{}}
}

func (r *reference) find(x string) string {
	for r.parent[x] != x {
		x = r.parent[x]
	}
	return x
}

func (r *reference) add(ev *schemas.Event) {
	var nodes []string
	for _, id := range ev.Identifiers {
		n := schemas.NodeID(ev.Tenant, id)
		if _, ok := r.parent[n]; !ok {
			r.parent[n] = n
			r.ident[n] = id
			r.tenant[n] = ev.Tenant
		}
		nodes = append(nodes, n)
	}
	for _, n := range nodes[1:] {
		a, b := r.find(nodes[0]), r.find(n)
		if a != b {
			r.parent[a] = b
		}
	}
	key := nodes[0] + "\x00" + ev.Source + "\x00" + ev.ID
	if !r.seen[key] {
		r.seen[key] = true
		r.events[nodes[0]] = append(r.events[nodes[0]], ev)
	}
}

// profiles returns every profile, keyed by its id: the smallest node id of
// its component.
func (r *reference) profiles() map[string]*schemas.Profile {
	comps := map[string][]string{}
	for n := range r.parent {
		root := r.find(n)
		comps[root] = append(comps[root], n)
	}
	out := map[string]*schemas.Profile{}
	for _, nodes := range comps {
		p := r.fold(nodes)
		out[p.ID] = p
	}
	return out
}

// fold returns the profile of the nodes of one component: its id is the
// smallest node id.
func (r *reference) fold(nodes []string) *schemas.Profile {
	nodes = append([]string(nil), nodes...)
	sort.Strings(nodes)
	id := nodes[0]
	p := &schemas.Profile{ID: id, Tenant: r.tenant[id], Identifiers: map[string][]string{}, Traits: map[string]json.RawMessage{},
		Counters: map[string]int64{}, MergedIDs: append([]string{}, nodes[1:]...)}
	var recent []schemas.Activity
	traits := map[string]schemas.Trait{}
	var first, last int64
	for _, n := range nodes {
		ident := r.ident[n]
		p.Identifiers[ident.Type] = append(p.Identifiers[ident.Type], ident.Value)
		for _, ev := range r.events[n] {
			t := ev.Time.UnixMilli()
			if p.EventCount == 0 || t < first {
				first = t
			}
			if p.EventCount == 0 || t > last {
				last = t
			}
			p.EventCount++
			p.Counters[ev.Type]++
			for k, v := range ev.Traits {
				nt := schemas.Trait{Value: v, Time: t, Source: ev.Source, Event: ev.ID}
				if old, ok := traits[k]; !ok || nt.Newer(old) {
					traits[k] = nt
				}
			}
			recent = append(recent, schemas.Activity{ID: ev.ID, Type: ev.Type, Source: ev.Source, Time: t})
		}
	}
	for _, vs := range p.Identifiers {
		sort.Strings(vs)
	}
	for k, t := range traits {
		p.Traits[k] = json.RawMessage(t.Value)
	}
	sort.Slice(recent, func(i, j int) bool { return recent[i].After(recent[j]) })
	if len(recent) > schemas.RecentLimit {
		recent = recent[:schemas.RecentLimit]
	}
	p.Recent = schemas.RecentEvents(recent)
	if p.EventCount > 0 {
		p.FirstSeen = time.UnixMilli(first).UTC().Format(time.RFC3339Nano)
		p.LastSeen = time.UnixMilli(last).UTC().Format(time.RFC3339Nano)
	}
	return p
}

// genEvents makes a random stream: overlapping identifiers, long chains
// that merge many profiles, duplicates, out-of-order times, two tenants.
func genEvents(rng *rand.Rand, n, people int) []*schemas.Event {
	base := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	types := []string{"page.viewed", "form.submitted", "email.opened", "lead.created"}
	var out []*schemas.Event
	for i := 0; i < n; i++ {
		if i > 0 && rng.Intn(10) == 0 { // a duplicate delivery
			out = append(out, out[rng.Intn(len(out))])
			continue
		}
		tenant := "t1"
		if rng.Intn(5) == 0 {
			tenant = "t2"
		}
		p := rng.Intn(people)
		var ids []schemas.Identifier
		add := func(typ, val string) { ids = append(ids, schemas.Identifier{Type: typ, Value: val}) }
		switch rng.Intn(6) {
		case 0:
			add("user_id", fmt.Sprintf("u%d", p))
		case 1:
			add("email", fmt.Sprintf("p%d@example.com", p))
			add("anonymous_id", fmt.Sprintf("a%d-%d", p, rng.Intn(3)))
		case 2:
			add("phone", fmt.Sprintf("+55119%08d", p))
			add("email", fmt.Sprintf("p%d@example.com", p))
		case 3: // a chain link to the next person: merges components
			add("email", fmt.Sprintf("p%d@example.com", p))
			add("external:crm", fmt.Sprintf("c%d", (p+1)%people))
		case 4:
			add("external:crm", fmt.Sprintf("c%d", p))
			add("user_id", fmt.Sprintf("u%d", p))
		default:
			add("anonymous_id", fmt.Sprintf("a%d-%d", p, rng.Intn(3)))
		}
		schemas.SortIdentifiers(ids)
		ev := &schemas.Event{
			Tenant: tenant, ID: fmt.Sprintf("e%d", i), Type: types[rng.Intn(len(types))],
			Time: base.Add(time.Duration(rng.Intn(30*24*60)) * time.Minute), Source: []string{"web", "crm"}[rng.Intn(2)],
			Partner: "p", Identifiers: ids, ReceivedAt: base.Add(time.Duration(i) * time.Second),
		}
		if rng.Intn(2) == 0 {
			ev.Traits = map[string]string{"city": fmt.Sprintf("%q", []string{"Campinas", "Recife", "Natal"}[rng.Intn(3)])}
		}
		if rng.Intn(3) == 0 {
			if ev.Traits == nil {
				ev.Traits = map[string]string{}
			}
			ev.Traits["plan"] = fmt.Sprintf(`"p%d"`, rng.Intn(4))
		}
		out = append(out, ev)
	}
	return out
}
