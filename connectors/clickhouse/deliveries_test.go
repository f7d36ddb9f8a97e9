package clickhouse

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rolodex/rolodex/reference"
	"github.com/rolodex/rolodex/schemas"
)

// deliveryScenario is a hand-built day of fan-out deliveries: what the
// delivery stage writes to rolodex.fanout.reports. Tenant t1: s1 (bank-a,
// car-chosen, webhook), s2 (bank-b, car-chosen, Kafka), s3 (bank-a,
// test-drive, webhook); tenant t2: s9 (bank-a, car-chosen). On 2026-11-02
// (UTC) unless said:
//
//	W1  s1 attempt 1 success (120 ms), end success the same ms  delivered 120
//	W2  s1 attempts 1, 2 retry, 3 success (300 ms), end          delivered 300, retried
//	W3  s1 attempts 1, 2 retry, end exhausted the same ms        exhausted, retried
//	W4  s1 attempt 1 gone (410), end subscription.disabled       failed
//	W5  s1 end delivery.dropped (inactive), no attempt           dropped
//	W14 s1 attempt 1 retry, end delivery.dropped (blacklisted)  dropped
//	W6  s3 attempt 1 permanent (400), end delivery.failed        failed
//	W7  s2 end delivery.succeeded only (a Kafka write, 5 ms)     delivered 5
//	W8  s2 attempt 1 success only (a Kafka write, 7 ms)          delivered 7
//	W13 s2 end delivery.failed refused (Kafka refused it)       failed
//	W9  s1 attempt 1 retry 23:59:59, attempt 2 success (80 ms)
//	    and end 00:00:04 on 11-03                                11-03: delivered 80, retried
//	W10 s1 attempt 1 retry, nothing since                        in flight: no row
//	W11 s1 attempt 1 success (100 ms), end; posted again after a
//	    crash a minute later, success (90 ms), end               delivered 100 (the first)
//	W12 s1 attempt 1 retry, end exhausted; replayed 11-03 09:00:
//	    attempt 1 success (60 ms), end                           11-03: delivered 60
//	t2 W1 s9 attempt 1 success (40 ms), end                      delivered 40
//
// By hand (deliveries, delivered, retried, failed, exhausted, dropped,
// p50, p99; percentiles by nearest rank):
//
//	11-02 t1 bank-a car-chosen: W1 W2 W3 W4 W5 W11 W14 = 7; 3; W2 W3 = 2;
//	  1; 1; W5 W14 = 2; latencies 100 120 300: p50 the 2nd = 120, p99 the 3rd = 300.
//	11-02 t1 bank-a test-drive: 1, 0, 0, 1, 0, 0, 0, 0.
//	11-02 t1 bank-b car-chosen: 3, 2, 0, 1, 0, 0; 5 7: p50 5, p99 7.
//	11-02 t2 bank-a car-chosen: 1, 1, 0, 0, 0, 0, 40, 40.
//	11-03 t1 bank-a car-chosen: W9 W12 = 2, 2, 1, 0, 0, 0; 60 80: 60, 80.
func deliveryScenario() []schemas.FanoutReport {
	at := func(day, h, m, s, ms int) int64 {
		return time.Date(2026, 11, day, h, m, s, ms*1e6, time.UTC).UnixMilli()
	}
	subs := map[string][3]string{
		"s1": {"t1", "bank-a", "car-chosen"}, "s2": {"t1", "bank-b", "car-chosen"},
		"s3": {"t1", "bank-a", "test-drive"}, "s9": {"t2", "bank-a", "car-chosen"},
	}
	var out []schemas.FanoutReport
	rep := func(sub, wid, typ string, attempt, status int, result string, latency, ms int64) {
		s := subs[sub]
		r := schemas.FanoutReport{Type: typ, Tenant: s[0], Partner: s[1], Topic: s[2], Subscription: sub,
			WebhookID: sub + "." + wid, Attempt: attempt, Status: status, Result: result, LatencyMs: latency, At: ms}
		if result != schemas.ReportResultSuccess {
			r.Error = fmt.Sprintf("%s %d", result, status)
		}
		out = append(out, r)
	}
	const try, ok = schemas.ReportDeliveryAttempt, "delivery.succeeded"
	rep("s1", "W1", try, 1, 200, "success", 120, at(2, 10, 0, 0, 0))
	rep("s1", "W1", ok, 1, 200, "success", 0, at(2, 10, 0, 0, 0))

	rep("s1", "W2", try, 1, 503, "retry", 50, at(2, 10, 5, 0, 0))
	rep("s1", "W2", try, 2, 500, "retry", 60, at(2, 10, 5, 5, 0))
	rep("s1", "W2", try, 3, 200, "success", 300, at(2, 10, 10, 5, 0))
	rep("s1", "W2", ok, 3, 200, "success", 300, at(2, 10, 10, 5, 1))

	rep("s1", "W3", try, 1, 500, "retry", 10, at(2, 10, 20, 0, 0))
	rep("s1", "W3", try, 2, 0, "retry", 15000, at(2, 10, 20, 5, 0))
	rep("s1", "W3", schemas.ReportDeliveryExhausted, 2, 0, "exhausted", 0, at(2, 10, 20, 5, 0))

	rep("s1", "W4", try, 1, 410, "gone", 30, at(2, 11, 0, 0, 0))
	rep("s1", "W4", schemas.ReportSubscriptionDisabled, 1, 410, "gone", 0, at(2, 11, 0, 0, 2))

	rep("s1", "W5", "delivery.dropped", 0, 0, schemas.FanoutInactive, 0, at(2, 11, 1, 0, 0))

	rep("s1", "W14", try, 1, 500, "retry", 25, at(2, 11, 30, 0, 0))
	rep("s1", "W14", "delivery.dropped", 0, 0, schemas.FanoutBlacklisted, 0, at(2, 11, 30, 2, 0))

	rep("s3", "W6", try, 1, 400, "permanent", 20, at(2, 12, 0, 0, 0))
	rep("s3", "W6", "delivery.failed", 1, 400, "permanent", 0, at(2, 12, 0, 0, 0))

	rep("s2", "W7", ok, 1, 0, "success", 5, at(2, 12, 30, 0, 0))
	rep("s2", "W8", try, 1, 0, "success", 7, at(2, 12, 31, 0, 0))
	rep("s2", "W13", "delivery.failed", 1, 0, schemas.ReportResultRefused, 0, at(2, 12, 32, 0, 0))

	rep("s1", "W9", try, 1, 502, "retry", 70, at(2, 23, 59, 59, 0))
	rep("s1", "W9", try, 2, 200, "success", 80, at(3, 0, 0, 4, 0))
	rep("s1", "W9", ok, 2, 200, "success", 0, at(3, 0, 0, 4, 0))

	rep("s1", "W10", try, 1, 503, "retry", 40, at(2, 13, 0, 0, 0))

	rep("s1", "W11", try, 1, 200, "success", 100, at(2, 14, 0, 0, 0))
	rep("s1", "W11", ok, 1, 200, "success", 0, at(2, 14, 0, 0, 0))
	rep("s1", "W11", try, 1, 200, "success", 90, at(2, 14, 1, 0, 0))
	rep("s1", "W11", ok, 1, 200, "success", 0, at(2, 14, 1, 0, 0))

	rep("s1", "W12", try, 1, 503, "retry", 30, at(2, 15, 0, 0, 0))
	rep("s1", "W12", schemas.ReportDeliveryExhausted, 1, 503, "exhausted", 0, at(2, 15, 0, 10, 0))
	rep("s1", "W12", try, 1, 200, "success", 60, at(3, 9, 0, 0, 0))
	rep("s1", "W12", ok, 1, 200, "success", 0, at(3, 9, 0, 0, 0))

	rep("s9", "W1", try, 1, 200, "success", 40, at(2, 10, 0, 0, 0))
	rep("s9", "W1", ok, 1, 200, "success", 0, at(2, 10, 0, 0, 0))
	return out
}

// deliveryScenarioReport is report_deliveries of deliveryScenario,
// computed by hand (its comment).
var deliveryScenarioReport = [][]string{
	{"2026-11-02", "t1", "bank-a", "car-chosen", "7", "3", "2", "1", "1", "2", "120", "300"},
	{"2026-11-02", "t1", "bank-a", "test-drive", "1", "0", "0", "1", "0", "0", "0", "0"},
	{"2026-11-02", "t1", "bank-b", "car-chosen", "3", "2", "0", "1", "0", "0", "5", "7"},
	{"2026-11-02", "t2", "bank-a", "car-chosen", "1", "1", "0", "0", "0", "0", "40", "40"},
	{"2026-11-03", "t1", "bank-a", "car-chosen", "2", "2", "1", "0", "0", "0", "60", "80"},
}

const deliveryReportColumns = "day,tenant,partner,topic,deliveries,delivered,retried,failed,exhausted,dropped,p50_latency_ms,p99_latency_ms"

// genDeliveryReports makes the reports of n random deliveries over five
// subscriptions of two tenants and three days: Kafka writes (an end only,
// or an attempt only), webhook deliveries with up to four attempts ending
// in success, gone, permanent or exhausted, or still in flight, records
// dropped before any attempt, ends at the same millisecond as the last
// attempt, deliveries across midnight, and deliveries posted again later
// (a crash, a replay: the same webhook id, attempts from 1 again).
func genDeliveryReports(seed uint64, n int) []schemas.FanoutReport {
	rng := rand.New(rand.NewPCG(seed, 7))
	subs := [][4]string{
		{"s1", "t1", "bank-a", "car-chosen"}, {"s2", "t1", "bank-b", "car-chosen"}, {"s3", "t1", "bank-a", "test-drive"},
		{"s4", "t1", "bank-b", "test-drive"}, {"s9", "t2", "bank-a", "car-chosen"},
	}
	start := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	var out []schemas.FanoutReport
	for i := range n {
		s := subs[rng.IntN(len(subs))]
		wid := fmt.Sprintf("%s.e%d", s[0], i)
		rep := func(typ string, attempt, status int, result string, latency, ms int64) {
			out = append(out, schemas.FanoutReport{Type: typ, Tenant: s[1], Partner: s[2], Topic: s[3], Subscription: s[0],
				WebhookID: wid, Attempt: attempt, Status: status, Result: result, LatencyMs: latency, At: ms})
		}
		ms := start + rng.Int64N(3*24*3600*1000)
		if rng.IntN(8) == 0 { // just before a midnight
			ms = start + int64(1+rng.IntN(2))*24*3600*1000 - rng.Int64N(10_000)
		}
		runs := 1
		if rng.IntN(5) == 0 {
			runs = 2
		}
		for range runs {
			switch p := rng.IntN(10); {
			case p == 0:
				rep("delivery.succeeded", 1, 0, "success", rng.Int64N(50), ms)
			case p == 1:
				rep(schemas.ReportDeliveryAttempt, 1, 0, "success", rng.Int64N(50), ms)
			case p == 2 && rng.IntN(4) == 0:
				rep("delivery.failed", 1, 0, schemas.ReportResultRefused, 0, ms) // Kafka refused the record
			case p == 2:
				result := []string{schemas.FanoutInactive, schemas.FanoutNotAllowed, schemas.ReportResultExpired,
					schemas.FanoutBlacklisted}[rng.IntN(4)]
				rep("delivery.dropped", 0, 0, result, 0, ms)
			default:
				attempts := 1 + rng.IntN(4)
				last := []string{"success", "gone", "permanent", "retry", "retry"}[rng.IntN(5)]
				for a := 1; a <= attempts; a++ {
					result, status := "retry", 503
					if a == attempts {
						result, status = last, map[string]int{"success": 200, "gone": 410, "permanent": 400, "retry": 500}[last]
					}
					rep(schemas.ReportDeliveryAttempt, a, status, result, 1+rng.Int64N(2000), ms)
					if a < attempts {
						ms += rng.Int64N(40_000) // sometimes 0: the same ms
					}
				}
				if rng.IntN(6) == 0 {
					break // in flight, or its end not reported yet
				}
				if rng.IntN(2) == 0 {
					ms += 1 + rng.Int64N(50)
				}
				typ, result := map[string][2]string{
					"success": {"delivery.succeeded", "success"}, "gone": {schemas.ReportSubscriptionDisabled, "gone"},
					"permanent": {"delivery.failed", "permanent"}, "retry": {schemas.ReportDeliveryExhausted, "exhausted"},
				}[last][0], last
				if last == "retry" {
					result = "exhausted"
				}
				rep(typ, attempts, 0, result, rng.Int64N(3), ms)
			}
			ms += 1000 + rng.Int64N(24*3600*1000) // the next run, later
		}
	}
	return out
}

// deliveryRows decodes reports as the sink does, as records at offsets
// from 0 on partition 0.
func deliveryRows(t testing.TB, reports []schemas.FanoutReport) *DeliveryRows {
	t.Helper()
	var rows DeliveryRows
	decodeAsSink(t, reports, func(r schemas.FanoutReport) string { return r.Subscription }, DecodeFanoutReport, rows.Add)
	return &rows
}

func TestDecodeFanoutReport(t *testing.T) {
	at := time.Date(2026, 11, 2, 10, 0, 0, 0, time.UTC)
	ms := at.UnixMilli() + 123
	tests := []struct {
		name  string
		value string
		key   string
		want  *DeliveryRow
		err   string
	}{
		{"attempt", `{"type":"delivery.attempt","tenant":"t1","partner":"bank-a","topic":"car-chosen","subscription":"s1","webhook_id":"s1.e1","attempt":2,"status":503,"result":"retry","latency_ms":40,"at":` + fmt.Sprint(ms) + `,"error":"503 Service Unavailable"}`, "s1",
			&DeliveryRow{Tenant: "t1", Partner: "bank-a", Topic: "car-chosen", Subscription: "s1", WebhookID: "s1.e1", Kind: DeliveryKindAttempt,
				Type: "delivery.attempt", Attempt: 2, Status: 503, Result: "retry", LatencyMS: 40, Error: "503 Service Unavailable", At: at, AtMS: ms, Partition: 3, Offset: 7}, ""},
		{"end, subscription from the key", `{"type":"delivery.exhausted","tenant":"t1","partner":"bank-a","topic":"car-chosen","webhook_id":"s1.e1","attempt":8,"result":"exhausted","latency_ms":0,"at":` + fmt.Sprint(ms) + `}`, "s1",
			&DeliveryRow{Tenant: "t1", Partner: "bank-a", Topic: "car-chosen", Subscription: "s1", WebhookID: "s1.e1", Kind: DeliveryKindEnd,
				Type: "delivery.exhausted", Attempt: 8, Result: "exhausted", At: at, AtMS: ms, Partition: 3, Offset: 7}, ""},
		{"dropped before any attempt", `{"type":"delivery.dropped","tenant":"t1","subscription":"s1","webhook_id":"s1.e1","attempt":0,"result":"not_allowed","latency_ms":0,"at":1000}`, "s1",
			&DeliveryRow{Tenant: "t1", Subscription: "s1", WebhookID: "s1.e1", Kind: DeliveryKindEnd, Type: "delivery.dropped", Result: "not_allowed",
				At: time.Unix(1, 0).UTC(), AtMS: 1000, Partition: 3, Offset: 7}, ""},
		{"dropped by a blacklisting", `{"type":"delivery.dropped","tenant":"t1","subscription":"s1","webhook_id":"s1.e2","attempt":0,"result":"blacklisted","latency_ms":0,"at":1000}`, "s1",
			&DeliveryRow{Tenant: "t1", Subscription: "s1", WebhookID: "s1.e2", Kind: DeliveryKindEnd, Type: "delivery.dropped", Result: "blacklisted",
				At: time.Unix(1, 0).UTC(), AtMS: 1000, Partition: 3, Offset: 7}, ""},
		{"Kafka refused the record", `{"type":"delivery.failed","tenant":"t1","subscription":"s2","webhook_id":"s2.e1","attempt":1,"result":"refused","at":1000,"channel":"kafka"}`, "s2",
			&DeliveryRow{Tenant: "t1", Subscription: "s2", WebhookID: "s2.e1", Kind: DeliveryKindEnd, Type: "delivery.failed", Attempt: 1, Result: "refused",
				At: time.Unix(1, 0).UTC(), AtMS: 1000, Partition: 3, Offset: 7}, ""},
		{"refused is no attempt's", `{"type":"delivery.attempt","tenant":"t1","subscription":"s2","webhook_id":"s2.e1","attempt":1,"result":"refused","at":1000}`, "s2", nil,
			`fanout report delivery.attempt of s2.e1: result "refused" is not one of an attempt (docs/fanout.md)`},
		{"not json", `{"type":`, "s1", nil, "fanout report: unexpected end of JSON input"},
		{"no webhook id", `{"type":"delivery.attempt","tenant":"t1","subscription":"s1","attempt":1,"result":"success","at":1000}`, "s1", nil,
			`fanout report "delivery.attempt" of subscription "s1": no id (webhook_id)`},
		{"no tenant", `{"type":"delivery.attempt","webhook_id":"s1.e1","attempt":1,"result":"success","at":1000}`, "s1", nil,
			`fanout report "delivery.attempt" of subscription "s1": no id (tenant)`},
		{"no subscription", `{"type":"delivery.attempt","tenant":"t1","webhook_id":"s1.e1","attempt":1,"result":"success","at":1000}`, "", nil,
			`fanout report "delivery.attempt" of subscription "": no id (subscription)`},
		{"no instant", `{"type":"delivery.attempt","tenant":"t1","subscription":"s1","webhook_id":"s1.e1","attempt":1,"result":"success"}`, "s1", nil,
			"fanout report delivery.attempt of s1.e1: at 0, want a Unix ms instant"},
		{"attempt 0", `{"type":"delivery.attempt","tenant":"t1","subscription":"s1","webhook_id":"s1.e1","result":"success","at":1000}`, "s1", nil,
			"fanout report delivery.attempt of s1.e1: attempt 0, want at least 1"},
		{"negative latency", `{"type":"delivery.attempt","tenant":"t1","subscription":"s1","webhook_id":"s1.e1","attempt":1,"result":"success","latency_ms":-1,"at":1000}`, "s1", nil,
			"fanout report delivery.attempt of s1.e1: attempt 1, latency_ms -1, status 0: none may be negative"},
		{"an end's result on an attempt", `{"type":"delivery.attempt","tenant":"t1","subscription":"s1","webhook_id":"s1.e1","attempt":1,"result":"exhausted","at":1000}`, "s1", nil,
			`fanout report delivery.attempt of s1.e1: result "exhausted" is not one of an attempt (docs/fanout.md)`},
		{"an attempt's result on an end", `{"type":"delivery.failed","tenant":"t1","subscription":"s1","webhook_id":"s1.e1","attempt":3,"result":"retry","at":1000}`, "s1", nil,
			`fanout report delivery.failed of s1.e1: result "retry" is not one of an end (docs/fanout.md)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DecodeFanoutReport([]byte(tt.value), tt.key, 3, 7)
			checkDecoded(t, got, err, tt.want, tt.err)
		})
	}
}

// A batch keeps each report once; the same delivery posted again later
// (another instant) is other reports.
func TestDeliveryRowsDedupe(t *testing.T) {
	sc := deliveryScenario()
	if got := deliveryRows(t, append(append([]schemas.FanoutReport{}, sc...), sc...)).Len(); got != len(sc) {
		t.Fatalf("the scenario twice: %d rows, want %d", got, len(sc))
	}
	again := sc[0]
	again.At += 60_000
	if got := deliveryRows(t, []schemas.FanoutReport{sc[0], again}).Len(); got != 2 {
		t.Fatalf("a report of a later post: %d rows, want 2", got)
	}
}

// The Go reference gives the hand-computed rows of the scenario (so the
// randomized test below compares the view with something checked).
func TestDeliveryReferenceOnScenario(t *testing.T) {
	if got := reference.DeliveryReportRows(deliveryScenario()); !reflect.DeepEqual(got, deliveryScenarioReport) {
		t.Fatalf("reference:\n got %v\nwant %v", got, deliveryScenarioReport)
	}
}

// insertDeliveries writes the reports in parts, the last part first, each
// part twice (one INSERT per part and copy, as batches of a sink that
// crashed before its commit), with merges stopped, so FINAL and the view
// do the collapsing.
func insertDeliveries(t testing.TB, ctx context.Context, conn driver.Conn, db string, reports []schemas.FanoutReport, parts int) {
	t.Helper()
	for i := parts - 1; i >= 0; i-- {
		lo, hi := i*len(reports)/parts, (i+1)*len(reports)/parts
		rows := deliveryRows(t, reports[lo:hi])
		if rows.Len() == 0 {
			continue
		}
		for range 2 {
			if err := rows.Insert(ctx, conn, db); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// report_deliveries on the hand-built scenario equals the hand-computed
// rows, each report written twice and out of order; the filters.
func TestDeliveriesView(t *testing.T) {
	conn, db := testDB(t)
	stopMerges(t, conn, db, tableDeliveries)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	r, ok := ReportByName("deliveries")
	if !ok || r.View != "report_deliveries" {
		t.Fatalf("report deliveries: %+v, %v", r, ok)
	}
	run := func(f ReportFilter) [][]string {
		t.Helper()
		res, err := RunReportFilter(ctx, conn, db, r, f)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Join(res.Columns, ",") != deliveryReportColumns {
			t.Fatalf("columns %v", res.Columns)
		}
		if res.Types[0] != "Date" || res.Types[4] != "UInt64" || res.Types[10] != "Int64" || res.Types[11] != "Int64" {
			t.Fatalf("types %v", res.Types)
		}
		return res.Rows
	}
	if got := run(ReportFilter{}); len(got) != 0 {
		t.Fatalf("empty table: %v", got)
	}
	sc := deliveryScenario()
	rev := make([]schemas.FanoutReport, len(sc))
	for i, x := range sc {
		rev[len(sc)-1-i] = x
	}
	insertDeliveries(t, ctx, conn, db, rev, 3)
	if n, want := count(t, conn, "SELECT count() FROM "+db+".deliveries"), uint64(2*len(sc)); n != want {
		t.Fatalf("deliveries holds %d raw rows, want %d (two copies of each)", n, want)
	}
	if n := count(t, conn, "SELECT count() FROM "+db+".deliveries FINAL"); n != uint64(len(sc)) {
		t.Fatalf("deliveries FINAL holds %d rows, want %d", n, len(sc))
	}
	if got := run(ReportFilter{}); !reflect.DeepEqual(got, deliveryScenarioReport) {
		t.Fatalf("report deliveries:\n got %v\nwant %v", got, deliveryScenarioReport)
	}
	day := func(d int) time.Time { return time.Date(2026, 11, d, 0, 0, 0, 0, time.UTC) }
	rows := deliveryScenarioReport
	for _, tt := range []struct {
		name string
		f    ReportFilter
		want [][]string
	}{
		{"since 11-03", ReportFilter{Since: day(3)}, rows[4:]},
		{"until 11-02, t1", ReportFilter{Until: day(2), Tenant: "t1"}, rows[:3]},
		{"bank-a", ReportFilter{Partner: "bank-a"}, [][]string{rows[0], rows[1], rows[3], rows[4]}},
		{"car-chosen of bank-b", ReportFilter{Partner: "bank-b", Topic: "car-chosen"}, rows[2:3]},
		{"test-drive", ReportFilter{Topic: "test-drive"}, rows[1:2]},
		{"a partner with none", ReportFilter{Partner: "bank-z"}, nil},
	} {
		if got := run(tt.f); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s:\n got %v\nwant %v", tt.name, got, tt.want)
		}
	}
	leads, _ := ReportByName("leads")
	if _, err := RunReportFilter(ctx, conn, db, leads, ReportFilter{Topic: "car-chosen"}); err == nil || err.Error() != "report leads has no topic column" {
		t.Fatalf("report leads --topic: %v", err)
	}
}

// On random deliveries (duplicates, reports out of order, in parts
// written last first, merges stopped), the view equals the Go reference.
func TestDeliveriesViewAgainstReference(t *testing.T) {
	conn, db := testDB(t)
	stopMerges(t, conn, db, tableDeliveries)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	r, _ := ReportByName("deliveries")
	seeds, n := []uint64{1, 2, 3}, 400
	if testing.Short() {
		seeds, n = seeds[:1], 200
	}
	for _, seed := range seeds {
		if seed > seeds[0] {
			if err := conn.Exec(ctx, "TRUNCATE TABLE "+db+".deliveries"); err != nil {
				t.Fatal(err)
			}
		}
		reports := genDeliveryReports(seed, n)
		want := reference.DeliveryReportRows(reports)
		checkDeliveryReferenceCovers(t, want)
		rng := rand.New(rand.NewPCG(seed, 99))
		shuffled := append([]schemas.FanoutReport{}, reports...)
		rng.Shuffle(len(shuffled), func(a, b int) { shuffled[a], shuffled[b] = shuffled[b], shuffled[a] })
		// and some reports a third time, in a later INSERT
		insertDeliveries(t, ctx, conn, db, append(shuffled, shuffled[:len(shuffled)/5]...), 4)
		res, err := RunReportFilter(ctx, conn, db, r, ReportFilter{})
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(res.Rows, want) {
			t.Fatalf("seed %d: %d rows, want %d\n%s", seed, len(res.Rows), len(want), firstDiff(res.Rows, want))
		}
	}
}

// checkDeliveryReferenceCovers fails when the random reports are too
// tame: every count column must be above 0 somewhere.
func checkDeliveryReferenceCovers(t testing.TB, rows [][]string) {
	t.Helper()
	for col := 4; col < 12; col++ {
		seen := false
		for _, row := range rows {
			seen = seen || row[col] != "0"
		}
		if !seen {
			t.Fatalf("the reference's column %d is 0 in every row: the test input is too small", col)
		}
	}
}

// The sink writes rolodex.fanout.reports into deliveries, each record
// produced twice (and the whole topic read by a second sink group: a crash
// that lost every commit), bad records skipped and counted; deliveries
// FINAL holds each report once with its fields, and the report equals the
// hand-computed one.
func TestSinkFanoutReports(t *testing.T) {
	conn, db := testDB(t)
	cluster := newCluster(t, 3)
	brokers := cluster.ListenAddrs()
	p := newProducer(t, brokers)
	sc := deliveryScenario()
	for range 2 {
		for _, r := range sc {
			v, err := json.Marshal(r)
			if err != nil {
				t.Fatal(err)
			}
			if err := p.cl.ProduceSync(context.Background(), &kgo.Record{Topic: schemas.TopicFanoutReports, Key: []byte(r.Subscription), Value: v}).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
	}
	p.raw(t, schemas.TopicFanoutReports, "not json", `{"type":"delivery.attempt","tenant":"t1","subscription":"s1","attempt":1,"result":"success","at":1000}`,
		`{"type":"delivery.attempt","tenant":"t1","subscription":"s1","webhook_id":"s1.x","attempt":1,"result":"lost","at":1000}`)
	for _, group := range []string{"", "rolodex-sink-clickhouse-again"} {
		cfg := testSinkConfig(t, brokers, db)
		if group != "" {
			cfg.Group = group
		}
		s, stop := runSink(t, cfg)
		waitFor(t, 30*time.Second, "every record in ClickHouse and committed", func() bool { return caughtUp(t, brokers, cfg.Group) })
		stop()
		if got := testutil.ToFloat64(s.Metrics().Undecodable.WithLabelValues(schemas.TopicFanoutReports)); got != 3 {
			t.Errorf("undecodable reports: %v, want 3", got)
		}
		if got := testutil.ToFloat64(s.Metrics().RowsWritten.WithLabelValues(tableDeliveries)); got < float64(len(sc)) {
			t.Errorf("deliveries rows written: %v, want at least %d", got, len(sc))
		}
	}
	var want [][]string
	for _, d := range deliveryRows(t, sc).Rows() {
		want = append(want, []string{d.Tenant, d.Subscription, d.WebhookID, d.Kind, fmt.Sprint(d.Attempt), d.Type, fmt.Sprint(d.AtMS),
			d.Partner, d.Topic, fmt.Sprint(d.Status), d.Result, fmt.Sprint(d.LatencyMS), d.Error,
			d.At.Format("2006-01-02 15:04:05"), d.At.Format("2006-01-02")})
	}
	reference.SortRows(want) // no column holds a NUL; attempts and instants have as many digits each
	checkQuery(t, conn, "SELECT tenant, subscription, webhook_id, kind, toString(attempt), type, toString(at_ms), partner, topic, toString(status), result, "+
		"toString(latency_ms), error, toString(at), toString(day) FROM "+db+".deliveries FINAL ORDER BY tenant, subscription, webhook_id, kind, attempt, type, at_ms", want)
	checkQuery(t, conn, "SELECT * FROM "+db+".report_deliveries ORDER BY day, tenant, partner, topic", deliveryScenarioReport)
}

// The Grafana panel "Deliveries by partner and topic" (reports.json) runs
// on the scenario with the time range's macros as the ClickHouse plugin
// expands them, and shows the report's rows of the range, latest day
// first.
func TestDeliveriesGrafanaPanel(t *testing.T) {
	sql := reportsPanelSQL(t, "Deliveries by partner and topic", "rolodex.report_deliveries")
	conn, db := testDB(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	insertDeliveries(t, ctx, conn, db, deliveryScenario(), 1)
	q := panelQuery(sql, db, "2026-11-02 00:00:00", "2026-11-03 23:59:59")
	rows := deliveryScenarioReport
	checkQuery(t, conn, q, [][]string{rows[4], rows[0], rows[1], rows[2], rows[3]})
	q = panelQuery(sql, db, "2026-11-03 00:00:00", "2026-11-03 23:59:59")
	checkQuery(t, conn, q, [][]string{rows[4]})
}
