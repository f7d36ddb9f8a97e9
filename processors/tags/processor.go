package tags

import (
	"context"
	"errors"
	"fmt"

	"github.com/IBM/sarama"
	"github.com/lovoo/goka"
	"github.com/lovoo/goka/storage"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rolodex/rolodex/internal/gokaconfig"
	"github.com/rolodex/rolodex/internal/kafkaclient"
	"github.com/rolodex/rolodex/internal/metrics"
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
}

// Metrics of the tag stage.
type Metrics struct {
	snapshots prometheus.Counter
	changes   *prometheus.CounterVec
	replays   prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		snapshots: prometheus.NewCounter(prometheus.CounterOpts{Name: "rolodex_tags_snapshots_total",
			Help: "Profile snapshots read from rolodex.profiles by the tag stage."}),
		changes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rolodex_tags_changes_total",
			Help: "Tag changes written to rolodex.profile.tags, by op (added, removed) and cause (default, manual, merge, config)."}, []string{"op", "cause"}),
		replays: prometheus.NewCounter(prometheus.CounterOpts{Name: "rolodex_tags_replayed_total",
			Help: "Snapshots handled again after a restart (their records are written again)."}),
	}
	if reg == nil {
		return m, nil
	}
	var errs [3]error
	m.snapshots, errs[0] = metrics.Register(reg, m.snapshots)
	m.changes, errs[1] = metrics.Register(reg, m.changes)
	m.replays, errs[2] = metrics.Register(reg, m.replays)
	if err := errors.Join(errs[:]...); err != nil {
		return nil, fmt.Errorf("tags: register metrics: %w", err)
	}
	return m, nil
}

type processor struct {
	metrics *Metrics
	ordered *gokaconfig.Ordered
}

// Group defines the tag goka group. reg may be nil; ordered must wrap the
// processor's producer.
func Group(reg prometheus.Registerer, ordered *gokaconfig.Ordered) (*goka.GroupGraph, error) {
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	p := &processor{metrics: m, ordered: ordered}
	return goka.DefineGroup(schemas.GroupTags,
		goka.Input(schemas.TopicProfiles, schemas.JSONCodec[schemas.Profile]{}, p.onProfile),
		goka.Output(schemas.TopicProfileTags, schemas.JSONCodec[schemas.TagChange]{}),
		goka.Persist(schemas.JSONCodec[State]{}),
	), nil
}

// New returns the tag processor; opts come after the Rolodex defaults.
func New(cfg Config, opts ...goka.ProcessorOption) (*goka.Processor, error) {
	if len(cfg.Brokers) == 0 {
		return nil, errors.New("tags: no brokers")
	}
	if cfg.StorageDir == "" {
		return nil, errors.New("tags: a storage directory is required")
	}
	sc := cfg.Sarama
	if sc == nil {
		sc = gokaconfig.Sarama("rolodex-tags")
	}
	ordered := new(gokaconfig.Ordered)
	g, err := Group(cfg.Registerer, ordered)
	if err != nil {
		return nil, err
	}
	base := []goka.ProcessorOption{
		goka.WithConsumerGroupBuilder(goka.ConsumerGroupBuilderWithConfig(sc)),
		goka.WithProducerBuilder(ordered.Builder(goka.ProducerBuilderWithConfig(sc))),
		goka.WithConsumerSaramaBuilder(goka.SaramaConsumerBuilderWithConfig(sc)),
		goka.WithTopicManagerBuilder(goka.TopicManagerBuilderWithConfig(sc, gokaconfig.TopicManager(1))),
		goka.WithStorageBuilder(storage.DefaultBuilder(cfg.StorageDir)),
		goka.WithClientID("rolodex-tags"),
	}
	p, err := goka.NewProcessor(cfg.Brokers, g, append(base, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("tags: %w", err)
	}
	return p, nil
}

// origin identifies a delivery: the offset on rolodex.profiles (one input
// topic; a key lives on one partition), plus one so that it is never 0.
func origin(ctx goka.Context) int64 { return ctx.Offset() + 1 }

func (p *processor) onProfile(ctx goka.Context, msg any) {
	prof, ok := msg.(*schemas.Profile)
	p.metrics.snapshots.Inc()
	if !ok || prof == nil {
		p.commitInOrder(ctx)
		return
	}
	var s *State
	if v := ctx.Value(); v != nil {
		s = v.(*State)
	}
	o := origin(ctx)
	if s != nil && o <= s.By {
		p.metrics.replays.Inc()
	}
	next, changes, write := Step(s, ctx.Key(), prof, o, ctx.Timestamp().UnixMilli())
	if !write {
		p.commitInOrder(ctx)
		return
	}
	ctx.SetValue(next)
	for i := range changes {
		ctx.Emit(schemas.TopicProfileTags, ctx.Key(), &changes[i])
		p.metrics.changes.WithLabelValues(changes[i].Op, causeLabel(changes[i].Cause)).Inc()
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
	td, err := kadm.NewClient(admin).ListTopics(ctx, schemas.TopicProfiles)
	if err != nil {
		return fmt.Errorf("tags: describe %s: %w", schemas.TopicProfiles, err)
	}
	t, ok := td[schemas.TopicProfiles]
	if !ok || t.Err != nil {
		return fmt.Errorf("tags: describe %s: %v", schemas.TopicProfiles, t.Err)
	}
	if err := kafkaclient.EnsureTopics(ctx, admin, replication, Topics(int32(len(t.Partitions)))...); err != nil {
		return fmt.Errorf("tags: %w", err)
	}
	return nil
}

// Topics returns the tag group's topics for a given partition count: its
// table (compacted) and rolodex.profile.tags.
func Topics(partitions int32) []kafkaclient.TopicSpec {
	compact := "compact"
	return []kafkaclient.TopicSpec{
		{Name: string(goka.GroupTable(schemas.GroupTags)), Partitions: partitions, Configs: map[string]*string{"cleanup.policy": &compact}},
		{Name: schemas.TopicProfileTags, Partitions: partitions},
	}
}
