package webhooks

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rolodex/rolodex/schemas"
)

// storeBook is an in-memory copy of the fan-out store topics
// (rolodex.fanout.topics and rolodex.fanout.subscriptions, compacted),
// read whole from the start, every partition, no group: the latest
// version of each key wins, as in the API's store (a record no newer than
// the one held changes nothing). The webhook sender checks each attempt
// against it (docs/fanout.md, "Delivery", send-time check).
type storeBook struct {
	log *slog.Logger

	mu      sync.Mutex
	topics  map[string]*schemas.TopicRecord // "<tenant>/<name>"
	subs    map[string]*subEntry            // subscription id
	pos     map[string]map[int32]int64      // next offset to read
	changed chan struct{}                   // closed (and replaced) when pos moves
	ready   bool                            // pos known

	// waiters of the next sync round (syncLoop).
	waiters []chan struct{}
	kick    chan struct{}
}

// subEntry is a held subscription record; local marks one this process
// wrote itself (a 410's disable) and applied before reading it back: the
// first record of the same version read from the topic replaces it (the
// store's order decides, as for every other reader).
type subEntry struct {
	rec   *schemas.SubscriptionRecord
	local bool
}

var storeTopics = []string{schemas.TopicFanoutTopics, schemas.TopicFanoutSubscriptions}

func newStoreBook(log *slog.Logger) *storeBook {
	return &storeBook{log: log, topics: map[string]*schemas.TopicRecord{}, subs: map[string]*subEntry{},
		pos: map[string]map[int32]int64{}, changed: make(chan struct{}), kick: make(chan struct{}, 1)}
}

// run reads the store topics until ctx is done: adm lists their
// partitions, consume makes the reader.
func (b *storeBook) run(ctx context.Context, adm *kadm.Client, consume func(...kgo.Opt) (*kgo.Client, error)) error {
	var starts kadm.ListedOffsets
	for {
		var err error
		if starts, err = adm.ListStartOffsets(ctx, storeTopics...); err == nil {
			err = starts.Error()
		}
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return nil
		}
		b.log.Warn("fanout delivery: store offsets, retrying", "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
	parts := map[string]map[int32]kgo.Offset{}
	b.mu.Lock()
	starts.Each(func(o kadm.ListedOffset) {
		if b.pos[o.Topic] == nil {
			b.pos[o.Topic] = map[int32]int64{}
			parts[o.Topic] = map[int32]kgo.Offset{}
		}
		b.pos[o.Topic][o.Partition] = o.Offset
		parts[o.Topic][o.Partition] = kgo.NewOffset().At(o.Offset)
	})
	b.ready = true
	b.mu.Unlock()
	cl, err := consume(kgo.ConsumePartitions(parts), kgo.FetchMaxWait(100*time.Millisecond))
	if err != nil {
		return err
	}
	defer cl.Close()
	for {
		fetches := cl.PollRecords(ctx, 1000)
		if fetches.IsClientClosed() || ctx.Err() != nil {
			return nil
		}
		fetches.EachError(func(topic string, part int32, err error) {
			b.log.Warn("fanout delivery: fetch", "topic", topic, "partition", part, "err", err)
		})
		b.mu.Lock()
		for _, r := range fetches.Records() {
			b.applyRecord(r)
			b.pos[r.Topic][r.Partition] = r.Offset + 1
		}
		close(b.changed)
		b.changed = make(chan struct{})
		b.mu.Unlock()
	}
}

// applyRecord applies one store record (b.mu held).
func (b *storeBook) applyRecord(r *kgo.Record) {
	if r.Value == nil {
		return // the store never deletes a key; a tombstone changes nothing
	}
	switch r.Topic {
	case schemas.TopicFanoutTopics:
		var t schemas.TopicRecord
		if err := json.Unmarshal(r.Value, &t); err != nil || t.Topic.Tenant == "" || t.Topic.Name == "" {
			b.log.Warn("fanout delivery: undecodable topic record", "partition", r.Partition, "offset", r.Offset)
			return
		}
		k := t.Topic.Key()
		if held := b.topics[k]; held == nil || t.Version > held.Version {
			b.topics[k] = &t
		}
	case schemas.TopicFanoutSubscriptions:
		var s schemas.SubscriptionRecord
		if err := json.Unmarshal(r.Value, &s); err != nil || s.Subscription.ID == "" {
			b.log.Warn("fanout delivery: undecodable subscription record", "partition", r.Partition, "offset", r.Offset)
			return
		}
		held := b.subs[s.Subscription.ID]
		if held == nil || s.Version > held.rec.Version || (s.Version == held.rec.Version && held.local) {
			b.subs[s.Subscription.ID] = &subEntry{rec: &s}
		}
	}
}

// subscription returns the subscription record held for id (nil: none).
func (b *storeBook) subscription(id string) *schemas.SubscriptionRecord {
	b.mu.Lock()
	defer b.mu.Unlock()
	if e := b.subs[id]; e != nil {
		return e.rec
	}
	return nil
}

// topic returns the topic record held for key (nil: none).
func (b *storeBook) topic(key string) *schemas.TopicRecord {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.topics[key]
}

// applyLocal applies a subscription record this process wrote, at once
// (it is read back later; see subEntry).
func (b *storeBook) applyLocal(s *schemas.SubscriptionRecord) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if held := b.subs[s.Subscription.ID]; held == nil || s.Version > held.rec.Version {
		b.subs[s.Subscription.ID] = &subEntry{rec: s, local: true}
	}
}

// sync waits until the book has read every store record written before
// it was called, or for at most wait (then it logs and returns: the check
// goes on with what the book knows). Concurrent calls share rounds
// (syncLoop): one listing of end offsets serves every caller that arrived
// before it started.
func (b *storeBook) sync(ctx context.Context, wait time.Duration) {
	ch := make(chan struct{})
	b.mu.Lock()
	b.waiters = append(b.waiters, ch)
	b.mu.Unlock()
	select {
	case b.kick <- struct{}{}:
	default:
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-ch:
	case <-ctx.Done():
	case <-t.C:
		b.log.Warn("fanout delivery: store not read up to date before an attempt; checked with what is known", "wait", wait)
	}
}

// syncLoop runs the sync rounds until ctx is done: each takes the callers
// waiting, lists the store topics' end offsets, waits until the book read
// up to them, and releases the callers.
func (b *storeBook) syncLoop(ctx context.Context, adm *kadm.Client) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-b.kick:
		}
		b.mu.Lock()
		waiters := b.waiters
		b.waiters = nil
		b.mu.Unlock()
		if len(waiters) == 0 {
			continue
		}
		if err := b.catchUp(ctx, adm); err != nil && ctx.Err() == nil {
			b.log.Warn("fanout delivery: store sync", "err", err)
			select { // a pause before the next round, so a broken broker is not hammered
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
		for _, ch := range waiters {
			close(ch)
		}
	}
}

// catchUp waits until the book read up to the store's end offsets.
func (b *storeBook) catchUp(ctx context.Context, adm *kadm.Client) error {
	ends, err := adm.ListEndOffsets(ctx, storeTopics...)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return fmt.Errorf("end offsets: %w", err)
	}
	for {
		b.mu.Lock()
		behind := !b.ready
		ends.Each(func(o kadm.ListedOffset) {
			if p, ok := b.pos[o.Topic][o.Partition]; !ok || p < o.Offset {
				behind = true
			}
		})
		changed := b.changed
		b.mu.Unlock()
		if !behind {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-changed:
		case <-time.After(time.Second): // ready set without a change
		}
	}
}
