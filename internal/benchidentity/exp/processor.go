// Package exp is a TEMPORARY copy of processors/identity and the identity types of
// schemas, to measure proposed changes with the benchmark. Delete after measuring.

package exp

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/lovoo/goka"
	"github.com/lovoo/goka/storage"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/rolodex/rolodex/internal/gokaconfig"
	"github.com/rolodex/rolodex/internal/kafkaclient"
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
}

// Options returns the goka options that wire sarama, topic creation and
// storage the Rolodex way.
func Options(brokers []string, storageDir string, replication int) []goka.ProcessorOption {
	sc := gokaconfig.Sarama("rolodex-identity")
	tmc := gokaconfig.TopicManager(replication)
	return []goka.ProcessorOption{
		goka.WithConsumerGroupBuilder(goka.ConsumerGroupBuilderWithConfig(sc)),
		goka.WithProducerBuilder(gokaconfig.OrderedProducerBuilder(goka.ProducerBuilderWithConfig(sc))),
		goka.WithConsumerSaramaBuilder(goka.SaramaConsumerBuilderWithConfig(sc)),
		goka.WithTopicManagerBuilder(goka.TopicManagerBuilderWithConfig(sc, tmc)),
		goka.WithStorageBuilder(storage.DefaultBuilder(storageDir)),
		goka.WithClientID("rolodex-identity"),
	}
}

// Metrics of the identity stage.
type Metrics struct {
	events   *prometheus.CounterVec
	messages *prometheus.CounterVec
	merges   prometheus.Counter
	refusals *prometheus.CounterVec
	latency  prometheus.Histogram
	profiles prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *Metrics {
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
	}
	if reg != nil {
		reg.MustRegister(m.events, m.messages, m.merges, m.refusals, m.latency, m.profiles)
	}
	return m
}

type processor struct {
	cache        sync.Map // partition → map[string]*Node
	engine       *Engine
	metrics      *Metrics
	emitProfiles bool
}

// Group defines the identity goka group. reg may be nil.
func Group(cfg Config, emitProfiles bool, reg prometheus.Registerer, v Variant) (*goka.GroupGraph, *processor, error) {
	e, err := NewEngine(cfg)
	if err != nil {
		return nil, nil, err
	}
	e.V = v
	p := &processor{engine: e, metrics: newMetrics(reg), emitProfiles: emitProfiles}
	return goka.DefineGroup(schemas.GroupIdentity,
		goka.Input(schemas.TopicEvents, schemas.EventCodec{}, p.onEvent),
		goka.Loop(schemas.JSONCodec[Message]{}, p.onMessage),
		goka.Output(schemas.TopicMerges, schemas.JSONCodec[Merge]{}),
		goka.Output(schemas.TopicAudit, schemas.JSONCodec[Refusal]{}),
		goka.Output(schemas.TopicProfiles, schemas.JSONCodec[Profile]{}),
		goka.Persist(schemas.JSONCodec[Node]{}),
	), p, nil
}

// New returns the identity processor; opts come after (and override) the
// Rolodex defaults, e.g. goka.WithTester in tests.
func New(cfg ProcessorConfig, v Variant, opts ...goka.ProcessorOption) (*goka.Processor, error) {
	if len(cfg.Brokers) == 0 {
		return nil, errors.New("identity: no brokers")
	}
	if cfg.StorageDir == "" {
		return nil, errors.New("identity: a storage directory is required")
	}
	if cfg.Replication == 0 {
		cfg.Replication = 1
	}
	g, proc, err := Group(cfg.Engine, !cfg.SkipProfiles, cfg.Registerer, v)
	if err != nil {
		return nil, err
	}
	all := append(Options(cfg.Brokers, cfg.StorageDir, cfg.Replication), opts...)
	all = append(all, goka.WithRebalanceCallback(func(goka.Assignment) { proc.cache.Clear() }))
	p, err := goka.NewProcessor(cfg.Brokers, g, all...)
	if err != nil {
		return nil, fmt.Errorf("identity: %w", err)
	}
	return p, nil
}

func origin(ctx goka.Context) int64 {
	at := 2*ctx.Offset() + 2
	if ctx.Topic() != schemas.TopicEvents {
		at++
	}
	return at
}

func (p *processor) node(ctx goka.Context) *Node {
	if p.engine.V.NodeCache {
		if m, ok := p.cache.Load(ctx.Partition()); ok {
			if n, ok := m.(map[string]*Node)[ctx.Key()]; ok {
				return n
			}
		}
	}
	if v := ctx.Value(); v != nil {
		return v.(*Node)
	}
	return nil
}

func (p *processor) remember(ctx goka.Context, n *Node, written bool) {
	if !p.engine.V.NodeCache {
		return
	}
	m, ok := p.cache.Load(ctx.Partition())
	if !ok || len(m.(map[string]*Node)) > 200000 {
		m = map[string]*Node{}
		p.cache.Store(ctx.Partition(), m)
	}
	if written {
		m.(map[string]*Node)[ctx.Key()] = n
	} else {
		delete(m.(map[string]*Node), ctx.Key())
	}
}

func (p *processor) onEvent(ctx goka.Context, msg any) {
	ev, ok := msg.(*schemas.Event)
	if !ok || len(ev.Identifiers) == 0 {
		// Ingest validated every event; an event without identifiers is a
		// bug upstream, not a reason to stop the stage.
		p.metrics.events.WithLabelValues("invalid").Inc()
		return
	}
	n, fx := p.eng(ctx).Event(ctx.Key(), p.node(ctx), ev)
	if fx.applied {
		p.metrics.events.WithLabelValues("applied").Inc()
		p.metrics.latency.Observe(time.Since(ev.ReceivedAt).Seconds())
	} else {
		p.metrics.events.WithLabelValues("duplicate").Inc()
	}
	p.apply(ctx, n, fx)
}

func (p *processor) onMessage(ctx goka.Context, msg any) {
	m := msg.(*Message)
	p.metrics.messages.WithLabelValues(m.Kind).Inc()
	n, fx := p.eng(ctx).Message(ctx.Key(), p.node(ctx), m)
	p.apply(ctx, n, fx)
}

// apply writes the node and sends the effects. All of it is acknowledged
// before goka commits the input offset; a crash before that replays the
// input, and every effect is idempotent (docs/identity.md).
//
// The node is written on every delivery, changed or not: after a crash the
// local store may hold a write that never reached the table topic, and the
// replayed input that made it must put it there.
func (p *processor) apply(ctx goka.Context, n *Node, fx effects) {
	write := true
	if p.engine.V.WriteOnChange {
		if fx.changed {
			n.ChangedBy = origin(ctx)
		} else if n.ChangedBy != origin(ctx) {
			write = false
		}
	}
	if write {
		ctx.SetValue(n)
	}
	p.remember(ctx, n, write)
	for _, s := range fx.sends {
		ctx.Loopback(s.key, s.msg)
	}
	for i := range fx.merges {
		ctx.Emit(schemas.TopicMerges, fx.merges[i].From, &fx.merges[i])
		p.metrics.merges.Inc()
	}
	for i := range fx.refusals {
		ctx.Emit(schemas.TopicAudit, fx.refusals[i].From, &fx.refusals[i])
		p.metrics.refusals.WithLabelValues(fx.refusals[i].Type).Inc()
	}
	if !p.emitProfiles {
		return
	}
	switch {
	case fx.mergedAway:
		ctx.Emit(schemas.TopicProfiles, ctx.Key(), &Profile{ID: ctx.Key(), Tenant: n.Tenant, MergedInto: n.Parent})
		p.metrics.profiles.Inc()
	case fx.rootUpdate && n.IsRoot():
		ctx.Emit(schemas.TopicProfiles, ctx.Key(), Fold(ctx.Key(), n))
		p.metrics.profiles.Inc()
	}
}

// Topics returns the topics the identity stage needs, to be created before
// any instance starts (goka's own creation races between instances): its
// table (compacted) and loopback with the partition count of rolodex.events
// (goka requires co-partitioning), and its outputs (rolodex.profiles
// compacted).
func Topics(partitions int32) []kafkaclient.TopicSpec {
	compact := map[string]*string{"cleanup.policy": ptr("compact")}
	return []kafkaclient.TopicSpec{
		{Name: string(goka.GroupTable(schemas.GroupIdentity)), Partitions: partitions, Configs: compact},
		{Name: schemas.GroupIdentity + "-loop", Partitions: partitions},
		{Name: schemas.TopicMerges, Partitions: partitions},
		{Name: schemas.TopicAudit, Partitions: partitions},
		{Name: schemas.TopicProfiles, Partitions: partitions, Configs: compact},
	}
}

func ptr(s string) *string { return &s }

// eng is the engine for one callback: it knows the message's origin.
func (p *processor) eng(ctx goka.Context) *Engine {
	e := *p.engine
	e.at = origin(ctx)
	return &e
}
