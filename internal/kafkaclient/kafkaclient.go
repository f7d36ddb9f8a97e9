// Package kafkaclient builds the franz-go clients every Rolodex connector
// uses, so that they agree on acks, partitioning and metrics.
package kafkaclient

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/plugin/kprom"
)

// Config says how to reach Kafka.
type Config struct {
	// Brokers are the seed brokers, host:port. Required.
	Brokers []string
	// ClientID names the client to the brokers. Default "rolodex".
	ClientID string
	// Metrics, when set, receives the franz-go client metrics (kprom).
	Metrics *kprom.Metrics
}

// Validate reports a config that cannot work.
func (c *Config) Validate() error {
	if len(c.Brokers) == 0 {
		return errors.New("kafka: no brokers configured")
	}
	for _, b := range c.Brokers {
		if !strings.Contains(b, ":") {
			return fmt.Errorf("kafka: broker %q is not host:port", b)
		}
	}
	return nil
}

// ParseBrokers splits a comma-separated broker list.
func ParseBrokers(s string) []string {
	var out []string
	for _, b := range strings.Split(s, ",") {
		if b = strings.TrimSpace(b); b != "" {
			out = append(out, b)
		}
	}
	return out
}

// NewMetrics returns the franz-go client metrics registered on reg, one set
// shared by every client of the process (labelled by client id).
func NewMetrics(reg prometheus.Registerer) *kprom.Metrics {
	return kprom.NewMetrics("rolodex", kprom.Subsystem("kafka"), kprom.Registerer(reg), kprom.WithClientLabel())
}

// Partitioner is the partitioner of every keyed Rolodex topic: sarama's
// FNV-1a hash of the key, so goka processors (which run on sarama) find a
// key on the same partition as franz-go producers put it.
func Partitioner() kgo.Partitioner {
	return kgo.StickyKeyPartitioner(kgo.SaramaCompatHasher(fnv32a))
}

func fnv32a(b []byte) uint32 {
	h := fnv.New32a()
	h.Write(b)
	return h.Sum32()
}

// NewClient returns a client with Rolodex's producer defaults (acks from all
// in-sync replicas, idempotent writes, the sarama-compatible partitioner)
// plus opts.
func NewClient(cfg Config, opts ...kgo.Opt) (*kgo.Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	id := cfg.ClientID
	if id == "" {
		id = "rolodex"
	}
	base := []kgo.Opt{
		kgo.SeedBrokers(cfg.Brokers...),
		kgo.ClientID(id),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.RecordPartitioner(Partitioner()),
		kgo.ProducerLinger(2 * time.Millisecond),
		kgo.ProducerBatchMaxBytes(1 << 20),
	}
	if cfg.Metrics != nil {
		base = append(base, kgo.WithHooks(cfg.Metrics))
	}
	cl, err := kgo.NewClient(append(base, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("kafka: new client: %w", err)
	}
	return cl, nil
}

// TopicSpec is a topic to create.
type TopicSpec struct {
	Name       string
	Partitions int32
	// Configs are topic configs, e.g. cleanup.policy=compact.
	Configs map[string]*string
}

// EnsureTopics creates the topics that do not exist yet. Existing topics are
// left as they are. replication -1 uses the broker default.
func EnsureTopics(ctx context.Context, cl *kgo.Client, replication int16, topics ...TopicSpec) error {
	adm := kadm.NewClient(cl)
	for _, t := range topics {
		resp, err := adm.CreateTopic(ctx, t.Partitions, replication, t.Configs, t.Name)
		if err == nil {
			err = resp.Err
		}
		if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
			return fmt.Errorf("kafka: create topic %s: %w", t.Name, err)
		}
	}
	return nil
}
