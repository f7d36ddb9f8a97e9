package kafkaclient

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestCallerGoneDoesNotFailOthers: one caller's context ending (an HTTP
// client that went away, a request past its deadline) must not fail the
// records other callers are waiting for. franz-go fails every buffered
// record of a partition when the first record of its first batch has a
// cancelled context (kgo.Client.Produce); the producer must not give a
// record a context that can end.
//
// The broker holds every produce request until released, so that the
// next records wait in the client's buffer: a caller's, whose context is
// then cancelled, and behind it, on the same partition, another caller's.
func TestCallerGoneDoesNotFailOthers(t *testing.T) {
	const topic = "t"
	c, unblock := holdingCluster(t, topic)
	cl, err := NewClient(Config{Brokers: c.ListenAddrs()})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	pub := NewProducer(cl)
	bg, cancelAll := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancelAll()

	rec := func(name string) *kgo.Record {
		return &kgo.Record{Topic: topic, Key: []byte("k"), Value: []byte(name)}
	}
	results := map[string]chan error{}
	publish := func(ctx context.Context, name string, n int) {
		recs := make([]*kgo.Record, n)
		for i := range recs {
			recs[i] = rec(fmt.Sprintf("%s-%d", name, i))
		}
		ch := make(chan error, 1)
		results[name] = ch
		go func() { ch <- pub.Produce(ctx, recs...) }()
	}
	// A first caller's record goes out and is held by the broker; the
	// client sends no other produce request meanwhile (it has one in
	// flight until the first answer), so what follows waits in its buffer.
	publish(bg, "early", 1)
	time.Sleep(50 * time.Millisecond)
	// The caller that goes away, and the one behind it: both wait in the
	// client's buffer, the first one's record first.
	gone, leave := context.WithCancel(bg)
	publish(gone, "gone", 3)
	time.Sleep(10 * time.Millisecond)
	publish(bg, "stays", 3)
	time.Sleep(50 * time.Millisecond)
	leave()
	if err := <-results["gone"]; !errors.Is(err, context.Canceled) {
		t.Fatalf("the caller that went away got %v, want context.Canceled", err)
	}
	unblock()
	for _, name := range []string{"early", "stays"} {
		if err := <-results[name]; err != nil {
			t.Errorf("%s: %v (another caller's context ended; its records must not fail this one's)", name, err)
		}
	}

	// Every record is on the topic: the one whose caller went away was
	// not failed either (its caller was told nothing is guaranteed
	// written, and a retry is deduplicated by event id).
	consumer, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer consumer.Close()
	seen := map[string]bool{}
	for len(seen) < 1+3+3 {
		fs := consumer.PollFetches(bg)
		if err := bg.Err(); err != nil {
			t.Fatalf("read %d of %d records: %v", len(seen), 7, err)
		}
		fs.EachRecord(func(r *kgo.Record) { seen[string(r.Value)] = true })
	}
	for _, want := range []string{"gone-0", "gone-2", "stays-0", "stays-2", "early-0"} {
		if !seen[want] {
			t.Errorf("record %s not on the topic", want)
		}
	}
}

// holdingCluster is a one-broker kfake cluster with topic (one partition)
// that holds every produce request until unblock is called (at the end of
// the test at the latest).
func holdingCluster(t *testing.T, topic string) (c *kfake.Cluster, unblock func()) {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, topic))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	release := make(chan struct{})
	var once sync.Once
	unblock = func() { once.Do(func() { close(release) }) }
	t.Cleanup(unblock) // before c.Close: cleanups run last-in first-out
	c.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		c.SleepControl(func() { <-release })
		return nil, nil, false
	})
	return c, unblock
}

// TestFullBufferWaitEndsWithCaller: records are produced with a context
// that never ends, so the wait for room in a full producer buffer must
// still end with the caller's context (and produce nothing of the rest),
// not when Kafka takes records again.
func TestFullBufferWaitEndsWithCaller(t *testing.T) {
	const topic = "t"
	c, unblock := holdingCluster(t, topic)
	cl, err := NewClient(Config{Brokers: c.ListenAddrs()}, kgo.MaxBufferedRecords(3))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	pub := NewProducer(cl)
	if got := maxBuffered(cl); got != 3 {
		t.Fatalf("the producer's room is %d records, want the client's MaxBufferedRecords, 3", got)
	}
	bg, cancelAll := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancelAll()
	first := make(chan error, 1)
	go func() {
		first <- pub.Produce(bg, &kgo.Record{Topic: topic, Value: []byte("a")}, &kgo.Record{Topic: topic, Value: []byte("b")},
			&kgo.Record{Topic: topic, Value: []byte("c")})
	}()
	time.Sleep(100 * time.Millisecond) // the buffer is full now, Kafka holds the request

	ctx, cancel := context.WithTimeout(bg, 200*time.Millisecond)
	defer cancel()
	second := make(chan error, 1)
	go func() {
		second <- pub.Produce(ctx, &kgo.Record{Topic: topic, Value: []byte("d")}, &kgo.Record{Topic: topic, Value: []byte("e")})
	}()
	select {
	case err = <-second:
	case <-time.After(3 * time.Second):
		t.Fatal("Produce still waits for room in the buffer 3 s after its 200ms context ended")
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want context.DeadlineExceeded", err)
	}
	unblock()
	if err := <-first; err != nil {
		t.Fatalf("the records in the buffer: %v", err)
	}
	// Room is given back: a new call goes through.
	if err := pub.Produce(bg, &kgo.Record{Topic: topic, Value: []byte("f")}); err != nil {
		t.Fatal(err)
	}
}
