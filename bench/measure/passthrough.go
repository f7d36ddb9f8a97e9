package measure

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rolodex/rolodex/internal/kafkaclient"
)

// PassthroughConfig is a benchmark's baseline: what it copies and where.
type PassthroughConfig struct {
	Brokers  []string
	ClientID string
	Group    string // the consumer group, committing from
	From, To string // the topics
	N        int    // how many records to copy
	What     string // names the benchmark in errors ("benchfanout")
}

// Passthrough is a benchmark's baseline: consume the first N records of
// From in Group, produce each unchanged to To, commit each once its copy
// is acknowledged. It ends when every copy is acknowledged; its phase is
// the time and CPU until then.
func Passthrough(ctx context.Context, cfg PassthroughConfig) (Phase, error) {
	var (
		n       = cfg.N
		acked   atomic.Int64
		done    = make(chan struct{})
		failed  = make(chan error, 1)
		errOnce sync.Once
	)
	start, cpu0 := time.Now(), ProcessCPU()
	cl, err := kafkaclient.NewClient(kafkaclient.Config{Brokers: cfg.Brokers, ClientID: cfg.ClientID},
		kgo.ConsumerGroup(cfg.Group), kgo.ConsumeTopics(cfg.From),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.AutoCommitMarks())
	if err != nil {
		return Phase{}, fmt.Errorf("%s: passthrough: %w", cfg.What, err)
	}
	defer cl.Close()
	for consumed := 0; consumed < n; {
		fs := cl.PollRecords(ctx, n-consumed)
		if err := ctx.Err(); err != nil {
			return Phase{}, err
		}
		if err := fs.Err0(); err != nil {
			return Phase{}, fmt.Errorf("%s: passthrough: consume: %w", cfg.What, err)
		}
		fs.EachRecord(func(in *kgo.Record) {
			consumed++
			out := &kgo.Record{Topic: cfg.To, Key: in.Key, Value: in.Value, Headers: in.Headers, Timestamp: in.Timestamp}
			cl.Produce(ctx, out, func(_ *kgo.Record, err error) {
				if err != nil {
					errOnce.Do(func() { failed <- err })
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
	case err := <-failed:
		return Phase{}, fmt.Errorf("%s: passthrough: produce: %w", cfg.What, err)
	case <-ctx.Done():
		return Phase{}, ctx.Err()
	}
	p := NewPhase(n, time.Since(start), ProcessCPU()-cpu0)
	if err := cl.CommitMarkedOffsets(ctx); err != nil {
		return Phase{}, fmt.Errorf("%s: passthrough: commit: %w", cfg.What, err)
	}
	return p, nil
}

// ProduceAll writes recs asynchronously and waits until Kafka answered
// each; the first error, if any.
func ProduceAll(ctx context.Context, cl *kgo.Client, recs []*kgo.Record) error {
	var (
		once     sync.Once
		firstErr error
	)
	for _, r := range recs {
		cl.Produce(ctx, r, func(_ *kgo.Record, err error) {
			if err != nil {
				once.Do(func() { firstErr = err })
			}
		})
	}
	if err := cl.Flush(ctx); err != nil {
		return err
	}
	return firstErr
}
