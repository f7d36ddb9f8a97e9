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

// setDefaults fills in the defaults, clientID the Kafka client's.
func (c *RuleStoreConfig) setDefaults(clientID string) {
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Kafka.ClientID == "" {
		c.Kafka.ClientID = clientID
	}
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
	*compactedCopy
	cfg RuleStoreConfig

	// write serialises writes: version, produce, wait.
	write sync.Mutex
	// issued is the latest version this instance produced per key,
	// acknowledged or not (a record whose acknowledgement timed out may
	// still land).
	issued map[string]int64

	// rules is the copy of the topic, guarded by compactedCopy.mu.
	rules map[string]map[string]schemas.TagRule // tenant → id → latest record

	writes *prometheus.CounterVec
	active *prometheus.GaugeVec
}

// NewRuleStore builds a store; Run reads the topic. The topic must exist
// (cmd creates it with the base topics).
func NewRuleStore(cfg RuleStoreConfig) (*RuleStore, error) {
	cfg.setDefaults("rolodex-rules")
	s := &RuleStore{
		cfg: cfg, issued: map[string]int64{},
		rules: map[string]map[string]schemas.TagRule{},
		writes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rolodex_tag_rules_writes_total",
			Help: "Tag rule records the API wrote and Kafka acknowledged, by op: create, update, delete (an unchanged PUT writes nothing).",
		}, []string{"op"}),
		active: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "rolodex_tag_rules_active",
			Help: "Active tag rules (enabled, not deleted) per tenant, as this API instance reads rolodex.tag.rules.",
		}, []string{"tenant"}),
	}
	c, err := newCompactedCopy(cfg.Kafka, schemas.TopicTagRules, "rule store", cfg.Logger, s.apply)
	if err != nil {
		return nil, err
	}
	s.compactedCopy = c
	if cfg.Registerer != nil {
		cfg.Registerer.MustRegister(s.writes, s.active)
	}
	return s, nil
}

// apply takes one record into the copy. Called with mu held.
func (s *RuleStore) apply(r *kgo.Record) {
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

// WaitReady returns once the store is Ready, or ErrRulesNotReady when ctx
// ends first.
func (s *RuleStore) WaitReady(ctx context.Context) error { return s.waitReady(ctx, ErrRulesNotReady) }

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
	if err := s.compactedCopy.produce(ctx, &kgo.Record{Topic: schemas.TopicTagRules, Key: []byte(key), Value: val}, ErrRuleUnavailable); err != nil {
		return schemas.TagRule{}, err
	}
	return rule, nil
}
