// Package schedule is the timer that goka lacks (docs/tags.md,
// "Scheduler"): an in-memory set of per-key wake instants, a cache of the
// wakes a group keeps in its table. A group pops the due ones and writes a
// tick for each to a topic it reads, so the work happens inside its
// callback with goka's commit and replay guarantees; after a start or a
// rebalance it visits its partitions to register their wakes again. The
// tag stage uses it for rule tags that follow time; routing's SLA
// deadlines are meant to reuse it.
package schedule

import (
	"container/heap"
	"sync"
)

// Scheduler holds, in memory, the next wake instant of every key an
// instance handled. It is a cache of the table's wakes: an instance
// rebuilds it by visiting its partitions when it starts and after each
// rebalance, so that nothing it loses with a crash stays lost. A key has
// at most one wake; setting another replaces it. It is safe for
// concurrent use (goka runs each partition in its own goroutine).
type Scheduler struct {
	mu   sync.Mutex
	due  map[string]int64 // key → its wake
	heap wakeHeap
}

// NewScheduler returns an empty scheduler.
func New() *Scheduler { return &Scheduler{due: map[string]int64{}} }

// Set makes key wake at (Unix ms); 0 removes its wake.
func (s *Scheduler) Set(key string, at int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if at == 0 {
		delete(s.due, key)
		return
	}
	if cur, ok := s.due[key]; ok && cur == at {
		return
	}
	s.due[key] = at
	heap.Push(&s.heap, wake{at: at, key: key})
	// Stale entries (replaced wakes) are dropped as they come up; keep
	// the heap from growing past twice the live ones.
	if len(s.heap) > 1024 && len(s.heap) > 2*len(s.due) {
		s.compact()
	}
}

// Pop removes and returns the wakes due at now (at <= now), earliest
// first, at most limit of them.
func (s *Scheduler) Pop(now int64, limit int) []Wake {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Wake
	for len(s.heap) > 0 && s.heap[0].at <= now && len(out) < limit {
		w := heap.Pop(&s.heap).(wake)
		if cur, ok := s.due[w.key]; !ok || cur != w.at {
			continue // replaced or removed
		}
		delete(s.due, w.key)
		out = append(out, Wake{Key: w.key, At: w.at})
	}
	return out
}

// Len returns how many keys have a wake.
func (s *Scheduler) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.due)
}

func (s *Scheduler) compact() {
	h := make(wakeHeap, 0, len(s.due))
	for k, at := range s.due {
		h = append(h, wake{at: at, key: k})
	}
	heap.Init(&h)
	s.heap = h
}

// Wake is a key due for evaluation at At (Unix ms).
type Wake struct {
	Key string
	At  int64
}

type wake struct {
	at  int64
	key string
}

type wakeHeap []wake

func (h wakeHeap) Len() int { return len(h) }
func (h wakeHeap) Less(i, j int) bool {
	if h[i].at != h[j].at {
		return h[i].at < h[j].at
	}
	return h[i].key < h[j].key
}
func (h wakeHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *wakeHeap) Push(x any)   { *h = append(*h, x.(wake)) }
func (h *wakeHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
