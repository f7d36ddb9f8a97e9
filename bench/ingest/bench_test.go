package ingest

import (
	"context"
	"os"
	"sync"
	"testing"
	"time"
)

// The benchmarks share one embedded broker and one HTTP ingest server,
// started on first use and closed by TestMain. One op is one event: ns/op
// is the time per event, and events/s is reported as its own metric.
//
//	go test -run '^$' -bench . -benchtime 50000x ./bench/ingest/

var shared struct {
	once sync.Once
	b    *bench
	err  error
}

const (
	benchBatch       = 100
	benchConcurrency = 8
)

func TestMain(m *testing.M) {
	code := m.Run()
	if shared.b != nil {
		shared.b.Close()
	}
	os.Exit(code)
}

func sharedBench(tb testing.TB) *bench {
	tb.Helper()
	shared.once.Do(func() {
		shared.b, shared.err = start(context.Background(), Config{Concurrency: benchConcurrency, Partitions: 8})
	})
	if shared.err != nil {
		tb.Fatal(shared.err)
	}
	return shared.b
}

// workloadFor generates b.N events outside the timer.
func workloadFor(b *testing.B) *workload {
	b.Helper()
	w, err := generate(b.N, benchBatch, 1, newRunID(), time.Now())
	if err != nil {
		b.Fatal(err)
	}
	return w
}

func report(b *testing.B, p Phase) {
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	if p.CPU > 0 {
		b.ReportMetric(float64(p.CPU.Nanoseconds())/float64(b.N), "cpu-ns/event")
	}
	if len(p.Latencies) > 0 {
		b.ReportMetric(float64(percentile(p.Latencies, 50).Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(percentile(p.Latencies, 99).Microseconds())/1000, "p99-ms")
	}
}

// BenchmarkRawProduce is the baseline: b.N events' JSON produced straight
// to Kafka (acks=all, the Rolodex partitioner and keys), until all acked.
func BenchmarkRawProduce(b *testing.B) {
	sb := sharedBench(b)
	w := workloadFor(b)
	prepare()
	b.ResetTimer()
	p, err := sb.raw(context.Background(), w)
	b.StopTimer()
	if err != nil {
		b.Fatal(err)
	}
	report(b, p)
}

// BenchmarkRawProduceBatched produces the same records from 8 goroutines in
// batches of 100, waiting for each batch's acks, as the HTTP path does.
func BenchmarkRawProduceBatched(b *testing.B) {
	sb := sharedBench(b)
	w := workloadFor(b)
	prepare()
	b.ResetTimer()
	p, err := sb.rawBatched(context.Background(), w, benchConcurrency)
	b.StopTimer()
	if err != nil {
		b.Fatal(err)
	}
	report(b, p)
}

// BenchmarkHTTPIngest posts b.N events in batches of 100 from 8 clients to
// the HTTP ingest API; every request must be answered 202.
func BenchmarkHTTPIngest(b *testing.B) {
	sb := sharedBench(b)
	w := workloadFor(b)
	prepare()
	b.ResetTimer()
	p, err := sb.http(context.Background(), w, benchConcurrency)
	b.StopTimer()
	if err != nil {
		b.Fatal(err)
	}
	report(b, p)
}

// BenchmarkHTTPFloor posts the same requests as BenchmarkHTTPIngest, from
// 8 clients, to the HTTP floor on the same server: read the body, split
// the array, produce each element as it is, wait for the acks, answer 202.
// Every request must be answered 202.
//
//	go test -run '^$' -bench HTTPFloor -benchtime 100000x -cpuprofile /tmp/floor.cpu ./bench/ingest/
func BenchmarkHTTPFloor(b *testing.B) {
	sb := sharedBench(b)
	w := workloadFor(b)
	prepare()
	b.ResetTimer()
	p, err := sb.httpFloor(context.Background(), w, benchConcurrency)
	b.StopTimer()
	if err != nil {
		b.Fatal(err)
	}
	report(b, p)
}
