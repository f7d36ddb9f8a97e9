package rules

// Validation of a tenant's routing rules (docs/routing.md, "Rules"): what
// PUT /v1/routing/rules refuses before anything is written.

import (
	"errors"
	"fmt"
	"strings"

	"github.com/rolodex/rolodex/schemas"
)

// RoutingError is why ValidateRouting refused a list: the rule (its
// position and id) and the field, and for a condition the compile
// refusal (Unwrap returns it, with its line and column).
type RoutingError struct {
	// Index is the rule's position in the list, from 0.
	Index int
	// Rule is the rule's id; empty when it has none.
	Rule string
	// Field is the rule's field: "id", "strategy", "pool",
	// "pool[1].partner", "cap_per_day", "condition", "sla", "fallback",
	// ...
	Field   string
	Message string
	// Condition is CompileLead's refusal, for Field "condition".
	Condition *Error
}

func (e *RoutingError) Error() string {
	who := fmt.Sprintf("rule %d", e.Index+1)
	if e.Rule != "" {
		who = fmt.Sprintf("rule %d (%s)", e.Index+1, e.Rule)
	}
	return fmt.Sprintf("%s: %s: %s", who, e.Field, e.Message)
}

// Unwrap returns the condition's compile refusal, if that is the reason.
func (e *RoutingError) Unwrap() error {
	if e.Condition == nil {
		return nil
	}
	return e.Condition
}

// ValidateRouting checks a tenant's whole ordered list of routing rules.
// partner reports whether a name is a partner the rules may name (the API
// passes "a partner of the caller's tenant"). It refuses, with a
// *RoutingError naming the rule and the field: a rule id empty, not a
// name (schemas.NameRe) or used twice; a strategy other than first,
// round_robin and weighted; an empty pool; a pool partner, cap_per_day
// partner or fallback partner for which partner is false; a cap_per_day
// for a partner outside the pool, or negative; a negative weight (0 reads
// as 1); a partner twice in a pool; a condition CompileLead refuses
// (Unwrap gives its *Error with line and column); an sla that is not a
// positive Go duration; a negative max_reroutes; a consent that is not a
// purpose name; a fallback that is both a rule id and a partner, or
// neither; and a cycle of rule fallbacks ("sp -> national -> sp").
func ValidateRouting(list []schemas.RoutingRule, partner func(name string) bool) error {
	ids := make(map[string]int, len(list))
	for i := range list {
		r := &list[i]
		if err := validateRule(i, r, partner); err != nil {
			return err
		}
		if j, dup := ids[r.ID]; dup {
			return &RoutingError{Index: i, Rule: r.ID, Field: "id", Message: fmt.Sprintf("rule %d has the id %q too; ids are unique in the list", j+1, r.ID)}
		}
		ids[r.ID] = i
	}
	// Fallbacks: a rule or a partner, never both, never neither.
	next := map[string]string{} // rule id → fallback rule id
	for i := range list {
		r := &list[i]
		if r.Fallback == "" {
			continue
		}
		_, isRule := ids[r.Fallback]
		isPartner := partner(r.Fallback)
		switch {
		case isRule && isPartner:
			return &RoutingError{Index: i, Rule: r.ID, Field: "fallback",
				Message: fmt.Sprintf("%q is both a rule id and a partner of this tenant: rename the rule so that the fallback says which", r.Fallback)}
		case !isRule && !isPartner:
			return &RoutingError{Index: i, Rule: r.ID, Field: "fallback",
				Message: fmt.Sprintf("%q is neither a rule id of this list nor a partner of this tenant", r.Fallback)}
		case isRule:
			next[r.ID] = r.Fallback
		}
	}
	// Cycles: walk each rule's chain of rule fallbacks with a visited set.
	for i := range list {
		start := list[i].ID
		seen := map[string]int{} // rule id → position on the path
		var path []string
		for id := start; id != ""; id = next[id] {
			if at, ok := seen[id]; ok {
				cycle := append(path[at:], id)
				return &RoutingError{Index: i, Rule: start, Field: "fallback",
					Message: "a cycle of fallbacks: " + strings.Join(cycle, " -> ")}
			}
			seen[id] = len(path)
			path = append(path, id)
		}
	}
	return nil
}

// validateRule checks what one rule says on its own.
func validateRule(i int, r *schemas.RoutingRule, partner func(string) bool) error {
	refuse := func(field, format string, args ...any) error {
		return &RoutingError{Index: i, Rule: r.ID, Field: field, Message: fmt.Sprintf(format, args...)}
	}
	switch {
	case r.ID == "":
		return refuse("id", "the rule has no id")
	case !schemas.NameRe.MatchString(r.ID):
		return refuse("id", "%q is not a rule id: a letter or digit, then up to 99 letters, digits or _.:-", r.ID)
	}
	switch r.Strategy {
	case schemas.StrategyFirst, schemas.StrategyRoundRobin, schemas.StrategyWeighted:
	case "":
		return refuse("strategy", "missing: first, round_robin or weighted")
	default:
		return refuse("strategy", "%q is not a strategy: first, round_robin or weighted", r.Strategy)
	}
	if len(r.Pool) == 0 {
		return refuse("pool", "the pool is empty: list at least one partner")
	}
	inPool := make(map[string]int, len(r.Pool))
	for j, e := range r.Pool {
		field := fmt.Sprintf("pool[%d]", j)
		switch {
		case e.Partner == "":
			return refuse(field+".partner", "missing")
		case !partner(e.Partner):
			return refuse(field+".partner", "%q is not a partner of this tenant with a delivery", e.Partner)
		case e.Weight < 0:
			return refuse(field+".weight", "%d is negative (at least 1; 0 or none reads as 1)", e.Weight)
		}
		if k, dup := inPool[e.Partner]; dup {
			return refuse(field+".partner", "%q is in the pool twice (pool[%d] too)", e.Partner, k)
		}
		inPool[e.Partner] = j
	}
	for _, p := range schemas.SortedKeys(r.CapPerDay) {
		field := "cap_per_day." + p
		switch n := r.CapPerDay[p]; {
		case !partner(p):
			return refuse(field, "%q is not a partner of this tenant with a delivery", p)
		case n < 0:
			return refuse(field, "%d is negative", n)
		}
		if _, ok := inPool[p]; !ok {
			return refuse(field, "%q is not in the rule's pool; a cap counts only the leads of pool partners", p)
		}
	}
	if strings.TrimSpace(r.Condition) == "" {
		ce := &Error{Pos: Pos{Line: 1, Column: 1}, Reason: ReasonSyntax, Message: `the condition is empty; write "true" for every lead`}
		return &RoutingError{Index: i, Rule: r.ID, Field: "condition", Condition: ce,
			Message: fmt.Sprintf("refused at %s (%s): %s", ce.Pos, ce.Reason, ce.Message)}
	}
	if _, err := CompileLead(r.Condition); err != nil {
		var ce *Error
		if !errors.As(err, &ce) {
			return fmt.Errorf("rule %d (%s): condition: %w", i+1, r.ID, err)
		}
		return &RoutingError{Index: i, Rule: r.ID, Field: "condition", Condition: ce,
			Message: fmt.Sprintf("refused at %s (%s): %s", ce.Pos, ce.Reason, ce.Message)}
	}
	if r.SLA != "" {
		if _, err := r.SLADuration(); err != nil {
			return refuse("sla", "%q is not a positive Go duration (30m, 1h30m)", r.SLA)
		}
	}
	if r.MaxReroutes < 0 {
		return refuse("max_reroutes", "%d is negative", r.MaxReroutes)
	}
	if r.Consent != "" && !schemas.NameRe.MatchString(r.Consent) {
		return refuse("consent", "%q is not a consent purpose: a letter or digit, then up to 99 letters, digits or _.:-", r.Consent)
	}
	return nil
}
