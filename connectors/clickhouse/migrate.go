package clickhouse

import (
	"context"
	"fmt"
	"regexp"
	"sort"
	"strings"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// A Migration is one versioned step of the schema. Its statements run in
// order; each must be safe to run again (CREATE ... IF NOT EXISTS), because
// a migrator that dies between the DDL and recording the version runs the
// step again next time. "{db}" in a statement stands for the database.
//
// The DDL keeps to what ClickHouse 18.16 and current versions both
// understand (docs/tables.md lists what was left out and why).
type Migration struct {
	Version    uint32
	Name       string
	Statements []string
}

// Migrations is the schema, in version order. Versions are never reused or
// edited once released; a change is a new version. Gaps are allowed: a
// missing version is applied whenever it appears, in version order among
// the others still missing.
//
// Versions 4 to 6 came with the identity stage: 4 profiles (the latest
// state of every profile id, merged-away ids included), 5 profile_merges
// and profile_nodes (which profile every node belongs to now), 6 the view
// events_with_profile and the report views that count profiles instead of
// nodes. Why each version column is monotone is in profiles.go and
// docs/tables.md.
//
// Version 6 is the one edit of a released version. As released, its first
// statement failed on every ClickHouse from 20.x on, so no such server
// ever recorded it, and Migrate stopped there: a new version alone would
// never have been reached. The edit only names the joined subquery; on
// 18.16 the view reads the same either way. A database that applied the
// released text holds a view that current ClickHouse refuses to read
// (once its server is upgraded); version 7 drops and re-creates that view
// and the two report views over it, so every database ends with the same
// views. Both run on a new database (7 replaces 6's views by identical
// ones). The chDB test tier (scripts/chdb) runs every statement and report
// on current ClickHouse.
var Migrations = []Migration{
	{Version: 1, Name: "events", Statements: []string{`
CREATE TABLE IF NOT EXISTS {db}.events (
    tenant            String,
    event_id          String,
    type              String,
    source            String,
    partner           String,
    time              DateTime('UTC'),
    time_ms           Int64,
    received_at       DateTime('UTC'),
    received_at_ms    UInt64,
    node_id           String,
    identifier_types  Array(String),
    identifier_values Array(String),
    trait_keys        Array(String),
    trait_values      Array(String),
    property_keys     Array(String),
    property_values   Array(String),
    kafka_partition   Int32,
    kafka_offset      Int64,
    inserted_at       DateTime('UTC') DEFAULT now()
) ENGINE = ReplacingMergeTree(received_at_ms)
ORDER BY (tenant, source, event_id)`}},

	{Version: 2, Name: "dead_letters", Statements: []string{`
CREATE TABLE IF NOT EXISTS {db}.dead_letters (
    kafka_topic      String,
    kafka_partition  Int32,
    kafka_offset     Int64,
    time             DateTime('UTC'),
    time_ms          Int64,
    tenant           String,
    partner          String,
    reason           String,
    message          String,
    source_kind      String,
    request_id       String,
    source_topic     String,
    source_partition Int32,
    source_offset    Int64,
    source_file      String,
    source_row       Int64,
    payload          String,
    inserted_at      DateTime('UTC') DEFAULT now()
) ENGINE = ReplacingMergeTree
ORDER BY (kafka_topic, kafka_partition, kafka_offset)`}},

	{Version: 3, Name: "report views v1", Statements: []string{
		`
CREATE VIEW IF NOT EXISTS {db}.report_activity_daily AS
SELECT
    toDate(time) AS day,
    tenant,
    source,
    type,
    count() AS events,
    uniqExact(node_id) AS profiles
FROM {db}.events FINAL
GROUP BY day, tenant, source, type`,
		`
CREATE VIEW IF NOT EXISTS {db}.report_profiles_daily AS
SELECT
    day,
    tenant,
    count() AS active_profiles,
    countIf(day = first_day) AS new_profiles,
    countIf(day != first_day) AS returning_profiles
FROM
(
    SELECT
        tenant,
        node_id,
        groupUniqArray(toDate(time)) AS days,
        min(toDate(time)) AS first_day
    FROM {db}.events FINAL
    GROUP BY tenant, node_id
)
ARRAY JOIN days AS day
GROUP BY day, tenant`,
		`
CREATE VIEW IF NOT EXISTS {db}.report_dead_letters_daily AS
SELECT
    toDate(time) AS day,
    tenant,
    partner,
    reason,
    source_kind,
    count() AS dead_letters
FROM {db}.dead_letters FINAL
GROUP BY day, tenant, partner, reason, source_kind`,
	}},

	{Version: 4, Name: "profiles", Statements: []string{`
CREATE TABLE IF NOT EXISTS {db}.profiles (
    tenant            String,
    profile_id        String,
    merged_into       String,
    identifier_types  Array(String),
    identifier_values Array(String),
    trait_keys        Array(String),
    trait_values      Array(String),
    first_seen        DateTime('UTC'),
    first_seen_ms     Int64,
    last_seen         DateTime('UTC'),
    last_seen_ms      Int64,
    event_count       UInt64,
    counter_types     Array(String),
    counter_values    Array(UInt64),
    merged_ids        Array(String),
    members           UInt32,
    version           UInt64,
    updated_at        DateTime('UTC'),
    kafka_partition   Int32,
    kafka_offset      Int64,
    inserted_at       DateTime('UTC') DEFAULT now()
) ENGINE = ReplacingMergeTree(version)
ORDER BY (tenant, profile_id)`}},

	{Version: 5, Name: "profile_merges and profile_nodes", Statements: []string{
		`
CREATE TABLE IF NOT EXISTS {db}.profile_merges (
    tenant          String,
    from_id         String,
    into_id         String,
    time            DateTime('UTC'),
    time_ms         Int64,
    version         UInt64,
    kafka_partition Int32,
    kafka_offset    Int64,
    inserted_at     DateTime('UTC') DEFAULT now()
) ENGINE = ReplacingMergeTree(version)
ORDER BY (tenant, from_id)`,
		`
CREATE TABLE IF NOT EXISTS {db}.profile_nodes (
    tenant      String,
    node_id     String,
    profile_id  String,
    members     UInt32,
    inserted_at DateTime('UTC') DEFAULT now()
) ENGINE = ReplacingMergeTree(members)
ORDER BY (tenant, node_id)`,
	}},

	{Version: 6, Name: "events_with_profile and report views v2", Statements: []string{
		createEventsWithProfile,
		`DROP TABLE IF EXISTS {db}.report_activity_daily`,
		createReportActivityDailyV2,
		`DROP TABLE IF EXISTS {db}.report_profiles_daily`,
		createReportProfilesDailyV2,
		`
CREATE VIEW IF NOT EXISTS {db}.report_merges_daily AS
SELECT
    toDate(time) AS day,
    tenant,
    count() AS merges
FROM {db}.profile_merges FINAL
GROUP BY day, tenant`,
	}},

	// Version 6 as first released joined an unnamed subquery, which
	// ClickHouse 20.x and later refuse (code 206, "no alias for subquery
	// or table function"). 6 now names it; 7 gives a database that applied
	// the released text the named one, before its server moves on from
	// 18.16 (see Migrations above).
	{Version: 7, Name: "events_with_profile for current ClickHouse", Statements: []string{
		`DROP TABLE IF EXISTS {db}.report_activity_daily`,
		`DROP TABLE IF EXISTS {db}.report_profiles_daily`,
		`DROP TABLE IF EXISTS {db}.events_with_profile`,
		createEventsWithProfile,
		createReportActivityDailyV2,
		createReportProfilesDailyV2,
	}},

	// Version 8 came with profile status (docs/profile-status.md): the tag
	// changes of rolodex.profile.tags, the status columns of profiles,
	// and the daily tag membership. 18.16 has no ADD COLUMN IF NOT
	// EXISTS: an addColumn statement is run by Migrate only when
	// system.columns lacks the column (see addColumn).
	{Version: 8, Name: "tag_changes, profile status columns, report_tag_membership_daily", Statements: []string{
		`
CREATE TABLE IF NOT EXISTS {db}.tag_changes (
    tenant          String,
    profile_id      String,
    tag             String,
    op              String,
    cause           String,
    time            DateTime('UTC'),
    time_ms         Int64,
    kafka_partition Int32,
    kafka_offset    Int64,
    inserted_at     DateTime('UTC') DEFAULT now()
) ENGINE = ReplacingMergeTree
ORDER BY (tenant, tag, profile_id, time_ms, op, cause)`,
		addColumn(tableProfiles, "tags", "Array(String)"),
		addColumn(tableProfiles, "tag_sources", "Array(String)"),
		addColumn(tableProfiles, "blacklisted", "UInt8"),
		addColumn(tableProfiles, "blacklist_reason", "String"),
		addColumn(tableProfiles, "consent_purposes", "Array(String)"),
		addColumn(tableProfiles, "consent_statuses", "Array(String)"),
		addColumn(tableProfiles, "consent_expires_ms", "Array(Int64)"),
		addColumn(tableProfiles, "invalid_identifier_types", "Array(String)"),
		addColumn(tableProfiles, "invalid_identifier_values", "Array(String)"),
		addColumn(tableProfiles, "channels", "Array(String)"),
		// Per (tenant, tag): the day's net change (+1 per add, -1 per
		// remove, each distinct record once through FINAL), then a
		// running sum over the days in order. 18.16 has no window
		// functions: the days and their changes are collected as
		// (day, change) pairs, sorted by day (arraySort: groupArray keeps
		// no order of its own), summed with arrayCumSum and unrolled
		// with ARRAY JOIN. Days without a change have no row.
		`
CREATE VIEW IF NOT EXISTS {db}.report_tag_membership_daily AS
SELECT
    day,
    tenant,
    tag,
    members
FROM
(
    SELECT
        tenant,
        tag,
        arraySort(groupArray((change_day, change))) AS changes,
        arrayMap(c -> c.1, changes) AS days,
        arrayCumSum(arrayMap(c -> c.2, changes)) AS running
    FROM
    (
        SELECT
            tenant,
            tag,
            toDate(time) AS change_day,
            sum(if(op = 'added', 1, -1)) AS change
        FROM {db}.tag_changes FINAL
        GROUP BY tenant, tag, change_day
    )
    GROUP BY tenant, tag
)
ARRAY JOIN
    days AS day,
    running AS members`,
	}},

	// Version 9 came with the message lifecycle (docs/lifecycle.md): the
	// message events of rolodex.events, the latest fold of every message
	// from the lifecycle's table topic (messages.go), and the daily funnel
	// over them (docs/reports.md).
	{Version: 9, Name: "message_events, message_states, report_message_funnel", Statements: []string{
		`
CREATE TABLE IF NOT EXISTS {db}.message_events (
    tenant            String,
    message_id        String,
    event_id          String,
    state             String,
    channel           String,
    bounce            String,
    provider_event_id String,
    source            String,
    partner           String,
    time              DateTime('UTC'),
    time_ms           Int64,
    received_at       DateTime('UTC'),
    received_at_ms    UInt64,
    node_id           String,
    address_type      String,
    address           String,
    identifier_types  Array(String),
    identifier_values Array(String),
    kafka_partition   Int32,
    kafka_offset      Int64,
    inserted_at       DateTime('UTC') DEFAULT now()
) ENGINE = ReplacingMergeTree(received_at_ms)
ORDER BY (tenant, message_id, event_id)`,
		`
CREATE TABLE IF NOT EXISTS {db}.message_states (
    tenant           String,
    message_id       String,
    state            String,
    channel          String,
    bounce           String,
    recipient_types  Array(String),
    recipient_values Array(String),
    sent             UInt8,
    sent_at          DateTime('UTC'),
    sent_ms          Int64,
    events           UInt32,
    refused          UInt32,
    history_states   Array(String),
    history_times_ms Array(Int64),
    history_events   Array(String),
    history_hows     Array(String),
    history_bounces  Array(String),
    history_froms    Array(String),
    history_reasons  Array(String),
    version          UInt64,
    kafka_partition  Int32,
    kafka_offset     Int64,
    inserted_at      DateTime('UTC') DEFAULT now()
) ENGINE = ReplacingMergeTree(version)
ORDER BY (tenant, message_id)`,
		// Per message sent (sent = 1), on the day of its first send: the
		// states its history reached (entries neither refused nor
		// duplicates) and the kinds of its bounces; then per day, tenant
		// and channel the messages that reached each state, and the rates
		// (docs/reports.md; a rate whose denominator is 0 is 0).
		`
CREATE VIEW IF NOT EXISTS {db}.report_message_funnel AS
SELECT
    day,
    tenant,
    channel,
    count() AS sent,
    sum(has(reached, 'delivered')) AS delivered,
    sum(has(reached, 'opened')) AS opened,
    sum(has(reached, 'clicked')) AS clicked,
    sum(has(reached, 'bounced')) AS bounced,
    sum(has(bounces, 'hard')) AS bounced_hard,
    sum(has(bounces, 'soft')) AS bounced_soft,
    sum(has(reached, 'spam')) AS spam,
    sum(has(reached, 'unsubscribed')) AS unsubscribed,
    delivered / sent AS delivery_rate,
    if(delivered = 0, 0, opened / delivered) AS open_rate,
    if(delivered = 0, 0, clicked / delivered) AS click_rate,
    if(opened = 0, 0, clicked / opened) AS click_to_open_rate,
    bounced / sent AS bounce_rate,
    bounced_hard / sent AS hard_bounce_rate,
    bounced_soft / sent AS soft_bounce_rate,
    if(delivered = 0, 0, spam / delivered) AS spam_rate,
    if(delivered = 0, 0, unsubscribed / delivered) AS unsubscribe_rate
FROM
(
    SELECT
        toDate(sent_at) AS day,
        tenant,
        channel,
        arrayFilter((s, h) -> h != 'refused' AND h != 'duplicate', history_states, history_hows) AS reached,
        arrayFilter((b, s, h) -> s = 'bounced' AND h != 'refused' AND h != 'duplicate', history_bounces, history_states, history_hows) AS bounces
    FROM {db}.message_states FINAL
    WHERE sent = 1
)
GROUP BY day, tenant, channel`,
	}},

	// Version 10 came with lead routing (docs/routing.md): the outcomes of
	// rolodex.routing.outcomes by type (leads.go) and the daily report per
	// partner over them (docs/reports.md).
	{Version: 10, Name: "routing_decisions, lead_deliveries, lead_feedback, report_leads_by_partner", Statements: []string{
		`
CREATE TABLE IF NOT EXISTS {db}.routing_decisions (
    tenant          String,
    lead_id         String,
    attempt         UInt32,
    type            String,
    cause           String,
    at              DateTime('UTC'),
    at_ms           Int64,
    rule            String,
    rule_version    Int64,
    partner         String,
    reason          String,
    kafka_partition Int32,
    kafka_offset    Int64,
    inserted_at     DateTime('UTC') DEFAULT now()
) ENGINE = ReplacingMergeTree
ORDER BY (tenant, lead_id, attempt, type, at_ms)`,
		`
CREATE TABLE IF NOT EXISTS {db}.lead_deliveries (
    tenant          String,
    lead_id         String,
    attempt         UInt32,
    partner         String,
    type            String,
    ok              UInt8,
    status          Int32,
    tries           UInt32,
    error           String,
    at              DateTime('UTC'),
    at_ms           Int64,
    kafka_partition Int32,
    kafka_offset    Int64,
    inserted_at     DateTime('UTC') DEFAULT now()
) ENGINE = ReplacingMergeTree
ORDER BY (tenant, lead_id, attempt, partner, type, at_ms)`,
		`
CREATE TABLE IF NOT EXISTS {db}.lead_feedback (
    tenant          String,
    lead_id         String,
    attempt         UInt32,
    partner         String,
    type            String,
    accepted        UInt8,
    reason          String,
    at              DateTime('UTC'),
    at_ms           Int64,
    kafka_partition Int32,
    kafka_offset    Int64,
    inserted_at     DateTime('UTC') DEFAULT now()
) ENGINE = ReplacingMergeTree
ORDER BY (tenant, lead_id, attempt, type, at_ms)`,
		createReportLeadsByPartner,
	}},

	// Version 11 came with partner fan-out (docs/fanout.md, "ClickHouse
	// and reports"): the delivery stage's reports of
	// rolodex.fanout.reports (deliveries.go) and the daily report per
	// partner and topic over them.
	{Version: 11, Name: "deliveries, report_deliveries", Statements: []string{
		`
CREATE TABLE IF NOT EXISTS {db}.deliveries (
    tenant          String,
    partner         String,
    topic           String,
    subscription    String,
    webhook_id      String,
    kind            String,
    type            String,
    attempt         UInt32,
    status          Int32,
    result          String,
    latency_ms      Int64,
    error           String,
    at              DateTime('UTC'),
    at_ms           Int64,
    day             Date DEFAULT toDate(at),
    kafka_partition Int32,
    kafka_offset    Int64,
    inserted_at     DateTime('UTC') DEFAULT now()
) ENGINE = ReplacingMergeTree
ORDER BY (tenant, subscription, webhook_id, kind, attempt, type, at_ms)`,
		createReportDeliveries,
	}},

	// Version 12 came with the blacklisting cancel (docs/fanout.md,
	// "Blacklisting while a record waits"): a delivery dropped because its
	// profile was blacklisted before it was delivered ends with result
	// blacklisted, which report_deliveries counts as dropped. A view
	// cannot be altered: dropped and made again (version 11's text kept).
	{Version: 12, Name: "report_deliveries: blacklisted is dropped", Statements: []string{
		`DROP TABLE IF EXISTS {db}.report_deliveries`,
		createReportDeliveriesV2,
	}},
}

// createReportDeliveries is the report of fan-out deliveries per day
// (UTC), tenant, partner and topic (docs/fanout.md and docs/reports.md
// define every column). A delivery is one record for one subscription:
// (tenant, subscription, webhook id), however often it was posted (a
// crash, a replay: the same webhook id). Innermost, every report gets a
// rank: an attempt retry 1, success 2, permanent 3, gone 4; an end
// success 8, exhausted 9, permanent and refused (Kafka refused the record
// for good) 10, gone 11, dropped (inactive, not_allowed, expired; from version 12
// blacklisted too) 12. Per delivery, the report that decides it is
// the latest, an end before an attempt of the same millisecond:
// max(at_ms * 16 + rank), whose remainder by 16 is its rank; its day is
// the delivery's day. A delivery whose deciding report is an attempt to
// retry is in flight and in no row. Its latency is that of the request
// that reached the receiver (the earliest report with result success: the
// attempt's, or the end's when no attempt was reported, as for a Kafka
// write). Every per-delivery value is a max, an argMax, an argMin or any:
// copies of a report never count twice, before merges too (FINAL aside).
// Outermost, the percentiles of the delivered deliveries' latencies by
// nearest rank (the ceil(p * n)-th smallest; 0 when none): plain arrays,
// which ClickHouse 18.16 and current versions read alike (no quantile
// function: their interpolation differs between versions).
const createReportDeliveries = `
CREATE VIEW IF NOT EXISTS {db}.report_deliveries AS
SELECT
    day,
    tenant,
    partner,
    topic,
    deliveries,
    delivered,
    retried,
    failed,
    exhausted,
    dropped,
    if(delivered = 0, 0, latencies[intDiv(delivered + 1, 2)]) AS p50_latency_ms,
    if(delivered = 0, 0, latencies[intDiv(delivered * 99 + 99, 100)]) AS p99_latency_ms
FROM
(
    SELECT
        delivery_day AS day,
        tenant,
        delivery_partner AS partner,
        delivery_topic AS topic,
        count() AS deliveries,
        sum(outcome = 'delivered') AS delivered,
        sum(max_attempt > 1) AS retried,
        sum(outcome = 'failed') AS failed,
        sum(outcome = 'exhausted') AS exhausted,
        sum(outcome = 'dropped') AS dropped,
        arraySort(groupArrayIf(delivery_latency_ms, outcome = 'delivered')) AS latencies
    FROM
    (
        SELECT
            tenant,
            subscription,
            webhook_id,
            any(partner) AS delivery_partner,
            any(topic) AS delivery_topic,
            max(at_ms * 16 + rank) % 16 AS last_rank,
            multiIf(last_rank IN (2, 8), 'delivered', last_rank IN (3, 4, 10, 11), 'failed', last_rank = 9, 'exhausted',
                last_rank = 12, 'dropped', '') AS outcome,
            argMax(day, at_ms * 16 + rank) AS delivery_day,
            max(attempt) AS max_attempt,
            argMinIf(latency_ms, at_ms * 16 + rank, result = 'success') AS delivery_latency_ms
        FROM
        (
            SELECT
                tenant, subscription, webhook_id, partner, topic, day, attempt, result, latency_ms, at_ms,
                multiIf(kind = 'attempt',
                        multiIf(result = 'retry', 1, result = 'success', 2, result = 'permanent', 3, result = 'gone', 4, 0),
                        multiIf(result = 'success', 8, result = 'exhausted', 9, result IN ('permanent', 'refused'), 10, result = 'gone', 11,
                                result IN ('inactive', 'not_allowed', 'expired'), 12, 0)) AS rank
            FROM {db}.deliveries FINAL
        )
        GROUP BY tenant, subscription, webhook_id
    )
    WHERE outcome != ''
    GROUP BY delivery_day, tenant, delivery_partner, delivery_topic
)`

// createReportDeliveriesV2 is createReportDeliveries (version 11, kept as
// released) with result blacklisted among the drops (rank 12).
var createReportDeliveriesV2 = strings.Replace(createReportDeliveries,
	"result IN ('inactive', 'not_allowed', 'expired')", "result IN ('inactive', 'not_allowed', 'expired', 'blacklisted')", 1)

// createReportLeadsByPartner is the report of lead routing per day (UTC,
// of the routing decision) and partner (docs/reports.md defines every
// column). A row is a cohort: the partner's attempts routed that day, and
// what became of each. Innermost, every outcome of an attempt is one row
// of (tenant, lead_id, attempt, kind): its decision, its delivery reports,
// its feedback, and the lead's next decision (attempt + 1) as kind 'next'
// under this attempt's number. Per attempt, each fact is "at least one
// such row", so copies of a record never count twice. Then per day,
// tenant and partner the sums, and the accept times (acceptance minus the
// routing decision, ms) sorted. Outermost, the median of those: the middle
// one, or the mean of the two middle ones (0 when none). No JOIN (18.16
// reads few join forms as current ClickHouse does), no window function,
// no median function (its interpolation differs between versions): plain
// aggregates and arrays, which both read alike. Every branch of the UNION
// ALL has the same column types; the columns take the first branch's
// names (the 'next' branch's attempt is aliased "previous": an alias named
// attempt would stand for attempt - 1 in its WHERE too).
const createReportLeadsByPartner = `
CREATE VIEW IF NOT EXISTS {db}.report_leads_by_partner AS
SELECT
    day,
    tenant,
    partner,
    routed,
    delivered,
    delivery_failed,
    accepted,
    rejected,
    rerouted,
    sla_misses,
    if(accepted = 0, 0, (accept_ms[intDiv(accepted + 1, 2)] + accept_ms[intDiv(accepted + 2, 2)]) / 2000) AS median_accept_seconds
FROM
(
    SELECT
        toDate(routed_at) AS day,
        tenant,
        attempt_partner AS partner,
        count() AS routed,
        sum(is_delivered) AS delivered,
        sum(is_failed) AS delivery_failed,
        sum(is_accepted) AS accepted,
        sum(is_rejected) AS rejected,
        sum(is_rerouted) AS rerouted,
        sum(is_sla_miss) AS sla_misses,
        arraySort(groupArrayIf(accepted_ms - routed_ms, is_accepted = 1)) AS accept_ms
    FROM
    (
        SELECT
            tenant,
            lead_id,
            attempt,
            anyIf(partner, kind = 'lead.routed') AS attempt_partner,
            anyIf(at, kind = 'lead.routed') AS routed_at,
            anyIf(at_ms, kind = 'lead.routed') AS routed_ms,
            countIf(kind = 'lead.routed') > 0 AS is_routed,
            countIf(kind = 'lead.distributed') > 0 AS is_delivered,
            countIf(kind = 'lead.delivery_failed') > 0 AS is_failed,
            countIf(kind = 'lead.accepted') > 0 AS is_accepted,
            minIf(at_ms, kind = 'lead.accepted') AS accepted_ms,
            countIf(kind = 'lead.rejected') > 0 AS is_rejected,
            countIf(kind = 'next') > 0 AS is_rerouted,
            countIf(kind = 'next' AND cause = 'sla') > 0 AS is_sla_miss
        FROM
        (
            SELECT tenant, lead_id, attempt, type AS kind, partner, cause, at, at_ms
            FROM {db}.routing_decisions FINAL
            UNION ALL
            SELECT tenant, lead_id, toUInt32(attempt - 1) AS previous, 'next' AS kind, '' AS partner, cause, at, at_ms
            FROM {db}.routing_decisions FINAL
            WHERE attempt > 1
            UNION ALL
            SELECT tenant, lead_id, attempt, type AS kind, partner, '' AS cause, at, at_ms
            FROM {db}.lead_deliveries FINAL
            UNION ALL
            SELECT tenant, lead_id, attempt, type AS kind, partner, '' AS cause, at, at_ms
            FROM {db}.lead_feedback FINAL
        )
        GROUP BY tenant, lead_id, attempt
    )
    WHERE is_routed
    GROUP BY day, tenant, attempt_partner
)`

// addColumn is the statement that adds a column to a table. ClickHouse
// 18.16 has no ALTER TABLE ... ADD COLUMN IF NOT EXISTS (a syntax error;
// without IF NOT EXISTS a second run fails with code 44, "column with this
// name already exists"), so Migrate recognises these statements
// (columnAdded) and runs one only when system.columns lacks the column:
// running the migration again, or from two migrators at once, ends in the
// same schema. A new column of an existing table gets the type's default
// (an empty array, 0, an empty string) in the rows already there.
func addColumn(table, column, typ string) string {
	return "ALTER TABLE {db}." + table + " ADD COLUMN " + column + " " + typ
}

var addColumnRe = regexp.MustCompile(`^ALTER TABLE \{db\}\.([A-Za-z_][A-Za-z0-9_]*) ADD COLUMN ([A-Za-z_][A-Za-z0-9_]*) [^,]+$`)

// columnAdded returns the table and column an addColumn statement adds; ok
// is false for every other statement.
func columnAdded(stmt string) (table, column string, ok bool) {
	m := addColumnRe.FindStringSubmatch(stmt)
	if m == nil {
		return "", "", false
	}
	return m[1], m[2], true
}

// columnsQuery counts the columns called column of db.table.
const columnsQuery = "SELECT count() FROM system.columns WHERE database = ? AND table = ? AND name = ?"

func hasColumn(ctx context.Context, conn driver.Conn, db, table, column string) (bool, error) {
	var n uint64
	if err := conn.QueryRow(ctx, columnsQuery, db, table, column).Scan(&n); err != nil {
		return false, fmt.Errorf("clickhouse: look for column %s.%s.%s: %w", db, table, column, err)
	}
	return n > 0, nil
}

// execStatement runs one statement of a migration: an addColumn statement
// only when the column is missing (and a failure is no failure when the
// column is there afterwards: another migrator added it meanwhile).
func execStatement(ctx context.Context, conn driver.Conn, db, stmt string) error {
	table, column, ok := columnAdded(stmt)
	if !ok {
		return conn.Exec(ctx, expand(stmt, db))
	}
	if has, err := hasColumn(ctx, conn, db, table, column); err != nil || has {
		return err
	}
	err := conn.Exec(ctx, expand(stmt, db))
	if err != nil {
		if has, herr := hasColumn(ctx, conn, db, table, column); herr == nil && has {
			return nil
		}
	}
	return err
}

// The views that versions 6 and 7 both create.
const (
	// createEventsWithProfile: ANY LEFT JOIN ... USING with a subquery on
	// the right, which has an alias of its own (current ClickHouse refuses
	// one without): the one join form 18.16 and current ClickHouse read
	// alike. An event whose node has no mapping yet (the profile snapshot
	// is still on its way) counts as its own profile, its node id.
	createEventsWithProfile = `
CREATE VIEW IF NOT EXISTS {db}.events_with_profile AS
SELECT
    tenant,
    event_id,
    type,
    source,
    partner,
    time,
    time_ms,
    received_at,
    received_at_ms,
    node_id,
    if(mapped_profile_id = '', node_id, mapped_profile_id) AS profile_id,
    mapped_profile_id != '' AS profile_resolved,
    identifier_types,
    identifier_values,
    trait_keys,
    trait_values,
    property_keys,
    property_values,
    kafka_partition,
    kafka_offset
FROM {db}.events FINAL
ANY LEFT JOIN
(
    SELECT tenant, node_id, profile_id AS mapped_profile_id
    FROM {db}.profile_nodes FINAL
) AS node_profiles USING (tenant, node_id)`

	createReportActivityDailyV2 = `
CREATE VIEW IF NOT EXISTS {db}.report_activity_daily AS
SELECT
    toDate(time) AS day,
    tenant,
    source,
    type,
    count() AS events,
    uniqExact(profile_id) AS profiles
FROM {db}.events_with_profile
GROUP BY day, tenant, source, type`

	createReportProfilesDailyV2 = `
CREATE VIEW IF NOT EXISTS {db}.report_profiles_daily AS
SELECT
    day,
    tenant,
    count() AS active_profiles,
    countIf(day = first_day) AS new_profiles,
    countIf(day != first_day) AS returning_profiles
FROM
(
    SELECT
        tenant,
        profile_id,
        groupUniqArray(toDate(time)) AS days,
        min(toDate(time)) AS first_day
    FROM {db}.events_with_profile
    GROUP BY tenant, profile_id
)
ARRAY JOIN days AS day
GROUP BY day, tenant`
)

const migrationsTable = `
CREATE TABLE IF NOT EXISTS {db}.schema_migrations (
    version    UInt32,
    name       String,
    applied_at DateTime('UTC') DEFAULT now()
) ENGINE = ReplacingMergeTree
ORDER BY version`

// Migrate brings database db up to the latest schema: it creates the
// database and the schema_migrations table if missing, then applies every
// migration whose version is not recorded there, in version order, and
// records it. Running it again, or from several processes at once, is
// harmless.
func Migrate(ctx context.Context, conn driver.Conn, db string) error {
	return migrate(ctx, conn, db, Migrations)
}

func migrate(ctx context.Context, conn driver.Conn, db string, migrations []Migration) error {
	if err := validDatabase(db); err != nil {
		return err
	}
	if err := conn.Exec(ctx, "CREATE DATABASE IF NOT EXISTS "+db); err != nil {
		return fmt.Errorf("clickhouse: migrate: create database %s: %w", db, err)
	}
	if err := conn.Exec(ctx, expand(migrationsTable, db)); err != nil {
		return fmt.Errorf("clickhouse: migrate: create %s.schema_migrations: %w", db, err)
	}
	applied, err := AppliedMigrations(ctx, conn, db)
	if err != nil {
		return err
	}
	for _, m := range pending(migrations, applied) {
		for i, stmt := range m.Statements {
			if err := execStatement(ctx, conn, db, stmt); err != nil {
				return fmt.Errorf("clickhouse: migrate %s to version %d (%s), statement %d: %w", db, m.Version, m.Name, i+1, err)
			}
		}
		b, err := conn.PrepareBatch(ctx, "INSERT INTO "+db+".schema_migrations (version, name)")
		if err != nil {
			return fmt.Errorf("clickhouse: migrate %s: record version %d: %w", db, m.Version, err)
		}
		err = b.Append(m.Version, m.Name)
		if err == nil {
			err = b.Send()
		}
		b.Close()
		if err != nil {
			return fmt.Errorf("clickhouse: migrate %s: record version %d: %w", db, m.Version, err)
		}
	}
	return nil
}

// AppliedMigrations returns the versions recorded in db.schema_migrations,
// in ascending order.
func AppliedMigrations(ctx context.Context, conn driver.Conn, db string) ([]uint32, error) {
	if err := validDatabase(db); err != nil {
		return nil, err
	}
	var out []uint32
	rows, err := conn.Query(ctx, appliedQuery(db))
	if err != nil {
		return nil, fmt.Errorf("clickhouse: read %s.schema_migrations: %w", db, err)
	}
	defer rows.Close()
	for rows.Next() {
		var v uint32
		if err := rows.Scan(&v); err != nil {
			return nil, fmt.Errorf("clickhouse: read %s.schema_migrations: %w", db, err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("clickhouse: read %s.schema_migrations: %w", db, err)
	}
	return out, nil
}

// appliedQuery reads the applied versions of db, in ascending order.
func appliedQuery(db string) string {
	return "SELECT DISTINCT version FROM " + db + ".schema_migrations ORDER BY version"
}

// Pending returns the migrations not applied to db yet, in version order
// (all of them when db or its schema_migrations table does not exist).
func Pending(ctx context.Context, conn driver.Conn, db string) ([]Migration, error) {
	if err := validDatabase(db); err != nil {
		return nil, err
	}
	var n uint64
	if err := conn.QueryRow(ctx, "SELECT count() FROM system.tables WHERE database = ? AND name = 'schema_migrations'", db).Scan(&n); err != nil {
		return nil, fmt.Errorf("clickhouse: look for %s.schema_migrations: %w", db, err)
	}
	var applied []uint32
	if n > 0 {
		var err error
		if applied, err = AppliedMigrations(ctx, conn, db); err != nil {
			return nil, err
		}
	}
	return pending(Migrations, applied), nil
}

// pending returns the migrations whose version is not in applied, in
// version order: what Migrate runs next.
func pending(migrations []Migration, applied []uint32) []Migration {
	done := map[uint32]bool{}
	for _, v := range applied {
		done[v] = true
	}
	var out []Migration
	for _, m := range migrations {
		if !done[m.Version] {
			out = append(out, m)
		}
	}
	sort.SliceStable(out, func(a, b int) bool { return out[a].Version < out[b].Version })
	return out
}

func expand(stmt, db string) string { return strings.ReplaceAll(stmt, "{db}", db) }
