package webhooks

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/rolodex/rolodex/internal/gokaconfig"
	"github.com/rolodex/rolodex/internal/kafkaclient"
	"github.com/rolodex/rolodex/partners"
	"github.com/rolodex/rolodex/schemas"
)

// runDelivery runs d until the test ends.
func runDelivery(t *testing.T, d *LeadDelivery) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

// delivered returns the outcomes of type typ of lead so far.
func outcomesOf(t *testing.T, brokers []string, min int, typ, lead string) []schemas.LeadOutcome {
	t.Helper()
	var out []schemas.LeadOutcome
	for _, o := range outcomes(t, brokers, min) {
		if o.Type == typ && o.LeadID == lead {
			out = append(out, o)
		}
	}
	return out
}

// rebalanceOnce answers the next heartbeat of group with
// REBALANCE_IN_PROGRESS: the member joins again.
func rebalanceOnce(c *kfake.Cluster, group string) {
	c.ControlKey(int16(kmsg.Heartbeat), func(req kmsg.Request) (kmsg.Response, error, bool) {
		hb := req.(*kmsg.HeartbeatRequest)
		if hb.Group != group {
			return nil, nil, false
		}
		resp := hb.ResponseKind().(*kmsg.HeartbeatResponse)
		resp.ErrorCode = kerr.RebalanceInProgress.Code
		return resp, nil, true
	})
}

// TestSenderRevokedWhileIdle revokes the sender's partition while its poll
// waits and gives it back to the same member: the records read again from
// the committed offset are delivered (before the fix, the delivery context
// the revoke had cancelled made the sender pass over them, and the next
// commit skipped them for good).
func TestSenderRevokedWhileIdle(t *testing.T) {
	c, brokers, cl := newCluster(t)
	dealer := newDealer(t, status(200))
	ps := []*partners.Partner{webhookPartner("dealer-w", "demo", dealer.srv.URL, 0, nil)}
	if err := EnsureLeadTopics(context.Background(), cl, -1, ps); err != nil {
		t.Fatal(err)
	}
	d, err := NewLeadDelivery(LeadDeliveryConfig{Brokers: brokers, Partners: ps, SessionTimeout: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	runDelivery(t, d)
	produceOutcomes(t, cl, routed("demo", "W1", "dealer-w", 1))
	waitFor(t, "W1 delivered", func() bool { return len(outcomesOf(t, brokers, 1, schemas.OutcomeDistributed, "W1")) == 1 })

	// The sender is idle in its poll. A rebalance whose sync assigns it
	// nothing (it revokes its partition), then another that gives the
	// partition back.
	group := schemas.GroupWebhookPrefix + "dealer-w"
	emptied, resynced := make(chan struct{}), make(chan struct{})
	c.ControlKey(int16(kmsg.SyncGroup), func(req kmsg.Request) (kmsg.Response, error, bool) {
		sg := req.(*kmsg.SyncGroupRequest)
		if sg.Group != group {
			return nil, nil, false
		}
		resp := sg.ResponseKind().(*kmsg.SyncGroupResponse)
		resp.ProtocolType, resp.Protocol = sg.ProtocolType, sg.Protocol
		none := kmsg.NewConsumerMemberAssignment()
		resp.MemberAssignment = none.AppendTo(nil)
		c.ControlKey(int16(kmsg.SyncGroup), func(req kmsg.Request) (kmsg.Response, error, bool) {
			if req.(*kmsg.SyncGroupRequest).Group == group {
				c.DropControl()
				close(resynced)
			}
			return nil, nil, false // the cluster answers: the partition comes back
		})
		rebalanceOnce(c, group)
		close(emptied)
		return resp, nil, true
	})
	rebalanceOnce(c, group)
	for _, ch := range []chan struct{}{emptied, resynced} {
		select {
		case <-ch:
		case <-time.After(30 * time.Second):
			t.Fatal("timed out waiting for the rebalances")
		}
	}
	time.Sleep(500 * time.Millisecond) // the member fetches its committed offset

	produceOutcomes(t, cl, routed("demo", "W2", "dealer-w", 1))
	deadline := time.Now().Add(15 * time.Second)
	for len(outcomesOf(t, brokers, 2, schemas.OutcomeDistributed, "W2")) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("W2, routed after the partition came back, was never delivered; the dealer got %+v", dealer.received())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestWebhookIDGenerations: a lead id reused after routing.retention
// starts again at attempt 1; its webhook id differs from the first life's
// (receivers dedupe by it), and a replayed outcome (same instant) keeps it.
func TestWebhookIDGenerations(t *testing.T) {
	d, err := NewLeadDelivery(LeadDeliveryConfig{Brokers: []string{"127.0.0.1:1"},
		Partners: []*partners.Partner{webhookPartner("dealer-g", "demo", "http://dealer.example", 0, nil)}})
	if err != nil {
		t.Fatal(err)
	}
	id := func(o schemas.LeadOutcome) string {
		t.Helper()
		v, _ := json.Marshal(o)
		out, _, _, skip := d.dispatch(&kgo.Record{Value: v, Timestamp: time.UnixMilli(o.At)})
		if skip != "" || len(out) != 1 {
			t.Fatalf("dispatch: %d records, skipped %q", len(out), skip)
		}
		for _, h := range out[0].Headers {
			if h.Key == HeaderCEID {
				return string(h.Value)
			}
		}
		t.Fatal("no ce_id")
		return ""
	}
	first := routed("demo", "G1", "dealer-g", 1)
	again := first
	again.At += 31 * 24 * time.Hour.Milliseconds() // the id reused after the retention
	if a, b := id(first), id(again); a == b {
		t.Fatalf("two lives of lead G1, both attempt 1, have one webhook id %s", a)
	}
	if a, b := id(first), id(first); a != b || a != "G1.1.1735725600000" {
		t.Fatalf("a replayed outcome's webhook id %s, first %s; want G1.1.1735725600000", b, a)
	}
}

// TestDispatchRefusedRecord: Kafka refuses a lead's out record for good
// (MESSAGE_TOO_LARGE; here the partner's out topic allows 2 KB). The lead
// is reported failed, as a webhook that failed for good, and the
// dispatcher goes on: another lead of that partner (in the batch Kafka
// refused whole) and a lead of another partner are delivered. Out topics
// are created with max.message.bytes MaxOutRecordBytes.
func TestDispatchRefusedRecord(t *testing.T) {
	if MaxOutRecordBytes != gokaconfig.MaxMessageBytes {
		t.Fatalf("MaxOutRecordBytes %d, gokaconfig.MaxMessageBytes %d", MaxOutRecordBytes, gokaconfig.MaxMessageBytes)
	}
	brokers, cl := newKafka(t)
	small, ok := newDealer(t, status(200)), newDealer(t, status(200))
	ps := []*partners.Partner{webhookPartner("dealer-small", "demo", small.srv.URL, 0, nil),
		webhookPartner("dealer-ok", "demo", ok.srv.URL, 0, nil)}
	limit := "2048"
	if err := kafkaclient.EnsureTopics(context.Background(), cl, -1, kafkaclient.TopicSpec{Name: schemas.OutTopic("dealer-small"),
		Partitions: 1, Configs: map[string]*string{"max.message.bytes": &limit}}); err != nil {
		t.Fatal(err)
	}
	if err := EnsureLeadTopics(context.Background(), cl, -1, ps); err != nil {
		t.Fatal(err)
	}
	cfgs, err := kadm.NewClient(cl).DescribeTopicConfigs(context.Background(), schemas.OutTopic("dealer-ok"))
	if err != nil {
		t.Fatal(err)
	}
	if c, err := cfgs.On(schemas.OutTopic("dealer-ok"), nil); err != nil || !hasConfig(c.Configs, "max.message.bytes", "16777216") {
		t.Fatalf("dealer-ok's out topic: %+v %v; want max.message.bytes 16777216", c.Configs, err)
	}

	big := routed("demo", "T1", "dealer-small", 1)
	noise := make([]byte, 6000) // incompressible: the producer compresses its batches
	if _, err := rand.Read(noise); err != nil {
		t.Fatal(err)
	}
	big.Lead.Properties["notes"] = `"` + base64.StdEncoding.EncodeToString(noise) + `"`
	produceOutcomes(t, cl, big, routed("demo", "T2", "dealer-small", 1), routed("demo", "T3", "dealer-ok", 1))
	d, err := NewLeadDelivery(LeadDeliveryConfig{Brokers: brokers, Partners: ps, Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	runDelivery(t, d)
	waitFor(t, "T2 and T3 delivered", func() bool {
		return len(outcomesOf(t, brokers, 3, schemas.OutcomeDistributed, "T2")) == 1 &&
			len(outcomesOf(t, brokers, 3, schemas.OutcomeDistributed, "T3")) == 1
	})
	var failed []schemas.LeadOutcome
	waitFor(t, "T1 reported failed", func() bool {
		failed = outcomesOf(t, brokers, 3, schemas.OutcomeDeliveryFailed, "T1")
		return len(failed) > 0
	})
	if r := failed[0].Delivery; len(failed) != 1 || r.OK || r.Partner != "dealer-small" || r.Attempt != 1 ||
		!strings.HasPrefix(r.Error, "permanent: Kafka refused the record: MESSAGE_TOO_LARGE") {
		t.Fatalf("T1's report %+v", failed)
	}
	var inputs []string
	for _, r := range readAll(t, brokers, schemas.TopicRoutingInput, 3) {
		var in schemas.RoutingInput
		if err := json.Unmarshal(r.Value, &in); err != nil || in.Delivery == nil {
			t.Fatalf("routing input %s", r.Value)
		}
		inputs = append(inputs, fmt.Sprintf("%s/%v", in.Delivery.LeadID, in.Delivery.OK))
	}
	slices.Sort(inputs)
	if fmt.Sprint(inputs) != "[T1/false T2/true T3/true]" {
		t.Fatalf("routing inputs %v", inputs)
	}
	if n := len(small.received()); n != 1 {
		t.Fatalf("dealer-small got %d requests, want T2's", n)
	}
	if got := testutil.ToFloat64(d.m.Deliveries.WithLabelValues("dealer-small", KindLead, "permanent")); got != 1 {
		t.Fatalf("deliveries permanent %v", got)
	}
}

func hasConfig(cs []kadm.Config, key, value string) bool {
	for _, c := range cs {
		if c.Key == key && c.Value != nil && *c.Value == value {
			return true
		}
	}
	return false
}

// TestSupersededAttempts: a partner's CRM is down while the SLA re-routes
// its leads to another partner. The attempt being retried stops, the one
// queued behind it is never sent, both end as lead.delivery_failed
// "superseded" with no report to routing (it moved on already); the new
// attempts are delivered. And a duplicate out record of an attempt that
// failed for good is not sent again.
func TestSupersededAttempts(t *testing.T) {
	brokers, cl := newKafka(t)
	down, ok, dup := newDealer(t, status(500)), newDealer(t, status(200)), newDealer(t, status(400))
	ps := []*partners.Partner{webhookPartner("dealer-down", "demo", down.srv.URL, 0, nil),
		webhookPartner("dealer-ok", "demo", ok.srv.URL, 0, nil), webhookPartner("dealer-dup", "demo", dup.srv.URL, 0, nil)}
	if err := EnsureLeadTopics(context.Background(), cl, -1, ps); err != nil {
		t.Fatal(err)
	}
	schedule := make([]time.Duration, 40)
	for i := range schedule {
		schedule[i] = 150 * time.Millisecond
	}
	d, err := NewLeadDelivery(LeadDeliveryConfig{Brokers: brokers, Partners: ps, RetrySchedule: schedule})
	if err != nil {
		t.Fatal(err)
	}
	d1 := routed("demo", "D1", "dealer-dup", 1)
	produceOutcomes(t, cl, routed("demo", "S1", "dealer-down", 1), routed("demo", "S2", "dealer-down", 1), d1, d1)
	runDelivery(t, d)
	waitFor(t, "the first lead retried", func() bool { return len(down.received()) >= 2 })
	// S1 and S2 are on different partitions of the outcomes: either may
	// be first in dealer-down's queue.
	first, queued := "S1", "S2"
	if strings.HasPrefix(down.received()[0].id, "S2.") {
		first, queued = "S2", "S1"
	}

	rerouted := func(lead string) schemas.LeadOutcome {
		o := routed("demo", lead, "dealer-ok", 2)
		o.At += 60_000
		o.Cause = schemas.CauseSLA
		return o
	}
	produceOutcomes(t, cl, rerouted("S1"), rerouted("S2"))
	for _, lead := range []string{"S1", "S2"} {
		waitFor(t, lead+" superseded and delivered", func() bool {
			return len(outcomesOf(t, brokers, 6, schemas.OutcomeDeliveryFailed, lead)) == 1 &&
				len(outcomesOf(t, brokers, 6, schemas.OutcomeDistributed, lead)) == 1
		})
		f := outcomesOf(t, brokers, 6, schemas.OutcomeDeliveryFailed, lead)[0].Delivery
		if f.Partner != "dealer-down" || f.Attempt != 1 || f.Error != "superseded" || f.OK {
			t.Fatalf("%s: %+v, want attempt 1 superseded", lead, f)
		}
		if lead == queued && f.Tries != 0 {
			t.Fatalf("%s (queued) was tried %d times", lead, f.Tries)
		}
	}
	n := len(down.received())
	time.Sleep(500 * time.Millisecond)
	got := down.received()
	if len(got) != n {
		t.Fatalf("dealer-down got %d more requests after %s was superseded", len(got)-n, first)
	}
	for _, r := range got {
		if r.id != WebhookID(first, 1, 1735725600000) {
			t.Fatalf("dealer-down got %s; %s, superseded while queued, is never sent", r.id, queued)
		}
	}
	if g := dup.received(); len(g) != 1 {
		t.Fatalf("dealer-dup got %d requests of D1, written twice to its out topic; want 1", len(g))
	}
	if f := outcomesOf(t, brokers, 6, schemas.OutcomeDeliveryFailed, "D1"); len(f) != 1 {
		t.Fatalf("D1 reported %d times", len(f))
	}
	var inputs []string
	for _, r := range readAll(t, brokers, schemas.TopicRoutingInput, 3) {
		var in schemas.RoutingInput
		if err := json.Unmarshal(r.Value, &in); err != nil || in.Delivery == nil {
			t.Fatalf("routing input %s", r.Value)
		}
		inputs = append(inputs, fmt.Sprintf("%s.%d/%v", in.Delivery.LeadID, in.Delivery.Attempt, in.Delivery.OK))
	}
	slices.Sort(inputs)
	if fmt.Sprint(inputs) != "[D1.1/false S1.2/true S2.2/true]" {
		t.Fatalf("routing inputs %v; a superseded attempt reports nothing to routing", inputs)
	}
}

// TestLeadBook: which records the book calls superseded, outcome by
// outcome (a lead's later attempt, closed leads, follow-ups of an accepted
// lead, a lead id's second life, a replayed outcome, a book that lags).
func TestLeadBook(t *testing.T) {
	const t0 = 1_000_000
	o := func(typ string, attempt int, at int64) *schemas.LeadOutcome {
		return &schemas.LeadOutcome{Type: typ, LeadID: "L", Attempt: attempt, At: at}
	}
	for _, c := range []struct {
		name     string
		outcomes []*schemas.LeadOutcome
		kind     string
		attempt  int
		at       int64
		want     bool
	}{
		{"unknown lead", nil, KindLead, 1, t0, false},
		{"current attempt", []*schemas.LeadOutcome{o(schemas.OutcomeRouted, 1, t0)}, KindLead, 1, t0, false},
		{"re-routed", []*schemas.LeadOutcome{o(schemas.OutcomeRouted, 1, t0), o(schemas.OutcomeRouted, 2, t0+5)}, KindLead, 1, t0, true},
		{"re-routed, same instant", []*schemas.LeadOutcome{o(schemas.OutcomeRouted, 1, t0), o(schemas.OutcomeRouted, 2, t0)}, KindLead, 1, t0, true},
		{"replay of attempt 1 after 2", []*schemas.LeadOutcome{o(schemas.OutcomeRouted, 1, t0), o(schemas.OutcomeRouted, 2, t0+5),
			o(schemas.OutcomeRouted, 1, t0)}, KindLead, 2, t0 + 5, false},
		{"book lags", []*schemas.LeadOutcome{o(schemas.OutcomeRouted, 1, t0)}, KindLead, 2, t0 + 5, false},
		{"unrouted", []*schemas.LeadOutcome{o(schemas.OutcomeRouted, 1, t0), o(schemas.OutcomeUnrouted, 2, t0+5)}, KindLead, 1, t0, true},
		{"accepted", []*schemas.LeadOutcome{o(schemas.OutcomeRouted, 1, t0), o(schemas.OutcomeAccepted, 1, t0+5)}, KindLead, 1, t0, true},
		{"follow-up of the accepted lead", []*schemas.LeadOutcome{o(schemas.OutcomeRouted, 1, t0), o(schemas.OutcomeAccepted, 1, t0+5)},
			KindFollowUp, 1, t0 + 9, false},
		{"follow-up, re-routed since", []*schemas.LeadOutcome{o(schemas.OutcomeRouted, 1, t0), o(schemas.OutcomeRouted, 2, t0+9)},
			KindFollowUp, 1, t0 + 7, true},
		{"second life, old record", []*schemas.LeadOutcome{o(schemas.OutcomeRouted, 2, t0), o(schemas.OutcomeAccepted, 2, t0+5),
			o(schemas.OutcomeRouted, 1, t0+100)}, KindLead, 2, t0, true},
		{"second life, its record", []*schemas.LeadOutcome{o(schemas.OutcomeRouted, 2, t0), o(schemas.OutcomeAccepted, 2, t0+5),
			o(schemas.OutcomeRouted, 1, t0+100)}, KindLead, 1, t0 + 100, false},
		{"second life not read yet", []*schemas.LeadOutcome{o(schemas.OutcomeRouted, 2, t0), o(schemas.OutcomeAccepted, 2, t0+5)},
			KindLead, 1, t0 + 100, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			b := newLeadBook(time.Hour, time.Now, slog.Default())
			for _, x := range c.outcomes {
				b.apply(x)
			}
			if got := b.superseded(c.kind, "L", c.attempt, c.at); got != c.want {
				t.Fatalf("superseded = %v, want %v", got, c.want)
			}
		})
	}
}
