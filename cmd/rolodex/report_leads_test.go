package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/rolodex/rolodex/connectors/clickhouse"
	"github.com/rolodex/rolodex/schemas"
)

// rolodex report leads: per day and partner, what became of the leads
// routed to it, on a small hand-built tenant whose outcomes are written
// twice (the topic is at least once):
//
//	A1 dealer-a 11-02 10:00, distributed, accepted 10:01:30          (a: 90 s)
//	A2 dealer-a 10:05, delivery failed; dealer-b 10:06
//	   (delivery_failed), distributed, rejected 10:30; unrouted
//	   no_eligible 10:30 (rejected)
//	A3 dealer-b 11:00, distributed; SLA: dealer-a 11:30 (sla),
//	   distributed, accepted 11:45                                   (a: 900 s)
//	A4 dealer-b 11-03 09:00, distributed, accepted 09:00:45         (b: 45 s)
//
// By hand: 11-02 dealer-a: 3 routed (A1, A2#1, A3#2), 2 delivered, 1
// failed, 2 accepted, 0 rejected, 1 re-routed away (A2#1), 0 SLA misses,
// median (90 + 900) / 2 = 495. 11-02 dealer-b: 2 routed (A2#2, A3#1), 2
// delivered, 0 failed, 0 accepted, 1 rejected, 2 re-routed away (A2#2 was
// followed by the unrouted decision), 1 SLA miss (A3#1), median 0. 11-03
// dealer-b: 1, 1, 0, 1, 0, 0, 0, 45.
func TestReportLeads(t *testing.T) {
	addr, db := chTestDB(t, 1)
	at := func(day, h, m, s int) int64 { return time.Date(2026, 11, day, h, m, s, 0, time.UTC).UnixMilli() }
	o := func(typ, lead string, attempt int, partner, cause string, ms int64) schemas.LeadOutcome {
		return schemas.LeadOutcome{Type: typ, Tenant: "demo", LeadID: lead, Attempt: attempt, At: ms, Partner: partner, Cause: cause, Rule: "sp", RuleVersion: 1}
	}
	outcomes := []schemas.LeadOutcome{
		o("lead.routed", "A1", 1, "dealer-a", "lead", at(2, 10, 0, 0)),
		o("lead.distributed", "A1", 1, "dealer-a", "", at(2, 10, 0, 1)),
		o("lead.accepted", "A1", 1, "dealer-a", "", at(2, 10, 1, 30)),
		o("lead.routed", "A2", 1, "dealer-a", "lead", at(2, 10, 5, 0)),
		o("lead.delivery_failed", "A2", 1, "dealer-a", "", at(2, 10, 6, 0)),
		o("lead.routed", "A2", 2, "dealer-b", "delivery_failed", at(2, 10, 6, 0)),
		o("lead.distributed", "A2", 2, "dealer-b", "", at(2, 10, 6, 1)),
		o("lead.rejected", "A2", 2, "dealer-b", "", at(2, 10, 30, 0)),
		{Type: "lead.unrouted", Tenant: "demo", LeadID: "A2", Attempt: 3, At: at(2, 10, 30, 0), Cause: "rejected", Reason: "no_eligible"},
		o("lead.routed", "A3", 1, "dealer-b", "lead", at(2, 11, 0, 0)),
		o("lead.distributed", "A3", 1, "dealer-b", "", at(2, 11, 0, 1)),
		o("lead.routed", "A3", 2, "dealer-a", "sla", at(2, 11, 30, 0)),
		o("lead.distributed", "A3", 2, "dealer-a", "", at(2, 11, 30, 1)),
		o("lead.accepted", "A3", 2, "dealer-a", "", at(2, 11, 45, 0)),
		o("lead.routed", "A4", 1, "dealer-b", "lead", at(3, 9, 0, 0)),
		o("lead.distributed", "A4", 1, "dealer-b", "", at(3, 9, 0, 1)),
		o("lead.accepted", "A4", 1, "dealer-b", "", at(3, 9, 0, 45)),
	}
	ctx, conn := chConn(t, addr, db)
	for range 2 {
		var rows clickhouse.LeadOutcomeRows
		for i, x := range outcomes {
			v, _ := json.Marshal(x)
			row, err := clickhouse.DecodeLeadOutcome(v, x.LeadID, 0, int64(i))
			if err != nil {
				t.Fatal(err)
			}
			rows.Add(row)
		}
		for _, r := range []*clickhouse.LeadRows{&rows.Decisions, &rows.Deliveries, &rows.Feedback} {
			if err := r.Insert(ctx, conn, db); err != nil {
				t.Fatal(err)
			}
		}
	}
	checkReport(t, "leads", addr, db, []reportCase{
		{[]string{"--tenant", "demo", "--format", "csv"}, "" +
			"day,tenant,partner,routed,delivered,delivery_failed,accepted,rejected,rerouted,sla_misses,median_accept_seconds\n" +
			"2026-11-02,demo,dealer-a,3,2,1,2,0,1,0,495\n" +
			"2026-11-02,demo,dealer-b,2,2,0,0,1,2,1,0\n" +
			"2026-11-03,demo,dealer-b,1,1,0,1,0,0,0,45\n"},
		{[]string{"--until", "2026-11-02"}, "" +
			"day         tenant  partner   routed  delivered  delivery_failed  accepted  rejected  rerouted  sla_misses  median_accept_seconds\n" +
			"---         ------  -------   ------  ---------  ---------------  --------  --------  --------  ----------  ---------------------\n" +
			"2026-11-02  demo    dealer-a       3          2                1         2         0         1           0                    495\n" +
			"2026-11-02  demo    dealer-b       2          2                0         0         1         2           1                      0\n" +
			"(2 rows)\n"},
		{[]string{"--since", "2026-11-03", "--until", "2026-11-03", "--format", "json"}, `[
  {
    "day": "2026-11-03",
    "tenant": "demo",
    "partner": "dealer-b",
    "routed": 1,
    "delivered": 1,
    "delivery_failed": 0,
    "accepted": 1,
    "rejected": 0,
    "rerouted": 0,
    "sla_misses": 0,
    "median_accept_seconds": 45
  }
]
`},
		{[]string{"--tenant", "other", "--format", "csv"}, "day,tenant,partner,routed,delivered,delivery_failed,accepted,rejected,rerouted,sla_misses,median_accept_seconds\n"},
	})
}

// The report's dates are checked before anything connects.
func TestReportDateFlags(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"report", "leads", "--until", "11/02/2026"}, `report: --until "11/02/2026": want a date, YYYY-MM-DD`},
		{[]string{"report", "leads", "--since", "yesterday"}, `report: --since "yesterday": want a date, YYYY-MM-DD`},
		{[]string{"report", "leads", "--since", "2026-11-03", "--until", "2026-11-02"}, "report: --until 2026-11-02 is before --since 2026-11-03"},
	} {
		err := run(context.Background(), append(tt.args, "--clickhouse", closedAddr(t)), &bytes.Buffer{}, &bytes.Buffer{})
		if exitCode(err) != 2 || err == nil || err.Error() != tt.want {
			t.Errorf("%v: %v (exit %d), want usage error %q", tt.args, err, exitCode(err), tt.want)
		}
	}
	out, _, code := runInProcess("report", "-h")
	if code != 0 || !strings.Contains(out, "report_leads_by_partner") || !strings.Contains(out, "-until") {
		t.Fatalf("report -h (exit %d) does not list the leads report or --until:\n%s", code, out)
	}
}
