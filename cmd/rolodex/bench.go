package main

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"strings"
	"text/tabwriter"
	"time"

	benchingest "github.com/rolodex/rolodex/bench/ingest"
	"github.com/rolodex/rolodex/bench/measure"
	"github.com/rolodex/rolodex/internal/kafkaclient"
)

// cmdBenchIngest measures HTTP ingest (and the HTTP floor) against raw
// Kafka produce in one run and prints the ratios.
func cmdBenchIngest(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("bench ingest", stdout, stderr)
	events := fs.Int("events", 200000, "events per phase")
	batch := fs.Int("batch", 100, "events per HTTP request (and per raw batch)")
	concurrency := fs.Int("concurrency", 8, "parallel HTTP clients (and raw batch producers)")
	brokers := fs.String("brokers", "", "measure against this Kafka (host:port,...) instead of an embedded broker")
	partitions := fs.Int("partitions", 8, "partitions of the topics, when they are created")
	rounds := fs.Int("rounds", 3, "rounds of the raw, raw batched, HTTP and HTTP floor phases, alternating; medians are reported")
	if err := fs.parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("bench ingest: unexpected argument %q", fs.Arg(0))}
	}
	for _, f := range []struct {
		name string
		v    int
	}{{"events", *events}, {"batch", *batch}, {"concurrency", *concurrency}, {"partitions", *partitions}, {"rounds", *rounds}} {
		if f.v <= 0 {
			return usageError{fmt.Sprintf("bench ingest: --%s must be positive", f.name)}
		}
	}
	if *partitions > 1<<20 {
		return usageError{"bench ingest: --partitions is too large"}
	}
	cfg := benchingest.Config{
		Events: *events, BatchSize: *batch, Concurrency: *concurrency,
		Partitions: int32(*partitions), Rounds: *rounds,
		Brokers: kafkaclient.ParseBrokers(*brokers),
	}
	fmt.Fprintf(stderr, "bench ingest: %d events, %d rounds of raw, raw batched, HTTP and HTTP floor...\n", *events, *rounds)
	started, loadBefore := time.Now(), measure.LoadAvg()
	res, err := benchingest.Run(ctx, cfg)
	if err != nil {
		return err
	}
	printBenchIngest(stdout, res, started, loadBefore, measure.LoadAvg())
	return nil
}

func printBenchIngest(w io.Writer, res benchingest.Result, started time.Time, loadBefore, loadAfter string) {
	c := res.Config
	broker := "external Kafka at " + strings.Join(c.Brokers, ",")
	if res.Embedded {
		broker = "embedded kfake broker in this process at " + strings.Join(c.Brokers, ",")
	}
	fmt.Fprintf(w, "\nRolodex ingest benchmark, %s\n", started.UTC().Format(time.RFC3339))
	fmt.Fprintf(w, "  machine:  %s/%s, NumCPU %d, GOMAXPROCS %d, %s\n", runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.GOMAXPROCS(0), runtime.Version())
	if loadBefore != "" {
		fmt.Fprintf(w, "  load avg: %s before, %s after (1, 5, 15 min; this run adds up to 2)\n", loadBefore, loadAfter)
	}
	fmt.Fprintf(w, "  broker:   %s, %d partitions\n", broker, c.Partitions)
	fmt.Fprintf(w, "  workload: %d events of ~%d B JSON, %d events/request, %d clients, %d rounds (raw, raw batched, http, http floor alternating; medians)\n\n",
		c.Events, res.AvgEventBytes, c.BatchSize, c.Concurrency, c.Rounds)

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "path\tevents/s\tvs raw\tCPU/event\tp50\tp99\tmax\t")
	row := func(name string, s benchingest.Summary) {
		ratio := 0.0
		if res.Raw.EventsPerSec > 0 {
			ratio = s.EventsPerSec / res.Raw.EventsPerSec
		}
		fmt.Fprintf(tw, "%s\t%.0f\t%.3f\t%s\t%s\t%s\t%s\t\n", name, s.EventsPerSec, ratio, cpuPerEvent(s.CPUPerEvent), latency(s.P50), latency(s.P99), latency(s.Max))
	}
	row("raw Kafka produce (baseline)", res.Raw)
	row("raw produce, request-shaped", res.RawBatched)
	row("rolodex HTTP ingest", res.HTTP)
	row("HTTP floor (split, produce)", res.HTTPFloor)
	tw.Flush()
	fmt.Fprintf(w, "\n  ratio rolodex HTTP / raw Kafka, events/s:       %.3f\n", res.Ratio)
	fmt.Fprintf(w, "  ratio rolodex HTTP / raw request-shaped:        %.3f\n", res.BatchedRatio)
	if res.CPURatio > 0 {
		fmt.Fprintf(w, "  ratio in CPU per event (raw / rolodex HTTP):    %.3f\n", res.CPURatio)
	}
	fmt.Fprintf(w, "  ratio HTTP floor / raw Kafka, events/s:         %.3f\n", res.FloorRatio)
	fmt.Fprintf(w, "  ratio rolodex HTTP / HTTP floor, events/s:      %.3f\n", res.HTTPOfFloor)
	if res.FloorCPURatio > 0 {
		fmt.Fprintf(w, "  ratio in CPU per event (raw / HTTP floor):      %.3f\n", res.FloorCPURatio)
	}
	fmt.Fprintf(w, "  HTTP floor: the same requests to a handler that only reads the body, splits the array and produces each element as it is\n")
	parts := "HTTP clients, server, producers"
	if res.Embedded {
		parts += ", broker"
	}
	fmt.Fprintf(w, "  CPU/event: CPU time of this whole process (%s) / events\n", parts)
	fmt.Fprintf(w, "  latencies: per HTTP request of %d events, or per raw batch, over every round\n\n", c.BatchSize)

	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "round\traw events/s\traw batched events/s\thttp events/s\thttp / raw\t")
	for i, r := range res.Rounds {
		fmt.Fprintf(tw, "%d\t%.0f\t%.0f\t%.0f\t%.3f\t\n", i+1, r.Raw.EventsPerSec, r.RawBatched.EventsPerSec, r.HTTP.EventsPerSec, r.HTTP.EventsPerSec/r.Raw.EventsPerSec)
	}
	tw.Flush()
	// The HTTP floor per round in a table of its own: the lines above stay
	// as scripts and docs/benchmarks.md read them.
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "round\thttp floor events/s\tfloor / raw\thttp / floor\t")
	for i, r := range res.Rounds {
		fmt.Fprintf(tw, "%d\t%.0f\t%.3f\t%.3f\t\n", i+1, r.HTTPFloor.EventsPerSec, r.HTTPFloor.EventsPerSec/r.Raw.EventsPerSec, r.HTTP.EventsPerSec/r.HTTPFloor.EventsPerSec)
	}
	tw.Flush()
}

func latency(d time.Duration) string {
	if d == 0 {
		return "-"
	}
	return d.Round(10 * time.Microsecond).String()
}

func cpuPerEvent(d time.Duration) string {
	if d == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1fµs", float64(d)/float64(time.Microsecond))
}
