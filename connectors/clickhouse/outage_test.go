//go:build unix

package clickhouse

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/rolodex/rolodex/schemas"
)

// serverDir is the directory of the server scripts/clickhouse started.
func serverDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv(envDir)
	if dir == "" {
		t.Fatalf("%s is not set: the outage test stops and restarts the server scripts/clickhouse started; %s", envDir, howToStart)
	}
	return dir
}

func serverPID(t *testing.T, dir string) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "pid"))
	if err != nil {
		t.Fatalf("the server's pid: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("the server's pid: %v", err)
	}
	return pid
}

// Under load, ClickHouse first hangs (SIGSTOP: connections stall, inserts
// time out mid-way), then goes away and comes back (a restart: connections
// refused, then a fresh server on the same data). Afterwards every event is
// there exactly once and the reports equal the reference.
func TestSinkOutage(t *testing.T) {
	for _, path := range insertPaths {
		t.Run(path.name, func(t *testing.T) { testSinkOutage(t, path.http) })
	}
}

func testSinkOutage(t *testing.T, http bool) {
	dir := serverDir(t)
	conn, db := testDB(t)
	cluster := newCluster(t, 4)
	brokers := cluster.ListenAddrs()
	w := genWorkload(4, 9000, 200)
	p := newProducer(t, brokers)
	p.deadLetters(t, w.deadLetters)

	cfg := testSinkConfig(t, brokers, db)
	cfg.BatchRows = 500
	cfg.WriteTimeout = 700 * time.Millisecond
	cfg.RetryBackoff = 50 * time.Millisecond
	cfg.MaxRetryBackoff = 400 * time.Millisecond
	cfg.ClickHouse.DialTimeout = time.Second
	onPath(t, &cfg, http)
	s, stop := runSink(t, cfg)

	// The load: events keep coming, in chunks, during both outages.
	const chunks = 9
	chunk := len(w.events) / chunks
	produced := 0
	produce := func() {
		if produced < chunks {
			hi := (produced + 1) * chunk
			if produced == chunks-1 {
				hi = len(w.events)
			}
			p.events(t, w.events[produced*chunk:hi])
			produced++
		}
	}
	start := time.Now()
	produce()
	waitFor(t, 30*time.Second, "the sink to write", func() bool {
		return count(t, conn, "SELECT count() FROM "+db+".events") > 0
	})

	t.Logf("first rows after %s", time.Since(start).Round(time.Millisecond))

	// 1. The server hangs.
	pid := serverPID(t, dir)
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	resumed := false
	resume := func() {
		if !resumed {
			resumed = true
			syscall.Kill(pid, syscall.SIGCONT)
		}
	}
	t.Cleanup(resume)
	for i := 0; i < 3; i++ {
		produce()
		time.Sleep(800 * time.Millisecond)
	}
	resume()
	retriesAfterHang := testutil.ToFloat64(s.Metrics().Retries)
	t.Logf("server paused for 2.4s: %v failed attempts", retriesAfterHang)
	if retriesAfterHang == 0 {
		t.Error("no write failed while the server was paused; the outage was not exercised")
	}
	produce()

	// 2. The server goes away and comes back.
	restart := exec.Command("../../scripts/clickhouse", "restart", dir)
	restart.Stderr = os.Stderr
	done := make(chan error, 1)
	if err := restart.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- restart.Wait() }()
	for produced < chunks {
		produce()
		time.Sleep(300 * time.Millisecond)
	}
	if err := <-done; err != nil {
		t.Fatalf("scripts/clickhouse restart %s: %v (later tests will fail too)", dir, err)
	}
	t.Logf("server restarted: %v failed attempts in all", testutil.ToFloat64(s.Metrics().Retries))

	final := uint64(len(finalEvents(w.events)))
	t0 := time.Now()
	waitFor(t, 45*time.Second, "every event and dead letter after the outages", func() bool {
		return count(t, conn, "SELECT count() FROM "+db+".events FINAL") >= final &&
			count(t, conn, "SELECT count() FROM "+db+".dead_letters FINAL") >= uint64(len(w.deadLetters))
	})
	t.Logf("caught up %s after the restart", time.Since(t0).Round(time.Millisecond))
	stop()
	t.Logf("%d records, %d distinct events, %d raw rows", len(w.events), final, count(t, conn, "SELECT count() FROM "+db+".events"))
	if n := count(t, conn, "SELECT count() FROM "+db+".events FINAL"); n != final {
		t.Fatalf("events FINAL: %d rows, want %d", n, final)
	}
	checkEvents(t, conn, db, w.events, p.eventsAt)
	checkDeadLetters(t, conn, db, w.deadLetters, p.deadAt)
	checkReports(t, conn, db, w, "")
	checkCommitted(t, brokers, "")
	if n := testutil.ToFloat64(s.Metrics().Undecodable.WithLabelValues(schemas.TopicEvents)); n != 0 {
		t.Errorf("%v undecodable records", n)
	}
}
