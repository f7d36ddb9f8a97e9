// Package gokaconfig holds the sarama settings every goka component of
// Rolodex (processors and views) shares, so none of them touches goka's
// global configuration.
package gokaconfig

import (
	"time"

	"github.com/IBM/sarama"
	"github.com/lovoo/goka"

	"github.com/rolodex/rolodex/internal/kafkaclient"
)

// Version is the Kafka protocol version goka's sarama speaks: the newest one
// both kfake (dev mode, tests) and real brokers decode for sarama; newer
// sarama versions fail against kfake ("invalid byteslice length").
var Version = sarama.V2_1_0_0

// Sarama returns the sarama configuration: acks from all in-sync replicas,
// an idempotent producer, streams read from the oldest offset on a group's
// first start (goka's default, newest, would skip what was produced
// before), short flushes.
//
// The idempotent producer (one request in flight per broker, sequence
// numbers checked by the broker) keeps each partition's writes in the order
// they were made, even across retries: a table's later write of a key can
// never be overtaken by an earlier one's retry. A write that fails for good
// does not stop later ones (sarama moves to a new producer epoch); the
// ordered producer then fails every later emit, so none is committed
// (docs/identity.md, invariant 2).
//
// The group session is SessionTimeout (sarama's default is 10 s), or
// $ROLODEX_KAFKA_SESSION_TIMEOUT (kafkaclient.Session): an
// instance that was SIGKILLed holds its partitions until its session
// expires, so a restarted instance processes again only after that
// (docs/operations.md, "Recovering after a crash").
func Sarama(clientID string) *sarama.Config {
	c := goka.DefaultConfig()
	c.Version = Version
	c.ClientID = clientID
	c.Producer.RequiredAcks = sarama.WaitForAll
	c.Producer.Idempotent = true
	c.Net.MaxOpenRequests = 1
	c.Producer.Flush.Frequency = 5 * time.Millisecond
	c.Producer.Flush.Bytes = 256 << 10
	c.Consumer.Offsets.Initial = sarama.OffsetOldest
	session, err := kafkaclient.Session()
	if err != nil {
		session = SessionTimeout // the rolodex command refuses to start with it
	}
	c.Consumer.Group.Session.Timeout = session
	c.Consumer.Group.Heartbeat.Interval = kafkaclient.Heartbeat(session)
	c.Producer.MaxMessageBytes = MaxMessageBytes
	c.Consumer.Fetch.Max = 0 // no cap: a record may be up to MaxMessageBytes
	c.Producer.Retry.Max = ProducerRetries
	c.Producer.Retry.BackoffFunc = producerBackoff
	return c
}

// SessionTimeout is the goka groups' session: the time a member that stopped
// heartbeating (a SIGKILLed or frozen instance) keeps its partitions. It is
// the brokers' smallest allowed session (group.min.session.timeout.ms, 6 s on
// Apache Kafka and kfake): with sarama's 10 s an identity instance restarted
// at once after a SIGKILL processed again only 10.9–16.1 s after the kill,
// with 6 s after 7.0–7.1 s (scripts/measure-kill-restart, docs/benchmarks.md).
// Static membership (KIP-345) would let a restarted member take its
// partitions back at once, but needs a newer protocol than Version.
// Heartbeats go every SessionTimeout/3 from their own goroutine, so only an
// instance that cannot reach the group coordinator for 6 s loses its session
// (then it rejoins: a rebalance, nothing lost).
const SessionTimeout = kafkaclient.SessionTimeout

// ProducerRetries and producerBackoff make a write retry for about a
// minute before it fails (goka's default, 10 retries 100 ms apart, gives
// up within a second or two). A failed write stops the processor, and a
// partition can be without a leader for longer than that: when a broker
// dies, the controller fences it only after broker.session.timeout.ms (9 s
// by default), and until then its partitions keep it as their leader
// (docs/kafka.md, "Findings"). The price: with Kafka gone altogether, a
// processor's shutdown waits up to that minute for its writes.
const ProducerRetries = 64

func producerBackoff(retries, _ int) time.Duration {
	if retries >= 4 {
		return time.Second
	}
	return 100 * time.Millisecond << retries // 100, 200, 400, 800 ms
}

// MaxMessageBytes bounds one record the goka components write: a profile's
// root holds the contributions of all its nodes, which can pass Kafka's 1 MB
// default. The identity topics are created with the same max.message.bytes.
const MaxMessageBytes = 16 << 20

// TopicManager returns goka's topic settings with the given replication.
func TopicManager(replication int) *goka.TopicManagerConfig {
	tmc := goka.NewTopicManagerConfig()
	tmc.Table.Replication = replication
	tmc.Stream.Replication = replication
	return tmc
}
