package clickhouse

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/rolodex/rolodex/schemas"
)

// Partner fan-out in ClickHouse (docs/fanout.md, "ClickHouse and
// reports"): the sink reads rolodex.fanout.reports (JSON
// schemas.FanoutReport, keyed by subscription id) into deliveries, one row
// per report. A report of type schemas.ReportDeliveryAttempt is of kind
// "attempt" (one webhook request; its result is the attempt's class);
// every other type ends a delivery, kind "end" (its result says how). The
// table keeps the type as written, so the view depends on the kind and
// the result only, not on the end types' names.
//
// The topic is at least once (the delivery stage writes a report again
// after a crash; the sink writes a batch again after its own). A report's
// identity is (tenant, subscription, webhook id, kind, attempt, type,
// instant): the table is a ReplacingMergeTree without a version sorted by
// it, so copies collapse and FINAL reads each once, and the view's
// per-delivery values are maxima and arg-maxima, which copies do not
// change.

// tableDeliveries is the table of the fan-out reports.
const tableDeliveries = "deliveries"

// Kinds of a row of deliveries.
const (
	DeliveryKindAttempt = "attempt"
	DeliveryKindEnd     = "end"
)

// DeliveryColumns are the columns the sink writes to deliveries.
var DeliveryColumns = []string{
	"tenant", "partner", "topic", "subscription", "webhook_id", "kind", "type", "attempt", "status",
	"result", "latency_ms", "error", "at", "at_ms", "kafka_partition", "kafka_offset",
}

// attemptResults and endResults are the results each kind may carry.
var (
	attemptResults = map[string]bool{
		schemas.ReportResultSuccess: true, schemas.ReportResultRetry: true, schemas.ReportResultGone: true,
		schemas.ReportResultPermanent: true,
	}
	endResults = map[string]bool{
		schemas.ReportResultSuccess: true, schemas.ReportResultExhausted: true, schemas.ReportResultPermanent: true,
		schemas.ReportResultGone: true, schemas.FanoutInactive: true, schemas.FanoutNotAllowed: true,
		schemas.ReportResultExpired: true, schemas.ReportResultRefused: true, schemas.FanoutBlacklisted: true,
	}
)

// DeliveryRow is one record of rolodex.fanout.reports as a row of
// deliveries.
type DeliveryRow struct {
	Tenant, Partner, Topic, Subscription, WebhookID string
	// Kind is DeliveryKindAttempt or DeliveryKindEnd; Type the report's.
	Kind, Type string
	Attempt    uint32
	Status     int32
	Result     string
	LatencyMS  int64
	Error      string
	// At is the report's instant (DateTime's range), AtMS the exact Unix
	// ms. The table's day is toDate(at), its UTC date.
	At   time.Time
	AtMS int64

	Partition int32
	Offset    int64
}

// DecodeFanoutReport turns a record of rolodex.fanout.reports into its
// row. key is the record's key (the subscription id), used when the value
// has none. A report without a tenant, subscription, webhook id or
// instant, with a negative attempt, latency or status, an attempt report
// whose attempt is not at least 1, or a result its kind does not have is
// an error (the sink skips it and counts it).
func DecodeFanoutReport(value []byte, key string, partition int32, offset int64) (*DeliveryRow, error) {
	var r schemas.FanoutReport
	if err := json.Unmarshal(value, &r); err != nil {
		return nil, fmt.Errorf("fanout report: %w", err)
	}
	if r.Subscription == "" {
		r.Subscription = key
	}
	for _, f := range []struct{ name, v string }{
		{"type", r.Type}, {"tenant", r.Tenant}, {"subscription", r.Subscription}, {"webhook_id", r.WebhookID},
	} {
		if f.v == "" {
			return nil, fmt.Errorf("fanout report %q of subscription %q: %w (%s)", r.Type, r.Subscription, errNoID, f.name)
		}
	}
	what := fmt.Sprintf("fanout report %s of %s", r.Type, r.WebhookID)
	if r.At <= 0 {
		return nil, fmt.Errorf("%s: at %d, want a Unix ms instant", what, r.At)
	}
	if r.Attempt < 0 || r.LatencyMs < 0 || r.Status < 0 {
		return nil, fmt.Errorf("%s: attempt %d, latency_ms %d, status %d: none may be negative", what, r.Attempt, r.LatencyMs, r.Status)
	}
	kind, results := DeliveryKindEnd, endResults
	if r.Type == schemas.ReportDeliveryAttempt {
		kind, results = DeliveryKindAttempt, attemptResults
		if r.Attempt < 1 {
			return nil, fmt.Errorf("%s: attempt %d, want at least 1", what, r.Attempt)
		}
	}
	if !results[r.Result] {
		return nil, fmt.Errorf("%s: result %q is not one of an %s (docs/fanout.md)", what, r.Result, kind)
	}
	return &DeliveryRow{
		Tenant: r.Tenant, Partner: r.Partner, Topic: r.Topic, Subscription: r.Subscription, WebhookID: r.WebhookID,
		Kind: kind, Type: r.Type, Attempt: uint32(r.Attempt), Status: int32(r.Status), Result: r.Result,
		LatencyMS: r.LatencyMs, Error: r.Error, At: DateTime(time.UnixMilli(r.At)), AtMS: r.At,
		Partition: partition, Offset: offset,
	}, nil
}

// deliveryKey is a report's identity (the table's sorting key).
type deliveryKey struct {
	tenant, subscription, webhookID, kind, typ string
	attempt                                    uint32
	ms                                         int64
}

// DeliveryRows holds the deliveries rows of one batch, each report once.
type DeliveryRows struct {
	rows []*DeliveryRow
	seen map[deliveryKey]bool
}

// Len is the number of rows.
func (r *DeliveryRows) Len() int { return len(r.rows) }

// Rows returns the rows in the order they were first added.
func (r *DeliveryRows) Rows() []*DeliveryRow { return r.rows }

// Reset empties r.
func (r *DeliveryRows) Reset() { *r = DeliveryRows{} }

// Add keeps row unless the batch has the same report already; it reports
// whether the row was kept.
func (r *DeliveryRows) Add(row *DeliveryRow) bool {
	if r.seen == nil {
		r.seen = map[deliveryKey]bool{}
	}
	k := deliveryKey{row.Tenant, row.Subscription, row.WebhookID, row.Kind, row.Type, row.Attempt, row.AtMS}
	if r.seen[k] {
		return false
	}
	r.seen[k] = true
	r.rows = append(r.rows, row)
	return true
}

// Insert writes the rows into deliveries in one INSERT.
func (r *DeliveryRows) Insert(ctx context.Context, conn driver.Conn, db string) error {
	return insertColumns(ctx, conn, db, tableDeliveries, DeliveryColumns, r.columns())
}

func (r *DeliveryRows) columns() []any {
	n := len(r.rows)
	at := make([]time.Time, n)
	tenant, partner, topic, sub, wid := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	kind, typ, result, errs := make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	attempt, status, partition := make([]uint32, n), make([]int32, n), make([]int32, n)
	latency, ms, offset := make([]int64, n), make([]int64, n), make([]int64, n)
	for i, d := range r.rows {
		at[i] = d.At
		tenant[i], partner[i], topic[i], sub[i], wid[i] = d.Tenant, d.Partner, d.Topic, d.Subscription, d.WebhookID
		kind[i], typ[i], result[i], errs[i] = d.Kind, d.Type, d.Result, d.Error
		attempt[i], status[i], partition[i] = d.Attempt, d.Status, d.Partition
		latency[i], ms[i], offset[i] = d.LatencyMS, d.AtMS, d.Offset
	}
	return []any{tenant, partner, topic, sub, wid, kind, typ, attempt, status, result, latency, errs, at, ms, partition, offset}
}
