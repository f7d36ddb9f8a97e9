package ingest

import (
	"context"
	"encoding/json"
	"hash/maphash"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rolodex/rolodex/intake"
	"github.com/rolodex/rolodex/internal/devbroker"
	"github.com/rolodex/rolodex/internal/kafkaclient"
	"github.com/rolodex/rolodex/normalize"
	"github.com/rolodex/rolodex/partners"
	"github.com/rolodex/rolodex/schemas"
)

// TestRunSane runs a small benchmark against its own broker and checks the
// result adds up and every event landed exactly once.
func TestRunSane(t *testing.T) {
	cluster, err := devbroker.Start(devbroker.Config{Addr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	const events = 2000
	res, err := Run(ctx, Config{Events: events, BatchSize: 100, Concurrency: 4, Rounds: 1, Brokers: cluster.ListenAddrs()})
	if err != nil {
		t.Fatal(err)
	}
	if res.Raw.EventsPerSec <= 0 || res.RawBatched.EventsPerSec <= 0 || res.HTTP.EventsPerSec <= 0 || res.HTTPFloor.EventsPerSec <= 0 {
		t.Fatalf("rates must be positive: raw %.0f, raw batched %.0f, http %.0f, http floor %.0f", res.Raw.EventsPerSec, res.RawBatched.EventsPerSec, res.HTTP.EventsPerSec, res.HTTPFloor.EventsPerSec)
	}
	if want := res.HTTP.EventsPerSec / res.Raw.EventsPerSec; res.Ratio != want {
		t.Errorf("ratio = %v, want %v", res.Ratio, want)
	}
	if res.HTTP.P50 <= 0 || res.HTTP.P50 > res.HTTP.P99 || res.HTTP.P99 > res.HTTP.Max {
		t.Errorf("latencies out of order: p50 %v, p99 %v, max %v", res.HTTP.P50, res.HTTP.P99, res.HTTP.Max)
	}
	if n := len(res.Rounds[0].HTTP.Latencies); n != events/100 {
		t.Errorf("%d HTTP requests timed, want %d", n, events/100)
	}
	if want := res.HTTPFloor.EventsPerSec / res.Raw.EventsPerSec; res.FloorRatio != want {
		t.Errorf("floor ratio = %v, want %v", res.FloorRatio, want)
	}
	if want := res.HTTP.EventsPerSec / res.HTTPFloor.EventsPerSec; res.HTTPOfFloor != want {
		t.Errorf("http / floor = %v, want %v", res.HTTPOfFloor, want)
	}
	if f := res.Rounds[0].HTTPFloor; f.Events != events || len(f.Latencies) != events/100 {
		t.Errorf("HTTP floor: %d events, %d requests timed; want %d, %d", f.Events, len(f.Latencies), events, events/100)
	}
	if res.HTTPFloor.P50 <= 0 || res.HTTPFloor.P50 > res.HTTPFloor.P99 || res.HTTPFloor.P99 > res.HTTPFloor.Max {
		t.Errorf("HTTP floor latencies out of order: p50 %v, p99 %v, max %v", res.HTTPFloor.P50, res.HTTPFloor.P99, res.HTTPFloor.Max)
	}
	if res.AvgEventBytes < 200 || res.AvgEventBytes > 450 {
		t.Errorf("events average %d bytes of JSON, want about 300", res.AvgEventBytes)
	}
	if res.Embedded {
		t.Error("Embedded is set, but the run was given brokers")
	}

	cl, err := kgo.NewClient(kgo.SeedBrokers(cluster.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	// The raw phase, the raw batched phase and the HTTP floor each wrote
	// every event once.
	rawN := countRecords(ctx, t, cl, TopicRaw)
	if rawN != 3*events {
		t.Errorf("%s holds %d records, want %d", TopicRaw, rawN, 3*events)
	}
	checkRawCopies(ctx, t, cluster.ListenAddrs(), rawN, events)
	if n := countRecords(ctx, t, cl, schemas.TopicDeadLetter); n != 0 {
		t.Errorf("%s holds %d records, want none", schemas.TopicDeadLetter, n)
	}

	// Every event reached rolodex.events exactly once, keyed as the raw
	// baseline keys it.
	total := countRecords(ctx, t, cl, schemas.TopicEvents)
	if total != events {
		t.Fatalf("%s holds %d records, want %d", schemas.TopicEvents, total, events)
	}
	cons, err := kgo.NewClient(kgo.SeedBrokers(cluster.ListenAddrs()...), kgo.ConsumeTopics(schemas.TopicEvents),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	seen := map[string]bool{}
	for n := 0; n < total; {
		fs := cons.PollFetches(ctx)
		if err := fs.Err0(); err != nil {
			t.Fatalf("consume %s after %d records: %v", schemas.TopicEvents, n, err)
		}
		for _, r := range fs.Records() {
			n++
			ev, err := schemas.DecodeEvent(r.Value)
			if err != nil {
				t.Fatalf("record %d: %v", n, err)
			}
			if seen[ev.ID] {
				t.Errorf("event %s landed twice", ev.ID)
			}
			seen[ev.ID] = true
			if ev.Tenant != benchTenant || len(ev.Identifiers) != 3 || len(ev.Traits) != 2 {
				t.Errorf("event %s: tenant %q, %d identifiers, %d traits; want %q, 3, 2", ev.ID, ev.Tenant, len(ev.Identifiers), len(ev.Traits), benchTenant)
			}
			if got := string(r.Key); got != ev.Key() || ev.Identifiers[0].Type != schemas.IDUserID {
				t.Errorf("event %s: key %q, want %q, keyed by the user id (primary identifier %v)", ev.ID, got, ev.Key(), ev.Identifiers[0])
			}
		}
	}
	if len(seen) != events {
		t.Errorf("%d distinct events on %s, want %d", len(seen), schemas.TopicEvents, events)
	}
}

// countRecords is the number of records in topic: the sum of its
// partitions' end offsets (nothing is ever deleted or transactional here).
func countRecords(ctx context.Context, t *testing.T, cl *kgo.Client, topic string) int {
	t.Helper()
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatalf("end offsets of %s: %v", topic, err)
	}
	if err := ends.Error(); err != nil {
		t.Fatalf("end offsets of %s: %v", topic, err)
	}
	var n int64
	ends.Each(func(o kadm.ListedOffset) { n += o.Offset })
	return int(n)
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"defaults", Config{}, true},
		{"negative events", Config{Events: -1}, false},
		{"negative batch", Config{BatchSize: -1}, false},
		{"negative concurrency", Config{Concurrency: -1}, false},
		{"negative rounds", Config{Rounds: -1}, false},
		{"broker without port", Config{Brokers: []string{"localhost"}}, false},
		{"broker", Config{Brokers: []string{"localhost:9092"}}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.setDefaults()
			if err := tc.cfg.Validate(); (err == nil) != tc.ok {
				t.Errorf("Validate() = %v, want ok %v", err, tc.ok)
			}
		})
	}
}

// TestGenerate checks the workload: distinct ids, valid JSON arrays, every
// event in exactly one request body, and every identifier accepted by the
// validator (a dropped identifier would still be answered 202).
func TestGenerate(t *testing.T) {
	w, err := generate(1050, 100, 7, "t", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if w.batches() != 11 {
		t.Fatalf("%d bodies, want 11", w.batches())
	}
	ids := map[string]bool{}
	for _, id := range w.ids {
		ids[id] = true
	}
	if len(ids) != 1050 {
		t.Errorf("%d distinct ids, want 1050", len(ids))
	}
	norm, err := normalize.New(normalize.Config{DefaultRegion: "BR"})
	if err != nil {
		t.Fatal(err)
	}
	v := intake.NewValidator(norm)
	reg, err := partners.New([]partners.Partner{{Name: "bench", Tenant: benchTenant, Keys: []string{"bench-key-test"}}})
	if err != nil {
		t.Fatal(err)
	}
	p, _ := reg.ByName("bench")
	var n int
	for i, body := range w.bodies {
		var evs []schemas.RawEvent
		if err := json.Unmarshal(body, &evs); err != nil {
			t.Fatalf("body %d: %v", i, err)
		}
		lo, hi := w.span(i)
		if len(evs) != hi-lo {
			t.Errorf("body %d has %d events, want %d", i, len(evs), hi-lo)
		}
		for j, ev := range evs {
			if ev.ID != w.ids[lo+j] || len(ev.Identifiers) != 3 {
				t.Errorf("body %d event %d: id %q with %d identifier types, want %q with 3", i, j, ev.ID, len(ev.Identifiers), w.ids[lo+j])
			}
			out, dropped, rej := v.Validate(p, &ev, time.Now())
			if rej != nil || len(dropped) > 0 || len(out.Identifiers) != 3 {
				t.Errorf("event %s: rejected %v, dropped %v", ev.ID, rej, dropped)
			} else if key := string(w.keys[lo+j]); key != out.Key() {
				t.Errorf("event %s: raw key %q, ingest key %q", ev.ID, key, out.Key())
			}
		}
		n += len(evs)
	}
	if n != 1050 {
		t.Errorf("bodies carry %d events, want 1050", n)
	}
}

// checkRawCopies reads the total records of TopicRaw and checks that they
// are the JSON of events distinct events, each exactly three times (raw,
// raw batched, HTTP floor): twice with the event's real key and once, from
// the HTTP floor, with a key of NodeID's form made from the element.
func checkRawCopies(ctx context.Context, t *testing.T, brokers []string, total, events int) {
	t.Helper()
	cons, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(TopicRaw),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	keys := map[string][]string{} // event JSON -> its records' keys
	for n := 0; n < total; {
		fs := cons.PollFetches(ctx)
		if err := fs.Err0(); err != nil {
			t.Fatalf("consume %s after %d records: %v", TopicRaw, n, err)
		}
		for _, r := range fs.Records() {
			n++
			keys[string(r.Value)] = append(keys[string(r.Value)], string(r.Key))
		}
	}
	if len(keys) != events {
		t.Errorf("%s holds %d distinct values, want %d", TopicRaw, len(keys), events)
	}
	bad := 0
	for v, ks := range keys {
		var ev struct{ ID string }
		if err := json.Unmarshal([]byte(v), &ev); err != nil || ev.ID == "" {
			t.Fatalf("a record of %s is not an event as it was sent (%v): %.80s", TopicRaw, err, v)
		}
		if len(ks) != 3 {
			if bad++; bad <= 5 {
				t.Errorf("event %s is on %s %d times, want 3", ev.ID, TopicRaw, len(ks))
			}
			continue
		}
		slices.Sort(ks)
		// Two copies carry the real key, the floor's its own.
		real, floor := ks[0], ks[2]
		if ks[1] != ks[0] {
			real, floor = ks[1], ks[0]
		}
		if ks[0] == ks[2] || (ks[1] != ks[0] && ks[1] != ks[2]) ||
			len(floor) != schemas.NodeIDLen || !strings.HasPrefix(floor, "p_") || len(real) != schemas.NodeIDLen {
			if bad++; bad <= 5 {
				t.Errorf("event %s is on %s with keys %q; want 3 copies, 2 with its key and 1 with the floor's", ev.ID, TopicRaw, ks)
			}
		}
	}
}

// TestHTTPFloorFails: a request the HTTP floor does not answer 202 fails
// the phase (and so the run): a body that is not a JSON array, a body over
// the limit, and a producer that cannot write.
func TestHTTPFloorFails(t *testing.T) {
	cluster, err := devbroker.Start(devbroker.Config{Addr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b, err := start(ctx, Config{Concurrency: 2, Partitions: 2, BatchSize: 100, Brokers: cluster.ListenAddrs()})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	w, err := generate(300, 100, 3, "fails", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.httpFloor(ctx, w, 2); err != nil {
		t.Fatalf("the workload as generated: %v", err)
	}
	good := w.bodies[1]
	// One client from here on: a failed request cancels the phase, and with
	// it the other clients' requests in flight, whose error (not the one
	// this case expects) could be the one the phase reports.
	for _, tc := range []struct {
		name, body, want string
	}{
		{"not an array", `{"id":"x"}`, "400 Bad Request"},
		{"cut short", string(good[:len(good)-1]), "400 Bad Request"},
		{"empty array", `[]`, "400 Bad Request"},
		{"over the body limit", "[" + strings.Repeat(`"x",`, 1<<18) + `"x"]`, "413 Request Entity Too Large"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w.bodies[1] = []byte(tc.body)
			defer func() { w.bodies[1] = good }()
			_, err := b.httpFloor(ctx, w, 1)
			if err == nil || !strings.Contains(err.Error(), "http floor request 1: got "+tc.want) {
				t.Errorf("err = %v, want request 1 answered %s", err, tc.want)
			}
		})
	}
	// Without a producer nothing is acknowledged: 503, never 202.
	b.pubCl.Close()
	_, err = b.httpFloor(ctx, w, 1)
	if err == nil || !strings.Contains(err.Error(), "503 Service Unavailable") {
		t.Errorf("with the producer closed: err = %v, want 503", err)
	}
}

// TestHTTPFloorKeys: the floor's keys have NodeID's length and form and
// spread over the partitions as evenly as the real keys do (each partition
// within a fifth of the mean, for both).
func TestHTTPFloorKeys(t *testing.T) {
	w, err := generate(8000, 100, 5, "keys", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	h := &floorHandler{seed: maphash.MakeSeed()}
	const parts = 8
	part := kafkaclient.Partitioner().ForTopic(TopicRaw)
	var real, floor [parts]int
	seen := map[string]bool{}
	for i, e := range w.events {
		k := h.appendKey(nil, e)
		if len(k) != schemas.NodeIDLen || !strings.HasPrefix(string(k), "p_") {
			t.Fatalf("key %q: want %d bytes starting p_", k, schemas.NodeIDLen)
		}
		if again := h.appendKey(nil, e); string(again) != string(k) {
			t.Fatalf("the key of one element changed: %q, %q", k, again)
		}
		seen[string(k)] = true
		floor[part.Partition(&kgo.Record{Key: k}, parts)]++
		real[part.Partition(&kgo.Record{Key: w.keys[i]}, parts)]++
	}
	if len(seen) != len(w.events) {
		t.Errorf("%d distinct keys for %d distinct events", len(seen), len(w.events))
	}
	mean := len(w.events) / parts
	for p := range parts {
		for _, c := range []struct {
			name string
			n    int
		}{{"real", real[p]}, {"floor", floor[p]}} {
			if c.n < mean*4/5 || c.n > mean*6/5 {
				t.Errorf("partition %d gets %d of the %s keys, want %d ± 20%% (real %v, floor %v)", p, c.n, c.name, mean, real, floor)
			}
		}
	}
}
