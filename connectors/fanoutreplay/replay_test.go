package fanoutreplay

import (
	"context"
	"encoding/json"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rolodex/rolodex/connectors/fanoutdir"
	"github.com/rolodex/rolodex/internal/kafkatest"
	"github.com/rolodex/rolodex/processors/fanout"
	"github.com/rolodex/rolodex/schemas"
)

var (
	carTopic = schemas.TopicRecord{Version: 1, Topic: schemas.Topic{Tenant: "demo", Name: "car-chosen", Owner: "dealer",
		Allowed: []string{"bank", "insurer"}}}
	bankSub = schemas.SubscriptionRecord{Version: 1, Secret: "whsec_c2VjcmV0",
		Subscription: schemas.Subscription{ID: "sub_1", Tenant: "demo", Partner: "bank", Topic: "car-chosen", Kafka: true, Status: schemas.SubscriptionActive}}
	insurerSub = schemas.SubscriptionRecord{Version: 1, Secret: "whsec_c2VjcmV0",
		Subscription: schemas.Subscription{ID: "sub_2", Tenant: "demo", Partner: "insurer", Topic: "car-chosen", Kafka: true, Status: schemas.SubscriptionActive}}
	// The instants of the tests: events before since, since, events after.
	before = time.UnixMilli(1_735_725_600_000)
	since  = before.Add(time.Hour)
	after  = since.Add(time.Minute)
)

// withReplay is rec's next version carrying a replay request.
func withReplay(rec schemas.SubscriptionRecord, version int64, id string, from time.Time) schemas.SubscriptionRecord {
	rec.Version = version
	rec.Replay = &schemas.SubscriptionReplay{ID: id, Since: from.UTC().Format(time.RFC3339Nano), RequestedAt: from.UTC().Format(time.RFC3339Nano), RequestedBy: rec.Subscription.Partner}
	return rec
}

func TestDecide(t *testing.T) {
	disabled := withReplay(bankSub, 2, "rpl_1", since)
	disabled.Subscription.Status = schemas.SubscriptionDisabled
	bad := withReplay(bankSub, 2, "rpl_1", since)
	bad.Replay.Since = "yesterday"
	for _, tc := range []struct {
		name   string
		prev   string
		value  []byte
		id     string
		result string
	}{
		{name: "no replay", value: kafkatest.JSON(t, bankSub)},
		{name: "a new replay", value: kafkatest.JSON(t, withReplay(bankSub, 2, "rpl_1", since)), id: "rpl_1", result: ResultDone},
		{name: "the same replay again", prev: "rpl_1", value: kafkatest.JSON(t, withReplay(bankSub, 3, "rpl_1", since)), id: "rpl_1"},
		{name: "another replay", prev: "rpl_1", value: kafkatest.JSON(t, withReplay(bankSub, 4, "rpl_2", since)), id: "rpl_2", result: ResultDone},
		{name: "not active", value: kafkatest.JSON(t, disabled), id: "rpl_1", result: ResultInactive},
		{name: "since not an instant", value: kafkatest.JSON(t, bad), id: "rpl_1", result: ResultInvalid},
		{name: "tombstone", prev: "rpl_1"},
		{name: "undecodable keeps prev", prev: "rpl_1", value: []byte("{"), id: "rpl_1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id, req, result := Decide(tc.prev, tc.value)
			if id != tc.id || result != tc.result || (req != nil) != (result == ResultDone) {
				t.Fatalf("Decide = %q %+v %q, want %q %q", id, req, result, tc.id, tc.result)
			}
			if req != nil && (req.Subscription.ID != "sub_1" || req.Since != since.UnixMilli() || req.Replay.ID != tc.id) {
				t.Fatalf("request %+v", req)
			}
		})
	}
}

func profile(id string) *schemas.FanoutProfile {
	return &schemas.FanoutProfile{ID: id, Tenant: "demo", Traits: map[string]string{"name": `"Ana"`}}
}

func event(tenant, topic, id, profileID string) *schemas.FanoutEvent {
	p := profile(profileID)
	p.Tenant = tenant
	return &schemas.FanoutEvent{Tenant: tenant, Topic: topic, Publisher: "dealer", EventID: id, Type: "car.chosen",
		Time: before.UnixMilli(), Profile: p}
}

func TestReplayRecord(t *testing.T) {
	req := &Request{Subscription: bankSub.Subscription, Since: since.UnixMilli()}
	for _, tc := range []struct {
		name string
		rec  *kgo.Record
		key  string
	}{
		{name: "an event of the topic after since", key: "p_1",
			rec: &kgo.Record{Key: []byte("p_1"), Timestamp: after, Value: kafkatest.JSON(t, &schemas.FanoutInput{Event: event("demo", "car-chosen", "e-1", "p_1")})}},
		{name: "at since", key: "p_1",
			rec: &kgo.Record{Key: []byte("p_1"), Timestamp: since, Value: kafkatest.JSON(t, &schemas.FanoutInput{Event: event("demo", "car-chosen", "e-1", "p_1")})}},
		{name: "before since",
			rec: &kgo.Record{Key: []byte("p_1"), Timestamp: before, Value: kafkatest.JSON(t, &schemas.FanoutInput{Event: event("demo", "car-chosen", "e-1", "p_1")})}},
		{name: "another tenant's topic of that name",
			rec: &kgo.Record{Key: []byte("p_1"), Timestamp: after, Value: kafkatest.JSON(t, &schemas.FanoutInput{Event: event("acme", "car-chosen", "e-1", "p_1")})}},
		{name: "another topic",
			rec: &kgo.Record{Key: []byte("p_1"), Timestamp: after, Value: kafkatest.JSON(t, &schemas.FanoutInput{Event: event("demo", "loan", "e-1", "p_1")})}},
		{name: "a status change",
			rec: &kgo.Record{Key: []byte("p_1"), Timestamp: after, Value: kafkatest.JSON(t, &schemas.FanoutInput{Status: &schemas.FanoutStatus{Profile: profile("p_1")}})}},
		{name: "a replay",
			rec: &kgo.Record{Key: []byte("p_1"), Timestamp: after, Value: kafkatest.JSON(t, &schemas.FanoutInput{Replay: &schemas.FanoutReplay{Subscription: "sub_1", Event: *event("demo", "car-chosen", "e-1", "p_1")}})}},
		{name: "a directory record",
			rec: &kgo.Record{Key: []byte(schemas.DirectoryKey(0, 3)), Timestamp: after, Value: kafkatest.JSON(t, &schemas.FanoutInput{Subscription: &bankSub})}},
		{name: "undecodable", rec: &kgo.Record{Key: []byte("p_1"), Timestamp: after, Value: []byte("{")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := ReplayRecord(tc.rec, req)
			if tc.key == "" {
				if out != nil {
					t.Fatalf("replayed: %s", out.Value)
				}
				return
			}
			if out == nil {
				t.Fatal("not replayed")
			}
			var in schemas.FanoutInput
			if err := json.Unmarshal(out.Value, &in); err != nil {
				t.Fatal(err)
			}
			if out.Topic != schemas.TopicFanoutInput || string(out.Key) != tc.key || in.Replay == nil || in.Event != nil ||
				in.Replay.Subscription != "sub_1" || in.Replay.Event.EventID != "e-1" || in.Replay.Event.Profile.ID != "p_1" {
				t.Fatalf("replay record %s: %s", out.Key, out.Value)
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

// replays returns the replay records of rolodex.fanout.input, as
// "<subscription>/<event id>@<key>", sorted.
func (e *env) replays() []string {
	e.t.Helper()
	var out []string
	for _, r := range e.readAll(schemas.TopicFanoutInput) {
		var in schemas.FanoutInput
		if err := json.Unmarshal(r.Value, &in); err != nil {
			e.t.Fatal(err)
		}
		if in.Replay != nil {
			out = append(out, in.Replay.Subscription+"/"+in.Replay.Event.EventID+"@"+string(r.Key))
			if schemas.HashPartition(string(r.Key), 3) != r.Partition {
				e.t.Fatalf("replay record %s on partition %d, its key hashes to %d", r.Key, r.Partition, schemas.HashPartition(string(r.Key), 3))
			}
		}
	}
	sort.Strings(out)
	return out
}

// waitCommitted waits until the replay group committed the end of
// rolodex.fanout.subscriptions: every request there is done.
func (e *env) waitCommitted() {
	e.t.Helper()
	adm := kadm.NewClient(e.cl)
	deadline := time.Now().Add(time.Minute)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		ends, err := adm.ListEndOffsets(ctx, schemas.TopicFanoutSubscriptions)
		committed, cerr := adm.FetchOffsets(ctx, schemas.GroupFanoutReplay)
		cancel()
		if err == nil && cerr == nil {
			done := true
			ends.Each(func(o kadm.ListedOffset) {
				c, ok := committed.Lookup(o.Topic, o.Partition)
				if o.Offset > 0 && (!ok || c.At < o.Offset) {
					done = false
				}
			})
			if done {
				return
			}
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("the replay group did not commit the end of %s within a minute", schemas.TopicFanoutSubscriptions)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// run runs fn until the returned stop is called.
func (e *env) run(name string, fn func(context.Context) error) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- fn(ctx) }()
	return func() {
		cancel()
		if err := <-done; err != nil {
			e.t.Errorf("%s: %v", name, err)
		}
	}
}

func (e *env) replayer(reg prometheus.Registerer) *Replayer {
	e.t.Helper()
	r, err := New(Config{Brokers: e.brokers, Registerer: reg, SessionTimeout: 6 * time.Second, RetryBackoff: 100 * time.Millisecond, Batch: 2})
	if err != nil {
		e.t.Fatal(err)
	}
	return r
}

// The replay step on Kafka (kfake over TCP): a request writes the replay
// records of exactly its subscription's tenant and topic since the
// instant; a later version with the same replay id, and a restart after
// the commit, write nothing; a lost commit (a crash before it) performs
// the replay again, with the same records; a new replay id performs again.
func TestReplayOnKafka(t *testing.T) {
	e := newEnv(t)
	in := func(key string, v *schemas.FanoutInput, ts time.Time) {
		e.produce(schemas.TopicFanoutInput, key, v, ts)
	}
	in("p_1", &schemas.FanoutInput{Event: event("demo", "car-chosen", "e-old", "p_1")}, before)
	in("p_1", &schemas.FanoutInput{Event: event("demo", "car-chosen", "e-1", "p_1")}, after)
	in("p_2", &schemas.FanoutInput{Event: event("demo", "car-chosen", "e-2", "p_2")}, after)
	in("p_3", &schemas.FanoutInput{Event: event("acme", "car-chosen", "e-3", "p_3")}, after)
	in("p_1", &schemas.FanoutInput{Event: event("demo", "loan", "e-4", "p_1")}, after)
	in("p_4", &schemas.FanoutInput{Event: event("demo", "car-chosen", "e-5", "p_4")}, after.Add(time.Hour))
	in("p_1", &schemas.FanoutInput{Status: &schemas.FanoutStatus{Profile: profile("p_1")}}, after)
	in(schemas.DirectoryKey(0, 3), &schemas.FanoutInput{Subscription: &bankSub}, after)
	sub := func(rec schemas.SubscriptionRecord) {
		e.produce(schemas.TopicFanoutSubscriptions, rec.Subscription.ID, rec, after)
	}
	disabled := withReplay(insurerSub, 2, "rpl_9", before)
	disabled.Subscription.Status = schemas.SubscriptionDisabled
	sub(bankSub)
	sub(withReplay(bankSub, 2, "rpl_1", since))
	sub(disabled)

	reg := prometheus.NewRegistry()
	stop := e.run("replay", e.replayer(reg).Run)
	e.waitCommitted()
	want := []string{"sub_1/e-1@p_1", "sub_1/e-2@p_2", "sub_1/e-5@p_4"}
	if got := e.replays(); !slices.Equal(got, want) {
		t.Fatalf("replay records %v, want %v", got, want)
	}
	for _, c := range []struct {
		name, result string
		want         float64
	}{{"rolodex_fanout_replayed_events_total", "", 3}, {"rolodex_fanout_replays_total", ResultDone, 1}, {"rolodex_fanout_replays_total", ResultInactive, 1}} {
		if n := counter(t, reg, c.name, c.result); n != c.want {
			t.Fatalf("%s{%s} = %v, want %v", c.name, c.result, n, c.want)
		}
	}

	// A later version with the same replay id does nothing.
	sub(withReplay(bankSub, 3, "rpl_1", since))
	e.waitCommitted()
	if got := e.replays(); !slices.Equal(got, want) {
		t.Fatalf("after a version with the same replay id: %v, want %v", got, want)
	}
	stop()

	// A restart after the commit does nothing again (it reads on to a
	// record written after it started).
	stop = e.run("replay after a restart", e.replayer(nil).Run)
	sub(insurerSub)
	e.waitCommitted()
	if got := e.replays(); !slices.Equal(got, want) {
		t.Fatalf("after a restart: %v, want %v", got, want)
	}
	stop()

	// A crash before the commit: the group's offset is still before the
	// request. The replay is performed again, with the same records.
	adm := kadm.NewClient(e.cl)
	committed, err := adm.FetchOffsets(context.Background(), schemas.GroupFanoutReplay)
	if err != nil {
		t.Fatal(err)
	}
	p := schemas.HashPartition("sub_1", 3)
	back := kadm.Offsets{}
	back.AddOffset(schemas.TopicFanoutSubscriptions, p, 1, -1) // the request is offset 1 of sub_1's partition
	if c, _ := committed.Lookup(schemas.TopicFanoutSubscriptions, p); c.At <= 1 {
		t.Fatalf("committed %d on sub_1's partition, want past the request", c.At)
	}
	if _, err := adm.CommitOffsets(context.Background(), schemas.GroupFanoutReplay, back); err != nil {
		t.Fatal(err)
	}
	stop = e.run("replay after a lost commit", e.replayer(nil).Run)
	e.waitCommitted()
	twice := slices.Sorted(slices.Values(append(slices.Clone(want), want...)))
	if got := e.replays(); !slices.Equal(got, twice) {
		t.Fatalf("after a lost commit: %v, want %v", got, twice)
	}

	// A new replay id from a later instant: only what came after it.
	sub(withReplay(bankSub, 4, "rpl_2", after.Add(time.Minute)))
	e.waitCommitted()
	if got, w := e.replays(), slices.Sorted(slices.Values(append(twice, "sub_1/e-5@p_4"))); !slices.Equal(got, w) {
		t.Fatalf("after a second replay: %v, want %v", got, w)
	}
	stop()
}

// counter is the value of reg's counter name (of result, for a vector).
func counter(t *testing.T, reg *prometheus.Registry, name, result string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if result == "" || (len(m.GetLabel()) == 1 && m.GetLabel()[0].GetValue() == result) {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// deliveries returns the records of rolodex.fanout.deliveries.
func (e *env) deliveries() []schemas.FanoutDelivery {
	e.t.Helper()
	var out []schemas.FanoutDelivery
	for _, r := range e.readAll(schemas.TopicFanoutDeliveries) {
		var d schemas.FanoutDelivery
		if err := json.Unmarshal(r.Value, &d); err != nil {
			e.t.Fatal(err)
		}
		out = append(out, d)
	}
	return out
}

// waitFor waits until cond holds, up to a minute.
func (e *env) waitFor(what string, cond func() bool) {
	e.t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			e.t.Fatalf("%s: not within a minute", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// End to end with the directory broadcast and the fan-out group: a replay
// of one subscription delivers again, to that subscription only, the
// topic events since the instant whose profile is entitled now (a
// profile blacklisted since is not), marked replay, under the original
// webhook ids.
func TestReplayEndToEnd(t *testing.T) {
	e := newEnv(t)
	e.produce(schemas.TopicFanoutTopics, carTopic.Topic.Key(), carTopic, before)
	e.produce(schemas.TopicFanoutSubscriptions, bankSub.Subscription.ID, bankSub, before)
	e.produce(schemas.TopicFanoutSubscriptions, insurerSub.Subscription.ID, insurerSub, before)
	b, err := fanoutdir.New(fanoutdir.Config{Brokers: e.brokers, SessionTimeout: 6 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer e.run("broadcast", b.Run)()
	reg := prometheus.NewRegistry()
	p, err := fanout.New(fanout.Config{Brokers: e.brokers, StorageDir: t.TempDir(), Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	defer e.run("fanout", p.Run)()
	// The directory (a topic, two subscriptions) is in every partition
	// before the events.
	e.waitFor("the directory in every partition", func() bool {
		return counter(t, reg, "rolodex_fanout_directory_changes_total", "subscription") == 6
	})

	now := time.Now()
	e.produce(schemas.TopicFanoutInput, "p_1", &schemas.FanoutInput{Event: event("demo", "car-chosen", "e-1", "p_1")}, now)
	e.produce(schemas.TopicFanoutInput, "p_2", &schemas.FanoutInput{Event: event("demo", "car-chosen", "e-2", "p_2")}, now)
	e.waitFor("four first deliveries", func() bool { return len(e.deliveries()) == 4 })
	// p_2 is blacklisted since.
	black := profile("p_2")
	black.Blacklisted = true
	e.produce(schemas.TopicFanoutInput, "p_2", &schemas.FanoutInput{Status: &schemas.FanoutStatus{EventID: "s-1", Profile: black}}, now)

	e.produce(schemas.TopicFanoutSubscriptions, "sub_1", withReplay(bankSub, 2, "rpl_1", now.Add(-time.Minute)), now)
	defer e.run("replay", e.replayer(nil).Run)()
	// The blacklisting cancels what sub_1 and sub_2 may still hold of p_2
	// (docs/fanout.md, "Blacklisting while a record waits"): two cancels.
	e.waitFor("the replay of p_1's event and the refusal of p_2's", func() bool {
		return len(e.deliveries()) >= 7 && counter(t, reg, "rolodex_fanout_events_total", schemas.FanoutBlacklisted) == 1
	})
	ds := e.deliveries()
	if len(ds) != 7 {
		t.Fatalf("%d deliveries, want 7 (4 first, 2 cancels, 1 replay): %+v", len(ds), ds)
	}
	first := map[string]schemas.FanoutDelivery{}
	var replayed []schemas.FanoutDelivery
	cancelled := map[string]bool{}
	for _, d := range ds {
		switch {
		case d.Kind == schemas.KindBlacklisted:
			if d.ProfileID != "p_2" || d.Body != "" || d.Replay {
				t.Fatalf("cancel %+v, want one of p_2 without a body", d)
			}
			cancelled[d.Subscription] = true
		case d.Replay:
			replayed = append(replayed, d)
		default:
			first[d.WebhookID] = d
		}
	}
	if len(replayed) != 1 || len(first) != 4 || !cancelled["sub_1"] || !cancelled["sub_2"] {
		t.Fatalf("replayed %+v, first deliveries %d, cancels %v", replayed, len(first), cancelled)
	}
	d := replayed[0]
	orig, ok := first[d.WebhookID]
	if d.Subscription != "sub_1" || d.ProfileID != "p_1" || d.EventID != "e-1" || d.WebhookID != "sub_1.e-1" || !ok || d.Body != orig.Body {
		t.Fatalf("replayed %+v, the first delivery under its id %+v", d, orig)
	}
}
