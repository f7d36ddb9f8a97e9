package main

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	benchfanout "github.com/rolodex/rolodex/bench/fanout"
	"github.com/rolodex/rolodex/bench/measure"
	"github.com/rolodex/rolodex/internal/kafkaclient"
)

// cmdBenchFanout measures partner fan-out's delivery on Kafka (records
// written to the partners' out topics, then webhooks posted to a local
// receiver) against a consume→produce pass-through in one run and prints
// the ratios.
func cmdBenchFanout(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("bench fanout", stdout, stderr)
	records := fs.Int("records", 20000, "deliveries per phase: N for Kafka subscriptions, then N for webhook ones")
	partitions := fs.Int("partitions", 8, "partitions of rolodex.fanout.deliveries and the other topics the run creates")
	brokers := fs.String("brokers", "", "measure against this Kafka (host:port,...) instead of an embedded broker; it must hold no fan-out deliveries, out records or reports")
	seed := fs.Uint64("seed", 1, "seed of the generated records and secrets")
	if err := fs.parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("bench fanout: unexpected argument %q", fs.Arg(0))}
	}
	if *records <= 0 || *partitions <= 0 {
		return usageError{"bench fanout: --records and --partitions must be positive"}
	}
	if *partitions > 1<<20 {
		return usageError{"bench fanout: --partitions is too large"}
	}
	cfg := benchfanout.Config{Records: *records, Partitions: int32(*partitions), Brokers: kafkaclient.ParseBrokers(*brokers), Seed: *seed}
	fmt.Fprintf(stderr, "bench fanout: %d records per phase; pass-through, Kafka delivery, webhook delivery, fan-out group...\n", *records)
	started := time.Now()
	res, err := benchfanout.Run(ctx, cfg)
	if err != nil {
		return err
	}
	printBenchFanout(stdout, res, started)
	return nil
}

func printBenchFanout(w io.Writer, res benchfanout.Result, started time.Time) {
	c := res.Config
	broker := "external Kafka at " + strings.Join(c.Brokers, ",")
	if res.Embedded {
		broker = "embedded kfake broker in this process at " + strings.Join(c.Brokers, ",")
	}
	fmt.Fprintf(w, "\nRolodex partner fan-out benchmark, %s\n", started.UTC().Format(time.RFC3339))
	fmt.Fprintf(w, "  machine:  %s/%s, NumCPU %d, GOMAXPROCS %d, %s\n", runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.GOMAXPROCS(0), runtime.Version())
	if res.LoadBefore != "" {
		fmt.Fprintf(w, "  load avg: %s before, %s after (1, 5, 15 min)\n", res.LoadBefore, res.LoadAfter)
	}
	fmt.Fprintf(w, "  broker:   %s, %d partitions\n", broker, c.Partitions)
	fmt.Fprintf(w, "  workload: %d deliveries per phase of ~%d B on rolodex.fanout.deliveries (bodies ~%d B), %d profiles, 3 partners, 3 subscriptions per channel\n\n",
		c.Records, res.AvgRecordBytes, res.AvgBodyBytes, max(1, c.Records/2))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "phase\trecords/s\tvs pass-through\tCPU/record\telapsed\tfirst out\t")
	row := func(name string, p measure.Phase, ratio string, first string) {
		fmt.Fprintf(tw, "%s\t%.0f\t%s\t%s\t%s\t%s\t\n", name, p.EventsPerSec, ratio, cpuPerEvent(p.CPUPerEvent), p.Elapsed.Round(time.Millisecond), first)
	}
	row("kafka consume→produce of the deliveries (baseline)", res.Passthrough, "1.000", "-")
	row("kafka delivery: to rolodex.out.<partner>, with reports", res.Kafka, fmt.Sprintf("%.3f", res.KafkaRatio), res.FirstKafka.Round(time.Millisecond).String())
	row("webhook delivery: to a local receiver (200 at once)", res.Webhooks, fmt.Sprintf("%.3f", res.WebhookRatio), res.FirstWebhook.Round(time.Millisecond).String())
	row(fmt.Sprintf("fan-out group: topic events → %d deliveries (per event)", res.GroupDeliveries), res.Group, fmt.Sprintf("%.3f", res.GroupRatio), res.FirstGroup.Round(time.Millisecond).String())
	tw.Flush()
	fmt.Fprintf(w, "\n  checked: each Kafka record once on its out topic, the receiver got exactly the webhook ids (%d requests on %d connections), every report, an empty dead letter, each of the group's deliveries once\n", res.Requests, res.Conns)
	if len(res.FailedAttempts) > 0 {
		var causes []string
		for c, n := range res.FailedAttempts {
			causes = append(causes, fmt.Sprintf("%d × %s", n, c))
		}
		sort.Strings(causes)
		fmt.Fprintf(w, "  webhook attempts that failed and were retried (the retry schedule: 5 s, then 5 min): %s\n", strings.Join(causes, "; "))
	}
	fmt.Fprintf(w, "  each delivery phase starts a new webhooks.Fanout (store copy, two group joins), the group phase a new fan-out group (join, recovery); first out: the first out record, request or delivery\n")
	fmt.Fprintf(w, "  CPU/record: CPU time of this whole process (clients, delivery, receiver%s) / records\n\n", map[bool]string{true: ", broker", false: ""}[res.Embedded])
}
