package tags

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
	"github.com/lovoo/goka"
	"github.com/lovoo/goka/storage"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rolodex/rolodex/internal/gokaconfig"
	"github.com/rolodex/rolodex/internal/kafkaclient"
	"github.com/rolodex/rolodex/internal/metrics"
	"github.com/rolodex/rolodex/schedule"
	"github.com/rolodex/rolodex/schemas"
)

// Config runs the tag group against Kafka.
type Config struct {
	Brokers []string
	// StorageDir holds the LevelDB copy of the table partitions this
	// instance owns. Required.
	StorageDir string
	Registerer prometheus.Registerer
	// Sarama replaces gokaconfig.Sarama("rolodex-tags").
	Sarama *sarama.Config
	// Status is the tags configuration: its exclusive groups decide how
	// rule tags and other tags of one group meet (docs/tags.md).
	Status schemas.StatusConfig
	// Tick is how often the scheduler looks for due wakes and the rules
	// for changes; default one second.
	Tick time.Duration
	// Now is the clock (tests); default time.Now.
	Now func() time.Time
	// Logger; default slog.Default().
	Logger *slog.Logger
}

// Metrics of the tag stage.
type Metrics struct {
	snapshots  prometheus.Counter
	changes    *prometheus.CounterVec
	replays    prometheus.Counter
	ticks      prometheus.Counter
	tickErrors prometheus.Counter
	visits     prometheus.Counter
	ruleErrors *prometheus.CounterVec
	reloads    prometheus.Counter
	rules      prometheus.Gauge
	scheduled  prometheus.Gauge
	evalTime   prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		snapshots: prometheus.NewCounter(prometheus.CounterOpts{Name: "rolodex_tags_snapshots_total",
			Help: "Profile snapshots read from rolodex.profiles by the tag stage."}),
		changes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rolodex_tags_changes_total",
			Help: "Tag changes written to rolodex.profile.tags, by op (added, removed) and cause (default, manual, merge, config, rule)."}, []string{"op", "cause"}),
		replays: prometheus.NewCounter(prometheus.CounterOpts{Name: "rolodex_tags_replayed_total",
			Help: "Snapshots and ticks handled again after a restart (their records are written again)."}),
		ticks: prometheus.NewCounter(prometheus.CounterOpts{Name: "rolodex_tags_ticks_total",
			Help: "Wake-ups the scheduler wrote to rolodex.tag.ticks (a profile whose rule tags may change because time passed)."}),
		tickErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "rolodex_tags_tick_errors_total",
			Help: "Ticks Kafka did not take (each is scheduled again): while this grows, rule tags do not follow time."}),
		visits: prometheus.NewCounter(prometheus.CounterOpts{Name: "rolodex_tags_visits_total",
			Help: "Profiles evaluated again by a visit: after a rule change, at start and after a rebalance."}),
		ruleErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rolodex_tags_rule_errors_total",
			Help: "Rule evaluations that failed at run time (the tag stays as it was), by tenant and rule."}, []string{"tenant", "rule"}),
		reloads: prometheus.NewCounter(prometheus.CounterOpts{Name: "rolodex_tags_rule_reloads_total",
			Help: "Times the tag stage applied a changed set of rules to every profile it owns."}),
		rules: prometheus.NewGauge(prometheus.GaugeOpts{Name: "rolodex_tags_rules_active",
			Help: "Active tag rules (all tenants) the tag stage applies."}),
		scheduled: prometheus.NewGauge(prometheus.GaugeOpts{Name: "rolodex_tags_scheduled",
			Help: "Profiles with a pending wake-up in this instance's scheduler."}),
		evalTime: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "rolodex_tags_evaluation_seconds",
			Help:    "Time to evaluate one profile against its tenant's rules.",
			Buckets: prometheus.ExponentialBuckets(1e-6, 4, 10)}),
	}
	if reg == nil {
		return m, nil
	}
	var errs [11]error
	m.snapshots, errs[0] = metrics.Register(reg, m.snapshots)
	m.changes, errs[1] = metrics.Register(reg, m.changes)
	m.replays, errs[2] = metrics.Register(reg, m.replays)
	m.ticks, errs[3] = metrics.Register(reg, m.ticks)
	m.visits, errs[4] = metrics.Register(reg, m.visits)
	m.ruleErrors, errs[5] = metrics.Register(reg, m.ruleErrors)
	m.reloads, errs[6] = metrics.Register(reg, m.reloads)
	m.rules, errs[7] = metrics.Register(reg, m.rules)
	m.scheduled, errs[8] = metrics.Register(reg, m.scheduled)
	m.evalTime, errs[9] = metrics.Register(reg, m.evalTime)
	m.tickErrors, errs[10] = metrics.Register(reg, m.tickErrors)
	if err := errors.Join(errs[:]...); err != nil {
		return nil, fmt.Errorf("tags: register metrics: %w", err)
	}
	return m, nil
}

// visitEvaluate is the name of the visit that evaluates every profile of
// an instance's partitions again.
const visitEvaluate = "evaluate"

type processor struct {
	metrics *Metrics
	ordered *gokaconfig.Ordered
	sched   *schedule.Scheduler
	env     atomic.Pointer[Env]
	now     func() time.Time
	logger  *slog.Logger
	// dl dead-letters what the inputs' codecs cannot decode.
	dl *gokaconfig.DeadLetters
	// failed remembers the rule versions whose failure was logged.
	failedMu sync.Mutex
	failed   map[string]bool
}

func newProcessor(reg prometheus.Registerer, ordered *gokaconfig.Ordered, status schemas.StatusConfig, now func() time.Time, logger *slog.Logger) (*processor, error) {
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	if now == nil {
		now = time.Now
	}
	if logger == nil {
		logger = slog.Default()
	}
	dl, err := gokaconfig.NewDeadLetters(schemas.GroupTags, reg, logger, schemas.UndecodableLetter)
	if err != nil {
		return nil, fmt.Errorf("tags: register metrics: %w", err)
	}
	p := &processor{metrics: m, ordered: ordered, sched: schedule.New(), now: now, logger: logger, dl: dl, failed: map[string]bool{}}
	p.env.Store(&Env{Groups: NewGroups(status), Failed: p.ruleFailed})
	return p, nil
}

func (p *processor) graph() *goka.GroupGraph {
	return goka.DefineGroup(schemas.GroupTags,
		goka.Input(schemas.TopicProfiles, gokaconfig.Tolerant(schemas.JSONCodec[schemas.Profile]{}), p.dl.Wrap(p.onProfile)),
		goka.Input(schemas.TopicTagTicks, gokaconfig.Tolerant(schemas.JSONCodec[schemas.TagTick]{}), p.dl.Wrap(p.onTick)),
		goka.Visitor(visitEvaluate, p.onVisit),
		goka.Output(schemas.TopicProfileTags, schemas.JSONCodec[schemas.TagChange]{}),
		// Tolerant too: goka decodes an input with the codec of the first
		// edge of its topic, and this output is the same topic.
		goka.Output(schemas.TopicTagTicks, gokaconfig.Tolerant(schemas.JSONCodec[schemas.TagTick]{})),
		goka.Output(schemas.TopicTagAudit, schemas.JSONCodec[schemas.RuleFailure]{}),
		goka.Output(schemas.TopicDeadLetter, schemas.DeadLetterCodec{}),
		goka.Persist(schemas.JSONCodec[State]{}),
	)
}

// Group defines the tag goka group with no rules. reg may be nil; ordered
// must wrap the processor's producer.
func Group(reg prometheus.Registerer, ordered *gokaconfig.Ordered) (*goka.GroupGraph, error) {
	p, err := newProcessor(reg, ordered, schemas.StatusConfig{}, nil, nil)
	if err != nil {
		return nil, err
	}
	return p.graph(), nil
}

// Processor is the tag stage: the goka processor, the rules it reads from
// rolodex.tag.rules and its scheduler.
type Processor struct {
	*goka.Processor
	p       *processor
	dir     string // the storage directory
	rules   *goka.View
	emitter *goka.Emitter
	// loop writes the ticks and has the profiles visited after each
	// rebalance and rule change.
	loop schedule.Loop
	// skipped holds the rule records left out and why (read by the one
	// goroutine that reads the rules).
	skipped map[string]string
}

// New returns the tag processor; opts come after the Rolodex defaults.
func New(cfg Config, opts ...goka.ProcessorOption) (*Processor, error) {
	if len(cfg.Brokers) == 0 {
		return nil, errors.New("tags: no brokers")
	}
	if cfg.StorageDir == "" {
		return nil, errors.New("tags: a storage directory is required")
	}
	// The local copy is kept only after a clean shutdown: goka writes a
	// table value locally before Kafka acknowledged it, so after a crash
	// the copy can hold a state the table topic never got, and the replay
	// of its snapshot or tick would be taken for a message already handled
	// (By, TickBy) and committed without writing it again. It is rebuilt
	// from the topic instead (docs/identity.md, "Local storage after a
	// crash"; docs/fanout.md).
	if _, err := gokaconfig.KeepStorageIfClean(cfg.StorageDir); err != nil {
		return nil, fmt.Errorf("tags: %w", err)
	}
	sc := cfg.Sarama
	if sc == nil {
		sc = gokaconfig.Sarama("rolodex-tags")
	}
	ordered := new(gokaconfig.Ordered)
	p, err := newProcessor(cfg.Registerer, ordered, cfg.Status, cfg.Now, cfg.Logger)
	if err != nil {
		return nil, err
	}
	out := &Processor{p: p, dir: cfg.StorageDir, skipped: map[string]string{}}
	tick := cfg.Tick
	if tick <= 0 {
		tick = time.Second
	}
	base := []goka.ProcessorOption{
		goka.WithConsumerGroupBuilder(goka.ConsumerGroupBuilderWithConfig(sc)),
		goka.WithProducerBuilder(ordered.Builder(goka.ProducerBuilderWithConfig(sc))),
		goka.WithConsumerSaramaBuilder(goka.SaramaConsumerBuilderWithConfig(sc)),
		goka.WithTopicManagerBuilder(goka.TopicManagerBuilderWithConfig(sc, gokaconfig.TopicManager(1))),
		goka.WithStorageBuilder(storage.DefaultBuilder(cfg.StorageDir)),
		goka.WithClientID("rolodex-tags"),
		goka.WithRebalanceCallback(func(goka.Assignment) { out.loop.Rebalanced() }),
	}
	if out.Processor, err = goka.NewProcessor(cfg.Brokers, p.graph(), append(base, opts...)...); err != nil {
		return nil, fmt.Errorf("tags: %w", err)
	}
	// The rules view and the tick emitter get copies of sc: goka's
	// builders write their client id into the config they are given
	// (config.ClientID = ...) when they build, which raced with the
	// view's sarama consumer reading it while the processor started.
	viewSC, emitterSC := *sc, *sc
	tmc := gokaconfig.TopicManager(1)
	out.rules, err = goka.NewView(cfg.Brokers, goka.Table(schemas.TopicTagRules), schemas.JSONCodec[schemas.TagRule]{},
		goka.WithViewStorageBuilder(storage.MemoryBuilder()),
		goka.WithViewConsumerSaramaBuilder(goka.SaramaConsumerBuilderWithConfig(&viewSC)),
		goka.WithViewTopicManagerBuilder(goka.TopicManagerBuilderWithConfig(&viewSC, tmc)),
		goka.WithViewAutoReconnect(),
		goka.WithViewClientID("rolodex-tags-rules"),
	)
	if err != nil {
		return nil, fmt.Errorf("tags: rules view: %w", err)
	}
	out.emitter, err = goka.NewEmitter(cfg.Brokers, goka.Stream(schemas.TopicTagTicks), schemas.JSONCodec[schemas.TagTick]{},
		goka.WithEmitterProducerBuilder(goka.ProducerBuilderWithConfig(&emitterSC)),
		goka.WithEmitterTopicManagerBuilder(goka.TopicManagerBuilderWithConfig(&emitterSC, tmc)),
	)
	if err != nil {
		return nil, fmt.Errorf("tags: tick emitter: %w", err)
	}
	out.loop = schedule.Loop{
		Sched: p.sched, Proc: out.Processor, Visit: visitEvaluate, Tick: tick, Now: p.now,
		Emit: func(w schedule.Wake) (*goka.Promise, error) {
			return out.emitter.Emit(w.Key, &schemas.TagTick{At: w.At})
		},
		Before: out.rulesChanged,
		Ticks:  p.metrics.ticks, TickErrors: p.metrics.tickErrors, Scheduled: p.metrics.scheduled,
		Logger: p.logger, Name: "tag stage", Stalled: "rule tags do not follow time",
	}
	out.loop.Rebalanced()
	return out, nil
}

// Run runs the tag stage until ctx is done or it fails: the rules view
// first (no profile is evaluated before every rule is read), then the
// processor, the rule watcher and the scheduler.
//
// The processor and the watcher read the rules view, and goka's View.Run
// closes the view's partitions when it returns: the view runs on a context
// of its own, cancelled only after they have returned. A failed view stops
// them, and its error is Run's. After a clean shutdown (ctx cancelled,
// every write acknowledged) it leaves the marker that keeps the local copy
// at the next start (New).
func (t *Processor) Run(ctx context.Context) error {
	return gokaconfig.MarkCleanShutdown(ctx, t.dir, t.p.ordered, t.run(ctx))
}

func (t *Processor) run(ctx context.Context) error {
	defer t.emitter.Finish()
	sctx, stopStage := context.WithCancel(ctx)
	defer stopStage()
	vctx, stopView := context.WithCancel(context.WithoutCancel(ctx))
	defer stopView()
	viewErr := make(chan error, 1)
	go func() {
		err := t.rules.Run(vctx)
		switch {
		case err != nil:
			err = fmt.Errorf("tags: rules view: %w", err)
		case vctx.Err() == nil:
			err = errors.New("tags: rules view stopped")
		}
		stopStage()
		viewErr <- err
	}()
	err := t.runStage(sctx)
	stopView()
	if verr := <-viewErr; verr != nil {
		return verr
	}
	return err
}

// runStage runs the processor, the rule watcher and the scheduler once
// the rules view has recovered.
func (t *Processor) runStage(ctx context.Context) error {
	if err := t.waitRules(ctx); err != nil {
		return err
	}
	if err := t.reloadRules(); err != nil {
		return err
	}
	return t.loop.RunWith(ctx, t.Processor.Run)
}

func (t *Processor) waitRules(ctx context.Context) error {
	for !t.rules.Recovered() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return nil
}

// reloadRules reads the rules view; it reports whether the rules changed.
func (t *Processor) reloadRules() error {
	_, err := t.readRules()
	return err
}

func (t *Processor) readRules() (bool, error) {
	it, err := t.rules.Iterator()
	if err != nil {
		return false, fmt.Errorf("tags: read rules: %w", err)
	}
	defer it.Release()
	var recs []schemas.TagRule
	for it.Next() {
		key := it.Key()
		v, err := it.Value()
		r, ok := v.(*schemas.TagRule)
		switch {
		case err != nil:
			t.skipRule(key, fmt.Sprintf("not a rule: %v", err))
			continue
		case !ok || r == nil:
			continue // a tombstone: the API never writes one
		case key != schemas.RuleKey(r.Tenant, r.ID):
			// As the API's store: a record whose key does not name its
			// tenant and id could move a rule across tenants.
			t.skipRule(key, fmt.Sprintf("keyed %q but says tenant %q, rule %q", key, r.Tenant, r.ID))
			continue
		}
		recs = append(recs, *r)
	}
	cur := t.p.env.Load()
	if cur.Rules != nil && cur.Rules.Fingerprint == Fingerprint(recs) {
		return false, nil
	}
	rs, errs := NewRuleSet(recs)
	for _, err := range errs {
		t.p.logger.Error("tag rule left out", "err", err)
	}
	active := 0
	for _, rs := range rs.active {
		active += len(rs)
	}
	t.p.metrics.rules.Set(float64(active))
	t.p.env.Store(&Env{Rules: rs, Groups: cur.Groups, Failed: cur.Failed})
	return cur.Rules != nil, nil
}

// skipRule logs, once per key, a record of rolodex.tag.rules the stage
// leaves out.
func (t *Processor) skipRule(key, why string) {
	if t.skipped[key] == why {
		return
	}
	t.skipped[key] = why
	t.p.logger.Error("tag stage: a record of rolodex.tag.rules left out", "key", key, "why", why)
}

// rulesChanged reads the rules at every tick of the loop; a change asks
// for a visit of every profile the instance owns (hot reload).
func (t *Processor) rulesChanged() bool {
	changed, err := t.readRules()
	if err != nil {
		t.p.logger.Error("tag rules not read", "err", err)
	}
	if changed {
		t.p.metrics.reloads.Inc()
	}
	return changed
}

// origin identifies a delivery: the offset on its topic (a key lives on
// one partition of each), plus one so that it is never 0.
func origin(ctx goka.Context) int64 { return ctx.Offset() + 1 }

func (p *processor) onProfile(ctx goka.Context, msg any) {
	prof, ok := msg.(*schemas.Profile)
	p.metrics.snapshots.Inc()
	if !ok || prof == nil {
		p.commitInOrder(ctx)
		return
	}
	p.handle(ctx, Message{Snapshot: prof, Origin: origin(ctx), At: ctx.Timestamp().UnixMilli()})
}

func (p *processor) onTick(ctx goka.Context, msg any) {
	tick, ok := msg.(*schemas.TagTick)
	if !ok || tick == nil {
		p.commitInOrder(ctx)
		return
	}
	p.handle(ctx, Message{Tick: true, Origin: origin(ctx), At: tick.At})
}

// onVisit evaluates a profile without writing: when the rules (changed,
// or time passed while no instance ran) would change its tags, it writes a
// tick for it, so that every record comes from a message with an origin
// and a replay after a crash sends the same records. It also registers the
// profile's wake with the scheduler (the start of an instance, a
// rebalance).
func (p *processor) onVisit(ctx goka.Context, _ any) {
	p.metrics.visits.Inc()
	var s *State
	if v := ctx.Value(); v != nil {
		s = v.(*State)
	}
	if tick, ok := Visit(s, ctx.Key(), p.now().UnixMilli(), p.env.Load()); ok {
		ctx.Emit(schemas.TopicTagTicks, ctx.Key(), &schemas.TagTick{At: tick})
	} else if s != nil {
		p.sched.Set(ctx.Key(), s.Wake)
	}
	p.commitInOrder(ctx)
}

func (p *processor) handle(ctx goka.Context, m Message) {
	var s *State
	if v := ctx.Value(); v != nil {
		s = v.(*State)
	}
	began := time.Now()
	r := Apply(s, ctx.Key(), m, p.env.Load())
	p.metrics.evalTime.Observe(time.Since(began).Seconds())
	if r.Replayed {
		p.metrics.replays.Inc()
	}
	if r.State != nil {
		p.sched.Set(ctx.Key(), r.State.Wake)
	}
	if !r.Write {
		p.commitInOrder(ctx)
		return
	}
	if !r.Replayed {
		ctx.SetValue(r.State)
	}
	for i := range r.Changes {
		ctx.Emit(schemas.TopicProfileTags, ctx.Key(), &r.Changes[i])
		if !r.Replayed {
			p.metrics.changes.WithLabelValues(r.Changes[i].Op, causeLabel(r.Changes[i].Cause)).Inc()
		}
	}
	for i := range r.Failures {
		ctx.Emit(schemas.TopicTagAudit, ctx.Key(), &r.Failures[i])
	}
	if r.Replayed && len(r.Changes)+len(r.Failures) == 0 {
		p.commitInOrder(ctx)
	}
}

// ruleFailed counts a rule's run-time failure and logs the first of each
// rule version.
func (p *processor) ruleFailed(r *Rule, err error) {
	p.metrics.ruleErrors.WithLabelValues(r.Tenant, r.ID).Inc()
	k := r.Tenant + "/" + r.Cause()
	p.failedMu.Lock()
	first := !p.failed[k]
	p.failed[k] = true
	p.failedMu.Unlock()
	if first {
		p.logger.Warn("tag rule failed on a profile; its tag stays as it was (logged once per rule version)",
			"tenant", r.Tenant, "rule", r.ID, "version", r.Version, "err", err)
	}
}

// causeLabel keeps the metric's label set small: every rule is "rule".
func causeLabel(c string) string {
	if len(c) > 5 && c[:5] == "rule:" {
		return "rule"
	}
	return c
}

// commitInOrder makes goka commit a message that writes nothing only after
// every earlier message's writes completed (gokaconfig.Ordered).
func (p *processor) commitInOrder(ctx goka.Context) {
	done := ctx.DeferCommit()
	p.ordered.Barrier(done)
}

// EnsureTopics creates the tag group's table and output with the partition
// count of rolodex.profiles (goka requires the table to be co-partitioned
// with the input), which must exist (identity.EnsureTopics creates it).
func EnsureTopics(ctx context.Context, admin *kgo.Client, replication int16) error {
	if _, err := kafkaclient.EnsureTopicsLike(ctx, admin, replication, schemas.TopicProfiles, Topics); err != nil {
		return fmt.Errorf("tags: %w", err)
	}
	return nil
}

// Topics returns the tag group's topics for a given partition count: its
// table (compacted), rolodex.profile.tags, rolodex.tag.ticks (both
// co-partitioned with the profiles), rolodex.tag.audit and rolodex.tag.rules (compacted; the
// servers create it with the base topics, with as many partitions: every
// instance reads it whole).
func Topics(partitions int32) []kafkaclient.TopicSpec {
	compact := "compact"
	return []kafkaclient.TopicSpec{
		{Name: string(goka.GroupTable(schemas.GroupTags)), Partitions: partitions, Configs: map[string]*string{"cleanup.policy": &compact}},
		{Name: schemas.TopicProfileTags, Partitions: partitions},
		{Name: schemas.TopicTagTicks, Partitions: partitions},
		{Name: schemas.TopicTagAudit, Partitions: partitions},
		// Where an input record that does not decode goes (ingest creates it too).
		{Name: schemas.TopicDeadLetter, Partitions: partitions},
		{Name: schemas.TopicTagRules, Partitions: partitions, Configs: map[string]*string{"cleanup.policy": &compact}},
	}
}
