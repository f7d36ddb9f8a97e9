package webhooks

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/rolodex/rolodex/connectors/clickhouse"
	"github.com/rolodex/rolodex/internal/kafkaclient"
	"github.com/rolodex/rolodex/schemas"
)

// Found in review: the send-time check waited at most StoreWait for the
// store copy; when the store's reader lagged longer (a slow broker, a
// restart with a large store), a record of an active, entitled
// subscription was dropped as "inactive" and committed: never delivered.
// Now it waits until the copy has caught up, and is delivered.
func TestFanoutStoreLagKeepsRecord(t *testing.T) {
	k := newFanoutKafka(t, "bank")
	k.putTopic("car-chosen", 1, false, "bank")
	hook := newDealer(t, status(200))
	k.putSub("s-1", "bank", "car-chosen", hook.srv.URL, schemas.SubscriptionActive, 1)

	// The store topics' fetches stall (a lagging broker) until released.
	tds, err := kadm.NewClient(k.cl).ListTopics(context.Background(), schemas.TopicFanoutTopics, schemas.TopicFanoutSubscriptions)
	if err != nil {
		t.Fatal(err)
	}
	ids := map[[16]byte]bool{}
	for _, td := range tds {
		ids[td.ID] = true
	}
	release := make(chan struct{})
	k.c.ControlKey(int16(kmsg.Fetch), func(kr kmsg.Request) (kmsg.Response, error, bool) {
		k.c.KeepControl()
		req := kr.(*kmsg.FetchRequest)
		for _, tp := range req.Topics {
			if ids[tp.TopicID] || tp.Topic == schemas.TopicFanoutTopics || tp.Topic == schemas.TopicFanoutSubscriptions {
				k.c.SleepControl(func() {
					select {
					case <-release:
					case <-time.After(3 * time.Second):
					}
				})
				break
			}
		}
		return nil, nil, false
	})

	k.deliver(delivery("s-1", "bank", "car-chosen", "p-1", "e-1", false, 0))
	_, stop := runFanout(t, FanoutConfig{Brokers: k.brokers, RetrySchedule: fastSchedule, StoreWait: time.Second})
	got := k.waitEnds(1)
	rep := got["s-1.e-1"]
	if rep.Type != schemas.ReportDeliverySucceeded {
		t.Errorf("the record of an active subscription ended %s/%s (receiver got %d requests): lost", rep.Type, rep.Result, len(hook.received()))
	}
	// The store is readable again; a restart does not send it either:
	// it was committed.
	close(release)
	time.Sleep(1500 * time.Millisecond) // the committer's tick
	stop()
	runFanout(t, FanoutConfig{Brokers: k.brokers, RetrySchedule: fastSchedule, StoreWait: time.Second})
	time.Sleep(3 * time.Second)
	if n := len(hook.received()); n == 0 {
		t.Errorf("after a restart with the store readable: the receiver got nothing; the record is gone for good")
	}
}

// Found in review: with the default StoreWait (10 s), one failed listing
// of the store's end offsets released the waiting attempts after 100 ms,
// unsynced, and a store copy that lagged at that moment dropped an
// entitled record as inactive. Now the record waits (not an attempt) until
// a sync succeeds, then is delivered.
func TestFanoutStoreListingErrorKeepsRecord(t *testing.T) {
	k := newFanoutKafka(t, "bank")
	k.putTopic("car-chosen", 1, false, "bank")
	hook := newDealer(t, status(200))
	tds, err := kadm.NewClient(k.cl).ListTopics(context.Background(), schemas.TopicFanoutTopics, schemas.TopicFanoutSubscriptions)
	if err != nil {
		t.Fatal(err)
	}
	ids := map[[16]byte]bool{}
	for _, td := range tds {
		ids[td.ID] = true
	}
	store := func(name string, id [16]byte) bool {
		return ids[id] || name == schemas.TopicFanoutTopics || name == schemas.TopicFanoutSubscriptions
	}
	var stall atomic.Bool
	release := make(chan struct{})
	k.c.ControlKey(int16(kmsg.Fetch), func(kr kmsg.Request) (kmsg.Response, error, bool) {
		k.c.KeepControl()
		if !stall.Load() {
			return nil, nil, false
		}
		for _, tp := range kr.(*kmsg.FetchRequest).Topics {
			if store(tp.Topic, tp.TopicID) {
				k.c.SleepControl(func() {
					select {
					case <-release:
					case <-time.After(5 * time.Second):
					}
				})
				break
			}
		}
		return nil, nil, false
	})
	k.c.ControlKey(int16(kmsg.ListOffsets), func(kr kmsg.Request) (kmsg.Response, error, bool) {
		k.c.KeepControl()
		req := kr.(*kmsg.ListOffsetsRequest)
		if !stall.Load() {
			return nil, nil, false
		}
		resp := req.ResponseKind().(*kmsg.ListOffsetsResponse)
		hit := false
		for _, tp := range req.Topics {
			rt := kmsg.NewListOffsetsResponseTopic()
			rt.Topic = tp.Topic
			for _, p := range tp.Partitions {
				rp := kmsg.NewListOffsetsResponseTopicPartition()
				rp.Partition = p.Partition
				rp.ErrorCode = -1 // UNKNOWN_SERVER_ERROR
				rt.Partitions = append(rt.Partitions, rp)
			}
			resp.Topics = append(resp.Topics, rt)
			if store(tp.Topic, [16]byte{}) {
				hit = true
			}
		}
		if !hit {
			return nil, nil, false
		}
		return resp, nil, true
	})
	// A start while the broker has a bad moment (2 s): the store's
	// listings fail, its fetch is slow.
	k.putSub("s-1", "bank", "car-chosen", hook.srv.URL, schemas.SubscriptionActive, 1)
	k.deliver(delivery("s-1", "bank", "car-chosen", "p-1", "e-1", false, 0))
	stall.Store(true)
	start := time.Now()
	healed := time.AfterFunc(2*time.Second, func() {
		stall.Store(false)
		close(release)
	})
	defer healed.Stop()
	runFanout(t, FanoutConfig{Brokers: k.brokers, RetrySchedule: fastSchedule, RetryBackoff: 100 * time.Millisecond}) // StoreWait: default 10 s
	got := k.waitEnds(1)
	took := time.Since(start)
	if rep := got["s-1.e-1"]; rep.Type != schemas.ReportDeliverySucceeded {
		t.Errorf("the record of an active subscription ended %s/%s %s after the start (StoreWait 10 s): lost", rep.Type, rep.Result, took)
	}
}

// A partition added to a store topic after the start: the store copy
// reads it too (catchUp lists the partitions again), so a subscription
// stored there is delivered, not dropped as inactive.
func TestFanoutStorePartitionAdded(t *testing.T) {
	k := newFanoutKafka(t, "bank")
	k.putTopic("car-chosen", 1, false, "bank")
	hook := newDealer(t, status(200))
	f, _ := runFanout(t, FanoutConfig{Brokers: k.brokers, RetrySchedule: fastSchedule, StoreWait: time.Second,
		RetryBackoff: 100 * time.Millisecond})
	waitFor(t, "the store copy read", func() bool { return f.book.topic(schemas.TopicKey("demo", "car-chosen")) != nil })
	adm := kadm.NewClient(k.cl)
	if _, err := adm.CreatePartitions(context.Background(), 1, schemas.TopicFanoutSubscriptions); err != nil {
		t.Fatal(err)
	}
	s := schemas.SubscriptionRecord{Subscription: schemas.Subscription{ID: "s-1", Tenant: "demo", Partner: "bank", Topic: "car-chosen",
		Status: schemas.SubscriptionActive, Webhook: &schemas.SubscriptionHook{URL: hook.srv.URL}}, Secret: testSecret, Version: 1}
	v, _ := json.Marshal(s)
	// Straight to the new partition (3; the fixture's topics have 0-2).
	if err := k.cl.ProduceSync(context.Background(), &kgo.Record{Topic: schemas.TopicFanoutSubscriptions, Partition: 3, Key: []byte("s-1"), Value: v}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	k.deliver(delivery("s-1", "bank", "car-chosen", "p-1", "e-1", false, 0))
	got := k.waitEnds(1)
	if rep := got["s-1.e-1"]; rep.Type != schemas.ReportDeliverySucceeded {
		t.Errorf("a subscription in a store partition added after the start: %s/%s, want delivered", rep.Type, rep.Result)
	}
}

// Callers of sync join one pending round however many they are and
// however often they time out: what waits for syncLoop never grows.
func TestStoreBookSyncRoundsBounded(t *testing.T) {
	b := newStoreBook(slog.New(slog.DiscardHandler))
	var first *syncRound
	for i := range 200 {
		if b.sync(context.Background(), time.Millisecond) {
			t.Fatal("sync reported caught up without a round")
		}
		b.mu.Lock()
		if i == 0 {
			first = b.next
		}
		if b.next == nil || b.next != first {
			t.Fatalf("call %d: pending round %p, want the one round %p", i, b.next, first)
		}
		b.mu.Unlock()
	}
}

// Found in review: a Kafka subscription's record that Kafka refuses for
// good gets a delivery.failed report with result "refused"; the
// ClickHouse sink must take it (docs/fanout.md "Reports": failed is
// permanent or refused).
func TestFanoutKafkaRefusedReportDecodes(t *testing.T) {
	k := newFanoutKafka(t)
	limit := "2048"
	if err := kafkaclient.EnsureTopics(context.Background(), k.cl, -1, kafkaclient.TopicSpec{Name: schemas.OutTopic("bank"),
		Partitions: 1, Configs: map[string]*string{"max.message.bytes": &limit}}); err != nil {
		t.Fatal(err)
	}
	k.putTopic("car-chosen", 1, false, "bank")
	k.putSub("s-bank", "bank", "car-chosen", "", schemas.SubscriptionActive, 1)
	d := delivery("s-bank", "bank", "car-chosen", "p-1", "e-1", true, 0)
	noise := make([]byte, 12000)
	_, _ = rand.Read(noise)
	d.Body = `{"kind":"topic_event","noise":"` + base64.StdEncoding.EncodeToString(noise) + `"}`
	k.deliver(d)
	runFanout(t, FanoutConfig{Brokers: k.brokers, RetrySchedule: fastSchedule, RetryBackoff: 50 * time.Millisecond})
	k.waitEnds(1)
	recs := readAll(t, k.brokers, schemas.TopicFanoutReports, 1)
	failed := 0
	for _, r := range recs {
		var rep schemas.FanoutReport
		_ = json.Unmarshal(r.Value, &rep)
		if rep.Type != schemas.ReportDeliveryFailed {
			continue
		}
		failed++
		if rep.Result != schemas.ReportResultRefused || rep.Channel != ChannelKafka {
			t.Errorf("report %s, want a Kafka delivery.failed with result refused", r.Value)
		}
		row, err := clickhouse.DecodeFanoutReport(r.Value, string(r.Key), r.Partition, r.Offset)
		if err != nil {
			t.Errorf("the sink refuses the Kafka writer's refused report: %v", err)
		} else if row.Kind != clickhouse.DeliveryKindEnd {
			t.Errorf("row kind %s, want an end", row.Kind)
		}
	}
	if failed != 1 {
		t.Errorf("%d delivery.failed reports, want 1", failed)
	}
}

// Found in review: the Kafka writer had no send-time check, so a record
// decided before the subscription was deleted (or whose consent has
// expired since) was written to the partner's out topic.
func TestFanoutKafkaSendTimeCheck(t *testing.T) {
	k := newFanoutKafka(t, "bank")
	k.putTopic("car-chosen", 1, false, "bank")
	k.putSub("s-bank", "bank", "car-chosen", "", schemas.SubscriptionActive, 1)
	k.putSub("s-bank", "bank", "car-chosen", "", schemas.SubscriptionDeleted, 2)
	k.deliver(delivery("s-bank", "bank", "car-chosen", "p-1", "e-1", true, 0),
		delivery("s-bank", "bank", "car-chosen", "p-2", "e-2", true, time.Now().Add(-time.Hour).UnixMilli()))
	runFanout(t, FanoutConfig{Brokers: k.brokers, RetrySchedule: fastSchedule})
	got := k.waitEnds(2)
	if n := len(readAll(t, k.brokers, schemas.OutTopic("bank"), 0)); n != 0 {
		t.Errorf("%d records on the out topic of a deleted subscription (one with consent expired an hour ago)", n)
	}
	for _, id := range []string{"s-bank.e-1", "s-bank.e-2"} {
		if rep := got[id]; rep.Type != schemas.ReportDeliveryDropped || rep.Result != schemas.FanoutInactive || rep.Channel != ChannelKafka {
			t.Errorf("%s: %+v, want dropped inactive on kafka", id, rep)
		}
	}
}

// The Kafka writer's send-time check, each rule: the partner taken off
// the access list (not_allowed), consent expired (expired), a revocation
// of a partner off the list still written (it checks the subscription
// only), an entitled record written; dropped records are reported, not
// dead-lettered, and counted.
func TestFanoutKafkaSendTimeRules(t *testing.T) {
	k := newFanoutKafka(t, "bank", "insurer")
	k.putTopic("car-chosen", 1, false, "bank", "insurer")
	k.putTopic("car-chosen", 2, false, "bank") // insurer removed
	k.putSub("s-bank", "bank", "car-chosen", "", schemas.SubscriptionActive, 1)
	k.putSub("s-ins", "insurer", "car-chosen", "", schemas.SubscriptionActive, 1)
	revoked := delivery("s-ins", "insurer", "car-chosen", "p-3", "", true, 0)
	revoked.Kind, revoked.Type, revoked.WebhookID = schemas.KindConsentRevoked, schemas.EventConsentRevokedType, "s-ins.revoked.partner_offers.1"
	revoked.Body = `{"kind":"consent_revoked","profile_id":"p-3"}`
	k.deliver(delivery("s-ins", "insurer", "car-chosen", "p-1", "e-1", true, 0),
		delivery("s-bank", "bank", "car-chosen", "p-2", "e-2", true, time.Now().Add(-time.Minute).UnixMilli()),
		delivery("s-bank", "bank", "car-chosen", "p-4", "e-4", true, time.Now().Add(time.Hour).UnixMilli()),
		revoked)
	f, _ := runFanout(t, FanoutConfig{Brokers: k.brokers, RetrySchedule: fastSchedule})
	got := k.waitEnds(4)
	for id, want := range map[string][2]string{
		"s-ins.e-1":                      {schemas.ReportDeliveryDropped, schemas.FanoutNotAllowed},
		"s-bank.e-2":                     {schemas.ReportDeliveryDropped, schemas.FanoutExpired},
		"s-bank.e-4":                     {schemas.ReportDeliverySucceeded, schemas.ReportResultSuccess},
		"s-ins.revoked.partner_offers.1": {schemas.ReportDeliverySucceeded, schemas.ReportResultSuccess},
	} {
		if rep := got[id]; rep.Type != want[0] || rep.Result != want[1] || rep.Channel != ChannelKafka {
			t.Errorf("%s: %+v, want %s %s", id, rep, want[0], want[1])
		}
	}
	if recs := readAll(t, k.brokers, schemas.OutTopic("bank"), 1); len(recs) != 1 || headers(recs[0])[HeaderCEID] != "s-bank.e-4" {
		t.Errorf("bank's out topic: %d records, want s-bank.e-4 only", len(recs))
	}
	if recs := readAll(t, k.brokers, schemas.OutTopic("insurer"), 1); len(recs) != 1 || headers(recs[0])[HeaderCEID] != "s-ins.revoked.partner_offers.1" {
		t.Errorf("insurer's out topic: %d records, want the revocation only", len(recs))
	}
	if n := len(readAll(t, k.brokers, schemas.TopicOutDeadLetter, 0)); n != 0 {
		t.Errorf("%d dead letters: a dropped record is not dead-lettered", n)
	}
	for result, n := range map[string]float64{"success": 2, schemas.FanoutNotAllowed: 1, schemas.FanoutExpired: 1} {
		if got := testutil.ToFloat64(f.m.KafkaDeliveries.WithLabelValues(result)); got != n {
			t.Errorf("kafka deliveries{%s} = %v, want %v", result, got, n)
		}
	}
}

// The webhook sender's window bounds bytes too: with records far below
// the record window but past the bytes bound, each partition stops
// fetching; what is produced then is not read (not posted) until the held
// records end, and then everything is delivered.
func TestFanoutWindowBoundsBytes(t *testing.T) {
	k := newFanoutKafka(t, "bank")
	k.putTopic("car-chosen", 1, false, "bank")
	open := make(chan struct{})
	rcv := newDealer(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-open:
			w.WriteHeader(200)
		case <-r.Context().Done():
		}
	})
	k.putSub("s-1", "bank", "car-chosen", rcv.srv.URL, schemas.SubscriptionActive, 1)
	pad := strings.Repeat("x", 20<<10)
	big := func(profile string) schemas.FanoutDelivery {
		d := delivery("s-1", "bank", "car-chosen", profile, "e-"+profile, false, 0)
		d.Body = `{"kind":"topic_event","pad":"` + pad + `"}`
		return d
	}
	first := map[string]bool{}
	for i := range 30 { // ~200 KiB per partition, distinct keys
		d := big(fmt.Sprintf("p-%d", i))
		k.deliver(d)
		first[d.WebhookID] = true
	}
	f, err := NewFanout(FanoutConfig{Brokers: k.brokers, RetrySchedule: fastSchedule, Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	f.windowBytes = 64 << 10
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	waitFor(t, "the first records posted", func() bool { return len(rcv.received()) >= 10 })
	time.Sleep(500 * time.Millisecond) // the pauses
	for i := range 30 {
		k.deliver(big(fmt.Sprintf("q-%d", i)))
	}
	time.Sleep(2 * time.Second)
	for _, r := range rcv.received() {
		if !first[r.id] {
			t.Fatalf("%s posted while every partition held more than the bytes bound", r.id)
		}
	}
	close(open)
	got := k.waitEnds(60)
	for id, rep := range got {
		if rep.Type != schemas.ReportDeliverySucceeded {
			t.Errorf("%s: %+v", id, rep)
		}
	}
}
