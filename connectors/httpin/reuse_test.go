package httpin

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rolodex/rolodex/intake"
	"github.com/rolodex/rolodex/normalize"
	"github.com/rolodex/rolodex/partners"
	"github.com/rolodex/rolodex/schemas"
)

// TestConcurrentBatchesReuseMemory posts batches from several clients at
// once, some refused (an invalid event in them), with events of every
// size, so that the decoded and validated events of one request reuse the
// maps of others' (schemas.RawEventBuffer, intake.EventBuffer). Every event
// written must be exactly what Validate makes of its JSON on its own.
func TestConcurrentBatchesReuseMemory(t *testing.T) {
	e := newEnv(t, Config{})
	rng := rand.New(rand.NewPCG(31, 32))
	requests, perRequest := 120, 40
	if testing.Short() {
		requests = 40
	}
	bodies := make([]string, requests)
	refused := make([]bool, requests)
	events := map[string]string{} // id -> JSON, of the requests that are accepted
	for i := range bodies {
		refused[i] = rng.IntN(6) == 0
		var elems []string
		for j := range perRequest {
			id := fmt.Sprintf("ev-%d-%d", i, j)
			var traits, props []string
			for k := range rng.IntN(12) {
				traits = append(traits, fmt.Sprintf(`"t%d":%s`, k, []string{`"Ana"`, `42`, `{"a": [1, 2]}`, `null`, `"São Paulo"`}[rng.IntN(5)]))
			}
			for k := range rng.IntN(4) {
				props = append(props, fmt.Sprintf(`"p%d":"v%d"`, k, rng.IntN(100)))
			}
			ids := []string{fmt.Sprintf(`"user_id":"u-%d"`, rng.IntN(50))}
			if rng.IntN(2) == 0 {
				ids = append(ids, fmt.Sprintf(`"email":"Ana.%d@Example.com"`, rng.IntN(50)))
			}
			if rng.IntN(2) == 0 {
				ids = append(ids, fmt.Sprintf(`"phone":["+55 41 97798-%04d","null"]`, 1000+rng.IntN(50)))
			}
			ev := fmt.Sprintf(`{"id":%q,"type":"page.viewed","time":"2026-11-23T10:42:00Z","identifiers":{%s},"traits":{%s},"properties":{%s}}`,
				id, strings.Join(ids, ","), strings.Join(traits, ","), strings.Join(props, ","))
			if refused[i] && j == perRequest/2 {
				ev = fmt.Sprintf(`{"id":%q,"type":"page.viewed","identifiers":{"email":"not-an-email"}}`, id)
			}
			if !refused[i] {
				events[id] = ev
			}
			elems = append(elems, ev)
		}
		bodies[i] = "[" + strings.Join(elems, ",") + "]"
	}

	var wg sync.WaitGroup
	next := make(chan int)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				r := e.post(t, "/v1/events", demoKey, ContentJSON, bodies[i])
				want := http.StatusAccepted
				if refused[i] {
					want = http.StatusBadRequest
				}
				if r.status != want {
					t.Errorf("request %d: status %d, want %d: %v", i, r.status, want, r.body)
				}
			}
		}()
	}
	for i := range bodies {
		next <- i
	}
	close(next)
	wg.Wait()
	if t.Failed() {
		return
	}

	// What Validate makes of each event alone, through the same codec.
	reg, err := partners.New([]partners.Partner{{Name: "demo", Tenant: "demo", Keys: []string{demoKey}}})
	if err != nil {
		t.Fatal(err)
	}
	p, _ := reg.ByName("demo")
	norm, err := normalize.New(normalize.Config{})
	if err != nil {
		t.Fatal(err)
	}
	v := intake.NewValidator(norm)
	got := readEvents(t, e.brokers)
	if len(got) != len(events) {
		t.Fatalf("%d events written, want %d", len(got), len(events))
	}
	for id, js := range events {
		raw, err := schemas.DecodeRawEventJSON([]byte(js))
		if err != nil {
			t.Fatal(err)
		}
		ev, _, rej := v.Validate(p, raw, time.Now())
		if rej != nil {
			t.Fatalf("%s: %v", js, rej)
		}
		b, err := schemas.EncodeEvent(ev)
		if err != nil {
			t.Fatal(err)
		}
		want, err := schemas.DecodeEvent(b)
		if err != nil {
			t.Fatal(err)
		}
		g := got[id]
		if g == nil {
			t.Fatalf("event %s was not written", id)
		}
		want.ReceivedAt = g.ReceivedAt
		if !reflect.DeepEqual(g, want) {
			t.Fatalf("event %s written as\n%+v\nwant\n%+v", id, g, want)
		}
	}
}
