package tags

import (
	"fmt"
	"slices"
	"sort"
	"strings"

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
	// Fingerprint changes whenever a rule's version does.
	Fingerprint string
}

// NewRuleSet compiles the active rules of recs. A rule that does not
// compile (the API refuses those; a record written by another version)
// is left out, and returned among the errors.
func NewRuleSet(recs []schemas.TagRule) (*RuleSet, []error) {
	rs := &RuleSet{active: map[string][]*Rule{}, versions: map[string]map[string]int64{}}
	var errs []error
	sort.Slice(recs, func(i, j int) bool {
		if recs[i].Tenant != recs[j].Tenant {
			return recs[i].Tenant < recs[j].Tenant
		}
		return recs[i].ID < recs[j].ID
	})
	var fp strings.Builder
	for _, r := range recs {
		if rs.versions[r.Tenant] == nil {
			rs.versions[r.Tenant] = map[string]int64{}
		}
		rs.versions[r.Tenant][r.ID] = r.Version
		fmt.Fprintf(&fp, "%s/%s@%d;", r.Tenant, r.ID, r.Version)
		if !r.Active() {
			continue
		}
		p, err := rules.Compile(r.Condition)
		if err != nil {
			errs = append(errs, fmt.Errorf("rule %s of %s (version %d): %w", r.ID, r.Tenant, r.Version, err))
			continue
		}
		rs.active[r.Tenant] = append(rs.active[r.Tenant], &Rule{TagRule: r, Program: p})
	}
	rs.Fingerprint = fp.String()
	return rs, errs
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
