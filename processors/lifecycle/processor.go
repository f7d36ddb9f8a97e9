package lifecycle

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"

	"github.com/IBM/sarama"
	"github.com/lovoo/goka"
	"github.com/lovoo/goka/storage"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sync/errgroup"

	"github.com/rolodex/rolodex/internal/gokaconfig"
	"github.com/rolodex/rolodex/internal/kafkaclient"
	"github.com/rolodex/rolodex/internal/metrics"
	"github.com/rolodex/rolodex/schemas"
)

// Config runs the lifecycle's three goka groups against Kafka: the
// router (rolodex-messages-router), the recipients group
// (rolodex-recipients) and the lifecycle (rolodex-lifecycle).
type Config struct {
	Brokers []string
	// StorageDir holds the LevelDB copies of the table partitions this
	// instance owns (subdirectories lifecycle and recipients). Required.
	StorageDir string
	Registerer prometheus.Registerer
	// Sarama replaces gokaconfig.Sarama(<group>) for each group (a copy
	// per group).
	Sarama *sarama.Config
	// Recipients: soft-bounce limit and marketing purposes; nil:
	// DefaultRecipientsConfig().
	Recipients *RecipientsConfig
}

// Metrics of the lifecycle.
type Metrics struct {
	routed      *prometheus.CounterVec
	transitions *prometheus.CounterVec
	outcomes    *prometheus.CounterVec
	refusals    *prometheus.CounterVec
	withdrawn   prometheus.Counter
	replays     *prometheus.CounterVec
	invalidated *prometheus.CounterVec
	revalidated prometheus.Counter
	revoked     *prometheus.CounterVec
	verdicts    *prometheus.CounterVec
	// deadLetters of each group: what its input's codec cannot decode.
	deadLetters map[string]*gokaconfig.DeadLetters
}

func newMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		routed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rolodex_lifecycle_routed_total",
			Help: "Records the message router wrote, by route (lifecycle: rolodex.messages.events, recipients: rolodex.messages.recipients, invalid: a message event dead-lettered as invalid_message_event)."}, []string{"route"}),
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rolodex_lifecycle_transitions_total",
			Help: "States messages entered (moves, implied states and automatic saves) when a new event was folded, by channel and state."}, []string{"channel", "state"}),
		outcomes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rolodex_lifecycle_events_total",
			Help: "Message events the lifecycle folded, by outcome at their arrival (event, absorbed, refused, duplicate, known: an event id it had already, history_full)."}, []string{"outcome"}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rolodex_lifecycle_invalid_transitions_total",
			Help: "Refusals the lifecycle wrote to rolodex.deadletter, by reason (invalid_transition, invalid_recipient, history_full)."}, []string{"reason"}),
		withdrawn: prometheus.NewCounter(prometheus.CounterOpts{Name: "rolodex_lifecycle_refusals_withdrawn_total",
			Help: "Refusals withdrawn (refusal_withdrawn dead letters): a late event made an earlier refusal no longer hold."}),
		replays: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rolodex_lifecycle_replayed_total",
			Help: "Inputs handled again after a restart (their records written again), by group."}, []string{"group"}),
		invalidated: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rolodex_lifecycle_invalidated_addresses_total",
			Help: "identifier.invalidated events the recipients group wrote to rolodex.events, by reason (hard_bounce, soft_bounces)."}, []string{"reason"}),
		revalidated: prometheus.NewCounter(prometheus.CounterOpts{Name: "rolodex_lifecycle_soft_invalidations_withdrawn_total",
			Help: "identifier.revalidated events (soft_bounces_withdrawn) the recipients group wrote: a late report broke a soft-bounce streak."}),
		revoked: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rolodex_lifecycle_consent_revoked_total",
			Help: "consent.revoked events the recipients group wrote to rolodex.events, by reason (spam, unsubscribed)."}, []string{"reason"}),
		verdicts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rolodex_lifecycle_verdicts_total",
			Help: "Recipient verdicts the recipients group pushed to messages, by verdict (valid, invalid)."}, []string{"verdict"}),
	}
	m.deadLetters = map[string]*gokaconfig.DeadLetters{}
	for _, group := range []string{schemas.GroupMessagesRouter, schemas.GroupRecipients, schemas.GroupLifecycle} {
		dl, err := gokaconfig.NewDeadLetters(group, reg, nil, schemas.UndecodableLetter)
		if err != nil {
			return nil, fmt.Errorf("lifecycle: register metrics: %w", err)
		}
		m.deadLetters[group] = dl
	}
	if reg == nil {
		return m, nil
	}
	var errs [10]error
	m.routed, errs[0] = metrics.Register(reg, m.routed)
	m.transitions, errs[1] = metrics.Register(reg, m.transitions)
	m.outcomes, errs[2] = metrics.Register(reg, m.outcomes)
	m.refusals, errs[3] = metrics.Register(reg, m.refusals)
	m.withdrawn, errs[4] = metrics.Register(reg, m.withdrawn)
	m.replays, errs[5] = metrics.Register(reg, m.replays)
	m.invalidated, errs[6] = metrics.Register(reg, m.invalidated)
	m.revalidated, errs[7] = metrics.Register(reg, m.revalidated)
	m.revoked, errs[8] = metrics.Register(reg, m.revoked)
	m.verdicts, errs[9] = metrics.Register(reg, m.verdicts)
	if err := errors.Join(errs[:]...); err != nil {
		return nil, fmt.Errorf("lifecycle: register metrics: %w", err)
	}
	return m, nil
}

// group is one of the three goka groups: its handlers share the metrics
// and an ordered producer.
type group struct {
	metrics *Metrics
	ordered *gokaconfig.Ordered
	cfg     RecipientsConfig
	// dl dead-letters what the input's codec cannot decode.
	dl *gokaconfig.DeadLetters
}

// commitInOrder makes goka commit a message that writes nothing only after
// every earlier message's writes completed (gokaconfig.Ordered).
func (g *group) commitInOrder(ctx goka.Context) {
	done := ctx.DeferCommit()
	g.ordered.Barrier(done)
}

// origin identifies a delivery: its offset plus one (a key lives on one
// partition of its group's only input).
func origin(ctx goka.Context) int64 { return ctx.Offset() + 1 }

// RouterGroup defines rolodex-messages-router: stateless, it reads
// rolodex.events and re-keys what the lifecycle and the recipients group
// need (Route).
func RouterGroup(m *Metrics, ordered *gokaconfig.Ordered) *goka.GroupGraph {
	g := &group{metrics: m, ordered: ordered, dl: m.deadLetters[schemas.GroupMessagesRouter]}
	return goka.DefineGroup(schemas.GroupMessagesRouter,
		goka.Input(schemas.TopicEvents, gokaconfig.Tolerant(schemas.EventCodec{}), g.dl.Wrap(g.onEvent)),
		goka.Output(schemas.TopicMessageEvents, schemas.JSONCodec[schemas.MessageInput]{}),
		goka.Output(schemas.TopicMessageRecipients, schemas.JSONCodec[schemas.RecipientInput]{}),
		goka.Output(schemas.TopicDeadLetter, schemas.DeadLetterCodec{}),
	)
}

func (g *group) onEvent(ctx goka.Context, msg any) {
	ev, ok := msg.(*schemas.Event)
	if !ok || ev == nil {
		g.commitInOrder(ctx)
		return
	}
	r := Route(ev, ctx.Timestamp().UnixMilli())
	wrote := false
	if r.Invalid != nil {
		payload, _ := json.Marshal(ev)
		ctx.Emit(schemas.TopicDeadLetter, ev.Partner, &schemas.DeadLetter{
			Time: ctx.Timestamp(), Partner: ev.Partner, Tenant: ev.Tenant,
			Reason: schemas.ReasonInvalidMessageEvent, Message: fmt.Sprintf("event %q: %v", ev.ID, r.Invalid),
			SourceKind: schemas.SourceKafka, Topic: string(ctx.Topic()), Partition: ctx.Partition(), Offset: ctx.Offset(),
			Payload: payload,
		})
		g.metrics.routed.WithLabelValues("invalid").Inc()
		wrote = true
	}
	if r.Recipient != nil {
		ctx.Emit(schemas.TopicMessageRecipients, r.RecipientKey, r.Recipient)
		g.metrics.routed.WithLabelValues("recipients").Inc()
		wrote = true
	}
	if r.Message != nil {
		ctx.Emit(schemas.TopicMessageEvents, r.MessageKey, r.Message)
		g.metrics.routed.WithLabelValues("lifecycle").Inc()
		wrote = true
	}
	if !wrote {
		g.commitInOrder(ctx)
	}
}

// RecipientsGroup defines rolodex-recipients, keyed by the address's node
// id (ApplyRecipient).
func RecipientsGroup(m *Metrics, ordered *gokaconfig.Ordered, cfg RecipientsConfig) *goka.GroupGraph {
	g := &group{metrics: m, ordered: ordered, cfg: cfg, dl: m.deadLetters[schemas.GroupRecipients]}
	return goka.DefineGroup(schemas.GroupRecipients,
		goka.Input(schemas.TopicMessageRecipients, gokaconfig.Tolerant(schemas.JSONCodec[schemas.RecipientInput]{}), g.dl.Wrap(g.onRecipient)),
		goka.Output(schemas.TopicMessageEvents, schemas.JSONCodec[schemas.MessageInput]{}),
		goka.Output(schemas.TopicEvents, schemas.EventCodec{}),
		goka.Output(schemas.TopicDeadLetter, schemas.DeadLetterCodec{}),
		goka.Persist(schemas.JSONCodec[Recipient]{}),
	)
}

func (g *group) onRecipient(ctx goka.Context, msg any) {
	in, ok := msg.(*schemas.RecipientInput)
	if !ok || in == nil {
		g.commitInOrder(ctx)
		return
	}
	var s *Recipient
	if v := ctx.Value(); v != nil {
		s = v.(*Recipient)
	}
	r := ApplyRecipient(s, *in, origin(ctx), g.cfg)
	if !r.Write {
		g.commitInOrder(ctx)
		return
	}
	ctx.SetValue(r.State)
	if r.Replayed {
		g.metrics.replays.WithLabelValues(schemas.GroupRecipients).Inc()
	}
	for _, o := range r.Outputs {
		switch {
		case o.Message != nil:
			ctx.Emit(schemas.TopicMessageEvents, o.Key, o.Message)
			if !r.Replayed && o.Message.Verdict != nil {
				g.metrics.verdicts.WithLabelValues(map[bool]string{false: "valid", true: "invalid"}[o.Message.Verdict.Invalid]).Inc()
			}
		case o.Event != nil:
			ctx.Emit(schemas.TopicEvents, o.Key, o.Event)
			if r.Replayed {
				continue
			}
			reason := schemas.StringProperty(o.Event, "reason")
			switch o.Event.Type {
			case schemas.EventIdentifierInvalidated:
				g.metrics.invalidated.WithLabelValues(reason).Inc()
			case schemas.EventIdentifierRevalidated:
				g.metrics.revalidated.Inc()
			case schemas.EventConsentRevoked:
				g.metrics.revoked.WithLabelValues(reason).Inc()
			}
		}
	}
}

// LifecycleGroup defines rolodex-lifecycle, keyed by schemas.MessageKey
// (Apply): its table holds every message's state and history.
func LifecycleGroup(m *Metrics, ordered *gokaconfig.Ordered) *goka.GroupGraph {
	g := &group{metrics: m, ordered: ordered, dl: m.deadLetters[schemas.GroupLifecycle]}
	return goka.DefineGroup(schemas.GroupLifecycle,
		goka.Input(schemas.TopicMessageEvents, gokaconfig.Tolerant(schemas.JSONCodec[schemas.MessageInput]{}), g.dl.Wrap(g.onMessage)),
		goka.Output(schemas.TopicDeadLetter, schemas.DeadLetterCodec{}),
		goka.Persist(schemas.JSONCodec[State]{}),
	)
}

func (g *group) onMessage(ctx goka.Context, msg any) {
	in, ok := msg.(*schemas.MessageInput)
	if !ok || in == nil || (in.Event == nil && in.Verdict == nil) {
		g.commitInOrder(ctx)
		return
	}
	var s *State
	if v := ctx.Value(); v != nil {
		s = v.(*State)
	}
	r := Apply(s, Input{Event: in.Event, Verdict: in.Verdict, Origin: origin(ctx)})
	if in.Event != nil && !r.Replayed {
		g.countEvent(in.Event, s, r)
	}
	if !r.Write {
		g.commitInOrder(ctx)
		return
	}
	ctx.SetValue(r.State)
	if r.Replayed {
		g.metrics.replays.WithLabelValues(schemas.GroupLifecycle).Inc()
	}
	for _, l := range r.Letters {
		ev := in.Event
		if ev == nil || ev.ID != l.Event {
			ev = nil
			for i := range r.State.Events {
				if r.State.Events[i].ID == l.Event {
					ev = &r.State.Events[i]
					break
				}
			}
		}
		ctx.Emit(schemas.TopicDeadLetter, partnerOf(ev), Letter(l, ev, r.State.Tenant, ctx))
		if r.Replayed {
			continue
		}
		if l.Withdrawn {
			g.metrics.withdrawn.Inc()
		} else {
			g.metrics.refusals.WithLabelValues(l.Refusal.Reason).Inc()
		}
	}
}

// countEvent counts a new event's outcome and the states it entered.
func (g *group) countEvent(e *schemas.MessageEvent, before *State, r Result) {
	if before != nil {
		for i := range before.Events {
			if before.Events[i].ID == e.ID {
				g.metrics.outcomes.WithLabelValues("known").Inc()
				return
			}
		}
	}
	for _, l := range r.Letters {
		if l.Event == e.ID && l.Refusal.Reason == schemas.ReasonHistoryFull {
			g.metrics.outcomes.WithLabelValues(schemas.ReasonHistoryFull).Inc()
			return
		}
	}
	if r.State == nil {
		return
	}
	for _, h := range r.State.History {
		if h.Event != e.ID {
			continue
		}
		switch h.How {
		case schemas.HowEvent, schemas.HowImplied, schemas.HowAutomatic:
			g.metrics.transitions.WithLabelValues(e.Channel, string(h.State)).Inc()
		}
		switch h.How {
		case schemas.HowEvent, schemas.HowAbsorbed, schemas.HowRefused, schemas.HowDuplicate:
			g.metrics.outcomes.WithLabelValues(h.How).Inc()
		}
	}
}

func partnerOf(ev *schemas.MessageEvent) string {
	if ev == nil {
		return ""
	}
	return ev.Partner
}

// Letter is the dead letter of a refusal or a withdrawal: the input
// record's topic, partition and offset, the message event's JSON as the
// payload (ev may be nil: a verdict whose send is not kept).
func Letter(l schemas.MessageLetter, ev *schemas.MessageEvent, tenant string, ctx goka.Context) *schemas.DeadLetter {
	from := string(l.Refusal.From)
	if from == "" {
		from = "none"
	}
	reason := l.Refusal.Reason
	msg := fmt.Sprintf("message %q: event %q asks for %s in state %s: %s", l.MessageID, l.Event, l.Refusal.Asked, from, reason)
	if l.Withdrawn {
		reason = schemas.ReasonRefusalWithdrawn
		msg = fmt.Sprintf("message %q: event %q: the refusal of %s in state %s (%s) no longer holds", l.MessageID, l.Event, l.Refusal.Asked, from, l.Refusal.Reason)
	}
	var payload []byte
	if ev != nil {
		payload, _ = json.Marshal(ev)
	}
	return &schemas.DeadLetter{
		Time: ctx.Timestamp(), Partner: partnerOf(ev), Tenant: tenant, Reason: reason, Message: msg,
		SourceKind: schemas.SourceKafka, Topic: string(ctx.Topic()), Partition: ctx.Partition(), Offset: ctx.Offset(),
		Payload: payload,
	}
}

// Processor runs the three groups.
type Processor struct {
	Router, Recipients, Lifecycle *goka.Processor
	groups                        []member
}

// member is one of the groups with its ordered producer and its storage
// directory ("" for the router, which keeps nothing).
type member struct {
	proc    *goka.Processor
	ordered *gokaconfig.Ordered
	dir     string
}

// storageDirs returns the storage directories of rolodex-recipients and
// rolodex-lifecycle under dir (Config.StorageDir): one each, so that
// clearing one after a crash leaves the other's copy alone.
func storageDirs(dir string) (recipients, lifecycle string) {
	return filepath.Join(dir, "recipients"), filepath.Join(dir, "lifecycle")
}

// New returns the lifecycle's processors; opts come after the Rolodex
// defaults and apply to all three.
func New(cfg Config, opts ...goka.ProcessorOption) (*Processor, error) {
	if len(cfg.Brokers) == 0 {
		return nil, errors.New("lifecycle: no brokers")
	}
	if cfg.StorageDir == "" {
		return nil, errors.New("lifecycle: a storage directory is required")
	}
	rc := DefaultRecipientsConfig()
	if cfg.Recipients != nil {
		rc = *cfg.Recipients
	}
	if err := rc.Validate(); err != nil {
		return nil, fmt.Errorf("lifecycle: %w", err)
	}
	// Each table group's local copy is kept only after its clean
	// shutdown: goka writes a table value locally before Kafka
	// acknowledged it, so after a crash the copy can hold a state the
	// table topic never got. It is rebuilt from the topic instead
	// (docs/identity.md, "Local storage after a crash"; docs/fanout.md).
	recipientsDir, lifecycleDir := storageDirs(cfg.StorageDir)
	for _, dir := range []string{recipientsDir, lifecycleDir} {
		if _, err := gokaconfig.KeepStorageIfClean(dir); err != nil {
			return nil, fmt.Errorf("lifecycle: %w", err)
		}
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	out := &Processor{}
	build := func(name string, graph func(*gokaconfig.Ordered) *goka.GroupGraph, dir string) (*goka.Processor, error) {
		sb := storage.MemoryBuilder()
		if dir != "" {
			sb = storage.DefaultBuilder(dir)
		}
		sc := gokaconfig.Sarama(name)
		if cfg.Sarama != nil {
			c := *cfg.Sarama
			sc = &c
		}
		ordered := new(gokaconfig.Ordered)
		base := []goka.ProcessorOption{
			goka.WithConsumerGroupBuilder(goka.ConsumerGroupBuilderWithConfig(sc)),
			goka.WithProducerBuilder(ordered.Builder(goka.ProducerBuilderWithConfig(sc))),
			goka.WithConsumerSaramaBuilder(goka.SaramaConsumerBuilderWithConfig(sc)),
			goka.WithTopicManagerBuilder(goka.TopicManagerBuilderWithConfig(sc, gokaconfig.TopicManager(1))),
			goka.WithStorageBuilder(sb),
			goka.WithClientID(name),
		}
		p, err := goka.NewProcessor(cfg.Brokers, graph(ordered), append(base, opts...)...)
		if err != nil {
			return nil, fmt.Errorf("lifecycle: %s: %w", name, err)
		}
		out.groups = append(out.groups, member{proc: p, ordered: ordered, dir: dir})
		return p, nil
	}
	if out.Router, err = build(schemas.GroupMessagesRouter, func(o *gokaconfig.Ordered) *goka.GroupGraph { return RouterGroup(m, o) },
		""); err != nil {
		return nil, err
	}
	if out.Recipients, err = build(schemas.GroupRecipients, func(o *gokaconfig.Ordered) *goka.GroupGraph { return RecipientsGroup(m, o, rc) },
		recipientsDir); err != nil {
		return nil, err
	}
	if out.Lifecycle, err = build(schemas.GroupLifecycle, func(o *gokaconfig.Ordered) *goka.GroupGraph { return LifecycleGroup(m, o) },
		lifecycleDir); err != nil {
		return nil, err
	}
	return out, nil
}

// Run runs the three groups until ctx is done or one of them fails (then
// the others stop too). A table group that stopped only because it was
// asked to, with every write acknowledged, leaves the marker that keeps
// its local copy at the next start (New).
func (p *Processor) Run(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	for _, gm := range p.groups {
		g.Go(func() error {
			err := gm.proc.Run(gctx)
			if gm.dir == "" {
				return err
			}
			return gokaconfig.MarkCleanShutdown(gctx, gm.dir, gm.ordered, err)
		})
	}
	return g.Wait()
}

// EnsureTopics creates the lifecycle's topics with the partition count of
// rolodex.events, which must exist (identity.EnsureTopics' caller creates
// it): goka requires each group's input and table to be co-partitioned.
func EnsureTopics(ctx context.Context, admin *kgo.Client, replication int16) error {
	if _, err := kafkaclient.EnsureTopicsLike(ctx, admin, replication, schemas.TopicEvents, Topics); err != nil {
		return fmt.Errorf("lifecycle: %w", err)
	}
	return nil
}

// Topics returns the lifecycle's topics for a partition count:
// rolodex.messages.events and rolodex.messages.recipients, and the tables
// of rolodex-lifecycle and rolodex-recipients (compacted; a message keeps
// up to 500 events, so their records may pass Kafka's 1 MB default).
func Topics(partitions int32) []kafkaclient.TopicSpec {
	compact, big := "compact", fmt.Sprint(gokaconfig.MaxMessageBytes)
	table := map[string]*string{"cleanup.policy": &compact, "max.message.bytes": &big}
	return []kafkaclient.TopicSpec{
		{Name: schemas.TopicMessageEvents, Partitions: partitions},
		{Name: schemas.TopicMessageRecipients, Partitions: partitions},
		// Where an input record that does not decode goes (ingest creates it too).
		{Name: schemas.TopicDeadLetter, Partitions: partitions},
		{Name: string(goka.GroupTable(schemas.GroupLifecycle)), Partitions: partitions, Configs: table},
		{Name: string(goka.GroupTable(schemas.GroupRecipients)), Partitions: partitions, Configs: table},
	}
}
