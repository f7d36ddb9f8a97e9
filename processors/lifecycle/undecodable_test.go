package lifecycle

import (
	"context"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/lovoo/goka"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rolodex/rolodex/internal/kafkatest"
	"github.com/rolodex/rolodex/schemas"
)

// A record that does not decode on the input of each of the three groups
// (rolodex.events for the router, rolodex.messages.recipients,
// rolodex.messages.events) is dead-lettered (reason undecodable, its
// topic, partition, offset and bytes) and skipped: the next valid send is
// routed, folded and checked, and no group stops (before, goka stopped the
// group on it at every restart).
func TestUndecodableRecordsDeadLettered(t *testing.T) {
	brokers := kafkatest.Cluster(t, 1, schemas.TopicEvents)
	cl := kafkatest.Client(t, brokers)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := EnsureTopics(ctx, cl, 1); err != nil {
		t.Fatal(err)
	}
	groups := map[string]string{schemas.TopicEvents: schemas.GroupMessagesRouter,
		schemas.TopicMessageRecipients: schemas.GroupRecipients, schemas.TopicMessageEvents: schemas.GroupLifecycle}
	garbage := map[string][]byte{schemas.TopicEvents: []byte("not avro"), schemas.TopicMessageRecipients: []byte("{not json"),
		schemas.TopicMessageEvents: []byte("[1,")}
	offsets := map[string]int64{}
	for topic := range garbage {
		r, err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Key: []byte("k"), Value: garbage[topic]}).First()
		if err != nil {
			t.Fatal(err)
		}
		offsets[topic] = r.Offset
	}
	ev := &schemas.Event{Tenant: "t1", ID: "s-1", Type: schemas.MessageEventType(schemas.MessageSent), Time: time.UnixMilli(5000), Source: "test",
		Partner: "p", Identifiers: []schemas.Identifier{{Type: schemas.IDEmail, Value: "ana@example.com"}},
		Properties: map[string]string{"message_id": strconv.Quote("welcome")}, ReceivedAt: time.UnixMilli(5000)}
	v, err := schemas.EncodeEvent(ev)
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: schemas.TopicEvents, Key: []byte(ev.Key()), Value: v}).FirstErr(); err != nil {
		t.Fatal(err)
	}

	reg := prometheus.NewRegistry()
	p, err := New(Config{Brokers: brokers, StorageDir: filepath.Join(t.TempDir(), "lifecycle"), Registerer: reg})
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
			t.Fatalf("the lifecycle stopped: %v", err)
		default:
		}
		letters := kafkatest.ReadAll(t, brokers, schemas.TopicDeadLetter)
		messages := kafkatest.ReadAll(t, brokers, string(goka.GroupTable(schemas.GroupLifecycle)))
		recipients := kafkatest.ReadAll(t, brokers, string(goka.GroupTable(schemas.GroupRecipients)))
		if len(letters) == len(garbage) && len(messages) > 0 && len(recipients) > 0 {
			for _, r := range letters {
				d, err := schemas.DecodeDeadLetter(r.Value)
				if err != nil {
					t.Fatal(err)
				}
				if d.Reason != schemas.ReasonUndecodable || d.SourceKind != schemas.SourceProcessor || d.Message == "" ||
					string(d.Payload) != string(garbage[d.Topic]) || d.Partition != 0 || d.Offset != offsets[d.Topic] {
					t.Errorf("dead letter %+v, want reason undecodable of %s/0@%d", d, d.Topic, offsets[d.Topic])
				}
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 90 s: %d dead letters (want %d), %d message and %d recipient table records (want some)",
				len(letters), len(garbage), len(messages), len(recipients))
		}
		time.Sleep(200 * time.Millisecond)
	}
	for topic, group := range groups {
		if got := undecodable(t, reg, group, topic); got != 1 {
			t.Errorf("rolodex_processor_undecodable_records_total{%s,%s} = %v, want 1", group, topic, got)
		}
	}
}

// undecodable is the count of group and topic on reg.
func undecodable(t *testing.T, reg *prometheus.Registry, group, topic string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
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
				return m.Counter.GetValue()
			}
		}
	}
	return 0
}
