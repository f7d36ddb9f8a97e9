package identity

import (
	"fmt"
	"math/rand"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/rolodex/rolodex/reference"
	"github.com/rolodex/rolodex/schemas"
)

// statusConfig is the tag configuration of the random streams' runs, the
// identity stage's and the reference model's: two default tags, one of
// them in an exclusive group, and a group that is not exclusive.
var statusConfig = schemas.StatusConfig{
	Default: []string{"new", "lead"},
	Groups: []schemas.TagGroup{
		{Name: "stage", Tags: []string{"lead", "customer", "churned"}, Exclusive: true},
		{Name: "interest", Tags: []string{"cars", "vip"}},
	},
}

// statusTags is the tag vocabulary of the random streams: the default
// tags, the tags of the exclusive group and of the other.
var statusTags = []string{"new", "lead", "customer", "churned", "vip", "cars"}

// Consent expiries far in the past or the future, so that whether a
// consent reads expired does not depend on the clock of the run.
const (
	farPast   = "2001-01-01T00:00:00Z"
	farFuture = "2101-01-01T00:00:00Z"
)

// genEvents makes a random stream: overlapping identifiers, long chains
// that merge many profiles, duplicates, out-of-order times, two tenants,
// and reserved status events (tags, blacklist, consent, identifier
// status) on few keys at few distinct times, so that writes of one key
// tie on the event time and the source and event id decide.
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
		email, phone := fmt.Sprintf("p%d@example.com", p), fmt.Sprintf("+55119%08d", p)
		switch rng.Intn(6) {
		case 0:
			add("user_id", fmt.Sprintf("u%d", p))
		case 1:
			add("email", email)
			add("anonymous_id", fmt.Sprintf("a%d-%d", p, rng.Intn(3)))
		case 2:
			add("phone", phone)
			add("email", email)
			if rng.Intn(3) == 0 {
				add("whatsapp", phone)
			}
		case 3: // a chain link to the next person: merges components
			add("email", email)
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
		if rng.Intn(4) == 0 {
			// On one of the first days' midnights: ties with the status
			// events' times, and with default tags (a profile's first
			// event time).
			ev.Time = base.Add(time.Duration(rng.Intn(6)) * 24 * time.Hour)
		}
		if rng.Intn(5) < 2 {
			ev.Time = base.Add(time.Duration(rng.Intn(4)) * 24 * time.Hour)
			genStatus(rng, ev, email, phone)
		} else if ev.Type == "form.submitted" && i%2 == 0 {
			// A topic event (docs/fanout.md): published to a fan-out
			// topic, decided without drawing from rng so that the streams
			// stay those of the other checks.
			ev.Topic = "car-chosen"
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

// genStatus makes ev a random reserved status event, as ingest accepts
// them; the identifier events name the person's email or phone.
func genStatus(rng *rand.Rand, ev *schemas.Event, email, phone string) {
	props := map[string]string{}
	pick := func(vs ...string) string { return vs[rng.Intn(len(vs))] }
	switch k := rng.Intn(20); {
	case k < 10:
		ev.Type = pick(schemas.EventTagAdded, schemas.EventTagAdded, schemas.EventTagRemoved)
		props["tag"] = statusTags[rng.Intn(len(statusTags))]
	case k < 13:
		ev.Type = pick(schemas.EventBlacklistAdded, schemas.EventBlacklistRemoved)
		if r := pick("", "fraud", "complaint"); r != "" {
			props["reason"] = r
		}
	case k < 17:
		ev.Type = pick(schemas.EventConsentGranted, schemas.EventConsentGranted, schemas.EventConsentDenied, schemas.EventConsentRevoked)
		props["purpose"] = pick("marketing", "sms")
		if ev.Type == schemas.EventConsentGranted {
			if x := pick("", farPast, farFuture); x != "" {
				props["expires_at"] = x
			}
		}
	default:
		ev.Type = pick(schemas.EventIdentifierInvalidated, schemas.EventIdentifierInvalidated, schemas.EventIdentifierRevalidated)
		if rng.Intn(2) == 0 {
			props["type"], props["value"] = "email", email
		} else {
			props["type"], props["value"] = pick("phone", "whatsapp"), phone
		}
		if r := pick("", "hard_bounce"); r != "" {
			props["reason"] = r
		}
	}
	ev.Properties = map[string]string{}
	for k, v := range props {
		ev.Properties[k] = fmt.Sprintf("%q", v)
	}
}

// statusCoverage counts, into cov, what of the status rules the reference
// profiles of a random stream exercise, so that a test can tell when its
// streams stop covering one.
func statusCoverage(ref *reference.Identity, events []*schemas.Event, cov map[string]int) {
	profiles := ref.Profiles()
	// Without the exclusive group, the profiles where it decided differ.
	loose := statusConfig
	loose.Groups = []schemas.TagGroup{}
	plain := reference.NewIdentityWith(reference.Options{Status: loose})
	for _, ev := range events {
		plain.Add(ev)
	}
	plainProfiles := plain.Profiles()
	for id, p := range profiles {
		for _, t := range p.Tags {
			cov["tag on, "+t.Source]++
		}
		for _, t := range p.RemovedTags {
			cov["tag removed"]++
			if t.Tag == "new" {
				cov["default tag removed"]++
			}
		}
		if !reflect.DeepEqual(p.Tags, plainProfiles[id].Tags) {
			cov["exclusive group decided"]++
		}
		if p.Blacklisted {
			cov["blacklisted"]++
		}
		for _, c := range p.Consent {
			cov["consent "+c.Status]++
		}
		cov["invalid identifier"] += len(p.InvalidIdentifiers)
		for _, id := range p.InvalidIdentifiers {
			for _, v := range p.Identifiers[id.Type] {
				if v == id.Value {
					cov["channel withheld"]++
				}
			}
		}
	}
	// Writes of one key of one profile at one event time: the source or
	// the event id decides; a tag write at a profile's first event time
	// ties with its default tags.
	type slot struct {
		root, key string
		time      int64
	}
	writes := map[slot]map[string]bool{}
	first := map[string]int64{}
	for _, ev := range events {
		root := ref.Root(ev.Key())
		if f, ok := first[root]; !ok || ev.Time.UnixMilli() < f {
			first[root] = ev.Time.UnixMilli()
		}
		if !schemas.IsStatusEvent(ev.Type) {
			continue
		}
		key := ev.Type[:strings.IndexByte(ev.Type, '.')]
		for _, k := range []string{"tag", "purpose", "type", "value"} {
			key += "/" + ev.Properties[k]
		}
		s := slot{root, key, ev.Time.UnixMilli()}
		if writes[s] == nil {
			writes[s] = map[string]bool{}
		}
		writes[s][ev.Source+"/"+ev.ID] = true
	}
	for s, evs := range writes {
		if len(evs) > 1 {
			cov["writes tied on time"]++
		}
		if strings.HasPrefix(s.key, "tag/") && s.time == first[s.root] {
			cov["tag write at the first event time"]++
		}
	}
}

// addBusy inserts into events, at random places, the page views of one
// busy person of tenant t1: 120–300 of them, some at equal times, some
// delivered twice, on two nodes (user_id u0 and anonymous_id busy-0) that
// one of the views links, so that the profile has more views than it
// keeps times of (schemas.EventTimesLimit), spread over its nodes.
func addBusy(rng *rand.Rand, events []*schemas.Event) []*schemas.Event {
	base := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	user := schemas.Identifier{Type: "user_id", Value: "u0"}
	anon := schemas.Identifier{Type: "anonymous_id", Value: "busy-0"}
	n := 120 + rng.Intn(181)
	link := rng.Intn(n)
	out := slices.Clone(events)
	var busy []*schemas.Event
	for i := 0; i < n; i++ {
		at := rng.Intn(len(out) + 1)
		received := base.Add(time.Duration(at) * time.Second)
		if len(busy) > 0 && rng.Intn(10) == 0 { // a view delivered again
			out = slices.Insert(out, at, busy[rng.Intn(len(busy))])
			continue
		}
		ids := []schemas.Identifier{[]schemas.Identifier{user, anon}[rng.Intn(2)]}
		if i == link {
			ids = []schemas.Identifier{user, anon}
		}
		schemas.SortIdentifiers(ids)
		ev := &schemas.Event{Tenant: "t1", ID: fmt.Sprintf("busy-%d", i), Type: "page.viewed", Source: "web", Partner: "p",
			Time: base.Add(time.Duration(rng.Intn(3*24*60)) * time.Minute), Identifiers: ids, ReceivedAt: received}
		if rng.Intn(4) == 0 {
			ev.Time = base.Add(time.Duration(rng.Intn(3)) * 24 * time.Hour) // equal times
		}
		out = slices.Insert(out, at, ev)
		busy = append(busy, ev)
	}
	return out
}
