package views

// A compacted topic read whole into memory, and written with read your
// writes: what the tag-rule store (rulestore.go) and the routing-rule
// store (routingstore.go) share.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rolodex/rolodex/internal/kafkaclient"
)

// compactedCopy reads a compacted topic from its start with a consumer
// without a group (every instance of the API reads every partition),
// first up to the end offsets of when it starts (then it is loaded), then
// every new record, handing each to apply under mu. Its owner keeps its
// own copy of the records, guarded by the same mu.
type compactedCopy struct {
	topic  string
	what   string // for logs and errors: "rule store"
	cl     *kgo.Client
	logger *slog.Logger
	// apply takes one record into the owner's copy; called with mu held.
	apply func(r *kgo.Record)

	mu      sync.RWMutex
	next    map[int32]int64 // partition → offset after the last record read
	ends    map[int32]int64 // the end offsets read at start (nil before)
	loaded  bool            // next has reached ends once
	changed chan struct{}   // closed and replaced when next moves
}

// newCompactedCopy builds the copy of topic; Run reads it.
func newCompactedCopy(kcfg kafkaclient.Config, topic, what string, logger *slog.Logger, apply func(*kgo.Record)) (*compactedCopy, error) {
	cl, err := kafkaclient.NewClient(kcfg,
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		return nil, fmt.Errorf("views: %s: %w", what, err)
	}
	return &compactedCopy{topic: topic, what: what, cl: cl, logger: logger, apply: apply,
		next: map[int32]int64{}, changed: make(chan struct{})}, nil
}

// Close closes the Kafka client.
func (c *compactedCopy) Close() { c.cl.Close() }

// Run reads the topic from its start until ctx is done: first up to the
// end offsets of when it starts (then Ready), then every new record.
func (c *compactedCopy) Run(ctx context.Context) error {
	ends, err := c.endOffsets(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	c.mu.Lock()
	c.ends = ends
	c.checkLoaded()
	close(c.changed) // waitReady: maybe loaded already (an empty topic)
	c.changed = make(chan struct{})
	c.mu.Unlock()
	var lastErr time.Time
	for {
		fetches := c.cl.PollFetches(ctx)
		if ctx.Err() != nil || fetches.IsClientClosed() {
			return nil
		}
		fetches.EachError(func(topic string, p int32, err error) {
			if time.Since(lastErr) > 10*time.Second {
				lastErr = time.Now()
				c.logger.Warn("views: "+c.what+": reading its topic", "topic", topic, "partition", p, "err", err)
			}
		})
		c.mu.Lock()
		fetches.EachRecord(func(r *kgo.Record) {
			if r.Offset+1 > c.next[r.Partition] {
				c.next[r.Partition] = r.Offset + 1
			}
			c.apply(r)
		})
		c.checkLoaded()
		close(c.changed)
		c.changed = make(chan struct{})
		c.mu.Unlock()
	}
}

// endOffsets returns the offset after the last record of each partition
// of the topic, retrying until Kafka answers or ctx ends.
func (c *compactedCopy) endOffsets(ctx context.Context) (map[int32]int64, error) {
	adm := kadm.NewClient(c.cl)
	for {
		lctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		offs, err := adm.ListEndOffsets(lctx, c.topic)
		cancel()
		if err == nil {
			err = offs.Error()
		}
		if err == nil {
			ends := map[int32]int64{}
			offs.Each(func(o kadm.ListedOffset) {
				if o.Offset > 0 {
					ends[o.Partition] = o.Offset
				}
			})
			if len(offs) > 0 {
				return ends, nil
			}
			err = fmt.Errorf("no partitions of %s", c.topic)
		}
		if errors.Is(err, kgo.ErrClientClosed) {
			return nil, fmt.Errorf("views: %s: end offsets of %s: %w", c.what, c.topic, err)
		}
		c.logger.Warn("views: "+c.what+": end offsets of its topic", "topic", c.topic, "err", err)
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("views: %s: end offsets of %s: %w", c.what, c.topic, err)
		case <-time.After(time.Second):
		}
	}
}

// checkLoaded marks the copy loaded once every partition was read up to
// its start-time end. Called with mu held.
func (c *compactedCopy) checkLoaded() {
	if c.ends == nil || c.loaded {
		return
	}
	for p, end := range c.ends {
		if c.next[p] < end {
			return
		}
	}
	c.loaded = true
	c.logger.Info("views: "+c.what+" loaded", "topic", c.topic)
}

// Ready reports whether the copy has read the topic up to where it ended
// when the copy started.
func (c *compactedCopy) Ready() bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.loaded
}

// waitReady returns once the copy is Ready, or notReady when ctx ends
// first.
func (c *compactedCopy) waitReady(ctx context.Context, notReady error) error {
	for {
		c.mu.RLock()
		ready, ch := c.loaded, c.changed
		c.mu.RUnlock()
		if ready {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return notReady
		}
	}
}

// produce writes rec and waits for Kafka's acknowledgement (an error
// wraps unavailable), then until the copy has read it: the answer of a
// write is visible to the next read of the same instance.
//
// ctx bounds the wait and the record both: rec is produced with ctx, so
// that franz-go fails it if ctx ends before it went out (Kafka down or
// refusing it), and a write answered 503 is then never written later. A
// store's write is not a copy that a retry can absorb: a subscription's id
// and secret are drawn per request, so a refused create that landed
// minutes later, once Kafka is back, would sit beside its retry (every
// record delivered twice). Only a record already sent when ctx ends, which
// the idempotent producer keeps, can still land (docs/kafka.md, items 3
// and 6). Each store writes one record at a time (its write lock), so no
// other request's record waits behind this one in the client's buffer,
// except the next write's after this one ended in 503; franz-go may then
// fail that one too, with an exact 503 (kafkaclient.Producer is for the
// shared ingest path, where that is not so).
func (c *compactedCopy) produce(ctx context.Context, rec *kgo.Record, unavailable error) error {
	acked := make(chan error, 1)
	c.cl.Produce(ctx, rec, func(_ *kgo.Record, err error) { acked <- err })
	var err error
	select {
	case err = <-acked:
	case <-ctx.Done():
		select {
		case err = <-acked: // answered as ctx ended
		default:
			err = ctx.Err()
		}
	}
	if err != nil {
		return fmt.Errorf("%w: %w", unavailable, err)
	}
	// Read your writes: the answer waits until the copy holds the record
	// (or a later one of the partition).
	if err := c.waitFor(ctx, rec.Partition, rec.Offset); err != nil {
		c.logger.Warn("views: "+c.what+": written, but not read back yet", "key", string(rec.Key), "err", err)
	}
	return nil
}

// waitFor returns once the copy has read partition p past offset.
func (c *compactedCopy) waitFor(ctx context.Context, p int32, offset int64) error {
	for {
		c.mu.RLock()
		done, ch := c.next[p] > offset, c.changed
		c.mu.RUnlock()
		if done {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
