package intake

import (
	"errors"
	"fmt"

	"github.com/rolodex/rolodex/partners"
	"github.com/rolodex/rolodex/schemas"
)

// Rejection reasons of a topic event (docs/fanout.md, "How a topic event
// gets its profile"): the event names a partner fan-out topic that its
// tenant does not have (or deleted), or that the sending partner does not
// own.
const (
	ReasonUnknownTopic  = "unknown_topic"
	ReasonNotTopicOwner = "not_topic_owner"
)

// HeaderTopic is the Kafka ingest header that makes a record a topic
// event: its value is the topic's name in the partner's tenant.
const HeaderTopic = "rolodex-topic"

// Topics is what ingest reads of the fan-out topics: the latest record of
// a tenant's topic (deleted or not; false: never written). The API's
// topic store (views.TopicStore) is one; an error means the answer is not
// known yet (the store is loading).
type Topics interface {
	Get(tenant, name string) (schemas.TopicRecord, bool, error)
}

// ErrNoTopics is returned by CheckTopic when ingest has no topic store.
var ErrNoTopics = errors.New("intake: topic events are not served here (no topic store)")

// CheckTopic says whether partner p may publish into its tenant's topic
// name: nil when the topic exists (not deleted) and p owns it, else the
// rejection (ReasonUnknownTopic, ReasonNotTopicOwner). err is set (and rej
// nil) when the answer is not known: no store, or the store's error.
func CheckTopic(t Topics, p *partners.Partner, name string) (rej *Rejection, err error) {
	if t == nil {
		return nil, ErrNoTopics
	}
	if !schemas.TopicNameRe.MatchString(name) {
		return reject(ReasonUnknownTopic, "%q is not a topic name (%s)", name, schemas.TopicNameRe), nil
	}
	rec, ok, err := t.Get(p.Tenant, name)
	if err != nil {
		return nil, fmt.Errorf("intake: topic %q: %w", name, err)
	}
	if !ok || rec.Deleted {
		return reject(ReasonUnknownTopic, "tenant %q has no topic %q", p.Tenant, name), nil
	}
	if rec.Topic.Owner != p.Name {
		return reject(ReasonNotTopicOwner, "topic %q belongs to partner %q: only its owner publishes into it", name, rec.Topic.Owner), nil
	}
	return nil, nil
}
