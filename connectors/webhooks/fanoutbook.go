package webhooks

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/rolodex/rolodex/schemas"
)

// storeBook is an in-memory copy of the fan-out store topics
// (rolodex.fanout.topics and rolodex.fanout.subscriptions, compacted),
// read whole from the start, every partition, no group: the latest
// version of each key wins, as in the API's store (a record no newer than
// the one held changes nothing). The webhook sender checks each attempt,
// and the Kafka writer each record, against it (docs/fanout.md,
// "Delivery", send-time check).
type storeBook struct {
	log *slog.Logger

	mu      sync.Mutex
	topics  map[string]*schemas.TopicRecord // "<tenant>/<name>"
	subs    map[string]*subEntry            // subscription id
	pos     map[string]map[int32]int64      // next offset to read
	changed chan struct{}                   // closed (and replaced) when pos moves
	ready   bool                            // pos known
	// add makes the reader read partitions it does not know yet (a store
	// partition added after the start); set with ready.
	add func(map[string]map[int32]kgo.Offset)

	// next is the sync round the callers of sync join (nil: none asked
	// for yet): one value however many callers and timeouts, so what
	// waits for syncLoop never grows.
	next *syncRound
	kick chan struct{}
	// unsyncedLog paces the warnings of sync rounds that failed.
	unsyncedLog rateLog
}

// syncRound is one round of syncLoop: ok (set before done is closed)
// says whether the book read up to the end offsets listed in it.
type syncRound struct {
	done chan struct{}
	ok   bool
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
	starts.Each(func(o kadm.ListedOffset) {
		if parts[o.Topic] == nil {
			parts[o.Topic] = map[int32]kgo.Offset{}
		}
		parts[o.Topic][o.Partition] = kgo.NewOffset().At(o.Offset)
	})
	cl, err := consume(kgo.ConsumePartitions(parts), kgo.FetchMaxWait(100*time.Millisecond))
	if err != nil {
		return err
	}
	b.mu.Lock()
	starts.Each(func(o kadm.ListedOffset) {
		if b.pos[o.Topic] == nil {
			b.pos[o.Topic] = map[int32]int64{}
		}
		b.pos[o.Topic][o.Partition] = o.Offset
	})
	b.ready = true
	b.add = cl.AddConsumePartitions
	b.mu.Unlock()
	defer cl.Close()
	for {
		recs, ok := poll(ctx, cl, b.log, "fanout delivery")
		if !ok {
			return nil
		}
		b.mu.Lock()
		for _, r := range recs {
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
// it was called, for at most wait, and reports whether it did: false
// when wait passed, ctx ended or the round failed (the end offsets could
// not be listed). The caller then knows nothing it may act on: it must
// neither drop nor send on what the book holds, only try again.
// Concurrent calls share rounds (syncLoop): one listing of end offsets,
// made after they joined, serves every caller of the round.
func (b *storeBook) sync(ctx context.Context, wait time.Duration) bool {
	b.mu.Lock()
	if b.next == nil {
		b.next = &syncRound{done: make(chan struct{})}
	}
	r := b.next
	b.mu.Unlock()
	select {
	case b.kick <- struct{}{}:
	default:
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-r.done:
		return r.ok
	case <-ctx.Done():
	case <-t.C:
	}
	return false
}

// syncLoop runs the sync rounds until ctx is done: each takes the round
// its callers joined, lists the store topics' end offsets, waits until
// the book read up to them, and releases the callers with the result.
func (b *storeBook) syncLoop(ctx context.Context, cl *kgo.Client) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-b.kick:
		}
		b.mu.Lock()
		r := b.next
		b.next = nil
		b.mu.Unlock()
		if r == nil {
			continue
		}
		err := b.catchUp(ctx, cl)
		r.ok = err == nil
		close(r.done)
		if err != nil && ctx.Err() == nil {
			if n, ok := b.unsyncedLog.allow(10 * time.Second); ok {
				b.log.Warn("fanout delivery: store sync failed; the checks waiting for it wait on", "err", err, "failed_since_last_log", n)
			}
			select { // a pause before the next round, so a broken broker is not hammered
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
}

// catchUp waits until the book read up to the store's end offsets,
// listed now. A partition the reader does not know (added to a store
// topic after the start) is added to it from its start offset.
func (b *storeBook) catchUp(ctx context.Context, cl *kgo.Client) error {
	// The partitions, fresh: kadm's listings use metadata cached up to
	// MetadataMinAge, which may predate a partition added since. A
	// direct metadata request is never cached and refreshes that cache.
	req := kmsg.NewPtrMetadataRequest()
	for _, t := range storeTopics {
		rt := kmsg.NewMetadataRequestTopic()
		rt.Topic = kmsg.StringPtr(t)
		req.Topics = append(req.Topics, rt)
	}
	meta, err := req.RequestWith(ctx, cl)
	if err != nil {
		return fmt.Errorf("metadata: %w", err)
	}
	adm := kadm.NewClient(cl)
	ends, err := adm.ListEndOffsets(ctx, storeTopics...)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return fmt.Errorf("end offsets: %w", err)
	}
	for _, t := range meta.Topics {
		if err := kerr.ErrorForCode(t.ErrorCode); err != nil {
			return fmt.Errorf("metadata of %s: %w", *t.Topic, err)
		}
		for _, p := range t.Partitions {
			if _, ok := ends.Lookup(*t.Topic, p.Partition); !ok {
				return fmt.Errorf("%s partition %d: not in the listing of end offsets yet", *t.Topic, p.Partition)
			}
		}
	}
	for {
		b.mu.Lock()
		behind := !b.ready
		var missing []string
		ends.Each(func(o kadm.ListedOffset) {
			p, ok := b.pos[o.Topic][o.Partition]
			if !ok && b.ready && !slices.Contains(missing, o.Topic) {
				missing = append(missing, o.Topic)
			}
			if !ok || p < o.Offset {
				behind = true
			}
		})
		changed := b.changed
		b.mu.Unlock()
		if !behind {
			return nil
		}
		if len(missing) > 0 {
			if err := b.addPartitions(ctx, adm, missing); err != nil {
				return err
			}
			continue
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-changed:
		case <-time.After(time.Second): // ready set without a change
		}
	}
}

// addPartitions makes the reader read the partitions of topics it does
// not know yet, from their start offsets.
func (b *storeBook) addPartitions(ctx context.Context, adm *kadm.Client, topics []string) error {
	starts, err := adm.ListStartOffsets(ctx, topics...)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		return fmt.Errorf("start offsets of new partitions: %w", err)
	}
	add := map[string]map[int32]kgo.Offset{}
	b.mu.Lock()
	defer b.mu.Unlock()
	starts.Each(func(o kadm.ListedOffset) {
		if _, ok := b.pos[o.Topic][o.Partition]; ok {
			return
		}
		if b.pos[o.Topic] == nil {
			b.pos[o.Topic] = map[int32]int64{}
		}
		b.pos[o.Topic][o.Partition] = o.Offset
		if add[o.Topic] == nil {
			add[o.Topic] = map[int32]kgo.Offset{}
		}
		add[o.Topic][o.Partition] = kgo.NewOffset().At(o.Offset)
		b.log.Info("fanout delivery: reading a new store partition", "topic", o.Topic, "partition", o.Partition, "from", o.Offset)
	})
	if len(add) > 0 {
		b.add(add)
	}
	return nil
}

// rateLog paces a repeated warning: allow reports whether to log now (at
// most once per every) and how many were not logged since the last.
type rateLog struct {
	mu      sync.Mutex
	last    time.Time
	skipped int
}

func (l *rateLog) allow(every time.Duration) (int, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now := time.Now(); now.Sub(l.last) >= every {
		n := l.skipped
		l.last, l.skipped = now, 0
		return n, true
	}
	l.skipped++
	return 0, false
}
