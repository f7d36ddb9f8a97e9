package rules

import (
	"fmt"
	"sync"
	"time"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/checker"
	"github.com/google/cel-go/common"

	"github.com/rolodex/rolodex/schemas"
)

const (
	// MaxEventsPerType is how many latest event times per event type the
	// state keeper may keep for one profile: the largest count a condition
	// may need (events(T, W) >= 100 is accepted, >= 101 is refused): what
	// the identity stage keeps (schemas.EventTimesLimit).
	MaxEventsPerType = schemas.EventTimesLimit

	// MaxCost bounds the estimated worst-case cost of a condition, in CEL
	// cost units (about one per operation, one per list element scanned),
	// computed with every map, list and string of the environment taken at
	// AssumedSize. One scan of a collection costs about AssumedSize, so a
	// condition may scan a few dozen collections but not nest two scans
	// (AssumedSize² = 1,000,000). Kubernetes takes the same approach with
	// its per-expression limit on validation rules.
	MaxCost = 100_000

	// AssumedSize is the size the cost estimate gives every map, list and
	// string of the environment (traits, identifiers, tags, a trait value).
	AssumedSize = 1_000

	// RuntimeCostLimit stops an evaluation whose actual cost exceeds it (a
	// profile far larger than AssumedSize): Eval returns an error and the
	// caller leaves the tag as it was.
	RuntimeCostLimit = 10 * MaxCost

	// MaxConditionLength is the longest condition accepted, in code points.
	MaxConditionLength = 4096
)

// Reasons of an *Error.
const (
	ReasonSyntax = "syntax" // not a CEL expression
	ReasonType   = "type"   // does not type-check against the environment
	ReasonResult = "result" // not of type bool
	ReasonCost   = "cost"   // estimated cost above MaxCost
	ReasonEvents = "events" // events() or last() the memory bound cannot decide
	ReasonTime   = "time"   // a use of now whose change in time cannot be foreseen
)

// Pos is a position in a condition: line and column, both from 1
// (columns count code points).
type Pos struct {
	Line   int `json:"line"`
	Column int `json:"column"`
}

func (p Pos) String() string { return fmt.Sprintf("%d:%d", p.Line, p.Column) }

// Error is why Compile refused a condition.
type Error struct {
	Pos     Pos    `json:"pos"`
	Reason  string `json:"reason"`
	Message string `json:"message"`
}

func (e *Error) Error() string {
	return fmt.Sprintf("rules: %s: %s: %s", e.Pos, e.Reason, e.Message)
}

// Function overload ids.
const (
	overloadEvents = "rolodex_events_string_duration"
	overloadLast   = "rolodex_last_string"
)

// Variables is every variable of the environment.
var Variables = []string{"traits", "identifiers", "counters", "event_count", "first_seen", "last_seen",
	"tags", "consent", "blacklisted", "channels", "now"}

// LeadVariable is the variable the lead environment adds (CompileLead):
// the lead event being routed (docs/routing.md).
const LeadVariable = "lead"

var (
	envOnce     sync.Once
	theEnv      *cel.Env
	envErr      error
	leadEnvOnce sync.Once
	theLeadEnv  *cel.Env
	leadEnvErr  error
)

// env is the tag-rule environment, built once.
func env() (*cel.Env, error) {
	envOnce.Do(func() {
		theEnv, envErr = cel.NewEnv(envOptions()...)
	})
	return theEnv, envErr
}

// leadEnv is the routing environment: the tag-rule environment plus
// lead, built once.
func leadEnv() (*cel.Env, error) {
	leadEnvOnce.Do(func() {
		theLeadEnv, leadEnvErr = cel.NewEnv(append(envOptions(),
			cel.Variable(LeadVariable, cel.MapType(cel.StringType, cel.DynType)))...)
	})
	return theLeadEnv, leadEnvErr
}

// envFor is the environment a program was compiled against.
func envFor(lead bool) (*cel.Env, error) {
	if lead {
		return leadEnv()
	}
	return env()
}

func envOptions() []cel.EnvOption {
	return []cel.EnvOption{
		cel.Variable("traits", cel.MapType(cel.StringType, cel.DynType)),
		cel.Variable("identifiers", cel.MapType(cel.StringType, cel.ListType(cel.StringType))),
		cel.Variable("counters", cel.MapType(cel.StringType, cel.IntType)),
		cel.Variable("event_count", cel.IntType),
		cel.Variable("first_seen", cel.TimestampType),
		cel.Variable("last_seen", cel.TimestampType),
		cel.Variable("tags", cel.ListType(cel.StringType)),
		cel.Variable("consent", cel.MapType(cel.StringType, cel.StringType)),
		cel.Variable("blacklisted", cel.BoolType),
		cel.Variable("channels", cel.ListType(cel.StringType)),
		cel.Variable("now", cel.TimestampType),
		// Bound per program (see slot): they read the Input being evaluated.
		cel.Function("events", cel.Overload(overloadEvents,
			[]*cel.Type{cel.StringType, cel.DurationType}, cel.IntType, cel.LateFunctionBinding())),
		cel.Function("last", cel.Overload(overloadLast,
			[]*cel.Type{cel.StringType}, cel.TimestampType, cel.LateFunctionBinding())),
		cel.CrossTypeNumericComparisons(true),
		cel.ParserExpressionSizeLimit(MaxConditionLength),
	}
}

// Need is what a program needs of one event type.
type Need struct {
	// Keep is how many latest event times of the type decide the
	// condition (at most MaxEventsPerType; 1 for last()).
	Keep int `json:"keep"`
	// Window is the longest events() window over the type (0 if only
	// last() reads it).
	Window time.Duration `json:"window"`
}

// Program is a compiled condition. It is safe for concurrent use.
type Program struct {
	condition string
	checked   *cel.Ast
	needs     map[string]Need
	windows   map[string][]time.Duration // type → distinct events() windows
	vars      []string
	cmps      []timeCmp
	cost      uint64
	lead      bool // compiled against the lead environment
	pool      sync.Pool
}

// Condition is the source the program was compiled from.
func (p *Program) Condition() string { return p.condition }

// EventTypes says, per event type the condition reads with events() or
// last(), how many latest times it needs and the longest window, so the
// state keeper keeps just that. The map is the program's: do not change it.
func (p *Program) EventTypes() map[string]Need { return p.needs }

// Vars is the environment variables the condition reads, sorted.
func (p *Program) Vars() []string { return p.vars }

// Cost is the condition's estimated worst-case cost (at most MaxCost).
func (p *Program) Cost() uint64 { return p.cost }

// Compile parses, type-checks and checks a condition against the
// tag-rule environment (package doc). A refusal is an *Error.
func Compile(condition string) (*Program, error) { return compile(condition, false) }

// CompileLead compiles a routing condition against the lead environment:
// the tag-rule environment plus the variable lead, a map with type, id
// (strings), properties, traits (maps of decoded JSON values), identifiers
// (map of lists of strings) and time (timestamp): Input.Lead, built by
// FromLead (docs/routing.md). Refusals are those of Compile.
func CompileLead(condition string) (*Program, error) { return compile(condition, true) }

func compile(condition string, lead bool) (*Program, error) {
	e, err := envFor(lead)
	if err != nil {
		return nil, fmt.Errorf("rules: environment: %w", err)
	}
	parsed, iss := e.Parse(condition)
	if iss.Err() != nil {
		return nil, issueError(ReasonSyntax, iss)
	}
	checked, iss := e.Check(parsed)
	if iss.Err() != nil {
		return nil, issueError(ReasonType, iss)
	}
	if !checked.OutputType().IsExactType(cel.BoolType) {
		return nil, &Error{Pos: Pos{1, 1}, Reason: ReasonResult,
			Message: fmt.Sprintf("the condition is of type %s; it must be bool", checked.OutputType())}
	}
	p := &Program{condition: condition, checked: checked, lead: lead}
	if err := p.analyze(); err != nil {
		return nil, err
	}
	est, err := e.EstimateCost(checked, estimator{})
	if err != nil {
		return nil, fmt.Errorf("rules: estimate cost: %w", err)
	}
	if est.Max > MaxCost {
		return nil, &Error{Pos: Pos{1, 1}, Reason: ReasonCost,
			Message: fmt.Sprintf("estimated cost %d exceeds the limit %d (every map, list and string taken at %d entries)", est.Max, MaxCost, AssumedSize)}
	}
	p.cost = est.Max
	s, err := p.newSlot(0)
	if err != nil {
		return nil, err
	}
	p.pool.Put(s)
	return p, nil
}

func issueError(reason string, iss *cel.Issues) *Error {
	errs := iss.Errors()
	if len(errs) == 0 {
		return &Error{Pos: Pos{1, 1}, Reason: reason, Message: iss.Err().Error()}
	}
	first := errs[0]
	return &Error{Pos: locPos(first.Location), Reason: reason, Message: first.Message}
}

func locPos(l common.Location) Pos {
	if l == nil || l.Line() < 1 {
		return Pos{1, 1}
	}
	return Pos{l.Line(), l.Column() + 1}
}

// estimator gives the cost estimate a size for every collection and
// string of the environment, and a cost to events() and last().
type estimator struct{}

func (estimator) EstimateSize(checker.AstNode) *checker.SizeEstimate {
	s := checker.FixedSizeEstimate(AssumedSize)
	return &s
}

func (estimator) EstimateCallCost(function, overloadID string, _ *checker.AstNode, _ []checker.AstNode) *checker.CallEstimate {
	switch overloadID {
	case overloadEvents:
		// A scan of at most MaxEventsPerType times.
		return &checker.CallEstimate{CostEstimate: checker.CostEstimate{Min: 1, Max: MaxEventsPerType}}
	case overloadLast:
		return &checker.CallEstimate{CostEstimate: checker.FixedCostEstimate(1)}
	}
	return nil
}
