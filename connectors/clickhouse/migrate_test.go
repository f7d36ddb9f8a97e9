package clickhouse

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

func TestMigrateIsIdempotent(t *testing.T) {
	conn, db := openTestDB(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	pending, err := Pending(ctx, conn, db)
	if err != nil {
		t.Fatal(err)
	}
	if len(pending) != len(Migrations) {
		t.Fatalf("a database that does not exist has %d pending migrations, want %d", len(pending), len(Migrations))
	}
	for i := 0; i < 2; i++ {
		if err := Migrate(ctx, conn, db); err != nil {
			t.Fatalf("run %d: %v", i+1, err)
		}
	}
	if pending, err = Pending(ctx, conn, db); err != nil || len(pending) != 0 {
		t.Fatalf("after Migrate: pending %v, %v", pending, err)
	}
	got, err := AppliedMigrations(ctx, conn, db)
	if err != nil {
		t.Fatal(err)
	}
	var want []uint32
	for _, m := range Migrations {
		want = append(want, m.Version)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("applied %v, want %v", got, want)
	}
	if n := count(t, conn, "SELECT count() FROM "+db+".schema_migrations FINAL"); n != uint64(len(Migrations)) {
		t.Fatalf("schema_migrations FINAL holds %d rows, want %d", n, len(Migrations))
	}
	// Every table and view of docs/tables.md exists.
	rows, err := conn.Query(ctx, "SELECT name, engine FROM system.tables WHERE database = ? ORDER BY name", db)
	if err != nil {
		t.Fatal(err)
	}
	engines := map[string]string{}
	for rows.Next() {
		var name, engine string
		if err := rows.Scan(&name, &engine); err != nil {
			t.Fatal(err)
		}
		engines[name] = engine
	}
	rows.Close()
	checkSchemaTables(t, db, engines)
}

// schemaTables is every table and view of docs/tables.md, with its engine.
var schemaTables = map[string]string{
	"schema_migrations":           "ReplacingMergeTree",
	"events":                      "ReplacingMergeTree",
	"dead_letters":                "ReplacingMergeTree",
	"report_activity_daily":       "View",
	"report_profiles_daily":       "View",
	"report_dead_letters_daily":   "View",
	"profiles":                    "ReplacingMergeTree",
	"profile_merges":              "ReplacingMergeTree",
	"profile_nodes":               "ReplacingMergeTree",
	"events_with_profile":         "View",
	"report_merges_daily":         "View",
	"tag_changes":                 "ReplacingMergeTree",
	"report_tag_membership_daily": "View",
	"message_events":              "ReplacingMergeTree",
	"message_states":              "ReplacingMergeTree",
	"report_message_funnel":       "View",
	"routing_decisions":           "ReplacingMergeTree",
	"lead_deliveries":             "ReplacingMergeTree",
	"lead_feedback":               "ReplacingMergeTree",
	"report_leads_by_partner":     "View",
	"deliveries":                  "ReplacingMergeTree",
	"report_deliveries":           "View",
}

// checkSchemaTables compares the engines of db's tables (name -> engine, as
// in system.tables) with schemaTables, and checks every report's view
// exists.
func checkSchemaTables(t testing.TB, db string, engines map[string]string) {
	t.Helper()
	for name, engine := range schemaTables {
		if engines[name] != engine {
			t.Errorf("%s.%s: engine %q, want %q", db, name, engines[name], engine)
		}
	}
	for name := range engines {
		if _, ok := schemaTables[name]; !ok {
			t.Errorf("%s.%s: not in docs/tables.md (schemaTables)", db, name)
		}
	}
	for _, r := range Reports {
		if _, ok := engines[r.View]; !ok {
			t.Errorf("report %s: view %s does not exist", r.Name, r.View)
		}
	}
}

// releasedMigrations is Migrations up to version 6 as version 6 was first
// released: its events_with_profile joined an unnamed subquery, which
// current ClickHouse refuses (migrate.go, version 7).
func releasedMigrations(t testing.TB) []Migration {
	t.Helper()
	var out []Migration
	for _, m := range Migrations {
		if m.Version > 6 {
			continue
		}
		if m.Version == 6 {
			m.Statements = slices.Clone(m.Statements)
			named := ") AS node_profiles USING (tenant, node_id)"
			if strings.Count(m.Statements[0], named) != 1 {
				t.Fatalf("version 6, statement 1 no longer names its subquery node_profiles:%s", m.Statements[0])
			}
			m.Statements[0] = strings.Replace(m.Statements[0], named, ") USING (tenant, node_id)", 1)
		}
		out = append(out, m)
	}
	return out
}

// viewQueries returns the CREATE statement of every view of db, with the
// database name replaced by {db}.
func viewQueries(t testing.TB, conn driver.Conn, db string) map[string]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rows, err := conn.Query(ctx, "SELECT name, create_table_query FROM system.tables WHERE database = ? AND engine = 'View'", db)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var name, q string
		if err := rows.Scan(&name, &q); err != nil {
			t.Fatal(err)
		}
		out[name] = strings.ReplaceAll(q, db+".", "{db}.")
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// A database that applied version 6 as released gets, from the pending
// version 7, the very views a new database gets, and its reports give
// the reference's numbers.
func TestMigrateFromReleasedVersion6(t *testing.T) {
	connOld, old := openTestDB(t)
	connNew, fresh := testDB(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := migrate(ctx, connOld, old, releasedMigrations(t)); err != nil {
		t.Fatal(err)
	}
	before := viewQueries(t, connOld, old)
	if !strings.Contains(before["events_with_profile"], ") USING (tenant, node_id)") {
		t.Fatalf("the released version 6 made:\n%s", before["events_with_profile"])
	}
	pend, err := Pending(ctx, connOld, old)
	if err != nil {
		t.Fatal(err)
	}
	if got := versions(pend); !slices.Equal(got, []uint32{7, 8, 9, 10, 11, 12}) {
		t.Fatalf("pending after the released version 6: %v, want versions 7 to 12", got)
	}
	if err := Migrate(ctx, connOld, old); err != nil {
		t.Fatal(err)
	}
	got, want := viewQueries(t, connOld, old), viewQueries(t, connNew, fresh)
	if len(want) != len(Reports)+1 {
		t.Fatalf("a new database has %d views, want %d (events_with_profile and the reports): %v", len(want), len(Reports)+1, want)
	}
	for name, q := range want {
		if got[name] != q {
			t.Errorf("view %s after versions 7 to 10:\n%s\nwant (a new database's)\n%s", name, got[name], q)
		}
	}
	w := genWorkload(11, 300, 20)
	w.insert(t, ctx, connOld, old)
	checkReports(t, connOld, old, w, "")
}

// A migration added later with a lower version than one already applied is
// still applied, once. (The test steps use INSERT ... SELECT: an
// INSERT ... VALUES through Exec hangs against 18.16, which waits for data
// blocks from the client.)
func TestMigrateAppliesGaps(t *testing.T) {
	conn, db := openTestDB(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	one := Migration{Version: 1, Name: "a", Statements: []string{"CREATE TABLE IF NOT EXISTS {db}.a (x UInt8) ENGINE = MergeTree ORDER BY x"}}
	two := Migration{Version: 2, Name: "b", Statements: []string{"INSERT INTO {db}.a (x) SELECT 2"}}
	three := Migration{Version: 3, Name: "c", Statements: []string{"INSERT INTO {db}.a (x) SELECT 3"}}
	if err := migrate(ctx, conn, db, []Migration{one, three}); err != nil {
		t.Fatal(err)
	}
	if err := migrate(ctx, conn, db, []Migration{three, two, one}); err != nil {
		t.Fatal(err)
	}
	if err := migrate(ctx, conn, db, []Migration{one, two, three}); err != nil {
		t.Fatal(err)
	}
	if n := count(t, conn, "SELECT count() FROM "+db+".a"); n != 2 {
		t.Fatalf("a holds %d rows, want 2 (each insert migration applied once)", n)
	}
	got, err := AppliedMigrations(ctx, conn, db)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, []uint32{1, 2, 3}) {
		t.Fatalf("applied %v", got)
	}
}

func TestMigrateRejectsBadDatabaseName(t *testing.T) {
	for _, db := range []string{"", "rolodex; DROP TABLE x", "1abc", "a-b"} {
		if err := validDatabase(db); err == nil {
			t.Errorf("database %q accepted", db)
		}
	}
}

func versions(ms []Migration) []uint32 {
	var out []uint32
	for _, m := range ms {
		out = append(out, m.Version)
	}
	return out
}

// Version 8 on a database at version 7 that holds profiles: the new
// columns appear with their defaults in the rows already there; running
// version 8's statements again (a migrator that died before recording it)
// and two migrators at once change nothing. 18.16 has no ADD COLUMN IF
// NOT EXISTS: without the guard of execStatement the second run fails
// with code 44.
func TestMigrateVersion8OnExistingProfiles(t *testing.T) {
	conn, db := openTestDB(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var upTo7 []Migration
	var v8 Migration
	for _, m := range Migrations {
		if m.Version <= 7 {
			upTo7 = append(upTo7, m)
		}
		if m.Version == 8 {
			v8 = m
		}
	}
	if err := migrate(ctx, conn, db, upTo7); err != nil {
		t.Fatal(err)
	}
	old := `{"id":"p_a","tenant":"t1","identifiers":{"email":["a@x.com"]},"traits":{},"event_count":1,"counters":{"x":1},"merged_ids":[]}`
	row, err := DecodeProfile([]byte(old), "p_a", time.Now(), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	var rows ProfileRows
	rows.Add(row)
	// The columns version 4 made, as a sink of before version 8 wrote them.
	n := slices.Index(ProfileColumns, "kafka_offset") + 1
	if err := insertColumns(ctx, conn, db, tableProfiles, ProfileColumns[:n], rows.columns()[:n]); err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 2)
	for range 2 {
		go func() { errs <- Migrate(ctx, conn, db) }()
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	for i, stmt := range v8.Statements {
		if err := execStatement(ctx, conn, db, stmt); err != nil {
			t.Fatalf("version 8, statement %d, run again: %v", i+1, err)
		}
	}
	if err := conn.Exec(ctx, expand(v8.Statements[1], db)); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("an ADD COLUMN of an existing column without the guard: %v, want code 44 (already exists)", err)
	}
	checkQuery(t, conn, "SELECT profile_id, length(tags), blacklisted, blacklist_reason, length(consent_expires_ms), length(channels) FROM "+db+".profiles FINAL",
		[][]string{{"p_a", "0", "0", "", "0", "0"}})
	if got := count(t, conn, "SELECT count() FROM system.columns WHERE database = '"+db+"' AND table = 'profiles'"); got != uint64(len(ProfileColumns)+1) {
		t.Fatalf("profiles has %d columns, want %d (ProfileColumns and inserted_at)", got, len(ProfileColumns)+1)
	}
	for _, stmt := range v8.Statements {
		if table, column, ok := columnAdded(stmt); ok && (table != tableProfiles || !slices.Contains(ProfileColumns, column)) {
			t.Errorf("version 8 adds %s.%s, which the sink does not write", table, column)
		}
	}
}
