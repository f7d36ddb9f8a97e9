package schemas

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// The Event decoder is written out by hand, like EncodeEvent: goavro
// decodes into map[string]any, a string per field and a map per record,
// and was about half of the ClickHouse sink's CPU (docs/benchmarks.md,
// issue 17). eventFields is the layout it reads; TestEventDecoderLayout
// holds it to the .avsc files, which stay the source of truth, and
// TestDecodeEventMatchesGoavro holds its results to goavro's on records
// goavro writes with each version's schema.

// eventFields lists, in order, the fields of the Event schemas as the
// decoder reads them: the Avro type, and the first version that has the
// field (each version appends to the previous one).
var eventFields = []struct {
	name, avroType string
	since          uint32
}{
	{"tenant", "string", SchemaIDEventV1},
	{"id", "string", SchemaIDEventV1},
	{"type", "string", SchemaIDEventV1},
	{"time", "timestamp-millis", SchemaIDEventV1},
	{"source", "string", SchemaIDEventV1},
	{"identifiers", "array<Identifier{type:string,value:string}>", SchemaIDEventV1},
	{"traits", "map<string>", SchemaIDEventV1},
	{"properties", "map<string>", SchemaIDEventV1},
	{"partner", "string", SchemaIDEventV2},
	{"received_at", "timestamp-millis", SchemaIDEventV2},
	{"topic", "union<null,string>", SchemaIDEventV3},
}

var errAvroDuplicateKey = errors.New("duplicate Avro map key")

// decodeEventPayload decodes the Avro payload of an Event written with
// schema schemaID (SchemaIDEventV1, V2 or V3). It reads the untrusted
// bytes with every check avroNode.validate makes (lengths and block counts
// within the bytes left, varints of at most 10 bytes, union indexes, no
// trailing bytes), so it allocates no more than the payload's size allows
// and never panics.
//
// The event's strings share one copy of the payload (one allocation
// instead of one per string, as hamba/avro shares its 1 KiB slabs): a
// string kept from the event keeps the payload's bytes alive, a few
// hundred bytes.
func decodeEventPayload(payload []byte, schemaID uint32) (*Event, error) {
	d := avroDecoder{b: payload, src: string(payload)}
	e := &Event{}
	e.Tenant = d.string("tenant")
	e.ID = d.string("id")
	e.Type = d.string("type")
	e.Time = d.time("time")
	e.Source = d.string("source")
	e.Identifiers = d.identifiers("identifiers")
	e.Traits = d.stringMap("traits")
	e.Properties = d.stringMap("properties")
	if schemaID != SchemaIDEventV1 {
		e.Partner = d.string("partner")
		e.ReceivedAt = d.time("received_at")
		if schemaID != SchemaIDEventV2 {
			e.Topic = d.optionalString("topic")
		}
	}
	if d.err != nil {
		return nil, d.err
	}
	if len(d.b) != 0 {
		return nil, fmt.Errorf("%w: %d", errAvroTrailing, len(d.b))
	}
	return e, nil
}

// avroDecoder reads Avro binary values off b. The first error sticks:
// every later read returns a zero value, so a decoding function reads all
// its fields and checks err once at the end.
type avroDecoder struct {
	b   []byte
	src string // payload as one string, for the strings to share
	err error
}

func (d *avroDecoder) fail(field string, err error) {
	if d.err == nil {
		d.err = fmt.Errorf("field %q: %w", field, err)
	}
	d.b = nil
}

func (d *avroDecoder) long(field string) int64 {
	if d.err != nil {
		return 0
	}
	v, rest, err := readAvroLong(d.b)
	if err != nil {
		d.fail(field, err)
		return 0
	}
	d.b = rest
	return v
}

// bytes returns the next string or bytes value, aliasing the input.
func (d *avroDecoder) bytes(field string) []byte {
	n := d.long(field)
	if d.err != nil {
		return nil
	}
	if n < 0 {
		d.fail(field, fmt.Errorf("%w: %d", errAvroBadLength, n))
		return nil
	}
	if n > int64(len(d.b)) {
		d.fail(field, errAvroShort)
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

func (d *avroDecoder) string(field string) string {
	v := d.bytes(field)
	if len(v) == 0 {
		return ""
	}
	end := len(d.src) - len(d.b)
	return d.src[end-len(v) : end]
}

// time reads a timestamp-millis: 0 is the zero time.Time, anything else
// the instant in UTC (as timeFromNative).
func (d *avroDecoder) time(field string) time.Time {
	ms := d.long(field)
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms).UTC()
}

// optionalString reads a ["null","string"] union; null reads as "".
func (d *avroDecoder) optionalString(field string) string {
	switch i := d.long(field); i {
	case 0:
		return ""
	case 1:
		return d.string(field)
	default:
		d.fail(field, fmt.Errorf("%w: %d", errAvroBadUnion, i))
		return ""
	}
}

// blockCount reads the item count of the next block of an array or map (0
// ends it), skipping the byte size a negative count comes with. A count
// larger than the bytes left is an error: every item of Rolodex's arrays
// and maps takes at least one byte.
func (d *avroDecoder) blockCount(field string) int {
	n := d.long(field)
	if d.err != nil {
		return 0
	}
	if n < 0 {
		if n == math.MinInt64 {
			d.fail(field, errAvroBadCount)
			return 0
		}
		n = -n
		size := d.long(field)
		if d.err == nil && (size < 0 || size > int64(len(d.b))) {
			d.fail(field, fmt.Errorf("%w: block size %d", errAvroBadCount, size))
		}
		if d.err != nil {
			return 0
		}
	}
	if n > int64(len(d.b)) {
		d.fail(field, fmt.Errorf("%w: %d items in %d bytes", errAvroBadCount, n, len(d.b)))
		return 0
	}
	return int(n)
}

// identifiers reads an array of Identifier; an empty array reads as nil.
func (d *avroDecoder) identifiers(field string) []Identifier {
	var ids []Identifier
	for n := d.blockCount(field); n > 0; n = d.blockCount(field) {
		ids = growIdentifiers(ids, n)
		for range n {
			typ := d.string(field)
			ids = append(ids, Identifier{Type: typ, Value: d.string(field)})
		}
	}
	if d.err != nil {
		return nil
	}
	return ids
}

func growIdentifiers(ids []Identifier, n int) []Identifier {
	if cap(ids)-len(ids) >= n {
		return ids
	}
	return append(make([]Identifier, 0, len(ids)+n), ids...)
}

// stringMap reads a map of string; an empty map reads as nil. A key
// written twice is an error, as with goavro.
func (d *avroDecoder) stringMap(field string) map[string]string {
	var m map[string]string
	for n := d.blockCount(field); n > 0; n = d.blockCount(field) {
		if m == nil {
			m = make(map[string]string, n)
		}
		for range n {
			k := d.string(field)
			if _, dup := m[k]; dup && d.err == nil {
				d.fail(field, fmt.Errorf("%w: %q", errAvroDuplicateKey, k))
			}
			m[k] = d.string(field)
		}
	}
	if d.err != nil {
		return nil
	}
	return m
}
