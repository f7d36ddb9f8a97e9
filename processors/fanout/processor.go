package fanout

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/IBM/sarama"
	json "github.com/goccy/go-json"
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

// Config runs the fan-out group rolodex-fanout against Kafka.
type Config struct {
	Brokers []string
	// StorageDir holds the LevelDB copy of the table partitions this
	// instance owns. Required.
	StorageDir string
	Registerer prometheus.Registerer
	// Sarama replaces gokaconfig.Sarama(rolodex-fanout).
	Sarama *sarama.Config
	// Logger; default slog.Default().
	Logger *slog.Logger
}

// Metrics of the fan-out group (docs/fanout.md, "Metrics").
type Metrics struct {
	events     *prometheus.CounterVec
	skipped    *prometheus.CounterVec
	deliveries *prometheus.CounterVec
	replays    prometheus.Counter
	directory  *prometheus.CounterVec
	statuses   prometheus.Counter
	invalid    *prometheus.CounterVec
	applyTime  prometheus.Histogram
	forwards   *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		events: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rolodex_fanout_events_total",
			Help: "Topic events and subscription replays handled, by result: fanned (each subscription of the topic decided), duplicate (an event id the profile's state knows), or why the whole event was dropped (no_topic, not_owner, no_profile, blacklisted)."},
			[]string{"result"}),
		skipped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rolodex_fanout_skipped_total",
			Help: "Subscriptions of a fanned event's topic not delivered, by the first entitlement rule that failed (other_tenant, inactive, not_allowed, consent)."},
			[]string{"reason"}),
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rolodex_fanout_deliveries_total",
			Help: "Records written to rolodex.fanout.deliveries, by kind (topic_event, consent_revoked, blacklisted, replay); a restart's replay of a message is not counted again."},
			[]string{"kind"}),
		replays: prometheus.NewCounter(prometheus.CounterOpts{Name: "rolodex_fanout_replayed_total",
			Help: "Messages handled again after a restart (their records written again from the outbox)."}),
		directory: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rolodex_fanout_directory_changes_total",
			Help: "Directory records applied to a partition's directory, by kind (topic, subscription); each change arrives once per partition."},
			[]string{"kind"}),
		statuses: prometheus.NewCounter(prometheus.CounterOpts{Name: "rolodex_fanout_status_changes_total",
			Help: "Status records (a profile's blacklist or consent changed) handled."}),
		invalid: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rolodex_fanout_invalid_records_total",
			Help: "Records of rolodex.fanout.input left out, by why: undecodable, a directory record under a profile key or the reverse, a directory key of another partition."},
			[]string{"why"}),
		applyTime: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "rolodex_fanout_apply_seconds",
			Help:    "Time to handle one fan-out message (decode excluded).",
			Buckets: prometheus.ExponentialBuckets(1e-6, 4, 10)}),
		forwards: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rolodex_fanout_merge_records_total",
			Help: "Records the group wrote to its own input for a merge (docs/fanout.md, \"Merges\"), by kind: handover (the survivor asks the merged-away profile for its holdings), moved (holdings handed on), replay (a subscription replay of a merged-away profile, passed to its survivor); a restart's replay of a message is not counted again."},
			[]string{"kind"}),
	}
	if reg == nil {
		return m, nil
	}
	var errs [9]error
	m.events, errs[0] = metrics.Register(reg, m.events)
	m.skipped, errs[1] = metrics.Register(reg, m.skipped)
	m.deliveries, errs[2] = metrics.Register(reg, m.deliveries)
	m.replays, errs[3] = metrics.Register(reg, m.replays)
	m.directory, errs[4] = metrics.Register(reg, m.directory)
	m.statuses, errs[5] = metrics.Register(reg, m.statuses)
	m.invalid, errs[6] = metrics.Register(reg, m.invalid)
	m.applyTime, errs[7] = metrics.Register(reg, m.applyTime)
	m.forwards, errs[8] = metrics.Register(reg, m.forwards)
	if err := errors.Join(errs[:]...); err != nil {
		return nil, fmt.Errorf("fanout: register metrics: %w", err)
	}
	return m, nil
}

// TableCodec is the codec of the table rolodex-fanout-table: a profile's
// *State (JSON FanoutState, which always has "profile_id") or a
// partition's *Directory (JSON FanoutDirectory, under a DirectoryKey).
type TableCodec struct{}

var _ goka.Codec = TableCodec{}

// Encode implements goka.Codec.
func (TableCodec) Encode(v any) ([]byte, error) {
	switch v.(type) {
	case *State, *Directory:
		return json.Marshal(v)
	}
	return nil, fmt.Errorf("fanout: table codec cannot encode %T", v)
}

// Decode implements goka.Codec.
func (TableCodec) Decode(b []byte) (any, error) {
	var probe struct {
		ProfileID *string `json:"profile_id"`
	}
	if err := json.Unmarshal(b, &probe); err != nil {
		return nil, fmt.Errorf("fanout: decode table value: %w", err)
	}
	var v any = new(Directory)
	if probe.ProfileID != nil {
		v = new(State)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return nil, fmt.Errorf("fanout: decode table value: %w", err)
	}
	return v, nil
}

type processor struct {
	metrics *Metrics
	ordered *gokaconfig.Ordered
	logger  *slog.Logger
	// dl dead-letters what the input's codec cannot decode.
	dl *gokaconfig.DeadLetters
	// proc reads a partition's directory from the table (Get) when the
	// memory copy is gone (a start, a rebalance).
	proc       *goka.Processor
	partitions int32
	mu         sync.Mutex
	// dirs: the memory copy of each owned partition's directory, the
	// table's value (a partition's callbacks are sequential).
	dirs map[int32]*Directory
}

// commitInOrder makes goka commit a message that writes nothing only after
// every earlier message's writes completed (gokaconfig.Ordered).
func (p *processor) commitInOrder(ctx goka.Context) {
	done := ctx.DeferCommit()
	p.ordered.Barrier(done)
}

func (p *processor) graph() *goka.GroupGraph {
	return goka.DefineGroup(schemas.GroupFanout,
		goka.Input(schemas.TopicFanoutInput, gokaconfig.Tolerant(schemas.JSONCodec[schemas.FanoutInput]{}), p.dl.Wrap(p.onInput)),
		goka.Output(schemas.TopicFanoutDeliveries, schemas.JSONCodec[schemas.FanoutDelivery]{}),
		// A merge's steps go to the group's own input, keyed by the
		// profile they are for (docs/fanout.md, "Merges"): the same
		// topic, so a profile's origins stay one sequence of offsets.
		// goka keeps one codec per topic (the last edge's): the input's
		// tolerant one, so an undecodable record is still dead-lettered.
		goka.Output(schemas.TopicFanoutInput, gokaconfig.Tolerant(schemas.JSONCodec[schemas.FanoutInput]{})),
		goka.Output(schemas.TopicDeadLetter, schemas.DeadLetterCodec{}),
		goka.Persist(TableCodec{}),
	)
}

// skip leaves a record out: counted, logged, committed in order.
func (p *processor) skip(ctx goka.Context, why, detail string) {
	p.metrics.invalid.WithLabelValues(why).Inc()
	p.logger.Error("fanout: a record left out", "partition", ctx.Partition(), "offset", ctx.Offset(), "key", ctx.Key(), "why", why, "detail", detail)
	p.commitInOrder(ctx)
}

func (p *processor) onInput(ctx goka.Context, msg any) {
	in, ok := msg.(*schemas.FanoutInput)
	if !ok || in == nil {
		p.skip(ctx, "undecodable", fmt.Sprintf("%T", msg))
		return
	}
	m := Message{Input: in, Origin: ctx.Offset() + 1, At: ctx.Timestamp().UnixMilli()}
	key := ctx.Key()
	if strings.HasPrefix(key, schemas.DirectoryKeyPrefix) {
		switch {
		case !in.Directory():
			p.skip(ctx, "not_directory", "a profile record under a directory key")
		case key != schemas.DirectoryKey(ctx.Partition(), p.partitions):
			// Its table value would live on another partition than the
			// one it was written to: the broadcast wrote it wrong.
			p.skip(ctx, "wrong_partition", fmt.Sprintf("want %s", schemas.DirectoryKey(ctx.Partition(), p.partitions)))
		default:
			p.directoryChange(ctx, m)
		}
		return
	}
	if in.Directory() {
		p.skip(ctx, "directory_under_profile", "a directory record under a profile key")
		return
	}
	p.handle(ctx, m)
}

func (p *processor) directoryChange(ctx goka.Context, m Message) {
	var d *Directory
	if v := ctx.Value(); v != nil {
		d, _ = v.(*Directory)
	}
	r := ApplyDirectory(d, m)
	if r.Replayed {
		p.metrics.replays.Inc()
		p.commitInOrder(ctx)
		return
	}
	ctx.SetValue(r.Directory)
	p.mu.Lock()
	p.dirs[ctx.Partition()] = r.Directory
	p.mu.Unlock()
	if m.Input.Topic != nil {
		p.metrics.directory.WithLabelValues("topic").Inc()
	}
	if m.Input.Subscription != nil {
		p.metrics.directory.WithLabelValues("subscription").Inc()
	}
}

// directory is the partition's directory: the memory copy, or the table's
// value after a start or a rebalance.
func (p *processor) directory(ctx goka.Context) (*Directory, error) {
	part := ctx.Partition()
	p.mu.Lock()
	d := p.dirs[part]
	p.mu.Unlock()
	if d != nil {
		return d, nil
	}
	v, err := p.proc.Get(schemas.DirectoryKey(part, p.partitions))
	if err != nil {
		return nil, fmt.Errorf("fanout: read the directory of partition %d: %w", part, err)
	}
	d, _ = v.(*Directory)
	if d == nil {
		d = &Directory{}
	}
	p.mu.Lock()
	p.dirs[part] = d
	p.mu.Unlock()
	return d, nil
}

func (p *processor) handle(ctx goka.Context, m Message) {
	d, err := p.directory(ctx)
	if err != nil {
		ctx.Fail(err)
		return
	}
	var s *State
	if v := ctx.Value(); v != nil {
		s, _ = v.(*State)
	}
	began := time.Now()
	r := Apply(d, s, ctx.Key(), m)
	p.metrics.applyTime.Observe(time.Since(began).Seconds())
	if r.Replayed {
		p.metrics.replays.Inc()
	} else {
		p.count(m, r)
		if r.Write {
			ctx.SetValue(r.State)
		}
	}
	for i := range r.Deliveries {
		ctx.Emit(schemas.TopicFanoutDeliveries, r.Deliveries[i].DeliveryKey(), &r.Deliveries[i])
	}
	for i := range r.Forwards {
		ctx.Emit(schemas.TopicFanoutInput, r.Forwards[i].Key, &r.Forwards[i].Input)
	}
	if (!r.Write || r.Replayed) && len(r.Deliveries) == 0 && len(r.Forwards) == 0 {
		p.commitInOrder(ctx)
	}
}

// count counts a message handled for the first time.
func (p *processor) count(m Message, r Result) {
	if m.Input.Status != nil {
		p.metrics.statuses.Inc()
	}
	if r.Outcome != "" {
		p.metrics.events.WithLabelValues(r.Outcome).Inc()
	}
	for _, s := range r.Skips {
		p.metrics.skipped.WithLabelValues(s.Reason).Inc()
	}
	for _, f := range r.Forwards {
		switch {
		case f.Input.Handover != nil:
			p.metrics.forwards.WithLabelValues("handover").Inc()
		case f.Input.Moved != nil:
			p.metrics.forwards.WithLabelValues("moved").Inc()
		case f.Input.Replay != nil:
			p.metrics.forwards.WithLabelValues("replay").Inc()
		}
	}
	for _, d := range r.Deliveries {
		kind := d.Kind
		if d.Replay {
			kind = "replay"
		}
		p.metrics.deliveries.WithLabelValues(kind).Inc()
	}
}

// Processor is the fan-out group rolodex-fanout on Kafka.
type Processor struct {
	*goka.Processor
	p       *processor
	brokers []string
	dir     string // the storage directory
}

// New returns the fan-out group; opts come after the Rolodex defaults.
func New(cfg Config, opts ...goka.ProcessorOption) (*Processor, error) {
	if len(cfg.Brokers) == 0 {
		return nil, errors.New("fanout: no brokers")
	}
	if cfg.StorageDir == "" {
		return nil, errors.New("fanout: a storage directory is required")
	}
	// The local copy is kept only after a clean shutdown: after a crash it
	// can hold writes the table topic never got (a directory from after
	// the messages the replay hands back), so it is rebuilt from the topic.
	if _, err := gokaconfig.KeepStorageIfClean(cfg.StorageDir); err != nil {
		return nil, fmt.Errorf("fanout: %w", err)
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.Default()
	}
	sc := cfg.Sarama
	if sc != nil {
		c := *sc
		sc = &c
	} else {
		sc = gokaconfig.Sarama(schemas.GroupFanout)
	}
	dl, err := gokaconfig.NewDeadLetters(schemas.GroupFanout, cfg.Registerer, logger, schemas.UndecodableLetter)
	if err != nil {
		return nil, fmt.Errorf("fanout: register metrics: %w", err)
	}
	p := &processor{metrics: m, ordered: new(gokaconfig.Ordered), logger: logger, dl: dl, dirs: map[int32]*Directory{}}
	// A merge's handover and moves reach Kafka only after every earlier
	// record of the group: the survivor writes revocations and cancels
	// under the merged-away id once it reads a move, and they must follow
	// that id's deliveries on <subscription>/<id> (docs/fanout.md,
	// "Merges": ordering).
	p.ordered.WriteAfter(schemas.TopicFanoutInput)
	base := []goka.ProcessorOption{
		goka.WithConsumerGroupBuilder(goka.ConsumerGroupBuilderWithConfig(sc)),
		goka.WithProducerBuilder(p.ordered.Builder(goka.ProducerBuilderWithConfig(sc))),
		goka.WithConsumerSaramaBuilder(goka.SaramaConsumerBuilderWithConfig(sc)),
		goka.WithTopicManagerBuilder(goka.TopicManagerBuilderWithConfig(sc, gokaconfig.TopicManager(1))),
		goka.WithStorageBuilder(storage.DefaultBuilder(cfg.StorageDir)),
		goka.WithClientID(schemas.GroupFanout),
		// A rebalance may hand a partition to another instance and back:
		// its directory is read from the table again.
		goka.WithRebalanceCallback(func(goka.Assignment) {
			p.mu.Lock()
			clear(p.dirs)
			p.mu.Unlock()
		}),
	}
	gp, err := goka.NewProcessor(cfg.Brokers, p.graph(), append(base, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("fanout: %w", err)
	}
	p.proc = gp
	return &Processor{Processor: gp, p: p, brokers: cfg.Brokers, dir: cfg.StorageDir}, nil
}

// Run reads the partition count of rolodex.fanout.input (the directory
// keys depend on it) and runs the group until ctx is done or it fails;
// after a clean shutdown it leaves the marker that keeps the local copy.
func (t *Processor) Run(ctx context.Context) error {
	cl, err := kafkaclient.NewClient(kafkaclient.Config{Brokers: t.brokers, ClientID: schemas.GroupFanout + "-admin"})
	if err != nil {
		return fmt.Errorf("fanout: %w", err)
	}
	n, err := kafkaclient.Partitions(ctx, cl, schemas.TopicFanoutInput)
	cl.Close()
	if err != nil {
		return fmt.Errorf("fanout: %w", err)
	}
	t.p.partitions = n
	// After a clean shutdown the next start keeps the local copy (New).
	return gokaconfig.MarkCleanShutdown(ctx, t.dir, t.p.ordered, t.Processor.Run(ctx))
}

// EnsureTopics creates fan-out's topics with the partition count of
// rolodex.events, which must exist (the identity group writes
// rolodex.fanout.input with that count too).
func EnsureTopics(ctx context.Context, admin *kgo.Client, replication int16) error {
	if _, err := kafkaclient.EnsureTopicsLike(ctx, admin, replication, schemas.TopicEvents, Topics); err != nil {
		return fmt.Errorf("fanout: %w", err)
	}
	return nil
}

// DefaultReplayRetention is rolodex.fanout.input's retention.ms when the
// configuration does not set fanout.replay_retention: a subscription
// replay finds the topic events of this long ago (docs/fanout.md,
// "Replay of a subscription").
const DefaultReplayRetention = 7 * 24 * time.Hour

// SetReplayRetention sets retention.ms of rolodex.fanout.input, which must
// exist, to retention (the replay window; whoever created the topic, the
// identity stage or EnsureTopics, the setting is the configuration's). It
// refuses a retention that is not positive.
func SetReplayRetention(ctx context.Context, admin *kgo.Client, retention time.Duration) error {
	if retention <= 0 {
		return fmt.Errorf("fanout: replay retention %s is not positive", retention)
	}
	ms := fmt.Sprint(retention.Milliseconds())
	resp, err := kadm.NewClient(admin).AlterTopicConfigs(ctx,
		[]kadm.AlterConfig{{Op: kadm.SetConfig, Name: "retention.ms", Value: &ms}}, schemas.TopicFanoutInput)
	if err == nil {
		var r kadm.AlterConfigsResponse
		if r, err = resp.On(schemas.TopicFanoutInput, nil); err == nil {
			err = r.Err
		}
	}
	if err != nil {
		return fmt.Errorf("fanout: set retention.ms of %s: %w", schemas.TopicFanoutInput, err)
	}
	return nil
}

// Topics returns fan-out's topics for a partition count: the group's input
// rolodex.fanout.input (co-partitioned with its table; retention
// DefaultReplayRetention, SetReplayRetention sets the configured one), the store topics
// rolodex.fanout.topics and rolodex.fanout.subscriptions (compacted; the
// directory broadcast reads them whole), its output
// rolodex.fanout.deliveries (max.message.bytes 16 MiB, as the partners'
// out topics: a large delivery refused by the broker would fail the group
// on every restart), and its table (compacted; a partition's
// directory is one value, so its records may pass Kafka's 1 MB default).
func Topics(partitions int32) []kafkaclient.TopicSpec {
	compact, big := "compact", fmt.Sprint(gokaconfig.MaxMessageBytes)
	retention := fmt.Sprint(DefaultReplayRetention.Milliseconds())
	return []kafkaclient.TopicSpec{
		{Name: schemas.TopicFanoutInput, Partitions: partitions, Configs: map[string]*string{"max.message.bytes": &big, "retention.ms": &retention}},
		{Name: schemas.TopicFanoutTopics, Partitions: partitions, Configs: map[string]*string{"cleanup.policy": &compact}},
		{Name: schemas.TopicFanoutSubscriptions, Partitions: partitions, Configs: map[string]*string{"cleanup.policy": &compact}},
		{Name: schemas.TopicFanoutDeliveries, Partitions: partitions, Configs: map[string]*string{"max.message.bytes": &big}},
		// Where an input record that does not decode goes (ingest creates it too).
		{Name: schemas.TopicDeadLetter, Partitions: partitions},
		{Name: string(goka.GroupTable(schemas.GroupFanout)), Partitions: partitions,
			Configs: map[string]*string{"cleanup.policy": &compact, "max.message.bytes": &big}},
	}
}
