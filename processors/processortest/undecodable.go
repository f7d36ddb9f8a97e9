// Package processortest is test support shared by the goka processors'
// tests (a ...test package: only tests import it).
package processortest

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rolodex/rolodex/internal/kafkatest"
	"github.com/rolodex/rolodex/schemas"
)

// Garbled is a record a group cannot decode, on one of its inputs.
type Garbled struct {
	Group, Topic, Key string
	Value             []byte
	// Partition and Offset are set by Produce.
	Partition int32
	Offset    int64
}

// Produce writes each record of gs and notes where it landed.
func Produce(t *testing.T, cl *kgo.Client, gs []Garbled) {
	t.Helper()
	for i := range gs {
		g := &gs[i]
		r, err := cl.ProduceSync(context.Background(), &kgo.Record{Topic: g.Topic, Key: []byte(g.Key), Value: g.Value}).First()
		if err != nil {
			t.Fatal(err)
		}
		g.Partition, g.Offset = r.Partition, r.Offset
	}
}

// ProduceEvent writes ev to rolodex.events as ingest does (Avro, keyed by
// its primary identifier).
func ProduceEvent(t *testing.T, cl *kgo.Client, ev *schemas.Event) {
	t.Helper()
	v, err := schemas.EncodeEvent(ev)
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.ProduceSync(context.Background(), &kgo.Record{Topic: schemas.TopicEvents, Key: []byte(ev.Key()), Value: v}).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// Stage is a processor running in the background until the test ends.
type Stage struct {
	done    chan error
	stopped bool
}

// Start runs run(ctx) until the test ends (its cleanup cancels ctx and
// waits for run to return).
func Start(t *testing.T, run func(context.Context) error) *Stage {
	ctx, cancel := context.WithCancel(context.Background())
	s := &Stage{done: make(chan error, 1)}
	go func() { s.done <- run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if !s.stopped {
			<-s.done
		}
	})
	return s
}

// WaitDeadLettered waits (90 s at most) until rolodex.deadletter holds one
// dead letter per record of gs and processed holds, then checks every
// letter: reason undecodable, source kind processor, the record's topic,
// partition, offset, key and bytes, a message naming its group. It fails
// the test when the stage stops meanwhile.
func WaitDeadLettered(t *testing.T, s *Stage, brokers []string, gs []Garbled, processed func() bool) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		select {
		case err := <-s.done:
			s.stopped = true
			t.Fatalf("the stage stopped: %v", err)
		default:
		}
		letters := kafkatest.ReadAll(t, brokers, schemas.TopicDeadLetter)
		ok := processed()
		if len(letters) == len(gs) && ok {
			for _, r := range letters {
				checkLetter(t, r, gs)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 90 s: %d dead letters (want %d), the valid records processed: %v", len(letters), len(gs), ok)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func checkLetter(t *testing.T, r *kgo.Record, gs []Garbled) {
	t.Helper()
	d, err := schemas.DecodeDeadLetter(r.Value)
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range gs {
		if d.Topic != g.Topic || d.Partition != g.Partition || d.Offset != g.Offset {
			continue
		}
		if d.Reason != schemas.ReasonUndecodable || d.SourceKind != schemas.SourceProcessor ||
			!strings.HasPrefix(d.Message, "group "+g.Group+": ") || string(d.Payload) != string(g.Value) || string(r.Key) != g.Key {
			t.Errorf("dead letter %+v (key %q), want reason undecodable of %s/%d@%d by %s", d, r.Key, g.Topic, g.Partition, g.Offset, g.Group)
		}
		return
	}
	t.Errorf("dead letter %+v of no garbled record", d)
}

// Sum sums the series of the metric name on reg whose labels include want.
func Sum(t *testing.T, reg prometheus.Gatherer, name string, want map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	total := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metric:
		for _, m := range mf.Metric {
			labels := map[string]string{}
			for _, l := range m.Label {
				labels[l.GetName()] = l.GetValue()
			}
			for k, v := range want {
				if labels[k] != v {
					continue metric
				}
			}
			total += m.Counter.GetValue()
		}
	}
	return total
}

// CheckCounted checks that rolodex_processor_undecodable_records_total
// counted each record of gs once, by group and topic.
func CheckCounted(t *testing.T, reg prometheus.Gatherer, gs []Garbled) {
	t.Helper()
	for _, g := range gs {
		if got := Sum(t, reg, "rolodex_processor_undecodable_records_total", map[string]string{"group": g.Group, "topic": g.Topic}); got != 1 {
			t.Errorf("rolodex_processor_undecodable_records_total{%s,%s} = %v, want 1", g.Group, g.Topic, got)
		}
	}
}
