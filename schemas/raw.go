package schemas

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// RawEvent is an event as a partner sends it, before validation: the JSON
// contract of docs/events.md.
type RawEvent struct {
	ID     string
	Type   string
	Time   string
	Source string
	// Identifiers maps an identifier type to its values; in JSON a value may
	// be one string or an array of strings.
	Identifiers map[string][]string
	Traits      map[string]json.RawMessage
	Properties  map[string]json.RawMessage
}

type rawEventJSON struct {
	ID          json.RawMessage            `json:"id"`
	Type        string                     `json:"type"`
	Time        string                     `json:"time"`
	Source      string                     `json:"source"`
	Identifiers map[string]stringOrList    `json:"identifiers"`
	Traits      map[string]json.RawMessage `json:"traits"`
	Properties  map[string]json.RawMessage `json:"properties"`
}

type stringOrList []string

func (s *stringOrList) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case len(b) > 0 && b[0] == '[':
		var l []string
		if err := json.Unmarshal(b, &l); err != nil {
			return errors.New("an identifier must be a string or an array of strings")
		}
		*s = l
	case len(b) > 0 && b[0] == '"':
		var v string
		if err := json.Unmarshal(b, &v); err != nil {
			return err
		}
		*s = []string{v}
	case bytes.Equal(b, []byte("null")):
		*s = nil
	default:
		// Numbers are accepted as their literal text (phones sent as numbers).
		var n json.Number
		if err := json.Unmarshal(b, &n); err != nil {
			return errors.New("an identifier must be a string or an array of strings")
		}
		*s = []string{n.String()}
	}
	return nil
}

// UnmarshalJSON decodes the JSON form of an event. A numeric id is accepted
// as its literal text.
func (r *RawEvent) UnmarshalJSON(b []byte) error {
	var j rawEventJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	id, err := idText(j.ID)
	if err != nil {
		return err
	}
	*r = RawEvent{ID: id, Type: j.Type, Time: j.Time, Source: j.Source,
		Traits: j.Traits, Properties: j.Properties}
	if len(j.Identifiers) > 0 {
		r.Identifiers = make(map[string][]string, len(j.Identifiers))
		for k, v := range j.Identifiers {
			r.Identifiers[k] = v
		}
	}
	return nil
}

// MarshalJSON encodes the event in its JSON contract form.
func (r RawEvent) MarshalJSON() ([]byte, error) {
	type out struct {
		ID          string                     `json:"id"`
		Type        string                     `json:"type"`
		Time        string                     `json:"time,omitempty"`
		Source      string                     `json:"source,omitempty"`
		Identifiers map[string][]string        `json:"identifiers"`
		Traits      map[string]json.RawMessage `json:"traits,omitempty"`
		Properties  map[string]json.RawMessage `json:"properties,omitempty"`
	}
	return json.Marshal(out{r.ID, r.Type, r.Time, r.Source, r.Identifiers, r.Traits, r.Properties})
}

func idText(b json.RawMessage) (string, error) {
	b = bytes.TrimSpace(b)
	if len(b) == 0 || bytes.Equal(b, []byte("null")) {
		return "", nil
	}
	if b[0] == '"' {
		var s string
		err := json.Unmarshal(b, &s)
		return s, err
	}
	var n json.Number
	if err := json.Unmarshal(b, &n); err != nil {
		return "", fmt.Errorf("id must be a string or a number")
	}
	return n.String(), nil
}
