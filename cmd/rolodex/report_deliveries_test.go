package main

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/rolodex/rolodex/connectors/clickhouse"
	"github.com/rolodex/rolodex/schemas"
)

// rolodex report deliveries: per day, partner and topic, the fan-out
// deliveries that ended, on a small hand-built tenant whose reports are
// written twice (the topic is at least once). Subscriptions s1 (bank-a,
// car-chosen, webhook) and s2 (bank-b, car-chosen, Kafka):
//
//	s1.e1 11-02 10:00 attempt 1 retry, attempt 2 success (150 ms), end  delivered, retried
//	s1.e2 10:01 attempt 1 success (50 ms), end                          delivered
//	s1.e3 10:02 attempt 1 gone (410), end subscription.disabled        failed
//	s1.e4 10:03 end delivery.dropped (inactive)                         dropped
//	s2.e1 10:00 end delivery.succeeded (a Kafka write, 4 ms)            delivered
//	s1.e5 11-03 09:00 attempt 1 retry, end exhausted                    exhausted
//
// By hand: 11-02 bank-a: 4 deliveries, 2 delivered, 1 retried, 1 failed,
// 0 exhausted, 1 dropped; latencies 50 150: p50 (the 1st) 50, p99 (the
// 2nd) 150. 11-02 bank-b: 1, 1, 0, 0, 0, 0, 4, 4. 11-03 bank-a: 1, 0, 0,
// 0, 1, 0, 0, 0.
func TestReportDeliveries(t *testing.T) {
	addr, db := chTestDB(t, 1)
	at := func(day, h, m, s int) int64 { return time.Date(2026, 11, day, h, m, s, 0, time.UTC).UnixMilli() }
	r := func(sub, e, typ string, attempt, status int, result string, latency, ms int64) schemas.FanoutReport {
		partner := map[string]string{"s1": "bank-a", "s2": "bank-b"}[sub]
		return schemas.FanoutReport{Type: typ, Tenant: "demo", Partner: partner, Topic: "car-chosen", Subscription: sub,
			WebhookID: sub + "." + e, Attempt: attempt, Status: status, Result: result, LatencyMs: latency, At: ms}
	}
	const try = schemas.ReportDeliveryAttempt
	reports := []schemas.FanoutReport{
		r("s1", "e1", try, 1, 503, "retry", 20, at(2, 10, 0, 0)),
		r("s1", "e1", try, 2, 200, "success", 150, at(2, 10, 0, 5)),
		r("s1", "e1", "delivery.succeeded", 2, 200, "success", 0, at(2, 10, 0, 5)),
		r("s1", "e2", try, 1, 200, "success", 50, at(2, 10, 1, 0)),
		r("s1", "e2", "delivery.succeeded", 1, 200, "success", 0, at(2, 10, 1, 0)),
		r("s1", "e3", try, 1, 410, "gone", 30, at(2, 10, 2, 0)),
		r("s1", "e3", schemas.ReportSubscriptionDisabled, 1, 410, "gone", 0, at(2, 10, 2, 0)),
		r("s1", "e4", "delivery.dropped", 0, 0, schemas.FanoutInactive, 0, at(2, 10, 3, 0)),
		r("s2", "e1", "delivery.succeeded", 1, 0, "success", 4, at(2, 10, 0, 0)),
		r("s1", "e5", try, 1, 503, "retry", 20, at(3, 9, 0, 0)),
		r("s1", "e5", schemas.ReportDeliveryExhausted, 1, 503, "exhausted", 0, at(3, 9, 0, 1)),
	}
	ctx, conn := chConn(t, addr, db)
	for range 2 {
		var rows clickhouse.DeliveryRows
		for i, x := range reports {
			v, _ := json.Marshal(x)
			row, err := clickhouse.DecodeFanoutReport(v, x.Subscription, 0, int64(i))
			if err != nil {
				t.Fatal(err)
			}
			rows.Add(row)
		}
		if err := rows.Insert(ctx, conn, db); err != nil {
			t.Fatal(err)
		}
	}
	checkReport(t, "deliveries", addr, db, []reportCase{
		{[]string{"--tenant", "demo", "--format", "csv"}, "" +
			"day,tenant,partner,topic,deliveries,delivered,retried,failed,exhausted,dropped,p50_latency_ms,p99_latency_ms\n" +
			"2026-11-02,demo,bank-a,car-chosen,4,2,1,1,0,1,50,150\n" +
			"2026-11-02,demo,bank-b,car-chosen,1,1,0,0,0,0,4,4\n" +
			"2026-11-03,demo,bank-a,car-chosen,1,0,0,0,1,0,0,0\n"},
		{[]string{"--until", "2026-11-02"}, "" +
			"day         tenant  partner  topic       deliveries  delivered  retried  failed  exhausted  dropped  p50_latency_ms  p99_latency_ms\n" +
			"---         ------  -------  -----       ----------  ---------  -------  ------  ---------  -------  --------------  --------------\n" +
			"2026-11-02  demo    bank-a   car-chosen           4          2        1       1          0        1              50             150\n" +
			"2026-11-02  demo    bank-b   car-chosen           1          1        0       0          0        0               4               4\n" +
			"(2 rows)\n"},
		{[]string{"--partner", "bank-a", "--topic", "car-chosen", "--since", "2026-11-03", "--format", "json"}, `[
  {
    "day": "2026-11-03",
    "tenant": "demo",
    "partner": "bank-a",
    "topic": "car-chosen",
    "deliveries": 1,
    "delivered": 0,
    "retried": 0,
    "failed": 0,
    "exhausted": 1,
    "dropped": 0,
    "p50_latency_ms": 0,
    "p99_latency_ms": 0
  }
]
`},
		{[]string{"--partner", "bank-c", "--format", "csv"}, "day,tenant,partner,topic,deliveries,delivered,retried,failed,exhausted,dropped,p50_latency_ms,p99_latency_ms\n"},
	})
}

// --partner and --topic only for a report with that column, checked
// before anything connects.
func TestReportPartnerTopicFlags(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"report", "leads", "--topic", "car-chosen"}, "report: report leads has no topic column"},
		{[]string{"report", "activity", "--partner", "bank-a"}, "report: report activity has no partner column"},
	} {
		err := run(context.Background(), append(tt.args, "--clickhouse", closedAddr(t)), &bytes.Buffer{}, &bytes.Buffer{})
		if exitCode(err) != 2 || err == nil || err.Error() != tt.want {
			t.Errorf("%v: %v (exit %d), want usage error %q", tt.args, err, exitCode(err), tt.want)
		}
	}
}
