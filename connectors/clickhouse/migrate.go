package clickhouse

import (
	"context"
	"fmt"
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
		// ANY LEFT JOIN ... USING with a subquery on the right: the one
		// join form 18.16 and current ClickHouse read alike. An event whose
		// node has no mapping yet (the profile snapshot is still on its
		// way) counts as its own profile, its node id.
		`
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
) USING (tenant, node_id)`,
		`DROP TABLE IF EXISTS {db}.report_activity_daily`,
		`
CREATE VIEW IF NOT EXISTS {db}.report_activity_daily AS
SELECT
    toDate(time) AS day,
    tenant,
    source,
    type,
    count() AS events,
    uniqExact(profile_id) AS profiles
FROM {db}.events_with_profile
GROUP BY day, tenant, source, type`,
		`DROP TABLE IF EXISTS {db}.report_profiles_daily`,
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
        profile_id,
        groupUniqArray(toDate(time)) AS days,
        min(toDate(time)) AS first_day
    FROM {db}.events_with_profile
    GROUP BY tenant, profile_id
)
ARRAY JOIN days AS day
GROUP BY day, tenant`,
		`
CREATE VIEW IF NOT EXISTS {db}.report_merges_daily AS
SELECT
    toDate(time) AS day,
    tenant,
    count() AS merges
FROM {db}.profile_merges FINAL
GROUP BY day, tenant`,
	}},
}

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
	done := map[uint32]bool{}
	for _, v := range applied {
		done[v] = true
	}
	todo := append([]Migration(nil), migrations...)
	sort.Slice(todo, func(a, b int) bool { return todo[a].Version < todo[b].Version })
	for _, m := range todo {
		if done[m.Version] {
			continue
		}
		for i, stmt := range m.Statements {
			if err := conn.Exec(ctx, expand(stmt, db)); err != nil {
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
	rows, err := conn.Query(ctx, "SELECT DISTINCT version FROM "+db+".schema_migrations ORDER BY version")
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
	done := map[uint32]bool{}
	if n > 0 {
		applied, err := AppliedMigrations(ctx, conn, db)
		if err != nil {
			return nil, err
		}
		for _, v := range applied {
			done[v] = true
		}
	}
	var out []Migration
	for _, m := range Migrations {
		if !done[m.Version] {
			out = append(out, m)
		}
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Version < out[b].Version })
	return out, nil
}

func expand(stmt, db string) string { return strings.ReplaceAll(stmt, "{db}", db) }
