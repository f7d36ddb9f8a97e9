package webhooks

import (
	"context"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/rolodex/rolodex/schemas"
)

// cancelRecord is the fan-out group's record for a profile blacklisted
// after records of it were decided for sub (docs/fanout.md,
// "Blacklisting").
func cancelRecord(sub, partner, topic, profile string, kafka bool) schemas.FanoutDelivery {
	return schemas.FanoutDelivery{Kind: schemas.KindBlacklisted, Tenant: "demo", Partner: partner, Subscription: sub,
		Topic: topic, Kafka: kafka, ProfileID: profile, Type: schemas.EventBlacklistedType, At: 1735725600000,
		WebhookID: sub + ".blacklisted." + profile + ".1735725600000"}
}

// revocationRecord is a consent_revoked record of profile for sub.
func revocationRecord(sub, partner, topic, profile string, kafka bool) schemas.FanoutDelivery {
	d := delivery(sub, partner, topic, profile, "", kafka, 0)
	d.Kind, d.Type, d.WebhookID = schemas.KindConsentRevoked, schemas.EventConsentRevokedType, sub+".revoked.partner_offers.1"
	d.Body = `{"kind":"consent_revoked","profile_id":"` + profile + `"}`
	return d
}

// A profile blacklisted while one of its records waits for a retry (the
// receiver answered 500): the cancel that follows it on the partition
// wakes the wait and drops it (reported dropped/blacklisted, never posted
// again, not dead-lettered), drops the record queued behind it without a
// request, lets the revocation between them go, sends nothing itself and
// is committed; a record of the key after the cancel, and another
// profile's, are delivered.
func TestFanoutBlacklistCancelsWaitingRecord(t *testing.T) {
	k := newFanoutKafka(t, "bank")
	k.putTopic("car-chosen", 1, false, "bank")
	d := newDealer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("webhook-id") == "s-1.e-1" {
			w.WriteHeader(500)
			return
		}
		w.WriteHeader(200)
	})
	k.putSub("s-1", "bank", "car-chosen", d.srv.URL, schemas.SubscriptionActive, 1)
	k.deliver(delivery("s-1", "bank", "car-chosen", "p-1", "e-1", false, 0),
		delivery("s-1", "bank", "car-chosen", "p-1", "e-3", false, 0),
		revocationRecord("s-1", "bank", "car-chosen", "p-1", false),
		delivery("s-1", "bank", "car-chosen", "p-2", "e-4", false, 0))
	// The retry would come 3 s after the first attempt, and again after
	// 3 s more: exhausted and dead-lettered without the cancel.
	f, _ := runFanout(t, FanoutConfig{Brokers: k.brokers, RetrySchedule: []time.Duration{0, 3 * time.Second, 3 * time.Second}})
	waitFor(t, "the first attempt of e-1", func() bool {
		return slices.ContainsFunc(d.received(), func(r received) bool { return r.id == "s-1.e-1" })
	})
	cancelled := time.Now()
	k.deliver(cancelRecord("s-1", "bank", "car-chosen", "p-1", false),
		delivery("s-1", "bank", "car-chosen", "p-1", "e-2", false, 0))
	got := k.waitEnds(5)
	if time.Since(cancelled) >= 3*time.Second {
		t.Errorf("the ends took %s after the cancel: the waiting record was not woken", time.Since(cancelled))
	}
	want := map[string][2]string{
		"s-1.e-1":                      {schemas.ReportDeliveryDropped, schemas.FanoutBlacklisted},
		"s-1.e-3":                      {schemas.ReportDeliveryDropped, schemas.FanoutBlacklisted},
		"s-1.revoked.partner_offers.1": {schemas.ReportDeliverySucceeded, schemas.ReportResultSuccess},
		"s-1.e-2":                      {schemas.ReportDeliverySucceeded, schemas.ReportResultSuccess},
		"s-1.e-4":                      {schemas.ReportDeliverySucceeded, schemas.ReportResultSuccess},
	}
	for id, w := range want {
		if rep := got[id]; rep.Type != w[0] || rep.Result != w[1] || rep.Channel != ChannelWebhook {
			t.Errorf("%s: %+v, want %s %s", id, rep, w[0], w[1])
		}
	}
	if len(got) != len(want) {
		t.Errorf("%d deliveries ended, want %d (the cancel is not reported): %v", len(got), len(want), got)
	}
	// Past the time the retry was due: e-1 never comes again.
	time.Sleep(3500 * time.Millisecond)
	var ids []string
	for _, r := range d.received() {
		ids = append(ids, r.id)
	}
	count := func(id string) int {
		n := 0
		for _, x := range ids {
			if x == id {
				n++
			}
		}
		return n
	}
	for id, n := range map[string]int{"s-1.e-1": 1, "s-1.e-3": 0, "s-1.revoked.partner_offers.1": 1, "s-1.e-2": 1,
		"s-1.e-4": 1, "s-1.blacklisted.p-1.1735725600000": 0} {
		if count(id) != n {
			t.Errorf("%s reached the receiver %d times, want %d (requests: %v)", id, count(id), n, ids)
		}
	}
	if i, j := slices.Index(ids, "s-1.revoked.partner_offers.1"), slices.Index(ids, "s-1.e-2"); i < 0 || j < i {
		t.Errorf("the revocation and e-2 out of order: %v", ids)
	}
	if n := len(readAll(t, k.brokers, schemas.TopicOutDeadLetter, 0)); n != 0 {
		t.Errorf("%d dead letters: a cancelled record is dropped, not dead-lettered", n)
	}
	if n := testutil.ToFloat64(f.m.WebhookDeliveries.WithLabelValues(schemas.FanoutBlacklisted)); n != 2 {
		t.Errorf("webhook deliveries{blacklisted} = %v, want 2", n)
	}
	if n := testutil.ToFloat64(f.m.WebhookSkipped.WithLabelValues(schemas.KindBlacklisted)); n != 1 {
		t.Errorf("webhook skipped{blacklisted} = %v, want 1", n)
	}
	// Everything ended, the cancel included: the group commits past it.
	waitFor(t, "the commit past the cancel", func() bool {
		return committedCount(t, k, schemas.GroupFanoutWebhooks) == 6
	})
}

// The Kafka writer: a cancel drops its key's records read before it in
// the batch (not written yet), writes nothing itself, lets a revocation
// go; a record after it is written.
func TestFanoutKafkaBlacklistCancel(t *testing.T) {
	k := newFanoutKafka(t, "bank")
	k.putTopic("car-chosen", 1, false, "bank")
	k.putSub("s-k", "bank", "car-chosen", "", schemas.SubscriptionActive, 1)
	k.deliver(delivery("s-k", "bank", "car-chosen", "p-1", "e-1", true, 0),
		revocationRecord("s-k", "bank", "car-chosen", "p-1", true),
		cancelRecord("s-k", "bank", "car-chosen", "p-1", true),
		delivery("s-k", "bank", "car-chosen", "p-1", "e-2", true, 0))
	f, _ := runFanout(t, FanoutConfig{Brokers: k.brokers, RetrySchedule: fastSchedule})
	got := k.waitEnds(3)
	for id, w := range map[string][2]string{
		"s-k.e-1":                      {schemas.ReportDeliveryDropped, schemas.FanoutBlacklisted},
		"s-k.revoked.partner_offers.1": {schemas.ReportDeliverySucceeded, schemas.ReportResultSuccess},
		"s-k.e-2":                      {schemas.ReportDeliverySucceeded, schemas.ReportResultSuccess},
	} {
		if rep := got[id]; rep.Type != w[0] || rep.Result != w[1] || rep.Channel != ChannelKafka {
			t.Errorf("%s: %+v, want %s %s", id, rep, w[0], w[1])
		}
	}
	if len(got) != 3 {
		t.Errorf("%d deliveries ended, want 3 (the cancel is not reported): %v", len(got), got)
	}
	recs := readAll(t, k.brokers, schemas.OutTopic("bank"), 2)
	var ids []string
	for _, r := range recs {
		ids = append(ids, headers(r)[HeaderCEID])
	}
	if !slices.Equal(ids, []string{"s-k.revoked.partner_offers.1", "s-k.e-2"}) {
		t.Errorf("bank's out topic: %v, want the revocation and e-2", ids)
	}
	if n := testutil.ToFloat64(f.m.KafkaDeliveries.WithLabelValues(schemas.FanoutBlacklisted)); n != 1 {
		t.Errorf("kafka deliveries{blacklisted} = %v, want 1", n)
	}
}

// committedCount is the sum of group's committed offsets on the
// deliveries topic: the records it committed (offsets start at 0).
func committedCount(t *testing.T, k *fanoutKafka, group string) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := kadm.NewClient(k.cl).FetchOffsets(ctx, group)
	if err != nil {
		return -1
	}
	var n int64
	resp.Each(func(o kadm.OffsetResponse) {
		if o.Topic == schemas.TopicFanoutDeliveries && o.Err == nil && o.At > 0 {
			n += o.At
		}
	})
	return n
}

// A cancel read while a request is on the wire lets it finish: a 2xx is a
// delivery (success), a 500 ends the record dropped/blacklisted with no
// retry and no dead letter; neither request is cut short.
func TestFanoutBlacklistCancelDuringRequest(t *testing.T) {
	k := newFanoutKafka(t, "bank")
	k.putTopic("car-chosen", 1, false, "bank")
	d := newDealer(t, func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(time.Second)
		if r.Header.Get("webhook-id") == "s-1.e-1" {
			w.WriteHeader(500)
			return
		}
		w.WriteHeader(200)
	})
	k.putSub("s-1", "bank", "car-chosen", d.srv.URL, schemas.SubscriptionActive, 1)
	k.deliver(delivery("s-1", "bank", "car-chosen", "p-1", "e-1", false, 0),
		delivery("s-1", "bank", "car-chosen", "p-2", "e-5", false, 0))
	runFanout(t, FanoutConfig{Brokers: k.brokers, RetrySchedule: []time.Duration{0, 100 * time.Millisecond, 100 * time.Millisecond}})
	waitFor(t, "both requests on the wire", func() bool { return len(d.received()) >= 2 })
	k.deliver(cancelRecord("s-1", "bank", "car-chosen", "p-1", false), cancelRecord("s-1", "bank", "car-chosen", "p-2", false))
	got := k.waitEnds(2)
	for id, w := range map[string][2]string{
		"s-1.e-1": {schemas.ReportDeliveryDropped, schemas.FanoutBlacklisted},
		"s-1.e-5": {schemas.ReportDeliverySucceeded, schemas.ReportResultSuccess},
	} {
		if rep := got[id]; rep.Type != w[0] || rep.Result != w[1] {
			t.Errorf("%s: %+v, want %s %s", id, rep, w[0], w[1])
		}
	}
	var attempts []string
	for _, r := range k.reports(0) {
		if r.Type == schemas.ReportAttempt {
			attempts = append(attempts, r.WebhookID+" "+r.Result)
		}
	}
	slices.Sort(attempts)
	if want := []string{"s-1.e-1 retry", "s-1.e-5 success"}; !slices.Equal(attempts, want) {
		t.Errorf("attempts %v, want %v (each request answered, none cut short or retried)", attempts, want)
	}
	time.Sleep(300 * time.Millisecond)
	if n := len(d.received()); n != 2 {
		t.Errorf("%d requests, want 2", n)
	}
	if n := len(readAll(t, k.brokers, schemas.TopicOutDeadLetter, 0)); n != 0 {
		t.Errorf("%d dead letters, want none", n)
	}
}
