package identity

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/rolodex/rolodex/schemas"
)

// benchTenant and benchPartner are the tenant and partner of every
// generated event.
const (
	benchTenant  = "bench"
	benchPartner = "bench"
)

// workload is the input of one run, generated once: the encoded records of
// rolodex.events, produced before anything is timed, and what the identity
// stage must make of them.
type workload struct {
	// values are the Avro-encoded events (schemas.EncodeEvent), keys their
	// record keys (Event.Key: the node of the primary identifier).
	values, keys [][]byte
	// events are the decoded events, kept only when asked for (tests).
	events []*schemas.Event
	// bytes is the total size of values.
	bytes int
	// people is how many people appear in at least one event.
	people int
	// identifiers is how many distinct identifiers (graph nodes) the
	// events carry.
	identifiers int
	// profiles is how many profiles the stream must end as: the connected
	// components of the identifier graph. No generated profile reaches a
	// merge-protection limit (a person has at most one identifier of each
	// type and people share none), so no link is refused.
	profiles int
	// duplicates is how many records repeat an earlier event (same source
	// and id): re-sends the identity stage must dedupe.
	duplicates int
	// maxEvents is the most events one person has.
	maxEvents int
}

var (
	firstNames = []string{"Ana", "Bruno", "Carla", "Diego", "Eduarda", "Felipe", "Gabriela", "Henrique", "Isabela", "João", "Larissa", "Marcos", "Natália", "Otávio", "Paula", "Rafael"}
	lastNames  = []string{"Silva", "Souza", "Oliveira", "Santos", "Pereira", "Lima", "Costa", "Ferreira", "Almeida", "Rodrigues", "Gomes", "Ribeiro"}
	domains    = []string{"gmail.com", "hotmail.com", "outlook.com", "uol.com.br", "yahoo.com.br", "empresa.com.br"}
	cities     = []struct{ name, ddd string }{{"São Paulo", "11"}, {"Rio de Janeiro", "21"}, {"Belo Horizonte", "31"}, {"Curitiba", "41"}, {"Porto Alegre", "51"}, {"Brasília", "61"}, {"Salvador", "71"}, {"Recife", "81"}}
	sources    = []string{"web", "app", "crm", "whatsapp"}
	eventTypes = []string{"page.viewed", "page.viewed", "page.viewed", "form.submitted", "lead.created", "email.opened", "login"}
	plans      = []string{"free", "basic", "pro"}
	products   = []string{"hatch-1.0", "sedan-2.0", "suv-turbo", "pickup-4x4"}
	// idTypes are the identifier types a person may have.
	idTypes = []string{schemas.IDEmail, schemas.IDPhone, schemas.IDUserID, schemas.IDAnonymousID}
	// idCountWeights weighs how many identifiers a person has: 1 to 4.
	idCountWeights = []int{20, 35, 30, 15}
)

// person is one generated customer.
type person struct {
	ids        []schemas.Identifier // 1 to 4, sorted by schemas.SortIdentifiers
	name, city string
	plan       string
	// Union-find over ids (indexes), and which of them appeared in an
	// event: the expected profiles of this person.
	parent [4]int8
	seen   uint8
	events int
}

func (p *person) find(i int8) int8 {
	for p.parent[i] != i {
		i = p.parent[i]
	}
	return i
}

// link records that an event carried the identifiers in mask.
func (p *person) link(mask uint8) {
	first := int8(-1)
	for i := range int8(len(p.ids)) {
		if mask&(1<<i) == 0 {
			continue
		}
		p.seen |= 1 << i
		if first < 0 {
			first = i
			continue
		}
		if a, b := p.find(first), p.find(i); a != b {
			p.parent[b] = a
		}
	}
}

// components returns the identifiers that appeared and how many profiles
// they form.
func (p *person) components() (ids, comps int) {
	for i := range int8(len(p.ids)) {
		if p.seen&(1<<i) != 0 {
			ids++
			if p.find(i) == i {
				comps++
			}
		}
	}
	return ids, comps
}

// generate builds n events for people people. The output depends only on
// the arguments (event times and received_at are relative to now).
//
//   - A person has 1 to 4 identifiers (weights 20/35/30/15 %) of distinct
//     types among email, phone (E.164), user_id and anonymous_id, already
//     normalised as ingest writes them; no two people share one.
//   - The first events give every person one event (as far as n allows);
//     the rest pick a person with a skew (index people·u², u uniform), so a few
//     people have many events and most have one or two.
//   - An event carries all of its person's identifiers half of the time,
//     otherwise a random non-empty subset: identifiers of one person meet on
//     some event, or stay apart as separate profiles.
//   - About 1% of the records repeat an earlier record (a partner's
//     re-send): same source and id, which the identity stage dedupes.
//   - Traits (name, city, sometimes plan) on 60% of the events, a couple of
//     properties on each, times in the last 30 days.
//   - With statusShare > 0, that share of the events are reserved status
//     events (docs/profile-status.md): tag adds and removes, consent
//     grants and revocations, blacklist writes, identifiers invalidated.
//     With 0 the stream is the one earlier versions generated.
//   - steady (WorkloadSteady): a person's first event carries all their
//     identifiers, so every later event of theirs (with people = n/10,
//     90% of the events) comes from identifiers an earlier event already
//     linked: returning customers, the common case in production.
func generate(n, people int, seed uint64, now time.Time, keep bool) (*workload, error) {
	return generateWith(n, people, seed, now, keep, 0, false)
}

// Workloads (Config.Workload).
const (
	// WorkloadDefault: a person's events carry all their identifiers half
	// of the time, otherwise a random subset, so identifiers meet on some
	// event or stay separate profiles.
	WorkloadDefault = "default"
	// WorkloadSteady: a person's first event carries all their
	// identifiers, so every later event comes from identifiers already
	// linked; Events/10 people by default, so 90% of the events are such
	// returning events.
	WorkloadSteady = "steady"
)

func generateWith(n, people int, seed uint64, now time.Time, keep bool, statusShare float64, steady bool) (*workload, error) {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	ps := make([]person, people)
	for i := range ps {
		ps[i] = newPerson(rng, i)
	}
	w := &workload{values: make([][]byte, 0, n), keys: make([][]byte, 0, n)}
	if keep {
		w.events = make([]*schemas.Event, 0, n)
	}
	fresh := 0 // people who had no event yet start at fresh
	for i := range n {
		if i > 0 && rng.IntN(100) == 0 {
			j := rng.IntN(len(w.values))
			w.values = append(w.values, w.values[j])
			w.keys = append(w.keys, w.keys[j])
			w.bytes += len(w.values[j])
			if keep {
				w.events = append(w.events, w.events[j])
			}
			w.duplicates++
			continue
		}
		var pi int
		first := fresh < people
		if first {
			pi = fresh
			fresh++
		} else {
			u := rng.Float64()
			pi = min(people-1, int(float64(people)*u*u))
		}
		ev := newEvent(rng, &ps[pi], i, now, steady && first)
		if statusShare > 0 && rng.Float64() < statusShare {
			statusEvent(rng, ev, now)
		}
		val, err := schemas.EncodeEvent(ev)
		if err != nil {
			return nil, fmt.Errorf("benchidentity: generate event %d: %w", i, err)
		}
		w.values = append(w.values, val)
		w.keys = append(w.keys, []byte(ev.Key()))
		w.bytes += len(val)
		if keep {
			w.events = append(w.events, ev)
		}
	}
	for i := range ps {
		ids, comps := ps[i].components()
		if ids > 0 {
			w.people++
		}
		w.identifiers += ids
		w.profiles += comps
		w.maxEvents = max(w.maxEvents, ps[i].events)
	}
	return w, nil
}

func newPerson(rng *rand.Rand, i int) person {
	first := firstNames[rng.IntN(len(firstNames))]
	last := lastNames[rng.IntN(len(lastNames))]
	city := cities[rng.IntN(len(cities))]
	p := person{name: first + " " + last, city: city.name}
	if rng.IntN(3) == 0 {
		p.plan = plans[rng.IntN(len(plans))]
	}
	k := 1
	for r := rng.IntN(100); r >= idCountWeights[k-1]; k++ {
		r -= idCountWeights[k-1]
	}
	types := append([]string(nil), idTypes...)
	rng.Shuffle(len(types), func(a, b int) { types[a], types[b] = types[b], types[a] })
	for _, t := range types[:k] {
		var v string
		switch t {
		case schemas.IDEmail:
			v = fmt.Sprintf("%s.%s%d@%s", asciiLower(first), asciiLower(last), i, domains[rng.IntN(len(domains))])
		case schemas.IDPhone:
			// +55 DDD 9 and eight digits; the person's index makes it unique.
			v = fmt.Sprintf("+55%s9%08d", city.ddd, i)
		case schemas.IDUserID:
			v = fmt.Sprintf("u-%08d", i)
		case schemas.IDAnonymousID:
			v = fmt.Sprintf("anon-%07x-%012x", i, rng.Uint64()>>16)
		}
		p.ids = append(p.ids, schemas.Identifier{Type: t, Value: v})
	}
	schemas.SortIdentifiers(p.ids)
	for j := range p.parent {
		p.parent[j] = int8(j)
	}
	return p
}

// newEvent is event i of person p: with all p's identifiers when all is
// set, otherwise half of the time with all, else with a random non-empty
// subset.
func newEvent(rng *rand.Rand, p *person, i int, now time.Time, all bool) *schemas.Event {
	full := uint8(1)<<len(p.ids) - 1
	mask := full
	if r := rng.IntN(2); r == 0 && !all {
		mask = uint8(1 + rng.IntN(int(full)))
	}
	p.link(mask)
	p.events++
	ids := make([]schemas.Identifier, 0, len(p.ids))
	for j, id := range p.ids {
		if mask&(1<<j) != 0 {
			ids = append(ids, id) // p.ids is sorted, so ids are
		}
	}
	typ := eventTypes[rng.IntN(len(eventTypes))]
	received := now.Add(-time.Duration(rng.Int64N(int64(time.Minute)))).Truncate(time.Millisecond).UTC()
	ev := &schemas.Event{
		Tenant:      benchTenant,
		ID:          fmt.Sprintf("ev-%09d", i),
		Type:        typ,
		Time:        now.Add(-time.Duration(rng.Int64N(int64(30 * 24 * time.Hour)))).Truncate(time.Millisecond).UTC(),
		Source:      sources[rng.IntN(len(sources))],
		Partner:     benchPartner,
		Identifiers: ids,
		ReceivedAt:  received,
	}
	if rng.IntN(10) < 6 {
		ev.Traits = map[string]string{"name": jsonString(p.name), "city": jsonString(p.city)}
		if p.plan != "" {
			ev.Traits["plan"] = jsonString(p.plan)
		}
	}
	switch typ {
	case "page.viewed":
		ev.Properties = map[string]string{"url": jsonString("https://shop.example.com/p/" + products[rng.IntN(len(products))]), "ref": jsonString("google")}
	case "form.submitted", "lead.created":
		ev.Properties = map[string]string{"product": jsonString(products[rng.IntN(len(products))]), "interest": jsonString("test_drive")}
	default:
		ev.Properties = map[string]string{"campaign": jsonString(fmt.Sprintf("nov-%02d", rng.IntN(30)+1))}
	}
	return ev
}

// statusEvent turns ev into a reserved status event about its profile.
func statusEvent(rng *rand.Rand, ev *schemas.Event, now time.Time) {
	tags := []string{"vip", "lead", "customer", "churned", "new", "newsletter"}
	switch x := rng.IntN(20); {
	case x < 9:
		ev.Type = "tag.added"
		ev.Properties = map[string]string{"tag": jsonString(tags[rng.IntN(len(tags))])}
	case x < 13:
		ev.Type = "tag.removed"
		ev.Properties = map[string]string{"tag": jsonString(tags[rng.IntN(len(tags))])}
	case x < 16:
		ev.Type = "consent.granted"
		ev.Properties = map[string]string{"purpose": jsonString("marketing"), "expires_at": jsonString(now.Add(time.Duration(rng.IntN(60)-10) * 24 * time.Hour).UTC().Format(time.RFC3339))}
	case x < 18:
		ev.Type = "consent.revoked"
		ev.Properties = map[string]string{"purpose": jsonString("marketing")}
	case x < 19:
		ev.Type = []string{"blacklist.added", "blacklist.removed"}[rng.IntN(2)]
		ev.Properties = map[string]string{"reason": jsonString("fraud")}
	default:
		id := ev.Identifiers[0]
		ev.Type = "identifier.invalidated"
		ev.Properties = map[string]string{"type": jsonString(id.Type), "value": jsonString(id.Value), "reason": jsonString("hard_bounce")}
	}
}

func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// accents maps the accented letters of the name lists to ASCII.
var accents = strings.NewReplacer("ã", "a", "á", "a", "é", "e", "ô", "o", "ó", "o", "í", "i")

func asciiLower(s string) string { return strings.ToLower(accents.Replace(s)) }
