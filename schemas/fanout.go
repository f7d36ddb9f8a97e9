package schemas

import (
	"fmt"
	"hash/fnv"
	"regexp"
	"strings"
)

// Partner fan-out (docs/fanout.md): topics a partner publishes into, the
// access lists that say who may read them, subscriptions, and the records
// of the fan-out stage, keyed by profile id.

const (
	// TopicFanoutInput carries what the fan-out stage decides on, keyed
	// by profile id: topic events and status changes with the profile's
	// facts (from the identity root), subscription replays, a merge's
	// steps (absorbed from the identity root; handover and moved from the
	// fan-out stage itself); and the directory (topics, subscriptions),
	// broadcast to every partition under DirectoryKey. Value: JSON
	// FanoutInput.
	TopicFanoutInput = "rolodex.fanout.input"
	// TopicFanoutTopics (compacted, key "<tenant>/<name>") stores the
	// topics. Value: JSON TopicRecord.
	TopicFanoutTopics = "rolodex.fanout.topics"
	// TopicFanoutSubscriptions (compacted, key the subscription id) stores
	// the subscriptions, secrets included. Value: JSON SubscriptionRecord.
	TopicFanoutSubscriptions = "rolodex.fanout.subscriptions"
	// TopicFanoutDeliveries carries every record the fan-out group
	// decided (goka declares its outputs when the group is built, so it
	// cannot write to each partner's out topic itself), keyed by
	// "<subscription>/<profile>" (order per profile per subscription).
	// Value: JSON FanoutDelivery. The delivery stage reads it: a Kafka
	// subscription's records go to OutTopic(partner), a webhook's are
	// posted; a KindBlacklisted record (no body) cancels the key's
	// records before it that are not delivered yet.
	TopicFanoutDeliveries = "rolodex.fanout.deliveries"
	// TopicFanoutReports carries one FanoutReport per attempt and per
	// delivery end, keyed by subscription id.
	TopicFanoutReports = "rolodex.fanout.reports"
	// TopicOutDeadLetter holds the deliveries that were exhausted or
	// failed for good, keyed by subscription id, with their headers.
	TopicOutDeadLetter = "rolodex.out.deadletter"
	// GroupFanout is the goka group of the fan-out stage; its table topic
	// is "rolodex-fanout-table" (values: JSON FanoutState per profile,
	// JSON FanoutDirectory per DirectoryKey).
	GroupFanout = "rolodex-fanout"
	// GroupFanoutDirectory is the franz-go group of the step that
	// broadcasts the store topics' changes to every partition of
	// TopicFanoutInput.
	GroupFanoutDirectory = "rolodex-fanout-directory"
	// GroupFanoutReplay is the franz-go group of the step that performs
	// subscription replays: it reads TopicFanoutSubscriptions (its
	// committed offset marks the requests done) and writes
	// FanoutInput{replay} records to TopicFanoutInput.
	GroupFanoutReplay = "rolodex-fanout-replay"
	// GroupFanoutKafka is the franz-go group that writes the Kafka
	// subscriptions' records of TopicFanoutDeliveries to their partners'
	// out topics.
	GroupFanoutKafka = "rolodex-fanout-kafka"
	// GroupFanoutWebhooks is the franz-go group that posts the webhook
	// subscriptions' records of TopicFanoutDeliveries (the same topic: two
	// groups, each skipping the other's records).
	GroupFanoutWebhooks = "rolodex-fanout-webhooks"
)

// Kinds of a fan-out delivery (FanoutDelivery.Kind, the body's "kind", the
// rolodex_kind header).
const (
	KindTopicEvent     = "topic_event"
	KindConsentRevoked = "consent_revoked"
	// KindBlacklisted cancels, without sending anything, the records of
	// its key ("<subscription>/<profile>") before it on its partition of
	// TopicFanoutDeliveries that are not delivered yet: the profile was
	// blacklisted after they were decided (docs/fanout.md, "Blacklisting").
	// It has no body and never reaches a partner.
	KindBlacklisted = "blacklisted"
	// EventConsentRevokedType is a revocation record's "type" and ce_type.
	EventConsentRevokedType = "profile.consent_revoked"
	// EventBlacklistedType is a KindBlacklisted record's Type.
	EventBlacklistedType = "profile.blacklisted"
)

// Types of a FanoutReport (docs/fanout.md, "Reports").
const (
	// ReportAttempt: one webhook request (Result its class: success,
	// gone, permanent, retry; Status, LatencyMs).
	ReportAttempt = "delivery.attempt"
	// ReportDeliverySucceeded: the record was delivered (a webhook's 2xx;
	// a Kafka subscription's write to its out topic, Attempt 1).
	ReportDeliverySucceeded = "delivery.succeeded"
	// ReportDeliveryExhausted: every attempt of the schedule failed; the
	// record went to TopicOutDeadLetter.
	ReportDeliveryExhausted = "delivery.exhausted"
	// ReportDeliveryFailed: the receiver refused it for good (a 4xx other
	// than 410 and 429, Result permanent), or Kafka refused the out record
	// (Result refused); the record went to TopicOutDeadLetter.
	ReportDeliveryFailed = "delivery.failed"
	// ReportSubscriptionDisabled: the receiver answered 410; the
	// subscription was disabled (Result gone).
	ReportSubscriptionDisabled = "subscription.disabled"
	// ReportDeliveryDropped: the send-time check found the record no
	// longer deliverable (Result inactive, not_allowed or expired), or a
	// KindBlacklisted record after it cancelled it (Result blacklisted);
	// not dead-lettered.
	ReportDeliveryDropped = "delivery.dropped"
)

// Results of a dropped delivery (FanoutReport.Result of a
// ReportDeliveryDropped): FanoutInactive, FanoutNotAllowed,
// FanoutExpired (the body's consent.expires_at has passed) and
// FanoutBlacklisted (a KindBlacklisted record of its key came after it
// before it was delivered).
const FanoutExpired = "expired"

// Subscription statuses: only active is live.
const (
	SubscriptionActive   = "active"
	SubscriptionDisabled = "disabled"
	SubscriptionDeleted  = "deleted"
)

// Why a topic event, or one subscription of its topic, was not delivered
// (docs/fanout.md, "Entitlement"): the first rule that failed.
const (
	FanoutNoTopic     = "no_topic"     // no such topic in the event's tenant (or deleted)
	FanoutNotOwner    = "not_owner"    // the publisher does not own the topic
	FanoutNoProfile   = "no_profile"   // no profile facts
	FanoutBlacklisted = "blacklisted"  // the profile is blacklisted
	FanoutDuplicate   = "duplicate"    // the event id was handled before
	FanoutOtherTenant = "other_tenant" // the subscription is another tenant's
	FanoutInactive    = "inactive"     // the subscription is disabled or deleted
	FanoutNotAllowed  = "not_allowed"  // its partner is not on the access list
	FanoutNoConsent   = "consent"      // consent not granted, or expired
)

// TopicNameRe is what a topic name looks like.
var TopicNameRe = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,99}$`)

// Topic is a themed channel a partner publishes into.
type Topic struct {
	Tenant      string `json:"tenant"`
	Name        string `json:"name"`
	Owner       string `json:"owner"`
	Description string `json:"description,omitempty"`
	// Allowed are the partners (of the tenant) that may subscribe.
	Allowed []string `json:"allowed"`
	// RequiresConsent is a consent purpose the profile must have granted
	// (and not expired) at delivery time; empty: none.
	RequiresConsent string `json:"requires_consent,omitempty"`
	// IncludeProfile lists the profile fields each record carries:
	// "traits", "traits.X", "identifiers", "identifiers.T", "tags".
	IncludeProfile []string `json:"include_profile,omitempty"`
}

// Key is the topic's key on TopicFanoutTopics and in the directory.
func (t *Topic) Key() string { return TopicKey(t.Tenant, t.Name) }

// TopicKey is "<tenant>/<name>".
func TopicKey(tenant, name string) string { return tenant + "/" + name }

// Allows reports whether partner is on the access list.
func (t *Topic) Allows(partner string) bool {
	for _, p := range t.Allowed {
		if p == partner {
			return true
		}
	}
	return false
}

// ValidateIncludeField reports a field include_profile cannot name.
func ValidateIncludeField(f string) error {
	switch f {
	case "traits", "identifiers", "tags":
		return nil
	}
	for _, p := range []string{"traits.", "identifiers."} {
		if rest, ok := strings.CutPrefix(f, p); ok && rest != "" {
			return nil
		}
	}
	return fmt.Errorf("include_profile: %q is not a profile field (traits, traits.NAME, identifiers, identifiers.TYPE, tags)", f)
}

// Validate reports a topic that cannot be stored, naming the field.
func (t *Topic) Validate() error {
	if !TopicNameRe.MatchString(t.Name) {
		return fmt.Errorf("name: %q is not a topic name (%s)", t.Name, TopicNameRe)
	}
	if t.Tenant == "" || t.Owner == "" {
		return fmt.Errorf("topic %s: no tenant or owner", t.Name)
	}
	seen := map[string]bool{}
	for _, p := range t.Allowed {
		if p == "" || seen[p] {
			return fmt.Errorf("allowed: %q is empty or listed twice", p)
		}
		seen[p] = true
	}
	if t.RequiresConsent != "" && !NameRe.MatchString(t.RequiresConsent) {
		return fmt.Errorf("requires_consent: %q is not a consent purpose (%s)", t.RequiresConsent, NameRe)
	}
	for _, f := range t.IncludeProfile {
		if err := ValidateIncludeField(f); err != nil {
			return err
		}
	}
	return nil
}

// TopicRecord is a record of TopicFanoutTopics and a directory change.
type TopicRecord struct {
	Topic Topic `json:"topic"`
	// Version counts the topic's writes from 1; a record no newer than
	// the one held changes nothing.
	Version int64 `json:"version"`
	// Deleted: the topic is gone (a record, not a tombstone, so that the
	// version survives compaction).
	Deleted   bool   `json:"deleted,omitempty"`
	UpdatedAt string `json:"updated_at,omitempty"`
	UpdatedBy string `json:"updated_by,omitempty"`
}

// Subscription is a partner's subscription to a topic of its tenant.
type Subscription struct {
	ID      string `json:"id"`
	Tenant  string `json:"tenant"`
	Partner string `json:"partner"`
	// Topic is the topic's name in Tenant.
	Topic string `json:"topic"`
	// Exactly one of Kafka (records on OutTopic(Partner)) and Webhook.
	Kafka   bool              `json:"kafka,omitempty"`
	Webhook *SubscriptionHook `json:"webhook,omitempty"`
	Status  string            `json:"status"`
	// Reason says why a subscription is disabled (the 410's request).
	Reason    string `json:"reason,omitempty"`
	CreatedAt string `json:"created_at,omitempty"`
}

// SubscriptionHook is a subscription's endpoint.
type SubscriptionHook struct {
	URL string `json:"url"`
}

// Live reports whether the subscription receives records.
func (s *Subscription) Live() bool { return s.Status == SubscriptionActive }

// SubscriptionRecord is a record of TopicFanoutSubscriptions and a
// directory change.
type SubscriptionRecord struct {
	Subscription Subscription `json:"subscription"`
	// Secret signs the webhooks (whsec_...). Stored here, shown once by
	// the API, never copied into the directory broadcast.
	Secret string `json:"secret,omitempty"`
	// IdempotencyKey is the Idempotency-Key of the request that made the
	// subscription, if it had one: a retry with it is answered with this
	// subscription (docs/fanout.md, "Subscriptions").
	IdempotencyKey string `json:"idempotency_key,omitempty"`
	Version        int64  `json:"version"`
	UpdatedAt      string `json:"updated_at,omitempty"`
	// Replay is the latest replay the partner asked for (POST
	// /v1/subscriptions/{id}/replay); the replay step acts on a Replay
	// whose ID it has not done yet.
	Replay *SubscriptionReplay `json:"replay,omitempty"`
}

// SubscriptionReplay is a request to deliver a subscription's topic
// events again from Since on.
type SubscriptionReplay struct {
	ID string `json:"id"`
	// Since is the instant (RFC 3339, UTC, ms) from which the topic's
	// events are delivered again.
	Since       string `json:"since"`
	RequestedAt string `json:"requested_at"`
	// RequestedBy is the partner whose key asked.
	RequestedBy string `json:"requested_by,omitempty"`
}

// FanoutConsent is one consent purpose of a profile's facts.
type FanoutConsent struct {
	// Status is granted, denied or revoked (the write's; expiry is
	// decided at delivery from Expires).
	Status string `json:"status"`
	// Since is the instant of the write (Unix ms); Expires 0: never.
	Since   int64 `json:"since"`
	Expires int64 `json:"expires,omitempty"`
}

// GrantedAt reports whether the consent is granted and not expired at at
// (Unix ms).
func (c FanoutConsent) GrantedAt(at int64) bool {
	return c.Status == ConsentGranted && (c.Expires == 0 || at < c.Expires)
}

// FanoutProfile is what fan-out needs of a profile, as its identity root
// had it with the event folded in.
type FanoutProfile struct {
	ID          string                   `json:"id"`
	Tenant      string                   `json:"tenant"`
	Blacklisted bool                     `json:"blacklisted,omitempty"`
	Consent     map[string]FanoutConsent `json:"consent,omitempty"`
	// Traits: each value as its JSON encoding.
	Traits      map[string]string   `json:"traits,omitempty"`
	Identifiers map[string][]string `json:"identifiers,omitempty"`
	Tags        []string            `json:"tags,omitempty"`
}

// FanoutEvent is an event published into a topic, with its profile.
type FanoutEvent struct {
	Tenant string `json:"tenant"`
	// Topic is the topic's name in Tenant; Publisher the partner that
	// sent the event.
	Topic     string `json:"topic"`
	Publisher string `json:"publisher"`
	EventID   string `json:"event_id"`
	Type      string `json:"type"`
	// Time is the event time, Unix ms.
	Time int64 `json:"time"`
	// Properties: each value as its JSON encoding (like Event).
	Properties map[string]string `json:"properties,omitempty"`
	Profile    *FanoutProfile    `json:"profile,omitempty"`
}

// FanoutStatus is a change of a profile's blacklist or consent.
type FanoutStatus struct {
	// EventID is the status event that changed it.
	EventID string         `json:"event_id,omitempty"`
	Profile *FanoutProfile `json:"profile"`
}

// FanoutReplay asks for one event to be delivered again to one
// subscription (POST /v1/subscriptions/{id}/replay).
type FanoutReplay struct {
	Subscription string      `json:"subscription"`
	Event        FanoutEvent `json:"event"`
}

// FanoutAbsorbed tells the fan-out stage that the profile it is keyed by
// took in profile From (a merge: From's root accepted to join it). The
// identity root writes it after the status record of the merged profile
// (docs/fanout.md, "Merges").
type FanoutAbsorbed struct {
	From string `json:"from"`
}

// FanoutHandover asks the merged-away profile it is keyed by to hand what
// its subscriptions received (FanoutHoldings) to profile To. The fan-out
// stage writes it to its own input on a FanoutAbsorbed.
type FanoutHandover struct {
	To string `json:"to"`
}

// FanoutHoldings is what subscriptions received under one profile id:
// the consent purposes each holds, and the subscriptions sent a topic
// event since the profile's last blacklisting (FanoutState's Held, Sent);
// Granted, by HeldKey, the consent write (its since, Unix ms) under which
// the first record a holding stands for was delivered.
type FanoutHoldings struct {
	Held    map[string][]string `json:"held,omitempty"`
	Sent    []string            `json:"sent,omitempty"`
	Granted map[string]int64    `json:"granted,omitempty"`
}

// HeldKey names one holding: a subscription and a consent purpose.
func HeldKey(subscription, purpose string) string { return subscription + "/" + purpose }

// Empty reports whether h holds nothing.
func (h *FanoutHoldings) Empty() bool { return h == nil || (len(h.Held) == 0 && len(h.Sent) == 0) }

// FanoutMoved carries a merged-away profile's holdings, by the profile id
// the subscriptions received them under, to the profile it merged into;
// Seen are topic event ids it handled (so the survivor does not deliver
// them again). The fan-out stage writes it to its own input.
type FanoutMoved struct {
	From     string                     `json:"from"`
	Holdings map[string]*FanoutHoldings `json:"holdings,omitempty"`
	Seen     []string                   `json:"seen,omitempty"`
}

// FanoutInput is a record of TopicFanoutInput: exactly one of its parts.
type FanoutInput struct {
	Event        *FanoutEvent        `json:"event,omitempty"`
	Status       *FanoutStatus       `json:"status,omitempty"`
	Replay       *FanoutReplay       `json:"replay,omitempty"`
	Topic        *TopicRecord        `json:"topic,omitempty"`
	Subscription *SubscriptionRecord `json:"subscription,omitempty"`
	// A merge (docs/fanout.md, "Merges"): Absorbed from the identity
	// root; Handover and Moved from the fan-out stage itself.
	Absorbed *FanoutAbsorbed `json:"absorbed,omitempty"`
	Handover *FanoutHandover `json:"handover,omitempty"`
	Moved    *FanoutMoved    `json:"moved,omitempty"`
}

// Directory reports whether the record is a directory change (keyed by
// a DirectoryKey, not a profile id).
func (in *FanoutInput) Directory() bool { return in.Topic != nil || in.Subscription != nil }

// FanoutDelivery is one record for one subscription.
type FanoutDelivery struct {
	Kind         string `json:"kind"`
	Tenant       string `json:"tenant"`
	Partner      string `json:"partner"`
	Subscription string `json:"subscription"`
	Topic        string `json:"topic"`
	// Kafka: the subscription's records go to OutTopic(Partner); else
	// to its webhook.
	Kafka     bool   `json:"kafka,omitempty"`
	ProfileID string `json:"profile_id"`
	EventID   string `json:"event_id,omitempty"`
	// Type is the event's type, EventConsentRevokedType, or
	// EventBlacklistedType (a KindBlacklisted cancel).
	Type string `json:"type"`
	// At is the instant the stage decided it, Unix ms.
	At int64 `json:"at"`
	// WebhookID is stable across retries, crashes and replays.
	WebhookID string `json:"webhook_id"`
	Body      string `json:"body"`
	// Replay: made by a subscription replay.
	Replay bool `json:"replay,omitempty"`
}

// DeliveryKey is a delivery's key on TopicFanoutDeliveries.
func (d *FanoutDelivery) DeliveryKey() string { return d.Subscription + "/" + d.ProfileID }

// FanoutSent is a delivery in a profile's outbox: By is the origin
// (offset plus one) of the message that made it. An entry with Forward
// is instead a record the message wrote to TopicFanoutInput (a merge's
// handover or move), written again with the deliveries on a replay.
type FanoutSent struct {
	By       int64          `json:"by"`
	Delivery FanoutDelivery `json:"delivery"`
	Forward  *FanoutForward `json:"forward,omitempty"`
}

// FanoutForward is a record the fan-out stage writes to its own input,
// under Key.
type FanoutForward struct {
	Key   string      `json:"key"`
	Input FanoutInput `json:"input"`
}

// FanoutState is the fan-out table's value for one profile.
type FanoutState struct {
	ProfileID string `json:"profile_id"`
	// Facts are the latest facts seen (of an event or a status change).
	Facts *FanoutProfile `json:"facts,omitempty"`
	// Held: subscription → the consent purposes under which it received
	// the profile's records since their last revocation.
	Held map[string][]string `json:"held,omitempty"`
	// Sent: the subscriptions (sorted) sent a topic event of the profile
	// (a replay included) since its last blacklisting; the next
	// blacklisting sends each live one a KindBlacklisted record and empties
	// it. At most the tenant's subscriptions.
	Sent []string `json:"sent,omitempty"`
	// Seen: the latest topic event ids handled, oldest first.
	Seen []string `json:"seen,omitempty"`
	// By is the origin of the last message handled.
	By     int64        `json:"by,omitempty"`
	Outbox []FanoutSent `json:"outbox,omitempty"`
	// MergedInto: the profile this one merged into (its handover came);
	// what its subscriptions receive from then on is moved there.
	MergedInto string `json:"merged_into,omitempty"`
	// Aliases: the profiles merged into this one, by id, with what
	// subscriptions received under that id (docs/fanout.md, "Merges").
	Aliases map[string]*FanoutHoldings `json:"aliases,omitempty"`
	// HeldGranted is FanoutHoldings.Granted of Held.
	HeldGranted map[string]int64 `json:"held_granted,omitempty"`
	// Revoked: by purpose, the latest revocation or denial (its since)
	// the profile's facts showed; an alias holding granted before it is
	// told, even if the purpose was granted again since.
	Revoked map[string]int64 `json:"revoked,omitempty"`
}

// FanoutDirectory is a partition's copy of the topics and subscriptions
// (the table value of its DirectoryKey).
type FanoutDirectory struct {
	Topics        map[string]*TopicRecord        `json:"topics,omitempty"`
	Subscriptions map[string]*SubscriptionRecord `json:"subscriptions,omitempty"`
	By            int64                          `json:"by,omitempty"`
}

// FanoutReport is a record of TopicFanoutReports.
type FanoutReport struct {
	Type         string `json:"type"`
	Tenant       string `json:"tenant"`
	Partner      string `json:"partner"`
	Topic        string `json:"topic"`
	Subscription string `json:"subscription"`
	WebhookID    string `json:"webhook_id"`
	Attempt      int    `json:"attempt"`
	Status       int    `json:"status,omitempty"`
	Result       string `json:"result"`
	LatencyMs    int64  `json:"latency_ms"`
	At           int64  `json:"at"`
	Error        string `json:"error,omitempty"`
	// Kind is the record's kind (KindTopicEvent, KindConsentRevoked;
	// never KindBlacklisted: a cancel is not reported, what it drops is);
	// Channel "kafka" or "webhook"; ProfileID and EventID (empty for a
	// revocation) name what it carried.
	Kind      string `json:"kind,omitempty"`
	Channel   string `json:"channel,omitempty"`
	ProfileID string `json:"profile_id,omitempty"`
	EventID   string `json:"event_id,omitempty"`
}

// DirectoryKeyPrefix starts every directory key.
const DirectoryKeyPrefix = "~directory/"

// DirectoryKey is the key of partition p's directory, of partitions in
// all: "~directory/<p>/<n>" with the smallest n that goka's default
// hasher (FNV-1a 32, sarama's hash partitioner) puts on p, so that the
// directory's table value stays in partition p.
func DirectoryKey(p, partitions int32) string {
	for n := 0; ; n++ {
		k := fmt.Sprintf("%s%d/%d", DirectoryKeyPrefix, p, n)
		if HashPartition(k, partitions) == p {
			return k
		}
	}
}

// HashPartition is the partition goka's default hasher gives key.
func HashPartition(key string, partitions int32) int32 {
	h := fnv.New32a()
	h.Write([]byte(key))
	q := int32(h.Sum32()) % partitions
	if q < 0 {
		q = -q
	}
	return q
}

// What the ClickHouse sink relies on of a FanoutReport (docs/fanout.md,
// "ClickHouse and reports"): the type of a report of one attempt (every
// other type ends a delivery) and the results it tells apart. An
// attempt's result is its class (success, retry, gone, permanent); a
// delivery end's is success, exhausted, permanent, gone, refused (Kafka
// refused a Kafka subscription's record for good: failed, as permanent),
// or why it was dropped (FanoutInactive, FanoutNotAllowed,
// ReportResultExpired, FanoutBlacklisted).
const (
	ReportDeliveryAttempt = "delivery.attempt"

	ReportResultSuccess   = "success"
	ReportResultRetry     = "retry"
	ReportResultGone      = "gone"
	ReportResultPermanent = "permanent"
	ReportResultExhausted = "exhausted"
	ReportResultExpired   = "expired"
	ReportResultRefused   = "refused"
)
