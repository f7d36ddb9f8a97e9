package tags

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/rolodex/rolodex/rules"
	"github.com/rolodex/rolodex/schemas"
)

// Rule is an active rule with its compiled condition.
type Rule struct {
	schemas.TagRule
	Program *rules.Program
}

// RuleSet is every tenant's rules as the tag stage applies them: the
// active ones compiled, and the version of every rule it knows (deleted
// and disabled ones too), for the cause of the removals they make.
type RuleSet struct {
	active   map[string][]*Rule          // tenant → active rules, by id
	versions map[string]map[string]int64 // tenant → rule id → latest version
	// reads: tenant → event type its active rules read (events(), last())
	// → the longest events() window over it (0: last() only).
	reads map[string]map[string]time.Duration
	// Fingerprint changes whenever a rule's version does.
	Fingerprint string
}

// NewRuleSet compiles the active rules of recs. A rule that does not
// compile (the API refuses those; a record written by another version)
// is left out, and returned among the errors.
func NewRuleSet(recs []schemas.TagRule) (*RuleSet, []error) {
	rs := &RuleSet{active: map[string][]*Rule{}, versions: map[string]map[string]int64{}, reads: map[string]map[string]time.Duration{}}
	var errs []error
	rs.Fingerprint = Fingerprint(recs) // sorts recs
	for _, r := range recs {
		if rs.versions[r.Tenant] == nil {
			rs.versions[r.Tenant] = map[string]int64{}
		}
		rs.versions[r.Tenant][r.ID] = r.Version
		if !r.Active() {
			continue
		}
		p, err := rules.Compile(r.Condition)
		if err != nil {
			errs = append(errs, fmt.Errorf("rule %s of %s (version %d): %w", r.ID, r.Tenant, r.Version, err))
			continue
		}
		rs.active[r.Tenant] = append(rs.active[r.Tenant], &Rule{TagRule: r, Program: p})
		for typ, need := range p.EventTypes() {
			if rs.reads[r.Tenant] == nil {
				rs.reads[r.Tenant] = map[string]time.Duration{}
			}
			rs.reads[r.Tenant][typ] = max(rs.reads[r.Tenant][typ], need.Window)
		}
	}
	return rs, errs
}

// Fingerprint identifies a set of rule records by every rule's version
// (it sorts recs by tenant and id): equal fingerprints, equal rule sets,
// so a watcher compiles nothing until a version changes.
func Fingerprint(recs []schemas.TagRule) string {
	sort.Slice(recs, func(i, j int) bool {
		if recs[i].Tenant != recs[j].Tenant {
			return recs[i].Tenant < recs[j].Tenant
		}
		return recs[i].ID < recs[j].ID
	})
	var fp strings.Builder
	for _, r := range recs {
		fmt.Fprintf(&fp, "%s/%s@%d;", r.Tenant, r.ID, r.Version)
	}
	return fp.String()
}

// Active returns the tenant's active rules, by id.
func (rs *RuleSet) Active(tenant string) []*Rule {
	if rs == nil {
		return nil
	}
	return rs.active[tenant]
}

// Version returns the latest version of a rule the set knows.
func (rs *RuleSet) Version(tenant, id string) (int64, bool) {
	if rs == nil {
		return 0, false
	}
	v, ok := rs.versions[tenant][id]
	return v, ok
}

// times converts, for the rules engine, the event times of a snapshot
// that the tenant's active rules can read at now (Unix ms): of each type a
// rule names, the times inside its longest events() window, and at least
// the newest (for last()). events() stops at the first time outside its
// window and NextChange looks only at times inside a window, so leaving
// the others out changes no result; it spares converting up to 100 times
// per type on every evaluation, and the types no rule names.
func (rs *RuleSet) times(tenant string, et map[string][]int64, now int64) map[string][]time.Time {
	reads := rs.reads[tenant]
	at := time.UnixMilli(now)
	// kept is how many of ts the rules can read: the newest and every one
	// inside the window.
	kept := func(ts []int64, window time.Duration) int {
		cutoff := at.Add(-window)
		for i, t := range ts {
			if i > 0 && !time.UnixMilli(t).After(cutoff) {
				return i // newest first: every later one is older
			}
		}
		return len(ts)
	}
	n := 0
	for typ, window := range reads {
		n += kept(et[typ], window)
	}
	out := make(map[string][]time.Time, len(reads))
	buf := make([]time.Time, 0, n)
	for typ, window := range reads {
		ts := et[typ]
		if len(ts) == 0 {
			continue
		}
		from := len(buf)
		for _, t := range ts[:kept(ts, window)] {
			buf = append(buf, time.UnixMilli(t))
		}
		out[typ] = buf[from:len(buf):len(buf)]
	}
	return out
}

// Groups maps each tag of an exclusive group to its group.
type Groups map[string]string

// NewGroups returns the exclusive groups of a status configuration.
func NewGroups(cfg schemas.StatusConfig) Groups {
	g := Groups{}
	for _, grp := range cfg.Groups {
		if !grp.Exclusive {
			continue
		}
		for _, t := range grp.Tags {
			g[t] = grp.Name
		}
	}
	return g
}

func (g Groups) names() []string {
	var out []string
	for _, n := range g {
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}
