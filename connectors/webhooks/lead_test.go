package webhooks

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rolodex/rolodex/internal/childtest"
	"github.com/rolodex/rolodex/partners"
	"github.com/rolodex/rolodex/schemas"
)

// A child process runs lead delivery for one webhook partner until it is
// killed (TestRestartMidRetry).
const (
	envChildBrokers = "ROLODEX_TEST_DELIVERY_BROKERS"
	envChildURL     = "ROLODEX_TEST_DELIVERY_URL"
)

func TestMain(m *testing.M) {
	if os.Getenv(envFanoutChild+"_BROKERS") != "" {
		childtest.Main(m, envFanoutChild, runFanoutChild) // exits
	}
	if brokers := os.Getenv(envChildBrokers); brokers != "" {
		ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGTERM)
		defer cancel()
		d, err := NewLeadDelivery(LeadDeliveryConfig{Brokers: strings.Split(brokers, ","),
			Partners:       restartPartners(os.Getenv(envChildURL)),
			RetrySchedule:  []time.Duration{0, 100 * time.Millisecond, 100 * time.Millisecond, 100 * time.Millisecond, 100 * time.Millisecond, 100 * time.Millisecond, 100 * time.Millisecond, 100 * time.Millisecond, 100 * time.Millisecond, 100 * time.Millisecond},
			SessionTimeout: 2 * time.Second})
		if err == nil {
			err = d.Run(ctx)
		}
		if err != nil && ctx.Err() == nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func restartPartners(url string) []*partners.Partner {
	return []*partners.Partner{{Name: "dealer-r", Tenant: "demo", Delivery: &schemas.PartnerDelivery{
		Webhook: &schemas.WebhookTarget{URL: url, Secret: testSecret, Timeout: "1s"}}}}
}

func newKafka(t *testing.T) (brokers []string, cl *kgo.Client) {
	t.Helper()
	_, brokers, cl = newCluster(t)
	return brokers, cl
}

// newCluster is newKafka with the cluster, for tests that steer its
// answers (kfake's ControlKey).
func newCluster(t *testing.T) (c *kfake.Cluster, brokers []string, cl *kgo.Client) {
	t.Helper()
	// A member killed holds its partitions for its session timeout: the
	// child asks for 2s, below the broker default minimum of 6s.
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, schemas.TopicRoutingOutcomes, schemas.TopicRoutingInput),
		kfake.BrokerConfigs(map[string]string{"group.min.session.timeout.ms": "1000"}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	brokers = c.ListenAddrs()
	if cl, err = kgo.NewClient(kgo.SeedBrokers(brokers...)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return c, brokers, cl
}

func produceOutcomes(t *testing.T, cl *kgo.Client, os ...schemas.LeadOutcome) {
	t.Helper()
	for _, o := range os {
		v, _ := json.Marshal(o)
		if err := cl.ProduceSync(context.Background(), &kgo.Record{Topic: schemas.TopicRoutingOutcomes, Key: []byte(o.LeadID), Value: v}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
}

// readAll returns every record of topic so far (waiting for at least min).
func readAll(t *testing.T, brokers []string, topic string, min int) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	deadline := time.Now().Add(20 * time.Second)
	var out []*kgo.Record
	for {
		ends, err := adm.ListEndOffsets(context.Background(), topic)
		if err != nil {
			t.Fatal(err)
		}
		var total int64
		ends.Each(func(o kadm.ListedOffset) { total += o.Offset })
		if int(total) >= min && len(out) >= int(total) {
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d records (end offsets %d), want at least %d", topic, len(out), total, min)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		out = append(out, cl.PollFetches(ctx).Records()...)
		cancel()
	}
}

func outcomes(t *testing.T, brokers []string, min int) []schemas.LeadOutcome {
	t.Helper()
	var out []schemas.LeadOutcome
	for _, r := range readAll(t, brokers, schemas.TopicRoutingOutcomes, min) {
		var o schemas.LeadOutcome
		if err := json.Unmarshal(r.Value, &o); err == nil {
			out = append(out, o)
		}
	}
	return out
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func routed(tenant, lead, partner string, attempt int) schemas.LeadOutcome {
	return schemas.LeadOutcome{Type: schemas.OutcomeRouted, Tenant: tenant, LeadID: lead, Attempt: attempt, At: 1735725600000,
		Partner: partner, Rule: "sp", Cause: schemas.CauseLead, Lead: &schemas.RoutingLead{ID: lead, EventID: "e-" + lead,
			Type: "lead.created", Time: 1735725600000, Properties: map[string]string{"model": `"Onix"`, "budget": `89900`},
			Traits: map[string]string{"name": `"Ana"`}, Identifiers: map[string][]string{"email": {lead + "@example.com"}}}}
}

func webhookPartner(name, tenant, url string, perMinute int, mapping map[string]any) *partners.Partner {
	return &partners.Partner{Name: name, Tenant: tenant, Delivery: &schemas.PartnerDelivery{
		Webhook: &schemas.WebhookTarget{URL: url, Secret: testSecret, PerMinute: perMinute, Timeout: "2s"}, Mapping: mapping}}
}

func TestLeadDeliveryOnKafka(t *testing.T) {
	brokers, cl := newKafka(t)
	ok := status(200)
	sp := newDealer(t, status(500), status(500), ok) // 500s then success
	bad := newDealer(t, status(400))                 // permanent
	gone := newDealer(t, status(410))
	busy := newDealer(t, status(429, "Retry-After", "1"), ok)
	paced := newDealer(t, ok)
	other := newDealer(t, ok) // tenant acme's: never reached by demo's leads
	ps := []*partners.Partner{
		webhookPartner("dealer-sp", "demo", sp.srv.URL, 0, map[string]any{"cliente.nome": "traits.name", "modelo": "properties.model",
			"orcamento": "properties.budget", "origem": "=rolodex"}),
		webhookPartner("dealer-bad", "demo", bad.srv.URL, 0, nil),
		webhookPartner("dealer-gone", "demo", gone.srv.URL, 0, nil),
		webhookPartner("dealer-busy", "demo", busy.srv.URL, 0, nil),
		webhookPartner("dealer-paced", "demo", paced.srv.URL, 5, nil), // 5 per RateUnit (1s): 200ms apart
		webhookPartner("dealer-other", "acme", other.srv.URL, 0, nil),
		{Name: "dealer-k", Tenant: "demo", Delivery: &schemas.PartnerDelivery{Kafka: true, Mapping: map[string]any{"id": "lead.id", "nome": "traits.name"}}},
		{Name: "dealer-none", Tenant: "demo"},
	}
	if err := EnsureLeadTopics(context.Background(), cl, -1, ps); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	d, err := NewLeadDelivery(LeadDeliveryConfig{Brokers: brokers, Partners: ps, Registerer: reg, RateUnit: time.Second,
		RetrySchedule: []time.Duration{0, 50 * time.Millisecond, 50 * time.Millisecond, 50 * time.Millisecond}, QueueInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}

	// Queue depth: records in an out topic its sender has not handled.
	for i := range 3 {
		if err := cl.ProduceSync(context.Background(), &kgo.Record{Topic: schemas.OutTopic("dealer-paced"), Value: []byte(`{}`),
			Headers: []kgo.RecordHeader{{Key: "junk", Value: []byte(fmt.Sprint(i))}}}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	d.measureQueues(context.Background(), kadm.NewClient(cl), []string{schemas.OutTopic("dealer-paced")})
	if got := testutil.ToFloat64(d.m.QueueDepth.WithLabelValues("dealer-paced")); got != 3 {
		t.Fatalf("queue depth %v, want 3", got)
	}

	fuSP := schemas.LeadOutcome{Type: schemas.OutcomeForwarded, Tenant: "demo", LeadID: "L1", Attempt: 1, At: 1735729200000, Partner: "dealer-sp",
		FollowUp: &schemas.LeadFollowUp{LeadID: "L1", EventID: "ev-9", Type: "opportunity.updated", Properties: map[string]string{"stage": `"won"`}}}
	fuBad := schemas.LeadOutcome{Type: schemas.OutcomeForwarded, Tenant: "demo", LeadID: "L2", Attempt: 1, Partner: "dealer-bad",
		FollowUp: &schemas.LeadFollowUp{LeadID: "L2", EventID: "ev-10", Type: "lead.updated"}}
	produceOutcomes(t, cl,
		routed("demo", "L1", "dealer-sp", 1),
		routed("demo", "L2", "dealer-bad", 1),
		routed("demo", "L3", "dealer-gone", 2),
		routed("demo", "L4", "dealer-k", 1),
		routed("demo", "L5", "dealer-other", 1), // dealer-other is acme's
		routed("demo", "L6", "dealer-none", 1),
		routed("demo", "L7", "dealer-nobody", 1),
		schemas.LeadOutcome{Type: schemas.OutcomeUnrouted, Tenant: "demo", LeadID: "L8", Attempt: 1, Reason: "no_match"},
		fuSP, fuBad,
		routed("demo", "L9", "dealer-busy", 1),
		routed("demo", "P1", "dealer-paced", 1), routed("demo", "P2", "dealer-paced", 1),
		routed("demo", "P3", "dealer-paced", 1), routed("demo", "P4", "dealer-paced", 1),
	)
	if err := cl.ProduceSync(context.Background(), &kgo.Record{Topic: schemas.TopicRoutingOutcomes, Key: []byte("x"), Value: []byte("not json")}).FirstErr(); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()

	// 16 outcomes in, plus: distributed L1, L4, L9, P1-4; failed L2, L3,
	// L5-L7 (undeliverable)
	// and L2's follow-up.
	want := map[string]bool{"lead.distributed/L1": true, "lead.distributed/L4": true, "lead.distributed/L9": true,
		"lead.distributed/P1": true, "lead.distributed/P2": true, "lead.distributed/P3": true, "lead.distributed/P4": true,
		"lead.delivery_failed/L2": true, "lead.delivery_failed/L3": true,
		// Routed to partners that cannot receive: reported failed, so
		// that routing routes them again.
		"lead.delivery_failed/L5": true, "lead.delivery_failed/L6": true, "lead.delivery_failed/L7": true}
	var reports []schemas.LeadOutcome
	waitFor(t, "every delivery's outcome", func() bool {
		reports = reports[:0]
		for _, o := range outcomes(t, brokers, 16) {
			if o.Type == schemas.OutcomeDistributed || o.Type == schemas.OutcomeDeliveryFailed {
				reports = append(reports, o)
			}
		}
		return len(reports) >= len(want)+1
	})
	time.Sleep(300 * time.Millisecond) // nothing more may come
	reports = reports[:0]
	for _, o := range outcomes(t, brokers, 16) {
		if o.Type == schemas.OutcomeDistributed || o.Type == schemas.OutcomeDeliveryFailed {
			reports = append(reports, o)
		}
	}
	if len(reports) != len(want)+1 {
		t.Fatalf("%d delivery outcomes, want %d: %+v", len(reports), len(want)+1, reports)
	}
	byLead := map[string]schemas.LeadOutcome{}
	for _, o := range reports {
		if o.FollowUp != nil {
			if o.LeadID != "L2" || o.Type != schemas.OutcomeDeliveryFailed || o.FollowUp.EventID != "ev-10" || o.Delivery.Status != 400 {
				t.Fatalf("follow-up outcome %+v", o)
			}
			continue
		}
		if !want[o.Type+"/"+o.LeadID] {
			t.Fatalf("unexpected outcome %s of %s", o.Type, o.LeadID)
		}
		if o.Tenant != "demo" || o.Delivery == nil || o.Delivery.LeadID != o.LeadID || o.Delivery.Partner != o.Partner || o.At == 0 {
			t.Fatalf("outcome %+v", o)
		}
		byLead[o.LeadID] = o
	}
	if r := byLead["L1"].Delivery; !r.OK || r.Tries != 3 || r.Status != 200 || r.Attempt != 1 {
		t.Fatalf("L1 report %+v, want delivered at the third try", r)
	}
	if r := byLead["L2"].Delivery; r.OK || r.Tries != 1 || r.Status != 400 || !strings.HasPrefix(r.Error, "permanent") {
		t.Fatalf("L2 report %+v, want a permanent failure at once", r)
	}
	if r := byLead["L3"].Delivery; r.OK || r.Status != 410 || r.Attempt != 2 || !strings.HasPrefix(r.Error, "gone") {
		t.Fatalf("L3 report %+v", r)
	}
	for lead, why := range map[string]string{"L5": "undeliverable: the partner belongs to another tenant",
		"L6": "undeliverable: the partner has no delivery", "L7": "undeliverable: no partner of that name in the config"} {
		if r := byLead[lead].Delivery; r.OK || r.Error != why || r.Tries != 0 || r.Attempt != 1 {
			t.Fatalf("%s report %+v, want %q", lead, r, why)
		}
	}
	if r := byLead["L4"].Delivery; !r.OK || r.Status != 0 || r.Partner != "dealer-k" {
		t.Fatalf("L4 (kafka) report %+v", r)
	}

	// Routing hears of every lead's delivery (not of follow-ups'), keyed by
	// tenant.
	var inputs []string
	for _, r := range readAll(t, brokers, schemas.TopicRoutingInput, len(want)) {
		var in schemas.RoutingInput
		if err := json.Unmarshal(r.Value, &in); err != nil || in.Delivery == nil || string(r.Key) != "demo" || in.Tenant != "demo" {
			t.Fatalf("routing input %s %s", r.Key, r.Value)
		}
		inputs = append(inputs, fmt.Sprintf("%s/%v", in.Delivery.LeadID, in.Delivery.OK))
	}
	if len(inputs) != len(want) {
		t.Fatalf("routing inputs %v, want one per lead delivery", inputs)
	}

	// The dealers: same webhook-id on every try, in order, the mapping's
	// body, the follow-up after the lead.
	got := sp.received()
	if len(got) != 4 || got[0].id != "L1.1.1735725600000" || got[2].id != "L1.1.1735725600000" || got[3].id != "L1.f.ev-9" {
		t.Fatalf("dealer-sp got %+v", got)
	}
	assertJSON(t, []byte(got[2].body), `{"cliente":{"nome":"Ana"},"modelo":"Onix","orcamento":89900,"origem":"rolodex"}`)
	assertJSON(t, []byte(got[3].body), `{"kind":"follow_up","lead_id":"L1","tenant":"demo","partner":"dealer-sp","event_id":"ev-9",
	  "type":"opportunity.updated","time":"2025-01-01T11:00:00.000Z","properties":{"stage":"won"}}`)
	if n := len(other.received()); n != 0 {
		t.Fatalf("tenant acme's dealer got %d requests of tenant demo's leads", n)
	}
	if g := busy.received(); len(g) != 2 || g[1].at.Sub(g[0].at) < 900*time.Millisecond {
		t.Fatalf("dealer-busy: %+v; the retry must wait Retry-After's second", g)
	}
	pg := paced.received()
	if len(pg) != 4 {
		t.Fatalf("dealer-paced got %d", len(pg))
	}
	// Paced: 4 requests at 200ms intervals span at least 600ms from the
	// sender. Measured at the receiver, one request may arrive late (a
	// loaded machine), shortening one gap: the span allows 120ms of that.
	// Unpaced, the four would come within milliseconds.
	if span := pg[3].at.Sub(pg[0].at); span < 480*time.Millisecond {
		t.Fatalf("dealer-paced: 4 requests within %s; per_minute 5 of a 1s unit is one per 200ms", span)
	}
	// Leads of different ids may come in any order (rolodex.routing.outcomes
	// is keyed by lead id); each exactly once.
	seen := map[string]bool{}
	for _, r := range pg {
		seen[r.id] = true
	}
	if len(seen) != 4 || !seen["P1.1.1735725600000"] || !seen["P4.1.1735725600000"] {
		t.Fatalf("dealer-paced got %+v", pg)
	}

	// The kafka partner's topic: the mapped body and CloudEvents headers.
	krs := readAll(t, brokers, schemas.OutTopic("dealer-k"), 1)
	if len(krs) != 1 || string(krs[0].Key) != "L4" {
		t.Fatalf("dealer-k's topic: %d records", len(krs))
	}
	assertJSON(t, krs[0].Value, `{"id":"L4","nome":"Ana"}`)
	hs := map[string]string{}
	for _, h := range krs[0].Headers {
		hs[h.Key] = string(h.Value)
	}
	wantHs := map[string]string{"ce_specversion": "1.0", "ce_id": "L4.1.1735725600000", "ce_type": "lead.routed", "ce_source": "/rolodex/tenants/demo/routing",
		"ce_time": "2025-01-01T10:00:00Z", "ce_subject": "L4", "content-type": "application/json",
		"rolodex_tenant": "demo", "rolodex_lead_id": "L4", "rolodex_attempt": "1", "rolodex_kind": "lead"}
	for k, v := range wantHs {
		if hs[k] != v {
			t.Errorf("header %s = %q, want %q", k, hs[k], v)
		}
	}
	if n := len(readAll(t, brokers, schemas.OutTopic("dealer-other"), 0)); n != 0 {
		t.Fatalf("dealer-other's topic has %d records", n)
	}

	// Metrics.
	for reason, n := range map[string]float64{"other_tenant": 1, "no_delivery": 1, "unknown_partner": 1, "outcome_type": 1 + 12 + 1, "undecodable": 1 + 3} {
		// outcome_type: the unrouted lead, the reports written back
		// (three of them for undeliverable leads), the follow-up's
		// failure; undecodable: the bad record and the three
		// junk out records.
		waitFor(t, "skipped "+reason, func() bool { return testutil.ToFloat64(d.m.Skipped.WithLabelValues(reason)) == n })
	}
	for _, c := range []struct {
		partner, kind, result string
	}{{"dealer-sp", KindLead, "success"}, {"dealer-sp", KindFollowUp, "success"}, {"dealer-bad", KindLead, "permanent"},
		{"dealer-bad", KindFollowUp, "permanent"}, {"dealer-gone", KindLead, "gone"}, {"dealer-k", KindLead, "success"}} {
		if got := testutil.ToFloat64(d.m.Deliveries.WithLabelValues(c.partner, c.kind, c.result)); got != 1 {
			t.Errorf("deliveries %v = %v", c, got)
		}
	}
	if got := testutil.ToFloat64(d.m.Retries.WithLabelValues("dealer-sp")); got != 2 {
		t.Errorf("dealer-sp retries %v", got)
	}
	if got := testutil.ToFloat64(d.m.Attempts.WithLabelValues("dealer-sp", "retry")); got != 2 {
		t.Errorf("dealer-sp retry attempts %v", got)
	}
	waitFor(t, "the queues measured empty", func() bool {
		return testutil.ToFloat64(d.m.QueueDepth.WithLabelValues("dealer-paced")) == 0 &&
			testutil.ToFloat64(d.m.QueueDepth.WithLabelValues("dealer-sp")) == 0
	})
}

// startChild runs lead delivery for dealer-r in a child process.
func startChild(t *testing.T, brokers []string, url string) (*exec.Cmd, chan struct{}) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envChildBrokers+"="+strings.Join(brokers, ","), envChildURL+"="+url)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-exited })
	return cmd, exited
}

// TestRestartMidRetry kills (SIGKILL) the process delivering a lead while
// it retries a dealer that answers 500, and starts another: the dealer
// gets the lead with the same webhook-id, and nothing is lost (a lead
// routed while no process ran is delivered too).
func TestRestartMidRetry(t *testing.T) {
	brokers, cl := newKafka(t)
	dealer := newDealer(t, status(500))
	if err := EnsureLeadTopics(context.Background(), cl, -1, restartPartners(dealer.srv.URL)); err != nil {
		t.Fatal(err)
	}
	produceOutcomes(t, cl, routed("demo", "R1", "dealer-r", 3))
	cmd, exited := startChild(t, brokers, dealer.srv.URL)
	waitFor(t, "the first process retrying", func() bool { return len(dealer.received()) >= 3 })
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-exited
	before := len(dealer.received())
	for _, o := range outcomes(t, brokers, 1) {
		if o.Type != schemas.OutcomeRouted {
			t.Fatalf("an outcome %s before any delivery ended", o.Type)
		}
	}
	dealer.setScript(status(500), status(200)) // one more 500, then success
	produceOutcomes(t, cl, routed("demo", "R2", "dealer-r", 1))
	startChild(t, brokers, dealer.srv.URL)

	var done []schemas.LeadOutcome
	waitFor(t, "both leads delivered", func() bool {
		done = done[:0]
		for _, o := range outcomes(t, brokers, 2) {
			if o.Type == schemas.OutcomeDistributed {
				done = append(done, o)
			}
		}
		return len(done) >= 2
	})
	leads := map[string]bool{}
	for _, o := range done {
		if (o.LeadID == "R1" && o.Attempt != 3) || (o.LeadID == "R2" && o.Attempt != 1) || !o.Delivery.OK {
			t.Fatalf("outcome %+v", o)
		}
		leads[o.LeadID] = true
	}
	if !leads["R1"] || !leads["R2"] {
		t.Fatalf("delivered: %v", leads)
	}
	got := dealer.received()
	if len(got) <= before {
		t.Fatal("the restarted process sent nothing")
	}
	for i, r := range got {
		if i < before && r.id != "R1.3.1735725600000" {
			t.Fatalf("request %d before the kill: %s", i, r.id)
		}
		if r.id != "R1.3.1735725600000" && r.id != "R2.1.1735725600000" {
			t.Fatalf("request %d: webhook-id %s", i, r.id)
		}
	}
	if got[before].id != "R1.3.1735725600000" {
		t.Fatalf("after the restart the first request is %s: R1 comes first, with its webhook-id", got[before].id)
	}
}
