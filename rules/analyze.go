package rules

import (
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/google/cel-go/common/ast"
	"github.com/google/cel-go/common/operators"
	"github.com/google/cel-go/common/types"
)

// comparisons maps each comparison operator to its mirror (a OP b ≡ b MIRROR a).
var comparisons = map[string]string{
	operators.Less: operators.Greater, operators.LessEquals: operators.GreaterEquals,
	operators.Greater: operators.Less, operators.GreaterEquals: operators.LessEquals,
	operators.Equals: operators.Equals, operators.NotEquals: operators.NotEquals,
}

var opText = map[string]string{
	operators.Less: "<", operators.LessEquals: "<=", operators.Greater: ">",
	operators.GreaterEquals: ">=", operators.Equals: "==", operators.NotEquals: "!=",
}

// analyzer walks a checked condition once.
type analyzer struct {
	p       *Program
	nat     *ast.AST
	parent  map[int64]ast.Expr
	nows    []ast.Expr
	vars    map[string]bool
	err     *Error
	cmpSeen map[int64]bool
}

func (p *Program) analyze() error {
	a := &analyzer{p: p, nat: p.checked.NativeRep(), parent: map[int64]ast.Expr{}, vars: map[string]bool{}, cmpSeen: map[int64]bool{}}
	p.needs = map[string]Need{}
	p.windows = map[string][]time.Duration{}
	a.walk(a.nat.Expr(), nil)
	if a.err != nil {
		return a.err
	}
	for _, n := range a.nows {
		a.checkNow(n)
		if a.err != nil {
			return a.err
		}
	}
	for v := range a.vars {
		p.vars = append(p.vars, v)
	}
	sort.Strings(p.vars)
	for t, ws := range p.windows {
		slices.Sort(ws)
		p.windows[t] = slices.Compact(ws)
	}
	return nil
}

// pos is where an expression starts: the first character of its
// leftmost part (CEL records a call at its "(" and an operator at the
// operator).
func (a *analyzer) pos(e ast.Expr) Pos {
	info := a.nat.SourceInfo()
	src := []rune(a.p.condition)
	start := int32(-1)
	var visit func(e ast.Expr)
	visit = func(e ast.Expr) {
		if o, ok := info.GetOffsetRange(e.ID()); ok {
			off := o.Start
			if e.Kind() == ast.CallKind && !e.AsCall().IsMemberFunction() {
				name := e.AsCall().FunctionName()
				if n := int32(len([]rune(name))); off >= n && int(off) <= len(src) && string(src[off-n:off]) == name {
					off -= n
				}
			}
			if start < 0 || off < start {
				start = off
			}
		}
		for _, c := range children(e) {
			visit(c)
		}
	}
	visit(e)
	if start < 0 {
		return Pos{1, 1}
	}
	return locPos(info.GetLocationByOffset(start))
}

func (a *analyzer) fail(e ast.Expr, reason, format string, args ...any) {
	if a.err == nil {
		a.err = &Error{Pos: a.pos(e), Reason: reason, Message: fmt.Sprintf(format, args...)}
	}
}

// isVariable: a variable of the tag-rule environment, or of the lead
// environment when lead is set.
func isVariable(name string, lead bool) bool {
	return slices.Contains(Variables, name) || lead && name == LeadVariable
}

func (a *analyzer) walk(e ast.Expr, parent ast.Expr) {
	if a.err != nil {
		return
	}
	if parent != nil {
		a.parent[e.ID()] = parent
	}
	switch e.Kind() {
	case ast.IdentKind:
		name := e.AsIdent()
		if isVariable(name, a.p.lead) {
			a.vars[name] = true
			if name == "now" {
				a.nows = append(a.nows, e)
			}
		}
	case ast.SelectKind:
		a.walk(e.AsSelect().Operand(), e)
	case ast.CallKind:
		c := e.AsCall()
		if c.IsMemberFunction() {
			a.walk(c.Target(), e)
		} else {
			switch c.FunctionName() {
			case "events":
				a.events(e, parent)
			case "last":
				a.last(e)
			}
		}
		for _, arg := range c.Args() {
			a.walk(arg, e)
		}
	case ast.ListKind:
		for _, el := range e.AsList().Elements() {
			a.walk(el, e)
		}
	case ast.MapKind:
		for _, en := range e.AsMap().Entries() {
			me := en.AsMapEntry()
			a.walk(me.Key(), e)
			a.walk(me.Value(), e)
		}
	case ast.StructKind:
		for _, f := range e.AsStruct().Fields() {
			a.walk(f.AsStructField().Value(), e)
		}
	case ast.ComprehensionKind:
		comp := e.AsComprehension()
		for _, v := range []string{comp.IterVar(), comp.IterVar2(), comp.AccuVar()} {
			if isVariable(v, a.p.lead) {
				a.fail(e, ReasonType, "the variable %s of a comprehension shadows the environment's %s; use another name", v, v)
				return
			}
		}
		a.walk(comp.IterRange(), e)
		a.walk(comp.AccuInit(), e)
		a.walk(comp.LoopCondition(), e)
		a.walk(comp.LoopStep(), e)
		a.walk(comp.Result(), e)
	}
}

func stringLit(e ast.Expr) (string, bool) {
	if e.Kind() != ast.LiteralKind {
		return "", false
	}
	s, ok := e.AsLiteral().(types.String)
	return string(s), ok
}

func intLit(e ast.Expr) (int64, bool) {
	if e.Kind() != ast.LiteralKind {
		return 0, false
	}
	i, ok := e.AsLiteral().(types.Int)
	return int64(i), ok
}

// durationLit is duration("…") with a literal string.
func durationLit(e ast.Expr) (time.Duration, bool) {
	if e.Kind() != ast.CallKind || e.AsCall().FunctionName() != "duration" || len(e.AsCall().Args()) != 1 {
		return 0, false
	}
	s, ok := stringLit(e.AsCall().Args()[0])
	if !ok {
		return 0, false
	}
	d, ok := types.String(s).ConvertToType(types.DurationType).(types.Duration)
	return d.Duration, ok
}

// timestampLit is timestamp("…") or timestamp(int) with a literal.
func timestampLit(e ast.Expr) (time.Time, bool) {
	if e.Kind() != ast.CallKind || e.AsCall().FunctionName() != "timestamp" || len(e.AsCall().Args()) != 1 {
		return time.Time{}, false
	}
	arg := e.AsCall().Args()[0]
	if s, ok := stringLit(arg); ok {
		t, ok := types.String(s).ConvertToType(types.TimestampType).(types.Timestamp)
		return t.Time, ok
	}
	if i, ok := intLit(arg); ok {
		t, ok := types.Int(i).ConvertToType(types.TimestampType).(types.Timestamp)
		return t.Time, ok
	}
	return time.Time{}, false
}

// events checks an events(T, W) call and records what it needs.
func (a *analyzer) events(e, parent ast.Expr) {
	args := e.AsCall().Args()
	typ, ok := stringLit(args[0])
	if !ok {
		a.fail(args[0], ReasonEvents, "the event type of events() must be a string literal: the state keeper keeps times only for the types a rule names")
		return
	}
	w, ok := durationLit(args[1])
	if !ok {
		a.fail(args[1], ReasonEvents, `the window of events() must be a literal duration("…"): the state keeper keeps times only as far back as the longest window`)
		return
	}
	if w <= 0 {
		a.fail(args[1], ReasonEvents, "the window of events() must be positive, not %s", w)
		return
	}
	const shape = "events() must be one side of a comparison (>=, >, <=, <, ==, !=) with an integer literal: only then do the latest %d event times decide it exactly"
	if parent == nil || parent.Kind() != ast.CallKind {
		a.fail(e, ReasonEvents, shape, MaxEventsPerType)
		return
	}
	pc := parent.AsCall()
	op := pc.FunctionName()
	if _, ok := comparisons[op]; !ok || len(pc.Args()) != 2 {
		a.fail(e, ReasonEvents, shape, MaxEventsPerType)
		return
	}
	other := pc.Args()[1]
	if pc.Args()[1].ID() == e.ID() {
		other, op = pc.Args()[0], comparisons[op]
	}
	k, ok := intLit(other)
	if !ok {
		a.fail(other, ReasonEvents, shape, MaxEventsPerType)
		return
	}
	need, why := countNeed(op, k)
	if need > MaxEventsPerType {
		a.fail(parent, ReasonEvents, "events(%q, …) %s %d needs the latest %d event times of %q (%s); at most %d are kept per type",
			typ, opText[op], k, need, typ, why, MaxEventsPerType)
		return
	}
	n := a.p.needs[typ]
	n.Keep = max(n.Keep, int(need))
	n.Window = max(n.Window, w)
	a.p.needs[typ] = n
	a.p.windows[typ] = append(a.p.windows[typ], w)
}

// countNeed is how many latest event times decide events(…) op k: with
// the latest K times the engine knows min(count, K) exactly.
func countNeed(op string, k int64) (int64, string) {
	if k > MaxEventsPerType {
		k = MaxEventsPerType + 1 // any larger bound is over the limit as well
	}
	var need int64
	var why string
	switch op {
	case operators.GreaterEquals, operators.Less:
		need, why = k, "telling a count below k from one of k or more"
	default: // >, <=, ==, !=
		need, why = k+1, "telling a count of k from one of k+1 or more"
	}
	return max(need, 0), why
}

// last checks a last(T) call.
func (a *analyzer) last(e ast.Expr) {
	arg := e.AsCall().Args()[0]
	typ, ok := stringLit(arg)
	if !ok {
		a.fail(arg, ReasonEvents, "the event type of last() must be a string literal: the state keeper keeps times only for the types a rule names")
		return
	}
	n := a.p.needs[typ]
	n.Keep = max(n.Keep, 1)
	a.p.needs[typ] = n
}

func isTime(t *types.Type) bool {
	return t != nil && (t.Kind() == types.TimestampKind || t.Kind() == types.DurationKind)
}

const nowShape = "now may only be shifted by durations (+, -) and compared (<, <=, >, >=, ==, !=) with first_seen, last_seen, last(T), timestamp(\"…\") and duration(\"…\") literals, and their sums: only then can the engine foresee when the condition changes as time passes"

// checkNow follows a use of now up through + and - to its comparison
// and records the comparison for NextChange.
func (a *analyzer) checkNow(now ast.Expr) {
	cur := now
	for {
		par, ok := a.parent[cur.ID()]
		if !ok || par.Kind() != ast.CallKind {
			a.fail(now, ReasonTime, nowShape)
			return
		}
		fn := par.AsCall().FunctionName()
		if fn == operators.Add || fn == operators.Subtract {
			if !isTime(a.nat.GetType(par.ID())) {
				a.fail(now, ReasonTime, nowShape)
				return
			}
			cur = par
			continue
		}
		if _, ok := comparisons[fn]; !ok || len(par.AsCall().Args()) != 2 {
			a.fail(now, ReasonTime, nowShape)
			return
		}
		if a.cmpSeen[par.ID()] {
			return
		}
		a.cmpSeen[par.ID()] = true
		args := par.AsCall().Args()
		l, okl := a.lin(args[0], 1)
		r, okr := a.lin(args[1], 1)
		if !okl || !okr {
			a.fail(now, ReasonTime, nowShape)
			return
		}
		a.p.cmps = append(a.p.cmps, timeCmp{left: l, right: r})
		return
	}
}

// lin is a time expression as a sum of signed terms.
func (a *analyzer) lin(e ast.Expr, sign int64) ([]term, bool) {
	switch e.Kind() {
	case ast.IdentKind:
		switch e.AsIdent() {
		case "now":
			return []term{{sign: sign, kind: termNow}}, true
		case "first_seen":
			return []term{{sign: sign, kind: termFirstSeen}}, true
		case "last_seen":
			return []term{{sign: sign, kind: termLastSeen}}, true
		}
	case ast.CallKind:
		c := e.AsCall()
		switch c.FunctionName() {
		case operators.Add, operators.Subtract:
			l, ok := a.lin(c.Args()[0], sign)
			if !ok {
				return nil, false
			}
			s := sign
			if c.FunctionName() == operators.Subtract {
				s = -sign
			}
			r, ok := a.lin(c.Args()[1], s)
			return append(l, r...), ok
		case "last":
			if typ, ok := stringLit(c.Args()[0]); ok {
				return []term{{sign: sign, kind: termLast, typ: typ}}, true
			}
		case "duration":
			if d, ok := durationLit(e); ok {
				return []term{{sign: sign, kind: termDuration, d: d}}, true
			}
		case "timestamp":
			if t, ok := timestampLit(e); ok {
				return []term{{sign: sign, kind: termTimestamp, t: t}}, true
			}
		}
	}
	return nil, false
}
