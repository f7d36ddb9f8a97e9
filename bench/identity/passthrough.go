package identity

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rolodex/rolodex/bench/measure"
	"github.com/rolodex/rolodex/internal/kafkaclient"
	"github.com/rolodex/rolodex/schemas"
)

// runPassthrough is the baseline: a consumer group reads the n records of
// rolodex.events from the start and produces each one unchanged to
// TopicPassthrough (acks=all, idempotent, the Rolodex partitioner, so a
// copy lands on the partition number of its original). An input record is
// marked for commit once its copy is acknowledged, the way a connector
// commits (offsets after the write). The phase ends when every copy is
// acknowledged; the final commit happens after the timing.
func (b *bench) runPassthrough(ctx context.Context, n int) (Phase, error) {
	prepare()
	var (
		acked    atomic.Int64
		done     = make(chan struct{})
		failed   = make(chan struct{})
		errOnce  sync.Once
		firstErr error
		first    time.Duration
	)
	fail := func(err error) {
		errOnce.Do(func() {
			firstErr = err
			close(failed)
		})
	}
	start, cpu0 := time.Now(), measure.ProcessCPU()
	cl, err := kafkaclient.NewClient(kafkaclient.Config{Brokers: b.brokers, ClientID: "rolodex-bench-passthrough"},
		kgo.ConsumerGroup(GroupPassthrough),
		kgo.ConsumeTopics(schemas.TopicEvents),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.AutoCommitMarks(),
	)
	if err != nil {
		return Phase{}, fmt.Errorf("benchidentity: passthrough: %w", err)
	}
	defer cl.Close()
	for consumed := 0; consumed < n; {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return Phase{}, err
		}
		if err := fs.Err0(); err != nil {
			return Phase{}, fmt.Errorf("benchidentity: passthrough: consume: %w", err)
		}
		fs.EachRecord(func(in *kgo.Record) {
			if consumed == 0 {
				first = time.Since(start)
			}
			consumed++
			out := &kgo.Record{Topic: TopicPassthrough, Key: in.Key, Value: in.Value, Headers: in.Headers, Timestamp: in.Timestamp}
			cl.Produce(ctx, out, func(_ *kgo.Record, err error) {
				if err != nil {
					fail(err)
					return
				}
				cl.MarkCommitRecords(in)
				if acked.Add(1) == int64(n) {
					close(done)
				}
			})
		})
	}
	select {
	case <-done:
	case <-failed:
		return Phase{}, fmt.Errorf("benchidentity: passthrough: produce: %w", firstErr)
	case <-ctx.Done():
		return Phase{}, ctx.Err()
	}
	elapsed, cpu := time.Since(start), measure.ProcessCPU()-cpu0
	if err := cl.CommitMarkedOffsets(ctx); err != nil {
		return Phase{}, fmt.Errorf("benchidentity: passthrough: commit: %w", err)
	}
	return phaseOf(n, elapsed, cpu, first), nil
}
