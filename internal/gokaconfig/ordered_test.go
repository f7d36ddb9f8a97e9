package gokaconfig

import (
	"errors"
	"fmt"
	"hash"
	"math/rand"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/lovoo/goka"
)

// shuffled completes its promises in a random order once all were emitted.
type shuffled struct {
	mu       sync.Mutex
	finishes []goka.PromiseFinisher
}

func (s *shuffled) Emit(topic, key string, value []byte) *goka.Promise {
	return s.EmitWithHeaders(topic, key, value, nil)
}

func (s *shuffled) EmitWithHeaders(string, string, []byte, goka.Headers) *goka.Promise {
	p, f := goka.NewPromiseWithFinisher()
	s.mu.Lock()
	s.finishes = append(s.finishes, f)
	s.mu.Unlock()
	return p
}

func (s *shuffled) Close() error { return nil }

func TestOrderedProducerCompletesInEmitOrder(t *testing.T) {
	for seed := int64(0); seed < 20; seed++ {
		inner := &shuffled{}
		p := NewOrderedProducer(inner)
		const n = 200
		var (
			mu    sync.Mutex
			order []int
			wg    sync.WaitGroup
		)
		wg.Add(n)
		for i := 0; i < n; i++ {
			i := i
			p.Emit("t", "k", nil).Then(func(error) {
				mu.Lock()
				order = append(order, i)
				mu.Unlock()
				wg.Done()
			})
		}
		rng := rand.New(rand.NewSource(seed))
		rng.Shuffle(len(inner.finishes), func(a, b int) { inner.finishes[a], inner.finishes[b] = inner.finishes[b], inner.finishes[a] })
		for _, f := range inner.finishes {
			f(&sarama.ProducerMessage{}, nil)
		}
		wg.Wait()
		for i, got := range order {
			if got != i {
				t.Fatalf("seed %d: completion %d was emit %d; want emit order", seed, i, got)
			}
		}
	}
}

// A barrier completes after every emit before it and before every emit
// after it, whatever order the inner producer completes in; a barrier with
// nothing in flight completes at once.
func TestOrderedProducerBarriers(t *testing.T) {
	for seed := int64(0); seed < 20; seed++ {
		inner := &shuffled{}
		o := new(Ordered)
		var fired bool
		o.Barrier(func(error) { fired = true })
		if !fired {
			t.Fatal("a barrier before the producer was built did not run at once")
		}
		gp, err := o.Builder(func([]string, string, func() hash.Hash32) (goka.Producer, error) { return inner, nil })(nil, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		fired = false
		o.Barrier(func(error) { fired = true })
		if !fired {
			t.Fatal("a barrier with nothing in flight did not run at once")
		}
		rng := rand.New(rand.NewSource(seed))
		const n = 300
		var (
			mu    sync.Mutex
			order []int
			wg    sync.WaitGroup
		)
		record := func(i int) {
			mu.Lock()
			order = append(order, i)
			mu.Unlock()
			wg.Done()
		}
		wg.Add(n)
		for i := 0; i < n; i++ {
			i := i
			if rng.Intn(3) == 0 {
				o.Barrier(func(error) { record(i) })
			} else {
				gp.Emit("t", "k", nil).Then(func(error) { record(i) })
			}
		}
		rng.Shuffle(len(inner.finishes), func(a, b int) { inner.finishes[a], inner.finishes[b] = inner.finishes[b], inner.finishes[a] })
		var finishers sync.WaitGroup
		for _, f := range inner.finishes {
			f := f
			finishers.Add(1)
			go func() { defer finishers.Done(); f(&sarama.ProducerMessage{}, nil) }()
		}
		finishers.Wait()
		wg.Wait()
		for i, got := range order {
			if got != i {
				t.Fatalf("seed %d: completion %d was call %d; want call order", seed, i, got)
			}
		}
	}
}

// Once an emit failed, every emit and barrier after it in issue order
// fails too, even if its own write succeeded; those before it do not.
func TestOrderedProducerFailureIsSticky(t *testing.T) {
	for seed := int64(0); seed < 20; seed++ {
		rng := rand.New(rand.NewSource(seed))
		inner := &shuffled{}
		o := new(Ordered)
		gp, err := o.Builder(func([]string, string, func() hash.Hash32) (goka.Producer, error) { return inner, nil })(nil, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		const n = 200
		bad := rng.Intn(n) // the emit whose write fails
		var (
			mu      sync.Mutex
			results = make([]error, n)
			wg      sync.WaitGroup
			emitOf  []int // inner emit index -> call index
		)
		wg.Add(n)
		for i := 0; i < n; i++ {
			i := i
			record := func(err error) {
				mu.Lock()
				results[i] = err
				mu.Unlock()
				wg.Done()
			}
			if i != bad && rng.Intn(3) == 0 {
				o.Barrier(record)
				continue
			}
			emitOf = append(emitOf, i)
			gp.Emit("t", "k", nil).Then(record)
		}
		order := rng.Perm(len(inner.finishes))
		for _, j := range order {
			var err error
			if emitOf[j] == bad {
				err = errors.New("write lost")
			}
			inner.finishes[j](&sarama.ProducerMessage{}, err)
		}
		wg.Wait()
		for i, err := range results {
			if i < bad && err != nil {
				t.Fatalf("seed %d: call %d before the failed emit %d failed: %v", seed, i, bad, err)
			}
			if i >= bad && err == nil {
				t.Fatalf("seed %d: call %d at or after the failed emit %d succeeded", seed, i, bad)
			}
		}
		if !o.Failed() {
			t.Fatalf("seed %d: Failed() = false after a failed emit", seed)
		}
	}
}

// The shared configuration is valid for sarama and keeps each partition's
// writes in order (the identity protocol relies on it).
func TestSaramaConfigIsIdempotent(t *testing.T) {
	c := Sarama("test")
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if !c.Producer.Idempotent || c.Net.MaxOpenRequests != 1 || c.Producer.RequiredAcks != sarama.WaitForAll {
		t.Fatalf("producer not idempotent and in order: idempotent=%v max open requests=%d acks=%d",
			c.Producer.Idempotent, c.Net.MaxOpenRequests, c.Producer.RequiredAcks)
	}
}

// recording completes nothing by itself: it records each emit's topic and
// key in the order they reach it, and the test finishes them.
type recording struct {
	mu       sync.Mutex
	sent     []string
	finishes []goka.PromiseFinisher
}

func (r *recording) Emit(topic, key string, value []byte) *goka.Promise {
	return r.EmitWithHeaders(topic, key, value, nil)
}

func (r *recording) EmitWithHeaders(topic, key string, _ []byte, _ goka.Headers) *goka.Promise {
	p, f := goka.NewPromiseWithFinisher()
	r.mu.Lock()
	r.sent = append(r.sent, topic+"/"+key)
	r.finishes = append(r.finishes, f)
	r.mu.Unlock()
	return p
}

func (r *recording) Close() error { return nil }

func (r *recording) state() ([]string, []goka.PromiseFinisher) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.sent...), append([]goka.PromiseFinisher(nil), r.finishes...)
}

// A WriteAfter topic's emit reaches Kafka only once every emit before it
// completed, and completes before every emit after it; after a failure
// before it, it is never sent and fails.
func TestOrderedWriteAfter(t *testing.T) {
	build := func() (*Ordered, *recording, goka.Producer) {
		inner := &recording{}
		o := new(Ordered)
		o.WriteAfter("loop")
		gp, err := o.Builder(func([]string, string, func() hash.Hash32) (goka.Producer, error) { return inner, nil })(nil, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		return o, inner, gp
	}
	waitSent := func(inner *recording, n int) []string {
		t.Helper()
		for i := 0; i < 2000; i++ {
			if sent, _ := inner.state(); len(sent) >= n {
				return sent
			}
			time.Sleep(time.Millisecond)
		}
		sent, _ := inner.state()
		t.Fatalf("sent %v, want %d emits", sent, n)
		return nil
	}

	o, inner, gp := build()
	var order []string
	var mu sync.Mutex
	note := func(name string) func(error) {
		return func(err error) {
			mu.Lock()
			order = append(order, fmt.Sprintf("%s:%v", name, err == nil))
			mu.Unlock()
		}
	}
	gp.Emit("out", "a", nil).Then(note("a"))
	gp.Emit("loop", "f", nil).Then(note("f"))
	gp.Emit("out", "b", nil).Then(note("b"))
	sent := waitSent(inner, 2)
	time.Sleep(20 * time.Millisecond)
	if sent, _ = inner.state(); strings.Join(sent, " ") != "out/a out/b" {
		t.Fatalf("sent %v before out/a completed; want the loop record held back", sent)
	}
	_, fs := inner.state()
	fs[1](&sarama.ProducerMessage{}, nil) // b completes first: nothing finishes yet
	fs[0](&sarama.ProducerMessage{}, nil) // a: now the loop record goes out
	sent = waitSent(inner, 3)
	if sent[2] != "loop/f" {
		t.Fatalf("sent %v", sent)
	}
	if o.Idle() {
		t.Fatal("idle with the loop record in flight")
	}
	_, fs = inner.state()
	fs[2](&sarama.ProducerMessage{}, nil)
	for i := 0; i < 1000 && !o.Idle(); i++ {
		time.Sleep(time.Millisecond)
	}
	mu.Lock()
	if got := strings.Join(order, " "); got != "a:true f:true b:true" {
		t.Fatalf("completions %s", got)
	}
	mu.Unlock()

	// A failure before it: never sent, and it fails.
	_, inner, gp = build()
	errs := make(chan error, 2)
	gp.Emit("out", "a", nil)
	gp.Emit("loop", "f", nil).Then(func(err error) { errs <- err })
	waitSent(inner, 1)
	_, fs = inner.state()
	fs[0](&sarama.ProducerMessage{}, errors.New("broker down"))
	select {
	case err := <-errs:
		if err == nil {
			t.Fatal("the loop record after a failed emit succeeded")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the loop record after a failed emit never completed")
	}
	time.Sleep(20 * time.Millisecond)
	if sent, _ := inner.state(); len(sent) != 1 {
		t.Fatalf("sent %v after a failure; want the loop record never sent", sent)
	}

	// Nothing before it: sent at once.
	_, inner, gp = build()
	gp.Emit("loop", "f", nil)
	waitSent(inner, 1)

	// Close while one waits: it fails, is never sent, and Close returns.
	_, inner, gp = build()
	gp.Emit("out", "a", nil)
	gp.Emit("loop", "f", nil).Then(func(err error) { errs <- err })
	waitSent(inner, 1)
	closed := make(chan error, 1)
	go func() { closed <- gp.Close() }()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return with a loop record waiting")
	}
	_, fs = inner.state()
	fs[0](&sarama.ProducerMessage{}, nil)
	select {
	case err := <-errs:
		if err == nil {
			t.Fatal("the loop record waiting at Close succeeded")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the loop record waiting at Close never completed")
	}
	if sent, _ := inner.state(); len(sent) != 1 {
		t.Fatalf("sent %v after Close", sent)
	}
}
