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

	benchidentity "github.com/rolodex/rolodex/bench/identity"
	"github.com/rolodex/rolodex/internal/kafkaclient"
)

// cmdBenchIdentity measures the identity stage against a plain Kafka
// consume→produce pass-through in one run and prints the ratio.
func cmdBenchIdentity(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("bench identity", stdout, stderr)
	events := fs.Int("events", 200000, "events stored in rolodex.events and read by each phase")
	profiles := fs.Int("profiles", 0, "people the events are about (default events/4, events/10 with --workload steady)")
	workload := fs.String("workload", benchidentity.WorkloadDefault, "shape of the events: default (a person's events carry all or a random subset of their identifiers) or steady (a person's first event carries all, so 90% of the events come from identifiers already linked)")
	partitions := fs.Int("partitions", 8, "partitions of the topics the run creates")
	brokers := fs.String("brokers", "", "measure against this Kafka (host:port,...) instead of an embedded broker; it must hold no identity state")
	tuning := fs.String("tuning", benchidentity.TuningShipped, "goka options on top of Rolodex's: one of "+strings.Join(benchidentity.Tunings(), ", ")+", or several joined by +")
	storage := fs.String("storage-dir", "", "keep the identity processor's LevelDB storage here (empty or missing directory) instead of a removed temporary one")
	seed := fs.Uint64("seed", 1, "seed of the generated events")
	noFloor := fs.Bool("no-goka-floor", false, "leave out the goka floor phase (a goka group that only reads and writes one value per event)")
	noRestarts := fs.Bool("no-restarts", false, "leave out timing the processor's restarts (on kept and on rebuilt storage) after the identity phase")
	statusShare := fs.Float64("status-share", 0, "share of the events (0..1) that are reserved status events: tags, consent, blacklist, identifier status (docs/profile-status.md)")
	leadTypes := fs.String("lead-types", "", "comma-separated event types the identity stage writes as leads to rolodex.routing.input (routing.lead_types; the workload's leads are lead.created, one event in seven); default none")
	fs.Usage = func() {
		w := fs.Output()
		fs.printSynopsis()
		fs.printFlags()
		fmt.Fprintln(w, "\nTunings:")
		for _, t := range benchidentity.Tunings() {
			fmt.Fprintf(w, "  %s: %s\n", t, benchidentity.TuningDoc(t))
		}
	}
	if err := fs.parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("bench identity: unexpected argument %q", fs.Arg(0))}
	}
	for _, f := range []struct {
		name string
		v    int
	}{{"events", *events}, {"partitions", *partitions}} {
		if f.v <= 0 {
			return usageError{fmt.Sprintf("bench identity: --%s must be positive", f.name)}
		}
	}
	if *statusShare < 0 || *statusShare > 1 {
		return usageError{"bench identity: --status-share must be between 0 and 1"}
	}
	if *profiles < 0 {
		return usageError{"bench identity: --profiles must be positive"}
	}
	if *partitions > 1<<20 {
		return usageError{"bench identity: --partitions is too large"}
	}
	if *workload != benchidentity.WorkloadDefault && *workload != benchidentity.WorkloadSteady {
		return usageError{fmt.Sprintf("bench identity: unknown --workload %q (known: %s, %s)", *workload, benchidentity.WorkloadDefault, benchidentity.WorkloadSteady)}
	}
	if benchidentity.TuningDoc(*tuning) == "" {
		return usageError{fmt.Sprintf("bench identity: unknown --tuning %q (known: %s, or several joined by +)", *tuning, strings.Join(benchidentity.Tunings(), ", "))}
	}
	cfg := benchidentity.Config{
		Events: *events, Profiles: *profiles, Workload: *workload, Partitions: int32(*partitions),
		Brokers: kafkaclient.ParseBrokers(*brokers), Tuning: *tuning, StorageDir: *storage, Seed: *seed,
		Progress: stderr, SkipGokaFloor: *noFloor, SkipRestarts: *noRestarts, StatusShare: *statusShare,
	}
	for _, t := range strings.Split(*leadTypes, ",") {
		if t = strings.TrimSpace(t); t != "" {
			cfg.LeadTypes = append(cfg.LeadTypes, t)
		}
	}
	if def, err := loadConfig(""); err == nil {
		cfg.Status = def.Tags // dev's tags: a default tag and an exclusive group
	}
	fmt.Fprintf(stderr, "bench identity: %d events; pass-through, goka floor, then the identity stage until settled...\n", *events)
	started := time.Now()
	res, err := benchidentity.Run(ctx, cfg)
	if err != nil {
		return err
	}
	printBenchIdentity(stdout, res, started)
	return nil
}

func printBenchIdentity(w io.Writer, res benchidentity.Result, started time.Time) {
	c := res.Config
	broker := "external Kafka at " + strings.Join(c.Brokers, ",")
	if res.Embedded {
		broker = "embedded kfake broker in this process at " + strings.Join(c.Brokers, ",")
	}
	id := res.Identity
	fmt.Fprintf(w, "\nRolodex identity benchmark, %s\n", started.UTC().Format(time.RFC3339))
	fmt.Fprintf(w, "  machine:  %s/%s, NumCPU %d, GOMAXPROCS %d, %s\n", runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.GOMAXPROCS(0), runtime.Version())
	if res.LoadBefore != "" {
		fmt.Fprintf(w, "  load avg: %s before, %s after (1, 5, 15 min; this run adds up to 2)\n", res.LoadBefore, res.LoadAfter)
	}
	fmt.Fprintf(w, "  broker:   %s, %d partitions\n", broker, c.Partitions)
	fmt.Fprintf(w, "  workload: %d events of ~%d B Avro (%d re-sent), %d people (the busiest has %d events), %d identifiers, %d profiles expected\n",
		c.Events, res.AvgEventBytes, res.Duplicates, res.People, res.MaxPersonEvents, res.Identifiers, res.ExpectedProfiles)
	fmt.Fprintf(w, "  tuning:   %s (%s)\n\n", c.Tuning, benchidentity.TuningDoc(c.Tuning))

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "phase\tevents/s\tvs pass-through\tCPU/event\telapsed\tfirst record\t")
	row := func(name string, p benchidentity.Phase, ratio string) {
		fmt.Fprintf(tw, "%s\t%.0f\t%s\t%s\t%s\t%s\t\n", name, p.EventsPerSec, ratio, cpuPerEvent(p.CPUPerEvent),
			p.Elapsed.Round(time.Millisecond), p.FirstRecord.Round(time.Millisecond))
	}
	row("load: raw produce (untimed setup)", res.Load, "-")
	row("kafka consume→produce (baseline)", res.Passthrough, "1.000")
	if res.GokaFloor.Events > 0 {
		row("goka floor: read+write one value per event", res.GokaFloor, fmt.Sprintf("%.3f", res.FloorRatio))
	}
	row("rolodex identity, until settled", id.Phase, fmt.Sprintf("%.3f", res.Ratio))
	tw.Flush()

	fmt.Fprintf(w, "\n  ratio identity / pass-through, events/s:   %.3f\n", res.Ratio)
	if res.IdentityOfFloor > 0 {
		fmt.Fprintf(w, "  ratio identity / goka floor, events/s:    %.3f\n", res.IdentityOfFloor)
	}
	if res.CPURatio > 0 {
		fmt.Fprintf(w, "  ratio in CPU per event (pass / identity):  %.3f\n", res.CPURatio)
	}
	fmt.Fprintf(w, "  CPU/event: CPU time of this whole process (clients, processor%s) / events\n\n", map[bool]string{true: ", broker", false: ""}[res.Embedded])

	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "identity stage\t\t")
	fmt.Fprintf(tw, "profiles (roots) / nodes\t%d / %d\t\n", id.Table.Roots, id.Table.Nodes)
	fmt.Fprintf(tw, "events applied / duplicates\t%d / %d\t\n", id.Applied, id.Duplicates)
	fmt.Fprintf(tw, "loopback records per event\t%.2f\t\n", res.LoopPerEvent)
	fmt.Fprintf(tw, "table writes per event\t%.2f\t\n", res.TableWritesPerEvent)
	kinds := make([]string, 0, len(id.Messages))
	for k := range id.Messages {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	var parts []string
	for _, k := range kinds {
		parts = append(parts, fmt.Sprintf("%s %d", k, id.Messages[k]))
	}
	fmt.Fprintf(tw, "loopback messages by kind\t%s\t\n", strings.Join(parts, ", "))
	for _, t := range []string{"rolodex.profiles", "rolodex.profile.merges", "rolodex.profile.audit"} {
		fmt.Fprintf(tw, "records on %s\t%d\t\n", t, id.Records[t])
	}
	fmt.Fprintf(tw, "node value, mean / root mean / max\t%s / %s / %s\t\n",
		bytesOf(float64(id.Table.ValueBytes)/float64(max(1, id.Table.Nodes))),
		bytesOf(float64(id.Table.RootBytes)/float64(max(1, id.Table.Roots))), bytesOf(float64(id.Table.MaxValueBytes)))
	fmt.Fprintf(tw, "LevelDB on disk, as left / compacted\t%s / %s\t\n", bytesOf(float64(id.Table.DiskBytes)), bytesOf(float64(id.Table.CompactedBytes)))
	fmt.Fprintf(tw, "bytes per profile, as left / compacted\t%.0f / %.0f\t\n", res.BytesPerProfile, res.CompactedBytesPerProfile)
	if id.RestartKept > 0 {
		fmt.Fprintf(tw, "restart until recovered: kept storage / after an unclean stop / rebuilt from the table\t%s / %s / %s\t\n",
			id.RestartKept.Round(time.Millisecond), id.RestartRepaired.Round(time.Millisecond), id.RestartRebuilt.Round(time.Millisecond))
	}
	fmt.Fprintf(tw, "peak RSS during identity / whole run\t%s / %s\t\n", bytesOf(float64(id.Memory.PeakRSS)), bytesOf(float64(res.PeakRSS)))
	fmt.Fprintf(tw, "peak Go heap during identity: objects / live\t%s / %s\t\n", bytesOf(float64(id.Memory.PeakHeapObjects)), bytesOf(float64(id.Memory.PeakLiveHeap)))
	var brokerTotal int64
	for _, b := range res.BrokerBytes {
		brokerTotal += b
	}
	fmt.Fprintf(tw, "broker holds (all topics / table / loop)\t%s / %s / %s\t\n", bytesOf(float64(brokerTotal)),
		bytesOf(float64(res.BrokerBytes[benchidentity.TableTopic])), bytesOf(float64(res.BrokerBytes[benchidentity.LoopTopic])))
	tw.Flush()
	if res.Embedded {
		fmt.Fprintln(w, "\n  RSS and heap include the embedded broker, which keeps every record of every topic in memory;")
		fmt.Fprintln(w, "  measure against a broker in another process (--brokers) for the processor alone.")
	}
}

// bytesOf renders a size in B, KiB, MiB or GiB.
func bytesOf(b float64) string {
	switch {
	case b >= 1<<30:
		return fmt.Sprintf("%.2f GiB", b/(1<<30))
	case b >= 1<<20:
		return fmt.Sprintf("%.1f MiB", b/(1<<20))
	case b >= 1<<10:
		return fmt.Sprintf("%.1f KiB", b/(1<<10))
	}
	return fmt.Sprintf("%.0f B", b)
}
