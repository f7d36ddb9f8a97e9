package clickhouse

import (
	"context"
	"slices"
	"testing"
	"time"
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
	for name, engine := range map[string]string{
		"schema_migrations":         "ReplacingMergeTree",
		"events":                    "ReplacingMergeTree",
		"dead_letters":              "ReplacingMergeTree",
		"report_activity_daily":     "View",
		"report_profiles_daily":     "View",
		"report_dead_letters_daily": "View",
		"profiles":                  "ReplacingMergeTree",
		"profile_merges":            "ReplacingMergeTree",
		"profile_nodes":             "ReplacingMergeTree",
		"events_with_profile":       "View",
		"report_merges_daily":       "View",
	} {
		if engines[name] != engine {
			t.Errorf("%s.%s: engine %q, want %q", db, name, engines[name], engine)
		}
	}
	for _, r := range Reports {
		if _, ok := engines[r.View]; !ok {
			t.Errorf("report %s: view %s does not exist", r.Name, r.View)
		}
	}
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
