package gokaconfig

import (
	"fmt"
	"hash"
	"math/rand"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/lovoo/goka"
)

// randInner holds every emit that reaches it until a completer finishes it
// (in a random order, from several goroutines, some with an error); a few
// finish at once, inside EmitWithHeaders. check runs on arrival.
type randInner struct {
	mu      sync.Mutex
	rng     *rand.Rand
	pending []randEmit
	check   func(i int, topic string)
	fail    func(i int) bool
}

type randEmit struct {
	i int
	f goka.PromiseFinisher
}

func (r *randInner) Emit(topic, key string, value []byte) *goka.Promise {
	return r.EmitWithHeaders(topic, key, value, nil)
}

func (r *randInner) EmitWithHeaders(topic, key string, _ []byte, _ goka.Headers) *goka.Promise {
	i, _ := strconv.Atoi(key)
	r.check(i, topic)
	p, f := goka.NewPromiseWithFinisher()
	r.mu.Lock()
	now := r.rng.Intn(20) == 0
	if !now {
		r.pending = append(r.pending, randEmit{i, f})
	}
	r.mu.Unlock()
	if now {
		f(&sarama.ProducerMessage{}, r.err(i))
	}
	return p
}

func (r *randInner) err(i int) error {
	if r.fail(i) {
		return fmt.Errorf("write %d lost", i)
	}
	return nil
}

// take removes a random pending emit.
func (r *randInner) take() (randEmit, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.pending) == 0 {
		return randEmit{}, false
	}
	j := r.rng.Intn(len(r.pending))
	e := r.pending[j]
	r.pending[j] = r.pending[len(r.pending)-1]
	r.pending = r.pending[:len(r.pending)-1]
	return e, true
}

func (r *randInner) Close() error { return nil }

// Many emits, a random mix of normal ones, WriteAfter ones and barriers,
// completed by the inner producer in a random order from several
// goroutines while the emits go on, some failing: every promise completes,
// in emit order; a WriteAfter emit reaches the inner producer only once
// every earlier entry finished, and never after a failure; failure is
// sticky from the first failed entry in emit order.
func TestOrderedWriteAfterRandomized(t *testing.T) {
	seeds := int64(200)
	if testing.Short() {
		seeds = 20
	}
	for seed := int64(0); seed < seeds; seed++ {
		rng := rand.New(rand.NewSource(seed))
		n := 50 + rng.Intn(400)
		failAt := -1 // the inner write that fails (about half the seeds)
		if rng.Intn(2) == 0 {
			failAt = rng.Intn(n)
		}
		const (
			normal = iota
			after
			barrier
		)
		kind := make([]int, n)
		pAfter := rng.Float64() * 0.6 // from a few to runs of WriteAfter emits
		for i := range kind {
			switch x := rng.Float64(); {
			case x < pAfter:
				kind[i] = after
			case x < pAfter+0.1:
				kind[i] = barrier
			}
		}
		var (
			mu       sync.Mutex
			finished = make([]bool, n)
			results  = make([]error, n)
			order    []int
			sent     = make([]bool, n)
			problems []string
		)
		problem := func(format string, args ...any) {
			if len(problems) < 5 {
				problems = append(problems, fmt.Sprintf(format, args...))
			}
		}
		inner := &randInner{rng: rand.New(rand.NewSource(seed + 1000))}
		inner.fail = func(i int) bool { return i == failAt }
		inner.check = func(i int, topic string) {
			mu.Lock()
			defer mu.Unlock()
			if sent[i] {
				problem("emit %d sent twice", i)
			}
			sent[i] = true
			if topic != "loop" {
				return
			}
			for j := 0; j < i; j++ {
				if !finished[j] {
					problem("WriteAfter emit %d sent before entry %d finished", i, j)
					return
				}
				if results[j] != nil {
					problem("WriteAfter emit %d sent after entry %d failed", i, j)
					return
				}
			}
		}
		o := new(Ordered)
		o.WriteAfter("loop")
		gp, err := o.Builder(func([]string, string, func() hash.Hash32) (goka.Producer, error) { return inner, nil })(nil, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		var all sync.WaitGroup
		all.Add(n)
		record := func(i int) func(error) {
			return func(err error) {
				mu.Lock()
				if finished[i] {
					problem("entry %d finished twice", i)
				} else {
					finished[i], results[i] = true, err
					order = append(order, i)
					all.Done()
				}
				mu.Unlock()
			}
		}
		stop := make(chan struct{})
		var completers sync.WaitGroup
		for c := 0; c < 3; c++ {
			completers.Add(1)
			go func() {
				defer completers.Done()
				for {
					e, ok := inner.take()
					if !ok {
						select {
						case <-stop:
							return
						default:
							runtime.Gosched()
							continue
						}
					}
					e.f(&sarama.ProducerMessage{}, inner.err(e.i))
				}
			}()
		}
		for i := 0; i < n; i++ {
			switch kind[i] {
			case barrier:
				o.Barrier(record(i))
			case after:
				gp.Emit("loop", strconv.Itoa(i), nil).Then(record(i))
			default:
				gp.Emit("out", strconv.Itoa(i), nil).Then(record(i))
			}
			if rng.Intn(4) == 0 {
				runtime.Gosched()
			}
		}
		done := make(chan struct{})
		go func() { all.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			mu.Lock()
			var missing []int
			for i, f := range finished {
				if !f {
					missing = append(missing, i)
				}
			}
			mu.Unlock()
			close(stop)
			t.Fatalf("seed %d: entries %v never finished (idle %v)", seed, missing, o.Idle())
		}
		close(stop)
		completers.Wait()
		mu.Lock()
		if len(problems) > 0 {
			t.Fatalf("seed %d: %v", seed, problems)
		}
		for k, i := range order {
			if k != i {
				t.Fatalf("seed %d: finish %d was entry %d; want emit order", seed, k, i)
			}
		}
		// The first entry that failed in emit order: the failed write, or
		// nothing when it was a WriteAfter emit never sent.
		first := -1
		if failAt >= 0 && sent[failAt] {
			first = failAt
		}
		for i, err := range results {
			if (first < 0 || i < first) && err != nil {
				t.Fatalf("seed %d: entry %d failed (%v), before the first failure %d", seed, i, err, first)
			}
			if first >= 0 && i >= first && err == nil {
				t.Fatalf("seed %d: entry %d succeeded at or after the failure at %d", seed, i, first)
			}
			if first >= 0 && i > first && kind[i] == after && sent[i] {
				t.Fatalf("seed %d: WriteAfter emit %d sent after the failure at %d", seed, i, first)
			}
			if kind[i] != barrier && kind[i] != after && !sent[i] {
				t.Fatalf("seed %d: emit %d never reached the inner producer", seed, i)
			}
		}
		mu.Unlock()
		// The drainer may still hold draining for a moment after the
		// last callback.
		for i := 0; i < 1000 && !o.Idle(); i++ {
			time.Sleep(time.Millisecond)
		}
		if !o.Idle() {
			t.Fatalf("seed %d: not idle after every entry finished", seed)
		}
		if o.Failed() != (first >= 0) {
			t.Fatalf("seed %d: Failed() = %v, first failure %d", seed, o.Failed(), first)
		}
	}
}
