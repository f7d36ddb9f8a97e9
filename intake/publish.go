package intake

import (
	"context"
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rolodex/rolodex/internal/kafkaclient"
	"github.com/rolodex/rolodex/schemas"
)

// ErrUnavailable wraps every failure to get a write acknowledged by Kafka.
var ErrUnavailable = errors.New("kafka did not acknowledge the write")

// Publisher writes accepted events and dead letters to Kafka and returns only
// once Kafka acknowledged every record (acks=all) or one failed.
type Publisher struct {
	prod *kafkaclient.Producer
}

// NewPublisher publishes through cl, which should come from
// kafkaclient.NewClient (acks=all, the shared partitioner) and be given
// records by nothing else (kafkaclient.NewProducer).
func NewPublisher(cl *kgo.Client) *Publisher {
	return &Publisher{prod: kafkaclient.NewProducer(cl)}
}

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
// ctx bounds only this call's wait: no caller's context decides the fate of
// another caller's records (kafkaclient.Producer).
func (p *Publisher) Records(ctx context.Context, recs []*kgo.Record) error {
	if err := p.prod.Produce(ctx, recs...); err != nil {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return nil
}
