package intake

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sync/semaphore"

	"github.com/rolodex/rolodex/schemas"
)

// ErrUnavailable wraps every failure to get a write acknowledged by Kafka.
var ErrUnavailable = errors.New("kafka did not acknowledge the write")

// Publisher writes accepted events and dead letters to Kafka and returns only
// once Kafka acknowledged every record (acks=all) or one failed.
type Publisher struct {
	cl *kgo.Client
	// room holds a unit per record this publisher may have in the
	// client's buffer: the client's MaxBufferedRecords, so that Produce
	// never blocks (Records waits for room with its caller's context).
	room *semaphore.Weighted
}

// NewPublisher publishes through cl, which should come from
// kafkaclient.NewClient (acks=all, the shared partitioner). cl should not
// be given records by anyone else (they would take the publisher's room in
// its buffer, and Records could then wait for room past its context).
func NewPublisher(cl *kgo.Client) *Publisher {
	return &Publisher{cl: cl, room: semaphore.NewWeighted(maxBuffered(cl))}
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

// defaultMaxBuffered is franz-go's default MaxBufferedRecords, for a client
// that does not say.
const defaultMaxBuffered = 10_000

// EventRecord encodes ev as its record on TopicEvents.
func EventRecord(ev *schemas.Event) (*kgo.Record, error) {
	r := new(kgo.Record)
	if err := setEventRecord(r, ev); err != nil {
		return nil, err
	}
	return r, nil
}

// setEventRecord makes r the record of ev on TopicEvents.
func setEventRecord(r *kgo.Record, ev *schemas.Event) error {
	val, err := schemas.EncodeEvent(ev)
	if err != nil {
		return fmt.Errorf("ingest: encode event %q: %w", ev.ID, err)
	}
	*r = kgo.Record{Topic: schemas.TopicEvents, Key: ev.AppendKey(make([]byte, 0, schemas.NodeIDLen)), Value: val}
	return nil
}

// DeadLetterRecord encodes dl as its record on TopicDeadLetter.
func DeadLetterRecord(dl *schemas.DeadLetter) (*kgo.Record, error) {
	val, err := schemas.EncodeDeadLetter(dl)
	if err != nil {
		return nil, fmt.Errorf("ingest: encode dead letter: %w", err)
	}
	return &kgo.Record{Topic: schemas.TopicDeadLetter, Key: []byte(dl.Partner), Value: val}, nil
}

// Events publishes events and waits for every acknowledgement.
func (p *Publisher) Events(ctx context.Context, evs []*schemas.Event) error {
	recs := make([]*kgo.Record, len(evs))
	slab := make([]kgo.Record, len(evs)) // one allocation for the records
	for i, ev := range evs {
		if err := setEventRecord(&slab[i], ev); err != nil {
			return err
		}
		recs[i] = &slab[i]
	}
	return p.Records(ctx, recs)
}

// DeadLetters publishes dead letters and waits for every acknowledgement.
func (p *Publisher) DeadLetters(ctx context.Context, dls []*schemas.DeadLetter) error {
	recs := make([]*kgo.Record, 0, len(dls))
	for _, dl := range dls {
		r, err := DeadLetterRecord(dl)
		if err != nil {
			return err
		}
		recs = append(recs, r)
	}
	return p.Records(ctx, recs)
}

// Records produces recs and waits until all are acknowledged, or until ctx
// ends. The first failure is returned wrapped in ErrUnavailable, and so is
// the end of ctx: then the records may still be written. The idempotent
// producer keeps a record that went out in a request without an answer
// until it can finish it (failing it could break the partition's sequence
// numbers); on Apache Kafka that lasts until a new leader takes over from
// a broker that died with the request in flight. The caller gets its
// answer at the deadline all the same ("nothing is guaranteed written").
//
// ctx bounds only this call's wait. The records themselves are produced
// with a context that never ends: franz-go fails every buffered record of a
// partition when the first record of the partition's first batch has a
// cancelled context (kgo.Client.Produce), so one caller gone (an HTTP
// client that disconnected, a request past its deadline) would fail the
// records other callers wait for, and they would answer 503 for nothing.
// A record whose caller is gone is written when Kafka takes it, as after
// any deadline; a retry of it is deduplicated by event id. Room in the
// client's buffer is taken first (p.room, waiting with ctx), so Produce
// never blocks on a full buffer with a context that cannot end.
func (p *Publisher) Records(ctx context.Context, recs []*kgo.Record) error {
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
	keep := context.WithoutCancel(ctx)
	for i, r := range recs {
		if err := p.room.Acquire(ctx, 1); err != nil {
			// ctx ended while the buffer was full: the rest is not produced.
			finish(len(recs)-i, fmt.Errorf("%w: waiting for room in the producer's buffer: %w", ErrUnavailable, err))
			break
		}
		r.Context = nil // the record's own context would count as well
		p.cl.Produce(keep, r, func(r *kgo.Record, err error) {
			p.room.Release(1)
			if err != nil {
				err = fmt.Errorf("%w: topic %s: %w", ErrUnavailable, r.Topic, err)
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
			return fmt.Errorf("%w: %w", ErrUnavailable, ctx.Err())
		}
	}
	mu.Lock()
	defer mu.Unlock()
	return firstErr
}
