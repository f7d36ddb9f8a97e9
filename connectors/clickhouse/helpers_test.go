package clickhouse

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/twmb/franz-go/pkg/kfake"
)

// The tests run against a real ClickHouse server: the one ./scripts/test
// starts (scripts/clickhouse start), found through ROLODEX_CLICKHOUSE_ADDR.
// Without it they fail; they never skip.
const (
	envAddr     = "ROLODEX_CLICKHOUSE_ADDR"
	envHTTPAddr = "ROLODEX_CLICKHOUSE_HTTP_ADDR"
	envDir      = "ROLODEX_CLICKHOUSE_DIR"
)

const howToStart = `run ./scripts/test, or start a throwaway server first:
    ./scripts/clickhouse install && eval "$(./scripts/clickhouse start /tmp/ch-dev)"`

func serverAddr(t testing.TB) string {
	t.Helper()
	addr := os.Getenv(envAddr)
	if addr == "" {
		t.Fatalf("%s is not set: these tests need a real ClickHouse server; %s", envAddr, howToStart)
	}
	return addr
}

// serverHTTPAddr is the HTTP interface of the same server
// (ROLODEX_CLICKHOUSE_HTTP_ADDR, else the http_port file of
// ROLODEX_CLICKHOUSE_DIR).
func serverHTTPAddr(t testing.TB) string {
	t.Helper()
	if addr := os.Getenv(envHTTPAddr); addr != "" {
		return addr
	}
	if dir := os.Getenv(envDir); dir != "" {
		if port, err := os.ReadFile(filepath.Join(dir, "http_port")); err == nil {
			return "127.0.0.1:" + strings.TrimSpace(string(port))
		}
	}
	t.Fatalf("%s is not set: these tests need a real ClickHouse server; %s", envHTTPAddr, howToStart)
	return ""
}

// insertPaths are the two ways the sink writes the events table: over
// the native protocol with clickhouse-go, and over HTTP as a Native block
// (httpinsert.go). Tests of the sink that insert events run on both.
var insertPaths = []struct {
	name string
	http bool
}{{"native", false}, {"http", true}}

// onPath sets cfg's HTTP address for the path: the server's, or none.
func onPath(t testing.TB, cfg *Config, http bool) {
	cfg.ClickHouse.HTTPAddr = ""
	if http {
		cfg.ClickHouse.HTTPAddr = serverHTTPAddr(t)
	}
}

// testDB opens a connection and migrates a database of the test's own
// (rolodex_test_<random>), dropped at the end unless the test failed (then
// its name is logged for a look with clickhouse-client).
func testDB(t testing.TB) (driver.Conn, string) {
	t.Helper()
	conn, db := openTestDB(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := Migrate(ctx, conn, db); err != nil {
		t.Fatal(err)
	}
	return conn, db
}

// openTestDB is testDB without the migration.
func openTestDB(t testing.TB) (driver.Conn, string) {
	t.Helper()
	addr := serverAddr(t)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	conn, err := Open(ctx, ConnConfig{Addr: addr})
	if err != nil {
		t.Fatalf("%v (is the server up? %s)", err, howToStart)
	}
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	db := "rolodex_test_" + hex.EncodeToString(b[:])
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("kept database %s on %s for inspection", db, addr)
		} else {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+db); err != nil {
				t.Logf("drop %s: %v", db, err)
			}
		}
		conn.Close()
	})
	return conn, db
}

// stopMerges stops ClickHouse's background merges of db.table until the
// server restarts (or SYSTEM START MERGES). Those merges collapse the copies
// of a key in a ReplacingMergeTree at a moment of the server's choosing, so
// a test that counts raw rows (not FINAL) stops them before the first insert.
func stopMerges(t testing.TB, conn driver.Conn, db, table string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := conn.Exec(ctx, "SYSTEM STOP MERGES "+db+"."+table); err != nil {
		t.Fatal(err)
	}
}

// count runs a SELECT count() query.
func count(t testing.TB, conn driver.Conn, query string) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var n uint64
	if err := conn.QueryRow(ctx, query).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

// newCluster starts an embedded Kafka broker with the sink's topics.
func newCluster(t testing.TB, partitions int, opts ...kfake.Opt) *kfake.Cluster {
	t.Helper()
	opts = append([]kfake.Opt{
		kfake.NumBrokers(1),
		kfake.SeedTopics(int32(partitions), Topics...),
	}, opts...)
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// reportsPanelSQL is the SQL of the one target of the panel title in the
// Grafana dashboard deploy/grafana/dashboards/reports.json; the test fails
// unless it reads table.
func reportsPanelSQL(t *testing.T, title, table string) string {
	t.Helper()
	raw, err := os.ReadFile("../../deploy/grafana/dashboards/reports.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string
			Targets []struct {
				RawSQL string `json:"rawSql"`
			}
		}
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatal(err)
	}
	var sql string
	for _, p := range dash.Panels {
		if p.Title == title && len(p.Targets) == 1 {
			sql = p.Targets[0].RawSQL
		}
	}
	if !strings.Contains(sql, table) {
		t.Fatalf("no panel %q reading %s: %q", title, table, sql)
	}
	return sql
}

// panelQuery is a panel's sql on database db, with the time range from-to
// (UTC, "2006-01-02 15:04:05") in its macros as the ClickHouse plugin
// expands them.
func panelQuery(sql, db, from, to string) string {
	return strings.NewReplacer("rolodex.", db+".",
		"$__fromTime", "toDateTime('"+from+"', 'UTC')",
		"$__toTime", "toDateTime('"+to+"', 'UTC')").Replace(sql)
}

// checkDecoded checks a decoder's answer (got, err): the error wantErr,
// word for word, when it is set, else no error and a row deeply equal to
// want.
func checkDecoded[R any](t *testing.T, got R, err error, want R, wantErr string) {
	t.Helper()
	if wantErr != "" {
		if err == nil || err.Error() != wantErr {
			t.Fatalf("err = %v, want %s", err, wantErr)
		}
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got  %+v\nwant %+v", got, want)
	}
}

// decodeAsSink decodes each of vs, as JSON, the way the sink does (key
// names its record key), as records at offsets from 0 on partition 0,
// and hands each row to add.
func decodeAsSink[V, R any](t testing.TB, vs []V, key func(V) string, decode func([]byte, string, int32, int64) (R, error), add func(R) bool) {
	t.Helper()
	for i, x := range vs {
		v, err := json.Marshal(x)
		if err != nil {
			t.Fatal(err)
		}
		row, err := decode(v, key(x), 0, int64(i))
		if err != nil {
			t.Fatal(err)
		}
		add(row)
	}
}
