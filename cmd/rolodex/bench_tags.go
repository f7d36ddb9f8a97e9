package main

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/rolodex/rolodex/bench/measure"
	benchtags "github.com/rolodex/rolodex/bench/tags"
	"github.com/rolodex/rolodex/internal/kafkaclient"
)

// cmdBenchTags measures the rule-tag stage on Kafka (its snapshots, then a
// rule change applied to every profile) against a consume→produce
// pass-through in one run and prints the ratios.
func cmdBenchTags(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("bench tags", stdout, stderr)
	profiles := fs.Int("profiles", 20000, "profile snapshots stored in rolodex.profiles; the rule change applies to all of them")
	partitions := fs.Int("partitions", 8, "partitions of the topics the run creates")
	brokers := fs.String("brokers", "", "measure against this Kafka (host:port,...) instead of an embedded broker; it must hold no profiles or tag state")
	seed := fs.Uint64("seed", 1, "seed of the generated profiles")
	if err := fs.parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("bench tags: unexpected argument %q", fs.Arg(0))}
	}
	if *profiles <= 0 || *partitions <= 0 {
		return usageError{"bench tags: --profiles and --partitions must be positive"}
	}
	if *partitions > 1<<20 {
		return usageError{"bench tags: --partitions is too large"}
	}
	cfg := benchtags.Config{Profiles: *profiles, Partitions: int32(*partitions), Brokers: kafkaclient.ParseBrokers(*brokers), Seed: *seed}
	if def, err := loadConfig(""); err == nil {
		cfg.Status = def.Tags // dev's tags: a default tag and an exclusive group
	}
	fmt.Fprintf(stderr, "bench tags: %d profiles; pass-through, the tag stage's snapshots, then a rule change...\n", *profiles)
	started := time.Now()
	res, err := benchtags.Run(ctx, cfg)
	if err != nil {
		return err
	}
	printBenchTags(stdout, res, started)
	return nil
}

func printBenchTags(w io.Writer, res benchtags.Result, started time.Time) {
	c := res.Config
	broker := "external Kafka at " + strings.Join(c.Brokers, ",")
	if res.Embedded {
		broker = "embedded kfake broker in this process at " + strings.Join(c.Brokers, ",")
	}
	fmt.Fprintf(w, "\nRolodex rule-tag benchmark, %s\n", started.UTC().Format(time.RFC3339))
	fmt.Fprintf(w, "  machine:  %s/%s, NumCPU %d, GOMAXPROCS %d, %s\n", runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.GOMAXPROCS(0), runtime.Version())
	if res.LoadBefore != "" {
		fmt.Fprintf(w, "  load avg: %s before, %s after (1, 5, 15 min)\n", res.LoadBefore, res.LoadAfter)
	}
	fmt.Fprintf(w, "  broker:   %s, %d partitions\n", broker, c.Partitions)
	fmt.Fprintf(w, "  workload: %d profile snapshots of ~%d B JSON, one tenant with docs/tags.md's 4 example rules; the change: events(\"page.viewed\", duration(\"168h\")) >= 3 becomes >= 5\n\n",
		c.Profiles, res.AvgSnapshotBytes)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "phase\tprofiles/s\tvs pass-through\tCPU/profile\telapsed\trecords on rolodex.profile.tags\t")
	row := func(name string, p measure.Phase, ratio string, recs string) {
		fmt.Fprintf(tw, "%s\t%.0f\t%s\t%s\t%s\t%s\t\n", name, p.EventsPerSec, ratio, cpuPerEvent(p.CPUPerEvent), p.Elapsed.Round(time.Millisecond), recs)
	}
	row("kafka consume→produce of the snapshots (baseline)", res.Passthrough, "1.000", "-")
	row("tag stage: every snapshot, from start until its records are out", res.Snapshots, fmt.Sprintf("%.3f", res.SnapshotRatio), fmt.Sprint(res.SnapshotRecords))
	row("tag stage: a rule change, from its write until its records are out", res.RuleChange, fmt.Sprintf("%.3f", res.RuleChangeRatio), fmt.Sprint(res.RuleChangeRecords))
	row("tag stage: a restart on kept storage, until every profile is visited", res.Restart, fmt.Sprintf("%.3f", res.RestartRatio), "0")
	tw.Flush()
	fmt.Fprintf(w, "\n  rule change: first record %s after the rule's write (the stage reads its rules every second)\n", res.FirstChange.Round(time.Millisecond))
	fmt.Fprintf(w, "  ticks written (visits and scheduler): %d\n", res.Ticks)
	fmt.Fprintf(w, "  restart: first visit %s after the start (join, recovery)\n", res.FirstVisit.Round(time.Millisecond))
	fmt.Fprintf(w, "  scaled to 1,000,000 profiles (first record or visit, plus the rest scaled): rule change %s, restart %s\n",
		res.PerMillion.Round(time.Second), res.RestartPerMillion.Round(time.Second))
	fmt.Fprintf(w, "  CPU/profile: CPU time of this whole process (clients, processor%s) / profiles\n\n", map[bool]string{true: ", broker", false: ""}[res.Embedded])
}
