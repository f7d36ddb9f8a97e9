package reference

import (
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/rolodex/rolodex/rules"
	"github.com/rolodex/rolodex/schemas"
)

// Router is the offline model of lead routing (docs/routing.md): the
// tenant's messages handled once each, in order, with nothing but maps and
// loops. It does not import processors/routing: the stream's core is
// compared with it.
type Router struct {
	Tenant    string
	Partners  map[string]schemas.PartnerRouting
	Retention time.Duration

	Rules *schemas.RoutingRules
	// Leads by id, with their histories.
	Leads map[string]*schemas.LeadState
	// Count: partner → local date → leads routed (every day, never pruned).
	Count    map[string]map[string]int
	Outcomes []schemas.LeadOutcome

	clock int64
	next  map[string]int     // round robin: rule → next position
	cur   map[string][]int64 // weighted: rule → current per position
	pools map[string]string  // rule → the pool its state was made for
	progs map[string]*rules.Program
	errs  map[string]error
}

// RouterMessage is one message of the tenant's sequence: one of Lead,
// Feedback, FollowUp, Delivery, Rules, or Tick.
type RouterMessage struct {
	At       int64
	Lead     *schemas.RoutingLead
	Feedback *schemas.LeadFeedback
	FollowUp *schemas.LeadFollowUp
	Delivery *schemas.LeadDelivery
	Rules    *schemas.RoutingRules
	Tick     bool
}

// NewRouter returns an empty router.
func NewRouter(tenant string, partners []schemas.PartnerRouting, retention time.Duration) *Router {
	r := &Router{Tenant: tenant, Partners: map[string]schemas.PartnerRouting{}, Retention: retention,
		Leads: map[string]*schemas.LeadState{}, Count: map[string]map[string]int{},
		next: map[string]int{}, cur: map[string][]int64{}, pools: map[string]string{},
		progs: map[string]*rules.Program{}, errs: map[string]error{}}
	for _, p := range partners {
		r.Partners[p.Name] = p
	}
	return r
}

// Handle handles one message.
func (r *Router) Handle(m RouterMessage) {
	if m.At > r.clock {
		r.clock = m.At
	}
	now := r.clock
	switch {
	case m.Rules != nil:
		if r.Rules == nil || m.Rules.Version > r.Rules.Version {
			r.Rules = m.Rules
			keep := map[string]bool{}
			for _, x := range m.Rules.Rules {
				keep[x.ID] = true
			}
			for id := range r.pools {
				if !keep[id] {
					delete(r.pools, id)
					delete(r.next, id)
					delete(r.cur, id)
				}
			}
		}
	case m.Lead != nil:
		if m.Lead.ID != "" && r.Leads[m.Lead.ID] == nil {
			l := &schemas.LeadState{ID: m.Lead.ID, Lead: m.Lead}
			r.Leads[l.ID] = l
			r.route(l, schemas.CauseLead, now)
		}
	case m.Feedback != nil:
		l := r.Leads[m.Feedback.LeadID]
		if l != nil && l.Status == schemas.LeadRouted && l.Partner == m.Feedback.Partner {
			o := schemas.LeadOutcome{Tenant: r.Tenant, LeadID: l.ID, Attempt: len(l.History), At: now, Partner: l.Partner, Reason: m.Feedback.Reason}
			if m.Feedback.Accepted {
				o.Type = schemas.OutcomeAccepted
				l.Status, l.Deadline, l.ClosedAt = schemas.LeadAccepted, 0, now
				l.Lead = l.Lead.Closed() // a closed lead keeps its profile's id only
				r.Outcomes = append(r.Outcomes, o)
			} else {
				o.Type = schemas.OutcomeRejected
				r.Outcomes = append(r.Outcomes, o)
				r.route(l, schemas.CauseRejected, now)
			}
		}
	case m.FollowUp != nil:
		if l := r.Leads[m.FollowUp.LeadID]; l != nil && l.Partner != "" {
			r.Outcomes = append(r.Outcomes, schemas.LeadOutcome{Type: schemas.OutcomeForwarded, Tenant: r.Tenant, LeadID: l.ID,
				Attempt: len(l.History), At: now, Partner: l.Partner, FollowUp: m.FollowUp})
		}
	case m.Delivery != nil:
		// A report about the lead's current attempt with its partner: a
		// success marks it delivered (unless unrouted since), a failure
		// re-routes an open lead.
		l := r.Leads[m.Delivery.LeadID]
		if l == nil || l.Partner != m.Delivery.Partner || m.Delivery.Attempt != len(l.History) {
			break
		}
		if m.Delivery.OK && l.Status != schemas.LeadUnrouted && l.DeliveredAt == 0 {
			l.DeliveredAt = now
		}
		if !m.Delivery.OK && l.Status == schemas.LeadRouted {
			r.route(l, schemas.CauseDeliveryFailed, now)
		}
	case m.Tick:
		var ids []string
		for id, l := range r.Leads {
			if l.Status == schemas.LeadRouted && l.Deadline != 0 && l.Deadline <= now {
				ids = append(ids, id)
			}
		}
		sort.Slice(ids, func(i, j int) bool {
			a, b := r.Leads[ids[i]], r.Leads[ids[j]]
			return a.Deadline < b.Deadline || a.Deadline == b.Deadline && a.ID < b.ID
		})
		for _, id := range ids {
			l := r.Leads[id]
			if l.SLAReroutes < l.MaxReroutes {
				l.SLAReroutes++
				r.route(l, schemas.CauseSLA, now)
				continue
			}
			r.fail(l, schemas.RoutingDecision{Attempt: len(l.History) + 1, Cause: schemas.CauseSLA, At: now, Unrouted: schemas.UnroutedSLAExhausted}, now)
		}
	}
	if r.Retention > 0 {
		for id, l := range r.Leads {
			// Closed longer than the retention, or routed and waiting
			// since its latest decision longer than that.
			last := l.History[len(l.History)-1].At
			if l.Status != schemas.LeadRouted && l.ClosedAt+r.Retention.Milliseconds() < now ||
				l.Status == schemas.LeadRouted && last+r.Retention.Milliseconds() < now {
				delete(r.Leads, id)
			}
		}
	}
}

func (r *Router) fail(l *schemas.LeadState, d schemas.RoutingDecision, now int64) {
	l.History = append(l.History, d)
	l.Status, l.Reason, l.Partner, l.Deadline, l.ClosedAt = schemas.LeadUnrouted, d.Unrouted, "", 0, now
	l.Lead = l.Lead.Closed()
	r.Outcomes = append(r.Outcomes, schemas.LeadOutcome{Type: schemas.OutcomeUnrouted, Tenant: r.Tenant, LeadID: l.ID,
		Attempt: d.Attempt, At: now, Cause: d.Cause, Reason: d.Unrouted})
}

func (r *Router) route(l *schemas.LeadState, cause string, now int64) {
	d := schemas.RoutingDecision{Attempt: len(l.History) + 1, Cause: cause, At: now}
	if p := l.Lead.Profile; p != nil && p.Blacklisted {
		d.Unrouted = schemas.UnroutedBlacklisted
		r.fail(l, d, now)
		return
	}
	var list []schemas.RoutingRule
	if r.Rules != nil {
		list, d.RuleVersion = r.Rules.Rules, r.Rules.Version
	}
	find := func(id string) int {
		for i := range list {
			if list[i].ID == id {
				return i
			}
		}
		return -1
	}
	in := rules.FromLead(l.Lead, time.UnixMilli(now))
	anyMatch := false
	for i := range list {
		rule := list[i]
		prg, cached := r.progs[rule.Condition]
		err := r.errs[rule.Condition]
		if !cached {
			prg, err = rules.CompileLead(rule.Condition)
			r.progs[rule.Condition], r.errs[rule.Condition] = prg, err
		}
		var ok bool
		if err == nil {
			ok, err = prg.Eval(in)
		}
		if err != nil {
			d.Candidates = append(d.Candidates, schemas.RoutingCandidate{Rule: rule.ID, Skip: schemas.SkipError, Error: err.Error()})
			continue
		}
		if !ok {
			d.Candidates = append(d.Candidates, schemas.RoutingCandidate{Rule: rule.ID, Skip: schemas.SkipNoMatch})
			continue
		}
		if rule.Consent != "" && in.Consent[rule.Consent] != schemas.ConsentGranted {
			d.Candidates = append(d.Candidates, schemas.RoutingCandidate{Rule: rule.ID, Skip: schemas.SkipConsent})
			continue
		}
		anyMatch = true
		seen := map[string]bool{}
		at := i
		for {
			cur := list[at]
			seen[cur.ID] = true
			if p := r.choose(&cur, l, now, &d); p != "" {
				r.assign(l, d, &cur, p, now)
				return
			}
			if cur.Fallback == "" {
				break
			}
			if j := find(cur.Fallback); j >= 0 {
				if seen[cur.Fallback] {
					d.Candidates = append(d.Candidates, schemas.RoutingCandidate{Rule: cur.Fallback, Skip: schemas.SkipVisited})
					break
				}
				at = j
				continue
			}
			why := r.why(&cur, l, cur.Fallback, now, false)
			d.Candidates = append(d.Candidates, schemas.RoutingCandidate{Rule: cur.ID, Partner: cur.Fallback, Skip: why})
			if why == "" {
				r.assign(l, d, &cur, cur.Fallback, now)
				return
			}
			break
		}
	}
	if anyMatch {
		d.Unrouted = schemas.UnroutedNoEligible
	} else {
		d.Unrouted = schemas.UnroutedNoMatch
	}
	r.fail(l, d, now)
}

func (r *Router) assign(l *schemas.LeadState, d schemas.RoutingDecision, rule *schemas.RoutingRule, p string, now int64) {
	d.Rule, d.Partner = rule.ID, p
	l.History = append(l.History, d)
	day := r.local(p, now).Format("2006-01-02")
	if r.Count[p] == nil {
		r.Count[p] = map[string]int{}
	}
	r.Count[p][day]++
	l.Status, l.Partner, l.Reason, l.DeliveredAt = schemas.LeadRouted, p, "", 0
	l.Tried = append(l.Tried, p)
	l.MaxReroutes, l.Deadline = rule.MaxReroutes, 0
	if rule.SLA != "" {
		if sla, err := time.ParseDuration(rule.SLA); err == nil && sla > 0 {
			l.Deadline = now + sla.Milliseconds()
		}
	}
	r.Outcomes = append(r.Outcomes, schemas.LeadOutcome{Type: schemas.OutcomeRouted, Tenant: r.Tenant, LeadID: l.ID, Attempt: d.Attempt,
		At: now, Partner: p, Rule: rule.ID, RuleVersion: d.RuleVersion, Cause: d.Cause, Lead: l.Lead})
}

func (r *Router) local(p string, now int64) time.Time {
	loc := time.UTC
	if tz := r.Partners[p].Timezone; tz != "" {
		if l, err := time.LoadLocation(tz); err == nil {
			loc = l
		}
	}
	return time.UnixMilli(now).In(loc)
}

// why partner p may not take the lead under rule now ("" if it may).
func (r *Router) why(rule *schemas.RoutingRule, l *schemas.LeadState, p string, now int64, capped bool) string {
	if t := r.Partners[p].Tenant; t != "" && t != r.Tenant {
		return schemas.SkipTenant
	}
	for _, t := range l.Tried {
		if t == p {
			return schemas.SkipTried
		}
	}
	t := r.local(p, now)
	if limit, has := rule.CapPerDay[p]; capped && has && r.Count[p][t.Format("2006-01-02")] >= limit {
		return schemas.SkipCap
	}
	if !rule.OutsideHours && !r.inHours(p, t) {
		return schemas.SkipHours
	}
	return ""
}

// inHours reads the partner's working hours afresh, the plain way.
func (r *Router) inHours(p string, t time.Time) bool {
	wh := r.Partners[p].WorkingHours
	if len(wh) == 0 {
		return true
	}
	days := []string{"sun", "mon", "tue", "wed", "thu", "fri", "sat"}
	idx := func(s string) int {
		for i, d := range days {
			if d == s {
				return i
			}
		}
		return -1
	}
	minute := t.Hour()*60 + t.Minute()
	for spec, window := range wh {
		covers := false
		for _, part := range strings.Split(spec, ",") {
			part = strings.ToLower(strings.TrimSpace(part))
			a, b, isRange := strings.Cut(part, "-")
			if !isRange {
				b = a
			}
			for i := idx(a); i >= 0; i = (i + 1) % 7 {
				if i == int(t.Weekday()) {
					covers = true
				}
				if days[i] == b {
					break
				}
			}
		}
		if !covers {
			continue
		}
		from, to, _ := strings.Cut(window, "-")
		if clock(from) <= minute && minute < clock(to) {
			return true
		}
	}
	return false
}

func clock(s string) int {
	h, m, _ := strings.Cut(strings.TrimSpace(s), ":")
	hh, _ := strconv.Atoi(h)
	mm, _ := strconv.Atoi(m)
	return hh*60 + mm
}

// choose applies the rule's strategy to its eligible pool partners.
func (r *Router) choose(rule *schemas.RoutingRule, l *schemas.LeadState, now int64, d *schemas.RoutingDecision) string {
	n := len(rule.Pool)
	why := make([]string, n)
	var eligible []int
	for i, e := range rule.Pool {
		if why[i] = r.why(rule, l, e.Partner, now, true); why[i] == "" {
			eligible = append(eligible, i)
		}
	}
	pick := -1
	if len(eligible) > 0 {
		var sig strings.Builder
		for _, e := range rule.Pool {
			w := e.Weight
			if w < 1 {
				w = 1
			}
			sig.WriteString(e.Partner + "*" + strconv.Itoa(w) + ";")
		}
		if rule.Strategy == schemas.StrategyRoundRobin || rule.Strategy == schemas.StrategyWeighted {
			if r.pools[rule.ID] != sig.String() {
				r.pools[rule.ID] = sig.String()
				r.next[rule.ID] = 0
				r.cur[rule.ID] = make([]int64, n)
			}
		}
		switch rule.Strategy {
		case schemas.StrategyRoundRobin:
			start := r.next[rule.ID]
			for k := 0; k < n && pick < 0; k++ {
				if why[(start+k)%n] == "" {
					pick = (start + k) % n
				}
			}
			r.next[rule.ID] = (pick + 1) % n
		case schemas.StrategyWeighted:
			cur := r.cur[rule.ID]
			var sum int64
			for _, i := range eligible {
				w := int64(rule.Pool[i].Weight)
				if w < 1 {
					w = 1
				}
				cur[i] += w
				sum += w
			}
			for _, i := range eligible {
				if pick < 0 || cur[i] > cur[pick] {
					pick = i
				}
			}
			cur[pick] -= sum
		default:
			pick = eligible[0]
		}
	}
	for i, e := range rule.Pool {
		c := schemas.RoutingCandidate{Rule: rule.ID, Partner: e.Partner, Skip: why[i]}
		if c.Skip == "" && i != pick {
			c.Skip = schemas.SkipTurn
		}
		d.Candidates = append(d.Candidates, c)
	}
	if pick < 0 {
		return ""
	}
	return rule.Pool[pick].Partner
}
