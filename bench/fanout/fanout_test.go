package fanout

import (
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/rolodex/rolodex/schemas"
)

// TestRunSane runs the benchmark on a few hundred records: every phase
// ends, Run's check finds exactly the expected records (the out topics,
// the receiver's ids, the reports, an empty dead letter, the group's
// deliveries), and the numbers are sane.
func TestRunSane(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := Run(ctx, Config{Records: 400, Partitions: 4})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.FailedAttempts) > 0 {
		t.Errorf("failed attempts %v: 400 records cannot run out of connections", res.FailedAttempts)
	}
	if !res.Embedded || res.Requests < 400 {
		t.Fatalf("embedded %v, %d requests (want at least one per webhook record)", res.Embedded, res.Requests)
	}
	// 400 events: 267 on car-chosen (4 subscriptions), 133 on test-drive (2).
	if res.GroupDeliveries != 267*4+133*2 {
		t.Errorf("the group made %d deliveries, want %d", res.GroupDeliveries, 267*4+133*2)
	}
	for name, p := range map[string]float64{"passthrough": res.Passthrough.EventsPerSec, "kafka": res.Kafka.EventsPerSec, "webhooks": res.Webhooks.EventsPerSec, "group": res.Group.EventsPerSec} {
		if p <= 0 {
			t.Errorf("%s: %v records/s", name, p)
		}
	}
	if res.KafkaRatio <= 0 || res.WebhookRatio <= 0 || res.GroupRatio <= 0 {
		t.Errorf("ratios %v, %v, %v", res.KafkaRatio, res.WebhookRatio, res.GroupRatio)
	}
	if res.FirstGroup <= 0 || res.FirstGroup > res.Group.Elapsed {
		t.Errorf("first delivery of the group %v of %v", res.FirstGroup, res.Group.Elapsed)
	}
	if res.FirstKafka <= 0 || res.FirstKafka > res.Kafka.Elapsed || res.FirstWebhook <= 0 || res.FirstWebhook > res.Webhooks.Elapsed {
		t.Errorf("first out record %v of %v, first request %v of %v", res.FirstKafka, res.Kafka.Elapsed, res.FirstWebhook, res.Webhooks.Elapsed)
	}
	if res.AvgBodyBytes < 350 || res.AvgBodyBytes > 700 {
		t.Errorf("bodies of %d B on average, want about 500", res.AvgBodyBytes)
	}
}

// TestCheckCatchesAMissingRecord: Check fails when a delivery the phases
// must make is missing (here: a Kafka record never stored, so never
// delivered), so TestRunSane's pass means something.
func TestCheckCatchesAMissingRecord(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	e, err := Setup(ctx, Config{Partitions: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	now := time.Now()
	ks, hs := Deliveries(20, true, 1, now), Deliveries(20, false, 2, now)
	if _, err := e.Store(ctx, ks[:19]); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Passthrough(ctx, 19); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.KafkaDelivery(ctx, 19); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Store(ctx, hs); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.WebhookDelivery(ctx, 20); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Check(ctx, ks[:19], hs); err != nil {
		t.Fatalf("the records made: %v", err)
	}
	if _, err := e.Check(ctx, ks, hs); err == nil {
		t.Fatal("Check passed with a Kafka record missing")
	}
	if _, err := e.Check(ctx, ks[:19], hs[:19]); err == nil {
		t.Fatal("Check passed with the receiver's ids not the webhook records'")
	}
	evs := Events(30, 1, now)
	want, err := e.StoreEvents(ctx, evs)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.Group(ctx, len(evs), len(want)); err != nil {
		t.Fatal(err)
	}
	if err := e.CheckGroup(ctx, want); err != nil {
		t.Fatalf("the group's deliveries: %v", err)
	}
	want["k-bank.g-999"] = true
	if err := e.CheckGroup(ctx, want); err == nil {
		t.Fatal("CheckGroup passed with a delivery missing")
	}
}

// TestDeliveries: the generated records have the documented shape and
// are reproducible.
func TestDeliveries(t *testing.T) {
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	for _, kafka := range []bool{true, false} {
		ds := Deliveries(300, kafka, 1, now)
		if !reflect.DeepEqual(ds, Deliveries(300, kafka, 1, now)) {
			t.Fatal("the same seed gave other records")
		}
		ids, subs, profiles := map[string]bool{}, map[string]bool{}, map[string]bool{}
		for _, d := range ds {
			ids[d.WebhookID] = true
			subs[d.Subscription] = true
			profiles[d.ProfileID] = true
			if d.Kafka != kafka || d.Kind != schemas.KindTopicEvent || d.Tenant != Tenant || d.Body == "" {
				t.Fatalf("%+v", d)
			}
		}
		if len(ids) != 300 || len(subs) != 3 || len(profiles) < 100 {
			t.Fatalf("kafka %v: %d distinct ids, %d subscriptions, %d profiles", kafka, len(ids), len(subs), len(profiles))
		}
	}
}
