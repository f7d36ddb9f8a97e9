//go:build linux

package clickhouse

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/rolodex/rolodex/schemas"
)

// The sink benchmark: b.N events, each run against the same ClickHouse
// server, in one go test run:
//
//	clickhouse-client   the baseline: clickhouse-client inserting the very
//	                    rows the sink writes, in Native format, from a file
//	                    (one process, one INSERT; its start is timed too)
//	clickhouse-client-kafka-order
//	                    the same rows in the sink's order (by Kafka partition
//	                    and offset), not sorted by the table's key
//	driver-insert       this package's insert alone (EventRows.Insert) of
//	                    the same rows, already decoded, 50,000 per INSERT
//	driver-insert-http  the same over HTTP, a Native block encoded with
//	                    ch-go (httpinsert.go); -lz4: the body compressed
//	sink/batch=N        the whole sink, events over the native protocol:
//	                    the events sit Avro-encoded on an embedded Kafka
//	                    broker (4 partitions); timed from Run until
//	                    ClickHouse accepted the last row
//	sink/http-batch=N   the same, events over HTTP (ConnConfig.HTTPAddr)
//
// The sink phases' broker is a kfake cluster in a process of its own (this
// test binary, started again), so that the sink's CPU per row is the
// sink's, as deployed, and not the broker's too; with
// ROLODEX_BENCH_SINK_EMBEDDED_BROKER=1 it runs in the test process, as it
// did before 2026-12-07 (the figures in docs/benchmarks.md say which).
//
// Run it with a fixed count so every phase moves the same rows:
//
//	go test -run '^$' -bench . -benchtime 200000x ./connectors/clickhouse/
//
// Each reports rows/s and CPU per row: client-us/row is the CPU of the
// client side (clickhouse-client's process; for the Go phases this test
// process, which hosts the sink's Kafka broker only when it is embedded), and
// server-us/row the ClickHouse server's (from /proc, when
// ROLODEX_CLICKHOUSE_DIR names the server's directory). CPU per row barely
// moves when other processes compete for the cores; rows/s does.
// docs/benchmarks.md has the results.

// benchEvents caches the generated events by count.
var benchEvents = struct {
	sync.Mutex
	m map[int]*workload
}{m: map[int]*workload{}}

func benchWorkload(n int) *workload {
	benchEvents.Lock()
	defer benchEvents.Unlock()
	if w, ok := benchEvents.m[n]; ok {
		return w
	}
	w := genWorkload(42, n, 0)
	benchEvents.m[n] = w
	return w
}

// forgetBenchWorkload drops the cached workload of n events (the next
// benchmark of n events generates it again, the same).
func forgetBenchWorkload(n int) {
	benchEvents.Lock()
	defer benchEvents.Unlock()
	delete(benchEvents.m, n)
}

func benchRows(w *workload) *EventRows {
	var r EventRows
	for i, ev := range w.events {
		r.Add(ev, ev.Key(), int32(i%4), int64(i/4))
	}
	return &r
}

func BenchmarkClickHouseClientNative(b *testing.B) { benchClientNative(b, "") }

// BenchmarkClickHouseClientNativeBatch50000 is the baseline at the sink's
// default batch: the same file, but the server writes a part per 50,000 rows
// (as it does for the sink's 50,000-row INSERTs) instead of one part for
// the whole file, so it pays for as many parts, and their merges, as for the
// sink.
func BenchmarkClickHouseClientNativeBatch50000(b *testing.B) {
	benchClientNative(b, "", "--max_insert_block_size", "50000", "--min_insert_block_size_rows", "50000", "--min_insert_block_size_bytes", "0")
}

// BenchmarkClickHouseClientNativeKafkaOrder is the baseline with the rows
// in the order the sink inserts them (by Kafka partition and offset)
// instead of the table's sorting key: the file of the baseline above is
// exported from a MergeTree table, so its rows arrive already sorted by
// (tenant, source, event_id), and the server's sort of the inserted block
// costs it less than the sink's rows, which come in Kafka's order.
func BenchmarkClickHouseClientNativeKafkaOrder(b *testing.B) {
	benchClientNative(b, " ORDER BY kafka_partition, kafka_offset")
}

// benchClientNative times clickhouse-client inserting the sink's rows
// from a Native file exported from a staging table with orderBy.
func benchClientNative(b *testing.B, orderBy string, insertArgs ...string) {
	conn, db := testDB(b)
	ctx := context.Background()
	w := benchWorkload(b.N)
	// The Native file holds exactly the sink's rows: inserted through this
	// package into a staging table, then exported by clickhouse-client.
	if err := conn.Exec(ctx, "CREATE TABLE "+db+".staging AS "+db+".events"); err != nil {
		b.Fatal(err)
	}
	if err := insertInChunks(ctx, benchRows(w), db+"_staging", func(r *EventRows) error {
		return insertColumns(ctx, conn, db, "staging", EventColumns, r.columns())
	}); err != nil {
		b.Fatal(err)
	}
	_, port, err := net.SplitHostPort(serverAddr(b))
	if err != nil {
		b.Fatal(err)
	}
	file := filepath.Join(b.TempDir(), "events.native")
	out, err := os.Create(file)
	if err != nil {
		b.Fatal(err)
	}
	export := exec.Command("clickhouse-client", "--host", "127.0.0.1", "--port", port,
		"--query", "SELECT "+strings.Join(EventColumns, ", ")+" FROM "+db+".staging"+orderBy+" FORMAT Native")
	export.Stdout = out
	export.Stderr = os.Stderr
	if err := export.Run(); err != nil {
		b.Fatalf("clickhouse-client export: %v", err)
	}
	out.Close()
	st, _ := os.Stat(file)

	in, err := os.Open(file)
	if err != nil {
		b.Fatal(err)
	}
	defer in.Close()
	insert := exec.Command("clickhouse-client", append([]string{"--host", "127.0.0.1", "--port", port,
		"--query", "INSERT INTO " + db + ".events (" + strings.Join(EventColumns, ", ") + ") FORMAT Native"}, insertArgs...)...)
	insert.Stdin = in
	insert.Stderr = os.Stderr
	srv0, srvOK := serverCPU()
	b.ResetTimer()
	start := time.Now()
	if err := insert.Run(); err != nil {
		b.Fatalf("clickhouse-client insert: %v", err)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	srv1, _ := serverCPU()
	reportCPU(b, insert.ProcessState.UserTime()+insert.ProcessState.SystemTime(), srv1-srv0, srvOK)
	if n := count(b, conn, "SELECT count() FROM "+db+".events"); n != uint64(b.N) {
		// Background merges only collapse copies, and the input has one
		// row per record; a partial count means a failed insert.
		if n < uint64(len(finalEvents(w.events))) {
			b.Fatalf("events holds %d rows after the insert, want %d", n, b.N)
		}
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "rows/s")
	b.ReportMetric(float64(st.Size())/float64(b.N), "native-B/row")
	reportParts(b, conn, db)
}

// insertInChunks inserts r 50,000 rows at a time.
func insertInChunks(ctx context.Context, r *EventRows, _ string, insert func(*EventRows) error) error {
	const chunk = 50_000
	for lo := 0; lo < r.Len(); lo += chunk {
		hi := min(lo+chunk, r.Len())
		part := &EventRows{
			tenant: r.tenant[lo:hi], eventID: r.eventID[lo:hi], typ: r.typ[lo:hi], source: r.source[lo:hi], partner: r.partner[lo:hi],
			time: r.time[lo:hi], timeMS: r.timeMS[lo:hi], receivedAt: r.receivedAt[lo:hi], receivedAtMS: r.receivedAtMS[lo:hi],
			nodeID: r.nodeID[lo:hi], idTypes: r.idTypes[lo:hi], idValues: r.idValues[lo:hi],
			traitKeys: r.traitKeys[lo:hi], traitValues: r.traitValues[lo:hi], propKeys: r.propKeys[lo:hi], propValues: r.propValues[lo:hi],
			partition: r.partition[lo:hi], offset: r.offset[lo:hi],
		}
		if err := insert(part); err != nil {
			return err
		}
	}
	return nil
}

func BenchmarkDriverInsert(b *testing.B) {
	conn, db := testDB(b)
	ctx := context.Background()
	benchInsert(b, func(r *EventRows) error { return r.Insert(ctx, conn, db) })
}

func BenchmarkDriverInsertHTTP(b *testing.B) { benchInsertHTTP(b, false) }

func BenchmarkDriverInsertHTTPLZ4(b *testing.B) { benchInsertHTTP(b, true) }

func benchInsertHTTP(b *testing.B, compressed bool) {
	_, db := testDB(b)
	h := newHTTPInserter(ConnConfig{HTTPAddr: serverHTTPAddr(b), Username: "default", DialTimeout: 5 * time.Second, ReadTimeout: time.Minute})
	defer h.close()
	h.compress = compressed
	ctx := context.Background()
	benchInsert(b, func(r *EventRows) error { return h.insertEvents(ctx, r, db, tableEvents) })
}

// benchInsert times insert of the benchmark's rows, 50,000 at a time.
func benchInsert(b *testing.B, insert func(*EventRows) error) {
	rows := benchRows(benchWorkload(b.N))
	runtime.GC()
	cpu0, srv0 := processCPU(), must(serverCPU())
	b.ResetTimer()
	start := time.Now()
	if err := insertInChunks(context.Background(), rows, "", insert); err != nil {
		b.Fatal(err)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	srv1, srvOK := serverCPU()
	reportCPU(b, processCPU()-cpu0, srv1-srv0, srvOK)
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "rows/s")
}

func BenchmarkSink(b *testing.B) {
	for _, batch := range []int{1_000, 5_000, 10_000, 50_000, 100_000} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) { benchSink(b, batch, false) })
		b.Run(fmt.Sprintf("http-batch=%d", batch), func(b *testing.B) { benchSink(b, batch, true) })
	}
}

func benchSink(b *testing.B, batchRows int, http bool) {
	conn, db := openTestDB(b) // the sink migrates
	w := benchWorkload(b.N)
	brokers, brokerCPU := benchBrokers(b, 4)
	p := newProducer(b, brokers)
	p.events(b, w.events)
	// The events are on the broker now: the generated workload is let go
	// before the timer starts, so that the collector does not scan it
	// while the sink runs (a deployed sink holds no such heap; its CPU
	// per row is what is measured). ROLODEX_BENCH_SINK_KEEP_WORKLOAD=1
	// keeps it, as before 2026-12-07.
	if os.Getenv("ROLODEX_BENCH_SINK_KEEP_WORKLOAD") != "1" {
		forgetBenchWorkload(b.N)
	}

	cfg := testSinkConfig(b, brokers, db)
	onPath(b, &cfg, http)
	cfg.BatchRows = batchRows
	cfg.BatchInterval = time.Second
	s, err := NewSink(cfg)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := s.Connect(ctx); err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	done := make(chan error, 1)
	written := func() int {
		return int(testutil.ToFloat64(s.Metrics().RowsWritten.WithLabelValues(tableEvents)))
	}
	runtime.GC()
	cpu0, srv0, brk0 := processCPU(), must(serverCPU()), must(brokerCPU())
	b.ResetTimer()
	start := time.Now()
	go func() { done <- s.Run(ctx) }()
	for written() < b.N {
		select {
		case err := <-done:
			b.Fatalf("Run returned early: %v", err)
		case <-time.After(2 * time.Millisecond):
		}
	}
	elapsed := time.Since(start)
	b.StopTimer()
	srv1, srvOK := serverCPU()
	reportCPU(b, processCPU()-cpu0, srv1-srv0, srvOK)
	if brk1, ok := brokerCPU(); ok {
		// The Kafka broker serving the sink's fetches: a cost on the same
		// two cores that the baseline, reading a file, does not have.
		b.ReportMetric(float64((brk1-brk0).Microseconds())/float64(b.N), "broker-us/row")
	}
	cancel()
	<-done
	batches := testutil.ToFloat64(s.Metrics().Batches)
	var h dto.Metric
	if err := s.Metrics().BatchDuration.Write(&h); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "rows/s")
	b.ReportMetric(float64(b.N)/max(batches, 1), "rows/batch")
	// The share of the time spent inserting into ClickHouse; the rest is
	// fetching from Kafka, decoding and building the columns.
	b.ReportMetric(h.GetHistogram().GetSampleSum()/elapsed.Seconds(), "insert-share")
	if n := testutil.ToFloat64(s.Metrics().Undecodable.WithLabelValues(schemas.TopicEvents)); n != 0 {
		b.Fatalf("%v undecodable records", n)
	}
	reportParts(b, conn, db)
}

// reportParts reports how many parts the inserts wrote into db.events:
// parts of level 0, active or already merged away (ClickHouse keeps a
// merged part's directory for old_parts_lifetime, 8 minutes). Each is a
// part the server sorted and wrote, and later merges.
func reportParts(b *testing.B, conn driver.Conn, db string) {
	b.ReportMetric(float64(count(b, conn, "SELECT count() FROM system.parts WHERE database = '"+db+"' AND table = 'events' AND level = 0")), "parts")
}

func reportCPU(b *testing.B, client, server time.Duration, serverKnown bool) {
	b.ReportMetric(float64(client.Microseconds())/float64(b.N), "client-us/row")
	if serverKnown {
		b.ReportMetric(float64(server.Microseconds())/float64(b.N), "server-us/row")
	}
}

func must(d time.Duration, _ bool) time.Duration { return d }

// processCPU is the CPU time (user + system) this process has used so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// serverCPU is the CPU time the ClickHouse server has used so far, read
// from /proc/<pid>/stat; false when the server's pid is not known.
func serverCPU() (time.Duration, bool) {
	dir := os.Getenv(envDir)
	if dir == "" {
		return 0, false
	}
	pid, err := os.ReadFile(filepath.Join(dir, "pid"))
	if err != nil {
		return 0, false
	}
	return pidCPU(strings.TrimSpace(string(pid)))
}

// pidCPU is the CPU time process pid has used so far, from
// /proc/<pid>/stat; false when it cannot be read.
func pidCPU(pid string) (time.Duration, bool) {
	stat, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return 0, false
	}
	// Fields after "(comm)": state is the first, utime the 12th, stime the
	// 13th, in clock ticks (100 per second on Linux).
	i := strings.LastIndexByte(string(stat), ')')
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 13 {
		return 0, false
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	return time.Duration(ut+st) * 10 * time.Millisecond, true
}

// benchEmbeddedEnv set to 1 puts the sink benchmark's broker in the test
// process.
const benchEmbeddedEnv = "ROLODEX_BENCH_SINK_EMBEDDED_BROKER"

// benchBrokers starts the sink benchmark's broker, with the sink's topics
// of partitions partitions each, and returns its addresses and its CPU
// time so far (a func; false with the broker in this process, whose CPU
// is the sink's own figure then).
func benchBrokers(b *testing.B, partitions int) ([]string, func() (time.Duration, bool)) {
	b.Helper()
	if os.Getenv(benchEmbeddedEnv) == "1" {
		return newCluster(b, partitions).ListenAddrs(), func() (time.Duration, bool) { return 0, false }
	}
	cmd := exec.Command(os.Args[0], "-test.run", "^$")
	cmd.Env = append(os.Environ(), benchBrokerEnv+"="+strconv.Itoa(partitions))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		stdin.Close()
		cmd.Wait()
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		b.Fatalf("benchmark broker: %v", err)
	}
	pid := strconv.Itoa(cmd.Process.Pid)
	return strings.Split(strings.TrimSpace(line), ","), func() (time.Duration, bool) { return pidCPU(pid) }
}
