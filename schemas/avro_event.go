package schemas

import (
	"fmt"

	"github.com/lovoo/goka"
)

// EventCodec is the goka.Codec of TopicEvents values: the Event in Avro,
// Confluent framing.
//
// It writes the current schema (SchemaIDEventV2) and reads both
// SchemaIDEventV1 and SchemaIDEventV2, picking the writer schema by the
// frame's id; a version 1 record reads with Partner "" and a zero
// ReceivedAt.
//
// Times round-trip truncated to the millisecond, in UTC; the zero time.Time
// is written as 0 and 0 reads back as the zero time.Time. Empty or nil
// Identifiers, Traits and Properties all read back as nil.
//
// The zero value is ready to use and safe for concurrent use.
type EventCodec struct{}

var (
	_ goka.Codec = EventCodec{}
	_ goka.Codec = (*EventCodec)(nil)
)

const eventSubject = "rolodex.Event"

// Encode encodes an *Event or an Event.
func (EventCodec) Encode(value any) ([]byte, error) {
	switch e := value.(type) {
	case *Event:
		return EncodeEvent(e)
	case Event:
		return EncodeEvent(&e)
	}
	return nil, fmt.Errorf("schemas: encode %s: got %T, want *schemas.Event", eventSubject, value)
}

// Decode decodes a framed Event; the value is an *Event.
func (EventCodec) Decode(data []byte) (any, error) {
	e, err := DecodeEvent(data)
	if err != nil {
		return nil, err
	}
	return e, nil
}

// EncodeEvent encodes e with the current Event schema (SchemaIDEventV2), in
// Confluent framing.
func EncodeEvent(e *Event) ([]byte, error) {
	if e == nil {
		return nil, fmt.Errorf("schemas: encode %s: nil event", eventSubject)
	}
	reg, err := registry()
	if err != nil {
		return nil, err
	}
	ids := make([]any, len(e.Identifiers))
	size := 64 + len(e.Tenant) + len(e.ID) + len(e.Type) + len(e.Source) + len(e.Partner)
	for i, id := range e.Identifiers {
		ids[i] = map[string]any{"type": id.Type, "value": id.Value}
		size += len(id.Type) + len(id.Value) + 4
	}
	traits, ts := nativeStringMap(e.Traits)
	props, ps := nativeStringMap(e.Properties)
	return reg.eventV2.encode(map[string]any{
		"tenant":      e.Tenant,
		"id":          e.ID,
		"type":        e.Type,
		"time":        millisFromTime(e.Time),
		"source":      e.Source,
		"identifiers": ids,
		"traits":      traits,
		"properties":  props,
		"partner":     e.Partner,
		"received_at": millisFromTime(e.ReceivedAt),
	}, size+ts+ps)
}

// DecodeEvent decodes a framed Event written with SchemaIDEventV1 or
// SchemaIDEventV2. It returns an error wrapping ErrNotFramed for data not in
// Confluent framing, an *UnknownSchemaIDError for any other schema id, and
// an error for malformed Avro; it never panics.
func DecodeEvent(data []byte) (*Event, error) {
	reg, err := registry()
	if err != nil {
		return nil, err
	}
	s, payload, err := unframeFor(data, eventSubject, reg.eventV1, reg.eventV2)
	if err != nil {
		return nil, err
	}
	m, err := s.decode(payload)
	if err != nil {
		return nil, err
	}
	e, err := eventFromNative(m, s.id)
	if err != nil {
		return nil, fmt.Errorf("schemas: decode %s: %w", s.name, err)
	}
	return e, nil
}

func eventFromNative(m map[string]any, schemaID uint32) (*Event, error) {
	var e Event
	var err error
	if e.Tenant, err = fieldString(m, "tenant"); err != nil {
		return nil, err
	}
	if e.ID, err = fieldString(m, "id"); err != nil {
		return nil, err
	}
	if e.Type, err = fieldString(m, "type"); err != nil {
		return nil, err
	}
	if e.Time, err = fieldTime(m, "time"); err != nil {
		return nil, err
	}
	if e.Source, err = fieldString(m, "source"); err != nil {
		return nil, err
	}
	rawIDs, ok := m["identifiers"].([]any)
	if !ok {
		return nil, fmt.Errorf("field %q: got %T, want array", "identifiers", m["identifiers"])
	}
	if len(rawIDs) > 0 {
		e.Identifiers = make([]Identifier, len(rawIDs))
		for i, raw := range rawIDs {
			rec, ok := raw.(map[string]any)
			if !ok {
				return nil, fmt.Errorf("identifiers[%d]: got %T, want record", i, raw)
			}
			if e.Identifiers[i].Type, err = fieldString(rec, "type"); err != nil {
				return nil, fmt.Errorf("identifiers[%d]: %w", i, err)
			}
			if e.Identifiers[i].Value, err = fieldString(rec, "value"); err != nil {
				return nil, fmt.Errorf("identifiers[%d]: %w", i, err)
			}
		}
	}
	if e.Traits, err = fieldStringMap(m, "traits"); err != nil {
		return nil, err
	}
	if e.Properties, err = fieldStringMap(m, "properties"); err != nil {
		return nil, err
	}
	if schemaID == SchemaIDEventV1 {
		return &e, nil // no partner, no received_at: zero values
	}
	if e.Partner, err = fieldString(m, "partner"); err != nil {
		return nil, err
	}
	if e.ReceivedAt, err = fieldTime(m, "received_at"); err != nil {
		return nil, err
	}
	return &e, nil
}
