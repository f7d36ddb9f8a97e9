package webhooks

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rolodex/rolodex/internal/kafkaclient"
)

// What the two Kafka writers of this package (lead delivery and the
// fan-out's Kafka subscriptions) share: their clients, their writes until
// acknowledged, and their consume-write-commit loop. what names the
// writer in errors and logs ("lead delivery", "fanout delivery").

// newClient is a client of brokers named id; a group's client (one with
// opts) gets session as its session timeout (0: kafkaclient's default).
func newClient(brokers []string, session time.Duration, what, id string, opts ...kgo.Opt) (*kgo.Client, error) {
	if len(opts) > 0 { // a group's client
		opts = append(opts, kafkaclient.GroupSession(session)...)
	}
	cl, err := kafkaclient.NewClient(kafkaclient.Config{Brokers: brokers, ClientID: id}, opts...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return cl, nil
}

// produceAcked writes recs until Kafka acknowledged them all, or ctx is
// done. The producer is idempotent; a record written again after a
// failed attempt is a duplicate its consumers absorb (same ids).
func produceAcked(ctx context.Context, cl *kgo.Client, log *slog.Logger, backoff time.Duration, what string, recs []*kgo.Record) error {
	return kafkaclient.ProduceUntilAcked(ctx, cl, backoff, func(err error) {
		log.Error(what+": write, retrying", "records", len(recs), "err", err)
	}, recs...)
}

// batchFunc handles one batch read by runBatches, writing with cl: done
// false (and no error) when ctx ended before everything was written (the
// batch is read again), an error to stop the loop.
type batchFunc func(ctx context.Context, cl *kgo.Client, recs []*kgo.Record) (done bool, err error)

// runBatches reads topic in group with a client of newClient (id), the
// producer settings of out records, and hands each batch to handle,
// committing the batch only once handle wrote everything it called for.
// Rebalances wait while a batch is handled.
func runBatches(ctx context.Context, newClient func(id string, opts ...kgo.Opt) (*kgo.Client, error), log *slog.Logger, what, id, group, topic string, handle batchFunc) error {
	cl, err := newClient(id,
		kgo.ConsumerGroup(group),
		kgo.ConsumeTopics(topic),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		kgo.ProducerBatchMaxBytes(MaxOutRecordBytes),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
	)
	if err != nil {
		return err
	}
	defer cl.Close()
	defer cl.AllowRebalance()
	for {
		recs, ok := poll(ctx, cl, log, what)
		if !ok {
			return nil
		}
		if len(recs) == 0 {
			cl.AllowRebalance()
			continue
		}
		done, err := handle(ctx, cl, recs)
		if err != nil {
			return err
		}
		if !done {
			return nil // ctx done: the batch is read again
		}
		if err := cl.CommitRecords(ctx, recs...); err != nil && ctx.Err() == nil {
			// Written: a lost commit only means the batch is handled
			// again, with the same ids.
			log.Warn(what+": commit", "err", err)
		}
		cl.AllowRebalance()
	}
}

// poll reads cl's next records (up to 1000), logging the errors of the
// fetch; ok is false once cl is closed or ctx is done.
func poll(ctx context.Context, cl *kgo.Client, log *slog.Logger, what string) (recs []*kgo.Record, ok bool) {
	fetches := cl.PollRecords(ctx, 1000)
	if fetches.IsClientClosed() || ctx.Err() != nil {
		return nil, false
	}
	fetches.EachError(func(topic string, part int32, err error) {
		log.Warn(what+": fetch", "topic", topic, "partition", part, "err", err)
	})
	return fetches.Records(), true
}
