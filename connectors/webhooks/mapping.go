package webhooks

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/rolodex/rolodex/schemas"
)

// Mapping is a compiled outbound mapping (schemas.PartnerDelivery.Mapping):
// the body a partner's CRM receives for a routed lead, built field by
// field. It is the inbound mapping language (connectors/httpin) turned
// around: the keys are paths of the body to build, the values say where
// each value comes from.
//
// A target path is dot-separated object keys ("cliente.nome"); the
// objects on the way are created. A source is one of
//
//   - a path of the lead: "lead.id", "lead.event_id", "lead.type",
//     "lead.time" (RFC 3339, UTC), "lead.time_ms" (Unix ms, a number),
//     "lead.tenant", "lead.partner", "lead.attempt" (a number), "lead.rule";
//     "properties.X" and "traits.X" (the lead event's property or trait,
//     decoded: a number stays a number; further segments read into an
//     object value, "properties.vehicle.model"); "traits.X" falls back to
//     the profile's trait; "identifiers.T" (the first value of the lead's
//     identifiers of type T, else of the profile's); "profile.id",
//     "profile.traits.X", "profile.identifiers.T" (first value);
//   - alternatives "a|b": the first source present;
//   - a constant: text starting with "=" ("=rolodex" is "rolodex"); a YAML
//     number or boolean is itself;
//   - an object {from: source, map: {value: value, ...}, default: value}:
//     the source's value, as text, looked up in map (map values keep their
//     YAML type: {SP: 11} writes the number 11); a value not in map, or an
//     absent source, takes default; without default the field is left out.
//
// A source that is absent (no such property, no profile) leaves its field
// out of the body: never null. An empty mapping sends DefaultBody.
type Mapping struct {
	fields []mappedField
}

type mappedField struct {
	target []string
	src    source
}

// source is one compiled source.
type source struct {
	constant any // when hasConst
	hasConst bool
	alts     [][]string // alternatives, each a split path
	valueMap map[string]any
	def      any
	hasDef   bool
	mapped   bool
}

// leadFields are the names under "lead.".
var leadFields = map[string]bool{"id": true, "event_id": true, "type": true, "time": true, "time_ms": true,
	"tenant": true, "partner": true, "attempt": true, "rule": true}

// CompileMapping checks and compiles a PartnerDelivery.Mapping. An empty
// mapping compiles to nil (DefaultBody).
func CompileMapping(m map[string]any) (*Mapping, error) {
	if len(m) == 0 {
		return nil, nil
	}
	targets := make([]string, 0, len(m))
	for t := range m {
		targets = append(targets, t)
	}
	sort.Strings(targets)
	out := &Mapping{}
	for i, t := range targets {
		segs := strings.Split(t, ".")
		for _, s := range segs {
			if s == "" {
				return nil, fmt.Errorf("mapping: target %q has an empty segment", t)
			}
		}
		// Sorted, a target that is a prefix of another comes right before
		// one of its extensions.
		if i+1 < len(targets) && strings.HasPrefix(targets[i+1], t+".") {
			return nil, fmt.Errorf("mapping: target %q is both a value and the object of %q", t, targets[i+1])
		}
		src, err := compileSource(m[t])
		if err != nil {
			return nil, fmt.Errorf("mapping: %s: %w", t, err)
		}
		out.fields = append(out.fields, mappedField{target: segs, src: src})
	}
	return out, nil
}

func compileSource(v any) (source, error) {
	switch x := v.(type) {
	case string:
		if lit, ok := strings.CutPrefix(x, "="); ok {
			return source{constant: lit, hasConst: true}, nil
		}
		alts, err := compilePaths(x)
		return source{alts: alts}, err
	case int, int64, float64, bool, uint64:
		return source{constant: x, hasConst: true}, nil
	case map[any]any: // YAML with keys that are not all text
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[fmt.Sprint(k)] = e
		}
		return compileSource(m)
	case map[string]any:
		var s source
		for k := range x {
			switch k {
			case "from", "map", "default":
			default:
				return s, fmt.Errorf("unknown key %q (an object source has from, map and default)", k)
			}
		}
		from, ok := x["from"].(string)
		if !ok || from == "" {
			return s, errors.New("an object source needs from: a source path")
		}
		alts, err := compilePaths(from)
		if err != nil {
			return s, err
		}
		s.alts = alts
		if mv, ok := x["map"]; ok {
			vm := map[string]any{}
			switch y := mv.(type) {
			case map[string]any:
				vm = y
			case map[any]any: // YAML keys that are numbers or booleans
				for k, e := range y {
					vm[fmt.Sprint(k)] = e
				}
			default:
				return s, errors.New("map must be an object of value: value")
			}
			s.valueMap, s.mapped = vm, true
		}
		if d, ok := x["default"]; ok {
			s.def, s.hasDef = d, true
		}
		return s, nil
	case nil:
		return source{}, errors.New("no source (a path, \"=constant\" or {from, map, default})")
	default:
		return source{}, fmt.Errorf("a source is a path, \"=constant\", a number, a boolean or {from, map, default}, not %T", v)
	}
}

func compilePaths(spec string) ([][]string, error) {
	var out [][]string
	for _, alt := range strings.Split(spec, "|") {
		p := strings.Split(strings.TrimSpace(alt), ".")
		if err := checkPath(p); err != nil {
			return nil, fmt.Errorf("%q: %w", alt, err)
		}
		out = append(out, p)
	}
	return out, nil
}

func checkPath(p []string) error {
	for _, s := range p {
		if s == "" {
			return errors.New("empty path segment")
		}
	}
	switch p[0] {
	case "lead":
		if len(p) != 2 || !leadFields[p[1]] {
			return errors.New("lead.<field>: id, event_id, type, time, time_ms, tenant, partner, attempt or rule")
		}
	case "properties", "traits":
		if len(p) < 2 {
			return fmt.Errorf("%s.<name> names no %s", p[0], p[0])
		}
	case "identifiers":
		if len(p) != 2 {
			return errors.New("identifiers.<type> (its first value)")
		}
	case "profile":
		switch {
		case len(p) == 2 && p[1] == "id":
		case len(p) >= 3 && p[1] == "traits":
		case len(p) == 3 && p[1] == "identifiers":
		default:
			return errors.New("profile.id, profile.traits.<name> or profile.identifiers.<type>")
		}
	default:
		return fmt.Errorf("unknown source root %q: lead, properties, traits, identifiers or profile (a constant starts with \"=\")", p[0])
	}
	return nil
}

// Routed is what a routed lead's body is built from: the outcome
// lead.routed with its lead.
type Routed struct {
	Tenant  string
	Partner string
	Attempt int
	Rule    string
	Lead    *schemas.RoutingLead
}

// Body builds the JSON body of a routed lead: the mapping's, or
// DefaultBody's when m is nil.
func (m *Mapping) Body(r *Routed) ([]byte, error) {
	if m == nil {
		return json.Marshal(DefaultBody(r))
	}
	doc := map[string]any{}
	for _, f := range m.fields {
		v, ok := f.src.eval(r)
		if !ok {
			continue
		}
		obj := doc
		for _, seg := range f.target[:len(f.target)-1] {
			next, ok := obj[seg].(map[string]any)
			if !ok {
				next = map[string]any{}
				obj[seg] = next
			}
			obj = next
		}
		obj[f.target[len(f.target)-1]] = v
	}
	return json.Marshal(doc)
}

func (s *source) eval(r *Routed) (any, bool) {
	if s.hasConst {
		return s.constant, true
	}
	var (
		v     any
		found bool
	)
	for _, p := range s.alts {
		if v, found = lookupLead(r, p); found {
			break
		}
	}
	if !s.mapped {
		if found {
			return v, true
		}
		return s.def, s.hasDef
	}
	if found {
		if k, ok := scalarText(v); ok {
			if to, ok := s.valueMap[k]; ok {
				return to, true
			}
		}
	}
	return s.def, s.hasDef
}

// scalarText is a scalar's text: a string as it is, a number as JSON
// writes it, a boolean as true or false.
func scalarText(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return x, true
	case json.Number:
		return x.String(), true
	case bool:
		return strconv.FormatBool(x), true
	case int:
		return strconv.Itoa(x), true
	case int64:
		return strconv.FormatInt(x, 10), true
	}
	return "", false
}

// lookupLead reads a compiled path from a routed lead.
func lookupLead(r *Routed, p []string) (any, bool) {
	l := r.Lead
	if l == nil {
		l = &schemas.RoutingLead{}
	}
	switch p[0] {
	case "lead":
		switch p[1] {
		case "id":
			return nonEmpty(l.ID)
		case "event_id":
			return nonEmpty(l.EventID)
		case "type":
			return nonEmpty(l.Type)
		case "time":
			if l.Time == 0 {
				return nil, false
			}
			return time.UnixMilli(l.Time).UTC().Format("2006-01-02T15:04:05.000Z07:00"), true
		case "time_ms":
			if l.Time == 0 {
				return nil, false
			}
			return l.Time, true
		case "tenant":
			return nonEmpty(r.Tenant)
		case "partner":
			return nonEmpty(r.Partner)
		case "attempt":
			return r.Attempt, true
		case "rule":
			return nonEmpty(r.Rule)
		}
	case "properties":
		return encodedPath(l.Properties[p[1]], p[2:])
	case "traits":
		if v, ok := encodedPath(l.Traits[p[1]], p[2:]); ok {
			return v, true
		}
		if l.Profile != nil {
			return rawPath(l.Profile.Traits[p[1]], p[2:])
		}
	case "identifiers":
		if ids := l.Identifiers[p[1]]; len(ids) > 0 {
			return ids[0], true
		}
		if l.Profile != nil {
			if ids := l.Profile.Identifiers[p[1]]; len(ids) > 0 {
				return ids[0], true
			}
		}
	case "profile":
		if l.Profile == nil {
			return nil, false
		}
		switch p[1] {
		case "id":
			return nonEmpty(l.Profile.ID)
		case "traits":
			return rawPath(l.Profile.Traits[p[2]], p[3:])
		case "identifiers":
			if ids := l.Profile.Identifiers[p[2]]; len(ids) > 0 {
				return ids[0], true
			}
		}
	}
	return nil, false
}

func nonEmpty(s string) (any, bool) { return s, s != "" }

// encodedPath decodes a value that RoutingLead keeps as its JSON encoding
// and reads rest into it.
func encodedPath(enc string, rest []string) (any, bool) {
	if enc == "" {
		return nil, false
	}
	return rawPath(json.RawMessage(enc), rest)
}

func rawPath(raw json.RawMessage, rest []string) (any, bool) {
	if len(raw) == 0 {
		return nil, false
	}
	v, ok := decode(raw)
	if !ok {
		// Not JSON (a value written by hand): its text.
		v = string(raw)
	}
	for _, seg := range rest {
		obj, isObj := v.(map[string]any)
		if !isObj {
			return nil, false
		}
		if v, ok = obj[seg]; !ok {
			return nil, false
		}
	}
	if v == nil {
		return nil, false
	}
	return v, true
}

// decode reads JSON keeping numbers exact (json.Number is written back as
// the same digits).
func decode(raw []byte) (any, bool) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil || dec.More() {
		return nil, false
	}
	return v, true
}

// decodeAll decodes every value of a RoutingLead map.
func decodeAll(m map[string]string) map[string]any {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]any, len(m))
	for k, enc := range m {
		if v, ok := rawPath(json.RawMessage(enc), nil); ok {
			out[k] = v
		}
	}
	return out
}

// DefaultBody is the body of a routed lead for a partner without a
// mapping:
//
//	{"lead_id": ..., "attempt": 1, "tenant": ..., "partner": ...,
//	 "rule": ..., "type": "lead.created", "event_id": ...,
//	 "time": "2025-01-02T10:00:00.000Z", "properties": {...},
//	 "traits": {...}, "identifiers": {"email": ["..."]},
//	 "profile_id": ...}
//
// properties and traits are decoded (numbers stay numbers); traits are the
// profile's overlaid with the lead event's; identifiers are the lead's
// merged with the profile's. Empty parts are left out.
func DefaultBody(r *Routed) map[string]any {
	l := r.Lead
	if l == nil {
		l = &schemas.RoutingLead{}
	}
	b := map[string]any{"lead_id": l.ID, "attempt": r.Attempt, "tenant": r.Tenant, "partner": r.Partner}
	for _, k := range []string{"rule", "type", "event_id", "time"} {
		if v, ok := lookupLead(r, []string{"lead", k}); ok {
			b[k] = v
		}
	}
	if p := decodeAll(l.Properties); p != nil {
		b["properties"] = p
	}
	traits := map[string]any{}
	ids := map[string][]string{}
	if l.Profile != nil {
		for k, raw := range l.Profile.Traits {
			if v, ok := rawPath(raw, nil); ok {
				traits[k] = v
			}
		}
		for t, vs := range l.Profile.Identifiers {
			ids[t] = append(ids[t], vs...)
		}
		if l.Profile.ID != "" {
			b["profile_id"] = l.Profile.ID
		}
	}
	for k, v := range decodeAll(l.Traits) {
		traits[k] = v
	}
	for t, vs := range l.Identifiers {
		for _, v := range vs {
			if !contains(ids[t], v) {
				ids[t] = append(ids[t], v)
			}
		}
	}
	if len(traits) > 0 {
		b["traits"] = traits
	}
	if len(ids) > 0 {
		b["identifiers"] = ids
	}
	return b
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// FollowUpBody is the body of a follow-up (a lead.forwarded outcome: a
// later event about a lead the partner holds), whatever the mapping:
//
//	{"kind": "follow_up", "lead_id": ..., "tenant": ..., "partner": ...,
//	 "event_id": ..., "type": "opportunity.updated", "time": "...",
//	 "properties": {...}}
//
// properties decoded (numbers stay numbers); time is the outcome's
// instant.
func FollowUpBody(tenant, partner string, at int64, f *schemas.LeadFollowUp) ([]byte, error) {
	b := map[string]any{"kind": "follow_up", "lead_id": f.LeadID, "tenant": tenant, "partner": partner,
		"event_id": f.EventID, "type": f.Type}
	if at != 0 {
		b["time"] = time.UnixMilli(at).UTC().Format("2006-01-02T15:04:05.000Z07:00")
	}
	if p := decodeAll(f.Properties); p != nil {
		b["properties"] = p
	}
	return json.Marshal(b)
}
