//go:build system

package identity

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/rolodex/rolodex/internal/kafkaclient"
	"github.com/rolodex/rolodex/schemas"
)

// The property test on a real Apache Kafka cluster (scripts/kafka: 3
// brokers, replication 3, min.insync.replicas 2, acks=all): one instance,
// scaled to three mid-stream and back to one, instances killed (SIGKILL)
// at any moment, in a rebalance too, and every profile equals the
// reference. ROLODEX_PROPERTY_SEEDS=N runs N seeds (default 2).
func TestPropertyOnRealKafka(t *testing.T) {
	brokers := realBrokers(t)
	for _, seed := range propertySeeds(2) {
		rng := rand.New(rand.NewSource(seed * 104729))
		partitions := 3 + rng.Intn(6)
		t.Run(fmt.Sprintf("seed=%d/partitions=%d", seed, partitions), func(t *testing.T) {
			propertyRun(t, onRealKafka(t, brokers, partitions), rng, 1500+rng.Intn(1000), realSchedule)
		})
	}
}

// realBrokers returns the bootstrap brokers of the cluster scripts/kafka
// started, and fails the test when there is none.
func realBrokers(t *testing.T) []string {
	t.Helper()
	brokers := kafkaclient.ParseBrokers(os.Getenv("ROLODEX_KAFKA_BROKERS"))
	if len(brokers) == 0 {
		t.Fatal("ROLODEX_KAFKA_BROKERS is not set: this test needs a real Kafka cluster; start one with\n" +
			"  ./scripts/kafka install && eval \"$(./scripts/kafka start /tmp/kafka)\"\n" +
			"then run go test -tags system -run TestPropertyOnRealKafka ./processors/identity/ and ./scripts/kafka stop /tmp/kafka (docs/kafka.md)")
	}
	return brokers
}

// realSchedule starts one instance, scales to three mid-stream and back
// to one, and kills instances (SIGKILL) at random moments: while the
// three join, in a Stable group and in the rebalance an earlier kill or
// start began, right before or after another instance leaves. Kafka
// expires a killed member after its session timeout (10 s, sarama's
// default), and a rebalance waits for that.
func realSchedule(r *run) {
	chunk := len(r.events) / 6
	r.start()
	r.produce(chunk)
	r.sleep(0, 2*time.Second)
	// 1 → 3, and one of the new instances killed after it sent JoinGroup
	// and before the answer: the group waits for the three to join. kfake
	// keeps such a member forever (TestPropertyOnKafka); Kafka expires it.
	// The moment can pass unseen (the first instance rejoins before the
	// others are in): then the kill comes anyway.
	r.start()
	r.start()
	if err := r.waitGroup(10*time.Second, "PreparingRebalance", 3); err != nil {
		r.logf("%v; killing anyway", err)
	}
	r.crash(1 + r.rng.Intn(2))
	r.produce(chunk)
	for range 2 {
		if r.rng.Intn(2) == 0 {
			r.waitStable(3)
		}
		r.sleep(0, 2*time.Second)
		r.crash(r.rng.Intn(3))
		r.produce(chunk)
	}
	// 3 → 1: two instances leave, each killed or stopped, the second in
	// the rebalance the first began.
	if r.rng.Intn(2) == 0 {
		r.waitStable(3)
	}
	for range 2 {
		i := r.rng.Intn(len(r.children))
		if r.rng.Intn(2) == 0 {
			r.kill(i)
		} else {
			r.stop(i)
		}
		r.drop(i)
		r.sleep(0, 500*time.Millisecond)
	}
	r.produce(chunk)
	// The last one, killed while the group shrinks or later.
	r.sleep(0, 3*time.Second)
	r.crash(0)
	r.produce(len(r.events))
}

// crash kills instance i (SIGKILL) and starts it again after a random
// pause.
func (r *run) crash(i int) {
	r.t.Helper()
	r.kill(i)
	r.sleep(0, time.Second)
	r.restart(i)
}

// onRealKafka makes the topics of a run fresh on the cluster: deletes the
// identity group and the topics of an earlier run, and creates them again
// with the given partitions, replicated on every broker (at most 3). The
// names are fixed (schemas), so a run cannot use topics of its own.
func onRealKafka(t *testing.T, brokers []string, partitions int) propertyKafka {
	t.Helper()
	began := time.Now()
	deadline := began.Add(2 * time.Minute)
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	wait := func(what string, cond func() error) {
		t.Helper()
		if err := poll(time.Until(deadline), what, cond); err != nil {
			t.Fatal(err)
		}
	}
	cl, err := kafkaclient.NewClient(kafkaclient.Config{Brokers: brokers, ClientID: "rolodex-identity-test-admin"})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	md, err := adm.BrokerMetadata(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// The whole cluster, or the replicas cannot all be in sync.
	if len(md.Brokers) < len(brokers) {
		t.Fatalf("the cluster lists %d brokers, ROLODEX_KAFKA_BROKERS %d: a broker killed by a test is started again by ./scripts/kafka restart %s N",
			len(md.Brokers), len(brokers), os.Getenv("ROLODEX_KAFKA_DIR"))
	}
	k := propertyKafka{brokers: brokers, replication: min(len(md.Brokers), 3), settle: 3 * time.Minute, stall: time.Minute}
	specs := append([]kafkaclient.TopicSpec{{Name: schemas.TopicEvents, Partitions: int32(partitions)}}, Topics(int32(partitions))...)
	var names []string
	for _, s := range specs {
		names = append(names, s.Name)
	}

	// Kafka deletes only an empty group: instances of a failed run that
	// were killed stay members until their sessions expire.
	wait("the identity group deleted", func() error {
		_, err := adm.DeleteGroup(ctx, schemas.GroupIdentity)
		if errors.Is(err, kerr.GroupIDNotFound) {
			return nil
		}
		return err
	})
	groupGone := time.Since(began)
	deleted, err := adm.DeleteTopics(ctx, names...)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range deleted {
		if d.Err != nil && !errors.Is(d.Err, kerr.UnknownTopicOrPartition) {
			t.Fatalf("delete topic %s: %v", d.Topic, d.Err)
		}
	}
	// A topic is gone once no broker lists it: creating it again before
	// that would find it still there.
	wait("the topics gone from every broker", func() error {
		return onEveryBroker(ctx, cl, names, func(mt kmsg.MetadataResponseTopic) error {
			if err := kerr.ErrorForCode(mt.ErrorCode); !errors.Is(err, kerr.UnknownTopicOrPartition) {
				return fmt.Errorf("still there (%v)", err)
			}
			return nil
		})
	})
	if err := kafkaclient.EnsureTopics(ctx, cl, int16(k.replication), specs...); err != nil {
		t.Fatal(err)
	}
	// Created once every broker lists every partition with all its
	// replicas in sync: sarama asks any broker.
	wait("the topics in sync on every broker", func() error {
		return onEveryBroker(ctx, cl, names, func(mt kmsg.MetadataResponseTopic) error {
			if err := kerr.ErrorForCode(mt.ErrorCode); err != nil {
				return err
			}
			if len(mt.Partitions) != partitions {
				return fmt.Errorf("%d partitions, want %d", len(mt.Partitions), partitions)
			}
			for _, p := range mt.Partitions {
				if p.Leader < 0 || len(p.Replicas) != k.replication || len(p.ISR) != k.replication {
					return fmt.Errorf("partition %d: leader %d, replicas %v, isr %v", p.Partition, p.Leader, p.Replicas, p.ISR)
				}
			}
			return nil
		})
	})
	t.Logf("fresh topics, %d partitions, replication %d, in %.1fs (the group deleted in %.1fs)",
		partitions, k.replication, time.Since(began).Seconds(), groupGone.Seconds())
	return k
}

// onEveryBroker asks every broker for the metadata of topics and checks
// each topic's with check.
func onEveryBroker(ctx context.Context, cl *kgo.Client, topics []string, check func(kmsg.MetadataResponseTopic) error) error {
	md, err := kadm.NewClient(cl).BrokerMetadata(ctx)
	if err != nil {
		return err
	}
	for _, b := range md.Brokers {
		req := kmsg.NewPtrMetadataRequest()
		req.AllowAutoTopicCreation = false
		for _, name := range topics {
			rt := kmsg.NewMetadataRequestTopic()
			rt.Topic = kmsg.StringPtr(name)
			req.Topics = append(req.Topics, rt)
		}
		resp, err := req.RequestWith(ctx, cl.Broker(int(b.NodeID)))
		if err != nil {
			return fmt.Errorf("broker %d: %w", b.NodeID, err)
		}
		for _, mt := range resp.Topics {
			if err := check(mt); err != nil {
				return fmt.Errorf("broker %d: topic %s: %w", b.NodeID, *mt.Topic, err)
			}
		}
	}
	return nil
}
