package clickhouse

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/rolodex/rolodex/schemas"
)

// Lead routing in ClickHouse (docs/routing.md, docs/tables.md): the sink
// reads rolodex.routing.outcomes (JSON schemas.LeadOutcome, keyed by lead
// id) and writes each record, by its type, to one of three tables:
//
//   - routing_decisions: lead.routed and lead.unrouted, one row per
//     decision (attempt) of a lead.
//   - lead_deliveries: lead.distributed and lead.delivery_failed, the
//     delivery stage's reports.
//   - lead_feedback: lead.accepted and lead.rejected, the partner's answer
//     to an attempt.
//
// lead.forwarded (a follow-up sent on to the partner) is read and left
// out: no report counts it.
//
// The topic is at least once: the routing stage writes a message's
// outcomes again when it replays it (its outbox), and the sink writes a
// batch again after its own crash. docs/routing.md names the identity of
// an outcome: (lead id, attempt, type, instant); the instant tells the
// outcomes of a lead id used again after the routing retention from the
// old ones. Each table is a ReplacingMergeTree without a version whose
// sorting key is that identity with the tenant (and, in lead_deliveries,
// the partner), so copies collapse, and FINAL reads each outcome once. The
// report view does not count rows in any case: it counts attempts (a lead
// and an attempt number), each once however many copies of its records
// there are.

// Tables of lead routing.
const (
	tableRoutingDecisions = "routing_decisions"
	tableLeadDeliveries   = "lead_deliveries"
	tableLeadFeedback     = "lead_feedback"
)

// RoutingDecisionColumns are the columns the sink writes to
// routing_decisions.
var RoutingDecisionColumns = []string{
	"tenant", "lead_id", "attempt", "type", "cause", "at", "at_ms",
	"rule", "rule_version", "partner", "reason", "kafka_partition", "kafka_offset",
}

// LeadDeliveryColumns are the columns the sink writes to lead_deliveries.
var LeadDeliveryColumns = []string{
	"tenant", "lead_id", "attempt", "partner", "type", "ok", "status", "tries", "error",
	"at", "at_ms", "kafka_partition", "kafka_offset",
}

// LeadFeedbackColumns are the columns the sink writes to lead_feedback.
var LeadFeedbackColumns = []string{
	"tenant", "lead_id", "attempt", "partner", "type", "accepted", "reason",
	"at", "at_ms", "kafka_partition", "kafka_offset",
}

// LeadOutcomeRow is one record of rolodex.routing.outcomes as a row of the
// table Table (empty: a type no table keeps, lead.forwarded).
type LeadOutcomeRow struct {
	Table   string
	Tenant  string
	LeadID  string
	Type    string
	Attempt uint32
	// At is the outcome's instant (DateTime's range), AtMS the exact
	// Unix ms.
	At   time.Time
	AtMS int64
	// Decisions: the cause, the rule and its list version; the partner
	// (routed) or the unrouted reason.
	Cause       string
	Rule        string
	RuleVersion int64
	Partner     string
	Reason      string
	// Deliveries: whether it reached the partner, the last HTTP status
	// (0: none, or Kafka), the requests made and why it failed.
	OK     bool
	Status int32
	Tries  uint32
	Error  string
	// Feedback: Accepted (lead.accepted) or not (lead.rejected); Reason.
	Accepted bool

	Partition int32
	Offset    int64
}

// DecodeLeadOutcome turns a record of rolodex.routing.outcomes into its
// row. key is the record's key (the lead id), used when the value has
// none. A record without a lead id, of an unknown type, or whose attempt
// is not at least 1 is an error.
func DecodeLeadOutcome(value []byte, key string, partition int32, offset int64) (*LeadOutcomeRow, error) {
	var o schemas.LeadOutcome
	if err := json.Unmarshal(value, &o); err != nil {
		return nil, fmt.Errorf("lead outcome: %w", err)
	}
	if o.LeadID == "" {
		o.LeadID = key
	}
	if o.LeadID == "" {
		return nil, fmt.Errorf("lead outcome %q: %w (lead_id)", o.Type, errNoID)
	}
	row := &LeadOutcomeRow{
		Tenant: o.Tenant, LeadID: o.LeadID, Type: o.Type, At: DateTime(time.UnixMilli(o.At)), AtMS: o.At,
		Cause: o.Cause, Rule: o.Rule, RuleVersion: o.RuleVersion, Partner: o.Partner, Reason: o.Reason,
		Partition: partition, Offset: offset,
	}
	attempt := o.Attempt
	switch o.Type {
	case schemas.OutcomeRouted, schemas.OutcomeUnrouted:
		row.Table = tableRoutingDecisions
	case schemas.OutcomeAccepted, schemas.OutcomeRejected:
		row.Table = tableLeadFeedback
		row.Accepted = o.Type == schemas.OutcomeAccepted
	case schemas.OutcomeDistributed, schemas.OutcomeDeliveryFailed:
		row.Table = tableLeadDeliveries
		row.OK = o.Type == schemas.OutcomeDistributed
		if d := o.Delivery; d != nil {
			if attempt == 0 {
				attempt = d.Attempt
			}
			if row.Partner == "" {
				row.Partner = d.Partner
			}
			row.Status, row.Tries, row.Error = int32(d.Status), uint32(max(d.Tries, 0)), d.Error
		}
	case schemas.OutcomeForwarded:
		return row, nil
	default:
		return nil, fmt.Errorf("lead outcome of lead %s: unknown type %q", o.LeadID, o.Type)
	}
	if attempt < 1 {
		return nil, fmt.Errorf("lead outcome %s of lead %s: attempt %d, want at least 1", o.Type, o.LeadID, attempt)
	}
	row.Attempt = uint32(attempt)
	return row, nil
}

// leadOutcomeKey is an outcome's identity (docs/routing.md) with its
// tenant and partner.
type leadOutcomeKey struct {
	tenant, lead, typ, partner string
	attempt                    uint32
	ms                         int64
}

// LeadOutcomeRows holds the lead outcomes of one batch, each distinct
// outcome once, by table.
type LeadOutcomeRows struct {
	Decisions, Deliveries, Feedback LeadRows
}

// LeadRows holds the rows of one of the lead tables.
type LeadRows struct {
	table string
	rows  []*LeadOutcomeRow
	seen  map[leadOutcomeKey]bool
}

// Len is the number of rows.
func (r *LeadRows) Len() int { return len(r.rows) }

// Rows returns the rows in the order they were first added.
func (r *LeadRows) Rows() []*LeadOutcomeRow { return r.rows }

// Reset empties r.
func (r *LeadOutcomeRows) Reset() { *r = LeadOutcomeRows{} }

// Add keeps row in its table's rows unless the batch has the same outcome
// already; a row of no table (lead.forwarded) is dropped. It reports
// whether the row was kept.
func (r *LeadOutcomeRows) Add(row *LeadOutcomeRow) bool {
	var to *LeadRows
	switch row.Table {
	case tableRoutingDecisions:
		to = &r.Decisions
	case tableLeadDeliveries:
		to = &r.Deliveries
	case tableLeadFeedback:
		to = &r.Feedback
	default:
		return false
	}
	if to.seen == nil {
		to.table, to.seen = row.Table, map[leadOutcomeKey]bool{}
	}
	k := leadOutcomeKey{row.Tenant, row.LeadID, row.Type, row.Partner, row.Attempt, row.AtMS}
	if to.seen[k] {
		return false
	}
	to.seen[k] = true
	to.rows = append(to.rows, row)
	return true
}

// Insert writes the rows into their table in one INSERT.
func (r *LeadRows) Insert(ctx context.Context, conn driver.Conn, db string) error {
	switch r.table {
	case tableRoutingDecisions:
		return insertColumns(ctx, conn, db, r.table, RoutingDecisionColumns, r.decisionColumns())
	case tableLeadDeliveries:
		return insertColumns(ctx, conn, db, r.table, LeadDeliveryColumns, r.deliveryColumns())
	case tableLeadFeedback:
		return insertColumns(ctx, conn, db, r.table, LeadFeedbackColumns, r.feedbackColumns())
	}
	return fmt.Errorf("clickhouse: insert lead outcomes: no table (%d rows)", len(r.rows))
}

// common returns the columns every lead table has.
func (r *LeadRows) common() (tenant, lead, typ, partner []string, attempt []uint32, at []time.Time, ms []int64, partition []int32, offset []int64) {
	n := len(r.rows)
	tenant, lead, typ, partner = make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	attempt, at, ms, partition, offset = make([]uint32, n), make([]time.Time, n), make([]int64, n), make([]int32, n), make([]int64, n)
	for i, o := range r.rows {
		tenant[i], lead[i], typ[i], partner[i] = o.Tenant, o.LeadID, o.Type, o.Partner
		attempt[i], at[i], ms[i], partition[i], offset[i] = o.Attempt, o.At, o.AtMS, o.Partition, o.Offset
	}
	return
}

func (r *LeadRows) decisionColumns() []any {
	tenant, lead, typ, partner, attempt, at, ms, partition, offset := r.common()
	n := len(r.rows)
	cause, rule, reason, version := make([]string, n), make([]string, n), make([]string, n), make([]int64, n)
	for i, o := range r.rows {
		cause[i], rule[i], reason[i], version[i] = o.Cause, o.Rule, o.Reason, o.RuleVersion
	}
	return []any{tenant, lead, attempt, typ, cause, at, ms, rule, version, partner, reason, partition, offset}
}

func (r *LeadRows) deliveryColumns() []any {
	tenant, lead, typ, partner, attempt, at, ms, partition, offset := r.common()
	n := len(r.rows)
	ok, status, tries, errs := make([]uint8, n), make([]int32, n), make([]uint32, n), make([]string, n)
	for i, o := range r.rows {
		if o.OK {
			ok[i] = 1
		}
		status[i], tries[i], errs[i] = o.Status, o.Tries, o.Error
	}
	return []any{tenant, lead, attempt, partner, typ, ok, status, tries, errs, at, ms, partition, offset}
}

func (r *LeadRows) feedbackColumns() []any {
	tenant, lead, typ, partner, attempt, at, ms, partition, offset := r.common()
	n := len(r.rows)
	accepted, reason := make([]uint8, n), make([]string, n)
	for i, o := range r.rows {
		if o.Accepted {
			accepted[i] = 1
		}
		reason[i] = o.Reason
	}
	return []any{tenant, lead, attempt, partner, typ, accepted, reason, at, ms, partition, offset}
}
