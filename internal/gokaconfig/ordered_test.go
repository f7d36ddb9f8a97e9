package gokaconfig

import (
	"math/rand"
	"sync"
	"testing"

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
