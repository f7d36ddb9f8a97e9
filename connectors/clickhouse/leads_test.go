package clickhouse

import (
	"context"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rolodex/rolodex/schemas"
)

// leadScenario is a hand-built day of lead routing: tenant t1 with two
// partners, dealer-a and dealer-b, and one lead of tenant t2. Every
// outcome is what the routing stage (decisions, feedback) or the delivery
// stage (deliveries) writes to rolodex.routing.outcomes.
//
// On 2026-11-02 (UTC), tenant t1:
//
//	L1  a routed 10:00, distributed, accepted 10:02             (a: 120 s)
//	L2  a routed 10:10, distributed, rejected 10:20
//	    b routed 10:20 (rejected), distributed, accepted 10:50  (b: 1800 s)
//	L3  b routed 11:00, distributed; its SLA passes:
//	    a routed 11:30 (sla), distributed, accepted 11:31       (a: 60 s)
//	L4  a routed 12:00, delivery failed 12:01 (410):
//	    b routed 12:01 (delivery_failed), distributed, no answer
//	L5  a routed 13:00, distributed, accepted 13:05             (a: 300 s)
//	L6  b routed 14:00, distributed, accepted 14:10             (b: 600 s)
//	L7  unrouted 15:00 (no_match): no partner, in no row
//	L8  b routed 16:00, distributed; SLA passes with no re-route left:
//	    unrouted 16:30 (sla, sla_exhausted)
//	L10 a routed 23:50, distributed, accepted 00:10 the next day (a: 1200 s)
//
// On 2026-11-03: L9 a routed 09:00, distributed, accepted 09:01:30 (a: 90 s).
// Tenant t2 on 2026-11-02: L1 (the same id as t1's) routed to dealer-a
// 09:00, nothing since.
//
// By hand, per day and partner (routed, delivered, delivery_failed,
// accepted, rejected, rerouted, sla_misses, median_accept_seconds):
//
//	11-02 t1 a: attempts L1#1 L2#1 L3#2 L4#1 L5#1 L10#1 = 6; delivered all
//	  but L4#1 = 5; failed L4#1 = 1; accepted L1 L3#2 L5 L10 = 4; rejected
//	  L2#1 = 1; re-routed away L2#1 L4#1 = 2; SLA misses 0; accept times
//	  60 120 300 1200: median (120 + 300) / 2 = 210.
//	11-02 t1 b: L2#2 L3#1 L4#2 L6#1 L8#1 = 5; delivered 5; failed 0;
//	  accepted L2#2 L6 = 2; rejected 0; re-routed away L3#1 L8#1 = 2 (the
//	  unrouted sla_exhausted is a later decision too); SLA misses L3#1
//	  L8#1 = 2; accept times 600 1800: median 1200.
//	11-02 t2 a: 1 routed, nothing else, median 0.
//	11-03 t1 a: 1, 1, 0, 1, 0, 0, 0, median 90.
func leadScenario() []schemas.LeadOutcome {
	at := func(day, h, m, s int) int64 { return time.Date(2026, 11, day, h, m, s, 0, time.UTC).UnixMilli() }
	var out []schemas.LeadOutcome
	add := func(o schemas.LeadOutcome) {
		if o.Tenant == "" {
			o.Tenant = "t1"
		}
		out = append(out, o)
	}
	routed := func(lead string, attempt int, partner, cause string, ms int64) {
		add(schemas.LeadOutcome{Type: schemas.OutcomeRouted, LeadID: lead, Attempt: attempt, At: ms, Partner: partner,
			Rule: "sp", RuleVersion: 3, Cause: cause, Lead: &schemas.RoutingLead{ID: lead, Type: "lead.created"}})
	}
	delivered := func(lead string, attempt int, partner string, ms int64) {
		add(schemas.LeadOutcome{Type: schemas.OutcomeDistributed, LeadID: lead, Attempt: attempt, At: ms, Partner: partner,
			Delivery: &schemas.LeadDelivery{LeadID: lead, Partner: partner, Attempt: attempt, OK: true, Status: 200, Tries: 1}})
	}
	answer := func(typ, lead string, attempt int, partner string, ms int64) {
		add(schemas.LeadOutcome{Type: typ, LeadID: lead, Attempt: attempt, At: ms, Partner: partner})
	}
	routed("L1", 1, "dealer-a", "lead", at(2, 10, 0, 0))
	delivered("L1", 1, "dealer-a", at(2, 10, 0, 5))
	answer(schemas.OutcomeAccepted, "L1", 1, "dealer-a", at(2, 10, 2, 0))

	routed("L2", 1, "dealer-a", "lead", at(2, 10, 10, 0))
	delivered("L2", 1, "dealer-a", at(2, 10, 10, 1))
	answer(schemas.OutcomeRejected, "L2", 1, "dealer-a", at(2, 10, 20, 0))
	routed("L2", 2, "dealer-b", "rejected", at(2, 10, 20, 0))
	delivered("L2", 2, "dealer-b", at(2, 10, 20, 2))
	answer(schemas.OutcomeAccepted, "L2", 2, "dealer-b", at(2, 10, 50, 0))

	routed("L3", 1, "dealer-b", "lead", at(2, 11, 0, 0))
	delivered("L3", 1, "dealer-b", at(2, 11, 0, 1))
	routed("L3", 2, "dealer-a", "sla", at(2, 11, 30, 0))
	delivered("L3", 2, "dealer-a", at(2, 11, 30, 1))
	answer(schemas.OutcomeAccepted, "L3", 2, "dealer-a", at(2, 11, 31, 0))

	routed("L4", 1, "dealer-a", "lead", at(2, 12, 0, 0))
	add(schemas.LeadOutcome{Type: schemas.OutcomeDeliveryFailed, LeadID: "L4", Attempt: 1, At: at(2, 12, 1, 0), Partner: "dealer-a",
		Delivery: &schemas.LeadDelivery{LeadID: "L4", Partner: "dealer-a", Attempt: 1, Status: 410, Tries: 1, Error: "410 Gone"}})
	routed("L4", 2, "dealer-b", "delivery_failed", at(2, 12, 1, 0))
	delivered("L4", 2, "dealer-b", at(2, 12, 1, 3))

	routed("L5", 1, "dealer-a", "lead", at(2, 13, 0, 0))
	delivered("L5", 1, "dealer-a", at(2, 13, 0, 1))
	answer(schemas.OutcomeAccepted, "L5", 1, "dealer-a", at(2, 13, 5, 0))

	routed("L6", 1, "dealer-b", "lead", at(2, 14, 0, 0))
	delivered("L6", 1, "dealer-b", at(2, 14, 0, 1))
	answer(schemas.OutcomeAccepted, "L6", 1, "dealer-b", at(2, 14, 10, 0))

	add(schemas.LeadOutcome{Type: schemas.OutcomeUnrouted, LeadID: "L7", Attempt: 1, At: at(2, 15, 0, 0), Cause: "lead", Reason: "no_match"})

	routed("L8", 1, "dealer-b", "lead", at(2, 16, 0, 0))
	delivered("L8", 1, "dealer-b", at(2, 16, 0, 1))
	add(schemas.LeadOutcome{Type: schemas.OutcomeUnrouted, LeadID: "L8", Attempt: 2, At: at(2, 16, 30, 0), Cause: "sla", Reason: "sla_exhausted"})
	// A follow-up forwarded to the holder: read, kept in no table.
	add(schemas.LeadOutcome{Type: schemas.OutcomeForwarded, LeadID: "L6", Attempt: 1, At: at(2, 15, 0, 0), Partner: "dealer-b",
		FollowUp: &schemas.LeadFollowUp{LeadID: "L6", EventID: "f1", Type: "opportunity.updated"}})

	routed("L10", 1, "dealer-a", "lead", at(2, 23, 50, 0))
	delivered("L10", 1, "dealer-a", at(2, 23, 50, 1))
	answer(schemas.OutcomeAccepted, "L10", 1, "dealer-a", at(3, 0, 10, 0))

	routed("L9", 1, "dealer-a", "lead", at(3, 9, 0, 0))
	delivered("L9", 1, "dealer-a", at(3, 9, 0, 1))
	answer(schemas.OutcomeAccepted, "L9", 1, "dealer-a", at(3, 9, 1, 30))

	add(schemas.LeadOutcome{Type: schemas.OutcomeRouted, Tenant: "t2", LeadID: "L1", Attempt: 1, At: at(2, 9, 0, 0), Partner: "dealer-a", Rule: "all", RuleVersion: 1, Cause: "lead"})
	return out
}

// leadScenarioReport is report_leads_by_partner of leadScenario, computed
// by hand (leadScenario's comment).
var leadScenarioReport = [][]string{
	{"2026-11-02", "t1", "dealer-a", "6", "5", "1", "4", "1", "2", "0", "210"},
	{"2026-11-02", "t1", "dealer-b", "5", "5", "0", "2", "0", "2", "2", "1200"},
	{"2026-11-02", "t2", "dealer-a", "1", "0", "0", "0", "0", "0", "0", "0"},
	{"2026-11-03", "t1", "dealer-a", "1", "1", "0", "1", "0", "0", "0", "90"},
}

var leadReportColumns = "day,tenant,partner,routed,delivered,delivery_failed,accepted,rejected,rerouted,sla_misses,median_accept_seconds"

// leadRows decodes outcomes as the sink does, as records at offsets from
// 0 on partition 0.
func leadRows(t testing.TB, outcomes []schemas.LeadOutcome) *LeadOutcomeRows {
	t.Helper()
	var rows LeadOutcomeRows
	decodeAsSink(t, outcomes, func(o schemas.LeadOutcome) string { return o.LeadID }, DecodeLeadOutcome, rows.Add)
	return &rows
}

// insertLeads writes rows into the three tables.
func insertLeads(t testing.TB, ctx context.Context, conn driver.Conn, db string, rows *LeadOutcomeRows) {
	t.Helper()
	for _, r := range []*LeadRows{&rows.Decisions, &rows.Deliveries, &rows.Feedback} {
		if r.Len() == 0 {
			continue
		}
		if err := r.Insert(ctx, conn, db); err != nil {
			t.Fatal(err)
		}
	}
}

func TestDecodeLeadOutcome(t *testing.T) {
	tests := []struct {
		name  string
		value string
		key   string
		want  *LeadOutcomeRow
		err   string
	}{
		{"routed", `{"type":"lead.routed","tenant":"t1","lead_id":"L1","attempt":2,"at":1793613600123,"partner":"dealer-a","rule":"sp","rule_version":4,"cause":"rejected","lead":{"id":"L1"}}`, "L1",
			&LeadOutcomeRow{Table: tableRoutingDecisions, Tenant: "t1", LeadID: "L1", Type: "lead.routed", Attempt: 2, At: time.Unix(1793613600, 0).UTC(), AtMS: 1793613600123,
				Cause: "rejected", Rule: "sp", RuleVersion: 4, Partner: "dealer-a", Partition: 3, Offset: 7}, ""},
		{"unrouted, lead id from the key", `{"type":"lead.unrouted","tenant":"t1","attempt":1,"at":1000,"cause":"lead","reason":"no_match"}`, "L2",
			&LeadOutcomeRow{Table: tableRoutingDecisions, Tenant: "t1", LeadID: "L2", Type: "lead.unrouted", Attempt: 1, At: time.Unix(1, 0).UTC(), AtMS: 1000,
				Cause: "lead", Reason: "no_match", Partition: 3, Offset: 7}, ""},
		{"accepted", `{"type":"lead.accepted","tenant":"t1","lead_id":"L1","attempt":1,"at":2000,"partner":"dealer-a","reason":"ok"}`, "L1",
			&LeadOutcomeRow{Table: tableLeadFeedback, Tenant: "t1", LeadID: "L1", Type: "lead.accepted", Attempt: 1, At: time.Unix(2, 0).UTC(), AtMS: 2000,
				Partner: "dealer-a", Reason: "ok", Accepted: true, Partition: 3, Offset: 7}, ""},
		{"rejected", `{"type":"lead.rejected","tenant":"t1","lead_id":"L1","attempt":1,"at":2000,"partner":"dealer-a","reason":"duplicate"}`, "L1",
			&LeadOutcomeRow{Table: tableLeadFeedback, Tenant: "t1", LeadID: "L1", Type: "lead.rejected", Attempt: 1, At: time.Unix(2, 0).UTC(), AtMS: 2000,
				Partner: "dealer-a", Reason: "duplicate", Partition: 3, Offset: 7}, ""},
		{"distributed", `{"type":"lead.distributed","tenant":"t1","lead_id":"L1","attempt":1,"at":3000,"partner":"dealer-a","delivery":{"lead_id":"L1","partner":"dealer-a","attempt":1,"ok":true,"status":201,"tries":3}}`, "L1",
			&LeadOutcomeRow{Table: tableLeadDeliveries, Tenant: "t1", LeadID: "L1", Type: "lead.distributed", Attempt: 1, At: time.Unix(3, 0).UTC(), AtMS: 3000,
				Partner: "dealer-a", OK: true, Status: 201, Tries: 3, Partition: 3, Offset: 7}, ""},
		{"delivery failed, attempt and partner from the report", `{"type":"lead.delivery_failed","tenant":"t1","lead_id":"L1","at":3000,"delivery":{"lead_id":"L1","partner":"dealer-b","attempt":2,"status":410,"tries":1,"error":"410 Gone"}}`, "L1",
			&LeadOutcomeRow{Table: tableLeadDeliveries, Tenant: "t1", LeadID: "L1", Type: "lead.delivery_failed", Attempt: 2, At: time.Unix(3, 0).UTC(), AtMS: 3000,
				Partner: "dealer-b", Status: 410, Tries: 1, Error: "410 Gone", Partition: 3, Offset: 7}, ""},
		{"forwarded: no table", `{"type":"lead.forwarded","tenant":"t1","lead_id":"L1","attempt":1,"at":3000,"partner":"dealer-a"}`, "L1",
			&LeadOutcomeRow{Tenant: "t1", LeadID: "L1", Type: "lead.forwarded", At: time.Unix(3, 0).UTC(), AtMS: 3000, Partner: "dealer-a", Partition: 3, Offset: 7}, ""},
		{"not json", `{"type":`, "L1", nil, "lead outcome: unexpected end of JSON input"},
		{"no lead id", `{"type":"lead.routed","attempt":1}`, "", nil, `lead outcome "lead.routed": no id (lead_id)`},
		{"unknown type", `{"type":"lead.lost","lead_id":"L1","attempt":1}`, "L1", nil, `lead outcome of lead L1: unknown type "lead.lost"`},
		{"no attempt", `{"type":"lead.accepted","lead_id":"L1"}`, "L1", nil, "lead outcome lead.accepted of lead L1: attempt 0, want at least 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DecodeLeadOutcome([]byte(tt.value), tt.key, 3, 7)
			checkDecoded(t, got, err, tt.want, tt.err)
		})
	}
}

// A batch keeps each outcome once, each in its table; lead.forwarded in
// none.
func TestLeadOutcomeRowsDedupe(t *testing.T) {
	sc := leadScenario()
	rows := leadRows(t, append(append([]schemas.LeadOutcome{}, sc...), sc...))
	var decisions, deliveries, feedback int
	for _, o := range sc {
		switch o.Type {
		case schemas.OutcomeRouted, schemas.OutcomeUnrouted:
			decisions++
		case schemas.OutcomeDistributed, schemas.OutcomeDeliveryFailed:
			deliveries++
		case schemas.OutcomeAccepted, schemas.OutcomeRejected:
			feedback++
		}
	}
	if rows.Decisions.Len() != decisions || rows.Deliveries.Len() != deliveries || rows.Feedback.Len() != feedback {
		t.Fatalf("rows %d, %d, %d; want %d, %d, %d", rows.Decisions.Len(), rows.Deliveries.Len(), rows.Feedback.Len(), decisions, deliveries, feedback)
	}
	// The same lead id again after the retention (another instant) is
	// another outcome.
	again := sc[0]
	again.At += 40 * 24 * 3600 * 1000
	if r := leadRows(t, []schemas.LeadOutcome{sc[0], again}); r.Decisions.Len() != 2 {
		t.Fatalf("a lead id used again later: %d decisions, want 2", r.Decisions.Len())
	}
}

// report_leads_by_partner on the hand-built scenario equals the numbers
// computed by hand; every record written three times (two copies in one
// INSERT of a later batch, merges stopped so that FINAL and the view do
// the collapsing) counts once; --since, --until and --tenant.
func TestLeadsByPartnerView(t *testing.T) {
	conn, db := testDB(t)
	for _, table := range []string{tableRoutingDecisions, tableLeadDeliveries, tableLeadFeedback} {
		stopMerges(t, conn, db, table)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	sc := leadScenario()
	r, ok := ReportByName("leads")
	if !ok || r.View != "report_leads_by_partner" {
		t.Fatalf("report leads: %+v, %v", r, ok)
	}
	run := func(f ReportFilter) [][]string {
		t.Helper()
		res, err := RunReportFilter(ctx, conn, db, r, f)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Join(res.Columns, ",") != leadReportColumns {
			t.Fatalf("columns %v", res.Columns)
		}
		if res.Types[0] != "Date" || res.Types[3] != "UInt64" || res.Types[10] != "Float64" {
			t.Fatalf("types %v", res.Types)
		}
		return res.Rows
	}
	if got := run(ReportFilter{}); len(got) != 0 {
		t.Fatalf("empty tables: %v", got)
	}
	insertLeads(t, ctx, conn, db, leadRows(t, sc))
	if got := run(ReportFilter{}); !reflect.DeepEqual(got, leadScenarioReport) {
		t.Fatalf("report leads:\n got %v\nwant %v", got, leadScenarioReport)
	}
	// The same records again, in reverse order, twice in one INSERT (a
	// batch Add does not dedupe: the raw rows hold three copies).
	var again LeadOutcomeRows
	for i := len(sc) - 1; i >= 0; i-- {
		for range 2 {
			row := leadRows(t, sc[i:i+1])
			again.Decisions.rows = append(again.Decisions.rows, row.Decisions.rows...)
			again.Deliveries.rows = append(again.Deliveries.rows, row.Deliveries.rows...)
			again.Feedback.rows = append(again.Feedback.rows, row.Feedback.rows...)
		}
	}
	again.Decisions.table, again.Deliveries.table, again.Feedback.table = tableRoutingDecisions, tableLeadDeliveries, tableLeadFeedback
	insertLeads(t, ctx, conn, db, &again)
	if n, want := count(t, conn, "SELECT count() FROM "+db+".routing_decisions"), uint64(3*leadRows(t, sc).Decisions.Len()); n != want {
		t.Fatalf("routing_decisions holds %d raw rows, want %d (three copies of each)", n, want)
	}
	if n, want := count(t, conn, "SELECT count() FROM "+db+".lead_feedback FINAL"), uint64(leadRows(t, sc).Feedback.Len()); n != want {
		t.Fatalf("lead_feedback FINAL holds %d rows, want %d", n, want)
	}
	if got := run(ReportFilter{}); !reflect.DeepEqual(got, leadScenarioReport) {
		t.Fatalf("report leads after the copies:\n got %v\nwant %v", got, leadScenarioReport)
	}
	day := func(d int) time.Time { return time.Date(2026, 11, d, 0, 0, 0, 0, time.UTC) }
	for _, tt := range []struct {
		name string
		f    ReportFilter
		want [][]string
	}{
		{"since 11-03", ReportFilter{Since: day(3)}, leadScenarioReport[3:]},
		{"until 11-02", ReportFilter{Until: day(2)}, leadScenarioReport[:3]},
		{"since and until 11-02, t1", ReportFilter{Since: day(2), Until: day(2), Tenant: "t1"}, leadScenarioReport[:2]},
		{"t2", ReportFilter{Tenant: "t2"}, leadScenarioReport[2:3]},
		{"until 11-01", ReportFilter{Until: day(1)}, nil},
	} {
		if got := run(tt.f); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s:\n got %v\nwant %v", tt.name, got, tt.want)
		}
	}
}

// The sink writes every outcome type of rolodex.routing.outcomes to its
// table, each record produced twice (and the whole topic read by a second
// sink group: a crash that lost every commit), forwarded and undecodable
// records left out; the tables read through FINAL hold each outcome once
// with its fields, and the report equals the hand-computed one.
func TestSinkLeadOutcomes(t *testing.T) {
	conn, db := testDB(t)
	cluster := newCluster(t, 3)
	brokers := cluster.ListenAddrs()
	p := newProducer(t, brokers)
	sc := leadScenario()
	for range 2 {
		for _, o := range sc {
			v, err := json.Marshal(o)
			if err != nil {
				t.Fatal(err)
			}
			if err := p.cl.ProduceSync(context.Background(), &kgo.Record{Topic: schemas.TopicRoutingOutcomes, Key: []byte(o.LeadID), Value: v}).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
	}
	p.raw(t, schemas.TopicRoutingOutcomes, "not json", `{"type":"lead.routed","lead_id":"L1"}`)
	want := leadRows(t, sc)
	for _, group := range []string{"", "rolodex-sink-clickhouse-again"} {
		cfg := testSinkConfig(t, brokers, db)
		if group != "" {
			cfg.Group = group
		}
		s, stop := runSink(t, cfg)
		waitFor(t, 30*time.Second, "every record in ClickHouse and committed", func() bool { return caughtUp(t, brokers, cfg.Group) })
		stop()
		if got := testutil.ToFloat64(s.Metrics().Undecodable.WithLabelValues(schemas.TopicRoutingOutcomes)); got != 2 {
			t.Errorf("undecodable outcomes: %v, want 2", got)
		}
		if got := testutil.ToFloat64(s.Metrics().RowsWritten.WithLabelValues(tableRoutingDecisions)); got < float64(want.Decisions.Len()) {
			t.Errorf("routing_decisions rows written: %v, want at least %d", got, want.Decisions.Len())
		}
	}
	check := func(table, columns, order string, rows *LeadRows, text func(*LeadOutcomeRow) []string) {
		t.Helper()
		var w [][]string
		for _, o := range rows.Rows() {
			w = append(w, text(o))
		}
		sortRows(w, 3) // attempts have one digit: text order is number order
		checkQuery(t, conn, "SELECT "+columns+" FROM "+db+"."+table+" FINAL ORDER BY "+order, w)
	}
	ms := func(v int64) string { return time.UnixMilli(v).UTC().Format("2006-01-02 15:04:05") }
	itoa := func(v any) string { b, _ := json.Marshal(v); return string(b) }
	check(tableRoutingDecisions, "tenant, lead_id, toString(attempt), type, cause, toString(at), toString(at_ms), rule, toString(rule_version), partner, reason",
		"tenant, lead_id, attempt", &want.Decisions, func(o *LeadOutcomeRow) []string {
			return []string{o.Tenant, o.LeadID, itoa(o.Attempt), o.Type, o.Cause, ms(o.AtMS), itoa(o.AtMS), o.Rule, itoa(o.RuleVersion), o.Partner, o.Reason}
		})
	check(tableLeadDeliveries, "tenant, lead_id, toString(attempt), partner, type, toString(ok), toString(status), toString(tries), error, toString(at_ms)",
		"tenant, lead_id, attempt", &want.Deliveries, func(o *LeadOutcomeRow) []string {
			ok := "0"
			if o.OK {
				ok = "1"
			}
			return []string{o.Tenant, o.LeadID, itoa(o.Attempt), o.Partner, o.Type, ok, itoa(o.Status), itoa(o.Tries), o.Error, itoa(o.AtMS)}
		})
	check(tableLeadFeedback, "tenant, lead_id, toString(attempt), partner, type, toString(accepted), reason, toString(at_ms)",
		"tenant, lead_id, attempt", &want.Feedback, func(o *LeadOutcomeRow) []string {
			acc := "0"
			if o.Accepted {
				acc = "1"
			}
			return []string{o.Tenant, o.LeadID, itoa(o.Attempt), o.Partner, o.Type, acc, o.Reason, itoa(o.AtMS)}
		})
	// Each type reached its table: the hand-built scenario has them all.
	for typ, table := range map[string]string{
		schemas.OutcomeRouted: tableRoutingDecisions, schemas.OutcomeUnrouted: tableRoutingDecisions,
		schemas.OutcomeDistributed: tableLeadDeliveries, schemas.OutcomeDeliveryFailed: tableLeadDeliveries,
		schemas.OutcomeAccepted: tableLeadFeedback, schemas.OutcomeRejected: tableLeadFeedback,
	} {
		if n := count(t, conn, "SELECT count() FROM "+db+"."+table+" FINAL WHERE type = '"+typ+"'"); n == 0 {
			t.Errorf("no %s in %s", typ, table)
		}
	}
	for _, table := range []string{tableRoutingDecisions, tableLeadDeliveries, tableLeadFeedback} {
		if n := count(t, conn, "SELECT count() FROM "+db+"."+table+" FINAL WHERE type = 'lead.forwarded'"); n != 0 {
			t.Errorf("%d lead.forwarded rows in %s", n, table)
		}
	}
	checkQuery(t, conn, "SELECT * FROM "+db+".report_leads_by_partner ORDER BY day, tenant, partner", leadScenarioReport)
}

// The Grafana panel "Leads by partner" (deploy/grafana/dashboards/
// reports.json) runs on the scenario, with the time range's macros as the
// ClickHouse plugin expands them, and shows the report's rows of the
// range, latest day first.
func TestLeadsGrafanaPanel(t *testing.T) {
	sql := reportsPanelSQL(t, "Leads by partner", "rolodex.report_leads_by_partner")
	conn, db := testDB(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	insertLeads(t, ctx, conn, db, leadRows(t, leadScenario()))
	q := panelQuery(sql, db, "2026-11-02 00:00:00", "2026-11-03 23:59:59")
	want := [][]string{leadScenarioReport[3], leadScenarioReport[0], leadScenarioReport[1], leadScenarioReport[2]}
	checkQuery(t, conn, q, want)
}
