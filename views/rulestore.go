package views

// The rule store behind the tag-rule API (docs/tags.md, "Rules: API,
// storage, CLI"): every tenant's tag rules on the compacted topic
// rolodex.tag.rules, read whole into memory by a franz-go consumer, and
// written one record per change with acks=all.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rolodex/rolodex/internal/kafkaclient"
	"github.com/rolodex/rolodex/schemas"
)

// ErrRulesNotReady says the rule store has not read the rules topic up to
// its end yet.
var ErrRulesNotReady = errors.New("views: the rule store is still loading rolodex.tag.rules")

// ErrRuleNotFound says the tenant has no such rule (or it is deleted).
var ErrRuleNotFound = errors.New("views: rule not found")

// ErrRuleUnavailable wraps a rule write that Kafka did not acknowledge in
// time: nothing is guaranteed written.
var ErrRuleUnavailable = errors.New("views: Kafka did not acknowledge the rule write")

// RuleChange is what a write did.
type RuleChange string

// Rule changes.
const (
	RuleCreated   RuleChange = "created"   // no rule, or a deleted one, had the id
	RuleUpdated   RuleChange = "updated"   // tag, condition, description or enabled changed
	RuleUnchanged RuleChange = "unchanged" // the same rule again: nothing written
	RuleDeleted   RuleChange = "deleted"
)

// RuleStoreConfig configures a RuleStore.
type RuleStoreConfig struct {
	// Kafka says how to reach the brokers. Required.
	Kafka kafkaclient.Config
	// Registerer receives the store's metrics; nil registers none.
	Registerer prometheus.Registerer
	// Logger; default slog.Default().
	Logger *slog.Logger
	// Now stamps UpdatedAt; default time.Now.
	Now func() time.Time
}

// RuleStore holds every tenant's tag rules: the latest record of each key
// of rolodex.tag.rules, read whole into memory by a consumer without a
// group (every instance of the API reads every partition), and written
// one record per change.
//
// A write computes the next version under one mutex from the store's copy
// (and the versions this instance wrote before, so two of its own writes
// never share a version even when the copy lags), produces the record,
// waits for Kafka's acknowledgement and then for its own consumer to have
// read past that record's offset: the answer of a write is visible to the
// next read of the same instance. Two API instances writing one rule at
// the same instant may pick the same version; the later record on the
// partition wins (compaction keeps it), a known limit.
type RuleStore struct {
	cfg RuleStoreConfig
	cl  *kgo.Client

	// write serialises writes: version, produce, wait.
	write sync.Mutex
	// issued is the latest version this instance produced per key,
	// acknowledged or not (a record whose acknowledgement timed out may
	// still land).
	issued map[string]int64

	mu      sync.RWMutex
	rules   map[string]map[string]schemas.TagRule // tenant → id → latest record
	next    map[int32]int64                       // partition → offset after the last record read
	ends    map[int32]int64                       // the end offsets read at start (nil before)
	loaded  bool                                  // next has reached ends once
	changed chan struct{}                         // closed and replaced when next moves

	writes *prometheus.CounterVec
	active *prometheus.GaugeVec
}

// NewRuleStore builds a store; Run reads the topic. The topic must exist
// (cmd creates it with the base topics).
func NewRuleStore(cfg RuleStoreConfig) (*RuleStore, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Kafka.ClientID == "" {
		cfg.Kafka.ClientID = "rolodex-rules"
	}
	cl, err := kafkaclient.NewClient(cfg.Kafka,
		kgo.ConsumeTopics(schemas.TopicTagRules),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		return nil, fmt.Errorf("views: rule store: %w", err)
	}
	s := &RuleStore{
		cfg: cfg, cl: cl, issued: map[string]int64{},
		rules: map[string]map[string]schemas.TagRule{}, next: map[int32]int64{}, changed: make(chan struct{}),
		writes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rolodex_tag_rules_writes_total",
			Help: "Tag rule records the API wrote and Kafka acknowledged, by op: create, update, delete (an unchanged PUT writes nothing).",
		}, []string{"op"}),
		active: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "rolodex_tag_rules_active",
			Help: "Active tag rules (enabled, not deleted) per tenant, as this API instance reads rolodex.tag.rules.",
		}, []string{"tenant"}),
	}
	if cfg.Registerer != nil {
		cfg.Registerer.MustRegister(s.writes, s.active)
	}
	return s, nil
}

// Close closes the store's Kafka client.
func (s *RuleStore) Close() { s.cl.Close() }

// Run reads the rules topic from its start until ctx is done: first up to
// the end offsets of when it starts (then Ready), then every new record.
func (s *RuleStore) Run(ctx context.Context) error {
	ends, err := s.endOffsets(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	s.mu.Lock()
	s.ends = ends
	s.checkLoaded()
	close(s.changed) // WaitReady: maybe loaded already (an empty topic)
	s.changed = make(chan struct{})
	s.mu.Unlock()
	var lastErr time.Time
	for {
		fetches := s.cl.PollFetches(ctx)
		if ctx.Err() != nil || fetches.IsClientClosed() {
			return nil
		}
		fetches.EachError(func(topic string, p int32, err error) {
			if time.Since(lastErr) > 10*time.Second {
				lastErr = time.Now()
				s.cfg.Logger.Warn("views: reading the rules topic", "topic", topic, "partition", p, "err", err)
			}
		})
		s.mu.Lock()
		fetches.EachRecord(s.apply)
		s.checkLoaded()
		close(s.changed)
		s.changed = make(chan struct{})
		s.mu.Unlock()
	}
}

// endOffsets returns the offset after the last record of each partition
// of the rules topic, retrying until Kafka answers or ctx ends.
func (s *RuleStore) endOffsets(ctx context.Context) (map[int32]int64, error) {
	adm := kadm.NewClient(s.cl)
	for {
		lctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		offs, err := adm.ListEndOffsets(lctx, schemas.TopicTagRules)
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
			err = fmt.Errorf("no partitions of %s", schemas.TopicTagRules)
		}
		if errors.Is(err, kgo.ErrClientClosed) {
			return nil, fmt.Errorf("views: rule store: end offsets of %s: %w", schemas.TopicTagRules, err)
		}
		s.cfg.Logger.Warn("views: rule store: end offsets of the rules topic", "err", err)
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("views: rule store: end offsets of %s: %w", schemas.TopicTagRules, err)
		case <-time.After(time.Second):
		}
	}
}

// checkLoaded marks the store loaded once every partition was read up to
// its start-time end. Called with mu held.
func (s *RuleStore) checkLoaded() {
	if s.ends == nil || s.loaded {
		return
	}
	for p, end := range s.ends {
		if s.next[p] < end {
			return
		}
	}
	s.loaded = true
	s.cfg.Logger.Info("views: rule store loaded", "topic", schemas.TopicTagRules)
}

// apply takes one record into the copy. Called with mu held.
func (s *RuleStore) apply(r *kgo.Record) {
	if r.Offset+1 > s.next[r.Partition] {
		s.next[r.Partition] = r.Offset + 1
	}
	key := string(r.Key)
	if r.Value == nil { // a tombstone (not written by the API): the rule is gone
		if i := strings.LastIndexByte(key, '/'); i >= 0 {
			tenant, id := key[:i], key[i+1:]
			if old, ok := s.rules[tenant][id]; ok {
				s.count(&old, -1)
				delete(s.rules[tenant], id)
			}
		}
		return
	}
	var rule schemas.TagRule
	if err := json.Unmarshal(r.Value, &rule); err != nil || schemas.RuleKey(rule.Tenant, rule.ID) != key {
		s.cfg.Logger.Warn("views: rule store: a record that is not a tag rule of its key, skipped",
			"partition", r.Partition, "offset", r.Offset, "key", key, "err", err)
		return
	}
	m := s.rules[rule.Tenant]
	if m == nil {
		m = map[string]schemas.TagRule{}
		s.rules[rule.Tenant] = m
	}
	if old, ok := m[rule.ID]; ok {
		s.count(&old, -1)
	}
	m[rule.ID] = rule
	s.count(&rule, +1)
}

func (s *RuleStore) count(r *schemas.TagRule, d float64) {
	if r.Active() {
		s.active.WithLabelValues(r.Tenant).Add(d)
	}
}

// Ready reports whether the store has read the topic up to where it ended
// when the store started.
func (s *RuleStore) Ready() bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.loaded
}

// WaitReady returns once the store is Ready, or ErrRulesNotReady when ctx
// ends first.
func (s *RuleStore) WaitReady(ctx context.Context) error {
	for {
		s.mu.RLock()
		ready, ch := s.loaded, s.changed
		s.mu.RUnlock()
		if ready {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ErrRulesNotReady
		}
	}
}

// Get returns the tenant's rule id, deleted or not; false if it never had
// one.
func (s *RuleStore) Get(tenant, id string) (schemas.TagRule, bool, error) {
	if !s.Ready() {
		return schemas.TagRule{}, false, ErrRulesNotReady
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	r, ok := s.rules[tenant][id]
	return r, ok, nil
}

// List returns the tenant's rules that are not deleted, by id.
func (s *RuleStore) List(tenant string) ([]schemas.TagRule, error) {
	if !s.Ready() {
		return nil, ErrRulesNotReady
	}
	s.mu.RLock()
	out := make([]schemas.TagRule, 0, len(s.rules[tenant]))
	for _, r := range s.rules[tenant] {
		if !r.Deleted {
			out = append(out, r)
		}
	}
	s.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// Put writes rule (Tenant, ID, Tag, Condition, Description, Enabled and
// UpdatedBy; the store sets Version and UpdatedAt) unless the tenant's
// current rule of that id says the same, and returns the stored rule.
func (s *RuleStore) Put(ctx context.Context, rule schemas.TagRule) (schemas.TagRule, RuleChange, error) {
	s.write.Lock()
	defer s.write.Unlock()
	prev, ok, err := s.Get(rule.Tenant, rule.ID)
	if err != nil {
		return schemas.TagRule{}, "", err
	}
	change := RuleCreated
	if ok && !prev.Deleted {
		if prev.Tag == rule.Tag && prev.Condition == rule.Condition && prev.Description == rule.Description && prev.Enabled == rule.Enabled {
			return prev, RuleUnchanged, nil
		}
		change = RuleUpdated
	}
	rule.Deleted = false
	stored, err := s.produce(ctx, rule, prev.Version)
	if err != nil {
		return schemas.TagRule{}, "", err
	}
	s.writes.WithLabelValues(map[RuleChange]string{RuleCreated: "create", RuleUpdated: "update"}[change]).Inc()
	return stored, change, nil
}

// Delete writes a deleted record of the tenant's rule id (the next
// version, kept by compaction: a later PUT continues the count), or
// returns ErrRuleNotFound if there is none or it is deleted already.
func (s *RuleStore) Delete(ctx context.Context, tenant, id, by string) (schemas.TagRule, error) {
	s.write.Lock()
	defer s.write.Unlock()
	prev, ok, err := s.Get(tenant, id)
	if err != nil {
		return schemas.TagRule{}, err
	}
	if !ok || prev.Deleted {
		return schemas.TagRule{}, ErrRuleNotFound
	}
	rule := prev
	rule.Deleted, rule.UpdatedBy = true, by
	stored, err := s.produce(ctx, rule, prev.Version)
	if err != nil {
		return schemas.TagRule{}, err
	}
	s.writes.WithLabelValues("delete").Inc()
	return stored, nil
}

// produce writes rule with the version after prev (and after any this
// instance issued), then waits until the store's copy has read it. Called
// with write held.
func (s *RuleStore) produce(ctx context.Context, rule schemas.TagRule, prev int64) (schemas.TagRule, error) {
	key := schemas.RuleKey(rule.Tenant, rule.ID)
	rule.Version = max(prev, s.issued[key]) + 1
	rule.UpdatedAt = s.cfg.Now().UTC().Truncate(time.Millisecond).Format(time.RFC3339Nano)
	val, err := json.Marshal(&rule)
	if err != nil {
		return schemas.TagRule{}, fmt.Errorf("views: encode rule: %w", err)
	}
	s.issued[key] = rule.Version
	rec := &kgo.Record{Topic: schemas.TopicTagRules, Key: []byte(key), Value: val}
	if err := s.cl.ProduceSync(ctx, rec).FirstErr(); err != nil {
		return schemas.TagRule{}, fmt.Errorf("%w: %w", ErrRuleUnavailable, err)
	}
	// Read your writes: the answer waits until the copy holds the record
	// (or a later one of the partition).
	if err := s.waitFor(ctx, rec.Partition, rec.Offset); err != nil {
		s.cfg.Logger.Warn("views: rule written, but the store has not read it back yet", "key", key, "version", rule.Version, "err", err)
	}
	return rule, nil
}

// waitFor returns once the copy has read partition p past offset.
func (s *RuleStore) waitFor(ctx context.Context, p int32, offset int64) error {
	for {
		s.mu.RLock()
		done, ch := s.next[p] > offset, s.changed
		s.mu.RUnlock()
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
