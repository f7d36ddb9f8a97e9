package schemas

import (
	"fmt"
	"time"
)

// Lead routing (docs/routing.md): the records of the routing topics and the
// routing stage's table value, keyed by tenant.

const (
	// TopicRoutingInput carries what the routing stage decides on, keyed
	// by tenant (the routing key: docs/routing.md): leads with their
	// profile facts (from the identity stage), feedback and follow-ups.
	// Value: JSON RoutingInput.
	TopicRoutingInput = "rolodex.routing.input"
	// TopicRoutingRules (compacted, key tenant) holds each tenant's whole
	// ordered list of routing rules, versioned. Value: JSON RoutingRules.
	TopicRoutingRules = "rolodex.routing.rules"
	// TopicRoutingTicks carries the SLA scheduler's wake-ups, keyed by
	// tenant. Value: JSON RoutingTick.
	TopicRoutingTicks = "rolodex.routing.ticks"
	// TopicRoutingOutcomes carries one LeadOutcome per routing outcome,
	// keyed by lead id.
	TopicRoutingOutcomes = "rolodex.routing.outcomes"
	// GroupRouting is the goka group of the routing stage; its table
	// topic is "rolodex-routing-table" (values: JSON RoutingTable).
	GroupRouting = "rolodex-routing"
	// GroupRoutingRouter is the stateless goka group that re-keys
	// feedback and follow-ups from rolodex.events by tenant onto
	// TopicRoutingInput.
	GroupRoutingRouter = "rolodex-routing-router"
	// GroupLeadDelivery is the franz-go consumer group of lead delivery
	// (connectors/webhooks): it reads TopicRoutingOutcomes and writes each
	// lead.routed and lead.forwarded of a partner with a delivery to the
	// partner's OutTopic.
	GroupLeadDelivery = "rolodex-lead-delivery"
	// GroupWebhookPrefix + partner is the consumer group that sends a
	// webhook partner's OutTopic to its URL.
	GroupWebhookPrefix = "rolodex-webhook-"
	// OutTopicPrefix + partner is a partner's outbound topic: what it
	// receives, on Kafka (delivery kafka: true) or as the queue of its
	// webhook.
	OutTopicPrefix = "rolodex.out."
)

// OutTopic is the partner's outbound topic.
func OutTopic(partner string) string { return OutTopicPrefix + partner }

// Event types of routing.
const (
	// DefaultLeadType is routing.lead_types' default.
	DefaultLeadType   = "lead.created"
	EventLeadAccepted = "lead.accepted"
	EventLeadRejected = "lead.rejected"

	// Outcome types (LeadOutcome.Type).
	OutcomeRouted         = "lead.routed"
	OutcomeUnrouted       = "lead.unrouted"
	OutcomeAccepted       = "lead.accepted"
	OutcomeRejected       = "lead.rejected"
	OutcomeForwarded      = "lead.forwarded"
	OutcomeDistributed    = "lead.distributed"
	OutcomeDeliveryFailed = "lead.delivery_failed"
)

// Strategies of a routing rule.
const (
	StrategyFirst      = "first"
	StrategyRoundRobin = "round_robin"
	StrategyWeighted   = "weighted"
)

// Lead statuses.
const (
	LeadRouted   = "routed"
	LeadAccepted = "accepted"
	LeadUnrouted = "unrouted"
)

// Unrouted reasons (LeadState.Reason, RoutingDecision.Unrouted).
const (
	UnroutedBlacklisted  = "blacklisted"
	UnroutedNoMatch      = "no_match"
	UnroutedNoEligible   = "no_eligible"
	UnroutedSLAExhausted = "sla_exhausted"
)

// Why a rule or a partner was skipped (RoutingCandidate.Skip).
const (
	SkipNoMatch = "no_match" // the rule's condition is false
	SkipError   = "error"    // the rule's condition failed at run time
	SkipConsent = "consent"  // the profile has not granted the rule's purpose
	SkipTenant  = "tenant"   // the partner belongs to another tenant
	SkipTried   = "tried"    // the partner already had this lead
	SkipCap     = "cap"      // the partner reached its cap for its day
	SkipHours   = "hours"    // outside the partner's working hours
	SkipVisited = "visited"  // a fallback back to a rule this decision visited
	SkipTurn    = "turn"     // eligible, but the strategy chose another
)

// Causes of a decision.
const (
	CauseLead           = "lead"
	CauseRejected       = "rejected"
	CauseSLA            = "sla"
	CauseDeliveryFailed = "delivery_failed"
)

// Delivery of a lead to its partner (docs/routing.md, "Delivery").

// PartnerDelivery is how a partner receives the leads routed to it (the
// config file's partners[].delivery): a webhook, or its Kafka topic
// OutTopic(partner); with a mapping from the lead to the partner CRM's
// format.
type PartnerDelivery struct {
	Webhook *WebhookTarget `yaml:"webhook" json:"webhook,omitempty"`
	// Kafka: the leads stay on OutTopic(partner) for the partner to read.
	Kafka bool `yaml:"kafka" json:"kafka,omitempty"`
	// Mapping maps a target path of the partner's body ("cliente.nome")
	// to a source: a path of the lead ("traits.name",
	// "identifiers.email", "properties.model", "lead.id"), a constant
	// ("=rolodex"), or {from: path, map: {value: value}, default: value}.
	// Empty: the lead as Rolodex writes it.
	Mapping map[string]any `yaml:"mapping" json:"mapping,omitempty"`
}

// WebhookTarget is a partner's CRM endpoint.
type WebhookTarget struct {
	URL string `yaml:"url" json:"url"`
	// Secret signs each request the Standard Webhooks way (base64,
	// optionally prefixed "whsec_").
	Secret string `yaml:"secret" json:"-"`
	// PerMinute is the most requests a minute (0: no limit); leads wait
	// in the partner's topic, never dropped.
	PerMinute int `yaml:"per_minute" json:"per_minute,omitempty"`
	// Timeout of one request (Go duration; default 15s).
	Timeout string `yaml:"timeout" json:"timeout,omitempty"`
}

// LeadDelivery is the delivery stage's report of one delivery, back to
// the routing stage (RoutingInput.Delivery): a failed delivery re-routes
// the lead (cause delivery_failed) when it is still the lead's current
// attempt with that partner; otherwise it changes nothing.
type LeadDelivery struct {
	LeadID  string `json:"lead_id"`
	Partner string `json:"partner"`
	Attempt int    `json:"attempt"`
	OK      bool   `json:"ok"`
	// Status is the last HTTP status (0: none, or Kafka).
	Status int `json:"status,omitempty"`
	// Error says why it failed.
	Error string `json:"error,omitempty"`
	// Tries is how many requests were made.
	Tries int `json:"tries,omitempty"`
}

// RoutingPoolEntry is one partner of a rule's pool.
type RoutingPoolEntry struct {
	Partner string `json:"partner"`
	// Weight is the partner's weight in a weighted rule (at least 1;
	// 0 reads as 1).
	Weight int `json:"weight,omitempty"`
}

// W is the entry's weight, 1 when unset.
func (e RoutingPoolEntry) W() int {
	if e.Weight < 1 {
		return 1
	}
	return e.Weight
}

// RoutingRule is one rule of a tenant's ordered list.
type RoutingRule struct {
	ID        string             `json:"id"`
	Condition string             `json:"condition"`
	Strategy  string             `json:"strategy"`
	Pool      []RoutingPoolEntry `json:"pool"`
	// CapPerDay maps a partner to the most leads this rule sends it per
	// day of the partner's time zone (every rule's leads count).
	CapPerDay map[string]int `json:"cap_per_day,omitempty"`
	// OutsideHours: the partners' working hours do not apply.
	OutsideHours bool `json:"outside_hours,omitempty"`
	// Consent is a purpose the profile must have granted.
	Consent string `json:"consent,omitempty"`
	// SLA is how long a routed lead may wait for acceptance (Go
	// duration, "30m"); empty: no SLA.
	SLA string `json:"sla,omitempty"`
	// MaxReroutes is how many SLA re-routes a lead may have.
	MaxReroutes int `json:"max_reroutes,omitempty"`
	// Fallback is another rule's id or a partner's name.
	Fallback string `json:"fallback,omitempty"`
}

// SLADuration parses SLA; 0 when unset.
func (r *RoutingRule) SLADuration() (time.Duration, error) {
	if r.SLA == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(r.SLA)
	if err != nil {
		return 0, fmt.Errorf("rule %s: sla: %w", r.ID, err)
	}
	if d <= 0 {
		return 0, fmt.Errorf("rule %s: sla %q must be positive", r.ID, r.SLA)
	}
	return d, nil
}

// RoutingRules is a tenant's whole ordered list of routing rules.
type RoutingRules struct {
	Tenant string `json:"tenant"`
	// Version counts the list's writes from 1.
	Version   int64         `json:"version"`
	Rules     []RoutingRule `json:"rules"`
	UpdatedAt string        `json:"updated_at,omitempty"`
	UpdatedBy string        `json:"updated_by,omitempty"`
}

// PartnerRouting is a partner's routing configuration (the config file's
// partners): its time zone and working hours.
type PartnerRouting struct {
	Name string `json:"name"`
	// Tenant is the partner's tenant: a partner is never chosen for
	// another tenant's lead (empty: not checked, for tests).
	Tenant string `json:"tenant,omitempty"`
	// Timezone is an IANA zone name; empty is UTC.
	Timezone string `json:"timezone,omitempty"`
	// WorkingHours maps days ("mon-fri", "sat", "mon,wed") to one
	// window "HH:MM-HH:MM" of wall-clock time, start inclusive, end
	// exclusive; none: always open.
	WorkingHours map[string]string `json:"working_hours,omitempty"`
}

// RoutingLead is a lead with the facts of its profile, as the identity
// stage saw them with the lead folded in.
type RoutingLead struct {
	// ID is properties.lead_id, else the event id.
	ID      string `json:"id"`
	EventID string `json:"event_id"`
	Type    string `json:"type"`
	// Time is the event time, Unix ms.
	Time int64 `json:"time"`
	// Properties, Traits: each value as its JSON encoding (like Event).
	Properties  map[string]string   `json:"properties,omitempty"`
	Traits      map[string]string   `json:"traits,omitempty"`
	Identifiers map[string][]string `json:"identifiers,omitempty"`
	// Profile is the lead's profile (status, traits, identifiers), nil if
	// unknown.
	Profile *Profile `json:"profile,omitempty"`
}

// PropLeadID is the property naming a lead: a lead event's own id (a
// CRM's lead id, so that the same lead sent twice is one lead), and the
// lead that feedback and follow-ups are about.
const PropLeadID = "lead_id"

// LeadOf is the lead an event of a lead type makes, without its profile:
// its id is properties.lead_id when the event has one, else the event id.
func LeadOf(ev *Event) *RoutingLead {
	l := &RoutingLead{ID: StringProperty(ev, PropLeadID), EventID: ev.ID, Type: ev.Type, Time: ev.Time.UnixMilli(),
		Properties: ev.Properties, Traits: ev.Traits}
	if l.ID == "" {
		l.ID = ev.ID
	}
	if len(ev.Identifiers) > 0 {
		l.Identifiers = map[string][]string{}
		for _, id := range ev.Identifiers {
			l.Identifiers[id.Type] = append(l.Identifiers[id.Type], id.Value)
		}
	}
	return l
}

// Closed is the lead as a closed lead keeps it: its profile reduced to
// its id (a closed lead is never decided again, and the tenant's state
// keeps closed leads for the retention).
func (l *RoutingLead) Closed() *RoutingLead {
	if l == nil || l.Profile == nil {
		return l
	}
	c := *l
	c.Profile = &Profile{ID: l.Profile.ID, Tenant: l.Profile.Tenant}
	return &c
}

// LeadFeedback is a partner's answer about a lead it holds.
type LeadFeedback struct {
	LeadID string `json:"lead_id"`
	// Partner is the partner whose key sent the feedback.
	Partner  string `json:"partner"`
	Accepted bool   `json:"accepted"`
	Reason   string `json:"reason,omitempty"`
}

// LeadFollowUp is a later event about a lead (lead.updated,
// opportunity.updated), for the partner that holds it.
type LeadFollowUp struct {
	LeadID     string            `json:"lead_id"`
	EventID    string            `json:"event_id"`
	Type       string            `json:"type"`
	Properties map[string]string `json:"properties,omitempty"`
}

// RoutingInput is a record of TopicRoutingInput: exactly one of its parts.
type RoutingInput struct {
	Tenant   string        `json:"tenant"`
	Lead     *RoutingLead  `json:"lead,omitempty"`
	Feedback *LeadFeedback `json:"feedback,omitempty"`
	FollowUp *LeadFollowUp `json:"follow_up,omitempty"`
	Delivery *LeadDelivery `json:"delivery,omitempty"`
}

// RoutingTick is a record of TopicRoutingTicks.
type RoutingTick struct {
	Tenant string `json:"tenant"`
	// At is the wake instant, Unix ms.
	At int64 `json:"at"`
}

// RoutingCandidate is a rule or a partner a decision considered: Skip
// says why it was passed over, empty for the chosen partner.
type RoutingCandidate struct {
	Rule    string `json:"rule"`
	Partner string `json:"partner,omitempty"`
	Skip    string `json:"skip,omitempty"`
	Error   string `json:"error,omitempty"`
}

// RoutingDecision is one decision about a lead.
type RoutingDecision struct {
	// Attempt counts the lead's decisions from 1.
	Attempt int    `json:"attempt"`
	Cause   string `json:"cause"`
	// At is the decision instant, Unix ms.
	At          int64  `json:"at"`
	Rule        string `json:"rule,omitempty"`
	RuleVersion int64  `json:"rule_version,omitempty"`
	Partner     string `json:"partner,omitempty"`
	// Unrouted is the reason when no partner was chosen.
	Unrouted   string             `json:"unrouted,omitempty"`
	Candidates []RoutingCandidate `json:"candidates,omitempty"`
}

// LeadState is a lead's state in the routing table.
type LeadState struct {
	ID     string `json:"id"`
	Status string `json:"status"`
	// Partner holds the lead (routed, accepted).
	Partner string `json:"partner,omitempty"`
	// Reason is why an unrouted lead is.
	Reason string `json:"reason,omitempty"`
	// Tried lists every partner the lead was routed to, in order.
	Tried []string `json:"tried,omitempty"`
	// Deadline is the SLA deadline of a routed lead (Unix ms), 0: none.
	Deadline int64 `json:"deadline,omitempty"`
	// MaxReroutes is the routing rule's, SLAReroutes how many it had.
	MaxReroutes int `json:"max_reroutes,omitempty"`
	SLAReroutes int `json:"sla_reroutes,omitempty"`
	// DeliveredAt is when the current attempt reached the partner
	// (lead.distributed; Unix ms), 0: not (yet).
	DeliveredAt int64 `json:"delivered_at,omitempty"`
	// ClosedAt is when it was accepted or unrouted (Unix ms).
	ClosedAt int64             `json:"closed_at,omitempty"`
	Lead     *RoutingLead      `json:"lead"`
	History  []RoutingDecision `json:"history"`
}

// Open reports whether the lead may still change partner.
func (l *LeadState) Open() bool { return l.Status == LeadRouted }

// LeadOutcome is a record of TopicRoutingOutcomes.
type LeadOutcome struct {
	Type    string `json:"type"`
	Tenant  string `json:"tenant"`
	LeadID  string `json:"lead_id"`
	Attempt int    `json:"attempt"`
	// At is the instant, Unix ms.
	At          int64  `json:"at"`
	Partner     string `json:"partner,omitempty"`
	Rule        string `json:"rule,omitempty"`
	RuleVersion int64  `json:"rule_version,omitempty"`
	Cause       string `json:"cause,omitempty"`
	Reason      string `json:"reason,omitempty"`
	// Lead is the lead, on lead.routed (what delivery maps).
	Lead *RoutingLead `json:"lead,omitempty"`
	// FollowUp is the event forwarded, on lead.forwarded.
	FollowUp *LeadFollowUp `json:"follow_up,omitempty"`
	// Delivery is the delivery's report, on lead.distributed and
	// lead.delivery_failed (written by the delivery stage).
	Delivery *LeadDelivery `json:"delivery,omitempty"`
}

// RoutingCursor is a rule's strategy state, kept with the pool it was
// made for (Pool: a fingerprint of partners and weights).
type RoutingCursor struct {
	Pool string `json:"pool"`
	// Next is round robin's next position.
	Next int `json:"next,omitempty"`
	// Current is weighted round robin's current value per pool position.
	Current []int64 `json:"current,omitempty"`
}

// RoutingSent is an outcome in the outbox: By is the origin (offset plus
// one) on Topic of the message that made it.
type RoutingSent struct {
	Topic   string      `json:"topic"`
	By      int64       `json:"by"`
	Outcome LeadOutcome `json:"outcome"`
}

// RoutingTable is the routing stage's table value: a tenant's whole
// routing state (docs/routing.md).
type RoutingTable struct {
	Tenant string        `json:"tenant"`
	Rules  *RoutingRules `json:"rules,omitempty"`
	// Counters: partner → local date (YYYY-MM-DD in its zone) → leads.
	Counters map[string]map[string]int `json:"counters,omitempty"`
	Cursors  map[string]*RoutingCursor `json:"cursors,omitempty"`
	Leads    map[string]*LeadState     `json:"leads,omitempty"`
	// By: per input topic, the origin of the last message handled.
	By map[string]int64 `json:"by,omitempty"`
	// At is the state's clock (Unix ms); Wake the earliest SLA deadline.
	At     int64         `json:"at"`
	Wake   int64         `json:"wake,omitempty"`
	Outbox []RoutingSent `json:"outbox,omitempty"`
}
