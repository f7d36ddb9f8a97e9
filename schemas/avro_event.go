package schemas

import (
	"encoding/binary"
	"fmt"
	"slices"
	"strings"

	"github.com/lovoo/goka"
)

// EventCodec is the goka.Codec of TopicEvents values: the Event in Avro,
// Confluent framing.
//
// It writes the current schema (SchemaIDEventV3) and reads
// SchemaIDEventV1, SchemaIDEventV2 and SchemaIDEventV3, picking the writer
// schema by the frame's id; a version 1 record reads with Partner "" and a
// zero ReceivedAt, a version 1 or 2 record with Topic "". An empty Topic is
// written as null.
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

// EncodeEvent encodes e with the current Event schema (SchemaIDEventV3), in
// Confluent framing.
//
// The encoder is written out by hand for this one schema (goavro is used
// for decoding): it appends every field to one buffer sized up front. The
// bytes are those goavro writes, except that map entries are written in
// key order, where goavro follows Go's map order; any order is valid Avro
// and reads back the same, and key order makes the encoding of an event
// deterministic. TestEncodeEventMatchesGoavro holds it to goavro.
func EncodeEvent(e *Event) ([]byte, error) {
	if e == nil {
		return nil, fmt.Errorf("schemas: encode %s: nil event", eventSubject)
	}
	// The schemas compile once; one that does not is reported by every
	// encode call, as by the goavro-based codecs.
	if _, err := registry(); err != nil {
		return nil, err
	}
	var traitsStack, propsStack [16]avroEntry
	traits, traitsSize := sortedEntries(e.Traits, &traitsStack)
	props, propsSize := sortedEntries(e.Properties, &propsStack)
	buf := make([]byte, 0, eventV3Size(e, traitsSize+propsSize))
	buf = AppendFrameHeader(buf, SchemaIDEventV3)
	buf = appendAvroString(buf, e.Tenant)
	buf = appendAvroString(buf, e.ID)
	buf = appendAvroString(buf, e.Type)
	buf = appendAvroLong(buf, millisFromTime(e.Time))
	buf = appendAvroString(buf, e.Source)
	if n := len(e.Identifiers); n > 0 {
		buf = appendAvroLong(buf, int64(n)) // one block of n items
		for _, id := range e.Identifiers {
			buf = appendAvroString(buf, id.Type)
			buf = appendAvroString(buf, id.Value)
		}
	}
	buf = append(buf, 0) // end of the array
	buf = appendAvroStringMap(buf, traits)
	buf = appendAvroStringMap(buf, props)
	buf = appendAvroString(buf, e.Partner)
	buf = appendAvroLong(buf, millisFromTime(e.ReceivedAt))
	if e.Topic == "" {
		buf = append(buf, 0) // union branch 0: null
	} else {
		buf = append(buf, 2) // union branch 1: string
		buf = appendAvroString(buf, e.Topic)
	}
	return buf, nil
}

// avroEntry is one entry of a map of strings.
type avroEntry struct{ key, value string }

// sortedEntries returns the entries of m in key order, in stack while they
// fit, and an upper bound of their encoded size.
func sortedEntries(m map[string]string, stack *[16]avroEntry) ([]avroEntry, int) {
	entries := stack[:0]
	size := 0
	for k, v := range m {
		entries = append(entries, avroEntry{k, v})
		size += len(k) + len(v) + 2*maxVarintLen
	}
	slices.SortFunc(entries, func(a, b avroEntry) int { return strings.Compare(a.key, b.key) })
	return entries, size
}

// eventV3Size is an upper bound of the framed encoding of e, given one of
// its maps' entries: the bytes of every string plus maxVarintLen for every
// length, count and long.
func eventV3Size(e *Event, mapsSize int) int {
	n := FrameHeaderSize + len(e.Tenant) + len(e.ID) + len(e.Type) + len(e.Source) + len(e.Partner) + len(e.Topic) +
		14*maxVarintLen + // 6 strings' lengths, 2 longs, 5 block counts, the union index
		mapsSize
	for _, id := range e.Identifiers {
		n += len(id.Type) + len(id.Value) + 2*maxVarintLen
	}
	return n
}

// maxVarintLen is the longest Avro varint (a zig-zag encoded int64).
const maxVarintLen = binary.MaxVarintLen64

// appendAvroLong appends an Avro long: zig-zag, then a little-endian base
// 128 varint.
func appendAvroLong(buf []byte, v int64) []byte {
	return binary.AppendUvarint(buf, uint64(v<<1)^uint64(v>>63))
}

// appendAvroString appends an Avro string (or bytes): its length as a long,
// then its bytes.
func appendAvroString(buf []byte, s string) []byte {
	return append(appendAvroLong(buf, int64(len(s))), s...)
}

// appendAvroStringMap appends an Avro map of strings: one block with the
// entry count and the entries, then the closing 0 block (an empty map is
// the 0 alone).
func appendAvroStringMap(buf []byte, entries []avroEntry) []byte {
	if len(entries) > 0 {
		buf = appendAvroLong(buf, int64(len(entries)))
		for _, e := range entries {
			buf = appendAvroString(buf, e.key)
			buf = appendAvroString(buf, e.value)
		}
	}
	return append(buf, 0)
}

// DecodeEvent decodes a framed Event written with SchemaIDEventV1,
// SchemaIDEventV2 or SchemaIDEventV3. It returns an error wrapping ErrNotFramed for data not in
// Confluent framing, an *UnknownSchemaIDError for any other schema id, and
// an error for malformed Avro; it never panics.
//
// The decoder is written out by hand (avro_event_decode.go); goavro is its
// reference in the tests.
func DecodeEvent(data []byte) (*Event, error) {
	reg, err := registry()
	if err != nil {
		return nil, err
	}
	s, payload, err := unframeFor(data, eventSubject, reg.eventV1, reg.eventV2, reg.eventV3)
	if err != nil {
		return nil, err
	}
	e, err := decodeEventPayload(payload, s.id)
	if err != nil {
		return nil, fmt.Errorf("schemas: decode %s: %w", s.name, err)
	}
	return e, nil
}
