package webhooks

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rolodex/rolodex/partners"
	"github.com/rolodex/rolodex/schemas"
)

// fanoutKafka is a kfake cluster with fan-out's topics: the deliveries on
// three partitions, the store topics, and what EnsureFanoutTopics makes
// for ps.
type fanoutKafka struct {
	t       *testing.T
	c       *kfake.Cluster
	brokers []string
	cl      *kgo.Client
}

func newFanoutKafka(t *testing.T, ps ...string) *fanoutKafka {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1),
		kfake.SeedTopics(3, schemas.TopicFanoutDeliveries, schemas.TopicFanoutTopics, schemas.TopicFanoutSubscriptions),
		kfake.BrokerConfigs(map[string]string{"group.min.session.timeout.ms": "1000"}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	k := &fanoutKafka{t: t, c: c, brokers: c.ListenAddrs()}
	if k.cl, err = kgo.NewClient(kgo.SeedBrokers(k.brokers...)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(k.cl.Close)
	var reg []*partners.Partner
	for _, p := range ps {
		reg = append(reg, &partners.Partner{Name: p, Tenant: "demo"})
	}
	if err := EnsureFanoutTopics(context.Background(), k.cl, -1, reg); err != nil {
		t.Fatal(err)
	}
	return k
}

func (k *fanoutKafka) produce(topic, key string, v any) {
	k.t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		k.t.Fatal(err)
	}
	if err := k.cl.ProduceSync(context.Background(), &kgo.Record{Topic: topic, Key: []byte(key), Value: b}).FirstErr(); err != nil {
		k.t.Fatal(err)
	}
}

func (k *fanoutKafka) putTopic(name string, version int64, deleted bool, allowed ...string) {
	tr := schemas.TopicRecord{Topic: schemas.Topic{Tenant: "demo", Name: name, Owner: "autoexpress", Allowed: allowed},
		Version: version, Deleted: deleted}
	k.produce(schemas.TopicFanoutTopics, tr.Topic.Key(), tr)
}

// putSub stores a subscription of partner to topic (url "" : Kafka).
func (k *fanoutKafka) putSub(id, partner, topic, url, status string, version int64) {
	s := schemas.SubscriptionRecord{Subscription: schemas.Subscription{ID: id, Tenant: "demo", Partner: partner, Topic: topic,
		Kafka: url == "", Status: status}, Secret: testSecret, Version: version}
	if url != "" {
		s.Subscription.Webhook = &schemas.SubscriptionHook{URL: url}
	}
	k.produce(schemas.TopicFanoutSubscriptions, id, s)
}

// delivery is a topic event's record for sub (expires: consent.expires_at
// in Unix ms, 0 none).
func delivery(sub, partner, topic, profile, event string, kafka bool, expires int64) schemas.FanoutDelivery {
	body := map[string]any{"kind": schemas.KindTopicEvent, "topic": topic, "tenant": "demo", "publisher": "autoexpress",
		"event_id": event, "type": "car.chosen", "profile_id": profile, "properties": map[string]any{"model": "Tracker"}}
	if expires != 0 {
		body["consent"] = map[string]any{"purpose": "partner_offers",
			"expires_at": time.UnixMilli(expires).UTC().Format("2006-01-02T15:04:05.000Z07:00")}
	}
	b, _ := json.Marshal(body)
	return schemas.FanoutDelivery{Kind: schemas.KindTopicEvent, Tenant: "demo", Partner: partner, Subscription: sub, Topic: topic,
		Kafka: kafka, ProfileID: profile, EventID: event, Type: "car.chosen", At: 1735725600000, WebhookID: sub + "." + event, Body: string(b)}
}

func (k *fanoutKafka) deliver(ds ...schemas.FanoutDelivery) {
	k.t.Helper()
	for _, d := range ds {
		k.produce(schemas.TopicFanoutDeliveries, d.DeliveryKey(), d)
	}
}

func (k *fanoutKafka) reports(min int) []schemas.FanoutReport {
	k.t.Helper()
	var out []schemas.FanoutReport
	for _, r := range readAll(k.t, k.brokers, schemas.TopicFanoutReports, min) {
		var rep schemas.FanoutReport
		if err := json.Unmarshal(r.Value, &rep); err != nil {
			k.t.Fatal(err)
		}
		out = append(out, rep)
	}
	return out
}

// ends returns the reports that end a delivery, by webhook id.
func ends(reps []schemas.FanoutReport) map[string]schemas.FanoutReport {
	out := map[string]schemas.FanoutReport{}
	for _, r := range reps {
		if r.Type != schemas.ReportAttempt {
			out[r.WebhookID] = r
		}
	}
	return out
}

// waitEnds waits until n deliveries ended (reports other than attempts).
func (k *fanoutKafka) waitEnds(n int) map[string]schemas.FanoutReport {
	k.t.Helper()
	var got map[string]schemas.FanoutReport
	waitFor(k.t, fmt.Sprintf("%d delivery ends", n), func() bool {
		got = ends(k.reports(0))
		return len(got) >= n
	})
	return got
}

func runFanout(t *testing.T, cfg FanoutConfig) (*Fanout, context.CancelFunc) {
	t.Helper()
	f, err := NewFanout(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	var stopped atomic.Bool
	stop := func() {
		if stopped.Swap(true) {
			return
		}
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}
	t.Cleanup(stop)
	return f, stop
}

var fastSchedule = []time.Duration{0, 50 * time.Millisecond, 50 * time.Millisecond, 50 * time.Millisecond}

func TestFanoutKafkaDelivery(t *testing.T) {
	k := newFanoutKafka(t, "bank", "insurer")
	k.putTopic("car-chosen", 1, false, "bank", "insurer")
	k.putSub("s-bank", "bank", "car-chosen", "", schemas.SubscriptionActive, 1)
	hook := newDealer(t, status(200))
	k.putSub("s-ins", "insurer", "car-chosen", hook.srv.URL, schemas.SubscriptionActive, 1)
	revoked := delivery("s-bank", "bank", "car-chosen", "p-2", "", true, 0)
	revoked.Kind, revoked.Type, revoked.WebhookID = schemas.KindConsentRevoked, schemas.EventConsentRevokedType, "s-bank.revoked.partner_offers.1"
	revoked.Body = `{"kind":"consent_revoked","profile_id":"p-2"}`
	k.deliver(delivery("s-bank", "bank", "car-chosen", "p-1", "e-1", true, 0), delivery("s-ins", "insurer", "car-chosen", "p-1", "e-1", false, 0),
		delivery("s-bank", "bank", "car-chosen", "p-1", "e-2", true, 0), revoked)
	if err := k.cl.ProduceSync(context.Background(), &kgo.Record{Topic: schemas.TopicFanoutDeliveries, Value: []byte("junk")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	f, _ := runFanout(t, FanoutConfig{Brokers: k.brokers, RetrySchedule: fastSchedule, Registerer: reg})

	recs := readAll(t, k.brokers, schemas.OutTopic("bank"), 3)
	if len(recs) != 3 {
		t.Fatalf("%d records on the bank's out topic, want 3", len(recs))
	}
	byID := map[string]*kgo.Record{}
	for _, r := range recs {
		byID[headers(r)[HeaderCEID]] = r
	}
	r := byID["s-bank.e-1"]
	if r == nil {
		t.Fatalf("no record s-bank.e-1 among %v", byID)
	}
	want := map[string]string{HeaderCESpecVersion: "1.0", HeaderCEID: "s-bank.e-1", HeaderCEType: "car.chosen",
		HeaderCESource: "/rolodex/tenants/demo/topics/car-chosen", HeaderCETime: "2025-01-01T10:00:00Z", HeaderCESubject: "p-1",
		HeaderContentType: "application/json", HeaderKind: schemas.KindTopicEvent, HeaderSubscription: "s-bank",
		HeaderTopic: "car-chosen", HeaderTenant: "demo"}
	h := headers(r)
	for key, v := range want {
		if h[key] != v {
			t.Errorf("header %s = %q, want %q", key, h[key], v)
		}
	}
	if string(r.Key) != "p-1" || string(r.Value) != delivery("s-bank", "bank", "car-chosen", "p-1", "e-1", true, 0).Body {
		t.Errorf("record key %q value %s", r.Key, r.Value)
	}
	if rv := byID["s-bank.revoked.partner_offers.1"]; rv == nil || headers(rv)[HeaderKind] != schemas.KindConsentRevoked ||
		headers(rv)[HeaderCEType] != schemas.EventConsentRevokedType {
		t.Errorf("revocation record %v", rv)
	}
	got := k.waitEnds(4)
	for _, id := range []string{"s-bank.e-1", "s-bank.e-2", "s-bank.revoked.partner_offers.1"} {
		if rep := got[id]; rep.Type != schemas.ReportDeliverySucceeded || rep.Channel != ChannelKafka || rep.Attempt != 1 || rep.Result != "success" || rep.Partner != "bank" {
			t.Errorf("report of %s: %+v", id, rep)
		}
	}
	if rep := got["s-ins.e-1"]; rep.Type != schemas.ReportDeliverySucceeded || rep.Channel != ChannelWebhook {
		t.Errorf("webhook report %+v", rep)
	}
	if n := len(hook.received()); n != 1 {
		t.Errorf("webhook receiver got %d requests, want 1", n)
	}
	if got := testutil.ToFloat64(f.m.KafkaSkipped.WithLabelValues("webhook")); got != 1 {
		t.Errorf("kafka skipped webhook %v, want 1", got)
	}
	if got := testutil.ToFloat64(f.m.KafkaSkipped.WithLabelValues("undecodable")); got != 1 {
		t.Errorf("kafka skipped undecodable %v, want 1", got)
	}
	if got := testutil.ToFloat64(f.m.WebhookSkipped.WithLabelValues("kafka")); got != 3 {
		t.Errorf("webhook skipped kafka %v, want 3", got)
	}
	if n := len(readAll(t, k.brokers, schemas.OutTopic("insurer"), 0)); n != 0 {
		t.Errorf("%d records on the webhook partner's out topic", n)
	}
}

func TestFanoutWebhookOutcomes(t *testing.T) {
	k := newFanoutKafka(t, "bank")
	k.putTopic("car-chosen", 1, false, "bank")
	retried := newDealer(t, status(500), status(503), status(200))
	busy := newDealer(t, status(429, "Retry-After", "1"), status(200))
	hang := newDealer(t, slow(5*time.Second), status(200))
	dead := newDealer(t, status(500))
	bad := newDealer(t, status(400))
	gone := newDealer(t, status(410))
	for id, d := range map[string]*dealer{"s-retried": retried, "s-busy": busy, "s-hang": hang, "s-dead": dead, "s-bad": bad, "s-gone": gone} {
		k.putSub(id, "bank", "car-chosen", d.srv.URL, schemas.SubscriptionActive, 3)
	}
	k.deliver(delivery("s-retried", "bank", "car-chosen", "p-1", "e-1", false, 0),
		delivery("s-busy", "bank", "car-chosen", "p-1", "e-1", false, 0),
		delivery("s-hang", "bank", "car-chosen", "p-1", "e-1", false, 0),
		delivery("s-dead", "bank", "car-chosen", "p-1", "e-1", false, 0),
		delivery("s-bad", "bank", "car-chosen", "p-1", "e-1", false, 0),
		delivery("s-gone", "bank", "car-chosen", "p-1", "e-1", false, 0),
		// Queued behind the 410 (same key), and on another key: dropped.
		delivery("s-gone", "bank", "car-chosen", "p-1", "e-2", false, 0))
	reg := prometheus.NewRegistry()
	f, _ := runFanout(t, FanoutConfig{Brokers: k.brokers, RetrySchedule: fastSchedule, Timeout: 300 * time.Millisecond, Registerer: reg})
	got := k.waitEnds(7)
	// A later record of the disabled subscription, on another key.
	k.deliver(delivery("s-gone", "bank", "car-chosen", "p-9", "e-3", false, 0))
	got = k.waitEnds(8)

	check := func(id, typ, result string, attempts int) {
		t.Helper()
		rep := got[id]
		if rep.Type != typ || rep.Result != result || (attempts > 0 && rep.Attempt != attempts) || rep.Channel != ChannelWebhook ||
			rep.Subscription == "" || rep.Partner != "bank" || rep.Topic != "car-chosen" || rep.Tenant != "demo" {
			t.Errorf("%s: report %+v, want type %s result %s attempt %d", id, rep, typ, result, attempts)
		}
	}
	check("s-retried.e-1", schemas.ReportDeliverySucceeded, "success", 3)
	check("s-busy.e-1", schemas.ReportDeliverySucceeded, "success", 2)
	check("s-hang.e-1", schemas.ReportDeliverySucceeded, "success", 2)
	check("s-dead.e-1", schemas.ReportDeliveryExhausted, "exhausted", 4)
	check("s-bad.e-1", schemas.ReportDeliveryFailed, "permanent", 1)
	check("s-gone.e-1", schemas.ReportSubscriptionDisabled, "gone", 1)
	check("s-gone.e-2", schemas.ReportDeliveryDropped, schemas.FanoutInactive, 0)
	check("s-gone.e-3", schemas.ReportDeliveryDropped, schemas.FanoutInactive, 0)

	// One webhook id on every attempt; the receivers verified every
	// signature with the subscription's secret (newDealer).
	for name, c := range map[string]struct {
		d *dealer
		n int
	}{"retried": {retried, 3}, "busy": {busy, 2}, "hang": {hang, 2}, "dead": {dead, 4}, "bad": {bad, 1}, "gone": {gone, 1}} {
		rs := c.d.received()
		if len(rs) != c.n {
			t.Errorf("%s: %d requests, want %d", name, len(rs), c.n)
			continue
		}
		for _, r := range rs {
			if r.id != rs[0].id {
				t.Errorf("%s: webhook ids %q and %q", name, rs[0].id, r.id)
			}
		}
	}
	if rs := busy.received(); len(rs) == 2 && rs[1].at.Sub(rs[0].at) < 900*time.Millisecond {
		t.Errorf("Retry-After: 1 not honoured: %s between attempts", rs[1].at.Sub(rs[0].at))
	}
	// Per-attempt reports: the retried delivery's three.
	var classes []string
	for _, r := range k.reports(0) {
		if r.Type == schemas.ReportAttempt && r.WebhookID == "s-retried.e-1" {
			classes = append(classes, fmt.Sprintf("%d:%s:%d", r.Attempt, r.Result, r.Status))
		}
	}
	if want := []string{"1:retry:500", "2:retry:503", "3:success:200"}; !slices.Equal(classes, want) {
		t.Errorf("attempt reports %v, want %v", classes, want)
	}

	// Exhausted and permanent: in the dead letter with their headers.
	dls := readAll(t, k.brokers, schemas.TopicOutDeadLetter, 2)
	reasons := map[string]string{}
	for _, r := range dls {
		h := headers(r)
		reasons[h[HeaderCEID]] = h[HeaderReason]
		if string(r.Key) != h[HeaderSubscription] || h[HeaderCESubject] != "p-1" || h[HeaderCESource] != "/rolodex/tenants/demo/topics/car-chosen" {
			t.Errorf("dead letter key %q headers %v", r.Key, h)
		}
	}
	if len(dls) != 2 || reasons["s-dead.e-1"] == "" || reasons["s-bad.e-1"] == "" {
		t.Errorf("dead letters %v, want s-dead.e-1 and s-bad.e-1", reasons)
	}

	// 410: the subscription disabled in the store, secret kept.
	var last schemas.SubscriptionRecord
	for _, r := range readAll(t, k.brokers, schemas.TopicFanoutSubscriptions, 7) {
		var s schemas.SubscriptionRecord
		if json.Unmarshal(r.Value, &s) == nil && s.Subscription.ID == "s-gone" && string(r.Key) == "s-gone" {
			last = s
		}
	}
	if last.Version != 4 || last.Subscription.Status != schemas.SubscriptionDisabled || last.Secret != testSecret || last.Subscription.Reason == "" {
		t.Errorf("s-gone's last record %+v", last)
	}
	for result, n := range map[string]float64{"success": 3, "exhausted": 1, "permanent": 1, "gone": 1, schemas.FanoutInactive: 2} {
		if got := testutil.ToFloat64(f.m.WebhookDeliveries.WithLabelValues(result)); got != n {
			t.Errorf("deliveries{%s} = %v, want %v", result, got, n)
		}
	}
}

// gate answers 500 until opened, then 200.
func gate(open *atomic.Bool) func(w http.ResponseWriter, r *http.Request) {
	return func(w http.ResponseWriter, _ *http.Request) {
		if open.Load() {
			w.WriteHeader(200)
			return
		}
		w.WriteHeader(500)
	}
}

func TestFanoutOrderPerKeyWhileAnotherFails(t *testing.T) {
	k := newFanoutKafka(t, "bank", "insurer")
	k.putTopic("car-chosen", 1, false, "bank", "insurer")
	var open atomic.Bool
	failing := newDealer(t, gate(&open))
	fine := newDealer(t, status(200))
	k.putSub("s-a", "bank", "car-chosen", failing.srv.URL, schemas.SubscriptionActive, 1)
	k.putSub("s-b", "insurer", "car-chosen", fine.srv.URL, schemas.SubscriptionActive, 1)
	var want []string
	for i := range 3 {
		ev := fmt.Sprintf("e-%d", i)
		k.deliver(delivery("s-a", "bank", "car-chosen", "p-1", ev, false, 0))
		want = append(want, "s-a."+ev)
	}
	var wantB []string
	for i := range 5 {
		ev := fmt.Sprintf("e-%d", i)
		k.deliver(delivery("s-b", "insurer", "car-chosen", "p-1", ev, false, 0), delivery("s-b", "insurer", "car-chosen", "p-2", ev+"-2", false, 0))
		wantB = append(wantB, "s-b."+ev, "s-b."+ev+"-2")
	}
	// A long schedule: s-a keeps failing while s-b is delivered.
	sched := make([]time.Duration, 200)
	for i := range sched {
		sched[i] = 30 * time.Millisecond
	}
	runFanout(t, FanoutConfig{Brokers: k.brokers, RetrySchedule: sched})
	waitFor(t, "s-b's ten records", func() bool { return len(fine.received()) >= 10 })
	if ended := ends(k.reports(0)); len(ended) != 10 {
		t.Errorf("%d deliveries ended while s-a fails, want s-b's 10", len(ended))
	}
	firstOnly := failing.received()
	for _, r := range firstOnly {
		if r.id != want[0] {
			t.Fatalf("s-a's receiver got %s while %s was failing", r.id, want[0])
		}
	}
	if len(firstOnly) < 2 {
		t.Errorf("s-a: %d attempts while failing", len(firstOnly))
	}
	open.Store(true)
	k.waitEnds(13)
	var order []string
	for _, r := range failing.received() {
		if len(order) == 0 || order[len(order)-1] != r.id {
			order = append(order, r.id)
		}
	}
	if !slices.Equal(order, want) {
		t.Errorf("s-a's order %v, want %v", order, want)
	}
	var gotB []string
	for _, r := range fine.received() {
		gotB = append(gotB, r.id)
	}
	sort.Strings(gotB)
	sort.Strings(wantB)
	if !slices.Equal(gotB, wantB) {
		t.Errorf("s-b got %v, want %v", gotB, wantB)
	}
}

func TestFanoutSendTimeCheck(t *testing.T) {
	k := newFanoutKafka(t, "bank", "insurer", "broker")
	k.putTopic("car-chosen", 1, false, "bank", "insurer", "broker")
	k.putTopic("loans", 1, false, "bank")
	d1, d2, d3 := newDealer(t, status(500)), newDealer(t, status(500)), newDealer(t, status(500))
	k.putSub("s-del", "bank", "car-chosen", d1.srv.URL, schemas.SubscriptionActive, 1)
	k.putSub("s-rm", "insurer", "car-chosen", d2.srv.URL, schemas.SubscriptionActive, 1)
	k.putSub("s-exp", "broker", "car-chosen", d3.srv.URL, schemas.SubscriptionActive, 1)
	// Checked before the first attempt: a subscription not live, a topic
	// deleted, a consent expired already.
	k.putSub("s-off", "bank", "loans", d1.srv.URL, schemas.SubscriptionDisabled, 1)
	k.putTopic("gone-topic", 2, true, "bank")
	k.putSub("s-gt", "bank", "gone-topic", d1.srv.URL, schemas.SubscriptionActive, 1)
	expires := time.Now().Add(3 * time.Second).UnixMilli()
	k.deliver(delivery("s-del", "bank", "car-chosen", "p-1", "e-1", false, 0),
		delivery("s-rm", "insurer", "car-chosen", "p-1", "e-1", false, 0),
		delivery("s-exp", "broker", "car-chosen", "p-1", "e-1", false, expires),
		delivery("s-off", "bank", "loans", "p-1", "e-1", false, 0),
		delivery("s-gt", "bank", "gone-topic", "p-1", "e-1", false, 0),
		delivery("s-exp", "broker", "car-chosen", "p-2", "e-2", false, time.Now().Add(-time.Minute).UnixMilli()))
	// Attempts 4 s apart: time to change the store in between, and for
	// the consent to expire.
	runFanout(t, FanoutConfig{Brokers: k.brokers, RetrySchedule: []time.Duration{0, 4 * time.Second, 4 * time.Second}})
	waitFor(t, "first attempts", func() bool {
		return len(d1.received()) >= 1 && len(d2.received()) >= 1 && len(d3.received()) >= 1
	})
	k.putSub("s-del", "bank", "car-chosen", d1.srv.URL, schemas.SubscriptionDeleted, 2)
	k.putTopic("car-chosen", 2, false, "bank", "broker") // insurer removed
	got := k.waitEnds(6)
	for id, want := range map[string]string{"s-del.e-1": schemas.FanoutInactive, "s-rm.e-1": schemas.FanoutNotAllowed,
		"s-exp.e-1": schemas.FanoutExpired, "s-off.e-1": schemas.FanoutInactive, "s-gt.e-1": schemas.FanoutNotAllowed,
		"s-exp.e-2": schemas.FanoutExpired} {
		if rep := got[id]; rep.Type != schemas.ReportDeliveryDropped || rep.Result != want {
			t.Errorf("%s: %+v, want dropped %s", id, rep, want)
		}
	}
	for name, d := range map[string]*dealer{"deleted": d1, "removed": d2, "expired": d3} {
		if n := len(d.received()); n != 1 {
			t.Errorf("%s: %d requests, want 1 (dropped before the second)", name, n)
		}
	}
	if n := len(readAll(t, k.brokers, schemas.TopicOutDeadLetter, 0)); n != 0 {
		t.Errorf("%d dead letters: a dropped record is not dead-lettered", n)
	}
}

// TestFanoutRestartSameIDs stops the sender while deliveries are retried
// and queued (a window of 2 per partition), starts it again: every
// record reaches its receiver, with its id, and only the unfinished ones
// are sent again.
func TestFanoutRestartSameIDs(t *testing.T) {
	k := newFanoutKafka(t, "bank")
	k.putTopic("car-chosen", 1, false, "bank")
	var open atomic.Bool
	rcv := newDealer(t, gate(&open))
	k.putSub("s-1", "bank", "car-chosen", rcv.srv.URL, schemas.SubscriptionActive, 1)
	want := map[string]string{}
	for i := range 30 {
		d := delivery("s-1", "bank", "car-chosen", fmt.Sprintf("p-%d", i%7), fmt.Sprintf("e-%d", i), false, 0)
		k.deliver(d)
		want[d.WebhookID] = d.Body
	}
	sched := make([]time.Duration, 100)
	for i := range sched {
		sched[i] = 20 * time.Millisecond
	}
	cfg := FanoutConfig{Brokers: k.brokers, RetrySchedule: sched, Window: 2, SessionTimeout: 2 * time.Second}
	_, stop := runFanout(t, cfg)
	waitFor(t, "attempts", func() bool { return len(rcv.received()) >= 5 })
	stop()
	before := len(rcv.received())
	open.Store(true)
	runFanout(t, cfg)
	waitFor(t, "every record", func() bool {
		ids := map[string]bool{}
		for _, r := range rcv.received() {
			ids[r.id] = true
		}
		return len(ids) == len(want)
	})
	k.waitEnds(len(want))
	for _, r := range rcv.received() {
		if want[r.id] != r.body {
			t.Errorf("id %s with body %s, want %s", r.id, r.body, want[r.id])
		}
	}
	// After the restart each id is sent once (the first run delivered
	// nothing: the receiver failed every request).
	seen := map[string]int{}
	for _, r := range rcv.received()[before:] {
		seen[r.id]++
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("%s sent %d times after the restart", id, n)
		}
	}
	if len(seen) != len(want) {
		t.Errorf("%d ids after the restart, want %d", len(seen), len(want))
	}
}

func TestLeadSenderSkipsFanoutRecords(t *testing.T) {
	brokers, cl := newKafka(t)
	crm := newDealer(t, status(200))
	ps := []*partners.Partner{webhookPartner("dealer-f", "demo", crm.srv.URL, 0, nil)}
	if err := EnsureLeadTopics(context.Background(), cl, -1, ps); err != nil {
		t.Fatal(err)
	}
	d := delivery("s-1", "dealer-f", "car-chosen", "p-1", "e-1", true, 0)
	if err := cl.ProduceSync(context.Background(), &kgo.Record{Topic: schemas.OutTopic("dealer-f"), Key: []byte("p-1"),
		Value: []byte(d.Body), Headers: FanoutHeaders(&d)}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	ld, err := NewLeadDelivery(LeadDeliveryConfig{Brokers: brokers, Partners: ps, RetrySchedule: fastSchedule})
	if err != nil {
		t.Fatal(err)
	}
	runDelivery(t, ld)
	waitFor(t, "the fan-out record skipped", func() bool { return testutil.ToFloat64(ld.m.Skipped.WithLabelValues("fanout")) == 1 })
	if got := testutil.ToFloat64(ld.m.Skipped.WithLabelValues("undecodable")); got != 0 {
		t.Errorf("undecodable %v, want 0", got)
	}
	if n := len(crm.received()); n != 0 {
		t.Errorf("the lead partner's CRM got %d requests", n)
	}
}

func TestFanoutConfigValidate(t *testing.T) {
	for _, c := range []FanoutConfig{
		{},
		{Brokers: []string{"x"}, Timeout: -time.Second},
		{Brokers: []string{"x"}, RetrySchedule: []time.Duration{0, -time.Second}},
		{Brokers: []string{"x"}, Window: -1},
	} {
		if _, err := NewFanout(c); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
}
