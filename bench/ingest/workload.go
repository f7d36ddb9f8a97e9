package ingest

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/rolodex/rolodex/schemas"
)

// workload is the input of one run, generated once and replayed by every
// phase: the same JSON bytes go to raw Kafka and to the HTTP API.
type workload struct {
	// events holds the JSON of each event.
	events [][]byte
	// keys holds the record key each event gets on TopicEvents
	// (schemas.Event.Key of its primary identifier). The raw baseline
	// produces with the same keys, so both land on the same partitions.
	keys [][]byte
	// bodies are the HTTP request bodies: JSON arrays of batch events.
	// bodies[i] carries events[i*batch : min((i+1)*batch, len(events))].
	bodies [][]byte
	batch  int
	// ids are the event ids, in order.
	ids []string
	// jsonBytes is the total size of events.
	jsonBytes int
}

// batches returns how many requests (or raw batches) the workload has.
func (w *workload) batches() int { return len(w.bodies) }

// span returns the event index range of batch i.
func (w *workload) span(i int) (lo, hi int) {
	lo = i * w.batch
	return lo, min(lo+w.batch, len(w.events))
}

// genEvent is one generated event in the JSON contract of docs/events.md.
// Field order is fixed by the struct, so the bytes are deterministic.
type genEvent struct {
	ID          string         `json:"id"`
	Type        string         `json:"type"`
	Time        string         `json:"time"`
	Source      string         `json:"source"`
	Identifiers genIdentifiers `json:"identifiers"`
	Traits      genTraits      `json:"traits"`
	Properties  map[string]any `json:"properties"`
}

type genIdentifiers struct {
	Email  string `json:"email"`
	Phone  string `json:"phone"`
	UserID string `json:"user_id"`
}

type genTraits struct {
	Name string `json:"name"`
	City string `json:"city"`
}

var (
	firstNames = []string{"Ana", "Bruno", "Carla", "Diego", "Eduarda", "Felipe", "Gabriela", "Henrique", "Isabela", "João", "Larissa", "Marcos", "Natália", "Otávio", "Paula", "Rafael"}
	lastNames  = []string{"Silva", "Souza", "Oliveira", "Santos", "Pereira", "Lima", "Costa", "Ferreira", "Almeida", "Rodrigues", "Gomes", "Ribeiro"}
	domains    = []string{"gmail.com", "hotmail.com", "outlook.com", "uol.com.br", "yahoo.com.br", "empresa.com.br"}
	cities     = []struct{ name, ddd string }{{"São Paulo", "11"}, {"Rio de Janeiro", "21"}, {"Belo Horizonte", "31"}, {"Curitiba", "41"}, {"Porto Alegre", "51"}, {"Brasília", "61"}, {"Salvador", "71"}, {"Recife", "81"}}
	sources    = []string{"web", "app", "crm", "whatsapp"}
	eventTypes = []string{"page.viewed", "page.viewed", "page.viewed", "form.submitted", "lead.created", "email.opened"}
	products   = []string{"hatch-1.0", "sedan-2.0", "suv-turbo", "pickup-4x4"}
)

// person is one generated customer; several events share a person.
type person struct {
	name, email, phone, userID, city string
}

// benchTenant is the tenant of the benchmark partner.
const benchTenant = "bench"

// generate builds n events for n/4 people (so most people have several
// events), each with a distinct id, an email, a phone and a user id, two
// traits and a couple of properties: about 320 bytes of JSON each. The
// output depends only on n, batch, seed and runID (and the event times on
// now).
func generate(n, batch int, seed uint64, runID string, now time.Time) (*workload, error) {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	people := make([]person, max(1, n/4))
	for i := range people {
		first := firstNames[rng.IntN(len(firstNames))]
		last := lastNames[rng.IntN(len(lastNames))]
		city := cities[rng.IntN(len(cities))]
		local := asciiLower(first) + "." + strings.ToLower(last) + fmt.Sprint(i)
		if rng.IntN(5) == 0 {
			// Some partners send mixed case; normalisation lowercases it.
			local = asciiFold(first) + "." + last + fmt.Sprint(i)
		}
		people[i] = person{
			name:   first + " " + last,
			email:  local + "@" + domains[rng.IntN(len(domains))],
			phone:  mobile(rng, city.ddd),
			userID: fmt.Sprintf("u-%s-%07d", runID, i),
			city:   city.name,
		}
	}
	w := &workload{
		events: make([][]byte, n),
		keys:   make([][]byte, n),
		ids:    make([]string, n),
		batch:  batch,
	}
	for i := range n {
		p := people[rng.IntN(len(people))]
		typ := eventTypes[rng.IntN(len(eventTypes))]
		ev := genEvent{
			ID:          fmt.Sprintf("ev-%s-%09d", runID, i),
			Type:        typ,
			Time:        now.Add(-time.Duration(rng.Int64N(int64(24 * time.Hour)))).UTC().Format("2006-01-02T15:04:05.000Z07:00"),
			Source:      sources[rng.IntN(len(sources))],
			Identifiers: genIdentifiers{Email: p.email, Phone: p.phone, UserID: p.userID},
			Traits:      genTraits{Name: p.name, City: p.city},
		}
		switch typ {
		case "page.viewed":
			ev.Properties = map[string]any{"url": "https://shop.example.com/p/" + products[rng.IntN(len(products))], "ref": "google"}
		case "form.submitted", "lead.created":
			ev.Properties = map[string]any{"product": products[rng.IntN(len(products))], "interest": "test_drive"}
		default:
			ev.Properties = map[string]any{"campaign": fmt.Sprintf("nov-%02d", rng.IntN(30)+1), "message_id": fmt.Sprintf("m-%d", rng.Uint32())}
		}
		b, err := json.Marshal(ev)
		if err != nil {
			return nil, fmt.Errorf("benchingest: generate event %d: %w", i, err)
		}
		w.events[i] = b
		w.ids[i] = ev.ID
		// user_id is the strongest identifier and needs no normalising, so
		// it is the primary identifier the accepted event is keyed by.
		primary := schemas.Event{Tenant: benchTenant, Identifiers: []schemas.Identifier{{Type: schemas.IDUserID, Value: p.userID}}}
		w.keys[i] = []byte(primary.Key())
		w.jsonBytes += len(b)
	}
	for lo := 0; lo < n; lo += batch {
		hi := min(lo+batch, n)
		size := hi - lo + 1
		for _, e := range w.events[lo:hi] {
			size += len(e)
		}
		body := make([]byte, 0, size)
		body = append(body, '[')
		for j, e := range w.events[lo:hi] {
			if j > 0 {
				body = append(body, ',')
			}
			body = append(body, e...)
		}
		w.bodies = append(w.bodies, append(body, ']'))
	}
	return w, nil
}

// mobile returns a Brazilian mobile number in the local format partners
// commonly send, "(11) 98765-4321", avoiding the placeholder patterns the
// normaliser blocks (a subscriber number ending in one repeated digit or an
// ascending run).
func mobile(rng *rand.Rand, ddd string) string {
	for {
		var d [8]byte
		d[0] = byte('6' + rng.IntN(4)) // 96xxx-xxxx .. 99xxx-xxxx
		for i := 1; i < len(d); i++ {
			d[i] = byte('0' + rng.IntN(10))
		}
		if !placeholderTail(d[:]) {
			return fmt.Sprintf("(%s) 9%s-%s", ddd, d[:4], d[4:])
		}
	}
}

// placeholderTail reports whether the last six digits are all equal or
// ascending, which the normaliser treats as a placeholder.
func placeholderTail(d []byte) bool {
	same, asc := true, true
	for i := len(d) - 5; i < len(d); i++ {
		same = same && d[i] == d[i-1]
		asc = asc && d[i] == d[i-1]+1
	}
	return same || asc
}

// accents maps the accented letters the name lists use to ASCII.
var accents = strings.NewReplacer("ã", "a", "á", "a", "é", "e", "ô", "o", "ó", "o", "í", "i")

// asciiFold drops the accents, so that email local parts stay ASCII.
func asciiFold(s string) string { return accents.Replace(s) }

func asciiLower(s string) string { return strings.ToLower(asciiFold(s)) }
