package identity

import (
	"context"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/rolodex/rolodex/bench/measure"
)

// One op is one event: ns/op is the time per event, events/s and
// cpu-ns/event are reported as their own metrics. Each benchmark starts
// its own embedded broker and stores b.N events in rolodex.events before
// the timer starts (the identity group's names are fixed, so every run
// needs a fresh broker). Use a fixed count:
//
//	go test -run '^$' -bench . -benchtime 20000x ./bench/identity/
//
// ROLODEX_BENCH_TUNING picks a tuning for BenchmarkIdentity (Tunings);
// ROLODEX_BENCH_PROFILES the number of people (default b.N/4, b.N/10 for
// the steady workload); ROLODEX_BENCH_WORKLOAD the workload of
// BenchmarkPassthrough and BenchmarkIdentity (default or steady;
// BenchmarkIdentitySteady always runs the steady one).

// benchSetup starts a broker, stores n events and returns the bench.
func benchSetup(b *testing.B, n int) *bench {
	return benchSetupWorkload(b, n, os.Getenv("ROLODEX_BENCH_WORKLOAD"))
}

func benchSetupWorkload(b *testing.B, n int, workload string) *bench {
	b.Helper()
	cfg := Config{Events: n, Tuning: os.Getenv("ROLODEX_BENCH_TUNING"), SkipRestarts: true, Workload: workload}
	if p, err := strconv.Atoi(os.Getenv("ROLODEX_BENCH_PROFILES")); err == nil && p > 0 {
		cfg.Profiles = p
	}
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		b.Fatal(err)
	}
	w, err := generateWith(n, cfg.Profiles, cfg.Seed, time.Now(), false, 0, cfg.Workload == WorkloadSteady)
	if err != nil {
		b.Fatal(err)
	}
	sb, err := start(context.Background(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(sb.Close)
	if _, err := sb.load(context.Background(), w); err != nil {
		b.Fatal(err)
	}
	b.Logf("load avg %s; %s workload, %d events, %d people, %d profiles expected, tuning %s", measure.LoadAvg(), cfg.Workload, n, w.people, w.profiles, cfg.Tuning)
	return sb
}

// report reports the phase's own timing: it overrides ns/op, which would
// also count the untimed work after the phase (final commit, stopping the
// processor, inspecting its table).
func report(b *testing.B, p Phase) {
	b.ReportMetric(float64(p.Elapsed.Nanoseconds())/float64(b.N), "ns/op")
	b.ReportMetric(float64(b.N)/p.Elapsed.Seconds(), "events/s")
	if p.CPU > 0 {
		b.ReportMetric(float64(p.CPU.Nanoseconds())/float64(b.N), "cpu-ns/event")
	}
}

// BenchmarkPassthrough is the baseline: a franz-go consumer group copies
// b.N stored events from rolodex.events to bench.passthrough (acks=all),
// until every copy is acknowledged.
func BenchmarkPassthrough(b *testing.B) {
	sb := benchSetup(b, b.N)
	b.ResetTimer()
	p, err := sb.runPassthrough(context.Background(), b.N)
	b.StopTimer()
	if err != nil {
		b.Fatal(err)
	}
	report(b, p)
}

// BenchmarkIdentity runs the identity processor over b.N stored events
// until every profile is settled (see settle).
func BenchmarkIdentity(b *testing.B) {
	benchIdentity(b, benchSetup(b, b.N))
}

// BenchmarkIdentitySteady is BenchmarkIdentity on the steady workload:
// 90% of the events come from identifiers an earlier event linked.
func BenchmarkIdentitySteady(b *testing.B) {
	benchIdentity(b, benchSetupWorkload(b, b.N, WorkloadSteady))
}

func benchIdentity(b *testing.B, sb *bench) {
	b.ResetTimer()
	p, err := sb.runIdentity(context.Background(), b.N, nil)
	b.StopTimer()
	if err != nil {
		b.Fatal(err)
	}
	report(b, p.Phase)
	b.ReportMetric(float64(p.Records[LoopTopic])/float64(b.N), "loop/event")
	if p.Table.Roots > 0 {
		b.ReportMetric(float64(p.Table.DiskBytes)/float64(p.Table.Roots), "disk-B/profile")
	}
}
