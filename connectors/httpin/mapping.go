package httpin

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/rolodex/rolodex/schemas"
)

// Mapping turns an arbitrary JSON payload (a CRM webhook, a provider's
// event) into an event. Every field is a spec read from the payload:
//
//   - a path: dot-separated object keys, with numeric segments indexing
//     arrays ("lead.contacts.0.email");
//   - a literal when it starts with "=" ("=lead.created"), taken whole;
//   - alternatives separated by "|" ("Email|Recipient"): the first that is
//     present and not null;
//   - a template, an alternative with "{path}" placeholders
//     ("{RecordType}:{Type}"), each placeholder itself alternatives
//     ("{DeliveredAt|ReceivedAt}"): present only if every placeholder is.
//
// Values maps a field's value to another (a provider's event name to an
// event type); Cut shortens the value read at a path; TimeFormat reads
// Unix times. A payload that is a JSON array is a batch: each element is
// mapped as one payload (handleWebhook).
type Mapping struct {
	ID          string            `yaml:"id"`
	Type        string            `yaml:"type"`
	Time        string            `yaml:"time"`
	Source      string            `yaml:"source"`
	Identifiers map[string]string `yaml:"identifiers"`
	Traits      map[string]string `yaml:"traits"`
	Properties  map[string]string `yaml:"properties"`
	// TimeFormat says how to read the time: "rfc3339" (the default: the
	// text as it is), "unix" (seconds since 1970, a number or numeric text,
	// fractions allowed) or "unix_ms" (milliseconds).
	TimeFormat string `yaml:"time_format"`
	// Values maps, per field ("type", "id", "time", "source",
	// "identifiers.<type>", "traits.<name>", "properties.<name>"), a value
	// read from the payload to the value the event gets. The alternatives
	// of the field's spec are tried in order and the first value the map
	// holds wins; if none does, the entry "*" applies to the first
	// alternative's value, with every "*" in it replaced by that value
	// ("*": "sendgrid.*"); without "*" the field is left out.
	Values map[string]map[string]string `yaml:"values"`
	// Cut maps a path to a separator: a text read at that path keeps only
	// what precedes the separator's first occurrence (SendGrid's
	// sg_message_id "14c5d75ce93.dfd..." is its X-Message-Id "14c5d75ce93"
	// and a suffix).
	Cut map[string]string `yaml:"cut"`
	// Signature verifies the provider's own signature of a request instead
	// of the partner's Standard Webhooks signature (signature.go).
	Signature *Signature `yaml:"signature"`

	verify verifier // compiled from Signature by Validate
}

// Time formats of Mapping.TimeFormat.
const (
	TimeRFC3339 = "rfc3339"
	TimeUnix    = "unix"
	TimeUnixMS  = "unix_ms"
)

// Validate reports a mapping that can never produce an event, or whose
// specs, value maps or signature are malformed.
func (m *Mapping) Validate() error {
	if m.ID == "" {
		return errors.New("mapping: id path is required")
	}
	if m.Type == "" {
		return errors.New("mapping: type (path or =literal) is required")
	}
	if len(m.Identifiers) == 0 {
		return errors.New("mapping: at least one identifier path is required")
	}
	switch m.TimeFormat {
	case "", TimeRFC3339, TimeUnix, TimeUnixMS:
	default:
		return fmt.Errorf("mapping: time_format %q is not rfc3339, unix or unix_ms", m.TimeFormat)
	}
	fields := map[string]string{"id": m.ID, "type": m.Type, "time": m.Time, "source": m.Source}
	for prefix, specs := range map[string]map[string]string{"identifiers.": m.Identifiers, "traits.": m.Traits, "properties.": m.Properties} {
		for name, spec := range specs {
			fields[prefix+name] = spec
		}
	}
	for name, spec := range fields {
		if err := checkSpec(spec); err != nil {
			return fmt.Errorf("mapping: %s: %w", name, err)
		}
	}
	for name := range m.Values {
		if spec, ok := fields[name]; !ok || spec == "" {
			return fmt.Errorf("mapping: values.%s names no field of the mapping (id, type, time, source, identifiers.<type>, traits.<name>, properties.<name>)", name)
		}
	}
	for path, sep := range m.Cut {
		if sep == "" {
			return fmt.Errorf("mapping: cut.%s: the separator is empty", path)
		}
	}
	if m.Signature != nil {
		v, err := m.Signature.compile()
		if err != nil {
			return fmt.Errorf("mapping: signature: %w", err)
		}
		m.verify = v
	}
	return nil
}

// checkSpec reports a template whose braces do not pair.
func checkSpec(spec string) error {
	if strings.HasPrefix(spec, "=") {
		return nil
	}
	depth := 0
	for _, c := range spec {
		switch c {
		case '{':
			depth++
		case '}':
			depth--
		}
		if depth < 0 || depth > 1 {
			return fmt.Errorf("%q: a template's braces must pair and not nest", spec)
		}
	}
	if depth != 0 {
		return fmt.Errorf("%q: a template's braces must pair and not nest", spec)
	}
	return nil
}

// Apply maps one payload to an event. Paths that are absent in the payload
// leave their field empty; validation decides whether that is acceptable.
// A payload with text that is not Unicode is an *schemas.InvalidUTF8Error.
func (m *Mapping) Apply(payload []byte) (*schemas.RawEvent, error) {
	if err := schemas.CheckJSONText(payload); err != nil {
		return nil, err
	}
	var doc any
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber()
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("payload is not JSON: %w", err)
	}
	ev := &schemas.RawEvent{}
	var err error
	if ev.ID, err = m.text(doc, "id", m.ID); err != nil {
		return nil, fmt.Errorf("id: %w", err)
	}
	if ev.Type, err = m.text(doc, "type", m.Type); err != nil {
		return nil, fmt.Errorf("type: %w", err)
	}
	if ev.Time, err = m.text(doc, "time", m.Time); err != nil {
		return nil, fmt.Errorf("time: %w", err)
	}
	if ev.Time, err = m.readTime(ev.Time); err != nil {
		return nil, fmt.Errorf("time: %w", err)
	}
	if ev.Source, err = m.text(doc, "source", m.Source); err != nil {
		return nil, fmt.Errorf("source: %w", err)
	}
	for typ, spec := range m.Identifiers {
		v, ok, err := m.value(doc, "identifiers."+typ, spec)
		if err != nil {
			return nil, fmt.Errorf("identifier %s: %w", typ, err)
		}
		if !ok {
			continue
		}
		var vals []string
		switch x := v.(type) {
		case []any:
			for _, e := range x {
				if s, ok := scalarText(e); ok {
					vals = append(vals, s)
				}
			}
		default:
			s, ok := scalarText(x)
			if !ok {
				return nil, fmt.Errorf("identifier %s: %q is not a string, number or list", typ, spec)
			}
			vals = []string{s}
		}
		if len(vals) > 0 {
			if ev.Identifiers == nil {
				ev.Identifiers = map[string][]string{}
			}
			ev.Identifiers[typ] = append(ev.Identifiers[typ], vals...)
		}
	}
	if ev.Traits, err = m.fields(doc, "traits.", m.Traits); err != nil {
		return nil, fmt.Errorf("traits: %w", err)
	}
	if ev.Properties, err = m.fields(doc, "properties.", m.Properties); err != nil {
		return nil, fmt.Errorf("properties: %w", err)
	}
	return ev, nil
}

// readTime turns a Unix time into RFC 3339 text (TimeFormat); other
// text is left to validation.
func (m *Mapping) readTime(s string) (string, error) {
	if s == "" || m.TimeFormat == "" || m.TimeFormat == TimeRFC3339 {
		return s, nil
	}
	f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) || f < 0 {
		return "", fmt.Errorf("%q is not a Unix time (%s)", s, m.TimeFormat)
	}
	if m.TimeFormat == TimeUnixMS {
		f /= 1000
	}
	if f > 1<<40 {
		return "", fmt.Errorf("%q is not a Unix time (%s)", s, m.TimeFormat)
	}
	sec, frac := math.Modf(f)
	// Rounded to the millisecond, the precision events keep.
	t := time.Unix(int64(sec), 0).Add(time.Duration(math.Round(frac*1000)) * time.Millisecond)
	return t.UTC().Format(time.RFC3339Nano), nil
}

// text is a field's value as text ("" when absent).
func (m *Mapping) text(doc any, field, spec string) (string, error) {
	v, ok, err := m.value(doc, field, spec)
	if err != nil || !ok {
		return "", err
	}
	s, ok := scalarText(v)
	if !ok {
		return "", fmt.Errorf("%q is not a string or number", spec)
	}
	return s, nil
}

// value evaluates a field's spec and applies its value map.
func (m *Mapping) value(doc any, field, spec string) (any, bool, error) {
	if spec == "" {
		return nil, false, nil
	}
	cands, err := m.candidates(doc, spec)
	if err != nil {
		return nil, false, err
	}
	vm, mapped := m.Values[field]
	if !mapped {
		if len(cands) == 0 {
			return nil, false, nil
		}
		return cands[0], true, nil
	}
	var first string
	for i, c := range cands {
		s, ok := scalarText(c)
		if !ok {
			return nil, false, fmt.Errorf("%q: a mapped value must be a string, number or boolean", spec)
		}
		if i == 0 {
			first = s
		}
		if to, ok := vm[s]; ok {
			return to, true, nil
		}
	}
	if def, ok := vm["*"]; ok && len(cands) > 0 {
		return strings.ReplaceAll(def, "*", first), true, nil
	}
	return nil, false, nil
}

// candidates are the values spec yields, one per alternative present.
func (m *Mapping) candidates(doc any, spec string) ([]any, error) {
	if lit, ok := strings.CutPrefix(spec, "="); ok {
		return []any{lit}, nil
	}
	var out []any
	for _, alt := range splitAlternatives(spec) {
		if strings.Contains(alt, "{") {
			s, ok, err := m.template(doc, alt)
			if err != nil {
				return nil, err
			}
			if ok {
				out = append(out, s)
			}
			continue
		}
		if v, ok := m.path(doc, alt); ok {
			out = append(out, v)
		}
	}
	return out, nil
}

// template fills the placeholders of t; ok is false when one is absent.
func (m *Mapping) template(doc any, t string) (string, bool, error) {
	var b strings.Builder
	for {
		i := strings.IndexByte(t, '{')
		if i < 0 {
			b.WriteString(t)
			return b.String(), true, nil
		}
		j := strings.IndexByte(t[i:], '}')
		if j < 0 {
			return "", false, fmt.Errorf("%q: unclosed {", t)
		}
		b.WriteString(t[:i])
		found := false
		for _, p := range strings.Split(t[i+1:i+j], "|") {
			v, ok := m.path(doc, p)
			if !ok {
				continue
			}
			s, ok := scalarText(v)
			if !ok {
				return "", false, fmt.Errorf("%q is not a string or number", p)
			}
			b.WriteString(s)
			found = true
			break
		}
		if !found {
			return "", false, nil
		}
		t = t[i+j+1:]
	}
}

// path reads one path; absent and null are not found. A text at a path
// with a Cut separator keeps what precedes it.
func (m *Mapping) path(doc any, p string) (any, bool) {
	v, ok := lookup(doc, p)
	if !ok || v == nil {
		return nil, false
	}
	if sep, cut := m.Cut[p]; cut {
		if s, isText := v.(string); isText {
			v, _, _ = strings.Cut(s, sep)
		}
	}
	return v, true
}

// splitAlternatives splits spec at the "|" outside braces.
func splitAlternatives(spec string) []string {
	var out []string
	depth, start := 0, 0
	for i := 0; i < len(spec); i++ {
		switch spec[i] {
		case '{':
			depth++
		case '}':
			depth--
		case '|':
			if depth == 0 {
				out = append(out, spec[start:i])
				start = i + 1
			}
		}
	}
	return append(out, spec[start:])
}

func (m *Mapping) fields(doc any, prefix string, specs map[string]string) (map[string]json.RawMessage, error) {
	if len(specs) == 0 {
		return nil, nil
	}
	out := map[string]json.RawMessage{}
	for name, spec := range specs {
		v, ok, err := m.value(doc, prefix+name, spec)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		if !ok {
			continue
		}
		b, err := json.Marshal(v)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		out[name] = b
	}
	if len(out) == 0 {
		return nil, nil
	}
	return out, nil
}

func lookup(doc any, path string) (any, bool) {
	cur := doc
	for _, seg := range strings.Split(path, ".") {
		switch x := cur.(type) {
		case map[string]any:
			v, ok := x[seg]
			if !ok {
				return nil, false
			}
			cur = v
		case []any:
			i, err := strconv.Atoi(seg)
			if err != nil || i < 0 || i >= len(x) {
				return nil, false
			}
			cur = x[i]
		default:
			return nil, false
		}
	}
	return cur, true
}

func scalarText(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return x, true
	case json.Number:
		return x.String(), true
	case bool:
		return strconv.FormatBool(x), true
	}
	return "", false
}
