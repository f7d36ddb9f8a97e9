// Package routing is the lead-routing stage (docs/routing.md): a tenant's
// leads, the partners' feedback, SLA ticks and rule changes in, one
// decision per lead attempt out. This file is its pure core: Apply, a
// function of the tenant's routing state and one message; the goka group
// around it comes in a later slice.
package routing

import (
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rolodex/rolodex/rules"
	"github.com/rolodex/rolodex/schemas"
)

// OutboxLimit is how many of its latest outcomes a tenant's state keeps to
// send again when the message that made them is replayed.
const OutboxLimit = 256

// State is the routing table's value: a tenant's whole routing state.
type State = schemas.RoutingTable

// Message is what the stage handles: exactly one of an input (a lead,
// feedback or a follow-up), a rule list, or a tick.
type Message struct {
	Input *schemas.RoutingInput
	Rules *schemas.RoutingRules
	Tick  bool
	// Origin identifies a delivery: its offset on its topic plus one; 0
	// for a message that is never replayed.
	Origin int64
	// At is the message's instant (Unix ms): an input's Kafka timestamp,
	// a tick's wake. The decision instant is the latest of At and the
	// state's clock.
	At int64
}

// Topic is the input topic the message came from (origins are per topic).
func (m *Message) Topic() string {
	switch {
	case m.Rules != nil:
		return schemas.TopicRoutingRules
	case m.Tick:
		return schemas.TopicRoutingTicks
	}
	return schemas.TopicRoutingInput
}

// Env is what decisions need besides the message and the state: the
// partners' routing configuration and the compiled conditions.
type Env struct {
	partners map[string]*partner
	// Retention is how long a closed lead stays in the state (to know its
	// id again); 0 keeps it for ever.
	Retention time.Duration

	mu       sync.Mutex
	programs map[string]compiled
}

type compiled struct {
	p   *rules.Program
	err error
}

// NewEnv parses the partners' routing configuration.
func NewEnv(partners []schemas.PartnerRouting, retention time.Duration) (*Env, error) {
	e := &Env{partners: map[string]*partner{}, Retention: retention, programs: map[string]compiled{}}
	for _, c := range partners {
		p, err := parsePartner(c)
		if err != nil {
			return nil, fmt.Errorf("routing: %w", err)
		}
		e.partners[c.Name] = p
	}
	return e, nil
}

var utcAlways = &partner{loc: time.UTC}

// partner is a partner's parsed configuration; one without any is in UTC
// and always open.
func (e *Env) partner(name string) *partner {
	if p, ok := e.partners[name]; ok {
		return p
	}
	return utcAlways
}

func (e *Env) program(condition string) (*rules.Program, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	c, ok := e.programs[condition]
	if !ok {
		c.p, c.err = rules.CompileLead(condition)
		e.programs[condition] = c
	}
	return c.p, c.err
}

// Result is what handling a message makes.
type Result struct {
	State    *State
	Outcomes []schemas.LeadOutcome
	// Write: the state must be written.
	Write bool
	// Replayed: the message was handled before; Outcomes are its
	// records, sent again.
	Replayed bool
}

// Apply handles one message for tenant (docs/routing.md). It changes s in
// place (the table decodes a fresh value per message; a caller that keeps
// the old state copies it first). A message already reflected in the state
// (a replay after a crash) changes nothing and sends its outcomes again.
func Apply(s *State, tenant string, m Message, env *Env) Result {
	topic := m.Topic()
	if s != nil && m.Origin > 0 && m.Origin <= s.By[topic] {
		r := Result{State: s, Write: false, Replayed: true}
		for _, o := range s.Outbox {
			if o.Topic == topic && o.By == m.Origin {
				r.Outcomes = append(r.Outcomes, o.Outcome)
			}
		}
		return r
	}
	if s == nil {
		s = &State{Tenant: tenant}
	}
	if s.Leads == nil {
		s.Leads = map[string]*schemas.LeadState{}
	}
	if s.Counters == nil {
		s.Counters = map[string]map[string]int{}
	}
	if s.Cursors == nil {
		s.Cursors = map[string]*schemas.RoutingCursor{}
	}
	s.At = max(s.At, m.At)
	d := &decider{s: s, env: env, now: s.At}
	switch {
	case m.Rules != nil:
		d.rules(m.Rules)
	case m.Tick:
		d.tick()
	case m.Input != nil && m.Input.Lead != nil:
		d.lead(m.Input.Lead)
	case m.Input != nil && m.Input.Feedback != nil:
		d.feedback(m.Input.Feedback)
	case m.Input != nil && m.Input.FollowUp != nil:
		d.followUp(m.Input.FollowUp)
	case m.Input != nil && m.Input.Delivery != nil:
		d.delivery(m.Input.Delivery)
	}
	d.prune()
	s.Wake = 0
	for _, l := range s.Leads {
		if l.Open() && l.Deadline > 0 && (s.Wake == 0 || l.Deadline < s.Wake) {
			s.Wake = l.Deadline
		}
	}
	if m.Origin > 0 {
		if s.By == nil {
			s.By = map[string]int64{}
		}
		s.By[topic] = m.Origin
		for _, o := range d.out {
			s.Outbox = append(s.Outbox, schemas.RoutingSent{Topic: topic, By: m.Origin, Outcome: o})
		}
		if drop := len(s.Outbox) - max(OutboxLimit, len(d.out)); drop > 0 {
			s.Outbox = append([]schemas.RoutingSent(nil), s.Outbox[drop:]...)
		}
	}
	return Result{State: s, Outcomes: d.out, Write: true}
}

// Due reports whether a tick at now would change anything: a lead's SLA
// deadline passed.
func Due(s *State, now int64) bool { return s != nil && s.Wake > 0 && s.Wake <= now }

type decider struct {
	s   *State
	env *Env
	now int64
	out []schemas.LeadOutcome
}

func (d *decider) emit(o schemas.LeadOutcome) {
	o.Tenant = d.s.Tenant
	o.At = d.now
	d.out = append(d.out, o)
}

// rules puts a newer rule list in force; cursors of rules it no longer
// has are dropped.
func (d *decider) rules(r *schemas.RoutingRules) {
	if d.s.Rules != nil && r.Version <= d.s.Rules.Version {
		return // an older or the same version: compaction or a replay
	}
	d.s.Rules = r
	for id := range d.s.Cursors {
		if !slices.ContainsFunc(r.Rules, func(x schemas.RoutingRule) bool { return x.ID == id }) {
			delete(d.s.Cursors, id)
		}
	}
}

func (d *decider) lead(l *schemas.RoutingLead) {
	if l.ID == "" {
		return
	}
	if _, seen := d.s.Leads[l.ID]; seen {
		return // a duplicate: never routed twice
	}
	st := &schemas.LeadState{ID: l.ID, Lead: l}
	d.s.Leads[l.ID] = st
	d.decide(st, schemas.CauseLead)
}

func (d *decider) feedback(f *schemas.LeadFeedback) {
	st := d.s.Leads[f.LeadID]
	if st == nil || !st.Open() || st.Partner != f.Partner {
		return // unknown, closed, or not the holder's: ignored
	}
	attempt := len(st.History)
	if f.Accepted {
		st.Status, st.Deadline, st.ClosedAt = schemas.LeadAccepted, 0, d.now
		st.Lead = st.Lead.Closed()
		d.emit(schemas.LeadOutcome{Type: schemas.OutcomeAccepted, LeadID: st.ID, Attempt: attempt, Partner: f.Partner, Reason: f.Reason})
		return
	}
	d.emit(schemas.LeadOutcome{Type: schemas.OutcomeRejected, LeadID: st.ID, Attempt: attempt, Partner: f.Partner, Reason: f.Reason})
	d.decide(st, schemas.CauseRejected)
}

func (d *decider) followUp(f *schemas.LeadFollowUp) {
	st := d.s.Leads[f.LeadID]
	if st == nil || st.Partner == "" {
		return
	}
	d.emit(schemas.LeadOutcome{Type: schemas.OutcomeForwarded, LeadID: st.ID, Attempt: len(st.History), Partner: st.Partner, FollowUp: f})
}

// delivery handles the delivery stage's report on attempt r.Attempt of a
// lead: a success marks it delivered; a failure re-routes it (cause
// delivery_failed, the partners tried excluded). A report about an
// attempt that is no longer the lead's current one, or about a closed
// lead (a failure) changes nothing.
func (d *decider) delivery(r *schemas.LeadDelivery) {
	st := d.s.Leads[r.LeadID]
	if st == nil || st.Partner != r.Partner || r.Attempt != len(st.History) {
		return
	}
	switch {
	case r.OK && st.Status != schemas.LeadUnrouted:
		if st.DeliveredAt == 0 {
			st.DeliveredAt = d.now
		}
	case !r.OK && st.Open():
		d.decide(st, schemas.CauseDeliveryFailed)
	}
}

// tick handles every open lead whose SLA deadline passed, earliest first.
func (d *decider) tick() {
	var due []*schemas.LeadState
	for _, l := range d.s.Leads {
		if l.Open() && l.Deadline > 0 && l.Deadline <= d.now {
			due = append(due, l)
		}
	}
	sort.Slice(due, func(i, j int) bool {
		if due[i].Deadline != due[j].Deadline {
			return due[i].Deadline < due[j].Deadline
		}
		return due[i].ID < due[j].ID
	})
	for _, l := range due {
		if l.SLAReroutes >= l.MaxReroutes {
			dec := schemas.RoutingDecision{Attempt: len(l.History) + 1, Cause: schemas.CauseSLA, At: d.now, Unrouted: schemas.UnroutedSLAExhausted}
			d.unrouted(l, dec)
			continue
		}
		l.SLAReroutes++
		d.decide(l, schemas.CauseSLA)
	}
}

// prune drops the counters of local days before yesterday and the leads
// closed longer than the retention.
func (d *decider) prune() {
	for name, days := range d.s.Counters {
		p := d.env.partner(name)
		y := p.yesterday(d.now)
		for day := range days {
			if day < y {
				delete(days, day)
			}
		}
		if len(days) == 0 {
			delete(d.s.Counters, name)
		}
	}
	if d.env.Retention > 0 {
		cut := d.now - d.env.Retention.Milliseconds()
		for id, l := range d.s.Leads {
			if forget(l, cut) {
				delete(d.s.Leads, id)
			}
		}
	}
}

// forget reports whether a lead leaves the state at cut (now minus the
// retention): closed before it, or open (routed, never accepted: a rule
// without an SLA, a partner that never answers) with its latest decision
// before it. Its id sent again is then a new lead.
func forget(l *schemas.LeadState, cut int64) bool {
	if !l.Open() {
		return l.ClosedAt < cut
	}
	return len(l.History) > 0 && l.History[len(l.History)-1].At < cut
}

func (d *decider) unrouted(l *schemas.LeadState, dec schemas.RoutingDecision) {
	l.History = append(l.History, dec)
	l.Status, l.Reason, l.Partner, l.Deadline, l.ClosedAt = schemas.LeadUnrouted, dec.Unrouted, "", 0, d.now
	l.Lead = l.Lead.Closed()
	d.emit(schemas.LeadOutcome{Type: schemas.OutcomeUnrouted, LeadID: l.ID, Attempt: dec.Attempt, Cause: dec.Cause, Reason: dec.Unrouted})
}

// decide makes a decision for lead l (docs/routing.md, "Decision").
func (d *decider) decide(l *schemas.LeadState, cause string) {
	dec := schemas.RoutingDecision{Attempt: len(l.History) + 1, Cause: cause, At: d.now}
	if l.Lead.Profile != nil && l.Lead.Profile.Blacklisted {
		dec.Unrouted = schemas.UnroutedBlacklisted
		d.unrouted(l, dec)
		return
	}
	var list []schemas.RoutingRule
	if d.s.Rules != nil {
		list = d.s.Rules.Rules
		dec.RuleVersion = d.s.Rules.Version
	}
	byID := map[string]*schemas.RoutingRule{}
	for i := range list {
		if _, dup := byID[list[i].ID]; !dup {
			byID[list[i].ID] = &list[i]
		}
	}
	in := rules.FromLead(l.Lead, time.UnixMilli(d.now))
	matched := false
	for i := range list {
		r := &list[i]
		prg, err := d.env.program(r.Condition)
		ok := false
		if err == nil {
			ok, err = prg.Eval(in)
		}
		switch {
		case err != nil:
			dec.Candidates = append(dec.Candidates, schemas.RoutingCandidate{Rule: r.ID, Skip: schemas.SkipError, Error: err.Error()})
			continue
		case !ok:
			dec.Candidates = append(dec.Candidates, schemas.RoutingCandidate{Rule: r.ID, Skip: schemas.SkipNoMatch})
			continue
		case r.Consent != "" && in.Consent[r.Consent] != schemas.ConsentGranted:
			dec.Candidates = append(dec.Candidates, schemas.RoutingCandidate{Rule: r.ID, Skip: schemas.SkipConsent})
			continue
		}
		matched = true
		visited := map[string]bool{}
		for cur := r; cur != nil; {
			visited[cur.ID] = true
			if p := d.pick(cur, l, &dec); p != "" {
				d.routed(l, dec, cur, p)
				return
			}
			fb := cur.Fallback
			if fb == "" {
				break
			}
			if next, isRule := byID[fb]; isRule {
				if visited[fb] {
					dec.Candidates = append(dec.Candidates, schemas.RoutingCandidate{Rule: fb, Skip: schemas.SkipVisited})
					break
				}
				cur = next
				continue
			}
			// A fallback partner: alone, no cap.
			if skip := d.ineligible(cur, l, fb, false); skip != "" {
				dec.Candidates = append(dec.Candidates, schemas.RoutingCandidate{Rule: cur.ID, Partner: fb, Skip: skip})
				break
			}
			dec.Candidates = append(dec.Candidates, schemas.RoutingCandidate{Rule: cur.ID, Partner: fb})
			d.routed(l, dec, cur, fb)
			return
		}
	}
	dec.Unrouted = schemas.UnroutedNoMatch
	if matched {
		dec.Unrouted = schemas.UnroutedNoEligible
	}
	d.unrouted(l, dec)
}

func (d *decider) routed(l *schemas.LeadState, dec schemas.RoutingDecision, r *schemas.RoutingRule, p string) {
	dec.Rule, dec.Partner = r.ID, p
	l.History = append(l.History, dec)
	day := d.env.partner(p).day(d.now)
	if d.s.Counters[p] == nil {
		d.s.Counters[p] = map[string]int{}
	}
	d.s.Counters[p][day]++
	l.Status, l.Partner, l.Reason, l.DeliveredAt = schemas.LeadRouted, p, "", 0
	l.Tried = append(l.Tried, p)
	l.Deadline, l.MaxReroutes = 0, r.MaxReroutes
	if sla, err := r.SLADuration(); err == nil && sla > 0 {
		l.Deadline = d.now + sla.Milliseconds()
	}
	d.emit(schemas.LeadOutcome{Type: schemas.OutcomeRouted, LeadID: l.ID, Attempt: dec.Attempt, Partner: p,
		Rule: r.ID, RuleVersion: dec.RuleVersion, Cause: dec.Cause, Lead: l.Lead})
}

// ineligible says why partner p may not take lead l under rule r now ("":
// it may); capped: the rule's cap applies.
func (d *decider) ineligible(r *schemas.RoutingRule, l *schemas.LeadState, p string, capped bool) string {
	pc := d.env.partner(p)
	if pc.tenant != "" && pc.tenant != d.s.Tenant {
		return schemas.SkipTenant
	}
	if slices.Contains(l.Tried, p) {
		return schemas.SkipTried
	}
	if capped {
		if limit, ok := r.CapPerDay[p]; ok && d.s.Counters[p][pc.day(d.now)] >= limit {
			return schemas.SkipCap
		}
	}
	if !r.OutsideHours && !pc.open(d.now) {
		return schemas.SkipHours
	}
	return ""
}

// pick chooses a partner of r's pool by its strategy, "" if none is
// eligible, and records every pool partner in the decision's candidates.
func (d *decider) pick(r *schemas.RoutingRule, l *schemas.LeadState, dec *schemas.RoutingDecision) string {
	n := len(r.Pool)
	skips := make([]string, n)
	any := false
	for i, e := range r.Pool {
		skips[i] = d.ineligible(r, l, e.Partner, true)
		any = any || skips[i] == ""
	}
	chosen := -1
	if any {
		switch r.Strategy {
		case schemas.StrategyRoundRobin:
			c := d.cursor(r)
			for k := 0; k < n; k++ {
				if j := (c.Next + k) % n; skips[j] == "" {
					chosen = j
					break
				}
			}
			c.Next = (chosen + 1) % n
		case schemas.StrategyWeighted:
			c := d.cursor(r)
			total := int64(0)
			for j, e := range r.Pool {
				if skips[j] == "" {
					w := int64(e.W())
					c.Current[j] += w
					total += w
					if chosen < 0 || c.Current[j] > c.Current[chosen] {
						chosen = j
					}
				}
			}
			c.Current[chosen] -= total
		default: // first
			chosen = slices.Index(skips, "")
		}
	}
	for j, e := range r.Pool {
		skip := skips[j]
		if skip == "" && j != chosen {
			skip = schemas.SkipTurn
		}
		dec.Candidates = append(dec.Candidates, schemas.RoutingCandidate{Rule: r.ID, Partner: e.Partner, Skip: skip})
	}
	if chosen < 0 {
		return ""
	}
	return r.Pool[chosen].Partner
}

// cursor is rule r's strategy state, afresh when its pool changed.
func (d *decider) cursor(r *schemas.RoutingRule) *schemas.RoutingCursor {
	fp := poolPrint(r.Pool)
	c := d.s.Cursors[r.ID]
	if c == nil || c.Pool != fp {
		c = &schemas.RoutingCursor{Pool: fp}
		d.s.Cursors[r.ID] = c
	}
	if len(c.Current) != len(r.Pool) {
		c.Current = make([]int64, len(r.Pool))
	}
	return c
}

// poolPrint is a pool's fingerprint: partners and weights in order.
func poolPrint(pool []schemas.RoutingPoolEntry) string {
	var b strings.Builder
	for _, e := range pool {
		b.WriteString(e.Partner)
		b.WriteByte('*')
		b.WriteString(strconv.Itoa(e.W()))
		b.WriteByte(';')
	}
	return b.String()
}
