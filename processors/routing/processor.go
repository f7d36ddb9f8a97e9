package routing

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/IBM/sarama"
	"github.com/lovoo/goka"
	"github.com/lovoo/goka/storage"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sync/errgroup"

	"github.com/rolodex/rolodex/internal/gokaconfig"
	"github.com/rolodex/rolodex/internal/kafkaclient"
	"github.com/rolodex/rolodex/internal/metrics"
	"github.com/rolodex/rolodex/schedule"
	"github.com/rolodex/rolodex/schemas"
)

// DefaultRetention is routing.retention's default: how long a closed lead
// stays in its tenant's state, so that its id sent again is a duplicate.
const DefaultRetention = 30 * 24 * time.Hour

// Config runs lead routing against Kafka: the group rolodex-routing
// (keyed by tenant) and the re-key step rolodex-routing-router.
type Config struct {
	Brokers []string
	// StorageDir holds the LevelDB copy of the table partitions this
	// instance owns. Required.
	StorageDir string
	Registerer prometheus.Registerer
	// Sarama replaces gokaconfig.Sarama(<group>) (a copy per group).
	Sarama *sarama.Config
	// Partners: each partner's time zone and working hours.
	Partners []schemas.PartnerRouting
	// Retention is how long a closed lead is kept (to know its id
	// again); 0: DefaultRetention; negative: for ever.
	Retention time.Duration
	// FollowTypes are the event types forwarded to the partner holding
	// the lead (properties.lead_id); nil: DefaultFollowTypes.
	FollowTypes []string
	// Tick is how often the scheduler looks for due SLA deadlines;
	// default one second.
	Tick time.Duration
	// Now is the clock of the scheduler (tests); default time.Now. A
	// decision's instant is never read from it: it is the message's
	// (docs/routing.md, "Exactly once").
	Now func() time.Time
	// Logger; default slog.Default().
	Logger *slog.Logger
}

// Metrics of lead routing.
type Metrics struct {
	decisions  *prometheus.CounterVec
	leads      *prometheus.CounterVec
	feedback   *prometheus.CounterVec
	followUps  *prometheus.CounterVec
	deliveries *prometheus.CounterVec
	ruleErrors *prometheus.CounterVec
	skipped    *prometheus.CounterVec
	rekeyed    *prometheus.CounterVec
	replays    prometheus.Counter
	ticks      prometheus.Counter
	tickErrors prometheus.Counter
	visits     prometheus.Counter
	scheduled  prometheus.Gauge
	decideTime prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rolodex_routing_decisions_total",
			Help: "Routing decisions, by tenant, rule (empty when unrouted), cause (lead, rejected, sla) and outcome (routed, or the unrouted reason: blacklisted, no_match, no_eligible, sla_exhausted)."},
			[]string{"tenant", "rule", "cause", "outcome"}),
		leads: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rolodex_routing_leads_total",
			Help: "Leads read from rolodex.routing.input, by result (new; duplicate: a lead id the tenant's state knows, never routed twice)."}, []string{"result"}),
		feedback: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rolodex_routing_feedback_total",
			Help: "Partners' feedback, by result (accepted, rejected; ignored: an unknown or closed lead, or a partner that does not hold it)."}, []string{"result"}),
		followUps: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rolodex_routing_follow_ups_total",
			Help: "Follow-ups (lead.updated, opportunity.updated), by result (forwarded to the partner holding the lead; dropped: an unknown or never routed lead)."}, []string{"result"}),
		ruleErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rolodex_routing_rule_errors_total",
			Help: "Routing rule conditions that failed at run time (the rule is skipped), by tenant and rule."}, []string{"tenant", "rule"}),
		skipped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rolodex_routing_skipped_records_total",
			Help: "Records of the routing inputs left out, by topic: not decodable, or naming another tenant than their key."}, []string{"topic"}),
		rekeyed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rolodex_routing_rekeyed_total",
			Help: "Events of rolodex.events the re-key step wrote to rolodex.routing.input, by kind (feedback, follow_up)."}, []string{"kind"}),
		replays: prometheus.NewCounter(prometheus.CounterOpts{Name: "rolodex_routing_replayed_total",
			Help: "Routing messages handled again after a restart (their outcomes written again from the outbox)."}),
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rolodex_routing_deliveries_total",
			Help: "Delivery reports read, by result: delivered, rerouted (a failed delivery of the current attempt), ignored (stale, or about a closed lead)."},
			[]string{"result"}),
		ticks: prometheus.NewCounter(prometheus.CounterOpts{Name: "rolodex_routing_ticks_total",
			Help: "Wake-ups the scheduler wrote to rolodex.routing.ticks (a tenant with an SLA deadline due)."}),
		tickErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "rolodex_routing_tick_errors_total",
			Help: "Ticks Kafka did not take (each is scheduled again): while this grows, SLA re-routes wait."}),
		visits: prometheus.NewCounter(prometheus.CounterOpts{Name: "rolodex_routing_visits_total",
			Help: "Tenants visited at start and after a rebalance to register their SLA wakes."}),
		scheduled: prometheus.NewGauge(prometheus.GaugeOpts{Name: "rolodex_routing_scheduled",
			Help: "Tenants with a pending SLA wake-up in this instance's scheduler."}),
		decideTime: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "rolodex_routing_apply_seconds",
			Help:    "Time to handle one routing message (decode excluded).",
			Buckets: prometheus.ExponentialBuckets(1e-6, 4, 10)}),
	}
	if reg == nil {
		return m, nil
	}
	var errs [14]error
	m.decisions, errs[0] = metrics.Register(reg, m.decisions)
	m.leads, errs[1] = metrics.Register(reg, m.leads)
	m.feedback, errs[2] = metrics.Register(reg, m.feedback)
	m.followUps, errs[3] = metrics.Register(reg, m.followUps)
	m.ruleErrors, errs[4] = metrics.Register(reg, m.ruleErrors)
	m.skipped, errs[5] = metrics.Register(reg, m.skipped)
	m.rekeyed, errs[6] = metrics.Register(reg, m.rekeyed)
	m.replays, errs[7] = metrics.Register(reg, m.replays)
	m.ticks, errs[8] = metrics.Register(reg, m.ticks)
	m.tickErrors, errs[9] = metrics.Register(reg, m.tickErrors)
	m.visits, errs[10] = metrics.Register(reg, m.visits)
	m.scheduled, errs[11] = metrics.Register(reg, m.scheduled)
	m.decideTime, errs[12] = metrics.Register(reg, m.decideTime)
	m.deliveries, errs[13] = metrics.Register(reg, m.deliveries)
	if err := errors.Join(errs[:]...); err != nil {
		return nil, fmt.Errorf("routing: register metrics: %w", err)
	}
	return m, nil
}

// visitWake is the name of the visit that registers every tenant's SLA
// wake with the scheduler.
const visitWake = "wake"

type processor struct {
	metrics     *Metrics
	ordered     *gokaconfig.Ordered
	sched       *schedule.Scheduler
	env         *Env
	followTypes []string
	logger      *slog.Logger
	// dl dead-letters what the inputs' codecs cannot decode.
	dl *gokaconfig.DeadLetters
}

// commitInOrder makes goka commit a message that writes nothing only after
// every earlier message's writes completed (gokaconfig.Ordered).
func (p *processor) commitInOrder(ctx goka.Context) {
	done := ctx.DeferCommit()
	p.ordered.Barrier(done)
}

// origin identifies a delivery: the offset on its topic (a tenant lives on
// one partition of each input), plus one so that it is never 0.
func origin(ctx goka.Context) int64 { return ctx.Offset() + 1 }

func (p *processor) graph() *goka.GroupGraph {
	return goka.DefineGroup(schemas.GroupRouting,
		goka.Input(schemas.TopicRoutingInput, gokaconfig.Tolerant(schemas.JSONCodec[schemas.RoutingInput]{}), p.dl.Wrap(p.onInput)),
		goka.Input(schemas.TopicRoutingRules, gokaconfig.Tolerant(schemas.JSONCodec[schemas.RoutingRules]{}), p.dl.Wrap(p.onRules)),
		goka.Input(schemas.TopicRoutingTicks, gokaconfig.Tolerant(schemas.JSONCodec[schemas.RoutingTick]{}), p.dl.Wrap(p.onTick)),
		goka.Visitor(visitWake, p.onVisit),
		goka.Output(schemas.TopicRoutingOutcomes, schemas.JSONCodec[schemas.LeadOutcome]{}),
		goka.Output(schemas.TopicDeadLetter, schemas.DeadLetterCodec{}),
		goka.Persist(schemas.JSONCodec[State]{}),
	)
}

// routerGraph is the stateless re-key step (RouteEvent).
func (p *processor) routerGraph() *goka.GroupGraph {
	return goka.DefineGroup(schemas.GroupRoutingRouter,
		goka.Input(schemas.TopicEvents, gokaconfig.Tolerant(schemas.EventCodec{}), p.dl.Wrap(p.onEvent)),
		goka.Output(schemas.TopicRoutingInput, schemas.JSONCodec[schemas.RoutingInput]{}),
		goka.Output(schemas.TopicDeadLetter, schemas.DeadLetterCodec{}),
	)
}

// skip leaves a record out: it is counted, logged and committed in order.
func (p *processor) skip(ctx goka.Context, why string) {
	p.metrics.skipped.WithLabelValues(string(ctx.Topic())).Inc()
	p.logger.Error("routing: a record left out", "topic", ctx.Topic(), "partition", ctx.Partition(), "offset", ctx.Offset(), "key", ctx.Key(), "why", why)
	p.commitInOrder(ctx)
}

func (p *processor) onInput(ctx goka.Context, msg any) {
	in, ok := msg.(*schemas.RoutingInput)
	switch {
	case !ok || in == nil:
		p.skip(ctx, "not a routing input")
		return
	case in.Tenant != ctx.Key():
		// The tenant is the routing key: a record under another key would
		// read and move another tenant's counters.
		p.skip(ctx, fmt.Sprintf("says tenant %q", in.Tenant))
		return
	}
	p.handle(ctx, Message{Input: in, Origin: origin(ctx), At: ctx.Timestamp().UnixMilli()})
}

func (p *processor) onRules(ctx goka.Context, msg any) {
	rl, ok := msg.(*schemas.RoutingRules)
	switch {
	case !ok || rl == nil:
		p.skip(ctx, "not a rule list")
		return
	case rl.Tenant != ctx.Key():
		p.skip(ctx, fmt.Sprintf("says tenant %q", rl.Tenant))
		return
	}
	p.handle(ctx, Message{Rules: rl, Origin: origin(ctx), At: ctx.Timestamp().UnixMilli()})
}

func (p *processor) onTick(ctx goka.Context, msg any) {
	tick, ok := msg.(*schemas.RoutingTick)
	if !ok || tick == nil {
		p.skip(ctx, "not a tick")
		return
	}
	p.handle(ctx, Message{Tick: true, Origin: origin(ctx), At: tick.At})
}

// onVisit registers the tenant's SLA wake with the scheduler (the start of
// an instance, a rebalance); a wake already past is ticked at once.
func (p *processor) onVisit(ctx goka.Context, _ any) {
	p.metrics.visits.Inc()
	if v := ctx.Value(); v != nil {
		p.sched.Set(ctx.Key(), v.(*State).Wake)
	}
	p.commitInOrder(ctx)
}

func (p *processor) handle(ctx goka.Context, m Message) {
	var s *State
	if v := ctx.Value(); v != nil {
		s = v.(*State)
	}
	began := time.Now()
	r := Apply(s, ctx.Key(), m, p.env)
	p.metrics.decideTime.Observe(time.Since(began).Seconds())
	if r.State != nil {
		p.sched.Set(ctx.Key(), r.State.Wake)
	}
	if r.Replayed {
		p.metrics.replays.Inc()
	} else {
		p.count(ctx.Key(), m, r)
	}
	if r.Write && !r.Replayed {
		ctx.SetValue(r.State)
	}
	for i := range r.Outcomes {
		ctx.Emit(schemas.TopicRoutingOutcomes, r.Outcomes[i].LeadID, &r.Outcomes[i])
	}
	if (!r.Write || r.Replayed) && len(r.Outcomes) == 0 {
		p.commitInOrder(ctx)
	}
}

// count counts a message handled for the first time.
func (p *processor) count(tenant string, m Message, r Result) {
	has := func(typ string) bool {
		for _, o := range r.Outcomes {
			if o.Type == typ {
				return true
			}
		}
		return false
	}
	switch {
	case m.Input != nil && m.Input.Lead != nil:
		p.metrics.leads.WithLabelValues(map[bool]string{true: "new", false: "duplicate"}[len(r.Outcomes) > 0]).Inc()
	case m.Input != nil && m.Input.Feedback != nil:
		switch {
		case has(schemas.OutcomeAccepted):
			p.metrics.feedback.WithLabelValues("accepted").Inc()
		case has(schemas.OutcomeRejected):
			p.metrics.feedback.WithLabelValues("rejected").Inc()
		default:
			p.metrics.feedback.WithLabelValues("ignored").Inc()
		}
	case m.Input != nil && m.Input.Delivery != nil:
		dl := m.Input.Delivery
		l := r.State.Leads[dl.LeadID]
		switch {
		case dl.OK && l != nil && l.Partner == dl.Partner && len(l.History) == dl.Attempt && l.DeliveredAt == r.State.At:
			p.metrics.deliveries.WithLabelValues("delivered").Inc()
		case len(r.Outcomes) > 0:
			p.metrics.deliveries.WithLabelValues("rerouted").Inc()
		default:
			p.metrics.deliveries.WithLabelValues("ignored").Inc()
		}
	case m.Input != nil && m.Input.FollowUp != nil:
		p.metrics.followUps.WithLabelValues(map[bool]string{true: "forwarded", false: "dropped"}[has(schemas.OutcomeForwarded)]).Inc()
	}
	for _, o := range r.Outcomes {
		switch o.Type {
		case schemas.OutcomeRouted:
			p.metrics.decisions.WithLabelValues(tenant, o.Rule, o.Cause, "routed").Inc()
		case schemas.OutcomeUnrouted:
			p.metrics.decisions.WithLabelValues(tenant, "", o.Cause, o.Reason).Inc()
		default:
			continue
		}
		// The decision's rule errors, from the lead's latest decision.
		if l := r.State.Leads[o.LeadID]; l != nil && len(l.History) > 0 {
			for _, c := range l.History[len(l.History)-1].Candidates {
				if c.Skip == schemas.SkipError {
					p.metrics.ruleErrors.WithLabelValues(tenant, c.Rule).Inc()
				}
			}
		}
	}
}

func (p *processor) onEvent(ctx goka.Context, msg any) {
	ev, ok := msg.(*schemas.Event)
	if !ok || ev == nil {
		p.commitInOrder(ctx)
		return
	}
	in := RouteEvent(ev, p.followTypes)
	if in == nil {
		p.commitInOrder(ctx)
		return
	}
	kind := "feedback"
	if in.FollowUp != nil {
		kind = "follow_up"
	}
	p.metrics.rekeyed.WithLabelValues(kind).Inc()
	ctx.Emit(schemas.TopicRoutingInput, in.Tenant, in)
}

// Processor is lead routing on Kafka: the group rolodex-routing, its SLA
// scheduler and tick emitter, and the re-key step rolodex-routing-router.
type Processor struct {
	// Routing is the group keyed by tenant; Router the re-key step.
	Routing, Router *goka.Processor
	p               *processor
	dir             string // the storage directory of rolodex-routing
	emitter         *goka.Emitter
	// loop writes the SLA ticks and has the tenants visited after each
	// rebalance.
	loop schedule.Loop
}

// New returns lead routing's processors; opts come after the Rolodex
// defaults and apply to both groups.
func New(cfg Config, opts ...goka.ProcessorOption) (*Processor, error) {
	if len(cfg.Brokers) == 0 {
		return nil, errors.New("routing: no brokers")
	}
	if cfg.StorageDir == "" {
		return nil, errors.New("routing: a storage directory is required")
	}
	// rolodex-routing's local copy is kept only after a clean shutdown:
	// goka writes a table value locally before Kafka acknowledged it, so
	// after a crash the copy can hold a tenant's state the table topic
	// never got, and the replay of its message would be taken for one
	// already handled (By) and committed without writing it again. It is
	// rebuilt from the topic instead (docs/identity.md, "Local storage
	// after a crash"; docs/fanout.md). The re-key step keeps nothing.
	if _, err := gokaconfig.KeepStorageIfClean(cfg.StorageDir); err != nil {
		return nil, fmt.Errorf("routing: %w", err)
	}
	retention := cfg.Retention
	switch {
	case retention == 0:
		retention = DefaultRetention
	case retention < 0:
		retention = 0
	}
	env, err := NewEnv(cfg.Partners, retention)
	if err != nil {
		return nil, err
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.Default()
	}
	follow := cfg.FollowTypes
	if follow == nil {
		follow = DefaultFollowTypes
	}
	out := &Processor{dir: cfg.StorageDir}
	tick, now := cfg.Tick, cfg.Now
	if tick <= 0 {
		tick = time.Second
	}
	if now == nil {
		now = time.Now
	}
	config := func(name string) *sarama.Config {
		if cfg.Sarama != nil {
			c := *cfg.Sarama
			return &c
		}
		return gokaconfig.Sarama(name)
	}
	build := func(name string, p *processor, graph *goka.GroupGraph, sb storage.Builder, sc *sarama.Config, extra ...goka.ProcessorOption) (*goka.Processor, error) {
		base := []goka.ProcessorOption{
			goka.WithConsumerGroupBuilder(goka.ConsumerGroupBuilderWithConfig(sc)),
			goka.WithProducerBuilder(p.ordered.Builder(goka.ProducerBuilderWithConfig(sc))),
			goka.WithConsumerSaramaBuilder(goka.SaramaConsumerBuilderWithConfig(sc)),
			goka.WithTopicManagerBuilder(goka.TopicManagerBuilderWithConfig(sc, gokaconfig.TopicManager(1))),
			goka.WithStorageBuilder(sb),
			goka.WithClientID(name),
		}
		gp, err := goka.NewProcessor(cfg.Brokers, graph, append(append(base, extra...), opts...)...)
		if err != nil {
			return nil, fmt.Errorf("routing: %s: %w", name, err)
		}
		return gp, nil
	}
	sched := schedule.New()
	dl, err := gokaconfig.NewDeadLetters(schemas.GroupRouting, cfg.Registerer, logger, schemas.UndecodableLetter)
	if err != nil {
		return nil, fmt.Errorf("routing: register metrics: %w", err)
	}
	routerDL, err := gokaconfig.NewDeadLetters(schemas.GroupRoutingRouter, cfg.Registerer, logger, schemas.UndecodableLetter)
	if err != nil {
		return nil, fmt.Errorf("routing: register metrics: %w", err)
	}
	out.p = &processor{metrics: m, ordered: new(gokaconfig.Ordered), sched: sched, env: env, followTypes: follow, logger: logger, dl: dl}
	sc := config(schemas.GroupRouting)
	// The tick emitter gets a copy of sc: goka's builders write their
	// client id into the config they are given (see processors/tags).
	emitterSC := *sc
	if out.Routing, err = build(schemas.GroupRouting, out.p, out.p.graph(), storage.DefaultBuilder(cfg.StorageDir), sc,
		goka.WithRebalanceCallback(func(goka.Assignment) { out.loop.Rebalanced() })); err != nil {
		return nil, err
	}
	router := &processor{metrics: m, ordered: new(gokaconfig.Ordered), followTypes: follow, logger: logger, dl: routerDL}
	if out.Router, err = build(schemas.GroupRoutingRouter, router, router.routerGraph(), storage.MemoryBuilder(), config(schemas.GroupRoutingRouter)); err != nil {
		return nil, err
	}
	out.emitter, err = goka.NewEmitter(cfg.Brokers, goka.Stream(schemas.TopicRoutingTicks), schemas.JSONCodec[schemas.RoutingTick]{},
		goka.WithEmitterProducerBuilder(goka.ProducerBuilderWithConfig(&emitterSC)),
		goka.WithEmitterTopicManagerBuilder(goka.TopicManagerBuilderWithConfig(&emitterSC, gokaconfig.TopicManager(1))),
	)
	if err != nil {
		return nil, fmt.Errorf("routing: tick emitter: %w", err)
	}
	out.loop = schedule.Loop{
		Sched: sched, Proc: out.Routing, Visit: visitWake, Tick: tick, Now: now,
		Emit: func(w schedule.Wake) (*goka.Promise, error) {
			return out.emitter.Emit(w.Key, &schemas.RoutingTick{Tenant: w.Key, At: w.At})
		},
		Ticks: m.ticks, TickErrors: m.tickErrors, Scheduled: m.scheduled,
		Logger: logger, Name: "routing", Stalled: "SLA re-routes wait",
	}
	out.loop.Rebalanced()
	return out, nil
}

// Run runs both groups and the SLA scheduler until ctx is done or one of
// them fails (then the others stop too). When rolodex-routing stopped only
// because it was asked to, with every write acknowledged, it leaves the
// marker that keeps its local copy at the next start (New).
func (t *Processor) Run(ctx context.Context) error {
	defer t.emitter.Finish()
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		return gokaconfig.MarkCleanShutdown(gctx, t.dir, t.p.ordered, t.loop.RunWith(gctx, t.Routing.Run))
	})
	g.Go(func() error { return t.Router.Run(gctx) })
	return g.Wait()
}

// EnsureTopics creates routing's topics with the partition count of
// rolodex.events, which must exist: goka requires the group's three inputs
// and its table to be co-partitioned.
func EnsureTopics(ctx context.Context, admin *kgo.Client, replication int16) error {
	if _, err := kafkaclient.EnsureTopicsLike(ctx, admin, replication, schemas.TopicEvents, Topics); err != nil {
		return fmt.Errorf("routing: %w", err)
	}
	return nil
}

// Topics returns routing's topics for a partition count: the group's
// inputs rolodex.routing.input, rolodex.routing.rules (compacted) and
// rolodex.routing.ticks, its output rolodex.routing.outcomes, and its table
// (compacted; a tenant's whole state is one value, so its records may pass
// Kafka's 1 MB default).
func Topics(partitions int32) []kafkaclient.TopicSpec {
	compact, big := "compact", fmt.Sprint(gokaconfig.MaxMessageBytes)
	return []kafkaclient.TopicSpec{
		{Name: schemas.TopicRoutingInput, Partitions: partitions, Configs: map[string]*string{"max.message.bytes": &big}},
		{Name: schemas.TopicRoutingRules, Partitions: partitions, Configs: map[string]*string{"cleanup.policy": &compact}},
		// Where an input record that does not decode goes (ingest creates it too).
		{Name: schemas.TopicDeadLetter, Partitions: partitions},
		{Name: schemas.TopicRoutingTicks, Partitions: partitions},
		// lead.routed carries the lead with its profile, as the input does.
		{Name: schemas.TopicRoutingOutcomes, Partitions: partitions, Configs: map[string]*string{"max.message.bytes": &big}},
		{Name: string(goka.GroupTable(schemas.GroupRouting)), Partitions: partitions,
			Configs: map[string]*string{"cleanup.policy": &compact, "max.message.bytes": &big}},
	}
}
