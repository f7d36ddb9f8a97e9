package schemas

import (
	"encoding/json"
	"fmt"
)

const ingestSubject = "rolodex.IngestEvent"

// DecodeIngestAvro decodes an event a partner produced in Avro to its ingest
// topic: Confluent framing with schema id SchemaIDIngestEventV1 (any other
// id is an *UnknownSchemaIDError; data not framed wraps ErrNotFramed).
//
// A null time or source reads as "". Each trait and property value is the
// stored JSON text as a json.RawMessage; a stored value that is not valid
// JSON is taken as a plain string and JSON-encoded (so `Ada` reads as
// `"Ada"`). Empty maps and identifier lists read as nil. A string that is
// not valid UTF-8 is an *InvalidUTF8Error (see RawEvent.CheckUTF8).
func DecodeIngestAvro(data []byte) (*RawEvent, error) {
	reg, err := registry()
	if err != nil {
		return nil, err
	}
	s, payload, err := unframeFor(data, ingestSubject, reg.ingestEventV1)
	if err != nil {
		return nil, err
	}
	m, err := s.decode(payload)
	if err != nil {
		return nil, err
	}
	r, err := rawEventFromNative(m)
	if err == nil {
		err = r.CheckUTF8()
	}
	if err != nil {
		return nil, fmt.Errorf("schemas: decode %s: %w", s.name, err)
	}
	return r, nil
}

// EncodeIngestAvro encodes r as a partner would produce it to its ingest
// topic (SchemaIDIngestEventV1, Confluent framing), for tests and tooling.
// An empty Time or Source is written as null. Trait and property values are
// written as their raw text, unchecked; an empty value is written as "null".
func EncodeIngestAvro(r *RawEvent) ([]byte, error) {
	if r == nil {
		return nil, fmt.Errorf("schemas: encode %s: nil event", ingestSubject)
	}
	reg, err := registry()
	if err != nil {
		return nil, err
	}
	size := 64 + len(r.ID) + len(r.Type) + len(r.Time) + len(r.Source)
	ids := make(map[string]any, len(r.Identifiers))
	for typ, values := range r.Identifiers {
		vs := make([]any, len(values))
		for i, v := range values {
			vs[i] = v
			size += len(v) + 2
		}
		ids[typ] = vs
		size += len(typ) + 4
	}
	traits, ts := nativeJSONMap(r.Traits)
	props, ps := nativeJSONMap(r.Properties)
	return reg.ingestEventV1.encode(map[string]any{
		"id":          r.ID,
		"type":        r.Type,
		"time":        optionalString(r.Time),
		"source":      optionalString(r.Source),
		"identifiers": ids,
		"traits":      traits,
		"properties":  props,
	}, size+ts+ps)
}

func nativeJSONMap(m map[string]json.RawMessage) (map[string]any, int) {
	out := make(map[string]any, len(m))
	size := 0
	for k, v := range m {
		if len(v) == 0 {
			out[k] = "null"
		} else {
			out[k] = string(v)
		}
		size += len(k) + len(v) + 4
	}
	return out, size
}

func rawEventFromNative(m map[string]any) (*RawEvent, error) {
	var r RawEvent
	var err error
	if r.ID, err = fieldString(m, "id"); err != nil {
		return nil, err
	}
	if r.Type, err = fieldString(m, "type"); err != nil {
		return nil, err
	}
	if r.Time, err = fieldOptionalString(m, "time"); err != nil {
		return nil, err
	}
	if r.Source, err = fieldOptionalString(m, "source"); err != nil {
		return nil, err
	}
	rawIDs, ok := m["identifiers"].(map[string]any)
	if !ok {
		return nil, fmt.Errorf("field %q: got %T, want map", "identifiers", m["identifiers"])
	}
	if len(rawIDs) > 0 {
		r.Identifiers = make(map[string][]string, len(rawIDs))
		for typ, raw := range rawIDs {
			list, ok := raw.([]any)
			if !ok {
				return nil, fmt.Errorf("identifiers[%q]: got %T, want array", typ, raw)
			}
			var values []string
			if len(list) > 0 {
				values = make([]string, len(list))
				for i, v := range list {
					if values[i], ok = v.(string); !ok {
						return nil, fmt.Errorf("identifiers[%q][%d]: got %T, want string", typ, i, v)
					}
				}
			}
			r.Identifiers[typ] = values
		}
	}
	if r.Traits, err = fieldJSONMap(m, "traits"); err != nil {
		return nil, err
	}
	if r.Properties, err = fieldJSONMap(m, "properties"); err != nil {
		return nil, err
	}
	return &r, nil
}

// fieldJSONMap reads a map of JSON text; text that is not valid JSON is
// taken as a plain string. An empty map reads as nil.
func fieldJSONMap(m map[string]any, name string) (map[string]json.RawMessage, error) {
	strs, err := fieldStringMap(m, name)
	if err != nil || strs == nil {
		return nil, err
	}
	out := make(map[string]json.RawMessage, len(strs))
	for k, s := range strs {
		// Checked before json.Marshal would replace invalid bytes.
		if err := CheckUTF8("a key in "+name, k); err != nil {
			return nil, err
		}
		if err := CheckUTF8(name+"."+k, s); err != nil {
			return nil, err
		}
		if b := []byte(s); json.Valid(b) {
			out[k] = b
			continue
		}
		b, err := json.Marshal(s)
		if err != nil {
			return nil, fmt.Errorf("field %q key %q: %w", name, k, err)
		}
		out[k] = b
	}
	return out, nil
}
