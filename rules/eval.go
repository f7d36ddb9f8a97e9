package rules

import (
	"fmt"
	"sort"
	"time"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/ast"
	"github.com/google/cel-go/common/functions"
	"github.com/google/cel-go/common/operators"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/common/types/traits"
	"github.com/google/cel-go/parser"
)

// slot is one cel.Program whose events() and last() read the Input being
// evaluated; Programs keep a pool of them so that evaluations may run
// concurrently.
type slot struct {
	prg cel.Program
	in  *Input
}

func (p *Program) newSlot(opts cel.EvalOption) (*slot, error) {
	e, err := envFor(p.lead)
	if err != nil {
		return nil, err
	}
	s := &slot{}
	popts := []cel.ProgramOption{
		cel.Functions(
			&functions.Overload{Operator: overloadEvents, Binary: s.events},
			&functions.Overload{Operator: overloadLast, Unary: s.last},
		),
		cel.CostLimit(RuntimeCostLimit),
	}
	if opts != 0 {
		popts = append(popts, cel.EvalOptions(opts))
	}
	s.prg, err = e.Program(p.checked, popts...)
	if err != nil {
		return nil, fmt.Errorf("rules: program: %w", err)
	}
	return s, nil
}

// events counts the kept times of a type after now - window.
func (s *slot) events(typ, window ref.Val) ref.Val {
	t, ok1 := typ.(types.String)
	w, ok2 := window.(types.Duration)
	if !ok1 || !ok2 || s.in == nil {
		return types.NewErr("events: bad arguments")
	}
	cutoff := s.in.Now.Add(-w.Duration)
	n := 0
	for _, at := range s.in.Times[string(t)] {
		if !at.After(cutoff) {
			break // newest first: every later one is older
		}
		n++
	}
	return types.Int(n)
}

// last is the newest kept time of a type, or the epoch.
func (s *slot) last(typ ref.Val) ref.Val {
	t, ok := typ.(types.String)
	if !ok || s.in == nil {
		return types.NewErr("last: bad argument")
	}
	if ts := s.in.Times[string(t)]; len(ts) > 0 {
		return types.Timestamp{Time: ts[0]}
	}
	return types.Timestamp{Time: epoch}
}

func (p *Program) get() (*slot, error) {
	if s, ok := p.pool.Get().(*slot); ok {
		return s, nil
	}
	return p.newSlot(0)
}

// Eval evaluates the condition on in. A runtime error (a missing map key,
// a trait of the wrong type, the runtime cost limit) is returned as an
// error, never a panic: the caller leaves the tag as it was.
func (p *Program) Eval(in *Input) (bool, error) {
	s, err := p.get()
	if err != nil {
		return false, err
	}
	defer p.pool.Put(s)
	return s.eval(in)
}

func (s *slot) eval(in *Input) (result bool, err error) {
	s.in = in
	defer func() {
		s.in = nil
		if r := recover(); r != nil {
			result, err = false, fmt.Errorf("rules: evaluate: %v", r)
		}
	}()
	out, _, err := s.prg.Eval(activation{in})
	if err != nil {
		return false, fmt.Errorf("rules: evaluate: %w", err)
	}
	b, ok := out.(types.Bool)
	if !ok {
		return false, fmt.Errorf("rules: evaluate: result %v is not a bool", out)
	}
	return bool(b), nil
}

// Read is one value a condition read: a variable (or a field or key of
// one), an events() or a last() call.
type Read struct {
	Expr  string `json:"expr"`
	Value any    `json:"value,omitempty"`
	Error string `json:"error,omitempty"`
}

// Explain evaluates like Eval and also returns every value the condition
// reads, in source order, each once (the dry run of the rules API). It
// evaluates every branch (no short circuit), so a read that Eval would
// skip is listed too, with its error if it has one.
func (p *Program) Explain(in *Input) (bool, []Read, error) {
	s, err := p.newSlot(cel.OptExhaustiveEval)
	if err != nil {
		return false, nil, err
	}
	s.in = in
	defer func() { s.in = nil }()
	out, det, evalErr := s.prg.Eval(activation{in})
	var reads []Read
	if det != nil && det.State() != nil {
		reads = p.reads(det.State())
	}
	if evalErr != nil {
		return false, reads, fmt.Errorf("rules: evaluate: %w", evalErr)
	}
	b, ok := out.(types.Bool)
	if !ok {
		return false, reads, fmt.Errorf("rules: evaluate: result %v is not a bool", out)
	}
	return bool(b), reads, nil
}

type evalState interface {
	Value(int64) (ref.Val, bool)
}

func (p *Program) reads(st evalState) []Read {
	nat := p.checked.NativeRep()
	type found struct {
		e   ast.Expr
		off int32
	}
	var all []found
	var walk func(e ast.Expr)
	walk = func(e ast.Expr) {
		if isRead(e, p.lead) {
			off, _ := nat.SourceInfo().GetOffsetRange(e.ID())
			all = append(all, found{e, off.Start})
			// The keys of an index chain may read variables too.
			for c := e; ; {
				switch {
				case c.Kind() == ast.SelectKind:
					c = c.AsSelect().Operand()
					continue
				case c.Kind() == ast.CallKind && c.AsCall().FunctionName() == operators.Index:
					walk(c.AsCall().Args()[1])
					c = c.AsCall().Args()[0]
					continue
				}
				break
			}
			return
		}
		for _, ch := range children(e) {
			walk(ch)
		}
	}
	walk(nat.Expr())
	sort.SliceStable(all, func(i, j int) bool { return all[i].off < all[j].off })
	seen := map[string]bool{}
	var out []Read
	for _, f := range all {
		text, err := parser.Unparse(f.e, nat.SourceInfo())
		if err != nil || seen[text] {
			continue
		}
		seen[text] = true
		r := Read{Expr: text}
		v, ok := st.Value(f.e.ID())
		switch {
		case !ok:
			r.Error = "not evaluated"
		case types.IsError(v):
			r.Error = v.(*types.Err).Error()
		default:
			r.Value = native(v)
		}
		out = append(out, r)
	}
	return out
}

// isRead: a variable, a field or key path rooted in one, or a call of
// events() or last().
func isRead(e ast.Expr, lead bool) bool {
	switch e.Kind() {
	case ast.IdentKind:
		return isVariable(e.AsIdent(), lead)
	case ast.SelectKind:
		return isRead(e.AsSelect().Operand(), lead)
	case ast.CallKind:
		c := e.AsCall()
		switch c.FunctionName() {
		case "events", "last":
			return !c.IsMemberFunction()
		case operators.Index:
			return isRead(c.Args()[0], lead)
		}
	}
	return false
}

func children(e ast.Expr) []ast.Expr {
	var out []ast.Expr
	switch e.Kind() {
	case ast.SelectKind:
		out = append(out, e.AsSelect().Operand())
	case ast.CallKind:
		c := e.AsCall()
		if c.IsMemberFunction() {
			out = append(out, c.Target())
		}
		out = append(out, c.Args()...)
	case ast.ListKind:
		out = append(out, e.AsList().Elements()...)
	case ast.MapKind:
		for _, en := range e.AsMap().Entries() {
			out = append(out, en.AsMapEntry().Key(), en.AsMapEntry().Value())
		}
	case ast.StructKind:
		for _, f := range e.AsStruct().Fields() {
			out = append(out, f.AsStructField().Value())
		}
	case ast.ComprehensionKind:
		c := e.AsComprehension()
		out = append(out, c.IterRange(), c.AccuInit(), c.LoopCondition(), c.LoopStep(), c.Result())
	}
	return out
}

// native turns a CEL value into plain Go (JSON-friendly) values.
func native(v ref.Val) any {
	switch x := v.(type) {
	case types.Timestamp:
		return x.Time.UTC().Format(time.RFC3339Nano)
	case types.Duration:
		return x.Duration.String()
	case types.Null:
		return nil
	case traits.Mapper:
		m := map[string]any{}
		for it := x.Iterator(); it.HasNext() == types.True; {
			k := it.Next()
			if val, ok := x.Find(k); ok {
				m[fmt.Sprint(k.Value())] = native(val)
			}
		}
		return m
	case traits.Lister:
		var l []any
		for it := x.Iterator(); it.HasNext() == types.True; {
			l = append(l, native(it.Next()))
		}
		return l
	}
	return v.Value()
}
