package ingest

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rolodex/rolodex/intake"
	"github.com/rolodex/rolodex/internal/devbroker"
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
	if res.Raw.EventsPerSec <= 0 || res.RawBatched.EventsPerSec <= 0 || res.HTTP.EventsPerSec <= 0 {
		t.Fatalf("rates must be positive: raw %.0f, raw batched %.0f, http %.0f", res.Raw.EventsPerSec, res.RawBatched.EventsPerSec, res.HTTP.EventsPerSec)
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
	// The raw phase and the raw batched phase each wrote every event once.
	if n := countRecords(ctx, t, cl, TopicRaw); n != 2*events {
		t.Errorf("%s holds %d records, want %d", TopicRaw, n, 2*events)
	}
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
