package reference

import (
	"sort"
	"strconv"
	"time"

	"github.com/rolodex/rolodex/schemas"
)

// DeliveryReportRows is what "rolodex report deliveries" (the view
// report_deliveries) must show for a set of fan-out reports, however often
// each was written and in whatever order (docs/fanout.md, "ClickHouse and
// reports"): rows of day, tenant, partner, topic, deliveries, delivered,
// retried, failed, exhausted, dropped, p50_latency_ms, p99_latency_ms, as
// text, sorted.
//
// A delivery is (tenant, subscription, webhook id). The report that
// decides it is its latest; at the same instant an end (any type but
// schemas.ReportDeliveryAttempt) wins over an attempt, and within a kind
// the later in deliveryPrecedence. Its day is that report's UTC date. A
// delivery decided by an attempt to retry is in flight: in no row.
// Retried: some report's attempt is above 1. Its latency, when delivered:
// that of its earliest report with result success (the same order).
// Percentiles by nearest rank: the ceil(p * n)-th smallest, 0 when none.
func DeliveryReportRows(reports []schemas.FanoutReport) [][]string {
	type id struct{ tenant, sub, webhook string }
	type delivery struct {
		partner, topic     string
		last, firstSuccess *schemas.FanoutReport
		maxAttempt         int
	}
	ds := map[id]*delivery{}
	for i := range reports {
		r := &reports[i]
		k := id{r.Tenant, r.Subscription, r.WebhookID}
		d := ds[k]
		if d == nil {
			d = &delivery{partner: r.Partner, topic: r.Topic}
			ds[k] = d
		}
		d.maxAttempt = max(d.maxAttempt, r.Attempt)
		if d.last == nil || reportBefore(d.last, r) {
			d.last = r
		}
		if r.Result == schemas.ReportResultSuccess && (d.firstSuccess == nil || reportBefore(r, d.firstSuccess)) {
			d.firstSuccess = r
		}
	}
	type group struct{ day, tenant, partner, topic string }
	type counts struct {
		deliveries, delivered, retried, failed, exhausted, dropped int
		latencies                                                  []int64
	}
	groups := map[group]*counts{}
	for k, d := range ds {
		outcome := deliveryOutcome(d.last)
		if outcome == "" {
			continue
		}
		g := group{time.UnixMilli(d.last.At).UTC().Format("2006-01-02"), k.tenant, d.partner, d.topic}
		c := groups[g]
		if c == nil {
			c = &counts{}
			groups[g] = c
		}
		c.deliveries++
		if d.maxAttempt > 1 {
			c.retried++
		}
		switch outcome {
		case "delivered":
			c.delivered++
			c.latencies = append(c.latencies, d.firstSuccess.LatencyMs)
		case "failed":
			c.failed++
		case "exhausted":
			c.exhausted++
		case "dropped":
			c.dropped++
		}
	}
	var rows [][]string
	for g, c := range groups {
		sort.Slice(c.latencies, func(a, b int) bool { return c.latencies[a] < c.latencies[b] })
		n := len(c.latencies)
		rank := func(p int) string {
			if n == 0 {
				return "0"
			}
			return strconv.FormatInt(c.latencies[(p*n+99)/100-1], 10)
		}
		rows = append(rows, []string{g.day, g.tenant, g.partner, g.topic, strconv.Itoa(c.deliveries), strconv.Itoa(c.delivered),
			strconv.Itoa(c.retried), strconv.Itoa(c.failed), strconv.Itoa(c.exhausted), strconv.Itoa(c.dropped), rank(50), rank(99)})
	}
	SortRows(rows)
	return rows
}

// deliveryPrecedence orders the results of one kind at the same instant,
// first lowest.
var deliveryPrecedence = struct{ attempt, end []string }{
	attempt: []string{schemas.ReportResultRetry, schemas.ReportResultSuccess, schemas.ReportResultPermanent, schemas.ReportResultGone},
	end: []string{schemas.ReportResultSuccess, schemas.ReportResultExhausted, schemas.ReportResultPermanent, schemas.ReportResultGone,
		"dropped"},
}

// reportOrder is a report's place among those of its instant.
func reportOrder(r *schemas.FanoutReport) int {
	list, base := deliveryPrecedence.end, 100
	if r.Type == schemas.ReportDeliveryAttempt {
		list, base = deliveryPrecedence.attempt, 0
	}
	res := r.Result
	if isDropped(res) {
		res = "dropped"
	}
	if res == schemas.ReportResultRefused {
		res = schemas.ReportResultPermanent // ranked with permanent
	}
	for i, x := range list {
		if x == res {
			return base + i
		}
	}
	return -1
}

// reportBefore reports whether a comes before b.
func reportBefore(a, b *schemas.FanoutReport) bool {
	if a.At != b.At {
		return a.At < b.At
	}
	return reportOrder(a) < reportOrder(b)
}

func isDropped(result string) bool {
	return result == schemas.FanoutInactive || result == schemas.FanoutNotAllowed || result == schemas.ReportResultExpired ||
		result == schemas.FanoutBlacklisted
}

// deliveryOutcome is what the deciding report makes of a delivery: "" for
// an attempt to retry (in flight).
func deliveryOutcome(r *schemas.FanoutReport) string {
	switch {
	case r.Result == schemas.ReportResultSuccess:
		return "delivered"
	case r.Result == schemas.ReportResultPermanent || r.Result == schemas.ReportResultGone || r.Result == schemas.ReportResultRefused:
		return "failed"
	case r.Type == schemas.ReportDeliveryAttempt:
		return "" // retry
	case r.Result == schemas.ReportResultExhausted:
		return "exhausted"
	case isDropped(r.Result):
		return "dropped"
	}
	return ""
}
