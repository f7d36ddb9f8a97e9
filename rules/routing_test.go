package rules

import (
	"errors"
	"strings"
	"testing"

	"github.com/rolodex/rolodex/schemas"
)

// The tenant's partners in these tests.
func isPartner(name string) bool {
	switch name {
	case "dealer-sp", "dealer-cps", "dealer-rj", "dealer-bh", "national-desk":
		return true
	}
	return false
}

// goodRouting is the example, valid.
func goodRouting() []schemas.RoutingRule {
	return []schemas.RoutingRule{
		{ID: "sp", Condition: `lead.properties.region == "SP"`, Strategy: schemas.StrategyWeighted,
			Pool:      []schemas.RoutingPoolEntry{{Partner: "dealer-sp", Weight: 2}, {Partner: "dealer-cps", Weight: 1}},
			CapPerDay: map[string]int{"dealer-sp": 50}, SLA: "30m", MaxReroutes: 2, Fallback: "national", Consent: "lead_sharing"},
		{ID: "national", Condition: "true", Strategy: schemas.StrategyRoundRobin,
			Pool: []schemas.RoutingPoolEntry{{Partner: "dealer-rj"}, {Partner: "dealer-bh"}}, Fallback: "national-desk"},
		{ID: "last", Condition: "true", Strategy: schemas.StrategyFirst, Pool: []schemas.RoutingPoolEntry{{Partner: "national-desk", Weight: 0}},
			CapPerDay: map[string]int{"national-desk": 0}},
	}
}

func TestValidateRoutingAccepts(t *testing.T) {
	if err := ValidateRouting(goodRouting(), isPartner); err != nil {
		t.Fatalf("the issue's example: %v", err)
	}
	if err := ValidateRouting(nil, isPartner); err != nil {
		t.Fatalf("an empty list: %v", err)
	}
	// A chain that ends (a -> b -> c) is no cycle, from any start.
	chain := goodRouting()
	chain[1].Fallback = "last"
	if err := ValidateRouting(chain, isPartner); err != nil {
		t.Fatalf("a chain sp -> national -> last: %v", err)
	}
}

// Every refusal names the rule (position and id) and the field.
func TestValidateRoutingRefusals(t *testing.T) {
	for _, tt := range []struct {
		name   string
		change func(rs []schemas.RoutingRule) []schemas.RoutingRule
		want   string // the whole message, or its start when it ends with "…"
	}{
		{"empty id", func(rs []schemas.RoutingRule) []schemas.RoutingRule { rs[1].ID = ""; return rs },
			"rule 2: id: the rule has no id"},
		{"malformed id", func(rs []schemas.RoutingRule) []schemas.RoutingRule {
			rs[1].ID = "no spaces"
			rs[0].Fallback = ""
			return rs
		},
			`rule 2 (no spaces): id: "no spaces" is not a rule id: a letter or digit, then up to 99 letters, digits or _.:-`},
		{"duplicate id", func(rs []schemas.RoutingRule) []schemas.RoutingRule { rs[2].ID = "sp"; return rs },
			`rule 3 (sp): id: rule 1 has the id "sp" too; ids are unique in the list`},
		{"unknown strategy", func(rs []schemas.RoutingRule) []schemas.RoutingRule { rs[0].Strategy = "random"; return rs },
			`rule 1 (sp): strategy: "random" is not a strategy: first, round_robin or weighted`},
		{"no strategy", func(rs []schemas.RoutingRule) []schemas.RoutingRule { rs[1].Strategy = ""; return rs },
			`rule 2 (national): strategy: missing: first, round_robin or weighted`},
		{"empty pool", func(rs []schemas.RoutingRule) []schemas.RoutingRule { rs[1].Pool = nil; return rs },
			`rule 2 (national): pool: the pool is empty: list at least one partner`},
		{"unknown pool partner", func(rs []schemas.RoutingRule) []schemas.RoutingRule {
			rs[1].Pool[1].Partner = "dealer-other"
			return rs
		},
			`rule 2 (national): pool[1].partner: "dealer-other" is not a partner of this tenant with a delivery`},
		{"pool entry without partner", func(rs []schemas.RoutingRule) []schemas.RoutingRule { rs[1].Pool[0].Partner = ""; return rs },
			`rule 2 (national): pool[0].partner: missing`},
		{"negative weight", func(rs []schemas.RoutingRule) []schemas.RoutingRule { rs[0].Pool[1].Weight = -1; return rs },
			`rule 1 (sp): pool[1].weight: -1 is negative (at least 1; 0 or none reads as 1)`},
		{"duplicate pool partner", func(rs []schemas.RoutingRule) []schemas.RoutingRule {
			rs[1].Pool = append(rs[1].Pool, schemas.RoutingPoolEntry{Partner: "dealer-rj", Weight: 3})
			return rs
		}, `rule 2 (national): pool[2].partner: "dealer-rj" is in the pool twice (pool[0] too)`},
		{"unknown cap partner", func(rs []schemas.RoutingRule) []schemas.RoutingRule { rs[0].CapPerDay["dealer-x"] = 3; return rs },
			`rule 1 (sp): cap_per_day.dealer-x: "dealer-x" is not a partner of this tenant with a delivery`},
		{"cap partner outside the pool", func(rs []schemas.RoutingRule) []schemas.RoutingRule { rs[0].CapPerDay["dealer-rj"] = 3; return rs },
			`rule 1 (sp): cap_per_day.dealer-rj: "dealer-rj" is not in the rule's pool; a cap counts only the leads of pool partners`},
		{"negative cap", func(rs []schemas.RoutingRule) []schemas.RoutingRule { rs[0].CapPerDay["dealer-sp"] = -5; return rs },
			`rule 1 (sp): cap_per_day.dealer-sp: -5 is negative`},
		{"unknown fallback partner", func(rs []schemas.RoutingRule) []schemas.RoutingRule { rs[1].Fallback = "dealer-x"; return rs },
			`rule 2 (national): fallback: "dealer-x" is neither a rule id of this list nor a partner of this tenant`},
		{"fallback both rule and partner", func(rs []schemas.RoutingRule) []schemas.RoutingRule {
			rs[2].ID = "dealer-bh"
			rs[0].Fallback = "dealer-bh"
			return rs
		},
			`rule 1 (sp): fallback: "dealer-bh" is both a rule id and a partner of this tenant: rename the rule so that the fallback says which`},
		{"condition syntax", func(rs []schemas.RoutingRule) []schemas.RoutingRule {
			rs[1].Condition = `lead.properties.region == `
			return rs
		},
			`rule 2 (national): condition: refused at 1:27 (syntax): Syntax error: …`},
		{"condition not bool", func(rs []schemas.RoutingRule) []schemas.RoutingRule { rs[0].Condition = "lead.id"; return rs },
			`rule 1 (sp): condition: refused at 1:1 (result): …`},
		{"empty condition", func(rs []schemas.RoutingRule) []schemas.RoutingRule { rs[2].Condition = ""; return rs },
			`rule 3 (last): condition: refused at 1:1 (syntax): the condition is empty; write "true" for every lead`},
		{"sla not a duration", func(rs []schemas.RoutingRule) []schemas.RoutingRule { rs[0].SLA = "half an hour"; return rs },
			`rule 1 (sp): sla: "half an hour" is not a positive Go duration (30m, 1h30m)`},
		{"sla not positive", func(rs []schemas.RoutingRule) []schemas.RoutingRule { rs[0].SLA = "-30m"; return rs },
			`rule 1 (sp): sla: "-30m" is not a positive Go duration (30m, 1h30m)`},
		{"sla zero", func(rs []schemas.RoutingRule) []schemas.RoutingRule { rs[0].SLA = "0s"; return rs },
			`rule 1 (sp): sla: "0s" is not a positive Go duration (30m, 1h30m)`},
		{"negative max_reroutes", func(rs []schemas.RoutingRule) []schemas.RoutingRule { rs[0].MaxReroutes = -1; return rs },
			`rule 1 (sp): max_reroutes: -1 is negative`},
		{"bad consent", func(rs []schemas.RoutingRule) []schemas.RoutingRule { rs[0].Consent = "lead sharing"; return rs },
			`rule 1 (sp): consent: "lead sharing" is not a consent purpose: a letter or digit, then up to 99 letters, digits or _.:-`},
		{"fallback to itself", func(rs []schemas.RoutingRule) []schemas.RoutingRule { rs[2].Fallback = "last"; return rs },
			`rule 3 (last): fallback: a cycle of fallbacks: last -> last`},
		{"cycle of two", func(rs []schemas.RoutingRule) []schemas.RoutingRule { rs[1].Fallback = "sp"; return rs },
			`rule 1 (sp): fallback: a cycle of fallbacks: sp -> national -> sp`},
		{"cycle entered from outside", func(rs []schemas.RoutingRule) []schemas.RoutingRule {
			rs[0].Fallback, rs[1].Fallback, rs[2].Fallback = "national", "last", "national"
			return rs
		}, `rule 1 (sp): fallback: a cycle of fallbacks: national -> last -> national`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateRouting(tt.change(goodRouting()), isPartner)
			var re *RoutingError
			if !errors.As(err, &re) {
				t.Fatalf("err %v (%T), want a *RoutingError", err, err)
			}
			got := err.Error()
			if prefix, ok := strings.CutSuffix(tt.want, "…"); ok {
				if !strings.HasPrefix(got, prefix) || len(got) == len(prefix) {
					t.Fatalf("refusal %q, want %q…", got, prefix)
				}
			} else if got != tt.want {
				t.Fatalf("refusal %q, want %q", got, tt.want)
			}
		})
	}
}

// A condition refusal keeps CompileLead's *Error: reason, line, column.
func TestValidateRoutingConditionPosition(t *testing.T) {
	rs := goodRouting()
	rs[1].Condition = "lead.properties.region == \"SP\" &&\n  tags == \"x\""
	err := ValidateRouting(rs, isPartner)
	var re *RoutingError
	var ce *Error
	if !errors.As(err, &re) || re.Field != "condition" || re.Index != 1 || re.Rule != "national" || !errors.As(err, &ce) {
		t.Fatalf("err %v", err)
	}
	if ce.Reason != ReasonType || ce.Pos != (Pos{Line: 2, Column: 8}) || re.Condition != ce {
		t.Fatalf("condition refusal %+v, want type at 2:8", ce)
	}
	// Other refusals wrap nothing.
	rs = goodRouting()
	rs[0].Strategy = "x"
	if err := ValidateRouting(rs, isPartner); errors.As(err, &ce) {
		t.Fatalf("a strategy refusal unwraps to a condition error: %v", err)
	}
}

// The partner test is the caller's: a partner of another tenant is
// refused wherever the rules name it.
func TestValidateRoutingPartnerOfTenant(t *testing.T) {
	onlySP := func(name string) bool { return name == "dealer-sp" }
	rs := []schemas.RoutingRule{{ID: "a", Condition: "true", Strategy: schemas.StrategyFirst, Pool: []schemas.RoutingPoolEntry{{Partner: "dealer-sp"}}}}
	if err := ValidateRouting(rs, onlySP); err != nil {
		t.Fatal(err)
	}
	rs[0].Fallback = "dealer-rj"
	if err := ValidateRouting(rs, onlySP); err == nil || !strings.Contains(err.Error(), `fallback: "dealer-rj" is neither`) {
		t.Fatalf("fallback to another tenant's partner: %v", err)
	}
}
