package views

// The routing-rule store behind PUT and GET /v1/routing/rules
// (docs/routing.md, "Rules"): every tenant's ordered list of routing
// rules, one record per tenant (key: the tenant) on the compacted topic
// rolodex.routing.rules, read whole into memory, written with acks=all.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rolodex/rolodex/schemas"
)

// ErrRoutingNotReady says the routing-rule store has not read its topic up
// to its end yet.
var ErrRoutingNotReady = errors.New("views: the routing-rule store is still loading rolodex.routing.rules")

// ErrRoutingTooLarge says a list's record would pass MaxRoutingBytes.
var ErrRoutingTooLarge = errors.New("views: the routing rules are too large")

// MaxRoutingBytes bounds a tenant's list as written (JSON), under Kafka's
// default max.message.bytes (1 MB) of the topic.
const MaxRoutingBytes = 900_000

// RoutingStore holds every tenant's routing rules: the latest record of
// each key (a tenant) of rolodex.routing.rules, read like the tag rules
// (RuleStore: a consumer without a group, the whole topic in memory; a
// write's answer waits until this instance has read it back). Each write
// is the tenant's whole list with the version after the one it replaces
// (and after any this instance issued): the routing stage takes a list
// only when its version is above the one it holds. Two API instances
// writing one tenant's list at the same instant may pick the same
// version; the stage keeps the first of the two, a known limit (as for
// the tag rules).
type RoutingStore struct {
	*compactedCopy
	cfg RuleStoreConfig

	write  sync.Mutex       // serialises writes: version, produce, wait
	issued map[string]int64 // the latest version this instance produced per tenant

	// lists is the copy of the topic, guarded by compactedCopy.mu.
	lists map[string]schemas.RoutingRules

	writes prometheus.Counter
}

// NewRoutingStore builds a store (configured like a RuleStore; the
// client id defaults to rolodex-routing-rules); Run reads the topic. The
// topic must exist (cmd creates it with the routing topics).
func NewRoutingStore(cfg RuleStoreConfig) (*RoutingStore, error) {
	cfg.setDefaults("rolodex-routing-rules")
	s := &RoutingStore{cfg: cfg, issued: map[string]int64{}, lists: map[string]schemas.RoutingRules{},
		writes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rolodex_routing_rules_writes_total",
			Help: "Routing rule lists the API wrote (PUT /v1/routing/rules) and Kafka acknowledged.",
		})}
	c, err := newCompactedCopy(cfg.Kafka, schemas.TopicRoutingRules, "routing-rule store", cfg.Logger, s.apply)
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
func (s *RoutingStore) apply(r *kgo.Record) {
	key := string(r.Key)
	if r.Value == nil { // a tombstone (not written by the API)
		delete(s.lists, key)
		return
	}
	var rl schemas.RoutingRules
	if err := json.Unmarshal(r.Value, &rl); err != nil || rl.Tenant != key {
		s.cfg.Logger.Warn("views: routing-rule store: a record that is not the routing rules of its key, skipped",
			"partition", r.Partition, "offset", r.Offset, "key", key, "err", err)
		return
	}
	s.lists[key] = rl
}

// WaitReady returns once the store is Ready, or ErrRoutingNotReady when
// ctx ends first.
func (s *RoutingStore) WaitReady(ctx context.Context) error {
	return s.waitReady(ctx, ErrRoutingNotReady)
}

// Get returns the tenant's current list: version 0 and no rules when it
// has none.
func (s *RoutingStore) Get(tenant string) (schemas.RoutingRules, error) {
	if !s.Ready() {
		return schemas.RoutingRules{}, ErrRoutingNotReady
	}
	s.mu.RLock()
	rl, ok := s.lists[tenant]
	s.mu.RUnlock()
	if !ok {
		rl = schemas.RoutingRules{Tenant: tenant}
	}
	if rl.Rules == nil {
		rl.Rules = []schemas.RoutingRule{}
	}
	return rl, nil
}

// Put writes list as the tenant's whole list (UpdatedBy from by; the
// store sets Version and UpdatedAt) and returns the stored list. The
// caller validates it (rules.ValidateRouting).
func (s *RoutingStore) Put(ctx context.Context, tenant string, list []schemas.RoutingRule, by string) (schemas.RoutingRules, error) {
	s.write.Lock()
	defer s.write.Unlock()
	prev, err := s.Get(tenant)
	if err != nil {
		return schemas.RoutingRules{}, err
	}
	if list == nil {
		list = []schemas.RoutingRule{}
	}
	rl := schemas.RoutingRules{Tenant: tenant, Version: max(prev.Version, s.issued[tenant]) + 1, Rules: list,
		UpdatedAt: s.cfg.Now().UTC().Truncate(time.Millisecond).Format(time.RFC3339Nano), UpdatedBy: by}
	val, err := json.Marshal(&rl)
	if err != nil {
		return schemas.RoutingRules{}, fmt.Errorf("views: encode routing rules: %w", err)
	}
	if len(val) > MaxRoutingBytes {
		return schemas.RoutingRules{}, fmt.Errorf("%w: %d bytes as written; at most %d", ErrRoutingTooLarge, len(val), MaxRoutingBytes)
	}
	s.issued[tenant] = rl.Version
	if err := s.produce(ctx, &kgo.Record{Topic: schemas.TopicRoutingRules, Key: []byte(tenant), Value: val}, ErrRuleUnavailable); err != nil {
		return schemas.RoutingRules{}, err
	}
	s.writes.Inc()
	return rl, nil
}
