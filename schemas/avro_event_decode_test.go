package schemas

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/linkedin/goavro/v2"
)

// decodeEventGoavro is how DecodeEvent decoded before the hand-written
// decoder: the structural check, then goavro into map[string]any, then
// eventFromNative. It is the reference.
func decodeEventGoavro(data []byte) (*Event, error) {
	reg, err := registry()
	if err != nil {
		return nil, err
	}
	s, payload, err := unframeFor(data, eventSubject, reg.eventV1, reg.eventV2, reg.eventV3)
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
	if schemaID == SchemaIDEventV2 {
		return &e, nil // no topic
	}
	switch v := m["topic"].(type) {
	case nil:
	case map[string]any: // goavro's union: {"string": value}
		s, ok := v["string"].(string)
		if !ok {
			return nil, fmt.Errorf("field %q: got %v, want null or string", "topic", v)
		}
		e.Topic = s
	default:
		return nil, fmt.Errorf("field %q: got %T, want null or string", "topic", v)
	}
	return &e, nil
}

// eventVersions are the Event schema ids, oldest first.
var eventVersions = []uint32{SchemaIDEventV1, SchemaIDEventV2, SchemaIDEventV3}

// TestEventDecoderLayout holds the hand-written decoder's layout
// (eventFields) to the .avsc files: for every version, the same fields in
// the same order with the same types. A schema change fails here until the
// decoder follows it.
func TestEventDecoderLayout(t *testing.T) {
	for vi, id := range eventVersions {
		t.Run(fmt.Sprint(id), func(t *testing.T) {
			var want []string
			for _, f := range eventFields {
				if slices.Index(eventVersions, f.since) <= vi {
					want = append(want, f.name+" "+f.avroType)
				}
			}
			var got []string
			for _, f := range avscFields(t, id) {
				var typ any
				if err := json.Unmarshal(f.Type, &typ); err != nil {
					t.Fatal(err)
				}
				got = append(got, f.Name+" "+avroTypeString(t, typ))
			}
			if !slices.Equal(got, want) {
				t.Errorf("schema %d fields\n%s\ndecoder reads\n%s", id, strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
		})
	}
}

// avroTypeString renders an Avro type in eventFields' notation.
func avroTypeString(t *testing.T, typ any) string {
	switch s := typ.(type) {
	case string:
		return s
	case []any:
		var parts []string
		for _, b := range s {
			parts = append(parts, avroTypeString(t, b))
		}
		return "union<" + strings.Join(parts, ",") + ">"
	case map[string]any:
		if lt, ok := s["logicalType"].(string); ok {
			return lt
		}
		switch s["type"] {
		case "array":
			return "array<" + avroTypeString(t, s["items"]) + ">"
		case "map":
			return "map<" + avroTypeString(t, s["values"]) + ">"
		case "record":
			var fields []string
			for _, f := range s["fields"].([]any) {
				fm := f.(map[string]any)
				fields = append(fields, fmt.Sprint(fm["name"])+":"+avroTypeString(t, fm["type"]))
			}
			return fmt.Sprint(s["name"]) + "{" + strings.Join(fields, ",") + "}"
		}
		return avroTypeString(t, s["type"])
	}
	t.Fatalf("unexpected Avro type %v", typ)
	return ""
}

// encodeEventWith writes e with goavro and the schema of version id, as a
// producer that only knows that version would.
func encodeEventWith(t testing.TB, codecs map[uint32]*goavro.Codec, id uint32, e *Event) []byte {
	t.Helper()
	ids := make([]any, len(e.Identifiers))
	for i, x := range e.Identifiers {
		ids[i] = map[string]any{"type": x.Type, "value": x.Value}
	}
	traits, _ := nativeStringMap(e.Traits)
	props, _ := nativeStringMap(e.Properties)
	native := map[string]any{
		"tenant": e.Tenant, "id": e.ID, "type": e.Type, "time": millisFromTime(e.Time), "source": e.Source,
		"identifiers": ids, "traits": traits, "properties": props,
	}
	if id != SchemaIDEventV1 {
		native["partner"] = e.Partner
		native["received_at"] = millisFromTime(e.ReceivedAt)
	}
	if id == SchemaIDEventV3 {
		native["topic"] = optionalString(e.Topic)
	}
	payload, err := codecs[id].BinaryFromNative(nil, native)
	if err != nil {
		t.Fatal(err)
	}
	return Frame(id, payload)
}

func eventCodecs(t testing.TB) map[uint32]*goavro.Codec {
	t.Helper()
	codecs := map[uint32]*goavro.Codec{}
	for _, id := range eventVersions {
		avsc, _ := AvroSchema(id)
		c, err := goavro.NewCodec(avsc)
		if err != nil {
			t.Fatal(err)
		}
		codecs[id] = c
	}
	return codecs
}

// checkDecodeEvent fails t unless DecodeEvent and the goavro reference
// agree on data: both fail, or both return the same event; and unless
// DecodeEventView agrees with DecodeEvent.
func checkDecodeEvent(t *testing.T, data []byte) (ok bool) {
	t.Helper()
	got, err := DecodeEvent(data)
	checkDecodeEventView(t, data, got, err)
	want, refErr := decodeEventGoavro(data)
	switch {
	case (err == nil) != (refErr == nil):
		t.Fatalf("DecodeEvent(%x): err %v, goavro: err %v", data, err, refErr)
	case err != nil:
		if !strings.HasPrefix(err.Error(), "schemas: ") {
			t.Fatalf("error %q lacks context", err)
		}
		return false
	case !reflect.DeepEqual(got, want):
		t.Fatalf("DecodeEvent(%x) =\n%#v\ngoavro:\n%#v", data, got, want)
	}
	return true
}

// checkDecodeEventView fails t unless DecodeEventView agrees with
// DecodeEvent on data (its event want, or its error wantErr): both fail,
// or the view holds the same event, maps in key
// order. The view is reused across calls, as the sink reuses it.
func checkDecodeEventView(t *testing.T, data []byte, want *Event, wantErr error) {
	t.Helper()
	err := DecodeEventView(data, &testView)
	switch {
	case (err == nil) != (wantErr == nil):
		t.Fatalf("DecodeEventView(%x): err %v, DecodeEvent: err %v", data, err, wantErr)
	case err != nil:
		// With two faults in a record the two may name different ones
		// (DecodeEvent finds a duplicate key at once, the view after the
		// map).
		if !strings.HasPrefix(err.Error(), "schemas: ") {
			t.Fatalf("DecodeEventView(%x): err %q lacks context (DecodeEvent: %q)", data, err, wantErr)
		}
		return
	}
	v := &testView
	got := &Event{Tenant: string(v.Tenant), ID: string(v.ID), Type: string(v.Type), Time: v.Time, Source: string(v.Source),
		Partner: string(v.Partner), ReceivedAt: v.ReceivedAt, Topic: string(v.Topic)}
	for _, id := range v.Identifiers {
		got.Identifiers = append(got.Identifiers, Identifier{Type: string(id.Type), Value: string(id.Value)})
	}
	entries := func(es []EntryView) map[string]string {
		if !slices.IsSortedFunc(es, func(a, b EntryView) int { return bytes.Compare(a.Key, b.Key) }) {
			t.Fatalf("DecodeEventView(%x): entries out of key order: %q", data, es)
		}
		var m map[string]string
		for _, e := range es {
			if m == nil {
				m = map[string]string{}
			}
			m[string(e.Key)] = string(e.Value)
		}
		return m
	}
	got.Traits, got.Properties = entries(v.Traits), entries(v.Properties)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("DecodeEventView(%x) =\n%#v\nDecodeEvent:\n%#v", data, got, want)
	}
}

var testView EventView

// TestDecodeEventMatchesGoavro: for many random events written by goavro
// with each version's schema, the hand-written decoder returns what the
// goavro reference returns; and for every truncation and many random
// corruptions of those bytes, both fail or both return the same event.
func TestDecodeEventMatchesGoavro(t *testing.T) {
	codecs := eventCodecs(t)
	rng := rand.New(rand.NewPCG(17, 3))
	n := 500
	if testing.Short() || raceEnabled {
		n = 100
	}
	decoded, corrupt := 0, 0
	for range n {
		e := randomEvent(rng)
		for _, id := range eventVersions {
			data := encodeEventWith(t, codecs, id, e)
			if !checkDecodeEvent(t, data) {
				t.Fatalf("goavro's own v%d encoding of %+v does not decode", id, e)
			}
			decoded++
			// Any version's payload in any version's frame.
			for _, other := range eventVersions {
				checkDecodeEvent(t, Frame(other, data[FrameHeaderSize:]))
			}
			for cut := FrameHeaderSize; cut < len(data); cut++ {
				if checkDecodeEvent(t, data[:cut]) {
					t.Fatalf("%d of %d bytes decoded", cut, len(data))
				}
			}
			for range 20 {
				bad := bytes.Clone(data)
				switch rng.IntN(3) {
				case 0: // flip a byte
					i := FrameHeaderSize + rng.IntN(len(bad)-FrameHeaderSize)
					bad[i] ^= byte(1 + rng.IntN(255))
				case 1: // insert a byte
					i := FrameHeaderSize + rng.IntN(len(bad)-FrameHeaderSize+1)
					bad = slices.Insert(bad, i, byte(rng.IntN(256)))
				case 2: // drop a byte
					i := FrameHeaderSize + rng.IntN(len(bad)-FrameHeaderSize)
					bad = slices.Delete(bad, i, i+1)
				}
				if !checkDecodeEvent(t, bad) {
					corrupt++
				}
			}
		}
	}
	t.Logf("%d records decoded, %d corruptions rejected by both", decoded, corrupt)
}

// TestDecodeEventBlocks: arrays and maps written in several blocks, some
// with byte sizes (negative counts), as other Avro writers may, decode
// like goavro decodes them; a key written twice fails with both.
func TestDecodeEventBlocks(t *testing.T) {
	str := func(s string) []byte { return appendAvroString(nil, s) }
	long := func(v int64) []byte { return appendAvroLong(nil, v) }
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	id := func(typ, value string) []byte { return cat(str(typ), str(value)) }
	entry := func(k, v string) []byte { return cat(str(k), str(v)) }
	sized := func(items ...[]byte) []byte { // one block with a byte size
		body := cat(items...)
		return cat(long(-int64(len(items))), long(int64(len(body))), body)
	}
	head := cat(str("t"), str("i"), str("x"), long(1000), str("s"))
	for name, payload := range map[string][]byte{
		"two blocks": cat(head,
			long(1), id("email", "a@b"), long(2), id("phone", "+1"), id("user_id", "u"), long(0),
			long(1), entry("a", "1"), long(1), entry("b", "2"), long(0),
			long(0), str("p"), long(2000), long(0)),
		"sized blocks": cat(head,
			sized(id("email", "a@b"), id("phone", "+1")), long(1), id("user_id", "u"), long(0),
			sized(entry("a", "1")), sized(entry("b", "2"), entry("c", "3")), long(0),
			long(0), str("p"), long(2000), long(1), str("topic")),
		"duplicate key": cat(head, long(0),
			long(2), entry("a", "1"), entry("a", "2"), long(1), entry("a", "3"), long(0),
			long(0), str("p"), long(2000), long(0)),
		"empty blocks only": cat(head, long(0), long(0), long(0), str(""), long(0), long(0)),
	} {
		t.Run(name, func(t *testing.T) {
			if ok := checkDecodeEvent(t, Frame(SchemaIDEventV3, payload)); ok != (name != "duplicate key") {
				t.Fatalf("decoded: %v", ok)
			}
		})
	}
}

// TestEventViewReset: a reset EventView holds no slice of the record it
// decoded, not even past the length of its slices (where a larger earlier
// record or a failed map left items), and does not keep the room a
// hostile block count made it grow (as many items as the record has
// bytes, 48 bytes each).
func TestEventViewReset(t *testing.T) {
	str := func(s string) []byte { return appendAvroString(nil, s) }
	long := func(v int64) []byte { return appendAvroLong(nil, v) }
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	head := cat(str("t"), str("i"), str("x"), long(1000), str("s"))
	tail := cat(str("p"), long(2000), long(0))
	many := cat(head, long(3), str("a"), str("1"), str("b"), str("2"), str("c"), str("3"), long(0),
		long(3), str("a"), str("1"), str("b"), str("2"), str("c"), str("3"), long(0),
		long(3), str("a"), str("1"), str("b"), str("2"), str("c"), str("3"), long(0), tail)
	// A duplicate key: the map's items were written before it failed.
	dup := cat(head, long(0), long(3), str("a"), str("1"), str("b"), str("2"), str("a"), str("3"), long(0), long(0), tail)
	hostileCount := 1 << 16
	hostile := cat(head, long(int64(hostileCount)), bytes.Repeat([]byte{2, 'a'}, hostileCount-1))
	var v EventView
	for _, tt := range []struct {
		name    string
		payload []byte
		ok      bool
	}{{"three of each", many, true}, {"duplicate key", dup, false}, {"hostile count", hostile, false}} {
		err := DecodeEventView(Frame(SchemaIDEventV3, tt.payload), &v)
		if (err == nil) != tt.ok {
			t.Fatalf("%s: err %v", tt.name, err)
		}
		v.Reset()
		if v.Tenant != nil || v.ID != nil || v.Type != nil || v.Source != nil || v.Partner != nil || v.Topic != nil ||
			!v.Time.IsZero() || !v.ReceivedAt.IsZero() || len(v.Identifiers) != 0 || len(v.Traits) != 0 || len(v.Properties) != 0 {
			t.Fatalf("%s: reset view holds %+v", tt.name, v)
		}
		for _, id := range v.Identifiers[:cap(v.Identifiers)] {
			if id.Type != nil || id.Value != nil {
				t.Fatalf("%s: reset view's identifiers keep %q past their length", tt.name, id)
			}
		}
		for _, es := range [][]EntryView{v.Traits, v.Properties} {
			for _, e := range es[:cap(es)] {
				if e.Key != nil || e.Value != nil {
					t.Fatalf("%s: reset view's entries keep %q past their length", tt.name, e)
				}
			}
		}
		if c := max(cap(v.Identifiers), cap(v.Traits), cap(v.Properties)); c > keepViewItems {
			t.Fatalf("%s: reset view keeps room for %d items", tt.name, c)
		}
	}
}

// BenchmarkDecodeEvent compares the hand-written decoder, its view
// (DecodeEventView) and goavro (with its structural check) on fullEvent.
func BenchmarkDecodeEvent(b *testing.B) {
	data, err := EncodeEvent(fullEvent())
	if err != nil {
		b.Fatal(err)
	}
	b.Run("hand-written", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(data)))
		cpu0 := processCPU()
		for b.Loop() {
			if _, err := DecodeEvent(data); err != nil {
				b.Fatal(err)
			}
		}
		reportCPU(b, cpu0)
	})
	b.Run("view", func(b *testing.B) { // DecodeEventView, one reused EventView
		b.ReportAllocs()
		b.SetBytes(int64(len(data)))
		var v EventView
		cpu0 := processCPU()
		for b.Loop() {
			if err := DecodeEventView(data, &v); err != nil {
				b.Fatal(err)
			}
		}
		reportCPU(b, cpu0)
	})
	b.Run("goavro", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(data)))
		cpu0 := processCPU()
		for b.Loop() {
			if _, err := decodeEventGoavro(data); err != nil {
				b.Fatal(err)
			}
		}
		reportCPU(b, cpu0)
	})
}
