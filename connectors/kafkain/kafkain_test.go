package kafkain

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rolodex/rolodex/connectors/ingest"
	"github.com/rolodex/rolodex/internal/kafkaclient"
	"github.com/rolodex/rolodex/internal/normalize"
	"github.com/rolodex/rolodex/internal/partners"
	"github.com/rolodex/rolodex/schemas"
)

func produce(t *testing.T, cl *kgo.Client, topic string, values ...[]byte) {
	t.Helper()
	for _, v := range values {
		if err := cl.ProduceSync(context.Background(), &kgo.Record{Topic: topic, Value: v}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
}

// count returns the number of records in topic.
func count(t *testing.T, adm *kadm.Client, topic string) int64 {
	t.Helper()
	ends, err := adm.ListEndOffsets(context.Background(), topic)
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	ends.Each(func(o kadm.ListedOffset) { n += o.Offset })
	return n
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestConnector(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, schemas.TopicEvents, schemas.TopicDeadLetter, schemas.IngestTopic("demo")))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	brokers := c.ListenAddrs()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)

	reg, err := partners.New([]partners.Partner{{Name: "demo", Tenant: "t1", Keys: []string{"demo-key"}}})
	if err != nil {
		t.Fatal(err)
	}
	norm, err := normalize.New(normalize.Config{})
	if err != nil {
		t.Fatal(err)
	}
	start := func() (stop func()) {
		conn, err := New(Config{Kafka: kafkaclient.Config{Brokers: brokers}}, reg, ingest.NewValidator(norm), ingest.NewMetrics(nil))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- conn.Run(ctx) }()
		return func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
			conn.Close()
		}
	}

	avro, err := schemas.EncodeIngestAvro(&schemas.RawEvent{ID: "a-1", Type: "signup", Identifiers: map[string][]string{"email": {"Avro@Example.com"}},
		Traits: map[string]json.RawMessage{"plan": json.RawMessage(`"pro"`)}})
	if err != nil {
		t.Fatal(err)
	}
	topic := schemas.IngestTopic("demo")
	produce(t, cl, topic,
		[]byte(`{"id":"j-1","type":"page.viewed","identifiers":{"email":"Ana@Example.com","phone":"+55 11 91234-5678"}}`),
		avro,
		[]byte(`{"id":"bad-json",`),
		[]byte{0, 0, 0, 0, 4, 0xff, 0xff},
		[]byte(`{"id":"no-ids","type":"x","identifiers":{}}`),
	)
	stop := start()
	waitFor(t, "2 events and 3 dead letters", func() bool {
		return count(t, adm, schemas.TopicEvents) == 2 && count(t, adm, schemas.TopicDeadLetter) == 3
	})
	waitFor(t, "offsets committed", func() bool {
		lag, err := adm.Lag(context.Background(), schemas.GroupKafkaIngest)
		if err != nil {
			return false
		}
		l, ok := lag[schemas.GroupKafkaIngest]
		return ok && l.FetchErr == nil && l.Lag.Total() == 0 && len(l.Lag) > 0
	})
	stop()

	// A restarted connector continues after the committed offsets: nothing
	// is read twice.
	produce(t, cl, topic, []byte(`{"id":"j-2","type":"page.viewed","identifiers":{"user_id":"u-2"}}`))
	stop = start()
	waitFor(t, "the third event", func() bool { return count(t, adm, schemas.TopicEvents) == 3 })
	time.Sleep(300 * time.Millisecond) // give a wrong re-read the chance to show up
	stop()
	if n := count(t, adm, schemas.TopicEvents); n != 3 {
		t.Fatalf("%d events after restart, want 3", n)
	}

	// What landed is right.
	rd, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(schemas.TopicEvents, schemas.TopicDeadLetter))
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	evs := map[string]*schemas.Event{}
	var dls []*schemas.DeadLetter
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for len(evs)+len(dls) < 6 && ctx.Err() == nil {
		rd.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
			if r.Topic == schemas.TopicEvents {
				ev, err := schemas.DecodeEvent(r.Value)
				if err != nil {
					t.Fatal(err)
				}
				evs[ev.ID] = ev
				return
			}
			dl, err := schemas.DecodeDeadLetter(r.Value)
			if err != nil {
				t.Fatal(err)
			}
			dls = append(dls, dl)
		})
	}
	if a := evs["a-1"]; a == nil || a.Tenant != "t1" || a.Identifiers[0].Value != "avro@example.com" || a.Traits["plan"] != `"pro"` {
		t.Fatalf("avro event = %+v", a)
	}
	if j := evs["j-1"]; j == nil || len(j.Identifiers) != 2 || j.Partner != "demo" {
		t.Fatalf("json event = %+v", j)
	}
	reasons := map[string]bool{}
	for _, dl := range dls {
		reasons[dl.Reason] = true
		if dl.SourceKind != schemas.SourceKafka || dl.Topic != topic || dl.Partner != "demo" || dl.Tenant != "t1" || len(dl.Payload) == 0 || dl.Message == "" {
			t.Errorf("dead letter = %+v", dl)
		}
	}
	for _, want := range []string{ingest.ReasonInvalidJSON, ingest.ReasonInvalidAvro, ingest.ReasonNoIdentifiers} {
		if !reasons[want] {
			t.Errorf("no dead letter with reason %s (got %v)", want, reasons)
		}
	}
}
