package schemas

// Profile status (docs/profile-status.md): tags, blacklist, consent and
// identifier status, folded from reserved events last-write-wins by event
// time. Every key (a tag, the blacklist, a consent purpose, an identifier)
// keeps its latest write per node; a profile takes, per key, the latest
// write across its nodes. The result depends on the set of events only.

import (
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"
)

// Reserved event types: events of these types change a profile's status.
// Ingest checks their properties (intake.Validator).
const (
	EventTagAdded              = "tag.added"
	EventTagRemoved            = "tag.removed"
	EventBlacklistAdded        = "blacklist.added"
	EventBlacklistRemoved      = "blacklist.removed"
	EventConsentGranted        = "consent.granted"
	EventConsentDenied         = "consent.denied"
	EventConsentRevoked        = "consent.revoked"
	EventIdentifierInvalidated = "identifier.invalidated"
	EventIdentifierRevalidated = "identifier.revalidated"
)

// Consent statuses. ConsentExpired is only read: a granted consent past its
// expires_at.
const (
	ConsentGranted = "granted"
	ConsentDenied  = "denied"
	ConsentRevoked = "revoked"
	ConsentExpired = "expired"
)

// Tag sources and change causes.
const (
	TagSourceDefault = "default"
	TagSourceManual  = "manual"
	// TagSourceRule is the source of a rule tag in the API's profile
	// (ProfileTag.Rule names the rule).
	TagSourceRule = "rule"
	// TagCauseMerge removes the tags of a profile id that merged into
	// another (the survivor holds them now).
	TagCauseMerge = "merge"
)

// Stamp orders the writes of one key: event time, then source, then event
// id, so the winner never depends on arrival order. The zero Stamp is older
// than every write of an event with a source (default tags use it at the
// profile's first event time).
type Stamp struct {
	Time   int64  `json:"t"`
	Source string `json:"s,omitempty"`
	Event  string `json:"e,omitempty"`
}

// After reports whether a is a later write than b.
func (a Stamp) After(b Stamp) bool {
	if a.Time != b.Time {
		return a.Time > b.Time
	}
	if a.Source != b.Source {
		return a.Source > b.Source
	}
	return a.Event > b.Event
}

func stampOf(ev *Event) Stamp {
	return Stamp{Time: ev.Time.UnixMilli(), Source: ev.Source, Event: ev.ID}
}

// TagMark is a node's latest write of one tag (Last, On) and its latest add
// (Set; zero if never added), which exclusive tag groups compare.
type TagMark struct {
	On   bool  `json:"on,omitempty"`
	Last Stamp `json:"l"`
	Set  Stamp `json:"a"`
}

// FlagMark is the latest write of a flag: the blacklist, or an identifier
// being invalid.
type FlagMark struct {
	On     bool   `json:"on,omitempty"`
	Reason string `json:"r,omitempty"`
	Last   Stamp  `json:"l"`
}

func (a FlagMark) newer(b FlagMark) bool {
	if a.Last != b.Last {
		return a.Last.After(b.Last)
	}
	if a.On != b.On {
		return a.On
	}
	return a.Reason > b.Reason
}

// ConsentMark is the latest write of one consent purpose.
type ConsentMark struct {
	Status  string `json:"st"`
	Expires int64  `json:"x,omitempty"` // Unix ms; 0: never
	Last    Stamp  `json:"l"`
}

func (a ConsentMark) newer(b ConsentMark) bool {
	if a.Last != b.Last {
		return a.Last.After(b.Last)
	}
	if a.Status != b.Status {
		return a.Status > b.Status
	}
	return a.Expires > b.Expires
}

// joinTag merges write b of a tag into a.
func joinTag(a, b TagMark) TagMark {
	if b.Last.After(a.Last) || (b.Last == a.Last && b.On && !a.On) {
		a.Last, a.On = b.Last, b.On
	}
	if b.Set.After(a.Set) {
		a.Set = b.Set
	}
	return a
}

// stringProp returns the string value of property k (stored as JSON text).
func stringProp(ev *Event, k string) string {
	raw, ok := ev.Properties[k]
	if !ok {
		return ""
	}
	var s string
	if json.Unmarshal([]byte(raw), &s) != nil {
		return ""
	}
	return s
}

// IsStatusEvent reports whether typ is a reserved status event type.
func IsStatusEvent(typ string) bool {
	switch typ {
	case EventTagAdded, EventTagRemoved, EventBlacklistAdded, EventBlacklistRemoved,
		EventConsentGranted, EventConsentDenied, EventConsentRevoked,
		EventIdentifierInvalidated, EventIdentifierRevalidated:
		return true
	}
	return false
}

// InvalidKey is the key of an identifier in Contribution.Invalid.
func InvalidKey(id Identifier) string { return id.Type + ":" + id.Value }

// addStatus folds a reserved event into the contribution. Ingest validated
// the properties; an event that still lacks what it needs changes nothing.
func (c *Contribution) addStatus(ev *Event) {
	st := stampOf(ev)
	switch ev.Type {
	case EventTagAdded, EventTagRemoved:
		tag := stringProp(ev, "tag")
		if tag == "" {
			return
		}
		m := TagMark{On: ev.Type == EventTagAdded, Last: st}
		if m.On {
			m.Set = st
		}
		if c.Tags == nil {
			c.Tags = map[string]TagMark{}
		}
		c.Tags[tag] = joinTag(c.Tags[tag], m)
	case EventBlacklistAdded, EventBlacklistRemoved:
		m := FlagMark{On: ev.Type == EventBlacklistAdded, Reason: stringProp(ev, "reason"), Last: st}
		if c.Blacklist == nil || m.newer(*c.Blacklist) {
			c.Blacklist = &m
		}
	case EventConsentGranted, EventConsentDenied, EventConsentRevoked:
		purpose := stringProp(ev, "purpose")
		if purpose == "" {
			return
		}
		m := ConsentMark{Status: strings.TrimPrefix(ev.Type, "consent."), Last: st}
		if x := stringProp(ev, "expires_at"); x != "" {
			if t, err := time.Parse(time.RFC3339Nano, x); err == nil {
				m.Expires = t.UnixMilli()
			}
		}
		if old, ok := c.Consent[purpose]; !ok || m.newer(old) {
			if c.Consent == nil {
				c.Consent = map[string]ConsentMark{}
			}
			c.Consent[purpose] = m
		}
	case EventIdentifierInvalidated, EventIdentifierRevalidated:
		typ, val := stringProp(ev, "type"), stringProp(ev, "value")
		if typ == "" || val == "" {
			return
		}
		k := InvalidKey(Identifier{Type: typ, Value: val})
		m := FlagMark{On: ev.Type == EventIdentifierInvalidated, Reason: stringProp(ev, "reason"), Last: st}
		if old, ok := c.Invalid[k]; !ok || m.newer(old) {
			if c.Invalid == nil {
				c.Invalid = map[string]FlagMark{}
			}
			c.Invalid[k] = m
		}
	}
}

// TagGroup is a set of tags; in an exclusive group a profile holds at most
// the latest-set one.
type TagGroup struct {
	Name      string   `yaml:"name" json:"name"`
	Tags      []string `yaml:"tags" json:"tags"`
	Exclusive bool     `yaml:"exclusive" json:"exclusive"`
}

// StatusConfig is what folding status needs from the configuration
// (`tags:` in the config file).
type StatusConfig struct {
	// Default tags are on every profile from its first event.
	Default []string   `yaml:"default" json:"default"`
	Groups  []TagGroup `yaml:"groups" json:"groups"`
}

// NameRe is what a tag name and a consent purpose look like: a letter or
// digit, then up to 99 letters, digits and "_.:-". Tags are case-sensitive.
var NameRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$`)

// Validate reports a tag configuration that cannot work: a bad name, a
// group without tags, a tag in two exclusive groups.
func (c *StatusConfig) Validate() error {
	for _, t := range c.Default {
		if !NameRe.MatchString(t) {
			return fmt.Errorf("tags.default: %q is not a tag name (%s)", t, NameRe)
		}
	}
	exclusive := map[string]string{}
	names := map[string]bool{}
	defaults := map[string]bool{}
	for _, t := range c.Default {
		defaults[t] = true
	}
	for i, g := range c.Groups {
		if g.Name == "" || names[g.Name] {
			return fmt.Errorf("tags.groups[%d]: every group needs a name of its own (got %q)", i, g.Name)
		}
		names[g.Name] = true
		if len(g.Tags) == 0 {
			return fmt.Errorf("tags.groups %q: no tags", g.Name)
		}
		var defaultIn []string
		for _, t := range g.Tags {
			if g.Exclusive && defaults[t] {
				defaultIn = append(defaultIn, t)
			}
		}
		if len(defaultIn) > 1 {
			// Both would be set at the same instant, the first event: no
			// latest set, so both would stay on.
			return fmt.Errorf("tags.groups %q is exclusive but holds two default tags (%s): a profile can start with at most one tag of the group", g.Name, strings.Join(defaultIn, ", "))
		}
		for _, t := range g.Tags {
			if !NameRe.MatchString(t) {
				return fmt.Errorf("tags.groups %q: %q is not a tag name (%s)", g.Name, t, NameRe)
			}
			if !g.Exclusive {
				continue
			}
			if other, ok := exclusive[t]; ok && other != g.Name {
				return fmt.Errorf("tags.groups: tag %q is in two exclusive groups, %q and %q", t, other, g.Name)
			}
			exclusive[t] = g.Name
		}
	}
	return nil
}

// ProfileTag is one tag as the API shows it.
type ProfileTag struct {
	Tag string `json:"tag"`
	// Source is "default", "manual" or "rule"; for a removed tag, what
	// removed it.
	Source string `json:"source"`
	// Rule is the id of the rule that holds a rule tag.
	Rule  string `json:"rule,omitempty"`
	Since string `json:"since"`
	// SinceMs is Since in Unix milliseconds.
	SinceMs int64 `json:"since_ms"`
}

// BlacklistState is the blacklist entry of a blacklisted profile.
type BlacklistState struct {
	Reason  string `json:"reason"`
	Since   string `json:"since"`
	SinceMs int64  `json:"since_ms"`
}

// ConsentState is one consent purpose as the API shows it.
type ConsentState struct {
	// Status is granted, denied, revoked, or expired (granted, past
	// ExpiresAt when the profile was read).
	Status    string `json:"status"`
	Since     string `json:"since"`
	ExpiresAt string `json:"expires_at,omitempty"`
	Expired   bool   `json:"expired"`
}

// InvalidIdentifier is an identifier marked invalid (a hard bounce, a
// number that does not exist).
type InvalidIdentifier struct {
	Type   string `json:"type"`
	Value  string `json:"value"`
	Reason string `json:"reason"`
	Since  string `json:"since"`
}

// Channels a profile can be reached on, by the identifier type that
// reaches it.
var channelOf = map[string]string{
	IDEmail:    "email",
	IDPhone:    "sms",
	IDWhatsApp: "whatsapp",
	IDFacebook: "facebook",
}

func rfc3339(ms int64) string { return time.UnixMilli(ms).UTC().Format(time.RFC3339Nano) }

// status is the status of a profile folded from its contributions.
type status struct {
	tags      map[string]TagMark
	blacklist *FlagMark
	consent   map[string]ConsentMark
	invalid   map[string]FlagMark
}

func (s *status) join(c *Contribution) {
	for k, m := range c.Tags {
		if s.tags == nil {
			s.tags = map[string]TagMark{}
		}
		s.tags[k] = joinTag(s.tags[k], m)
	}
	if c.Blacklist != nil && (s.blacklist == nil || c.Blacklist.newer(*s.blacklist)) {
		b := *c.Blacklist
		s.blacklist = &b
	}
	for k, m := range c.Consent {
		if old, ok := s.consent[k]; !ok || m.newer(old) {
			if s.consent == nil {
				s.consent = map[string]ConsentMark{}
			}
			s.consent[k] = m
		}
	}
	for k, m := range c.Invalid {
		if old, ok := s.invalid[k]; !ok || m.newer(old) {
			if s.invalid == nil {
				s.invalid = map[string]FlagMark{}
			}
			s.invalid[k] = m
		}
	}
}

// TagState is the effective state of one tag of a profile.
type TagState struct {
	On     bool
	Source string // default or manual: what made the latest change
	Since  int64  // Unix ms of the latest change
}

// EffectiveTags returns the state of every tag a profile has a write of (or
// a default for), given its joined marks, its first event time (seen false:
// no event yet, so no default tags) and the config. In an exclusive group a
// tag is on only if no other tag of the group was set later; it is then off
// since that later set.
func EffectiveTags(marks map[string]TagMark, first int64, seen bool, sc *StatusConfig) map[string]TagState {
	all := make(map[string]TagMark, len(marks)+len(sc.Default))
	sources := map[string]string{}
	for k, m := range marks {
		all[k] = m
		sources[k] = TagSourceManual
	}
	if seen {
		def := Stamp{Time: first}
		for _, t := range sc.Default {
			m, ok := all[t]
			d := TagMark{On: true, Last: def, Set: def}
			if !ok || d.Last.After(m.Last) {
				// Only possible with no write of the tag: every event of
				// the profile is at or after first, and has a source.
				sources[t] = TagSourceDefault
				m = joinTag(m, d)
			} else if !m.Set.After(def) {
				m.Set = def
			}
			all[t] = m
		}
	}
	out := make(map[string]TagState, len(all))
	for k, m := range all {
		out[k] = TagState{On: m.On, Source: sources[k], Since: m.Last.Time}
	}
	for _, g := range sc.Groups {
		if !g.Exclusive {
			continue
		}
		// The latest set of the group wins; every other tag of the group
		// that is on was removed by it.
		var win string
		var winSet Stamp
		for _, t := range g.Tags {
			m, ok := all[t]
			if !ok || !(m.Set != (Stamp{}) || sources[t] == TagSourceDefault || isDefault(sc, t) && seen) {
				continue // never set
			}
			if win == "" || m.Set.After(winSet) {
				win, winSet = t, m.Set
			}
		}
		for _, t := range g.Tags {
			st, ok := out[t]
			if !ok || t == win || !st.On {
				continue
			}
			if m := all[t]; winSet.After(m.Set) {
				out[t] = TagState{On: false, Source: sources[win], Since: winSet.Time}
			}
		}
	}
	return out
}

func isDefault(sc *StatusConfig, tag string) bool {
	for _, t := range sc.Default {
		if t == tag {
			return true
		}
	}
	return false
}

// FoldOptions are what materializing a profile needs besides its node.
type FoldOptions struct {
	Status StatusConfig
	// Now decides consent expiry; zero means time.Now().
	Now time.Time
	// EventTimes fills Profile.EventTimes.
	EventTimes bool
}

// foldStatus fills the status fields of p.
func foldStatus(p *Profile, s *status, first int64, seen bool, opts *FoldOptions) {
	now := opts.Now
	if now.IsZero() {
		now = time.Now()
	}
	p.Tags, p.RemovedTags = []ProfileTag{}, nil
	tags := EffectiveTags(s.tags, first, seen, &opts.Status)
	for _, k := range SortedKeys(tags) {
		st := tags[k]
		pt := ProfileTag{Tag: k, Source: st.Source, Since: rfc3339(st.Since), SinceMs: st.Since}
		if st.On {
			p.Tags = append(p.Tags, pt)
		} else {
			p.RemovedTags = append(p.RemovedTags, pt)
		}
	}
	if b := s.blacklist; b != nil && b.On {
		p.Blacklisted = true
		p.Blacklist = &BlacklistState{Reason: b.Reason, Since: rfc3339(b.Last.Time), SinceMs: b.Last.Time}
	}
	p.Consent = map[string]ConsentState{}
	for k, m := range s.consent {
		cs := ConsentState{Status: m.Status, Since: rfc3339(m.Last.Time)}
		if m.Expires != 0 {
			cs.ExpiresAt = rfc3339(m.Expires)
			if m.Status == ConsentGranted && now.UnixMilli() >= m.Expires {
				cs.Status, cs.Expired = ConsentExpired, true
			}
		}
		p.Consent[k] = cs
	}
	p.InvalidIdentifiers = []InvalidIdentifier{}
	for _, k := range SortedKeys(s.invalid) {
		m := s.invalid[k]
		if !m.On {
			continue
		}
		typ, val, _ := strings.Cut(k, ":")
		if strings.HasPrefix(k, IDExternal) {
			// external:<name>:<value>
			rest := strings.TrimPrefix(k, IDExternal)
			name, v, _ := strings.Cut(rest, ":")
			typ, val = IDExternal+name, v
		}
		p.InvalidIdentifiers = append(p.InvalidIdentifiers, InvalidIdentifier{Type: typ, Value: val, Reason: m.Reason, Since: rfc3339(m.Last.Time)})
	}
	p.Channels = map[string][]string{}
	for typ, vs := range p.Identifiers {
		ch, ok := channelOf[typ]
		if !ok {
			continue
		}
		for _, v := range vs {
			if m, bad := s.invalid[InvalidKey(Identifier{Type: typ, Value: v})]; bad && m.On {
				continue
			}
			p.Channels[ch] = append(p.Channels[ch], v)
		}
	}
	for _, vs := range p.Channels {
		sort.Strings(vs)
	}
}

// Granted reports whether the profile's consent for purpose is granted and
// not expired at the moment the profile was folded.
func (p *Profile) Granted(purpose string) bool {
	c, ok := p.Consent[purpose]
	return ok && c.Status == ConsentGranted
}

// HasTag reports whether the profile holds tag.
func (p *Profile) HasTag(tag string) bool {
	for _, t := range p.Tags {
		if t.Tag == tag {
			return true
		}
	}
	return false
}

// TagChange is a record on TopicProfileTags: one effective change of one
// tag of one profile.
type TagChange struct {
	Tenant  string `json:"tenant"`
	Profile string `json:"profile_id"`
	Tag     string `json:"tag"`
	// Op is TagAdded or TagRemoved.
	Op string `json:"op"`
	// Cause is "default", "manual", "merge" (the profile id merged into
	// another), later "rule:<id>@<version>".
	Cause string `json:"cause"`
	// Time is the event time of the change, Unix milliseconds.
	Time int64 `json:"time"`
}

// Tag change operations.
const (
	TagAdded   = "added"
	TagRemoved = "removed"
)
