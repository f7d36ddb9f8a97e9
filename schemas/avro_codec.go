package schemas

import (
	_ "embed"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/linkedin/goavro/v2"
)

// The Avro schemas, embedded. Each is compiled once, on first use, into one
// goavro codec shared by every caller (goavro codecs are safe for concurrent
// use).
var (
	//go:embed avro/event.v1.avsc
	avscEventV1 string
	//go:embed avro/event.v2.avsc
	avscEventV2 string
	//go:embed avro/event.v3.avsc
	avscEventV3 string
	//go:embed avro/deadletter.v1.avsc
	avscDeadLetterV1 string
	//go:embed avro/ingest_event.v1.avsc
	avscIngestEventV1 string
)

// AvroSchema returns the Avro schema (JSON text of the .avsc file) published
// under schemaID, for tooling such as kcat or a schema registry import.
func AvroSchema(schemaID uint32) (string, bool) {
	switch schemaID {
	case SchemaIDEventV1:
		return avscEventV1, true
	case SchemaIDEventV2:
		return avscEventV2, true
	case SchemaIDEventV3:
		return avscEventV3, true
	case SchemaIDDeadLetterV1:
		return avscDeadLetterV1, true
	case SchemaIDIngestEventV1:
		return avscIngestEventV1, true
	}
	return "", false
}

// avroSchema is one published schema: its id, its goavro codec and a
// structural checker run before goavro decodes untrusted bytes.
type avroSchema struct {
	id    uint32
	name  string
	codec *goavro.Codec
	check *avroNode
}

type avroRegistry struct {
	eventV1, eventV2, eventV3, deadLetterV1, ingestEventV1 *avroSchema
}

// registry compiles every schema once. A schema that does not compile is a
// programming error caught by the tests; it is reported by every encode and
// decode call rather than by a panic.
var registry = sync.OnceValues(func() (*avroRegistry, error) {
	var r avroRegistry
	var errs []error
	for _, s := range []struct {
		dst  **avroSchema
		id   uint32
		avsc string
	}{
		{&r.eventV1, SchemaIDEventV1, avscEventV1},
		{&r.eventV2, SchemaIDEventV2, avscEventV2},
		{&r.eventV3, SchemaIDEventV3, avscEventV3},
		{&r.deadLetterV1, SchemaIDDeadLetterV1, avscDeadLetterV1},
		{&r.ingestEventV1, SchemaIDIngestEventV1, avscIngestEventV1},
	} {
		sc, err := compileAvroSchema(s.id, s.avsc)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		*s.dst = sc
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return &r, nil
})

func compileAvroSchema(id uint32, avsc string) (*avroSchema, error) {
	name := schemaNames[id]
	codec, err := goavro.NewCodec(avsc)
	if err != nil {
		return nil, fmt.Errorf("schemas: compile Avro schema %d (%s): %w", id, name, err)
	}
	check, err := compileAvroCheck(avsc)
	if err != nil {
		return nil, fmt.Errorf("schemas: compile Avro schema %d (%s): %w", id, name, err)
	}
	return &avroSchema{id: id, name: name, codec: codec, check: check}, nil
}

// encode appends the framed Avro encoding of native to a new buffer of
// capacity sizeHint (plus the header).
func (s *avroSchema) encode(native map[string]any, sizeHint int) ([]byte, error) {
	buf := AppendFrameHeader(make([]byte, 0, FrameHeaderSize+sizeHint), s.id)
	buf, err := s.codec.BinaryFromNative(buf, native)
	if err != nil {
		return nil, fmt.Errorf("schemas: encode %s: %w", s.name, err)
	}
	return buf, nil
}

// decode checks and decodes the Avro payload of a frame into goavro's native
// form, which for a record is map[string]any.
func (s *avroSchema) decode(payload []byte) (map[string]any, error) {
	// goavro trusts block counts when it allocates (a 5-byte payload can make
	// it allocate gigabytes and crash the process), so untrusted bytes are
	// checked against the schema first. The check also rejects trailing
	// bytes.
	if err := s.check.validate(payload); err != nil {
		return nil, fmt.Errorf("schemas: decode %s: %w", s.name, err)
	}
	native, _, err := s.codec.NativeFromBinary(payload)
	if err != nil {
		return nil, fmt.Errorf("schemas: decode %s: %w", s.name, err)
	}
	m, ok := native.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("schemas: decode %s: got %T, want a record", s.name, native)
	}
	return m, nil
}

// unframeFor unframes data and checks that its schema id is one of want,
// returning the matching schema.
func unframeFor(data []byte, subject string, want ...*avroSchema) (*avroSchema, []byte, error) {
	id, payload, err := unframe(data)
	if err != nil {
		var unknown *UnknownSchemaIDError
		if errors.As(err, &unknown) {
			return nil, nil, wantError(unknown.ID, subject, want)
		}
		return nil, nil, fmt.Errorf("schemas: decode %s: %w", subject, err)
	}
	for _, s := range want {
		if s.id == id {
			return s, payload, nil
		}
	}
	return nil, nil, wantError(id, subject, want)
}

func wantError(id uint32, subject string, want []*avroSchema) error {
	ids := make([]uint32, len(want))
	for i, s := range want {
		ids[i] = s.id
	}
	slices.Sort(ids)
	return &UnknownSchemaIDError{ID: id, Subject: subject, Want: ids}
}

// Timestamps. Avro timestamp-millis holds milliseconds since the Unix epoch.
// The zero time.Time is written as 0, and 0 reads back as the zero
// time.Time, matching the default of received_at ("unknown"); an instant at
// exactly the epoch therefore reads back as the zero time.Time. Every other
// time reads back truncated to the millisecond, in UTC.

func millisFromTime(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

func timeFromNative(v any) (time.Time, error) {
	var ms int64
	switch t := v.(type) {
	case time.Time:
		ms = t.UnixMilli()
	case int64:
		ms = t
	default:
		return time.Time{}, fmt.Errorf("got %T, want a timestamp", v)
	}
	if ms == 0 {
		return time.Time{}, nil
	}
	return time.UnixMilli(ms).UTC(), nil
}

// Field accessors over goavro's native records; they never panic.

func fieldString(m map[string]any, name string) (string, error) {
	s, ok := m[name].(string)
	if !ok {
		return "", fmt.Errorf("field %q: got %T, want string", name, m[name])
	}
	return s, nil
}

func fieldTime(m map[string]any, name string) (time.Time, error) {
	t, err := timeFromNative(m[name])
	if err != nil {
		return time.Time{}, fmt.Errorf("field %q: %w", name, err)
	}
	return t, nil
}

func fieldLong(m map[string]any, name string) (int64, error) {
	n, ok := m[name].(int64)
	if !ok {
		return 0, fmt.Errorf("field %q: got %T, want long", name, m[name])
	}
	return n, nil
}

func fieldInt(m map[string]any, name string) (int32, error) {
	n, ok := m[name].(int32)
	if !ok {
		return 0, fmt.Errorf("field %q: got %T, want int", name, m[name])
	}
	return n, nil
}

func fieldBytes(m map[string]any, name string) ([]byte, error) {
	b, ok := m[name].([]byte)
	if !ok {
		return nil, fmt.Errorf("field %q: got %T, want bytes", name, m[name])
	}
	return b, nil
}

// fieldStringMap reads a map of string; an empty map reads as nil.
func fieldStringMap(m map[string]any, name string) (map[string]string, error) {
	raw, ok := m[name].(map[string]any)
	if !ok {
		return nil, fmt.Errorf("field %q: got %T, want map", name, m[name])
	}
	if len(raw) == 0 {
		return nil, nil
	}
	out := make(map[string]string, len(raw))
	for k, v := range raw {
		s, ok := v.(string)
		if !ok {
			return nil, fmt.Errorf("field %q key %q: got %T, want string", name, k, v)
		}
		out[k] = s
	}
	return out, nil
}

// fieldOptionalString reads a ["null","string"] union; null reads as "".
func fieldOptionalString(m map[string]any, name string) (string, error) {
	switch v := m[name].(type) {
	case nil:
		return "", nil
	case map[string]any:
		if s, ok := v["string"].(string); ok && len(v) == 1 {
			return s, nil
		}
	}
	return "", fmt.Errorf("field %q: got %v, want null or string", name, m[name])
}

// nativeStringMap converts a map of string for goavro, which takes
// map[string]any without reflection.
func nativeStringMap(m map[string]string) (map[string]any, int) {
	out := make(map[string]any, len(m))
	size := 0
	for k, v := range m {
		out[k] = v
		size += len(k) + len(v) + 4
	}
	return out, size
}

func optionalString(s string) any {
	if s == "" {
		return nil
	}
	return goavro.Union("string", s)
}
