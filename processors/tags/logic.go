// Package tags is the tag stage: a goka group that reads every profile
// snapshot on rolodex.profiles and writes one record per effective change
// of a profile's tags to rolodex.profile.tags (docs/profile-status.md).
// Rule tags (a later issue) are computed here too.
package tags

import (
	"time"

	"github.com/rolodex/rolodex/rules"
	"github.com/rolodex/rolodex/schemas"
)

// OutboxLimit is how many of its latest records a profile's state keeps to
// send again when the message that made them is replayed.
const OutboxLimit = 256

// CauseConfig removes a tag that vanished from a profile without a write
// removing it: a default tag taken out of the configuration.
const CauseConfig = "config"

// The tag stage's table value and its parts live in schemas, where the
// query API reads them.
type (
	State = schemas.TagTable
	Held  = schemas.HeldTag
	Sent  = schemas.SentTag
)

// Message is what the stage handles: a snapshot of the profile, a tick
// of the scheduler, or a visit (a rule change, or the start of an
// instance: every profile it owns is evaluated again).
type Message struct {
	// Snapshot is set for a snapshot from rolodex.profiles.
	Snapshot *schemas.Profile
	// Tick is set for a tick from rolodex.tag.ticks.
	Tick bool
	// Origin identifies a delivery of a snapshot or a tick: its offset
	// on its topic plus one. 0 for a visit, which is never replayed.
	Origin int64
	// At is when the message asks the rules to be evaluated (Unix ms): a
	// snapshot's Kafka timestamp, a tick's due instant, a visit's clock.
	// The evaluation instant is the latest of At and the state's, so that
	// a profile's clock never goes back and a replay evaluates as the
	// first delivery did.
	At int64
}

// Env is what evaluation needs besides the message and the state.
type Env struct {
	Rules  *RuleSet
	Groups Groups
	// Failed is called for each rule whose evaluation failed.
	Failed func(r *Rule, err error)
}

// Result is what handling a message makes.
type Result struct {
	State   *State
	Changes []schemas.TagChange
	// Failures are the audit records of rules that started failing.
	Failures []schemas.RuleFailure
	// Write: the state must be written (else it is unchanged).
	Write bool
	// Replayed: the message was handled before; Changes are its records,
	// sent again.
	Replayed bool
}

// Step handles one snapshot with no rules (docs/profile-status.md, "The
// tag stage"): Apply with an empty environment.
func Step(s *State, key string, p *schemas.Profile, origin, ts int64) (*State, []schemas.TagChange, bool) {
	r := Apply(s, key, Message{Snapshot: p, Origin: origin, At: ts}, &Env{})
	return r.State, r.Changes, r.Write
}

// Apply handles one message for profile key (docs/tags.md, "The rule-tag
// stage"). A message already reflected in the state (a replay after a
// crash) changes nothing and sends its own records again: the crash may
// have lost them while the state's write reached the table.
func Apply(s *State, key string, m Message, env *Env) Result {
	if s != nil && m.Origin > 0 {
		by := s.By
		if m.Tick {
			by = s.TickBy
		}
		if m.Origin <= by {
			r := Result{State: s, Write: true, Replayed: true}
			for _, o := range s.Outbox {
				switch {
				case o.By != m.Origin || o.Tick != m.Tick:
				case o.Failure != nil:
					r.Failures = append(r.Failures, *o.Failure)
				default:
					r.Changes = append(r.Changes, o.Change)
				}
			}
			return r
		}
	}
	p := m.Snapshot
	if p == nil {
		if s == nil || s.Profile == nil {
			return Result{State: s} // nothing to evaluate: unknown or merged away
		}
		p = s.Profile
	}
	at := m.At
	var old State
	if s != nil {
		old = *s
		at = max(at, s.At)
	}
	next := &State{Tenant: p.Tenant, Tags: nil, By: old.By, TickBy: old.TickBy, At: at}
	switch {
	case m.Snapshot != nil:
		next.By = m.Origin
	case m.Tick:
		next.TickBy = m.Origin
	}
	ev := evaluate(key, p, &old, at, env)
	if p.MergedInto == "" {
		next.Profile = stored(p)
	}
	next.Rules, next.Wake, next.Displaced = ev.marks, ev.wake, ev.displaced
	if len(ev.tags) > 0 {
		next.Tags = ev.tags
	}
	changes := ev.changes
	if len(changes) == 0 && len(ev.failures) == 0 && m.Snapshot == nil && sameRules(old.Rules, next.Rules) && old.Wake == next.Wake && sameSet(old.Displaced, next.Displaced) {
		// A tick or visit that changes nothing keeps the state as it is. A
		// snapshot is always kept: ticks and visits evaluate the latest.
		return Result{State: s}
	}
	next.Outbox = append(next.Outbox, old.Outbox...)
	for _, c := range changes {
		next.Outbox = append(next.Outbox, Sent{By: m.Origin, Tick: m.Tick, Change: c})
	}
	for i := range ev.failures {
		next.Outbox = append(next.Outbox, Sent{By: m.Origin, Tick: m.Tick, Failure: &ev.failures[i]})
	}
	if drop := len(next.Outbox) - max(OutboxLimit, len(changes)+len(ev.failures)); drop > 0 {
		next.Outbox = append([]Sent(nil), next.Outbox[drop:]...)
	}
	return Result{State: next, Changes: changes, Failures: ev.failures, Write: true}
}

// Visit decides what a visit of profile key at now does: whether the
// profile needs a tick, and at which instant. It does when evaluating it
// would change its tags, which of its rules hold, or its next wake (a
// changed rule, or a wake that came due while no instance ran): at its
// wake if that is due, so that a change is recorded at the instant it
// happened, else at now. A rule's new version alone does not: on a rule
// change only the profiles it affects get a tick and a write.
func Visit(s *State, key string, now int64, env *Env) (int64, bool) {
	if s == nil || s.Profile == nil {
		return 0, false
	}
	at := now
	if s.Wake > 0 && s.Wake <= now {
		at = s.Wake
	}
	quiet := *env
	quiet.Failed = nil // the tick that follows counts a failure, not the visit
	r := Apply(s, key, Message{At: at}, &quiet)
	if !r.Write || len(r.Changes) == 0 && r.State.Wake == s.Wake && sameOutcomes(s.Rules, r.State.Rules) {
		// Nothing a tick would change but the versions of outcomes that
		// stay as they are: the next message records those.
		return 0, false
	}
	return at, true
}

func sameSet(a, b map[string]bool) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if !b[k] {
			return false
		}
	}
	return true
}

// sameOutcomes reports whether two sets of rule outcomes hold the same
// rules on (a rule with no outcome is off), whatever their versions.
func sameOutcomes(a, b map[string]schemas.RuleMark) bool {
	for id, m := range a {
		if m.On != b[id].On {
			return false
		}
	}
	for id, m := range b {
		if m.On != a[id].On {
			return false
		}
	}
	return true
}

func sameRules(a, b map[string]schemas.RuleMark) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

type evaluation struct {
	failures  []schemas.RuleFailure
	displaced map[string]bool
	tags      map[string]Held
	marks     map[string]schemas.RuleMark
	wake      int64
	changes   []schemas.TagChange
}

// evaluate computes a profile's tags at the instant at, from its snapshot
// p (status tags, already resolved among themselves) and its rules, and
// the records that take the held tags there.
func evaluate(key string, p *schemas.Profile, old *State, at int64, env *Env) evaluation {
	held, marks := old.Tags, old.Rules
	var ev evaluation
	status := map[string]Held{}
	removedBy := map[string]schemas.ProfileTag{}
	// ruleTag: tag → the rule (smallest id) whose condition holds it.
	ruleTag := map[string]*Rule{}
	if p.MergedInto == "" {
		for _, t := range p.Tags {
			status[t.Tag] = Held{Cause: t.Source, Since: t.SinceMs}
		}
		for _, t := range p.RemovedTags {
			removedBy[t.Tag] = t
		}
		active := env.Rules.Active(p.Tenant)
		if len(active) > 0 {
			ev.marks = map[string]schemas.RuleMark{}
			in := rules.FromProfile(p, env.Rules.times(p.Tenant, p.EventTimes, at), time.UnixMilli(at))
			var wake time.Time
			for _, r := range active {
				prev, had := marks[r.ID]
				m := schemas.RuleMark{Version: r.Version}
				on, err := r.Program.Eval(in)
				switch {
				case err != nil:
					// The tag stays as it was.
					m.On, m.Since, m.Failed = prev.On, prev.Since, true
					if env.Failed != nil {
						env.Failed(r, err)
					}
					if !had || !prev.Failed || prev.Version != r.Version {
						ev.failures = append(ev.failures, schemas.RuleFailure{Tenant: p.Tenant, Profile: key, Rule: r.ID,
							Version: r.Version, Tag: r.Tag, Error: err.Error(), Time: at})
					}
				case had && prev.On == on:
					m.On, m.Since = on, prev.Since
				default:
					m.On, m.Since = on, at
				}
				if !m.On {
					m.Since = 0
				}
				ev.marks[r.ID] = m
				if m.On {
					if _, taken := ruleTag[r.Tag]; !taken {
						ruleTag[r.Tag] = r
					}
				}
				if w, ok := r.Program.NextChange(in); ok && (wake.IsZero() || w.Before(wake)) {
					wake = w
				}
			}
			// A consent a rule reads expires with no event.
			for _, c := range p.Consent {
				if c.Status != schemas.ConsentGranted || c.ExpiresAt == "" {
					continue
				}
				if exp, err := time.Parse(time.RFC3339Nano, c.ExpiresAt); err == nil && exp.UnixMilli() > at && (wake.IsZero() || exp.Before(wake)) {
					wake = exp
				}
			}
			if !wake.IsZero() {
				ev.wake = wake.UnixMilli()
			}
		}
	}
	// Exclusive groups: a tag a person set holds its group against the
	// rules; a rule's tag holds it against a default tag; of the rules'
	// tags of one group, the one of the smallest rule id.
	suppressedBy := map[string]Held{}
	for _, g := range env.Groups.names() {
		var st string
		for tag := range status {
			if env.Groups[tag] == g {
				st = tag
			}
		}
		var win *Rule
		for tag, r := range ruleTag {
			if env.Groups[tag] == g && (win == nil || r.ID < win.ID) {
				win = r
			}
		}
		if win == nil {
			continue
		}
		if st != "" && status[st].Cause != schemas.TagSourceDefault {
			for tag := range ruleTag {
				if env.Groups[tag] == g && tag != st {
					delete(ruleTag, tag)
					suppressedBy[tag] = status[st]
				}
			}
			continue
		}
		winHeld := Held{Cause: win.Cause(), Since: ev.marks[win.ID].Since}
		for tag := range ruleTag {
			if env.Groups[tag] == g && tag != win.Tag {
				delete(ruleTag, tag)
				suppressedBy[tag] = winHeld
			}
		}
		if st != "" && st != win.Tag {
			delete(status, st)
			suppressedBy[st] = winHeld
			if ev.displaced == nil {
				ev.displaced = map[string]bool{}
			}
			ev.displaced[st] = true
		}
	}
	// The tags now on, each with what holds it: a tag that stays on keeps
	// its since; its cause follows what holds it now.
	now := map[string]Held{}
	for tag, h := range status {
		if old.Displaced[tag] {
			// Back after a rule tag of its group displaced it: on from
			// now (its since is older than the removal recorded).
			h.Since = at
		}
		now[tag] = h
	}
	for tag, r := range ruleTag {
		if _, ok := now[tag]; !ok {
			now[tag] = Held{Cause: r.Cause(), Since: at}
		}
	}
	for tag, h := range now {
		old, had := held[tag]
		if !had {
			continue
		}
		h.Since = old.Since
		if stillHolds(old.Cause, tag, status, ruleTag) {
			h.Cause = old.Cause
		}
		now[tag] = h
	}
	for _, tag := range schemas.SortedKeys(held) {
		if _, on := now[tag]; on {
			continue
		}
		h := held[tag]
		c := schemas.TagChange{Tenant: p.Tenant, Profile: key, Tag: tag, Op: schemas.TagRemoved}
		ruleID, byRule := schemas.RuleOfCause(h.Cause)
		r, removed := removedBy[tag]
		sup, suppressed := suppressedBy[tag]
		switch {
		case p.MergedInto != "":
			// The survivor holds the tag now, with its own record: this
			// id's membership is withdrawn from when it began, so that
			// counts over time see one person once.
			c.Cause, c.Time = schemas.TagCauseMerge, h.Since
		case suppressed:
			c.Cause, c.Time = sup.Cause, max(sup.Since, h.Since)
		case byRule:
			v, ok := env.Rules.Version(p.Tenant, ruleID)
			if !ok {
				v = marks[ruleID].Version
			}
			c.Cause, c.Time = schemas.RuleCause(ruleID, v), at
		case removed:
			c.Cause, c.Time = r.Source, r.SinceMs
		default:
			c.Cause, c.Time = CauseConfig, at
		}
		ev.changes = append(ev.changes, c)
	}
	for _, tag := range schemas.SortedKeys(now) {
		if _, had := held[tag]; had {
			continue // a re-add of a present tag is not a change
		}
		h := now[tag]
		ev.changes = append(ev.changes, schemas.TagChange{Tenant: p.Tenant, Profile: key, Tag: tag, Op: schemas.TagAdded, Cause: h.Cause, Time: h.Since})
	}
	if len(now) > 0 {
		ev.tags = now
	}
	return ev
}

// stillHolds reports whether what added a tag (its cause) still holds it.
func stillHolds(cause, tag string, status map[string]Held, ruleTag map[string]*Rule) bool {
	if id, ok := schemas.RuleOfCause(cause); ok {
		r, on := ruleTag[tag]
		return on && r.ID == id
	}
	_, on := status[tag]
	return on
}

// stored is the snapshot as the state keeps it, for ticks and visits to
// evaluate: without its recent events and merged ids, which no rule and
// no evaluation reads (a third of a state's bytes, decoded on every
// snapshot, tick and visit).
func stored(p *schemas.Profile) *schemas.Profile {
	if p.Recent == nil && p.MergedIDs == nil {
		return p
	}
	q := *p
	q.Recent, q.MergedIDs = nil, nil
	return &q
}
