// Package identity measures the identity stage (processors/identity)
// against a plain franz-go consume→produce pass-through on the same
// broker, in the same run, over the same stored input, and reports the
// ratio.
//
// A run generates the events, starts a broker (or uses the one given),
// creates the topics and produces every event to rolodex.events before
// anything is timed. Then:
//
//   - passthrough (the baseline): a franz-go consumer group reads
//     rolodex.events from the start and produces every record unchanged
//     (key, value, headers, timestamp) to bench.passthrough through a
//     kafkaclient.NewClient client (acks=all, idempotent, the Rolodex
//     partitioner), marking each input record for commit once its copy is
//     acknowledged. It ends when every copy is acknowledged.
//   - identity: the identity processor (identity.New as Rolodex runs it,
//     fresh LevelDB storage, profiles emitted) reads rolodex.events from
//     the oldest offset. It ends when every profile is settled (see
//     settled).
//
// Both rates count the input events: events / elapsed.
package identity

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rolodex/rolodex/bench/measure"
	"github.com/rolodex/rolodex/internal/kafkaclient"
	identityproc "github.com/rolodex/rolodex/processors/identity"
	"github.com/rolodex/rolodex/schemas"
)

// Topic and group names of the baseline.
const (
	TopicPassthrough = "bench.passthrough"
	GroupPassthrough = "rolodex-bench-passthrough"
)

// LoopTopic is the identity group's loopback topic.
const LoopTopic = schemas.GroupIdentity + "-loop"

// Config of a benchmark run.
type Config struct {
	// Events is how many records are produced to rolodex.events and read
	// by each phase. Default 200000.
	Events int
	// Profiles is how many people the events are about. Every person gets
	// an event when Events allows. Default Events/4 (WorkloadDefault) or
	// Events/10 (WorkloadSteady).
	Profiles int
	// Workload is the shape of the events: WorkloadDefault or
	// WorkloadSteady. Default WorkloadDefault.
	Workload string
	// Partitions of every topic the run creates. Default 8.
	Partitions int32
	// Brokers are the seed brokers of the Kafka to measure against; it
	// must not hold any of the identity group's state yet. Default: an
	// embedded kfake broker in this process on 127.0.0.1:0.
	Brokers []string
	// Seed makes the generated events reproducible. Default 1.
	Seed uint64
	// StatusShare is the share of events that are reserved status events
	// (tags, consent, blacklist, identifier status). Default 0.
	StatusShare float64
	// Status is the tag configuration the identity stage folds profiles
	// with (the command passes the built-in configuration's).
	Status schemas.StatusConfig
	// LeadTypes are the event types the identity stage writes as leads
	// (routing.lead_types; the workload's leads are lead.created).
	// Default none: no leads are written.
	LeadTypes []string
	// StorageDir, when set, is where the identity processor keeps its
	// LevelDB storage; it is left in place after the run. It must be empty
	// or missing. Default: a temporary directory, removed after the run.
	StorageDir string
	// Tuning names the goka options the identity processor gets on top of
	// Rolodex's own (Tunings lists them; "a+b" combines two). Default
	// "shipped": none.
	Tuning string
	// SkipGokaFloor leaves out the goka floor phase (runGokaFloor).
	SkipGokaFloor bool
	// SkipRestarts leaves out timing the restarts after the identity
	// phase (IdentityPhase.RestartKept, RestartRebuilt).
	SkipRestarts bool
	// PollInterval is how often the identity phase checks whether it has
	// settled. Default 25ms.
	PollInterval time.Duration
	// StallTimeout fails the identity phase when its committed offsets
	// have not moved for that long while it is not settled. Default 2m.
	StallTimeout time.Duration
	// ProcessorLog receives goka's log. Default: discarded.
	ProcessorLog io.Writer
	// Progress, when set, receives a line about the identity phase every
	// ten seconds.
	Progress io.Writer
}

func (c *Config) setDefaults() {
	if c.Events == 0 {
		c.Events = 200000
	}
	if c.Workload == "" {
		c.Workload = WorkloadDefault
	}
	if c.Profiles == 0 {
		c.Profiles = max(1, c.Events/4)
		if c.Workload == WorkloadSteady {
			c.Profiles = max(1, c.Events/10)
		}
	}
	if c.Partitions == 0 {
		c.Partitions = 8
	}
	if c.Seed == 0 {
		c.Seed = 1
	}
	if c.Tuning == "" {
		c.Tuning = TuningShipped
	}
	if c.PollInterval == 0 {
		c.PollInterval = 25 * time.Millisecond
	}
	if c.StallTimeout == 0 {
		c.StallTimeout = 2 * time.Minute
	}
	if c.ProcessorLog == nil {
		c.ProcessorLog = io.Discard
	}
}

// Validate reports a config that cannot work.
func (c *Config) Validate() error {
	switch {
	case c.Events < 0:
		return errors.New("benchidentity: events must be positive")
	case c.Profiles < 0:
		return errors.New("benchidentity: profiles must be positive")
	case c.Partitions < 0:
		return errors.New("benchidentity: partitions must be positive")
	case c.PollInterval < 0 || c.StallTimeout < 0:
		return errors.New("benchidentity: intervals must be positive")
	case c.Workload != "" && c.Workload != WorkloadDefault && c.Workload != WorkloadSteady:
		return fmt.Errorf("benchidentity: unknown workload %q (known: %s, %s)", c.Workload, WorkloadDefault, WorkloadSteady)
	}
	if _, ok := lookupTuning(c.Tuning); !ok && c.Tuning != "" {
		return fmt.Errorf("benchidentity: unknown tuning %q (known: %v, or several joined by +)", c.Tuning, Tunings())
	}
	if err := measure.CheckBrokers(c.Brokers); err != nil {
		return fmt.Errorf("benchidentity: %w", err)
	}
	return nil
}

// Phase is one measured pass over the stored events.
type Phase struct {
	measure.Phase
	// FirstRecord is the time from the phase's start to its first record
	// handled: connecting, joining the group, getting partitions.
	FirstRecord time.Duration
}

func phaseOf(events int, elapsed, cpu, first time.Duration) Phase {
	return Phase{Phase: measure.NewPhase(events, elapsed, cpu), FirstRecord: first}
}

// IdentityPhase is the identity phase and what it left behind.
type IdentityPhase struct {
	Phase
	// Records written by the phase, per topic (end offsets after it
	// settled): loopback, table, profiles, merges, audit.
	Records map[string]int64
	// Messages are the loopback messages handled, by kind
	// (rolodex_identity_messages_total).
	Messages map[string]int64
	// Applied and Duplicates count the events folded in and the events
	// recognised as already folded (rolodex_identity_events_total).
	Applied, Duplicates int64
	// Table is the table the processor left on disk.
	Table Table
	// Memory is the peak memory of the process during the phase, sampled
	// every PollInterval.
	Memory Memory
	// RestartKept, RestartRepaired and RestartRebuilt are how long a
	// restarted processor took until it had recovered every partition: on
	// the storage the clean stop left; on the same storage without its
	// clean-shutdown marker, as a crash leaves it (kept and caught up:
	// the identity store holds only acknowledged writes); and on an empty
	// one (rebuilt from the table topic, what a crash led to before).
	// Zero when
	// Config.SkipRestarts.
	RestartKept, RestartRepaired, RestartRebuilt time.Duration
}

// Result of a run.
type Result struct {
	// Config is the configuration used, defaults filled in.
	Config Config
	// Embedded is true when the run started its own kfake broker.
	Embedded bool
	// AvgEventBytes is the mean size of one record value on rolodex.events.
	AvgEventBytes int
	// People, Identifiers and ExpectedProfiles describe the generated
	// stream: people with at least one event, distinct identifiers
	// (nodes), connected components (what the identity stage must end
	// with). Duplicates is the number of re-sent records, MaxPersonEvents
	// the most events one person has.
	People, Identifiers, ExpectedProfiles, Duplicates, MaxPersonEvents int
	// Load is the untimed pre-production of the events (raw produce, for
	// reference).
	Load Phase
	// Passthrough is the baseline, Identity the Rolodex identity stage.
	Passthrough Phase
	Identity    IdentityPhase
	// GokaFloor is a goka group that only reads and writes one value per
	// event (runGokaFloor): the ceiling of any design on goka. Left zero
	// when Config.SkipGokaFloor.
	GokaFloor Phase
	// FloorRatio is GokaFloor.EventsPerSec / Passthrough.EventsPerSec,
	// IdentityOfFloor Identity.EventsPerSec / GokaFloor.EventsPerSec.
	FloorRatio, IdentityOfFloor float64
	// Ratio is Identity.EventsPerSec / Passthrough.EventsPerSec.
	Ratio float64
	// CPURatio is Passthrough.CPUPerEvent / Identity.CPUPerEvent: the
	// ratio in CPU cost instead of wall-clock time; 0 where CPU time is not
	// measured.
	CPURatio float64
	// LoopPerEvent is the loopback records per input event (message
	// amplification); TableWritesPerEvent the table records per event.
	LoopPerEvent, TableWritesPerEvent float64
	// BytesPerProfile is the storage directory size when the processor
	// stopped, per profile (root); CompactedBytesPerProfile after a full
	// compaction.
	BytesPerProfile, CompactedBytesPerProfile float64
	// PeakRSS is the peak resident set of the process over the whole run
	// (VmHWM): generation, broker (when embedded) and both phases.
	PeakRSS int64
	// BrokerBytes is what the broker stores per topic after the run
	// (DescribeLogDirs; kfake reports the record batches it holds in
	// memory).
	BrokerBytes map[string]int64
	// LoadBefore and LoadAfter are the 1, 5 and 15 minute load averages
	// ("" where unknown).
	LoadBefore, LoadAfter string
}

// Run generates the events, stores them in rolodex.events, and measures
// the pass-through and the identity stage over them.
func Run(ctx context.Context, cfg Config) (Result, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return Result{}, err
	}
	res := Result{Config: cfg, LoadBefore: measure.LoadAvg()}
	w, err := generateWith(cfg.Events, cfg.Profiles, cfg.Seed, time.Now(), false, cfg.StatusShare, cfg.Workload == WorkloadSteady)
	if err != nil {
		return res, err
	}
	res.AvgEventBytes = w.bytes / max(1, cfg.Events)
	res.People, res.Identifiers, res.ExpectedProfiles, res.Duplicates, res.MaxPersonEvents = w.people, w.identifiers, w.profiles, w.duplicates, w.maxEvents

	b, err := start(ctx, cfg)
	if err != nil {
		return res, err
	}
	defer b.Close()
	res.Embedded = b.cluster != nil
	res.Config.Brokers = b.brokers
	if res.Load, err = b.load(ctx, w); err != nil {
		return res, err
	}
	w.values, w.keys = nil, nil // stored in the broker now

	if res.Passthrough, err = b.runPassthrough(ctx, cfg.Events); err != nil {
		return res, err
	}
	if !cfg.SkipGokaFloor {
		if res.GokaFloor, err = b.runGokaFloor(ctx, cfg.Events); err != nil {
			return res, err
		}
	}
	if res.Identity, err = b.runIdentity(ctx, cfg.Events, nil); err != nil {
		return res, err
	}
	if res.Identity.Table.Roots != w.profiles {
		return res, fmt.Errorf("benchidentity: the identity stage settled with %d profiles, the stream has %d", res.Identity.Table.Roots, w.profiles)
	}
	if res.Passthrough.EventsPerSec > 0 {
		res.Ratio = res.Identity.EventsPerSec / res.Passthrough.EventsPerSec
	}
	if res.GokaFloor.EventsPerSec > 0 {
		res.FloorRatio = res.GokaFloor.EventsPerSec / res.Passthrough.EventsPerSec
		res.IdentityOfFloor = res.Identity.EventsPerSec / res.GokaFloor.EventsPerSec
	}
	if res.Identity.CPUPerEvent > 0 {
		res.CPURatio = float64(res.Passthrough.CPUPerEvent) / float64(res.Identity.CPUPerEvent)
	}
	n := float64(max(1, cfg.Events))
	res.LoopPerEvent = float64(res.Identity.Records[LoopTopic]) / n
	res.TableWritesPerEvent = float64(res.Identity.Records[TableTopic]) / n
	if roots := res.Identity.Table.Roots; roots > 0 {
		res.BytesPerProfile = float64(res.Identity.Table.DiskBytes) / float64(roots)
		res.CompactedBytesPerProfile = float64(res.Identity.Table.CompactedBytes) / float64(roots)
	}
	if res.BrokerBytes, err = b.brokerBytes(ctx); err != nil {
		return res, err
	}
	_, res.PeakRSS = procMemory()
	res.LoadAfter = measure.LoadAvg()
	return res, nil
}

// bench is the broker and the admin client of a run.
type bench struct {
	cfg     Config
	brokers []string
	cluster *kfake.Cluster // nil against external brokers
	admCl   *kgo.Client
	adm     *kadm.Client
}

// start starts the broker (unless cfg.Brokers is set), checks that it
// holds no identity state yet, and creates the topics.
func start(ctx context.Context, cfg Config) (_ *bench, err error) {
	b := &bench{cfg: cfg}
	defer func() {
		if err != nil {
			b.Close()
		}
	}()
	if b.brokers, b.cluster, err = measure.StartBroker(cfg.Brokers, cfg.Partitions); err != nil {
		return nil, fmt.Errorf("benchidentity: %w", err)
	}
	if b.admCl, err = kafkaclient.NewClient(kafkaclient.Config{Brokers: b.brokers, ClientID: "rolodex-bench-admin"}); err != nil {
		return nil, fmt.Errorf("benchidentity: %w", err)
	}
	b.adm = kadm.NewClient(b.admCl)
	tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := measure.Ping(tctx, b.brokers, b.admCl); err != nil {
		return nil, fmt.Errorf("benchidentity: %w", err)
	}
	if err := b.checkFresh(tctx); err != nil {
		return nil, err
	}
	specs := append([]kafkaclient.TopicSpec{
		{Name: schemas.TopicEvents, Partitions: cfg.Partitions},
		{Name: TopicPassthrough, Partitions: cfg.Partitions},
	}, identityproc.Topics(cfg.Partitions)...)
	if err := kafkaclient.EnsureTopics(tctx, b.admCl, -1, specs...); err != nil {
		return nil, fmt.Errorf("benchidentity: create topics on %v: %w", b.brokers, err)
	}
	// Existing topics are left as they are: they must have the partition
	// count asked for (goka co-partitions rolodex.events, loop and table).
	names := make([]string, len(specs))
	for i, s := range specs {
		names[i] = s.Name
	}
	td, err := b.adm.ListTopics(tctx, names...)
	if err != nil {
		return nil, fmt.Errorf("benchidentity: describe topics: %w", err)
	}
	for _, s := range specs {
		if t, ok := td[s.Name]; !ok || t.Err != nil || int32(len(t.Partitions)) != s.Partitions {
			return nil, fmt.Errorf("benchidentity: topic %s does not have %d partitions", s.Name, s.Partitions)
		}
	}
	return b, nil
}

// checkFresh refuses a Kafka that holds events or identity state already:
// the identity group's names are fixed, and a run must start from nothing.
func (b *bench) checkFresh(ctx context.Context) error {
	topics := []string{schemas.TopicEvents, TopicPassthrough, LoopTopic, TableTopic}
	ends, err := b.adm.ListEndOffsets(ctx, topics...)
	if err != nil {
		return fmt.Errorf("benchidentity: end offsets: %w", err)
	}
	var stale []string
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err == nil && o.Offset > 0 {
			stale = append(stale, fmt.Sprintf("%s/%d", o.Topic, o.Partition))
		}
	})
	for _, g := range []string{schemas.GroupIdentity, GroupPassthrough} {
		offs, err := b.adm.FetchOffsets(ctx, g)
		if err == nil && len(offs) > 0 {
			stale = append(stale, "group "+g)
		}
	}
	if len(stale) > 0 {
		return fmt.Errorf("benchidentity: the Kafka at %v is not fresh (%v hold records or offsets); the benchmark needs one without rolodex.events data or identity state", b.brokers, stale)
	}
	return nil
}

// Close stops what start started.
func (b *bench) Close() {
	if b.admCl != nil {
		b.admCl.Close()
	}
	if b.cluster != nil {
		b.cluster.Close()
	}
}

// load produces the events to rolodex.events and waits for every
// acknowledgement. It is not part of either measured phase.
func (b *bench) load(ctx context.Context, w *workload) (Phase, error) {
	cl, err := kafkaclient.NewClient(kafkaclient.Config{Brokers: b.brokers, ClientID: "rolodex-bench-load"})
	if err != nil {
		return Phase{}, fmt.Errorf("benchidentity: %w", err)
	}
	defer cl.Close()
	var (
		errOnce  sync.Once
		firstErr error
	)
	start, cpu0 := time.Now(), measure.ProcessCPU()
	for i := range w.values {
		cl.Produce(ctx, &kgo.Record{Topic: schemas.TopicEvents, Key: w.keys[i], Value: w.values[i]}, func(_ *kgo.Record, err error) {
			if err != nil {
				errOnce.Do(func() { firstErr = err })
			}
		})
	}
	if err := cl.Flush(ctx); err != nil {
		return Phase{}, fmt.Errorf("benchidentity: load %s: %w", schemas.TopicEvents, err)
	}
	elapsed, cpu := time.Since(start), measure.ProcessCPU()-cpu0
	if firstErr != nil {
		return Phase{}, fmt.Errorf("benchidentity: load %s: %w", schemas.TopicEvents, firstErr)
	}
	return phaseOf(len(w.values), elapsed, cpu, 0), nil
}

// records returns the number of records of each topic: the sum of its
// partitions' end offsets (nothing here deletes or compacts while the run
// lasts; kfake does not compact).
func (b *bench) records(ctx context.Context, topics ...string) (map[string]int64, error) {
	ends, err := b.adm.ListEndOffsets(ctx, topics...)
	if err != nil {
		return nil, fmt.Errorf("benchidentity: end offsets: %w", err)
	}
	if err := ends.Error(); err != nil {
		return nil, fmt.Errorf("benchidentity: end offsets: %w", err)
	}
	out := map[string]int64{}
	ends.Each(func(o kadm.ListedOffset) { out[o.Topic] += o.Offset })
	return out, nil
}

// brokerBytes is what the broker stores per topic.
func (b *bench) brokerBytes(ctx context.Context) (map[string]int64, error) {
	dirs, err := b.adm.DescribeAllLogDirs(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("benchidentity: describe log dirs: %w", err)
	}
	out := map[string]int64{}
	dirs.Each(func(d kadm.DescribedLogDir) {
		for t, ps := range d.Topics {
			for _, p := range ps {
				out[t] += p.Size
			}
		}
	})
	return out, nil
}
