package fanout

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rolodex/rolodex/internal/kafkatest"
	"github.com/rolodex/rolodex/schemas"
)

// A record that does not decode on rolodex.fanout.input is dead-lettered
// (reason undecodable, its topic, partition, offset and bytes) and
// skipped: the next valid event is handled (counted by its outcome) and
// the stage keeps running (before, goka stopped the group on it at every
// restart).
func TestUndecodableRecordsDeadLettered(t *testing.T) {
	k := newKafkaEnv(t, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	garbage := []byte("{not json")
	r, err := k.prod.ProduceSync(ctx, &kgo.Record{Topic: schemas.TopicFanoutInput, Key: []byte("p_1"), Value: garbage}).First()
	if err != nil {
		t.Fatal(err)
	}
	offset := r.Offset
	kafkatest.ProduceJSON(t, k.prod, schemas.TopicFanoutInput, "p_1",
		&schemas.FanoutInput{Event: &schemas.FanoutEvent{Tenant: "t", Topic: "nobody", Publisher: "p", EventID: "e1", Type: "x", Time: 1}}, time.UnixMilli(1))

	reg := prometheus.NewRegistry()
	p, err := New(Config{Brokers: k.brokers, StorageDir: filepath.Join(t.TempDir(), "fanout"), Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	stopped := false
	defer func() {
		cancel()
		if !stopped {
			<-done
		}
	}()
	deadline := time.Now().Add(90 * time.Second)
	for {
		select {
		case err := <-done:
			stopped = true
			t.Fatalf("the stage stopped: %v", err)
		default:
		}
		letters := k.readAll(schemas.TopicDeadLetter)
		handled := count(t, reg, "rolodex_fanout_events_total", nil)
		if len(letters) == 1 && handled == 1 {
			d, err := schemas.DecodeDeadLetter(letters[0].Value)
			if err != nil {
				t.Fatal(err)
			}
			if d.Reason != schemas.ReasonUndecodable || d.SourceKind != schemas.SourceProcessor || d.Message == "" ||
				string(d.Payload) != string(garbage) || d.Topic != schemas.TopicFanoutInput || d.Partition != 0 || d.Offset != offset {
				t.Errorf("dead letter %+v, want reason undecodable of %s/0@%d", d, schemas.TopicFanoutInput, offset)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 90 s: %d dead letters (want 1), %v events handled (want 1)", len(letters), handled)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if got := count(t, reg, "rolodex_processor_undecodable_records_total",
		map[string]string{"group": schemas.GroupFanout, "topic": schemas.TopicFanoutInput}); got != 1 {
		t.Errorf("rolodex_processor_undecodable_records_total = %v, want 1", got)
	}
	if got := count(t, reg, "rolodex_fanout_invalid_records_total", nil); got != 0 {
		t.Errorf("rolodex_fanout_invalid_records_total = %v, want 0 (the dead letter counts it)", got)
	}
}

// count sums the series of name on reg whose labels include want.
func count(t *testing.T, reg *prometheus.Registry, name string, want map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
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
			sum += m.Counter.GetValue()
		}
	}
	return sum
}
