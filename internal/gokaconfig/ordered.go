package gokaconfig

import (
	"errors"
	"fmt"
	"hash"
	"sync"

	"github.com/IBM/sarama"
	"github.com/lovoo/goka"
)

// Ordered builds goka producers whose promises complete in the order the
// emits were made, and lets a processor put barriers in that order.
//
// Why: goka commits an input message (MarkOffset(offset+1)) as soon as all
// emits of that message completed. Emits to different partitions complete
// in any order, so a later message could be committed while an earlier
// one's emits are still in flight; a crash then would skip the earlier
// message without replaying it. A partition's messages are processed one
// after another, so completing every emit in issue order makes each commit
// imply that everything before it was written. A message that emits
// nothing would still be committed at once, past earlier messages' emits:
// it must wait on a Barrier (goka.Context.DeferCommit) instead.
//
// Failure is sticky: once an emit failed, every emit and barrier after it
// in issue order finishes with an error too, even if its own write
// succeeded. goka fails the partition on the failed emit, but without this
// a later message whose emits succeeded would still be committed, and its
// offset would cover the message whose write was lost.
type Ordered struct {
	mu sync.Mutex
	p  *OrderedProducer
	// after: topics whose emits are sent only once every earlier emit
	// completed (WriteAfter).
	after map[string]bool
}

// WriteAfter makes emits to topic wait, before they are sent to Kafka,
// until every emit made before them completed (and not be sent at all if
// one failed): a record that must never land before the group's earlier
// records (the fan-out group's handover and moves, which make another
// partition write records that must follow them). Later emits still
// complete after it. Call it before the processor is built.
func (o *Ordered) WriteAfter(topic string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.after == nil {
		o.after = map[string]bool{}
	}
	o.after[topic] = true
}

// Builder wraps pb; goka calls it once per processor.
func (o *Ordered) Builder(pb goka.ProducerBuilder) goka.ProducerBuilder {
	return func(brokers []string, clientID string, hasher func() hash.Hash32) (goka.Producer, error) {
		p, err := pb(brokers, clientID, hasher)
		if err != nil {
			return nil, err
		}
		op := NewOrderedProducer(p)
		o.mu.Lock()
		op.after = o.after
		o.p = op
		o.mu.Unlock()
		return op, nil
	}
}

// Barrier calls fn once every emit made before it has completed, with an
// error if any of them (or anything before them) failed. Before the
// producer was built, nothing was emitted: fn(nil) runs at once.
func (o *Ordered) Barrier(fn func(error)) {
	o.mu.Lock()
	p := o.p
	o.mu.Unlock()
	if p == nil {
		fn(nil)
		return
	}
	p.Barrier(fn)
}

// Idle reports whether every emit so far has completed (true before the
// producer was built).
func (o *Ordered) Idle() bool {
	o.mu.Lock()
	p := o.p
	o.mu.Unlock()
	return p == nil || p.Idle()
}

// Failed reports whether any emit completed with an error.
func (o *Ordered) Failed() bool {
	o.mu.Lock()
	p := o.p
	o.mu.Unlock()
	return p != nil && p.Failed()
}

// OrderedProducerBuilder wraps pb in an OrderedProducer (no barriers).
func OrderedProducerBuilder(pb goka.ProducerBuilder) goka.ProducerBuilder {
	return new(Ordered).Builder(pb)
}

// OrderedProducer is a goka.Producer whose promises complete in emit order.
// Completions are queued in a FIFO and finished in order by whichever
// goroutine completes the head: no goroutine per emit, and the inner
// producer's callback never blocks on an emit waiting for sarama's input.
type OrderedProducer struct {
	inner goka.Producer
	// emitMu keeps the inner producer's order equal to the queue's; it
	// is held while sarama's input may block, so completions never take
	// it.
	emitMu   sync.Mutex
	mu       sync.Mutex // guards the fields below
	queue    []*pending
	head     int
	draining bool
	failed   bool
	// broken is the first error finished in queue order; every entry
	// finished after it fails with it (sticky failure).
	broken error
	// after: topics whose emits wait for every earlier entry (WriteAfter).
	after map[string]bool
	// closed: Close began; a WriteAfter emit not yet sent fails instead
	// (sarama panics on a send to a closing producer). sends counts those
	// being sent, which Close waits for.
	closed bool
	sends  sync.WaitGroup
}

type pending struct {
	finish func(*sarama.ProducerMessage, error)
	msg    *sarama.ProducerMessage
	err    error
	done   bool
	// start sends a WriteAfter emit once it is at the head of the queue
	// (nil once started, and for every other entry).
	start func()
}

// NewOrderedProducer wraps p so that its promises complete in emit order.
func NewOrderedProducer(p goka.Producer) *OrderedProducer {
	return &OrderedProducer{inner: p}
}

func (o *OrderedProducer) Emit(topic, key string, value []byte) *goka.Promise {
	return o.EmitWithHeaders(topic, key, value, nil)
}

func (o *OrderedProducer) EmitWithHeaders(topic, key string, value []byte, headers goka.Headers) *goka.Promise {
	out, finish := goka.NewPromiseWithFinisher()
	p := &pending{finish: func(m *sarama.ProducerMessage, err error) { finish(m, err) }}
	if o.after[topic] {
		// Sent when it reaches the head of the queue (complete), from a
		// goroutine of its own: sarama's input may block, and the head
		// is often reached in the inner producer's callback.
		p.start = func() {
			go func() {
				defer o.sends.Done()
				inner := o.inner.EmitWithHeaders(topic, key, value, headers)
				inner.ThenWithMessage(func(msg *sarama.ProducerMessage, err error) { o.complete(p, msg, err) })
			}()
		}
		o.push(p)
		o.drain()
		return out
	}
	o.emitMu.Lock()
	o.push(p)
	inner := o.inner.EmitWithHeaders(topic, key, value, headers)
	o.emitMu.Unlock()
	inner.ThenWithMessage(func(msg *sarama.ProducerMessage, err error) { o.complete(p, msg, err) })
	return out
}

// Barrier calls fn once every emit made before it has completed, in order
// with them; the error is non-nil if any emit before it failed.
func (o *OrderedProducer) Barrier(fn func(error)) {
	p := &pending{finish: func(_ *sarama.ProducerMessage, err error) { fn(err) }}
	o.emitMu.Lock()
	o.push(p)
	o.emitMu.Unlock()
	o.complete(p, nil, nil)
}

func (o *OrderedProducer) push(p *pending) {
	o.mu.Lock()
	o.queue = append(o.queue, p)
	o.mu.Unlock()
}

// complete records p's result and, unless another goroutine is at it,
// finishes every completed entry at the head of the queue, in order,
// outside the lock.
func (o *OrderedProducer) complete(p *pending, msg *sarama.ProducerMessage, err error) {
	o.mu.Lock()
	p.msg, p.err, p.done = msg, err, true
	if err != nil {
		o.failed = true
	}
	o.drainLocked()
}

// drain finishes what is ready at the head of the queue (complete).
func (o *OrderedProducer) drain() {
	o.mu.Lock()
	o.drainLocked()
}

// drainLocked is drain with o.mu held; it unlocks it.
func (o *OrderedProducer) drainLocked() {
	if o.draining {
		o.mu.Unlock()
		return
	}
	o.draining = true
	var ready []*pending
	var start func()
	for {
		ready = ready[:0]
		for o.head < len(o.queue) {
			if h := o.queue[o.head]; !h.done && h.start != nil {
				// A WriteAfter emit at the head: everything before it
				// finished. Not sent after a failure, nor once Close began.
				switch {
				case o.broken != nil:
					h.done, h.start = true, nil
				case o.closed:
					h.done, h.start, h.err = true, nil, errClosed
				default:
					start, h.start = h.start, nil
					o.sends.Add(1)
				}
			}
			if !o.queue[o.head].done {
				break
			}
			r := o.queue[o.head]
			switch {
			case o.broken != nil && r.err == nil:
				r.err = fmt.Errorf("an earlier emit failed: %w", o.broken)
			case o.broken == nil && r.err != nil:
				o.broken = r.err
			}
			ready = append(ready, r)
			o.queue[o.head] = nil
			o.head++
		}
		if o.head == len(o.queue) {
			o.queue, o.head = o.queue[:0], 0
		} else if o.head > 1024 && o.head*2 > len(o.queue) {
			o.queue, o.head = append(o.queue[:0], o.queue[o.head:]...), 0
		}
		if len(ready) == 0 {
			o.draining = false
			o.mu.Unlock()
			if start != nil {
				start()
			}
			return
		}
		o.mu.Unlock()
		for _, r := range ready {
			r.finish(r.msg, r.err)
		}
		if start != nil {
			start()
			start = nil
		}
		o.mu.Lock()
	}
}

// errClosed fails a WriteAfter emit still waiting when Close began.
var errClosed = errors.New("gokaconfig: the producer closed before the emit could be sent")

// Close closes the inner producer once the WriteAfter emits being sent
// are handed to it; those still waiting fail.
func (o *OrderedProducer) Close() error {
	o.mu.Lock()
	o.closed = true
	o.mu.Unlock()
	o.drain() // fail what waits at the head
	o.sends.Wait()
	return o.inner.Close()
}

// Idle reports whether every emit so far has completed and been finished.
func (o *OrderedProducer) Idle() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.head == len(o.queue) && !o.draining
}

// Failed reports whether any emit completed with an error.
func (o *OrderedProducer) Failed() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.failed
}
