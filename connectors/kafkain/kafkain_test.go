package kafkain

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rolodex/rolodex/intake"
	"github.com/rolodex/rolodex/internal/kafkaclient"
	"github.com/rolodex/rolodex/normalize"
	"github.com/rolodex/rolodex/partners"
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

// testCluster is a kfake cluster with Rolodex's topics and partner demo
// (tenant t1), and a client on it.
type testCluster struct {
	brokers []string
	cl      *kgo.Client
	adm     *kadm.Client
	reg     *partners.Registry
	norm    *normalize.Normalizer
}

func newTestCluster(t *testing.T) *testCluster {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, schemas.TopicEvents, schemas.TopicDeadLetter, schemas.IngestTopic("demo")))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	tc := &testCluster{brokers: c.ListenAddrs()}
	if tc.cl, err = kgo.NewClient(kgo.SeedBrokers(tc.brokers...)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tc.cl.Close)
	tc.adm = kadm.NewClient(tc.cl)
	if tc.reg, err = partners.New([]partners.Partner{{Name: "demo", Tenant: "t1", Keys: []string{"demo-key"}}}); err != nil {
		t.Fatal(err)
	}
	if tc.norm, err = normalize.New(normalize.Config{}); err != nil {
		t.Fatal(err)
	}
	return tc
}

// start runs a Connector until the returned stop.
func (tc *testCluster) start(t *testing.T) (stop func()) {
	t.Helper()
	conn, err := New(Config{Kafka: kafkaclient.Config{Brokers: tc.brokers}}, tc.reg, intake.NewValidator(tc.norm), intake.NewMetrics(nil))
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

func TestConnector(t *testing.T) {
	tc := newTestCluster(t)
	brokers, cl, adm := tc.brokers, tc.cl, tc.adm
	start := func() func() { return tc.start(t) }

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
	for _, want := range []string{intake.ReasonInvalidJSON, intake.ReasonInvalidAvro, intake.ReasonNoIdentifiers} {
		if !reasons[want] {
			t.Errorf("no dead letter with reason %s (got %v)", want, reasons)
		}
	}
}

// A record with text that is not valid UTF-8, in any text field, JSON or
// Avro, is dead-lettered with the byte offset and the field, as received;
// before, it was written with U+FFFD in place of the invalid bytes.
func TestInvalidUTF8(t *testing.T) {
	tc := newTestCluster(t)
	want := map[string]string{} // record value -> dead-letter message
	ids := `"identifiers":{"user_id":"u-1"}`
	for field, doc := range map[string]string{ // "|" before the first invalid byte
		"id":                   "{\"id\":\"e-|\xff\xfe\",\"type\":\"t\"," + ids + "}",
		"type":                 "{\"id\":\"e\",\"type\":\"t|\xc3\"," + ids + "}",
		"time":                 "{\"id\":\"e\",\"type\":\"t\",\"time\":\"2026|\xff\"," + ids + "}",
		"source":               "{\"id\":\"e\",\"type\":\"t\",\"source\":\"w|\xe9b\"," + ids + "}",
		"identifiers.email":    "{\"id\":\"e\",\"type\":\"t\",\"identifiers\":{\"email\":\"nu|\xff\xfe@example.com\"}}",
		"identifiers.email[1]": "{\"id\":\"e\",\"type\":\"t\",\"identifiers\":{\"email\":[\"a@b.co\",\"nu|\xff@example.com\"]}}",
		"a key in identifiers": "{\"id\":\"e\",\"type\":\"t\",\"identifiers\":{\"e|\xffmail\":\"a@b.co\"}}",
		"a key in traits":      "{\"id\":\"e\",\"type\":\"t\"," + ids + ",\"traits\":{\"n|\xe3o\":1}}",
		"traits.name":          "{\"id\":\"e\",\"type\":\"t\"," + ids + ",\"traits\":{\"name\":\"An|\xe3\"}}",
		"a key in properties":  "{\"id\":\"e\",\"type\":\"t\"," + ids + ",\"properties\":{\"p|\xe1gina\":\"/\"}}",
		"properties.url":       "{\"id\":\"e\",\"type\":\"t\"," + ids + ",\"properties\":{\"url\":\"/|\xff\"}}",
	} {
		at := strings.Index(doc, "|")
		want[strings.Replace(doc, "|", "", 1)] = fmt.Sprintf("invalid UTF-8 at byte %d (in %s)", at, field)
	}
	want[`{"id":"e-\udc00","type":"t",`+ids+`}`] = `invalid Unicode at byte 9 (in id): \udc00 is half of a UTF-16 surrogate pair, not a character`
	// Avro: one event whose every text holds a marker; each record has
	// one marker's "@@" turned into invalid bytes (same length, so the
	// Avro stays well-formed).
	avro, err := schemas.EncodeIngestAvro(&schemas.RawEvent{ID: "I@@", Type: "T@@", Time: "M@@", Source: "S@@",
		Identifiers: map[string][]string{"user_id": {"U@@"}, "X@@": {"x"}},
		Traits:      map[string]json.RawMessage{"name": json.RawMessage(`"V@@"`), "K@@": json.RawMessage(`1`)},
		Properties:  map[string]json.RawMessage{"url": json.RawMessage(`P@@`), "Q@@": json.RawMessage(`1`)}})
	if err != nil {
		t.Fatal(err)
	}
	for marker, field := range map[string]string{"I": "id", "T": "type", "M": "time", "S": "source",
		"X": "a key in identifiers", "U": "identifiers.user_id[0]", "K": "a key in traits", `"V`: "traits.name",
		"Q": "a key in properties", "P": "properties.url"} {
		v := bytes.Replace(avro, []byte(marker+"@@"), []byte(marker+"\xff\xfe"), 1)
		if bytes.Equal(v, avro) {
			t.Fatalf("marker %s@@ is not in the Avro record", marker)
		}
		want[string(v)] = fmt.Sprintf("schemas: decode rolodex.IngestEvent v1: invalid UTF-8 at byte %d of %s", len(marker), field)
	}
	topic := schemas.IngestTopic("demo")
	for v := range want {
		produce(t, tc.cl, topic, []byte(v))
	}
	produce(t, tc.cl, topic, []byte(`{"id":"ok","type":"t",`+ids+`}`))
	stop := tc.start(t)
	waitFor(t, "1 event and every dead letter", func() bool {
		return count(t, tc.adm, schemas.TopicEvents) == 1 && count(t, tc.adm, schemas.TopicDeadLetter) == int64(len(want))
	})
	stop()

	rd, err := kgo.NewClient(kgo.SeedBrokers(tc.brokers...), kgo.ConsumeTopics(schemas.TopicDeadLetter))
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	seen := 0
	for seen < len(want) && ctx.Err() == nil {
		rd.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
			seen++
			dl, err := schemas.DecodeDeadLetter(r.Value)
			if err != nil {
				t.Fatal(err)
			}
			msg, ok := want[string(dl.Payload)]
			if !ok || dl.Reason != intake.ReasonInvalidUTF8 || dl.Message != msg || dl.SourceKind != schemas.SourceKafka || dl.Tenant != "t1" {
				t.Errorf("dead letter %s %q of %q; want %s %q", dl.Reason, dl.Message, dl.Payload, intake.ReasonInvalidUTF8, msg)
			}
		})
	}
	if seen != len(want) {
		t.Fatalf("read %d dead letters, want %d", seen, len(want))
	}
}

// memTopics is an in-memory intake.Topics; loading makes it answer an
// error until cleared.
type memTopics struct {
	mu      sync.Mutex
	recs    map[string]schemas.TopicRecord
	loading bool
}

func (m *memTopics) Get(tenant, name string) (schemas.TopicRecord, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.loading {
		return schemas.TopicRecord{}, false, errors.New("still loading")
	}
	r, ok := m.recs[schemas.TopicKey(tenant, name)]
	return r, ok, nil
}

// The rolodex-topic header sets the event's topic when the partner owns
// it in its tenant; an unknown, deleted or other tenant's topic is a dead
// letter unknown_topic, another partner's not_topic_owner; while the store
// is loading the batch waits (nothing dead-lettered for want of an
// answer).
func TestTopicHeader(t *testing.T) {
	tc := newTestCluster(t)
	topics := &memTopics{loading: true, recs: map[string]schemas.TopicRecord{
		schemas.TopicKey("t1", "car-chosen"): {Topic: schemas.Topic{Tenant: "t1", Name: "car-chosen", Owner: "demo"}, Version: 1},
		schemas.TopicKey("t1", "theirs"):     {Topic: schemas.Topic{Tenant: "t1", Name: "theirs", Owner: "other"}, Version: 1},
		schemas.TopicKey("t1", "gone"):       {Topic: schemas.Topic{Tenant: "t1", Name: "gone", Owner: "demo"}, Version: 2, Deleted: true},
		schemas.TopicKey("t2", "elsewhere"):  {Topic: schemas.Topic{Tenant: "t2", Name: "elsewhere", Owner: "demo"}, Version: 1},
	}}
	in := schemas.IngestTopic("demo")
	rec := func(id, topic string, header bool) *kgo.Record {
		r := &kgo.Record{Topic: in, Value: []byte(fmt.Sprintf(`{"id":%q,"type":"car.chosen","identifiers":{"user_id":"u-%s"}}`, id, id))}
		if header {
			r.Headers = []kgo.RecordHeader{{Key: intake.HeaderTopic, Value: []byte(topic)}}
		}
		return r
	}
	recs := []*kgo.Record{
		rec("ok", "car-chosen", true), rec("plain", "", false), rec("theirs", "theirs", true), rec("gone", "gone", true),
		rec("elsewhere", "elsewhere", true), rec("nope", "nope", true), rec("empty", "", true),
	}
	if err := tc.cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	conn, err := New(Config{Kafka: kafkaclient.Config{Brokers: tc.brokers}, Topics: topics, RetryBackoff: 50 * time.Millisecond},
		tc.reg, intake.NewValidator(tc.norm), intake.NewMetrics(nil))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- conn.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		conn.Close()
	}()
	time.Sleep(500 * time.Millisecond)
	if n, d := count(t, tc.adm, schemas.TopicEvents), count(t, tc.adm, schemas.TopicDeadLetter); n != 0 || d != 0 {
		t.Fatalf("while the store loads: %d events, %d dead letters written, want none", n, d)
	}
	topics.mu.Lock()
	topics.loading = false
	topics.mu.Unlock()
	waitFor(t, "2 events and 5 dead letters", func() bool {
		return count(t, tc.adm, schemas.TopicEvents) == 2 && count(t, tc.adm, schemas.TopicDeadLetter) == 5
	})

	rd, err := kgo.NewClient(kgo.SeedBrokers(tc.brokers...), kgo.ConsumeTopics(schemas.TopicEvents, schemas.TopicDeadLetter))
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	evs := map[string]*schemas.Event{}
	reasons := map[string]string{}
	rctx, rcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer rcancel()
	for len(evs)+len(reasons) < 7 && rctx.Err() == nil {
		rd.PollFetches(rctx).EachRecord(func(r *kgo.Record) {
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
			var raw struct{ ID string }
			_ = json.Unmarshal(dl.Payload, &raw)
			reasons[raw.ID] = dl.Reason
			if !strings.Contains(dl.Message, intake.HeaderTopic) {
				t.Errorf("dead letter %s: message %q does not name the header", raw.ID, dl.Message)
			}
		})
	}
	if ev := evs["ok"]; ev == nil || ev.Topic != "car-chosen" {
		t.Errorf("event ok = %+v, want topic car-chosen", ev)
	}
	if ev := evs["plain"]; ev == nil || ev.Topic != "" {
		t.Errorf("event plain = %+v, want no topic", ev)
	}
	want := map[string]string{"theirs": intake.ReasonNotTopicOwner, "gone": intake.ReasonUnknownTopic, "elsewhere": intake.ReasonUnknownTopic,
		"nope": intake.ReasonUnknownTopic, "empty": intake.ReasonUnknownTopic}
	for id, reason := range want {
		if reasons[id] != reason {
			t.Errorf("record %s: dead letter reason %q, want %q", id, reasons[id], reason)
		}
	}
}
