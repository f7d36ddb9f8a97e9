// Package identity is the identity stage: a goka group that links every
// identifier seen together into one profile, keeps each profile's state and
// dedupes events. The protocol and its invariants are in docs/identity.md.
package identity

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/IBM/sarama"
	"github.com/lovoo/goka"
	"github.com/lovoo/goka/storage"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/syndtr/goleveldb/leveldb/filter"
	"github.com/syndtr/goleveldb/leveldb/opt"

	"github.com/rolodex/rolodex/internal/gokaconfig"
	"github.com/rolodex/rolodex/internal/metrics"
	"github.com/rolodex/rolodex/schemas"
)

// ProcessorConfig runs the identity group against Kafka.
type ProcessorConfig struct {
	Engine  Config
	Brokers []string
	// StorageDir holds the LevelDB copy of the table partitions this
	// instance owns. Required: persistent storage keeps restarts fast.
	StorageDir string
	// Replication of the topics goka creates (table, loopback). Default 1.
	Replication int
	// EmitProfiles writes the materialized profile to rolodex.profiles on
	// every change of a root. Default true (set SkipProfiles to turn off).
	SkipProfiles bool
	Registerer   prometheus.Registerer
	// Sarama replaces gokaconfig.Sarama("rolodex-identity") (benchmarks
	// try settings with it).
	Sarama *sarama.Config
}

// Options returns the goka options that wire sarama, topic creation and
// storage the Rolodex way, with the producer wrapped by ordered. sc nil:
// gokaconfig.Sarama("rolodex-identity").
func Options(brokers []string, storageDir string, replication int, sc *sarama.Config, ordered *gokaconfig.Ordered) []goka.ProcessorOption {
	if sc == nil {
		sc = gokaconfig.Sarama("rolodex-identity")
	}
	tmc := gokaconfig.TopicManager(replication)
	return []goka.ProcessorOption{
		goka.WithConsumerGroupBuilder(goka.ConsumerGroupBuilderWithConfig(sc)),
		goka.WithProducerBuilder(ordered.Builder(goka.ProducerBuilderWithConfig(sc))),
		goka.WithConsumerSaramaBuilder(goka.SaramaConsumerBuilderWithConfig(sc)),
		goka.WithTopicManagerBuilder(goka.TopicManagerBuilderWithConfig(sc, tmc)),
		goka.WithStorageBuilder(storage.BuilderWithOptions(storageDir, StorageOptions())),
		goka.WithClientID("rolodex-identity"),
	}
}

// StorageOptions are the LevelDB options of the identity table: a bloom
// filter (looking up a node that does not exist yet, as every new
// identifier does, then skips reading table blocks), and a 2 MiB write
// buffer and block cache per partition; goleveldb's defaults otherwise
// (snappy). Each partition's LevelDB holds up to two write buffers and its
// block cache, so 8 partitions of 8 MiB each held 190 MiB of the
// processor's heap at 300,000 profiles; the store (store.go) batches the
// writes and keeps recently written values in memory, which takes the
// place of most of that. At 1,000,000 new profiles the small buffers cost
// CPU (more compactions): a 4 MiB write buffer ran at 455 instead of 682
// µs per event but peaked at 579 instead of 411 MiB (docs/benchmarks.md,
// "Issue 17: identity").
func StorageOptions() *opt.Options {
	return &opt.Options{Filter: filter.NewBloomFilter(10), WriteBuffer: 2 << 20, BlockCacheCapacity: 2 << 20}
}

// Metrics of the identity stage.
type Metrics struct {
	events   *prometheus.CounterVec
	messages *prometheus.CounterVec
	merges   prometheus.Counter
	refusals *prometheus.CounterVec
	latency  prometheus.Histogram
	profiles prometheus.Counter
	leads    prometheus.Counter
	fanout   *prometheus.CounterVec
	held     prometheus.Counter
	full     prometheus.Counter
	released prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		events: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rolodex_identity_events_total",
			Help: "Events processed by the identity stage, by result (applied, duplicate: a replay or repeat ignored)."}, []string{"result"}),
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rolodex_identity_messages_total",
			Help: "Loopback protocol messages handled, by kind."}, []string{"kind"}),
		merges: prometheus.NewCounter(prometheus.CounterOpts{Name: "rolodex_identity_merges_total",
			Help: "Profiles merged into another."}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rolodex_identity_protection_refusals_total",
			Help: "Links refused by merge protection, by identifier type over its limit."}, []string{"type"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "rolodex_identity_event_latency_seconds",
			Help: "Time from ingest (received_at) to the event being folded into its node.", Buckets: prometheus.ExponentialBuckets(0.001, 2, 18)}),
		profiles: prometheus.NewCounter(prometheus.CounterOpts{Name: "rolodex_identity_profile_updates_total",
			Help: "Profile snapshots written to rolodex.profiles."}),
		leads: prometheus.NewCounter(prometheus.CounterOpts{Name: "rolodex_identity_leads_total",
			Help: "Leads written with their profile to rolodex.routing.input (a replay writes one again; routing dedupes by lead id)."}),
		fanout: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rolodex_identity_fanout_records_total",
			Help: "Records written with the profile's facts to rolodex.fanout.input, by kind (event: a topic event, written on every handling; status: the blacklist or consent changed; absorbed: the root took in another profile, a merge, written again with a repeat of its proposal). Fan-out dedupes by event id."}, []string{"kind"}),
		held: prometheus.NewCounter(prometheus.CounterOpts{Name: "rolodex_identity_held_total",
			Help: "Events whose leads or topic events waited at their root until the event's other identifiers joined the profile or were refused (docs/identity.md, \"Leads and topic events wait for their event's links\"); a replay may count one again."}),
		released: prometheus.NewCounter(prometheus.CounterOpts{Name: "rolodex_identity_released_total",
			Help: "Held events sent on from their root: their waits over (to be written with the profile), or passed to the survivor of a merge (held there again, and counted again in rolodex_identity_held_total, if it still waits); a replay may count one again."}),
		full: prometheus.NewCounter(prometheus.CounterOpts{Name: "rolodex_identity_apart_full_total",
			Help: "Roots whose list of profiles kept apart by merge protection reached its cap (1,024), or that absorbed a profile whose list had: their leads and topic events no longer wait for their event's links (docs/identity.md); a replay may count one again."}),
	}
	if reg == nil {
		return m, nil
	}
	var errs [11]error
	m.events, errs[0] = metrics.Register(reg, m.events)
	m.messages, errs[1] = metrics.Register(reg, m.messages)
	m.merges, errs[2] = metrics.Register(reg, m.merges)
	m.refusals, errs[3] = metrics.Register(reg, m.refusals)
	m.latency, errs[4] = metrics.Register(reg, m.latency)
	m.profiles, errs[5] = metrics.Register(reg, m.profiles)
	m.leads, errs[6] = metrics.Register(reg, m.leads)
	m.fanout, errs[7] = metrics.Register(reg, m.fanout)
	m.held, errs[8] = metrics.Register(reg, m.held)
	m.full, errs[9] = metrics.Register(reg, m.full)
	m.released, errs[10] = metrics.Register(reg, m.released)
	if err := errors.Join(errs[:]...); err != nil {
		return nil, fmt.Errorf("identity: register metrics: %w", err)
	}
	return m, nil
}

type processor struct {
	engine       *Engine
	metrics      *Metrics
	emitProfiles bool
	ordered      *gokaconfig.Ordered
}

// Group defines the identity goka group. reg may be nil. ordered must wrap
// the processor's producer (Options does).
func Group(cfg Config, emitProfiles bool, reg prometheus.Registerer, ordered *gokaconfig.Ordered) (*goka.GroupGraph, error) {
	e, err := NewEngine(cfg)
	if err != nil {
		return nil, err
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	dl, err := gokaconfig.NewDeadLetters(schemas.GroupIdentity, reg, nil, schemas.UndecodableLetter)
	if err != nil {
		return nil, fmt.Errorf("identity: register metrics: %w", err)
	}
	p := &processor{engine: e, metrics: m, emitProfiles: emitProfiles, ordered: ordered}
	return goka.DefineGroup(schemas.GroupIdentity,
		// A record that does not decode is dead-lettered (reason
		// undecodable) and skipped: it must not stop the group.
		goka.Input(schemas.TopicEvents, gokaconfig.Tolerant(schemas.EventCodec{}), dl.Wrap(p.onEvent)),
		goka.Loop(gokaconfig.Tolerant(schemas.JSONCodec[schemas.Message]{}), dl.Wrap(p.onMessage)),
		goka.Output(schemas.TopicDeadLetter, schemas.DeadLetterCodec{}),
		goka.Output(schemas.TopicMerges, schemas.JSONCodec[schemas.Merge]{}),
		goka.Output(schemas.TopicAudit, schemas.JSONCodec[schemas.Refusal]{}),
		goka.Output(schemas.TopicProfiles, schemas.JSONCodec[schemas.Profile]{}),
		goka.Output(schemas.TopicRoutingInput, schemas.JSONCodec[schemas.RoutingInput]{}),
		goka.Output(schemas.TopicFanoutInput, schemas.JSONCodec[schemas.FanoutInput]{}),
		goka.Persist(schemas.JSONCodec[schemas.Node]{}),
	), nil
}

// Processor is the identity stage's goka processor, plus what decides
// whether its local storage may be kept at the next start.
type Processor struct {
	*goka.Processor
	dir       string
	ordered   *gokaconfig.Ordered
	kept      bool
	journaled bool
	acks      *tableAcks
}

// cleanMarker, in the storage directory, says that the last run ended with
// every write acknowledged, so the local LevelDB copy equals the table
// topic up to its stored offsets.
const cleanMarker = gokaconfig.CleanShutdownMarker

// CleanShutdownFile is the name of the clean-shutdown marker in the
// storage directory (benchmarks remove it to restart as after a crash).
const CleanShutdownFile = cleanMarker

// journalMarker, in the storage directory, says that its LevelDB copies
// were written by the store (store.go), which holds only acknowledged
// writes, so that after a crash they are kept and caught up instead of
// rebuilt from the topic.
const journalMarker = "ACKED-ONLY"

// New returns the identity processor; opts come after (and override) the
// Rolodex defaults, e.g. goka.WithTester in tests.
//
// The local LevelDB copy is only a cache of the table topic. After a crash
// it can be ahead of the topic (goka writes it before the topic
// acknowledged), which a replay never corrects; so it is kept only when the
// previous run shut down cleanly (Run left cleanMarker), and otherwise
// cleared: the owned partitions are then recovered from the topic in full.
func New(cfg ProcessorConfig, opts ...goka.ProcessorOption) (*Processor, error) {
	if len(cfg.Brokers) == 0 {
		return nil, errors.New("identity: no brokers")
	}
	if cfg.StorageDir == "" {
		return nil, errors.New("identity: a storage directory is required")
	}
	if cfg.Replication == 0 {
		cfg.Replication = 1
	}
	kept, journaled := false, false
	switch err := os.Remove(filepath.Join(cfg.StorageDir, cleanMarker)); {
	case err == nil:
		// Kept for this run; a crash during it must not find the marker.
		kept = true
		if err := gokaconfig.SyncDir(cfg.StorageDir); err != nil {
			return nil, fmt.Errorf("identity: storage: %w", err)
		}
	case errors.Is(err, fs.ErrNotExist):
		// No clean shutdown: kept only when written by the store
		// (store.go), which never holds a write the topic did not
		// acknowledge.
		if _, err := os.Stat(filepath.Join(cfg.StorageDir, journalMarker)); err == nil {
			journaled = true
		} else if err := os.RemoveAll(cfg.StorageDir); err != nil {
			return nil, fmt.Errorf("identity: clear storage: %w", err)
		}
	default:
		return nil, fmt.Errorf("identity: storage: %w", err)
	}
	if !journaled {
		if err := gokaconfig.WriteFileDurably(cfg.StorageDir, journalMarker); err != nil {
			return nil, fmt.Errorf("identity: storage: %w", err)
		}
	}
	ordered := new(gokaconfig.Ordered)
	g, err := Group(cfg.Engine, !cfg.SkipProfiles, cfg.Registerer, ordered)
	if err != nil {
		return nil, err
	}
	sc := cfg.Sarama
	if sc == nil {
		sc = gokaconfig.Sarama("rolodex-identity")
	}
	acks := newTableAcks(string(goka.GroupTable(schemas.GroupIdentity)))
	all := append(Options(cfg.Brokers, cfg.StorageDir, cfg.Replication, sc, ordered),
		goka.WithStorageBuilder(acks.builder(cfg.StorageDir, StorageOptions(), kept)),
		goka.WithProducerBuilder(acks.producer(ordered.Builder(goka.ProducerBuilderWithConfig(sc)))))
	all = append(all, opts...)
	p, err := goka.NewProcessor(cfg.Brokers, g, all...)
	if err != nil {
		return nil, fmt.Errorf("identity: %w", err)
	}
	return &Processor{Processor: p, dir: cfg.StorageDir, ordered: ordered, kept: kept, journaled: journaled, acks: acks}, nil
}

// KeptAfterCrash reports whether New kept the local storage of a run that
// did not shut down cleanly: written by the store (store.go), which holds
// only acknowledged writes, it is caught up from its offset instead of
// rebuilt from the table topic.
func (p *Processor) KeptAfterCrash() bool { return p.journaled }

// KeptStorage reports whether New kept the local storage of a clean
// shutdown instead of recovering from the table topic.
func (p *Processor) KeptStorage() bool { return p.kept }

// Run runs the processor until ctx is done or it fails. After a clean
// shutdown (ctx canceled, no error, every emit acknowledged) it leaves
// cleanMarker so that the next start keeps the local storage.
func (p *Processor) Run(ctx context.Context) error {
	return gokaconfig.MarkCleanShutdown(ctx, p.dir, p.ordered, p.Processor.Run(ctx))
}

// canceledOnly reports whether err is nil or only context cancellations.
var canceledOnly = gokaconfig.CanceledOnly

func writeMarker(dir string) error { return gokaconfig.WriteFileDurably(dir, cleanMarker) }

func node(ctx goka.Context) *schemas.Node {
	if v := ctx.Value(); v != nil {
		return v.(*schemas.Node)
	}
	return nil
}

// origin identifies a delivery among all of a node's inputs: its events
// come from one partition of rolodex.events and its messages from the same
// partition of the loopback (goka co-partitions them), so the offset and
// the topic are enough. A replay after a crash has the same origin.
func origin(ctx goka.Context) int64 {
	if ctx.Topic() == goka.Stream(schemas.TopicEvents) {
		return 2*ctx.Offset() + 2
	}
	return 2*ctx.Offset() + 3
}

func (p *processor) onEvent(ctx goka.Context, msg any) {
	ev, ok := msg.(*schemas.Event)
	if !ok || len(ev.Identifiers) == 0 {
		// Ingest validated every event; an event without identifiers is a
		// bug upstream, not a reason to stop the stage.
		p.metrics.events.WithLabelValues("invalid").Inc()
		p.commitInOrder(ctx)
		return
	}
	n, fx := p.engine.Event(ctx.Key(), node(ctx), ev, origin(ctx))
	if fx.applied {
		p.metrics.events.WithLabelValues("applied").Inc()
		p.metrics.latency.Observe(time.Since(ev.ReceivedAt).Seconds())
	} else {
		p.metrics.events.WithLabelValues("duplicate").Inc()
	}
	p.apply(ctx, n, fx)
}

func (p *processor) onMessage(ctx goka.Context, msg any) {
	m := msg.(*schemas.Message)
	p.metrics.messages.WithLabelValues(m.Kind).Inc()
	n, fx := p.engine.Message(ctx.Key(), node(ctx), m, origin(ctx))
	p.apply(ctx, n, fx)
}

// apply writes the node if it changed and sends the effects. All of it is
// acknowledged before goka commits the input offset; a crash before that
// replays the input, and every effect is idempotent (docs/identity.md).
// Skipping unchanged nodes is safe because the local store equals the
// table topic at start (New keeps it only after a clean shutdown): a replay
// never sees a write that did not reach the topic.
func (p *processor) apply(ctx goka.Context, n *schemas.Node, fx effects) {
	if fx.held {
		p.metrics.held.Inc()
	}
	if fx.apartFull {
		p.metrics.full.Inc()
	}
	p.metrics.released.Add(float64(fx.released))
	profile := p.emitProfiles && (fx.snapshot || fx.mergedAway)
	if !fx.changed && len(fx.sends) == 0 && len(fx.merges) == 0 && len(fx.refusals) == 0 && !profile && len(fx.leads) == 0 &&
		len(fx.fanout) == 0 && !fx.status && fx.absorbed == "" {
		p.commitInOrder(ctx)
		return
	}
	if fx.changed {
		ctx.SetValue(n)
	}
	for _, s := range fx.sends {
		ctx.Loopback(s.key, s.msg)
	}
	for i := range fx.merges {
		ctx.Emit(schemas.TopicMerges, fx.merges[i].From, &fx.merges[i])
		if fx.changed { // not a replay's repeat
			p.metrics.merges.Inc()
		}
	}
	for i := range fx.refusals {
		ctx.Emit(schemas.TopicAudit, fx.refusals[i].From, &fx.refusals[i])
		p.metrics.refusals.WithLabelValues(fx.refusals[i].Type).Inc()
	}
	var prof *schemas.Profile
	if len(fx.leads) > 0 || len(fx.fanout) > 0 || fx.status {
		// The profile with the lead folded in (or about to be: an update
		// still in flight to a root whose proposal is pending).
		prof = p.engine.snapshot(ctx.Key(), n)
	}
	if len(fx.fanout) > 0 || fx.status || fx.absorbed != "" {
		// Keyed by the profile id, so that fan-out sees a profile's topic
		// events and status changes in the order the root folded them.
		for _, in := range p.engine.fanoutRecords(prof, n, fx) {
			ctx.Emit(schemas.TopicFanoutInput, ctx.Key(), in)
			kind := "status"
			switch {
			case in.Event != nil:
				kind = "event"
			case in.Absorbed != nil:
				kind = "absorbed"
			}
			p.metrics.fanout.WithLabelValues(kind).Inc()
		}
	}
	if len(fx.leads) > 0 {
		for i := range fx.leads {
			l := fx.leads[i]
			l.Profile = prof
			ctx.Emit(schemas.TopicRoutingInput, n.Tenant, &schemas.RoutingInput{Tenant: n.Tenant, Lead: &l})
			p.metrics.leads.Inc()
		}
	}
	switch {
	case !p.emitProfiles:
	case fx.mergedAway:
		ctx.Emit(schemas.TopicProfiles, ctx.Key(), &schemas.Profile{ID: ctx.Key(), Tenant: n.Tenant, MergedInto: n.Parent})
		p.metrics.profiles.Inc()
	case fx.snapshot:
		ctx.Emit(schemas.TopicProfiles, ctx.Key(), p.engine.snapshot(ctx.Key(), n))
		p.metrics.profiles.Inc()
	}
}

// commitInOrder makes goka commit a message that emits nothing only after
// every earlier message's emits completed: goka would otherwise commit it
// at once, and with it the offsets of earlier messages whose writes are
// still in flight.
func (p *processor) commitInOrder(ctx goka.Context) {
	done := ctx.DeferCommit()
	p.ordered.Barrier(done)
}
