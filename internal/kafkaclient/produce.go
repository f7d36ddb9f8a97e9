package kafkaclient

import (
	"context"
	"fmt"
	"sync"

	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sync/semaphore"
)

// Producer writes records for callers that each wait with a context of
// their own (an HTTP request's) through one shared client, so that no
// caller's context decides the fate of another caller's records.
//
// franz-go fails every buffered record of a partition when the first
// record of the partition's first batch has a cancelled context
// (kgo.Client.Produce): had each caller produced with its own context, one
// caller gone (an HTTP client that disconnected, a request past its
// deadline) would fail the records other callers wait for, on the same
// partition, and they would answer 503 for nothing. So records are
// produced with a context that never ends, and the caller's context bounds
// only its wait: for room in the client's buffer (a semaphore of the
// client's MaxBufferedRecords, so that Produce itself does not block with a
// context that cannot end, but for the moment between a promise giving the
// room back and franz-go counting the record out) and for the
// acknowledgements. A record whose
// caller is gone is written when Kafka takes it, as one past its caller's
// deadline always could be (an idempotent producer keeps a record that went
// out without an answer); consumers absorb the caller's retry as a copy.
type Producer struct {
	cl   *kgo.Client
	room *semaphore.Weighted
}

// NewProducer produces through cl. Nothing else should give cl records:
// they would take room in its buffer that the Producer counts as free, and
// a caller could then wait for room past its context.
func NewProducer(cl *kgo.Client) *Producer {
	return &Producer{cl: cl, room: semaphore.NewWeighted(maxBuffered(cl))}
}

// maxBuffered is cl's MaxBufferedRecords.
func maxBuffered(cl *kgo.Client) int64 {
	switch n := cl.OptValue(kgo.MaxBufferedRecords).(type) {
	case int64:
		if n > 0 {
			return n
		}
	case int:
		if n > 0 {
			return int64(n)
		}
	}
	return defaultMaxBuffered
}

// defaultMaxBuffered bounds the room for a client whose MaxBufferedRecords
// cannot be read (franz-go's own default is 50,000 at v1.22): lower is
// safe, the callers only wait for room sooner.
const defaultMaxBuffered = 10_000

// Produce writes recs and waits until Kafka acknowledged all of them, or
// one failed (its error, naming the topic), or ctx ended first (ctx's
// error: then the records produced may still be written, and those not yet
// produced, for want of room in the buffer, are not). On success each
// record holds its partition and offset.
func (p *Producer) Produce(ctx context.Context, recs ...*kgo.Record) error {
	if len(recs) == 0 {
		return nil
	}
	var (
		mu       sync.Mutex
		pending  = len(recs)
		firstErr error
		done     = make(chan struct{})
	)
	finish := func(n int, err error) {
		mu.Lock()
		defer mu.Unlock()
		if err != nil && firstErr == nil {
			firstErr = err
		}
		if pending -= n; pending == 0 {
			close(done)
		}
	}
	// Not context.WithoutCancel(ctx): nothing of the caller's context
	// (its values included) is kept while a record waits in the buffer.
	keep := context.Background()
	for i, r := range recs {
		if err := p.room.Acquire(ctx, 1); err != nil {
			// ctx ended while the buffer was full: the rest is not produced.
			finish(len(recs)-i, fmt.Errorf("waiting for room in the producer's buffer: %w", err))
			break
		}
		r.Context = nil // a record's own context counts as its caller's would
		p.cl.Produce(keep, r, func(r *kgo.Record, err error) {
			p.room.Release(1)
			if err != nil {
				err = fmt.Errorf("topic %s: %w", r.Topic, err)
			}
			finish(1, err)
		})
	}
	select {
	case <-done:
	case <-ctx.Done():
		select {
		case <-done: // finished as ctx ended
		default:
			return ctx.Err()
		}
	}
	mu.Lock()
	defer mu.Unlock()
	return firstErr
}
