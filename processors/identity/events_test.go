package identity

import (
	"fmt"
	"math/rand"
	"time"

	"github.com/rolodex/rolodex/schemas"
)

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
