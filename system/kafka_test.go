//go:build system

package system

import (
	"context"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/lovoo/goka"
	"github.com/lovoo/goka/codec"
	"github.com/lovoo/goka/storage"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/rolodex/rolodex/internal/gokaconfig"
	"github.com/rolodex/rolodex/internal/kafkaclient"
)

// cluster returns the bootstrap brokers of the cluster scripts/kafka
// started, and fails the test when there is none.
func cluster(t *testing.T) []string {
	t.Helper()
	brokers := kafkaclient.ParseBrokers(os.Getenv("ROLODEX_KAFKA_BROKERS"))
	if len(brokers) == 0 {
		t.Fatal("ROLODEX_KAFKA_BROKERS is not set: these tests need a real Kafka cluster; start one with\n" +
			"  ./scripts/kafka install && eval \"$(./scripts/kafka start /tmp/kafka)\"\n" +
			"then run go test -tags system ./system/ and ./scripts/kafka stop /tmp/kafka (docs/kafka.md)")
	}
	// These tests want the whole cluster: say so at once, not after a
	// timeout waiting for a replica that cannot come.
	for i, b := range brokers {
		c, err := net.DialTimeout("tcp", b, 3*time.Second)
		if err != nil {
			t.Fatalf("broker %d of ROLODEX_KAFKA_BROKERS (%s) does not answer: %v; a broker killed by a test is started again by ./scripts/kafka restart %s %d",
				i+1, b, err, os.Getenv("ROLODEX_KAFKA_DIR"), i+1)
		}
		c.Close()
	}
	return brokers
}

// unique names a topic or group for one run of one test: the cluster may
// outlive a run.
func unique(t *testing.T, what string) string {
	return fmt.Sprintf("rolodex-system-%s-%s-%d", t.Name(), what, time.Now().UnixNano())
}

// admClient is a test's client for admin requests: kadm's, and the
// client under it for requests to one broker.
type admClient struct {
	*kadm.Client
	cl *kgo.Client
}

// admin returns a client for the admin requests of a test, closed at its
// end.
func admin(t *testing.T, brokers []string) admClient {
	t.Helper()
	cl, err := kafkaclient.NewClient(kafkaclient.Config{Brokers: brokers, ClientID: "rolodex-system-admin"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return admClient{kadm.NewClient(cl), cl}
}

// replication is the replication a test topic gets: every broker, at most 3.
func replication(brokers []string) int { return min(len(brokers), 3) }

// createTopic creates a topic on every broker (at most 3) and waits until
// every broker's metadata shows each partition with all its replicas in
// sync: a broker learns of a new topic a moment after the controller, and
// sarama (goka) asks any broker.
func createTopic(t *testing.T, ctx context.Context, adm admClient, name string, partitions int32, rf int, configs map[string]*string) {
	t.Helper()
	resp, err := adm.CreateTopic(ctx, partitions, int16(rf), configs, name)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		t.Fatalf("create topic %s (replication %d): %v", name, rf, err)
	}
	t.Cleanup(func() {
		dctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		adm.DeleteTopics(dctx, name)
	})
	waitFor(t, ctx, "every broker to see every replica of "+name+" in sync", func() error {
		return seenEverywhere(ctx, adm, name, partitions, rf)
	})
}

func seenEverywhere(ctx context.Context, adm admClient, name string, partitions int32, rf int) error {
	md, err := adm.BrokerMetadata(ctx)
	if err != nil {
		return err
	}
	for _, b := range md.Brokers {
		req := kmsg.NewPtrMetadataRequest()
		rt := kmsg.NewMetadataRequestTopic()
		rt.Topic = kmsg.StringPtr(name)
		req.Topics = append(req.Topics, rt)
		resp, err := req.RequestWith(ctx, adm.cl.Broker(int(b.NodeID)))
		if err != nil {
			return fmt.Errorf("broker %d: %w", b.NodeID, err)
		}
		if len(resp.Topics) != 1 {
			return fmt.Errorf("broker %d: %d topics in metadata", b.NodeID, len(resp.Topics))
		}
		tp := resp.Topics[0]
		if err := kerr.ErrorForCode(tp.ErrorCode); err != nil {
			return fmt.Errorf("broker %d: %w", b.NodeID, err)
		}
		if len(tp.Partitions) != int(partitions) {
			return fmt.Errorf("broker %d: %d partitions, want %d", b.NodeID, len(tp.Partitions), partitions)
		}
		for _, p := range tp.Partitions {
			if p.Leader < 0 || len(p.Replicas) != rf || len(p.ISR) != rf {
				return fmt.Errorf("broker %d: partition %d: leader %d, replicas %v, isr %v", b.NodeID, p.Partition, p.Leader, p.Replicas, p.ISR)
			}
		}
	}
	return nil
}

func waitFor(t *testing.T, ctx context.Context, what string, cond func() error) {
	t.Helper()
	for {
		err := cond()
		if err == nil {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for %s: %v (last: %v)", what, ctx.Err(), err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// The cluster is what scripts/kafka promises: with 3 brokers, writes need
// 2 in-sync replicas and internal topics are replicated 3 times.
func TestKafkaClusterConfig(t *testing.T) {
	brokers := cluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	adm := admin(t, brokers)
	md, err := adm.BrokerMetadata(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(md.Brokers) != len(brokers) {
		t.Fatalf("metadata lists %d brokers, ROLODEX_KAFKA_BROKERS %d", len(md.Brokers), len(brokers))
	}
	rcs, err := adm.DescribeBrokerConfigs(ctx, md.Brokers.NodeIDs()...)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"auto.create.topics.enable": "false", "group.initial.rebalance.delay.ms": "0"}
	if len(md.Brokers) >= 3 {
		want["default.replication.factor"] = "3"
		want["min.insync.replicas"] = "2"
		want["offsets.topic.replication.factor"] = "3"
		want["transaction.state.log.replication.factor"] = "3"
		want["transaction.state.log.min.isr"] = "2"
	}
	for _, rc := range rcs {
		if rc.Err != nil {
			t.Fatalf("broker %s: %v", rc.Name, rc.Err)
		}
		got := map[string]string{}
		for _, c := range rc.Configs {
			got[c.Key] = c.MaybeValue()
		}
		for k, v := range want {
			if got[k] != v {
				t.Errorf("broker %s: %s=%q, want %q", rc.Name, k, got[k], v)
			}
		}
	}
	t.Logf("%d brokers, controller %d, cluster %s", len(md.Brokers), md.Controller, md.Cluster)
}

// Produce with acks=all through the connectors' client, consume in a group,
// commit, and find the commit where the group coordinator keeps it.
func TestKafkaFranzRoundTrip(t *testing.T) {
	brokers := cluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	adm := admin(t, brokers)
	rf := replication(brokers)
	topic, group := unique(t, "topic"), unique(t, "group")
	const partitions, n = 6, 600
	createTopic(t, ctx, adm, topic, partitions, rf, nil)

	prod, err := kafkaclient.NewClient(kafkaclient.Config{Brokers: brokers, ClientID: "rolodex-system-producer"})
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	recs := make([]*kgo.Record, n)
	for i := range recs {
		recs[i] = &kgo.Record{Topic: topic, Key: []byte("key-" + strconv.Itoa(i%50)), Value: []byte(strconv.Itoa(i))}
	}
	if err := prod.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("produce with acks=all: %v", err)
	}
	// The partitioner is sarama's: the same key, the same partition.
	byKey := map[string]int32{}
	for _, r := range recs {
		if p, ok := byKey[string(r.Key)]; ok && p != r.Partition {
			t.Fatalf("key %s on partitions %d and %d", r.Key, p, r.Partition)
		}
		byKey[string(r.Key)] = r.Partition
	}

	cons, err := kafkaclient.NewClient(kafkaclient.Config{Brokers: brokers, ClientID: "rolodex-system-consumer"},
		kgo.ConsumeTopics(topic), kgo.ConsumerGroup(group), kgo.DisableAutoCommit(),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	seen := map[string]bool{}
	for len(seen) < n {
		fs := cons.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("consumed %d of %d records: %v", len(seen), n, err)
		}
		fs.EachError(func(tp string, p int32, err error) { t.Fatalf("fetch %s/%d: %v", tp, p, err) })
		fs.EachRecord(func(r *kgo.Record) {
			if seen[string(r.Value)] {
				t.Errorf("record %s twice", r.Value)
			}
			seen[string(r.Value)] = true
		})
	}
	if err := cons.CommitUncommittedOffsets(ctx); err != nil {
		t.Fatalf("commit: %v", err)
	}

	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	committed, err := adm.FetchOffsets(ctx, group)
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	ends.Each(func(o kadm.ListedOffset) {
		total += o.Offset
		c, ok := committed.Lookup(topic, o.Partition)
		if !ok || c.At != o.Offset {
			t.Errorf("partition %d: committed %v (found %v), end offset %d", o.Partition, c.At, ok, o.Offset)
		}
	})
	if total != n {
		t.Errorf("end offsets add up to %d, produced %d", total, n)
	}
	// The group's offsets live in __consumer_offsets, replicated like the
	// data.
	td, err := adm.ListTopics(ctx, "__consumer_offsets")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range td["__consumer_offsets"].Partitions {
		if len(p.Replicas) != rf {
			t.Fatalf("__consumer_offsets partition %d on %v, want %d replicas", p.Partition, p.Replicas, rf)
		}
	}
}

// A goka processor (sarama underneath, with the processors' settings)
// reads a stream an emitter writes, keeps a count per key in its group
// table, and a view reads the table back.
func TestKafkaGokaRoundTrip(t *testing.T) {
	brokers := cluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	adm := admin(t, brokers)
	rf := replication(brokers)
	input := goka.Stream(unique(t, "input"))
	group := goka.Group(unique(t, "group"))
	const partitions, keys, perKey = 4, 20, 10
	createTopic(t, ctx, adm, string(input), partitions, rf, nil)
	compact := "compact"
	createTopic(t, ctx, adm, string(goka.GroupTable(group)), partitions, rf, map[string]*string{"cleanup.policy": &compact})

	sc := gokaconfig.Sarama("rolodex-system-goka")
	tmb := goka.TopicManagerBuilderWithConfig(sc, gokaconfig.TopicManager(rf))
	g := goka.DefineGroup(group,
		goka.Input(input, new(codec.String), func(gctx goka.Context, msg any) {
			var c int64
			if v := gctx.Value(); v != nil {
				c = v.(int64)
			}
			gctx.SetValue(c + 1)
		}),
		goka.Persist(new(codec.Int64)),
	)
	proc, err := goka.NewProcessor(brokers, g,
		goka.WithConsumerGroupBuilder(goka.ConsumerGroupBuilderWithConfig(sc)),
		goka.WithProducerBuilder(goka.ProducerBuilderWithConfig(sc)),
		goka.WithConsumerSaramaBuilder(goka.SaramaConsumerBuilderWithConfig(sc)),
		goka.WithTopicManagerBuilder(tmb),
		goka.WithStorageBuilder(storage.MemoryBuilder()),
	)
	if err != nil {
		t.Fatalf("processor: %v", err)
	}
	pctx, pcancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var runErr error
	wg.Add(1)
	go func() { defer wg.Done(); runErr = proc.Run(pctx) }()
	defer func() {
		pcancel()
		wg.Wait()
		if runErr != nil {
			t.Errorf("processor: %v", runErr)
		}
	}()
	if err := proc.WaitForReadyContext(ctx); err != nil {
		t.Fatalf("processor not ready: %v", err)
	}

	em, err := goka.NewEmitter(brokers, input, new(codec.String),
		goka.WithEmitterProducerBuilder(goka.ProducerBuilderWithConfig(sc)),
		goka.WithEmitterTopicManagerBuilder(tmb))
	if err != nil {
		t.Fatalf("emitter: %v", err)
	}
	for i := 0; i < keys*perKey; i++ {
		if _, err := em.Emit(fmt.Sprintf("key-%d", i%keys), "x"); err != nil {
			t.Fatalf("emit: %v", err)
		}
	}
	if err := em.Finish(); err != nil {
		t.Fatalf("emitter finish: %v", err)
	}

	view, err := goka.NewView(brokers, goka.GroupTable(group), new(codec.Int64),
		goka.WithViewConsumerSaramaBuilder(goka.SaramaConsumerBuilderWithConfig(sc)),
		goka.WithViewTopicManagerBuilder(tmb),
		goka.WithViewStorageBuilder(storage.MemoryBuilder()))
	if err != nil {
		t.Fatalf("view: %v", err)
	}
	vctx, vcancel := context.WithCancel(ctx)
	var vwg sync.WaitGroup
	vwg.Add(1)
	go func() { defer vwg.Done(); view.Run(vctx) }()
	defer func() { vcancel(); vwg.Wait() }()
	waitFor(t, ctx, "every key counted in the view", func() error {
		for k := 0; k < keys; k++ {
			key := fmt.Sprintf("key-%d", k)
			v, err := view.Get(key)
			if err != nil {
				return err
			}
			if v == nil || v.(int64) != perKey {
				return fmt.Errorf("%s = %v, want %d", key, v, perKey)
			}
		}
		return nil
	})
}

// kafkaclient.EnsureTopics returns only once every broker knows the new
// topics. On Apache Kafka a broker learns of a topic a moment after the
// controller created it, and `rolodex run processors` failed at its first
// start on a new cluster: goka asked a broker that did not know the
// identity loopback yet, tried to create it again, and stopped on "topic
// already exists".
func TestKafkaEnsureTopicsKnownEverywhere(t *testing.T) {
	brokers := cluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	adm := admin(t, brokers)
	var specs []kafkaclient.TopicSpec
	for i := 0; i < 4; i++ {
		specs = append(specs, kafkaclient.TopicSpec{Name: unique(t, fmt.Sprint("topic", i)), Partitions: 6})
	}
	if err := kafkaclient.EnsureTopics(ctx, adm.cl, int16(replication(brokers)), specs...); err != nil {
		t.Fatal(err)
	}
	for _, s := range specs {
		t.Cleanup(func() {
			dctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			adm.DeleteTopics(dctx, s.Name)
		})
	}
	md, err := adm.BrokerMetadata(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range md.Brokers {
		req := kmsg.NewPtrMetadataRequest()
		for _, s := range specs {
			rt := kmsg.NewMetadataRequestTopic()
			rt.Topic = kmsg.StringPtr(s.Name)
			req.Topics = append(req.Topics, rt)
		}
		resp, err := req.RequestWith(ctx, adm.cl.Broker(int(b.NodeID)))
		if err != nil {
			t.Fatalf("broker %d: %v", b.NodeID, err)
		}
		for _, tp := range resp.Topics {
			if err := kerr.ErrorForCode(tp.ErrorCode); err != nil || len(tp.Partitions) != 6 {
				t.Errorf("broker %d, just after EnsureTopics: topic %s: %v, %d partitions", b.NodeID, *tp.Topic, err, len(tp.Partitions))
			}
		}
	}
}
