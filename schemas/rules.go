package schemas

import (
	"strconv"
	"strings"
)

// Rule tags (docs/tags.md): the rules topic's records and the tag stage's
// state, which the query API reads too.

const (
	// TopicTagRules (compacted, key RuleKey) holds every tenant's tag
	// rules, each record the rule's latest version. A deleted rule stays
	// as a record with Deleted set, so that its version is known.
	TopicTagRules = "rolodex.tag.rules"
	// TopicTagTicks carries the tag stage's wake-ups (TagTick), keyed and
	// partitioned like the profiles: the scheduler writes one when a
	// profile's rule tags may change because time passed, and the tag
	// stage re-evaluates the profile inside its callback.
	TopicTagTicks = "rolodex.tag.ticks"
	// TopicTagAudit carries a RuleFailure record each time a rule starts
	// failing on a profile (docs/tags.md, "Run-time errors").
	TopicTagAudit = "rolodex.tag.audit"
)

// RuleFailure is a record on TopicTagAudit: version Version of rule Rule
// failed at run time on a profile (the tag stays as it was). One record
// when a version starts failing on a profile, not one per evaluation; the
// metric rolodex_tags_rule_errors_total counts every evaluation.
type RuleFailure struct {
	Tenant  string `json:"tenant"`
	Profile string `json:"profile_id"`
	Rule    string `json:"rule"`
	Version int64  `json:"version"`
	Tag     string `json:"tag"`
	Error   string `json:"error"`
	// Time is the evaluation instant, Unix milliseconds.
	Time int64 `json:"time"`
}

// TagRule is one version of a tag rule.
type TagRule struct {
	Tenant      string `json:"tenant"`
	ID          string `json:"id"`
	Tag         string `json:"tag"`
	Condition   string `json:"condition"`
	Description string `json:"description,omitempty"`
	Enabled     bool   `json:"enabled"`
	// Version counts the rule's changes from 1 (a delete is a change).
	Version int64 `json:"version"`
	// Deleted marks a deleted rule: it tags nothing.
	Deleted bool `json:"deleted,omitempty"`
	// UpdatedAt is when this version was written, RFC 3339 UTC.
	UpdatedAt string `json:"updated_at"`
	// UpdatedBy is the partner whose key wrote it.
	UpdatedBy string `json:"updated_by,omitempty"`
}

// Active reports whether the rule tags profiles.
func (r *TagRule) Active() bool { return r.Enabled && !r.Deleted }

// Cause is the cause of the tag changes this version makes:
// "rule:<id>@<version>".
func (r *TagRule) Cause() string { return RuleCause(r.ID, r.Version) }

// RuleCause is the cause of a tag change made by version v of rule id.
func RuleCause(id string, v int64) string {
	return TagCauseRulePrefix + id + "@" + strconv.FormatInt(v, 10)
}

// TagCauseRulePrefix starts the cause of every rule-made tag change.
const TagCauseRulePrefix = "rule:"

// RuleOfCause returns the rule id of a rule cause.
func RuleOfCause(cause string) (string, bool) {
	rest, ok := strings.CutPrefix(cause, TagCauseRulePrefix)
	if !ok {
		return "", false
	}
	if i := strings.LastIndexByte(rest, '@'); i >= 0 {
		return rest[:i], true
	}
	return rest, true
}

// RuleKey is a rule's key on TopicTagRules.
func RuleKey(tenant, id string) string { return tenant + "/" + id }

// TagTick is a wake-up for one profile: re-evaluate its rule tags at At
// (Unix ms), the instant the scheduler found due.
type TagTick struct {
	At int64 `json:"at"`
}

// TagTable is the value of the tag stage's table (processors/tags),
// keyed by profile id: the tags the records so far say the profile holds,
// and what the stage needs to evaluate its rules again without a new
// snapshot (docs/tags.md, "The rule-tag stage").
type TagTable struct {
	Tenant string             `json:"tn"`
	Tags   map[string]HeldTag `json:"tg,omitempty"`
	// By is the origin of the latest snapshot that changed the state, and
	// TickBy of the latest tick (visits write ticks, never the state).
	By     int64 `json:"by,omitempty"`
	TickBy int64 `json:"tb,omitempty"`
	// Outbox holds the latest records, oldest first (never fewer than the
	// latest message's).
	Outbox []SentTag `json:"ob,omitempty"`
	// Profile is the latest snapshot (with its event times, without its
	// recent events and merged ids); nil once the id merged away.
	Profile *Profile `json:"p,omitempty"`
	// Rules holds, per rule id of the tenant, the version last evaluated
	// and whether its condition held.
	Rules map[string]RuleMark `json:"ru,omitempty"`
	// At is the latest evaluation instant (Unix ms) and Wake the next one
	// the rules need (0: none).
	At   int64 `json:"at,omitempty"`
	Wake int64 `json:"wk,omitempty"`
	// Displaced holds the tags a person or the configuration set that a
	// rule tag of their exclusive group holds off: when one comes back it
	// is on from then, not from its older since.
	Displaced map[string]bool `json:"dp,omitempty"`
}

// HeldTag is a tag a profile holds: what added it and since when (Unix
// ms). A rule's cause is RuleCause.
type HeldTag struct {
	Cause string `json:"c"`
	Since int64  `json:"s"`
}

// SentTag is a record the state made, with the origin of the message that
// made it (Tick: of a tick or visit, else of a snapshot).
type SentTag struct {
	By     int64     `json:"by"`
	Tick   bool      `json:"tk,omitempty"`
	Change TagChange `json:"ch"`
	// Failure, when set, is the record sent instead of Change (to
	// TopicTagAudit).
	Failure *RuleFailure `json:"fl,omitempty"`
}

// RuleMark is one rule's outcome on a profile: the version evaluated,
// whether the condition held and since when (Unix ms), and whether the
// latest evaluation failed (the outcome before it is kept).
type RuleMark struct {
	Version int64 `json:"v"`
	On      bool  `json:"on,omitempty"`
	Since   int64 `json:"s,omitempty"`
	Failed  bool  `json:"f,omitempty"`
}
