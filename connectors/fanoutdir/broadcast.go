// Package fanoutdir is partner fan-out's directory broadcast
// (docs/fanout.md, "Keying"): a franz-go group, rolodex-fanout-directory,
// that reads the compacted store topics rolodex.fanout.topics and
// rolodex.fanout.subscriptions and writes each change to every partition
// of rolodex.fanout.input under that partition's directory key, so that
// every partition of the fan-out group sees the directory in its own
// sequence. It lives with the connectors, not in processors/fanout: it is
// a franz-go step that moves records between topics (like lead delivery's
// dispatcher), no goka group, and processors never import connectors; the
// binary wires the two.
package fanoutdir

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rolodex/rolodex/internal/kafkaclient"
	"github.com/rolodex/rolodex/internal/metrics"
	"github.com/rolodex/rolodex/schemas"
)

// Config runs the broadcast.
type Config struct {
	Brokers    []string
	Registerer prometheus.Registerer
	// Logger; default slog.Default().
	Logger *slog.Logger
	// SessionTimeout of the group; 0: kafkaclient.SessionTimeout (6 s).
	// Tests shorten it so that a killed member's partitions move quickly.
	SessionTimeout time.Duration
	// RetryBackoff is the wait between attempts of a failed write;
	// default one second.
	RetryBackoff time.Duration
}

// Validate reports a config that cannot work.
func (c *Config) Validate() error {
	if len(c.Brokers) == 0 {
		return errors.New("fanout directory: no brokers")
	}
	if c.SessionTimeout < 0 || c.RetryBackoff < 0 {
		return errors.New("fanout directory: negative session timeout or retry backoff")
	}
	return nil
}

func (c *Config) setDefaults() {
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.RetryBackoff == 0 {
		c.RetryBackoff = time.Second
	}
}

// Broadcast is the directory broadcast step.
type Broadcast struct {
	cfg        Config
	broadcasts *prometheus.CounterVec
	skipped    *prometheus.CounterVec
}

// New checks the config and registers the metrics.
func New(cfg Config) (*Broadcast, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	b := &Broadcast{cfg: cfg,
		broadcasts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rolodex_fanout_directory_broadcasts_total",
			Help: "Store records (topics, subscriptions) written to every partition of rolodex.fanout.input, by kind (topic, subscription)."},
			[]string{"kind"}),
		skipped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rolodex_fanout_directory_skipped_total",
			Help: "Store records the broadcast left out, by reason (undecodable, tombstone)."}, []string{"reason"}),
	}
	if cfg.Registerer != nil {
		var errs [2]error
		b.broadcasts, errs[0] = metrics.Register(cfg.Registerer, b.broadcasts)
		b.skipped, errs[1] = metrics.Register(cfg.Registerer, b.skipped)
		if err := errors.Join(errs[:]...); err != nil {
			return nil, fmt.Errorf("fanout directory: register metrics: %w", err)
		}
	}
	return b, nil
}

// Records returns what one store record becomes: the directory change, to
// each of the partitions of rolodex.fanout.input, keyed
// schemas.DirectoryKey(p, partitions), with the store record's timestamp
// (a subscription's secret is never copied). kind is "topic" or
// "subscription"; skip says why a record makes nothing (a tombstone: the
// store never deletes a key, it writes deleted records; an undecodable
// value).
func Records(r *kgo.Record, partitions int32) (out []*kgo.Record, kind, skip string) {
	if r.Value == nil {
		return nil, "", "tombstone"
	}
	var in schemas.FanoutInput
	switch r.Topic {
	case schemas.TopicFanoutTopics:
		var t schemas.TopicRecord
		if err := json.Unmarshal(r.Value, &t); err != nil || t.Topic.Tenant == "" || t.Topic.Name == "" {
			return nil, "", "undecodable"
		}
		in.Topic, kind = &t, "topic"
	case schemas.TopicFanoutSubscriptions:
		var s schemas.SubscriptionRecord
		if err := json.Unmarshal(r.Value, &s); err != nil || s.Subscription.ID == "" {
			return nil, "", "undecodable"
		}
		s.Secret, s.IdempotencyKey = "", "" // the API's alone
		in.Subscription, kind = &s, "subscription"
	default:
		return nil, "", "undecodable"
	}
	value, err := json.Marshal(&in)
	if err != nil {
		return nil, "", "undecodable"
	}
	for p := range partitions {
		out = append(out, &kgo.Record{Topic: schemas.TopicFanoutInput, Partition: p,
			Key: []byte(schemas.DirectoryKey(p, partitions)), Value: value, Timestamp: r.Timestamp})
	}
	return out, kind, ""
}

// Run reads the store topics from their start and broadcasts every record,
// committing a batch only after Kafka acknowledged all it wrote, until ctx
// is done (nil). A record broadcast again after a crash changes nothing:
// directory records are versioned.
func (b *Broadcast) Run(ctx context.Context) error {
	opts := []kgo.Opt{
		kgo.ConsumerGroup(schemas.GroupFanoutDirectory),
		kgo.ConsumeTopics(schemas.TopicFanoutTopics, schemas.TopicFanoutSubscriptions),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		// Each record goes to the partition its key names.
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
	}
	opts = append(opts, kafkaclient.GroupSession(b.cfg.SessionTimeout)...)
	cl, err := kafkaclient.NewClient(kafkaclient.Config{Brokers: b.cfg.Brokers, ClientID: schemas.GroupFanoutDirectory}, opts...)
	if err != nil {
		return fmt.Errorf("fanout directory: %w", err)
	}
	defer cl.Close()
	partitions, err := inputPartitions(ctx, cl)
	if err != nil {
		return err
	}
	defer cl.AllowRebalance()
	for {
		fetches := cl.PollRecords(ctx, 500)
		if fetches.IsClientClosed() || ctx.Err() != nil {
			return nil
		}
		fetches.EachError(func(topic string, part int32, err error) {
			b.cfg.Logger.Warn("fanout directory: fetch", "topic", topic, "partition", part, "err", err)
		})
		recs := fetches.Records()
		if len(recs) == 0 {
			cl.AllowRebalance()
			continue
		}
		var out []*kgo.Record
		kinds := map[string]int{}
		for _, r := range recs {
			rs, kind, skip := Records(r, partitions)
			if skip != "" {
				b.skipped.WithLabelValues(skip).Inc()
				b.cfg.Logger.Warn("fanout directory: a store record left out", "topic", r.Topic, "partition", r.Partition, "offset", r.Offset, "reason", skip)
				continue
			}
			out = append(out, rs...)
			kinds[kind]++
		}
		if len(out) > 0 {
			if err := b.produce(ctx, cl, out); err != nil {
				return nil // ctx done: the batch is read again
			}
		}
		for k, n := range kinds {
			b.broadcasts.WithLabelValues(k).Add(float64(n))
		}
		if err := cl.CommitRecords(ctx, recs...); err != nil && ctx.Err() == nil {
			// Written: a lost commit only means the batch is broadcast
			// again, which changes nothing.
			b.cfg.Logger.Warn("fanout directory: commit", "err", err)
		}
		cl.AllowRebalance()
	}
}

// produce writes recs until Kafka acknowledged them all, or ctx is done.
func (b *Broadcast) produce(ctx context.Context, cl *kgo.Client, recs []*kgo.Record) error {
	return kafkaclient.ProduceUntilAcked(ctx, cl, b.cfg.RetryBackoff, func(err error) {
		b.cfg.Logger.Error("fanout directory: write, retrying", "records", len(recs), "err", err)
	}, recs...)
}

func inputPartitions(ctx context.Context, cl *kgo.Client) (int32, error) {
	n, err := kafkaclient.Partitions(ctx, cl, schemas.TopicFanoutInput)
	if err != nil {
		return 0, fmt.Errorf("fanout directory: %w", err)
	}
	return n, nil
}
