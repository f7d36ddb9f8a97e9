package httpin

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/rolodex/rolodex/schemas"
)

// Mapping turns an arbitrary JSON payload (a CRM webhook) into an event.
// Every field is a path into the payload: dot-separated object keys, with
// numeric segments indexing arrays ("lead.contacts.0.email"). A value that
// starts with "=" is a literal instead ("=lead.created").
type Mapping struct {
	ID          string            `yaml:"id"`
	Type        string            `yaml:"type"`
	Time        string            `yaml:"time"`
	Source      string            `yaml:"source"`
	Identifiers map[string]string `yaml:"identifiers"`
	Traits      map[string]string `yaml:"traits"`
	Properties  map[string]string `yaml:"properties"`
}

// Validate reports a mapping that can never produce an event.
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
	if ev.ID, err = m.text(doc, m.ID); err != nil {
		return nil, fmt.Errorf("id: %w", err)
	}
	if ev.Type, err = m.text(doc, m.Type); err != nil {
		return nil, fmt.Errorf("type: %w", err)
	}
	if ev.Time, err = m.text(doc, m.Time); err != nil {
		return nil, fmt.Errorf("time: %w", err)
	}
	if ev.Source, err = m.text(doc, m.Source); err != nil {
		return nil, fmt.Errorf("source: %w", err)
	}
	for typ, path := range m.Identifiers {
		v, ok := lookup(doc, path)
		if !ok || v == nil {
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
				return nil, fmt.Errorf("identifier %s: %q is not a string, number or list", typ, path)
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
	if ev.Traits, err = m.fields(doc, m.Traits); err != nil {
		return nil, fmt.Errorf("traits: %w", err)
	}
	if ev.Properties, err = m.fields(doc, m.Properties); err != nil {
		return nil, fmt.Errorf("properties: %w", err)
	}
	return ev, nil
}

func (m *Mapping) text(doc any, spec string) (string, error) {
	if spec == "" {
		return "", nil
	}
	if lit, ok := strings.CutPrefix(spec, "="); ok {
		return lit, nil
	}
	v, ok := lookup(doc, spec)
	if !ok || v == nil {
		return "", nil
	}
	s, ok := scalarText(v)
	if !ok {
		return "", fmt.Errorf("%q is not a string or number", spec)
	}
	return s, nil
}

func (m *Mapping) fields(doc any, specs map[string]string) (map[string]json.RawMessage, error) {
	if len(specs) == 0 {
		return nil, nil
	}
	out := map[string]json.RawMessage{}
	for name, spec := range specs {
		var v any
		if lit, ok := strings.CutPrefix(spec, "="); ok {
			v = lit
		} else {
			var found bool
			if v, found = lookup(doc, spec); !found {
				continue
			}
		}
		b, err := json.Marshal(v)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		out[name] = b
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
