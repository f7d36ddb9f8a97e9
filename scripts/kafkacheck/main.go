// Command kafkacheck tells scripts/kafka whether a cluster it started is
// ready: every broker it is given answers a metadata request that lists
// the expected number of brokers and a controller, and (unless -topic=false)
// a topic replicated on min(3, expected) brokers can be created, gets a full
// in-sync replica set on every partition, takes a record with acks=all, and
// is deleted again.
//
//	go run ./scripts/kafkacheck -brokers 127.0.0.1:9092,127.0.0.1:9093,127.0.0.1:9094 -expect 3
//
// It exits 0 when ready, 1 with the reason on stderr when not (yet); it
// makes one attempt, bounded by -timeout: the script polls it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

func main() {
	brokers := flag.String("brokers", "", "comma-separated host:port list; each one is asked on its own")
	expect := flag.Int("expect", 0, "number of brokers the metadata must list (default: as many as -brokers)")
	topic := flag.Bool("topic", true, "also create, write to and delete a replicated topic")
	timeout := flag.Duration("timeout", 10*time.Second, "bound of the whole check")
	flag.Parse()

	var addrs []string
	for _, b := range strings.Split(*brokers, ",") {
		if b = strings.TrimSpace(b); b != "" {
			addrs = append(addrs, b)
		}
	}
	if len(addrs) == 0 {
		fmt.Fprintln(os.Stderr, "kafkacheck: -brokers is required")
		os.Exit(2)
	}
	n := *expect
	if n == 0 {
		n = len(addrs)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	if err := check(ctx, addrs, n, *topic); err != nil {
		fmt.Fprintf(os.Stderr, "kafkacheck: %v\n", err)
		os.Exit(1)
	}
}

func check(ctx context.Context, addrs []string, n int, withTopic bool) error {
	for _, a := range addrs {
		if err := askOne(ctx, a, n); err != nil {
			return err
		}
	}
	if !withTopic {
		return nil
	}
	return topicRoundTrip(ctx, addrs, n)
}

// askOne sends a metadata request to the broker at addr alone.
func askOne(ctx context.Context, addr string, n int) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ClientID("rolodex-kafkacheck"),
		kgo.RetryTimeout(2*time.Second), kgo.DialTimeout(2*time.Second))
	if err != nil {
		return err
	}
	defer cl.Close()
	md, err := kadm.NewClient(cl).BrokerMetadata(ctx)
	if err != nil {
		return fmt.Errorf("%s: metadata: %w", addr, err)
	}
	if len(md.Brokers) != n {
		return fmt.Errorf("%s: metadata lists %d brokers (%v), want %d", addr, len(md.Brokers), md.Brokers.NodeIDs(), n)
	}
	if md.Controller < 0 {
		return fmt.Errorf("%s: metadata names no controller", addr)
	}
	return nil
}

// topicRoundTrip creates a topic replicated on min(3, n) brokers, waits
// until each partition's in-sync replicas are all its replicas, writes a
// record with acks=all and deletes the topic.
func topicRoundTrip(ctx context.Context, addrs []string, n int) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...), kgo.ClientID("rolodex-kafkacheck"),
		kgo.RequiredAcks(kgo.AllISRAcks()), kgo.DialTimeout(2*time.Second))
	if err != nil {
		return err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	rf := min(n, 3)
	name := fmt.Sprintf("rolodex-kafkacheck-%d", time.Now().UnixNano())
	resp, err := adm.CreateTopic(ctx, int32(n), int16(rf), nil, name)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		return fmt.Errorf("create topic %s (replication %d): %w", name, rf, err)
	}
	defer func() {
		dctx, dcancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer dcancel()
		adm.DeleteTopics(dctx, name)
	}()
	for {
		td, err := adm.ListTopics(ctx, name)
		if err == nil {
			err = fullISR(td, name, n, rf)
		}
		if err == nil {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("topic %s: %w", name, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: name, Value: []byte("ready")}).FirstErr(); err != nil {
		return fmt.Errorf("produce with acks=all to %s: %w", name, err)
	}
	return nil
}

func fullISR(td kadm.TopicDetails, name string, parts, rf int) error {
	t, ok := td[name]
	if !ok {
		return errors.New("not in metadata yet")
	}
	if t.Err != nil {
		return t.Err
	}
	if len(t.Partitions) != parts {
		return fmt.Errorf("%d partitions in metadata, want %d", len(t.Partitions), parts)
	}
	for _, p := range t.Partitions.Sorted() {
		if p.Err != nil {
			return fmt.Errorf("partition %d: %w", p.Partition, p.Err)
		}
		if p.Leader < 0 || len(p.Replicas) != rf || len(p.ISR) != rf {
			isr := append([]int32(nil), p.ISR...)
			sort.Slice(isr, func(i, j int) bool { return isr[i] < isr[j] })
			return fmt.Errorf("partition %d: leader %d, replicas %v, in sync %v", p.Partition, p.Leader, p.Replicas, isr)
		}
	}
	return nil
}
