// Package kafkaclient builds the franz-go clients every Rolodex connector
// uses, so that they agree on acks, partitioning and metrics.
package kafkaclient

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/plugin/kprom"
)

// Config says how to reach Kafka.
type Config struct {
	// Brokers are the seed brokers, host:port. Required.
	Brokers []string
	// ClientID names the client to the brokers. Default "rolodex".
	ClientID string
	// Metrics, when set, receives the franz-go client metrics (kprom).
	Metrics *Metrics
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

// Metrics registers the franz-go client metrics (kprom) of every client
// made with it on one registry, labelled by client id.
//
// Each client gets its own kprom.Metrics: one kprom.Metrics shared by
// clients rebuilds its collectors when a client is created, racing the
// hooks of the clients already running, and unregisters them all when any
// one client closes.
type Metrics struct{ reg prometheus.Registerer }

// NewMetrics returns the franz-go client metrics registered on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics { return &Metrics{reg: reg} }

// hooks is a new client's kprom.Metrics. A second client with the same id
// on the same registry (its collectors are already there) is not
// exported, rather than a panic.
func (m *Metrics) hooks() *kprom.Metrics {
	return kprom.NewMetrics("rolodex", kprom.Subsystem("kafka"), kprom.Registerer(tolerant{m.reg}), kprom.WithClientLabel())
}

// tolerant is a Registerer whose MustRegister skips collectors already
// registered.
type tolerant struct{ prometheus.Registerer }

func (t tolerant) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := t.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				panic(err)
			}
		}
	}
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

// SessionTimeout is the session of every Rolodex franz-go consumer group
// (franz-go's default is 45 s): the time a member that stopped heartbeating
// (a SIGKILLed or frozen instance) keeps its partitions, so a restarted
// instance works again only after it. It is the brokers' smallest allowed
// session (group.min.session.timeout.ms, 6 s on Apache Kafka and kfake),
// the goka groups' too (internal/gokaconfig). franz-go heartbeats every
// HeartbeatInterval from the group's own goroutine, not from PollFetches,
// so a long ClickHouse insert or webhook call does not end the session;
// only an instance that cannot reach the group coordinator for 6 s loses
// it (then it rejoins: a rebalance, nothing lost). How long a member may
// take to let a rebalance through (BlockRebalanceOnPoll) is the rebalance
// timeout, franz-go's 60 s, which this does not change.
// docs/operations.md, "Recovering after a crash".
const SessionTimeout = 6 * time.Second

// HeartbeatInterval is the heartbeat of SessionTimeout: a third of it.
const HeartbeatInterval = SessionTimeout / 3

// Heartbeat is the heartbeat interval of a group session of d: a third
// of it, at most franz-go's default 3 s (goka's groups use it too).
func Heartbeat(d time.Duration) time.Duration { return min(3*time.Second, d/3) }

// EnvSessionTimeout names the environment variable that replaces
// SessionTimeout for every consumer group of the process, franz-go's and
// goka's (internal/gokaconfig) alike: for brokers whose
// group.min.session.timeout.ms is above 6 s (a broker refuses a member
// whose session is outside its minimum and maximum), or to trade a slower
// recovery for more tolerance of stalls. A Go duration from 1s to 30m.
const EnvSessionTimeout = "ROLODEX_KAFKA_SESSION_TIMEOUT"

// Session is the session of the process's consumer groups:
// $ROLODEX_KAFKA_SESSION_TIMEOUT when set, else SessionTimeout. An
// unreadable or out-of-range value is an error (NewClient returns it; the
// rolodex command checks it before it starts anything).
func Session() (time.Duration, error) {
	v := os.Getenv(EnvSessionTimeout)
	if v == "" {
		return SessionTimeout, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < time.Second || d > 30*time.Minute {
		return 0, fmt.Errorf("kafka: %s=%q: want a duration from 1s to 30m, such as 10s (the brokers' group.min.session.timeout.ms and group.max.session.timeout.ms must allow it)", EnvSessionTimeout, v)
	}
	return d, nil
}

// GroupSession returns the options of a consumer group session of d and a
// heartbeat of a third of it, at most franz-go's default 3 s; d 0 is
// Session() (SessionTimeout unless the environment replaces it).
// NewClient already sets Session(): a config's session override passes
// GroupSession(override) among its options.
func GroupSession(d time.Duration) []kgo.Opt {
	if d <= 0 {
		var err error
		if d, err = Session(); err != nil {
			d = SessionTimeout // NewClient reports the error
		}
	}
	return []kgo.Opt{kgo.SessionTimeout(d), kgo.HeartbeatInterval(Heartbeat(d))}
}

// NewClient returns a client with Rolodex's producer defaults (acks from all
// in-sync replicas, idempotent writes, the sarama-compatible partitioner)
// and, for a consumer group, its session (Session(), a third of it as the
// heartbeat), plus opts, which override them.
func NewClient(cfg Config, opts ...kgo.Opt) (*kgo.Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if _, err := Session(); err != nil {
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
	base = append(base, GroupSession(0)...)
	if cfg.Metrics != nil {
		base = append(base, kgo.WithHooks(cfg.Metrics.hooks()))
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

// EnsureTopics creates the topics that do not exist yet, and returns once
// every broker's metadata shows each of them (WaitTopics). Existing topics
// are left as they are. replication -1 uses the broker default.
func EnsureTopics(ctx context.Context, cl *kgo.Client, replication int16, topics ...TopicSpec) error {
	adm := kadm.NewClient(cl)
	names := make([]string, len(topics))
	for i, t := range topics {
		names[i] = t.Name
		resp, err := adm.CreateTopic(ctx, t.Partitions, replication, t.Configs, t.Name)
		if err == nil {
			err = resp.Err
		}
		if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
			return fmt.Errorf("kafka: create topic %s: %w", t.Name, err)
		}
	}
	return WaitTopics(ctx, cl, names...)
}

// WaitTopics waits until every broker that answers knows each of topics:
// its metadata lists the topic with a leader for every partition. On
// Apache Kafka a broker learns of a new topic a moment after the
// controller created it; a client that asks that broker meanwhile finds no
// such topic (goka, through sarama, asks any broker, and then tries to
// create the topic again, which fails). A broker that cannot be reached
// is not waited for. docs/kafka.md, "Findings".
func WaitTopics(ctx context.Context, cl *kgo.Client, topics ...string) error {
	if len(topics) == 0 {
		return nil
	}
	adm := kadm.NewClient(cl)
	for {
		err := topicsEverywhere(ctx, adm, cl, topics)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("kafka: waiting for every broker to know the topics: %w (last: %w)", ctx.Err(), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func topicsEverywhere(ctx context.Context, adm *kadm.Client, cl *kgo.Client, topics []string) error {
	md, err := adm.BrokerMetadata(ctx)
	if err != nil {
		return err
	}
	for _, b := range md.Brokers {
		req := kmsg.NewPtrMetadataRequest()
		for _, name := range topics {
			rt := kmsg.NewMetadataRequestTopic()
			rt.Topic = kmsg.StringPtr(name)
			req.Topics = append(req.Topics, rt)
		}
		resp, err := req.RequestWith(ctx, cl.Broker(int(b.NodeID)))
		if err != nil {
			continue // unreachable: no client gets an answer from it either
		}
		for _, t := range resp.Topics {
			name := ""
			if t.Topic != nil {
				name = *t.Topic
			}
			if err := kerr.ErrorForCode(t.ErrorCode); err != nil {
				return fmt.Errorf("broker %d: topic %s: %w", b.NodeID, name, err)
			}
			if len(t.Partitions) == 0 {
				return fmt.Errorf("broker %d: topic %s has no partitions yet", b.NodeID, name)
			}
			for _, p := range t.Partitions {
				if p.Leader < 0 {
					return fmt.Errorf("broker %d: topic %s partition %d has no leader", b.NodeID, name, p.Partition)
				}
			}
		}
		if len(resp.Topics) != len(topics) {
			return fmt.Errorf("broker %d: %d of %d topics in its metadata", b.NodeID, len(resp.Topics), len(topics))
		}
	}
	return nil
}

// ProduceUntilAcked writes recs until Kafka acknowledged them all, or ctx
// is done (its error then). After a failed attempt it calls failed (to log)
// and waits backoff. The producer is idempotent; a record written again
// after a failed attempt is a duplicate its consumers must absorb. An error
// that cannot pass by retrying (a record over the topic's
// max.message.bytes) retries for ever: callers that can meet one check
// for it first.
func ProduceUntilAcked(ctx context.Context, cl *kgo.Client, backoff time.Duration, failed func(error), recs ...*kgo.Record) error {
	for {
		err := cl.ProduceSync(ctx, recs...).FirstErr()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		failed(err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
	}
}

// Partitions returns the partition count of topic, which must exist.
func Partitions(ctx context.Context, cl *kgo.Client, topic string) (int32, error) {
	td, err := kadm.NewClient(cl).ListTopics(ctx, topic)
	if err != nil {
		return 0, fmt.Errorf("describe %s: %w", topic, err)
	}
	t, ok := td[topic]
	if !ok || t.Err != nil || len(t.Partitions) == 0 {
		return 0, fmt.Errorf("describe %s: %v", topic, t.Err)
	}
	return int32(len(t.Partitions)), nil
}

// EnsureTopicsLike creates the topics specs returns for the partition
// count of base, which must exist (goka requires a group's inputs and
// table to be co-partitioned), and returns that count. Topics that exist
// are left as they are.
func EnsureTopicsLike(ctx context.Context, cl *kgo.Client, replication int16, base string, specs func(partitions int32) []TopicSpec) (int32, error) {
	n, err := Partitions(ctx, cl, base)
	if err != nil {
		return 0, err
	}
	return n, EnsureTopics(ctx, cl, replication, specs(n)...)
}
