package fanoutdir

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rolodex/rolodex/internal/kafkatest"
	"github.com/rolodex/rolodex/processors/fanout"
	"github.com/rolodex/rolodex/schemas"
)

var (
	carTopic = schemas.TopicRecord{Version: 1, Topic: schemas.Topic{Tenant: "demo", Name: "car-chosen", Owner: "dealer",
		Allowed: []string{"bank"}, IncludeProfile: []string{"traits.name"}}}
	bankSub = schemas.SubscriptionRecord{Version: 1, Secret: "whsec_c2VjcmV0",
		Subscription: schemas.Subscription{ID: "sub_1", Tenant: "demo", Partner: "bank", Topic: "car-chosen", Kafka: true, Status: schemas.SubscriptionActive}}
)

func TestRecords(t *testing.T) {
	ts := time.UnixMilli(1_700_000_000_000)
	for _, tc := range []struct {
		name  string
		rec   *kgo.Record
		kind  string
		skip  string
		check func(t *testing.T, in *schemas.FanoutInput)
	}{
		{name: "topic", rec: &kgo.Record{Topic: schemas.TopicFanoutTopics, Value: kafkatest.JSON(t, carTopic), Timestamp: ts}, kind: "topic",
			check: func(t *testing.T, in *schemas.FanoutInput) {
				if in.Topic == nil || in.Topic.Topic.Name != "car-chosen" || in.Topic.Version != 1 || in.Subscription != nil {
					t.Fatalf("broadcast %+v", in)
				}
			}},
		{name: "subscription, secret left out", rec: &kgo.Record{Topic: schemas.TopicFanoutSubscriptions, Value: kafkatest.JSON(t, bankSub), Timestamp: ts},
			kind: "subscription", check: func(t *testing.T, in *schemas.FanoutInput) {
				if in.Subscription == nil || in.Subscription.Subscription.ID != "sub_1" || in.Subscription.Secret != "" || in.Topic != nil {
					t.Fatalf("broadcast %+v", in)
				}
			}},
		{name: "tombstone", rec: &kgo.Record{Topic: schemas.TopicFanoutTopics}, skip: "tombstone"},
		{name: "not JSON", rec: &kgo.Record{Topic: schemas.TopicFanoutTopics, Value: []byte("{")}, skip: "undecodable"},
		{name: "topic without a name", rec: &kgo.Record{Topic: schemas.TopicFanoutTopics, Value: []byte(`{"version":1}`)}, skip: "undecodable"},
		{name: "subscription without an id", rec: &kgo.Record{Topic: schemas.TopicFanoutSubscriptions, Value: []byte(`{"version":1}`)}, skip: "undecodable"},
		{name: "another topic", rec: &kgo.Record{Topic: "x", Value: kafkatest.JSON(t, carTopic)}, skip: "undecodable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, kind, skip := Records(tc.rec, 5)
			if kind != tc.kind || skip != tc.skip {
				t.Fatalf("kind %q skip %q, want %q %q", kind, skip, tc.kind, tc.skip)
			}
			if skip != "" {
				if len(out) != 0 {
					t.Fatalf("%d records for a skipped one", len(out))
				}
				return
			}
			if len(out) != 5 {
				t.Fatalf("%d records, want one per partition", len(out))
			}
			for p, r := range out {
				if r.Topic != schemas.TopicFanoutInput || r.Partition != int32(p) || string(r.Key) != schemas.DirectoryKey(int32(p), 5) ||
					!r.Timestamp.Equal(ts) {
					t.Fatalf("record %d: %s partition %d key %s at %v", p, r.Topic, r.Partition, r.Key, r.Timestamp)
				}
				if schemas.HashPartition(string(r.Key), 5) != int32(p) {
					t.Fatalf("key %s hashes to another partition than %d", r.Key, p)
				}
				var in schemas.FanoutInput
				if err := json.Unmarshal(r.Value, &in); err != nil {
					t.Fatal(err)
				}
				if !in.Directory() {
					t.Fatalf("not a directory record: %s", r.Value)
				}
				tc.check(t, &in)
			}
		})
	}
}

type env struct {
	t       *testing.T
	brokers []string
	cl      *kgo.Client
}

func newEnv(t *testing.T) *env {
	t.Helper()
	brokers := kafkatest.Cluster(t, 3, schemas.TopicEvents)
	cl := kafkatest.Client(t, brokers, kgo.ProducerLinger(0))
	if err := fanout.EnsureTopics(context.Background(), cl, 1); err != nil {
		t.Fatal(err)
	}
	return &env{t: t, brokers: brokers, cl: cl}
}

func (e *env) produce(topic, key string, v any, ts time.Time) {
	e.t.Helper()
	kafkatest.ProduceJSON(e.t, e.cl, topic, key, v, ts)
}

// readAll reads every record of topic.
func (e *env) readAll(topic string) []*kgo.Record {
	e.t.Helper()
	return kafkatest.ReadAll(e.t, e.brokers, topic)
}

// waitRecords waits until topic has n records (and not more) and returns
// them.
func (e *env) waitRecords(topic string, n int) []*kgo.Record {
	e.t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		recs := e.readAll(topic)
		if len(recs) > n {
			e.t.Fatalf("%s: %d records, want %d", topic, len(recs), n)
		}
		if len(recs) == n {
			return recs
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("%s: %d records within a minute, want %d", topic, len(recs), n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (e *env) run(b *Broadcast) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	return func() {
		cancel()
		if err := <-done; err != nil {
			e.t.Errorf("run: %v", err)
		}
	}
}

// The broadcast on Kafka (kfake over TCP): the store topics' records reach
// every partition of rolodex.fanout.input under its directory key, without
// the secret; a restart broadcasts only what came after its commit; and
// the fan-out group, fed by it, delivers a topic event to the subscription
// the directory names.
func TestBroadcastOnKafka(t *testing.T) {
	e := newEnv(t)
	b, err := New(Config{Brokers: e.brokers, SessionTimeout: 6 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ts := time.UnixMilli(1_735_725_600_000)
	e.produce(schemas.TopicFanoutTopics, carTopic.Topic.Key(), carTopic, ts)
	e.produce(schemas.TopicFanoutSubscriptions, bankSub.Subscription.ID, bankSub, ts)
	e.produce(schemas.TopicFanoutTopics, "demo/bad", "not a record", ts)
	stop := e.run(b)
	recs := e.waitRecords(schemas.TopicFanoutInput, 6)
	stop()
	perPartition := map[int32]int{}
	for _, r := range recs {
		if string(r.Key) != schemas.DirectoryKey(r.Partition, 3) {
			t.Fatalf("partition %d: key %s, want %s", r.Partition, r.Key, schemas.DirectoryKey(r.Partition, 3))
		}
		if strings.Contains(string(r.Value), "whsec_") {
			t.Fatalf("the secret was broadcast: %s", r.Value)
		}
		perPartition[r.Partition]++
	}
	if len(perPartition) != 3 || perPartition[0] != 2 || perPartition[1] != 2 || perPartition[2] != 2 {
		t.Fatalf("records per partition %v, want 2 on each of 3", perPartition)
	}

	// A restart reads on from its commit: only the new record goes out.
	b2, err := New(Config{Brokers: e.brokers, SessionTimeout: 6 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	changed := carTopic
	changed.Version = 2
	changed.Topic.Allowed = []string{"bank", "insurer"}
	e.produce(schemas.TopicFanoutTopics, changed.Topic.Key(), changed, ts)
	defer e.run(b2)()
	e.waitRecords(schemas.TopicFanoutInput, 9)

	// The fan-out group reads the directory and delivers.
	p, err := fanout.New(fanout.Config{Brokers: e.brokers, StorageDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("fanout: %v", err)
		}
	}()
	profile := &schemas.FanoutProfile{ID: "p_1", Tenant: "demo", Traits: map[string]string{"name": `"Ana"`}}
	e.produce(schemas.TopicFanoutInput, "p_1", &schemas.FanoutInput{Event: &schemas.FanoutEvent{Tenant: "demo", Topic: "car-chosen",
		Publisher: "dealer", EventID: "e-1", Type: "car.chosen", Time: ts.UnixMilli(), Profile: profile}}, ts)
	out := e.waitRecords(schemas.TopicFanoutDeliveries, 1)
	var d schemas.FanoutDelivery
	if err := json.Unmarshal(out[0].Value, &d); err != nil {
		t.Fatal(err)
	}
	if d.Subscription != "sub_1" || d.Partner != "bank" || d.WebhookID != "sub_1.e-1" || !d.Kafka || string(out[0].Key) != "sub_1/p_1" ||
		!strings.Contains(d.Body, `"profile":{"traits":{"name":"Ana"}}`) {
		t.Fatalf("delivery %s: %+v", out[0].Key, d)
	}
}
