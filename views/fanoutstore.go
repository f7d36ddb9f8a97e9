package views

// The fan-out stores behind /v1/topics and /v1/subscriptions
// (docs/fanout.md, "Topics" and "Subscriptions"): the topics on the
// compacted rolodex.fanout.topics (key "<tenant>/<name>") and the
// subscriptions on the compacted rolodex.fanout.subscriptions (key the
// subscription id), each read whole into memory by every API instance and
// written one versioned record per change (a deletion is a record, never
// a tombstone, so that its version survives compaction).

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rolodex/rolodex/schemas"
)

// ErrFanoutNotReady says a fan-out store has not read its topic up to its
// end yet.
var ErrFanoutNotReady = errors.New("views: the fan-out stores are still loading rolodex.fanout.topics and rolodex.fanout.subscriptions")

// errUnchanged, returned by a write's change function, writes nothing.
var errUnchanged = errors.New("unchanged")

// versioned is a store of versioned records: the latest of each key, read
// from a compacted topic; a record no newer than the one held changes
// nothing (as in the fan-out stage's directory).
type versioned[R any] struct {
	*compactedCopy
	cfg     RuleStoreConfig
	topic   string
	key     func(*R) string
	version func(*R) int64

	write  sync.Mutex       // serialises writes: read, decide, produce, wait
	issued map[string]int64 // the latest version this instance produced per key
	// written is where this instance's latest write of each key landed
	// (guarded by write), for WaitInForce.
	written map[string]position

	// broadcast is the group that copies the store's records into every
	// partition of rolodex.fanout.input (SetInForce); inForceWait bounds
	// how long WaitInForce waits for it.
	broadcast   string
	inForceWait time.Duration

	// recs is the copy of the topic, guarded by compactedCopy.mu; landed
	// is where each key's record in recs landed (same guard).
	recs   map[string]*R
	landed map[string]position

	writes prometheus.Counter
}

// position is where a record landed.
type position struct {
	partition int32
	offset    int64
}

func newVersioned[R any](cfg RuleStoreConfig, topic, what, metric, help string, key func(*R) string, version func(*R) int64) (*versioned[R], error) {
	s := &versioned[R]{cfg: cfg, topic: topic, key: key, version: version, issued: map[string]int64{}, recs: map[string]*R{},
		written: map[string]position{}, landed: map[string]position{},
		writes: prometheus.NewCounter(prometheus.CounterOpts{Name: metric, Help: help})}
	c, err := newCompactedCopy(cfg.Kafka, topic, what, cfg.Logger, s.apply)
	if err != nil {
		return nil, err
	}
	s.compactedCopy = c
	if cfg.Registerer != nil {
		cfg.Registerer.MustRegister(s.writes)
	}
	return s, nil
}

// apply takes one record into the copy. Called with mu held.
func (s *versioned[R]) apply(r *kgo.Record) {
	k := string(r.Key)
	if r.Value == nil { // a tombstone (the API writes none)
		delete(s.recs, k)
		delete(s.landed, k)
		return
	}
	rec := new(R)
	if err := json.Unmarshal(r.Value, rec); err != nil || s.key(rec) != k {
		s.cfg.Logger.Warn("views: "+s.what+": a record that is not its key's, skipped",
			"partition", r.Partition, "offset", r.Offset, "key", k, "err", err)
		return
	}
	if held, ok := s.recs[k]; ok && s.version(held) >= s.version(rec) {
		return // a repeat or an older write
	}
	s.recs[k] = rec
	s.landed[k] = position{r.Partition, r.Offset}
}

// get returns a copy of the record held for k.
func (s *versioned[R]) get(k string) (R, bool, error) {
	var zero R
	if !s.Ready() {
		return zero, false, ErrFanoutNotReady
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	rec, ok := s.recs[k]
	if !ok {
		return zero, false, nil
	}
	return clone(rec), true, nil
}

// list returns copies of the records keep takes, in key order.
func (s *versioned[R]) list(keep func(*R) bool) ([]R, error) {
	if !s.Ready() {
		return nil, ErrFanoutNotReady
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	keys := make([]string, 0, len(s.recs))
	for k, r := range s.recs {
		if keep(r) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	out := make([]R, len(keys))
	for i, k := range keys {
		out[i] = clone(s.recs[k])
	}
	return out, nil
}

// clone deep-copies a record through JSON (records are small and written
// rarely; the copy keeps callers off the store's maps and slices).
func clone[R any](r *R) R {
	var out R
	b, _ := json.Marshal(r)
	_ = json.Unmarshal(b, &out)
	return out
}

// update writes the record change makes of the one held for k (nil:
// none), with the version after it (and after any this instance issued),
// waits for Kafka's acknowledgement and for this instance to read it
// back. change sees the store's current copy under the write lock, so two
// requests to one instance never decide on the same state; it returns
// errUnchanged to write nothing (the held record is returned), or its own
// error (returned as it is).
func (s *versioned[R]) update(ctx context.Context, k string, change func(prev *R, version int64) (*R, error)) (R, error) {
	s.write.Lock()
	defer s.write.Unlock()
	var zero R
	prev, ok, err := s.get(k)
	if err != nil {
		return zero, err
	}
	var held *R
	var v int64
	if ok {
		held, v = &prev, s.version(&prev)
	}
	next, err := change(held, max(v, s.issued[k])+1)
	if errors.Is(err, errUnchanged) {
		return prev, nil
	}
	if err != nil {
		return zero, err
	}
	val, err := json.Marshal(next)
	if err != nil {
		return zero, fmt.Errorf("views: encode %s record: %w", s.what, err)
	}
	s.issued[k] = s.version(next)
	rec := &kgo.Record{Topic: s.topic, Key: []byte(k), Value: val}
	if err := s.produce(ctx, rec, ErrRuleUnavailable); err != nil {
		return zero, err
	}
	s.written[k] = position{rec.Partition, rec.Offset}
	s.writes.Inc()
	return *next, nil
}

// SetInForce makes WaitInForce wait, up to wait, for group (the
// directory broadcast, schemas.GroupFanoutDirectory) to have committed
// past a write: it commits a store record only once Kafka acknowledged its
// copy in every partition of rolodex.fanout.input, so from then on every
// topic event that reaches the fan-out stage is decided with it. wait 0:
// WaitInForce does not wait and answers false.
func (s *versioned[R]) SetInForce(group string, wait time.Duration) {
	s.write.Lock()
	defer s.write.Unlock()
	s.broadcast, s.inForceWait = group, wait
}

// WaitInForce reports whether the later of this instance's latest write
// of key k and the record of k it holds is in force: the
// broadcast group committed past it. It waits for that up to the
// SetInForce bound (polling the group's committed offsets), and answers
// false when the bound passes first (the fan-out stage is not running, or
// is behind: the change takes effect when it catches up) or when this
// instance knows no record of k.
func (s *versioned[R]) WaitInForce(ctx context.Context, k string) bool {
	s.write.Lock()
	at, ok := s.written[k]
	group, wait := s.broadcast, s.inForceWait
	s.write.Unlock()
	s.mu.RLock()
	if l, held := s.landed[k]; held && (!ok || l.offset > at.offset) { // one key, one partition
		at, ok = l, true
	}
	s.mu.RUnlock()
	if !ok || group == "" || wait <= 0 {
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	adm := kadm.NewClient(s.cl)
	for {
		offs, err := adm.FetchOffsets(ctx, group)
		if err == nil {
			if o, found := offs.Lookup(s.topic, at.partition); found && o.Err == nil && o.At > at.offset {
				return true
			}
		}
		select {
		case <-ctx.Done():
			s.cfg.Logger.Warn("views: "+s.what+": written, but not yet in force in every partition of the fan-out input",
				"key", k, "group", group, "waited", wait)
			return false
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// now is the store's clock as the records write it.
func (s *versioned[R]) now() string {
	return s.cfg.Now().UTC().Truncate(time.Millisecond).Format(time.RFC3339Nano)
}

// WaitReady returns once the store is Ready, or ErrFanoutNotReady when
// ctx ends first.
func (s *versioned[R]) WaitReady(ctx context.Context) error {
	return s.waitReady(ctx, ErrFanoutNotReady)
}

// TopicStore holds every tenant's fan-out topics: the latest
// schemas.TopicRecord of each key of rolodex.fanout.topics, deleted ones
// included (their version counts on when the name is used again).
type TopicStore struct {
	*versioned[schemas.TopicRecord]
}

// NewTopicStore builds a store (the client id defaults to
// rolodex-fanout-topics); Run reads the topic, which must exist.
func NewTopicStore(cfg RuleStoreConfig) (*TopicStore, error) {
	cfg.setDefaults("rolodex-fanout-topics")
	v, err := newVersioned(cfg, schemas.TopicFanoutTopics, "topic store", "rolodex_fanout_topic_writes_total",
		"Topic records the API wrote (create, access, delete) and Kafka acknowledged.",
		func(r *schemas.TopicRecord) string { return r.Topic.Key() },
		func(r *schemas.TopicRecord) int64 { return r.Version })
	if err != nil {
		return nil, err
	}
	return &TopicStore{v}, nil
}

// Get returns the tenant's topic name (deleted or not); false: never
// written.
func (s *TopicStore) Get(tenant, name string) (schemas.TopicRecord, bool, error) {
	return s.get(schemas.TopicKey(tenant, name))
}

// List returns the tenant's topics that are not deleted, by name.
func (s *TopicStore) List(tenant string) ([]schemas.TopicRecord, error) {
	return s.list(func(r *schemas.TopicRecord) bool { return r.Topic.Tenant == tenant && !r.Deleted })
}

// Update writes what change makes of the tenant's topic name (prev nil:
// never written); change sets the fields, the store the version, the
// instant and the writer.
func (s *TopicStore) Update(ctx context.Context, tenant, name, by string, change func(prev *schemas.TopicRecord) (*schemas.TopicRecord, error)) (schemas.TopicRecord, error) {
	return s.update(ctx, schemas.TopicKey(tenant, name), func(prev *schemas.TopicRecord, version int64) (*schemas.TopicRecord, error) {
		next, err := change(prev)
		if err != nil {
			return nil, err
		}
		next.Version, next.UpdatedAt, next.UpdatedBy = version, s.now(), by
		return next, nil
	})
}

// SubscriptionStore holds every subscription: the latest
// schemas.SubscriptionRecord of each key (id) of
// rolodex.fanout.subscriptions, secrets and deleted ones included.
type SubscriptionStore struct {
	*versioned[schemas.SubscriptionRecord]
}

// NewSubscriptionStore builds a store (the client id defaults to
// rolodex-fanout-subscriptions); Run reads the topic, which must exist.
func NewSubscriptionStore(cfg RuleStoreConfig) (*SubscriptionStore, error) {
	cfg.setDefaults("rolodex-fanout-subscriptions")
	v, err := newVersioned(cfg, schemas.TopicFanoutSubscriptions, "subscription store", "rolodex_fanout_subscription_writes_total",
		"Subscription records the API wrote (create, delete, replay, ended with its topic) and Kafka acknowledged.",
		func(r *schemas.SubscriptionRecord) string { return r.Subscription.ID },
		func(r *schemas.SubscriptionRecord) int64 { return r.Version })
	if err != nil {
		return nil, err
	}
	return &SubscriptionStore{v}, nil
}

// Get returns the subscription id (whatever its status); false: none.
func (s *SubscriptionStore) Get(id string) (schemas.SubscriptionRecord, bool, error) {
	return s.get(id)
}

// List returns the subscriptions keep takes, by id.
func (s *SubscriptionStore) List(keep func(*schemas.Subscription) bool) ([]schemas.SubscriptionRecord, error) {
	return s.list(func(r *schemas.SubscriptionRecord) bool { return keep(&r.Subscription) })
}

// ByIdempotencyKey returns the subscription of the tenant's partner that a
// create with that Idempotency-Key made, nil if none (should two tries
// both have landed: a live one before one that ended, then the smaller
// id).
func (s *SubscriptionStore) ByIdempotencyKey(tenant, partner, key string) (*schemas.SubscriptionRecord, error) {
	if !s.Ready() {
		return nil, ErrFanoutNotReady
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	var made *schemas.SubscriptionRecord
	better := func(r *schemas.SubscriptionRecord) bool {
		if made == nil {
			return true
		}
		if r.Subscription.Live() != made.Subscription.Live() {
			return r.Subscription.Live()
		}
		return r.Subscription.ID < made.Subscription.ID
	}
	for _, r := range s.recs {
		if r.IdempotencyKey == key && r.Subscription.Tenant == tenant && r.Subscription.Partner == partner && better(r) {
			made = r
		}
	}
	if made == nil {
		return nil, nil
	}
	c := clone(made)
	return &c, nil
}

// Update writes what change makes of subscription id (prev nil: none);
// the store sets the version and the instant.
func (s *SubscriptionStore) Update(ctx context.Context, id string, change func(prev *schemas.SubscriptionRecord) (*schemas.SubscriptionRecord, error)) (schemas.SubscriptionRecord, error) {
	return s.update(ctx, id, func(prev *schemas.SubscriptionRecord, version int64) (*schemas.SubscriptionRecord, error) {
		next, err := change(prev)
		if err != nil {
			return nil, err
		}
		next.Version, next.UpdatedAt = version, s.now()
		return next, nil
	})
}
