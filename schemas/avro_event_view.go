package schemas

import (
	"bytes"
	"fmt"
	"slices"
	"time"
)

// EventView is an Event decoded without copying it (DecodeEventView): its
// byte fields are slices of the record's bytes, valid while those are, and
// its two maps are entries in key order. It is for a reader that copies
// every field somewhere else at once (the ClickHouse sink's columns) and
// would otherwise pay for an Event's strings and maps only to drop them.
// One EventView is reused from record to record: DecodeEventView keeps the
// capacity of its slices. Reset it once the record's fields are copied:
// until then it holds the record's bytes (and a franz-go record's bytes
// are a slice of its whole fetch response).
type EventView struct {
	Tenant, ID, Type, Source, Partner []byte
	// Topic is empty when the record has none (null, or a version 1 or 2
	// record).
	Topic            []byte
	Time, ReceivedAt time.Time
	Identifiers      []IdentifierView
	// Traits and Properties are in key order, each key once.
	Traits, Properties []EntryView
}

// keepViewItems is the most identifiers or map entries a reset EventView
// keeps room for (48 bytes each): an event with more (or a hostile block
// count, which may claim as many items as the record has bytes) does not
// leave its slices in memory for the life of the reader.
const keepViewItems = 1024

// Reset lets go of what v holds: every slice of the last record's bytes,
// and the room of a slice grown past keepViewItems. The room it keeps
// holds no slice of any record either (DecodeEventView leaves nothing
// past the length of its slices).
func (v *EventView) Reset() {
	*v = EventView{Identifiers: resetView(v.Identifiers), Traits: resetView(v.Traits), Properties: resetView(v.Properties)}
}

func resetView[T any](s []T) []T {
	if cap(s) > keepViewItems {
		return nil
	}
	clear(s)
	return s[:0]
}

// IdentifierView is one identifier of an EventView.
type IdentifierView struct{ Type, Value []byte }

// EntryView is one entry of an EventView's map.
type EntryView struct{ Key, Value []byte }

// DecodeEventView decodes a framed Event into v, as DecodeEvent does, with
// the same checks and errors, but without copying: v's fields alias data.
// On error v holds nothing to use. TestDecodeEventMatchesGoavro and
// TestDecodeEventBlocks hold it to DecodeEvent (checkDecodeEvent).
func DecodeEventView(data []byte, v *EventView) error {
	reg, err := registry()
	if err != nil {
		return err
	}
	s, payload, err := unframeFor(data, eventSubject, reg.eventV1, reg.eventV2, reg.eventV3)
	if err != nil {
		return err
	}
	if err := decodeEventView(payload, s.id, v); err != nil {
		return fmt.Errorf("schemas: decode %s: %w", s.name, err)
	}
	return nil
}

// decodeEventView is decodeEventPayload into an EventView.
func decodeEventView(payload []byte, schemaID uint32, v *EventView) error {
	d := avroDecoder{b: payload}
	v.Tenant = d.bytes("tenant")
	v.ID = d.bytes("id")
	v.Type = d.bytes("type")
	v.Time = d.time("time")
	v.Source = d.bytes("source")
	v.Identifiers = v.Identifiers[:0]
	for n := d.blockCount("identifiers"); n > 0; n = d.blockCount("identifiers") {
		// n is at most the bytes left (blockCount), so the slice grows
		// with the payload, not with what it claims.
		v.Identifiers = slices.Grow(v.Identifiers, n)
		for range n {
			typ := d.bytes("identifiers")
			v.Identifiers = append(v.Identifiers, IdentifierView{Type: typ, Value: d.bytes("identifiers")})
		}
	}
	v.Traits = d.entries("traits", v.Traits[:0])
	v.Properties = d.entries("properties", v.Properties[:0])
	v.Partner, v.ReceivedAt, v.Topic = nil, time.Time{}, nil
	if schemaID != SchemaIDEventV1 {
		v.Partner = d.bytes("partner")
		v.ReceivedAt = d.time("received_at")
		if schemaID != SchemaIDEventV2 {
			v.Topic = d.optionalBytes("topic")
		}
	}
	if d.err != nil {
		return d.err
	}
	if len(d.b) != 0 {
		return fmt.Errorf("%w: %d", errAvroTrailing, len(d.b))
	}
	return nil
}

// optionalBytes reads a ["null","string"] union; null reads as nil.
func (d *avroDecoder) optionalBytes(field string) []byte {
	switch i := d.long(field); i {
	case 0:
		return nil
	case 1:
		return d.bytes(field)
	default:
		d.fail(field, fmt.Errorf("%w: %d", errAvroBadUnion, i))
		return nil
	}
}

// entries reads a map of string into es, in key order. A key written
// twice is an error, as in stringMap.
func (d *avroDecoder) entries(field string, es []EntryView) []EntryView {
	for n := d.blockCount(field); n > 0; n = d.blockCount(field) {
		es = slices.Grow(es, n)
		for range n {
			k := d.bytes(field)
			es = append(es, EntryView{Key: k, Value: d.bytes(field)})
		}
	}
	if d.err != nil {
		clear(es) // nothing past the length is left to alias a record
		return es[:0]
	}
	// Rolodex writes maps in key order (EncodeEvent); other writers may
	// not.
	if !slices.IsSortedFunc(es, compareEntries) {
		slices.SortFunc(es, compareEntries)
	}
	for i := 1; i < len(es); i++ {
		if bytes.Equal(es[i-1].Key, es[i].Key) {
			d.fail(field, fmt.Errorf("%w: %q", errAvroDuplicateKey, es[i].Key))
			clear(es)
			return es[:0]
		}
	}
	return es
}

func compareEntries(a, b EntryView) int { return bytes.Compare(a.Key, b.Key) }
