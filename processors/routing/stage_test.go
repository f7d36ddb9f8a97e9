package routing

import (
	"context"
	"encoding/json"
	"io"
	"log"
	"log/slog"
	"sort"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lovoo/goka"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rolodex/rolodex/internal/kafkaclient"
	"github.com/rolodex/rolodex/internal/kafkatest"
	"github.com/rolodex/rolodex/reference"
	"github.com/rolodex/rolodex/schemas"
)

// kafkaEnv is a kfake cluster (over TCP) with routing's topics, a producer
// with the goka-compatible partitioner, and readers.
type kafkaEnv struct {
	t       *testing.T
	brokers []string
	prod    *kgo.Client
}

func newKafkaEnv(t *testing.T) *kafkaEnv {
	t.Helper()
	brokers := kafkatest.Cluster(t, 3, schemas.TopicEvents)
	if err := EnsureTopics(context.Background(), kafkatest.Client(t, brokers), 1); err != nil {
		t.Fatal(err)
	}
	prod, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.RecordPartitioner(kafkaclient.Partitioner()), kgo.ProducerLinger(0))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(prod.Close)
	return &kafkaEnv{t: t, brokers: brokers, prod: prod}
}

func (k *kafkaEnv) produce(topic, key string, value []byte, ts time.Time) {
	k.t.Helper()
	if err := k.prod.ProduceSync(context.Background(), &kgo.Record{Topic: topic, Key: []byte(key), Value: value, Timestamp: ts}).FirstErr(); err != nil {
		k.t.Fatal(err)
	}
}

func (k *kafkaEnv) produceJSON(topic, key string, v any, ts time.Time) {
	k.t.Helper()
	k.produce(topic, key, kafkatest.JSON(k.t, v), ts)
}

// readAll reads every record of topic.
func (k *kafkaEnv) readAll(topic string) []*kgo.Record {
	k.t.Helper()
	return kafkatest.ReadAll(k.t, k.brokers, topic)
}

// table reads the routing table: the latest value per tenant.
func (k *kafkaEnv) table() map[string]*State {
	k.t.Helper()
	out := map[string]*State{}
	for _, rec := range k.readAll(string(goka.GroupTable(schemas.GroupRouting))) {
		var s State
		if err := json.Unmarshal(rec.Value, &s); err != nil {
			k.t.Fatal(err)
		}
		out[string(rec.Key)] = &s
	}
	return out
}

// waitTable waits until ok holds of the table.
func (k *kafkaEnv) waitTable(what string, ok func(map[string]*State) bool) {
	k.t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !ok(k.table()) {
		if time.Now().After(deadline) {
			k.t.Fatalf("%s: not within a minute", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// outcomes reads rolodex.routing.outcomes: every record, checked to be
// keyed by its lead id, and the deduped set by outcomeKey (a record
// written twice by a replay must be the same record).
func (k *kafkaEnv) outcomes() (all int, set map[string]schemas.LeadOutcome) {
	k.t.Helper()
	set = map[string]schemas.LeadOutcome{}
	raw := map[string]string{}
	for _, rec := range k.readAll(schemas.TopicRoutingOutcomes) {
		var o schemas.LeadOutcome
		if err := json.Unmarshal(rec.Value, &o); err != nil {
			k.t.Fatal(err)
		}
		if string(rec.Key) != o.LeadID {
			k.t.Fatalf("outcome keyed %q for lead %q", rec.Key, o.LeadID)
		}
		key := outcomeKey(o)
		b, _ := json.Marshal(o)
		if prev, ok := raw[key]; ok && prev != string(b) {
			k.t.Fatalf("outcome %s written twice, differently:\n%s\n%s", key, prev, b)
		}
		raw[key] = string(b)
		set[key] = o
		all++
	}
	return all, set
}

// waitOutcomes waits until the outcomes topic holds exactly want (deduped).
func (k *kafkaEnv) waitOutcomes(what string, want []schemas.LeadOutcome, logs func() string) int {
	k.t.Helper()
	w := map[string]string{}
	for _, o := range want {
		b, _ := json.Marshal(o)
		w[outcomeKey(o)] = string(b)
	}
	deadline := time.Now().Add(3 * time.Minute)
	for {
		n, got := k.outcomes()
		g := map[string]string{}
		for key, o := range got {
			b, _ := json.Marshal(o)
			g[key] = string(b)
		}
		var missing, extra, differ []string
		for key, v := range w {
			switch gv, ok := g[key]; {
			case !ok:
				missing = append(missing, key)
			case gv != v:
				differ = append(differ, key+":\n got "+gv+"\nwant "+v)
			}
		}
		for key := range g {
			if _, ok := w[key]; !ok {
				extra = append(extra, key)
			}
		}
		if len(missing)+len(extra)+len(differ) == 0 {
			return n
		}
		if len(extra)+len(differ) > 0 || time.Now().After(deadline) {
			sort.Strings(missing)
			sort.Strings(extra)
			l := ""
			if logs != nil {
				l = "\nlog:\n" + logs()
			}
			k.t.Fatalf("%s: %d outcomes, want %d; missing %v\nextra %v\ndiffering %v%s", what, len(g), len(w), missing, extra, differ, l)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// feedbackEvent is a partner's lead.accepted or lead.rejected as ingest
// writes it to rolodex.events.
func feedbackEvent(tenant, partner, leadID string, accepted bool, at time.Time) *schemas.Event {
	typ := schemas.EventLeadRejected
	if accepted {
		typ = schemas.EventLeadAccepted
	}
	return &schemas.Event{Tenant: tenant, ID: "fb-" + leadID + "-" + strconv.FormatInt(at.UnixMilli(), 10), Type: typ, Time: at,
		Source: "test", Partner: partner, Identifiers: []schemas.Identifier{{Type: schemas.IDEmail, Value: "crm@" + partner + ".example"}},
		Properties: map[string]string{PropLeadID: strconv.Quote(leadID)}, ReceivedAt: at}
}

// Lead routing on Kafka (kfake over TCP), in one process on a controllable
// clock: leads produced to rolodex.routing.input are routed by round
// robin; the partners' feedback comes as events on rolodex.events through
// the re-key step (an acceptance closes a lead, a rejection re-routes it
// away from the partner); a lead nobody accepts is re-routed when its
// rule's SLA passes (the scheduler's tick, no new message) and, after
// max_reroutes, unrouted with sla_exhausted (the instance restarted in
// between: the wakes come back by its visit). Every outcome equals the
// reference router's, fed the same records.
func TestSLAReroutesOnKafka(t *testing.T) {
	k := newKafkaEnv(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	base := time.Now().Truncate(time.Second)
	var clock atomic.Int64
	clock.Store(base.UnixMilli())
	rules := &schemas.RoutingRules{Tenant: tenant, Version: 1, Rules: []schemas.RoutingRule{{
		ID: "sp", Condition: `lead.properties.region == "SP"`, Strategy: schemas.StrategyRoundRobin,
		Pool: []schemas.RoutingPoolEntry{{Partner: "d1"}, {Partner: "d2"}, {Partner: "d3"}},
		SLA:  "30m", MaxReroutes: 1,
	}}}
	k.produceJSON(schemas.TopicRoutingRules, tenant, rules, base)

	start := func() (stop func()) {
		rctx, rcancel := context.WithCancel(ctx)
		p, err := New(Config{Brokers: k.brokers, StorageDir: t.TempDir(), Tick: 20 * time.Millisecond,
			Now:    func() time.Time { return time.UnixMilli(clock.Load()) },
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, goka.WithLogger(log.New(io.Discard, "", 0)))
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- p.Run(rctx) }()
		return func() {
			rcancel()
			if err := <-done; err != nil {
				t.Errorf("run: %v", err)
			}
		}
	}
	stop := start()
	defer func() { stop() }()
	// The rules are another topic than the leads: wait until they are in
	// force, so that the order the reference sees is the stage's.
	k.waitTable("rules in force", func(m map[string]*State) bool { return m[tenant] != nil && m[tenant].Rules != nil })

	lead := func(id string, at time.Time) *schemas.RoutingLead {
		return &schemas.RoutingLead{ID: id, EventID: "e-" + id, Type: schemas.DefaultLeadType, Time: at.UnixMilli(),
			Properties: map[string]string{"region": `"SP"`}, Profile: &schemas.Profile{ID: "pr-" + id, Tenant: tenant}}
	}
	ms := func(d time.Duration) int64 { return base.Add(d).UnixMilli() }
	for i, id := range []string{"L1", "L2", "L3"} {
		at := base.Add(time.Duration(i) * time.Minute)
		k.produceJSON(schemas.TopicRoutingInput, tenant, &schemas.RoutingInput{Tenant: tenant, Lead: lead(id, at)}, at)
	}
	// The reference is fed the input topic's records as they are (the
	// feedback's timestamps are the re-key step's), then the ticks the
	// scheduler writes by the clock: one at a time, each at the earliest
	// SLA deadline of an open lead, while it is not after the clock.
	var ticks []int64
	reference := func() []schemas.LeadOutcome {
		ref := reference.NewRouter(tenant, nil, DefaultRetention)
		ref.Handle(reference.RouterMessage{At: base.UnixMilli(), Rules: rules})
		for _, rec := range k.readAll(schemas.TopicRoutingInput) {
			var in schemas.RoutingInput
			if err := json.Unmarshal(rec.Value, &in); err != nil {
				t.Fatal(err)
			}
			ref.Handle(reference.RouterMessage{At: rec.Timestamp.UnixMilli(), Lead: in.Lead, Feedback: in.Feedback, FollowUp: in.FollowUp})
		}
		ticks = nil
		for {
			wake := int64(0)
			for _, l := range ref.Leads {
				if l.Status == schemas.LeadRouted && l.Deadline > 0 && (wake == 0 || l.Deadline < wake) {
					wake = l.Deadline
				}
			}
			if wake == 0 || wake > clock.Load() {
				return ref.Outcomes
			}
			ticks = append(ticks, wake)
			ref.Handle(reference.RouterMessage{At: wake, Tick: true})
		}
	}
	want := reference()
	k.waitOutcomes("leads routed", want, nil)
	holder := map[string]string{}
	for _, o := range want {
		holder[o.LeadID] = o.Partner
	}
	if holder["L1"] != "d1" || holder["L2"] != "d2" || holder["L3"] != "d3" {
		t.Fatalf("round robin: %v", holder)
	}

	// d2 accepts L2; d3 rejects L3 (re-routed to d1, next in the round);
	// d1 says nothing about L1.
	for _, ev := range []*schemas.Event{feedbackEvent(tenant, "d2", "L2", true, base.Add(3*time.Minute)),
		feedbackEvent(tenant, "d3", "L3", false, base.Add(3*time.Minute))} {
		b, err := schemas.EncodeEvent(ev)
		if err != nil {
			t.Fatal(err)
		}
		k.produce(schemas.TopicEvents, ev.Key(), b, ev.Time)
	}
	deadline := time.Now().Add(time.Minute)
	for len(k.readAll(schemas.TopicRoutingInput)) < 5 {
		if time.Now().After(deadline) {
			t.Fatal("the re-key step did not write the feedback to rolodex.routing.input")
		}
		time.Sleep(100 * time.Millisecond)
	}
	want = reference()
	k.waitOutcomes("feedback", want, nil)
	k.waitTable("feedback handled", func(m map[string]*State) bool {
		return m[tenant] != nil && m[tenant].Leads["L2"].Status == schemas.LeadAccepted && len(m[tenant].Leads["L3"].History) == 2
	})

	// A restart before the deadlines, on a fresh storage directory (the
	// table comes back from Kafka): the new instance's scheduler is empty
	// until its visit registers the tenant's wake again.
	stop()
	stop = start()

	// 30 minutes on: L1's SLA passes (re-routed, cause sla, to d2: next
	// in the round and not tried); L3 was re-routed at the rejection, so
	// its deadline is later.
	clock.Store(ms(30*time.Minute + time.Second))
	want = reference()
	if len(ticks) != 1 || ticks[0] != ms(30*time.Minute) {
		t.Fatalf("ticks %v", ticks)
	}
	k.waitOutcomes("first SLA", want, nil)
	// Another 30: L3's deadline re-routes it (cause sla), L1's second
	// deadline exhausts its one re-route.
	clock.Store(ms(61 * time.Minute))
	want = reference()
	k.waitOutcomes("SLA", want, nil)
	var s *State
	k.waitTable("SLA handled", func(m map[string]*State) bool {
		s = m[tenant]
		return s != nil && s.Leads["L1"].Status == schemas.LeadUnrouted
	})
	l1 := s.Leads["L1"]
	var causes []string
	for _, d := range l1.History {
		causes = append(causes, d.Cause+":"+d.Partner+d.Unrouted)
	}
	if got := causes; len(got) != 3 || got[0] != "lead:d1" || got[1] != "sla:d2" || got[2] != "sla:"+schemas.UnroutedSLAExhausted {
		t.Fatalf("L1's history: %v", got)
	}
	if l1.Status != schemas.LeadUnrouted || l1.Reason != schemas.UnroutedSLAExhausted {
		t.Fatalf("L1: %+v", l1)
	}
	if s.Leads["L2"].Status != schemas.LeadAccepted {
		t.Fatalf("L2: %+v", s.Leads["L2"])
	}
	t.Logf("%d outcomes, ticks %v", len(want), ticks)
}
