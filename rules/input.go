package rules

import (
	"bytes"
	"encoding/json"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/common/types/traits"
	"github.com/google/cel-go/interpreter"

	"github.com/rolodex/rolodex/schemas"
)

// epoch is what first_seen, last_seen and last(T) are when there is no
// event: timestamp(0).
var epoch = time.Unix(0, 0).UTC()

// Input is what a condition reads about one profile at one instant. The
// engine only reads it: one Input serves every rule of a profile, and it
// must not change while a rule evaluates it.
type Input struct {
	Traits      map[string]any // each trait's JSON value decoded: int64 for numbers written as integers, float64, string, bool, nil, []any, map[string]any
	Identifiers map[string][]string
	Counters    map[string]int64
	EventCount  int64
	FirstSeen   time.Time // the epoch if none
	LastSeen    time.Time // the epoch if none
	Tags        []string
	Consent     map[string]string // purpose → granted, denied, revoked, expired
	Blacklisted bool
	Channels    []string // channel names with a valid identifier, sorted
	// Times holds, per event type, the latest event times the state
	// keeper kept, newest first (at most what EventTypes asks for).
	Times map[string][]time.Time
	// Now is the evaluation instant (FromProfile truncates it to the
	// millisecond: NextChange's guarantee is on the millisecond grid).
	Now time.Time
	// Lead is the variable lead of the lead environment (CompileLead):
	// type, id, properties, traits, identifiers, time. FromLead sets it;
	// nil reads as an empty map.
	Lead map[string]any
}

// FromLead builds the Input of a routing condition at now: the lead's
// profile (an empty one if it has none) as FromProfile reads it, with no
// event times, and the lead variable: type and id (strings), properties
// and traits (each value's JSON decoded as for traits), identifiers and
// time (the event time, a timestamp).
func FromLead(l *schemas.RoutingLead, now time.Time) *Input {
	p := l.Profile
	if p == nil {
		p = &schemas.Profile{}
	}
	in := FromProfile(p, nil, now)
	in.Lead = map[string]any{
		"type":        l.Type,
		"id":          l.ID,
		"properties":  decodeAll(l.Properties),
		"traits":      decodeAll(l.Traits),
		"identifiers": nonNil(l.Identifiers),
		"time":        time.UnixMilli(l.Time).UTC(),
	}
	return in
}

func decodeAll(m map[string]string) map[string]any {
	out := make(map[string]any, len(m))
	for k, raw := range m {
		if v, ok := decodeJSON(json.RawMessage(raw)); ok {
			out[k] = v
		}
	}
	return out
}

// FromProfile builds the Input of a profile at now: times are the kept
// latest event times per type, newest first (the Input shares the map and
// the profile's maps and slices; it copies nothing it does not have to).
// A consent granted with an expiry at or before now reads "expired".
func FromProfile(p *schemas.Profile, times map[string][]time.Time, now time.Time) *Input {
	now = now.Truncate(time.Millisecond)
	in := &Input{
		Traits:      make(map[string]any, len(p.Traits)),
		Identifiers: p.Identifiers,
		Counters:    p.Counters,
		EventCount:  p.EventCount,
		FirstSeen:   parseTime(p.FirstSeen),
		LastSeen:    parseTime(p.LastSeen),
		Tags:        make([]string, 0, len(p.Tags)),
		Consent:     make(map[string]string, len(p.Consent)),
		Blacklisted: p.Blacklisted,
		Channels:    make([]string, 0, len(p.Channels)),
		Times:       times,
		Now:         now,
	}
	for k, raw := range p.Traits {
		if v, ok := decodeJSON(raw); ok {
			in.Traits[k] = v
		}
	}
	for _, t := range p.Tags {
		in.Tags = append(in.Tags, t.Tag)
	}
	for purpose, c := range p.Consent {
		status := c.Status
		if status == schemas.ConsentGranted && c.ExpiresAt != "" {
			if exp, err := time.Parse(time.RFC3339Nano, c.ExpiresAt); err == nil && !now.Before(exp) {
				status = schemas.ConsentExpired
			}
		}
		in.Consent[purpose] = status
	}
	for ch, vs := range p.Channels {
		if len(vs) > 0 {
			in.Channels = append(in.Channels, ch)
		}
	}
	sort.Strings(in.Channels)
	return in
}

func parseTime(s string) time.Time {
	if s == "" {
		return epoch
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return epoch
	}
	return t
}

// decodeJSON decodes a trait value; numbers written as integers become int64 so that
// traits.age == 30 holds for 30.
func decodeJSON(raw json.RawMessage) (any, bool) {
	// Fast paths for the common scalars.
	switch s := string(raw); {
	case s == "true":
		return true, true
	case s == "false":
		return false, true
	case s == "null":
		return nil, true
	case len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' && !strings.ContainsAny(s[1:len(s)-1], "\\\"") && utf8.ValidString(s):
		return s[1 : len(s)-1], true
	case len(s) > 0 && (s[0] == '-' || s[0] >= '0' && s[0] <= '9'):
		if i, err := strconv.ParseInt(s, 10, 64); err == nil {
			return i, true
		}
	}
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, false
	}
	return numbers(v), true
}

func numbers(v any) any {
	switch x := v.(type) {
	case json.Number:
		if i, err := x.Int64(); err == nil {
			return i
		}
		f, _ := x.Float64()
		return f
	case []any:
		for i := range x {
			x[i] = numbers(x[i])
		}
	case map[string]any:
		for k := range x {
			x[k] = numbers(x[k])
		}
	}
	return v
}

// activation resolves the environment's variables from an Input.
type activation struct{ in *Input }

var _ interpreter.Activation = activation{}

func (a activation) Parent() interpreter.Activation { return nil }

func (a activation) ResolveName(name string) (any, bool) {
	in := a.in
	switch name {
	case "traits":
		return types.NewStringInterfaceMap(types.DefaultTypeAdapter, nonNil(in.Traits)), true
	case "identifiers":
		if in.Identifiers == nil {
			return map[string][]string{}, true
		}
		return in.Identifiers, true
	case "counters":
		m := in.Counters
		if m == nil {
			m = map[string]int64{}
		}
		return countersMap{types.DefaultTypeAdapter.NativeToValue(m).(traits.Mapper)}, true
	case "event_count":
		return types.Int(in.EventCount), true
	case "first_seen":
		return types.Timestamp{Time: orEpoch(in.FirstSeen)}, true
	case "last_seen":
		return types.Timestamp{Time: orEpoch(in.LastSeen)}, true
	case "tags":
		return types.NewStringList(types.DefaultTypeAdapter, in.Tags), true
	case "consent":
		return types.NewStringStringMap(types.DefaultTypeAdapter, nonNil(in.Consent)), true
	case "blacklisted":
		return types.Bool(in.Blacklisted), true
	case "channels":
		return types.NewStringList(types.DefaultTypeAdapter, in.Channels), true
	case "now":
		return types.Timestamp{Time: in.Now}, true
	case LeadVariable:
		return types.NewStringInterfaceMap(types.DefaultTypeAdapter, nonNil(in.Lead)), true
	}
	return nil, false
}

// countersMap is the counters variable: an event type the profile has no
// event of counts 0 instead of being a missing key, so that
// counters["form.submitted"] > 0 is false, not an error, on a profile
// without forms ("x" in counters still says whether it has any).
type countersMap struct{ traits.Mapper }

func (m countersMap) Find(key ref.Val) (ref.Val, bool) {
	if v, ok := m.Mapper.Find(key); ok {
		return v, true
	}
	if _, isString := key.(types.String); isString {
		return types.IntZero, true
	}
	return m.Mapper.Find(key)
}

func (m countersMap) Get(key ref.Val) ref.Val {
	if v, ok := m.Find(key); ok {
		return v
	}
	return m.Mapper.Get(key)
}

func nonNil[V any](m map[string]V) map[string]V {
	if m == nil {
		return map[string]V{}
	}
	return m
}

func orEpoch(t time.Time) time.Time {
	if t.IsZero() {
		return epoch
	}
	return t
}
