package schemas

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/linkedin/goavro/v2"
)

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestAvroSchemasCompile(t *testing.T) {
	if _, err := registry(); err != nil {
		t.Fatalf("registry: %v", err)
	}
	for _, tc := range []struct {
		id   uint32
		name string
	}{
		{SchemaIDEventV1, "rolodex.Event"},
		{SchemaIDEventV2, "rolodex.Event"},
		{SchemaIDEventV3, "rolodex.Event"},
		{SchemaIDDeadLetterV1, "rolodex.DeadLetter"},
		{SchemaIDIngestEventV1, "rolodex.IngestEvent"},
	} {
		t.Run(fmt.Sprint(tc.id), func(t *testing.T) {
			avsc, ok := AvroSchema(tc.id)
			if !ok {
				t.Fatalf("AvroSchema(%d) not found", tc.id)
			}
			c, err := goavro.NewCodec(avsc)
			if err != nil {
				t.Fatalf("NewCodec: %v", err)
			}
			var s struct {
				Name, Namespace string
			}
			if err := json.Unmarshal([]byte(avsc), &s); err != nil {
				t.Fatal(err)
			}
			if got := s.Namespace + "." + s.Name; got != tc.name {
				t.Errorf("name = %q, want %q", got, tc.name)
			}
			if !strings.Contains(c.CanonicalSchema(), `"name":"`+tc.name+`"`) {
				t.Errorf("canonical schema %s does not name %s", c.CanonicalSchema(), tc.name)
			}
		})
	}
	if _, ok := AvroSchema(99); ok {
		t.Error("AvroSchema(99) found")
	}
}

type avscField struct {
	Name    string          `json:"name"`
	Type    json.RawMessage `json:"type"`
	Default json.RawMessage `json:"default"`
}

func avscFields(t *testing.T, id uint32) []avscField {
	t.Helper()
	avsc, _ := AvroSchema(id)
	var s struct {
		Fields []avscField `json:"fields"`
	}
	if err := json.Unmarshal([]byte(avsc), &s); err != nil {
		t.Fatal(err)
	}
	return s.Fields
}

// TestEventV2ExtendsV1 checks the evolution rule: v2 keeps every v1 field
// with the same type and every field it adds has a default, so that a v2
// reader resolves v1 records (backward compatibility).
func TestEventV2ExtendsV1(t *testing.T) {
	checkExtends(t, SchemaIDEventV1, SchemaIDEventV2, "partner", "received_at")
}

// TestEventV3ExtendsV2: the same rule from v2 to v3 (the fan-out topic).
func TestEventV3ExtendsV2(t *testing.T) {
	checkExtends(t, SchemaIDEventV2, SchemaIDEventV3, "topic")
}

func checkExtends(t *testing.T, older, newer uint32, added ...string) {
	t.Helper()
	v2 := map[string]avscField{}
	for _, f := range avscFields(t, newer) {
		v2[f.Name] = f
	}
	v1 := map[string]bool{}
	for _, f := range avscFields(t, older) {
		v1[f.Name] = true
		g, ok := v2[f.Name]
		if !ok {
			t.Errorf("v2 drops v1 field %q", f.Name)
			continue
		}
		var a, b any
		_ = json.Unmarshal(f.Type, &a)
		_ = json.Unmarshal(g.Type, &b)
		if !reflect.DeepEqual(a, b) {
			t.Errorf("field %q: v1 type %s, v2 type %s", f.Name, f.Type, g.Type)
		}
	}
	for name, f := range v2 {
		if !v1[name] && f.Default == nil {
			t.Errorf("v2 adds field %q without a default", name)
		}
	}
	for _, name := range added {
		if v1[name] {
			t.Errorf("v1 has %q", name)
		}
		if _, ok := v2[name]; !ok {
			t.Errorf("v2 lacks %q", name)
		}
	}
}

// TestAvroFieldsMatchStructs checks that the current schemas carry every
// field of the Go types (by JSON name), so a field added to the struct
// fails here until the schema gets a new version.
func TestAvroFieldsMatchStructs(t *testing.T) {
	for _, tc := range []struct {
		id  uint32
		typ reflect.Type
	}{
		{SchemaIDEventV3, reflect.TypeFor[Event]()},
		{SchemaIDDeadLetterV1, reflect.TypeFor[DeadLetter]()},
	} {
		t.Run(tc.typ.Name(), func(t *testing.T) {
			var want, got []string
			for i := range tc.typ.NumField() {
				name, _, _ := strings.Cut(tc.typ.Field(i).Tag.Get("json"), ",")
				want = append(want, name)
			}
			for _, f := range avscFields(t, tc.id) {
				got = append(got, f.Name)
			}
			if !sameSet(got, want) {
				t.Errorf("schema fields %v, struct fields %v", got, want)
			}
		})
	}
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	m := map[string]int{}
	for _, s := range a {
		m[s]++
	}
	for _, s := range b {
		m[s]--
	}
	for _, n := range m {
		if n != 0 {
			return false
		}
	}
	return true
}

func TestFrame(t *testing.T) {
	framed := Frame(SchemaIDDeadLetterV1, []byte{0xaa, 0xbb})
	if want := mustHex(t, "00 00000003 aabb"); !bytes.Equal(framed, want) {
		t.Fatalf("Frame = %x, want %x", framed, want)
	}
	id, payload, err := Unframe(framed)
	if err != nil || id != SchemaIDDeadLetterV1 || !bytes.Equal(payload, []byte{0xaa, 0xbb}) {
		t.Fatalf("Unframe = %d, %x, %v", id, payload, err)
	}
	if got := AppendFrameHeader([]byte("x"), 0x01020304); !bytes.Equal(got, mustHex(t, "78 00 01020304")) {
		t.Errorf("AppendFrameHeader = %x", got)
	}

	for _, tc := range []struct {
		name      string
		data      []byte
		notFramed bool
		unknownID uint32
	}{
		{name: "nil", data: nil, notFramed: true},
		{name: "4 bytes", data: mustHex(t, "00 000002"), notFramed: true},
		{name: "wrong magic", data: mustHex(t, "01 00000002 00"), notFramed: true},
		{name: "JSON", data: []byte(`{"id":"1"}`), notFramed: true},
		{name: "unknown id", data: mustHex(t, "00 00000063"), unknownID: 99},
		{name: "id 0", data: mustHex(t, "00 00000000 00"), unknownID: 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := Unframe(tc.data)
			if err == nil {
				t.Fatal("no error")
			}
			if got := errors.Is(err, ErrNotFramed); got != tc.notFramed {
				t.Errorf("errors.Is(%v, ErrNotFramed) = %v", err, got)
			}
			var unknown *UnknownSchemaIDError
			if !tc.notFramed && (!errors.As(err, &unknown) || unknown.ID != tc.unknownID) {
				t.Errorf("error %v is not an UnknownSchemaIDError for %d", err, tc.unknownID)
			}
		})
	}
}

var (
	t0 = time.Date(2024, 5, 1, 12, 30, 45, 123_456_789, time.FixedZone("CEST", 2*3600))
	t1 = time.Date(2024, 5, 1, 10, 31, 0, 999_999_999, time.UTC)
)

func fullEvent() *Event {
	return &Event{
		Tenant:  "acme",
		ID:      "evt-1",
		Type:    "order_completed",
		Time:    t0,
		Source:  "web",
		Partner: "shopify",
		Identifiers: []Identifier{
			{Type: IDUserID, Value: "u-42"},
			{Type: IDEmail, Value: "ada@example.com"},
			{Type: IDExternal + "crm", Value: "Ünïcødé ✓"},
		},
		Traits:     map[string]string{"name": `"Ada"`, "age": "36", "tags": `["a","b"]`},
		Properties: map[string]string{"total": "12.5", "items": `{"sku":"x"}`},
		ReceivedAt: t1,
	}
}

func TestEventCodecRoundTrip(t *testing.T) {
	ms := func(tt time.Time) time.Time { return tt.Truncate(time.Millisecond).UTC() }
	full := fullEvent()
	fullWant := *fullEvent()
	fullWant.Time, fullWant.ReceivedAt = ms(t0), ms(t1)

	for _, tc := range []struct {
		name string
		in   *Event
		want *Event
	}{
		{"full", full, &fullWant},
		{"zero", &Event{}, &Event{}},
		{
			"empty collections read as nil",
			&Event{Tenant: "t", Identifiers: []Identifier{}, Traits: map[string]string{}, Properties: map[string]string{}},
			&Event{Tenant: "t"},
		},
		{
			"empty strings and JSON null values",
			&Event{Traits: map[string]string{"": "null"}, Identifiers: []Identifier{{}}},
			&Event{Traits: map[string]string{"": "null"}, Identifiers: []Identifier{{}}},
		},
		{
			"before the epoch",
			&Event{Time: time.Date(1969, 12, 31, 23, 59, 59, 500_000_000, time.UTC)},
			&Event{Time: time.Date(1969, 12, 31, 23, 59, 59, 500_000_000, time.UTC)},
		},
		{
			"far future",
			&Event{Time: time.Date(9999, 12, 31, 23, 59, 59, 999_000_000, time.UTC)},
			&Event{Time: time.Date(9999, 12, 31, 23, 59, 59, 999_000_000, time.UTC)},
		},
		{
			"many identifiers",
			&Event{Identifiers: manyIdentifiers(500)},
			&Event{Identifiers: manyIdentifiers(500)},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			encoders := map[string]func() ([]byte, error){
				"EncodeEvent":        func() ([]byte, error) { return EncodeEvent(tc.in) },
				"Codec pointer":      func() ([]byte, error) { return (&EventCodec{}).Encode(tc.in) },
				"Codec value":        func() ([]byte, error) { return EventCodec{}.Encode(*tc.in) },
				"Codec via goka ptr": func() ([]byte, error) { return eventGokaCodec.Encode(tc.in) },
			}
			for name, encode := range encoders {
				data, err := encode()
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				if id, _, err := Unframe(data); err != nil || id != SchemaIDEventV3 {
					t.Fatalf("%s: frame id %d, %v; want %d", name, id, err, SchemaIDEventV3)
				}
				got, err := DecodeEvent(data)
				if err != nil {
					t.Fatalf("%s: DecodeEvent: %v", name, err)
				}
				assertEvent(t, got, tc.want)
				v, err := EventCodec{}.Decode(data)
				if err != nil {
					t.Fatalf("%s: Decode: %v", name, err)
				}
				e, ok := v.(*Event)
				if !ok {
					t.Fatalf("%s: Decode returned %T", name, v)
				}
				assertEvent(t, e, tc.want)
			}
		})
	}
}

var eventGokaCodec = &EventCodec{}

func manyIdentifiers(n int) []Identifier {
	ids := make([]Identifier, n)
	for i := range ids {
		ids[i] = Identifier{Type: IDEmail, Value: fmt.Sprintf("p%d@example.com", i)}
	}
	return ids
}

func assertEvent(t *testing.T, got, want *Event) {
	t.Helper()
	// == on time.Time also checks the location is UTC (nil), not just the
	// instant, which reflect.DeepEqual does too.
	if got.Time != want.Time {
		t.Errorf("Time = %v, want %v", got.Time, want.Time)
	}
	if got.ReceivedAt != want.ReceivedAt {
		t.Errorf("ReceivedAt = %v, want %v", got.ReceivedAt, want.ReceivedAt)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("event =\n%+v\nwant\n%+v", got, want)
	}
}

// A v1, a v2 and two v3 records written by hand, byte by byte, so that the wire
// format cannot drift with the .avsc files.
const (
	goldenEventV1 = "00 00000001" +
		"02 74" + "02 69" + "02 78" + // tenant "t", id "i", type "x"
		"d0 0f" + // time 1000 ms
		"02 73" + // source "s"
		"02 0a 656d61696c 06 614062 00" + // identifiers [{email, a@b}]
		"02 02 6b 02 31 00" + // traits {k: "1"}
		"00" // properties {}
	goldenEventV2 = "00 00000002" +
		"02 74" + "02 69" + "02 78" + "d0 0f" + "02 73" +
		"02 0a 656d61696c 06 614062 00" +
		"02 02 6b 02 31 00" +
		"00" +
		"02 70" + // partner "p"
		"a0 1f" // received_at 2000 ms
	goldenEventV3 = "00 00000005" +
		"02 74" + "02 69" + "02 78" + "d0 0f" + "02 73" +
		"02 0a 656d61696c 06 614062 00" +
		"02 02 6b 02 31 00" +
		"00" +
		"02 70" + "a0 1f" +
		"00" // topic null
	goldenEventV3Topic = "00 00000005" +
		"02 74" + "02 69" + "02 78" + "d0 0f" + "02 73" +
		"02 0a 656d61696c 06 614062 00" +
		"02 02 6b 02 31 00" +
		"00" +
		"02 70" + "a0 1f" +
		"02 04 6361" // topic: union branch 1, "ca"
)

func goldenEvent() *Event {
	return &Event{
		Tenant: "t", ID: "i", Type: "x", Time: time.UnixMilli(1000).UTC(), Source: "s",
		Identifiers: []Identifier{{Type: "email", Value: "a@b"}},
		Traits:      map[string]string{"k": "1"},
		Partner:     "p", ReceivedAt: time.UnixMilli(2000).UTC(),
	}
}

func TestEventGoldenV3(t *testing.T) {
	withTopic := goldenEvent()
	withTopic.Topic = "ca"
	for golden, e := range map[string]*Event{goldenEventV3: goldenEvent(), goldenEventV3Topic: withTopic} {
		data, err := EncodeEvent(e)
		if err != nil {
			t.Fatal(err)
		}
		if want := mustHex(t, golden); !bytes.Equal(data, want) {
			t.Errorf("EncodeEvent =\n%x\nwant\n%x", data, want)
		}
		got, err := DecodeEvent(mustHex(t, golden))
		if err != nil {
			t.Fatal(err)
		}
		assertEvent(t, got, e)
	}
}

// TestEventCodecReadsV2 is the backward compatibility guarantee of v3:
// records written with version 2 (id 2: byte by byte, and by goavro with
// the v2 schema, as an old producer would) decode with no topic.
func TestEventCodecReadsV2(t *testing.T) {
	got, err := DecodeEvent(mustHex(t, goldenEventV2))
	if err != nil {
		t.Fatal(err)
	}
	assertEvent(t, got, goldenEvent())
	avsc, _ := AvroSchema(SchemaIDEventV2)
	v2Writer, err := goavro.NewCodec(avsc)
	if err != nil {
		t.Fatal(err)
	}
	full := fullEvent()
	ids := []any{}
	for _, id := range full.Identifiers {
		ids = append(ids, map[string]any{"type": id.Type, "value": id.Value})
	}
	payload, err := v2Writer.BinaryFromNative(nil, map[string]any{
		"tenant": full.Tenant, "id": full.ID, "type": full.Type, "time": full.Time, "source": full.Source,
		"identifiers": ids, "traits": full.Traits, "properties": full.Properties,
		"partner": full.Partner, "received_at": full.ReceivedAt,
	})
	if err != nil {
		t.Fatal(err)
	}
	got, err = DecodeEvent(Frame(SchemaIDEventV2, payload))
	if err != nil {
		t.Fatal(err)
	}
	want := fullEvent()
	want.Time = want.Time.Truncate(time.Millisecond).UTC()
	want.ReceivedAt = want.ReceivedAt.Truncate(time.Millisecond).UTC()
	assertEvent(t, got, want)
	// A v2 payload framed as v3 lacks the topic's union index.
	if _, err := DecodeEvent(Frame(SchemaIDEventV3, payload)); err == nil {
		t.Error("v2 payload framed as v3 decoded without error")
	}
}

// TestEventCodecReadsV1 is the backward compatibility guarantee: records
// written with the previous schema (id 1) still decode, with the fields v1
// lacks at their zero values.
func TestEventCodecReadsV1(t *testing.T) {
	v1Want := goldenEvent()
	v1Want.Partner, v1Want.ReceivedAt = "", time.Time{}

	// A writer that only knows v1, as an old producer would be.
	avsc, _ := AvroSchema(SchemaIDEventV1)
	v1Writer, err := goavro.NewCodec(avsc)
	if err != nil {
		t.Fatal(err)
	}
	full := fullEvent()
	native := map[string]any{
		"tenant": full.Tenant, "id": full.ID, "type": full.Type, "time": full.Time, "source": full.Source,
		"identifiers": []any{
			map[string]any{"type": full.Identifiers[0].Type, "value": full.Identifiers[0].Value},
			map[string]any{"type": full.Identifiers[1].Type, "value": full.Identifiers[1].Value},
			map[string]any{"type": full.Identifiers[2].Type, "value": full.Identifiers[2].Value},
		},
		"traits":     full.Traits,
		"properties": full.Properties,
	}
	payload, err := v1Writer.BinaryFromNative(nil, native)
	if err != nil {
		t.Fatal(err)
	}
	fullWant := fullEvent()
	fullWant.Time = t0.Truncate(time.Millisecond).UTC()
	fullWant.Partner, fullWant.ReceivedAt = "", time.Time{}

	emptyPayload, err := v1Writer.BinaryFromNative(nil, map[string]any{
		"tenant": "", "id": "", "type": "", "time": int64(0), "source": "",
		"identifiers": []any{}, "traits": map[string]any{}, "properties": map[string]any{},
	})
	if err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name string
		data []byte
		want *Event
	}{
		{"golden bytes", mustHex(t, goldenEventV1), v1Want},
		{"goavro v1 writer", Frame(SchemaIDEventV1, payload), fullWant},
		{"empty v1 record", Frame(SchemaIDEventV1, emptyPayload), &Event{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := DecodeEvent(tc.data)
			if err != nil {
				t.Fatalf("DecodeEvent: %v", err)
			}
			assertEvent(t, got, tc.want)
			v, err := eventGokaCodec.Decode(tc.data)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			assertEvent(t, v.(*Event), tc.want)
			// A v1 payload is not a valid v2 payload: the frame id matters.
			if _, err := DecodeEvent(Frame(SchemaIDEventV2, tc.data[FrameHeaderSize:])); err == nil {
				t.Error("v1 payload framed as v2 decoded without error")
			}
		})
	}
}

func TestDeadLetterCodecRoundTrip(t *testing.T) {
	full := &DeadLetter{
		Time: t0, Partner: "shopify", Tenant: "acme", Reason: "invalid_json",
		Message: "unexpected end of JSON input", SourceKind: SourceKafka,
		RequestID: "req-1", Topic: "rolodex.ingest.shopify", Partition: 7, Offset: 1 << 40,
		File: "x.csv", Row: 12, Payload: []byte{0, 1, 2, 0xff, '{'},
	}
	fullWant := *full
	fullWant.Time = t0.Truncate(time.Millisecond).UTC()
	for _, tc := range []struct {
		name string
		in   *DeadLetter
		want *DeadLetter
	}{
		{"full", full, &fullWant},
		{"zero", &DeadLetter{}, &DeadLetter{}},
		{"empty payload reads as nil", &DeadLetter{Payload: []byte{}}, &DeadLetter{}},
		{"negative partition", &DeadLetter{Partition: -1, Offset: -2, Row: -3}, &DeadLetter{Partition: -1, Offset: -2, Row: -3}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for name, encode := range map[string]func() ([]byte, error){
				"EncodeDeadLetter": func() ([]byte, error) { return EncodeDeadLetter(tc.in) },
				"Codec pointer":    func() ([]byte, error) { return (&DeadLetterCodec{}).Encode(tc.in) },
				"Codec value":      func() ([]byte, error) { return DeadLetterCodec{}.Encode(*tc.in) },
			} {
				data, err := encode()
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				if id, _, err := Unframe(data); err != nil || id != SchemaIDDeadLetterV1 {
					t.Fatalf("%s: frame id %d, %v", name, id, err)
				}
				v, err := DeadLetterCodec{}.Decode(data)
				if err != nil {
					t.Fatalf("%s: Decode: %v", name, err)
				}
				got, ok := v.(*DeadLetter)
				if !ok {
					t.Fatalf("%s: Decode returned %T", name, v)
				}
				if got.Time != tc.want.Time || !reflect.DeepEqual(got, tc.want) {
					t.Errorf("%s: got\n%+v\nwant\n%+v", name, got, tc.want)
				}
				if len(got.Payload) > 0 {
					data[len(data)-1] ^= 0xff // the payload is last
					if got.Payload[len(got.Payload)-1] != tc.want.Payload[len(tc.want.Payload)-1] {
						t.Errorf("%s: decoded Payload aliases the input", name)
					}
				}
			}
		})
	}
}

func TestIngestAvroRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   *RawEvent
		want *RawEvent
	}{
		{
			"full",
			&RawEvent{
				ID: "e1", Type: "identify", Time: "2024-05-01T12:00:00Z", Source: "pos",
				Identifiers: map[string][]string{"email": {"a@b.c", "d@e.f"}, "phone": {"+441234"}},
				Traits:      map[string]json.RawMessage{"name": json.RawMessage(`"Ada"`), "vip": json.RawMessage(`true`)},
				Properties:  map[string]json.RawMessage{"n": json.RawMessage(`{"a": [1, 2]}`)},
			},
			&RawEvent{
				ID: "e1", Type: "identify", Time: "2024-05-01T12:00:00Z", Source: "pos",
				Identifiers: map[string][]string{"email": {"a@b.c", "d@e.f"}, "phone": {"+441234"}},
				Traits:      map[string]json.RawMessage{"name": json.RawMessage(`"Ada"`), "vip": json.RawMessage(`true`)},
				Properties:  map[string]json.RawMessage{"n": json.RawMessage(`{"a": [1, 2]}`)},
			},
		},
		{
			"null time and source",
			&RawEvent{ID: "e2", Type: "track", Identifiers: map[string][]string{"user_id": {"u"}}},
			&RawEvent{ID: "e2", Type: "track", Identifiers: map[string][]string{"user_id": {"u"}}},
		},
		{
			"empty collections read as nil",
			&RawEvent{ID: "e3", Identifiers: map[string][]string{"email": {}}, Traits: map[string]json.RawMessage{}},
			&RawEvent{ID: "e3", Identifiers: map[string][]string{"email": nil}},
		},
		{
			"not JSON is a plain string",
			&RawEvent{ID: "e4", Traits: map[string]json.RawMessage{"name": json.RawMessage(`Ada`), "q": json.RawMessage(`say "hi"`), "empty": nil}},
			&RawEvent{ID: "e4", Traits: map[string]json.RawMessage{"name": json.RawMessage(`"Ada"`), "q": json.RawMessage(`"say \"hi\""`), "empty": json.RawMessage(`null`)}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data, err := EncodeIngestAvro(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			if id, _, err := Unframe(data); err != nil || id != SchemaIDIngestEventV1 {
				t.Fatalf("frame id %d, %v", id, err)
			}
			got, err := DecodeIngestAvro(data)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got\n%+v\nwant\n%+v", got, tc.want)
			}
		})
	}
}

// TestIngestAvroFromPartner decodes records written by a plain goavro
// writer, as a partner's producer would write them: null unions, defaults.
func TestIngestAvroFromPartner(t *testing.T) {
	avsc, _ := AvroSchema(SchemaIDIngestEventV1)
	w, err := goavro.NewCodec(avsc)
	if err != nil {
		t.Fatal(err)
	}
	encode := func(native map[string]any) []byte {
		payload, err := w.BinaryFromNative(nil, native)
		if err != nil {
			t.Fatal(err)
		}
		return Frame(SchemaIDIngestEventV1, payload)
	}
	nullTime := encode(map[string]any{
		"id": "1", "type": "t", "time": nil, "source": nil,
		"identifiers": map[string]any{"email": []any{"a@b"}},
	}) // traits and properties left to their default {}
	if got := nullTime[FrameHeaderSize:]; !bytes.Equal(got, mustHex(t, "02 31 02 74 00 00 02 0a 656d61696c 02 06 614062 00 00 00 00")) {
		t.Errorf("null time/source encoding = %x", got)
	}
	withTime := encode(map[string]any{
		"id": "1", "type": "t", "time": goavro.Union("string", "2024-01-01T00:00:00Z"),
		"source": goavro.Union("string", "app"), "identifiers": map[string]any{},
		"traits": map[string]any{"x": "not json"},
	})
	for _, tc := range []struct {
		name string
		data []byte
		want *RawEvent
	}{
		{"null time and source", nullTime, &RawEvent{ID: "1", Type: "t", Identifiers: map[string][]string{"email": {"a@b"}}}},
		{"time and source", withTime, &RawEvent{ID: "1", Type: "t", Time: "2024-01-01T00:00:00Z", Source: "app",
			Traits: map[string]json.RawMessage{"x": json.RawMessage(`"not json"`)}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := DecodeIngestAvro(tc.data)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got\n%+v\nwant\n%+v", got, tc.want)
			}
		})
	}
}

func TestEncodeErrors(t *testing.T) {
	for _, tc := range []struct {
		name   string
		encode func() ([]byte, error)
	}{
		{"EncodeEvent nil", func() ([]byte, error) { return EncodeEvent(nil) }},
		{"EventCodec nil", func() ([]byte, error) { return EventCodec{}.Encode((*Event)(nil)) }},
		{"EventCodec wrong type", func() ([]byte, error) { return EventCodec{}.Encode(&DeadLetter{}) }},
		{"EventCodec untyped nil", func() ([]byte, error) { return EventCodec{}.Encode(nil) }},
		{"EncodeDeadLetter nil", func() ([]byte, error) { return EncodeDeadLetter(nil) }},
		{"DeadLetterCodec wrong type", func() ([]byte, error) { return DeadLetterCodec{}.Encode("x") }},
		{"EncodeIngestAvro nil", func() ([]byte, error) { return EncodeIngestAvro(nil) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data, err := tc.encode()
			if err == nil {
				t.Fatalf("no error, data %x", data)
			}
			if !strings.HasPrefix(err.Error(), "schemas: ") {
				t.Errorf("error %q lacks context", err)
			}
		})
	}
}

type decoder struct {
	name   string
	id     uint32
	decode func([]byte) (any, error)
	valid  []byte
}

func decoders(t testing.TB) []decoder {
	withTopic := fullEvent()
	withTopic.Topic = "car-chosen"
	ev, err := EncodeEvent(withTopic)
	if err != nil {
		t.Fatal(err)
	}
	dl, err := EncodeDeadLetter(&DeadLetter{Reason: "r", Payload: []byte("{}"), Time: t1})
	if err != nil {
		t.Fatal(err)
	}
	in, err := EncodeIngestAvro(&RawEvent{ID: "1", Type: "t", Time: "2024", Identifiers: map[string][]string{"email": {"a@b"}},
		Traits: map[string]json.RawMessage{"a": json.RawMessage("1")}})
	if err != nil {
		t.Fatal(err)
	}
	return []decoder{
		{"event", SchemaIDEventV3, EventCodec{}.Decode, ev},
		{"deadletter", SchemaIDDeadLetterV1, DeadLetterCodec{}.Decode, dl},
		{"ingest", SchemaIDIngestEventV1, func(b []byte) (any, error) { return DecodeIngestAvro(b) }, in},
	}
}

func TestDecodeErrors(t *testing.T) {
	for _, d := range decoders(t) {
		otherID := uint32(SchemaIDDeadLetterV1)
		if d.id == SchemaIDDeadLetterV1 {
			otherID = SchemaIDEventV2
		}
		header := d.valid[:FrameHeaderSize]
		cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
		for _, tc := range []struct {
			name      string
			data      []byte
			notFramed bool
			unknownID bool
		}{
			{name: "nil", data: nil, notFramed: true},
			{name: "empty", data: []byte{}, notFramed: true},
			{name: "header only, truncated", data: header[:4], notFramed: true},
			{name: "wrong magic byte", data: cat([]byte{1}, d.valid[1:]), notFramed: true},
			{name: "JSON", data: []byte(`{"id":"1","type":"t"}`), notFramed: true},
			{name: "unknown schema id", data: cat(AppendFrameHeader(nil, 42), d.valid[FrameHeaderSize:]), unknownID: true},
			{name: "another schema's id", data: cat(AppendFrameHeader(nil, otherID), d.valid[FrameHeaderSize:]), unknownID: true},
			{name: "header and nothing", data: header},
			{name: "garbage after header", data: cat(header, []byte("garbage, garbage, garbage"))},
			{name: "0xff after header", data: cat(header, bytes.Repeat([]byte{0xff}, 32))},
			{name: "huge string length", data: cat(header, mustHex(t, "feffffff0f"))},
			{name: "negative string length", data: cat(header, mustHex(t, "01"))},
			{name: "trailing byte", data: cat(d.valid, []byte{0})},
			{name: "last byte cut", data: d.valid[:len(d.valid)-1]},
		} {
			t.Run(d.name+"/"+tc.name, func(t *testing.T) {
				v, err := d.decode(tc.data)
				if err == nil {
					t.Fatalf("no error, value %+v", v)
				}
				if got := errors.Is(err, ErrNotFramed); got != tc.notFramed {
					t.Errorf("errors.Is(%v, ErrNotFramed) = %v, want %v", err, got, tc.notFramed)
				}
				var unknown *UnknownSchemaIDError
				if got := errors.As(err, &unknown); got != tc.unknownID {
					t.Errorf("errors.As(%v, *UnknownSchemaIDError) = %v, want %v", err, got, tc.unknownID)
				}
				if !strings.HasPrefix(err.Error(), "schemas: ") {
					t.Errorf("error %q lacks context", err)
				}
			})
		}
		t.Run(d.name+"/every truncation", func(t *testing.T) {
			if _, err := d.decode(d.valid); err != nil {
				t.Fatalf("valid data: %v", err)
			}
			for n := range len(d.valid) {
				if _, err := d.decode(d.valid[:n]); err == nil {
					t.Errorf("%d of %d bytes decoded without error", n, len(d.valid))
				}
			}
		})
	}
}

// TestDecodeHugeBlockCount: a few bytes claiming billions of array items
// must be an error, not an allocation that kills the process (goavro
// allocates from the count unchecked).
func TestDecodeHugeBlockCount(t *testing.T) {
	// Event v2: tenant, id, type "", time 0, source "", then identifiers
	// with a block count of MaxInt32.
	huge := mustHex(t, "00 00000002 00 00 00 00 00 feffffff0f")
	negative := mustHex(t, "00 00000002 00 00 00 00 00 fdffffff0f 00") // -MaxInt32 items, size 0
	ingest := mustHex(t, "00 00000004 02 31 02 74 00 00 feffffff0f")   // identifiers map
	for _, tc := range []struct {
		name   string
		decode func() error
	}{
		{"event array", func() error { _, err := DecodeEvent(huge); return err }},
		{"event negative count", func() error { _, err := DecodeEvent(negative); return err }},
		{"ingest map", func() error { _, err := DecodeIngestAvro(ingest); return err }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.decode(); err == nil {
				t.Fatal("no error")
			}
		})
	}
}

func TestCodecsConcurrent(t *testing.T) {
	want := fullEvent()
	want.Time = want.Time.Truncate(time.Millisecond).UTC()
	want.ReceivedAt = want.ReceivedAt.Truncate(time.Millisecond).UTC()
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for range 16 {
		wg.Go(func() {
			for range 50 {
				data, err := EncodeEvent(fullEvent())
				if err != nil {
					errs <- err
					return
				}
				got, err := DecodeEvent(data)
				if err != nil {
					errs <- err
					return
				}
				if !reflect.DeepEqual(got, want) {
					errs <- fmt.Errorf("got %+v", got)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// FuzzDecode feeds arbitrary bytes to every decoder: errors are fine,
// panics and runaway allocations are not. Run with
// go test -fuzz FuzzDecode ./schemas/
func FuzzDecode(f *testing.F) {
	for _, d := range decoders(f) {
		f.Add(d.valid)
	}
	f.Add(mustHex(f, goldenEventV1))
	f.Add(mustHex(f, "00 00000002 00 00 00 00 00 feffffff0f"))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, id := range []uint32{SchemaIDEventV1, SchemaIDEventV2, SchemaIDEventV3, SchemaIDDeadLetterV1, SchemaIDIngestEventV1} {
			framed := data
			if len(data) >= FrameHeaderSize {
				framed = Frame(id, data[FrameHeaderSize:])
			}
			_, _ = DecodeEvent(framed)
			_, _ = DecodeDeadLetter(framed)
			_, _ = DecodeIngestAvro(framed)
		}
	})
}

func BenchmarkEventCodec(b *testing.B) {
	e := fullEvent()
	data, err := EncodeEvent(e)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("encode", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			if _, err := EncodeEvent(e); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("decode", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			if _, err := DecodeEvent(data); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("goka", func(b *testing.B) {
		var c EventCodec
		b.ReportAllocs()
		for b.Loop() {
			d, err := c.Encode(e)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := c.Decode(d); err != nil {
				b.Fatal(err)
			}
		}
	})
}
