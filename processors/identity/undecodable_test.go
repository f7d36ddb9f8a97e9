package identity

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rolodex/rolodex/internal/kafkaclient"
	"github.com/rolodex/rolodex/internal/kafkatest"
	"github.com/rolodex/rolodex/schemas"
)

// A record that does not decode, on rolodex.events or on the loopback,
// is dead-lettered (reason undecodable, its topic, partition, offset and
// bytes) and skipped: the next valid event is folded and the processor
// keeps running (before, goka stopped the group on it at every restart).
func TestUndecodableRecordsDeadLettered(t *testing.T) {
	brokers := kafkatest.Cluster(t, 1, schemas.TopicEvents)
	cl := kafkatest.Client(t, brokers)
	if err := kafkaclient.EnsureTopics(context.Background(), cl, 1, Topics(1)...); err != nil {
		t.Fatal(err)
	}
	loop := schemas.GroupIdentity + "-loop"
	garbage := map[string][]byte{schemas.TopicEvents: []byte("not avro at all"), loop: []byte("{not json")}
	offsets := map[string]int64{}
	for _, topic := range []string{schemas.TopicEvents, loop} {
		res := cl.ProduceSync(context.Background(), &kgo.Record{Topic: topic, Key: []byte("k"), Value: garbage[topic]})
		r, err := res.First()
		if err != nil {
			t.Fatal(err)
		}
		offsets[topic] = r.Offset
	}
	val, err := schemas.EncodeEvent(ev("t1", "e1", 1, "email", "a@example.com"))
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.ProduceSync(context.Background(), &kgo.Record{Topic: schemas.TopicEvents, Key: []byte(ev("t1", "e1", 1, "email", "a@example.com").Key()), Value: val}).FirstErr(); err != nil {
		t.Fatal(err)
	}

	reg := prometheus.NewRegistry()
	p, err := New(ProcessorConfig{Brokers: brokers, StorageDir: filepath.Join(t.TempDir(), "s"), Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	stopped := false
	defer func() {
		cancel()
		if !stopped {
			if err := <-done; !canceledOnly(err) {
				t.Errorf("run: %v", err)
			}
		}
	}()

	deadline := time.Now().Add(90 * time.Second)
	for {
		select {
		case err := <-done:
			stopped = true
			t.Fatalf("the processor stopped: %v", err)
		default:
		}
		letters := kafkatest.ReadAll(t, brokers, schemas.TopicDeadLetter)
		if len(letters) == len(garbage) && len(latest(t, brokers, schemas.TopicProfiles)) > 0 {
			for _, r := range letters {
				d, err := schemas.DecodeDeadLetter(r.Value)
				if err != nil {
					t.Fatal(err)
				}
				if d.Reason != schemas.ReasonUndecodable || d.SourceKind != schemas.SourceProcessor || !strings.HasPrefix(d.Message, "group "+schemas.GroupIdentity+": ") ||
					string(d.Payload) != string(garbage[d.Topic]) || d.Partition != 0 || d.Offset != offsets[d.Topic] || string(r.Key) != "k" {
					t.Errorf("dead letter %+v (key %q), want reason undecodable of %s/0@%d", d, r.Key, d.Topic, offsets[d.Topic])
				}
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 90 s: %d dead letters (want %d), %d profiles (want one)", len(letters), len(garbage), len(latest(t, brokers, schemas.TopicProfiles)))
		}
		time.Sleep(200 * time.Millisecond)
	}
	for _, topic := range []string{schemas.TopicEvents, loop} {
		if got := testutil.ToFloat64(undecodable(t, reg, schemas.GroupIdentity, topic)); got != 1 {
			t.Errorf("rolodex_processor_undecodable_records_total{%s} = %v, want 1", topic, got)
		}
	}
}

// undecodable is the counter of group and topic on reg.
func undecodable(t *testing.T, reg *prometheus.Registry, group, topic string) prometheus.Counter {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "x"})
	for _, mf := range mfs {
		if mf.GetName() != "rolodex_processor_undecodable_records_total" {
			continue
		}
		for _, m := range mf.Metric {
			labels := map[string]string{}
			for _, l := range m.Label {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["group"] == group && labels["topic"] == topic {
				c.Add(m.Counter.GetValue())
			}
		}
	}
	return c
}
