package schemas

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/linkedin/goavro/v2"
)

// encodeEventGoavro is how EncodeEvent encoded before the hand-written
// encoder: goavro on generic values. It is the reference.
func encodeEventGoavro(t testing.TB, e *Event) []byte {
	t.Helper()
	reg, err := registry()
	if err != nil {
		t.Fatal(err)
	}
	ids := make([]any, len(e.Identifiers))
	for i, id := range e.Identifiers {
		ids[i] = map[string]any{"type": id.Type, "value": id.Value}
	}
	traits, _ := nativeStringMap(e.Traits)
	props, _ := nativeStringMap(e.Properties)
	var topic any // null
	if e.Topic != "" {
		topic = goavro.Union("string", e.Topic)
	}
	data, err := reg.eventV3.encode(map[string]any{
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
		"topic":       topic,
	}, 0)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// sortAvroMaps rewrites a framed Event v3 record with the entries of its
// two maps in key order. goavro writes map entries in Go's (random) map
// order, so its bytes are compared with EncodeEvent's after this. It only
// moves byte ranges around: every byte comes from data.
func sortAvroMaps(t testing.TB, data []byte) []byte {
	t.Helper()
	r := avroReader{t: t, b: data, i: FrameHeaderSize}
	out := bytes.Clone(data[:FrameHeaderSize])
	copyField := func(read func()) {
		start := r.i
		read()
		out = append(out, data[start:r.i]...)
	}
	for range 3 { // tenant, id, type
		copyField(r.str)
	}
	copyField(r.long)  // time
	copyField(r.str)   // source
	copyField(func() { // identifiers
		for n := r.count(); n != 0; n = r.count() {
			for range n {
				r.str()
				r.str()
			}
		}
	})
	for range 2 { // traits, properties
		start := r.i
		n := r.count()
		if n == 0 {
			out = append(out, data[start:r.i]...)
			continue
		}
		head := data[start:r.i]
		type entry struct {
			key   string
			bytes []byte
		}
		entries := make([]entry, n)
		for i := range entries {
			es := r.i
			kStart := r.i
			r.str()
			key := string(data[kStart:r.i])
			r.str()
			entries[i] = entry{key, data[es:r.i]}
		}
		if r.count() != 0 {
			t.Fatalf("goavro wrote a map in more than one block: %x", data)
		}
		slices.SortFunc(entries, func(a, b entry) int { return compareAvroStrings(a.key, b.key) })
		out = append(out, head...)
		for _, e := range entries {
			out = append(out, e.bytes...)
		}
		out = append(out, 0)
	}
	copyField(r.str)   // partner
	copyField(r.long)  // received_at
	copyField(func() { // topic: null or string
		if r.varint() == 1 {
			r.str()
		}
	})
	if r.i != len(data) {
		t.Fatalf("%d bytes left over after the record: %x", len(data)-r.i, data)
	}
	return out
}

// compareAvroStrings orders two encoded strings (length, then bytes) by
// their bytes.
func compareAvroStrings(a, b string) int {
	_, na := binary.Uvarint([]byte(a))
	_, nb := binary.Uvarint([]byte(b))
	return bytes.Compare([]byte(a[na:]), []byte(b[nb:]))
}

type avroReader struct {
	t testing.TB
	b []byte
	i int
}

func (r *avroReader) varint() int64 {
	u, n := binary.Uvarint(r.b[r.i:])
	if n <= 0 {
		r.t.Fatalf("bad varint at %d: %x", r.i, r.b)
	}
	r.i += n
	return int64(u>>1) ^ -int64(u&1)
}

func (r *avroReader) long() { r.varint() }

func (r *avroReader) count() int64 {
	n := r.varint()
	if n < 0 {
		r.t.Fatalf("block with byte size (negative count) at %d: %x", r.i, r.b)
	}
	return n
}

func (r *avroReader) str() {
	n := r.varint()
	if n < 0 || int64(len(r.b)-r.i) < n {
		r.t.Fatalf("bad string length %d at %d: %x", n, r.i, r.b)
	}
	r.i += int(n)
}

// checkEncodeEvent fails t unless EncodeEvent(e) is goavro's encoding
// (maps in key order) and reads back as want.
func checkEncodeEvent(t *testing.T, e, want *Event) {
	t.Helper()
	got, err := EncodeEvent(e)
	if err != nil {
		t.Fatal(err)
	}
	ref := sortAvroMaps(t, encodeEventGoavro(t, e))
	if !bytes.Equal(got, ref) {
		t.Fatalf("EncodeEvent(%+v) =\n%x\ngoavro (maps sorted)\n%x", e, got, ref)
	}
	// Already in key order (and, as sortAvroMaps checks, one block per map
	// and nothing left over).
	if sorted := sortAvroMaps(t, got); !bytes.Equal(sorted, got) {
		t.Fatalf("EncodeEvent(%+v) did not write its maps in key order:\n%x", e, got)
	}
	// Written into one buffer of the size computed up front.
	_, traitsSize := sortedEntries(e.Traits, new([16]avroEntry))
	_, propsSize := sortedEntries(e.Properties, new([16]avroEntry))
	if want := eventV3Size(e, traitsSize+propsSize); cap(got) != want || len(got) > want {
		t.Fatalf("EncodeEvent: %d bytes in a buffer of capacity %d, want capacity %d", len(got), cap(got), want)
	}
	back, err := DecodeEvent(got)
	if err != nil {
		t.Fatalf("DecodeEvent(EncodeEvent(%+v)): %v", e, err)
	}
	assertEvent(t, back, want)
}

// TestEncodeEventMatchesGoavro: the hand-written encoder writes goavro's
// bytes (map entries in key order) for many random events, and they read
// back.
func TestEncodeEventMatchesGoavro(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	n := 3000
	if testing.Short() || raceEnabled {
		n = 300
	}
	for i := 0; i < n; i++ {
		e := randomEvent(rng)
		checkEncodeEvent(t, e, readBack(e))
	}
}

// TestEncodeEventEdges covers the edges one by one: zero and extreme
// times, empty and nil collections, unicode, long strings (multi-byte
// lengths), many entries.
func TestEncodeEventEdges(t *testing.T) {
	long := string(bytes.Repeat([]byte("x"), 70000))
	many := map[string]string{}
	for i := range 300 {
		many[fmt.Sprintf("k%03d", i)] = fmt.Sprint(i)
	}
	for name, e := range map[string]*Event{
		"zero":           {},
		"empty non-nil":  {Identifiers: []Identifier{}, Traits: map[string]string{}, Properties: map[string]string{}},
		"unicode":        {Tenant: "tênant", ID: "ид-1", Type: "页面.浏览", Source: "😀", Identifiers: []Identifier{{"email", "ã@é.com"}}, Traits: map[string]string{"nome": `"José"`, "城市": `"São Paulo"`}},
		"empty strings":  {Identifiers: []Identifier{{}}, Traits: map[string]string{"": ""}, Properties: map[string]string{"": "null"}},
		"long":           {ID: long, Traits: map[string]string{long: long}},
		"many entries":   {Traits: many, Properties: many, Identifiers: manyIdentifiers(200)},
		"epoch":          {Time: time.UnixMilli(0), ReceivedAt: time.UnixMilli(0)},
		"before epoch":   {Time: time.UnixMilli(-1).UTC(), ReceivedAt: time.UnixMilli(-62135596800000).UTC()},
		"far future":     {Time: time.Date(9999, 12, 31, 23, 59, 59, 999_999_999, time.UTC)},
		"max millis":     {Time: time.UnixMilli(math.MaxInt64 / 2).UTC()},
		"sub-ms, zoned":  {Time: time.Date(2026, 11, 23, 10, 0, 0, 123_456_789, time.FixedZone("X", 3600))},
		"invalid UTF-8":  {ID: "\xff\xfe", Traits: map[string]string{"\xc3": "\x80"}},
		"one identifier": {Identifiers: []Identifier{{"user_id", "u-1"}}, Partner: "p"},
		"topic":          {Identifiers: []Identifier{{"user_id", "u-1"}}, Topic: "car-chosen"},
		"long topic":     {Topic: long},
	} {
		t.Run(name, func(t *testing.T) { checkEncodeEvent(t, e, readBack(e)) })
	}
}

// readBack is what DecodeEvent returns for e: times to the millisecond in
// UTC (0 as the zero time), empty collections as nil.
func readBack(e *Event) *Event {
	w := *e
	ms := func(t time.Time) time.Time {
		if t.IsZero() || t.UnixMilli() == 0 {
			return time.Time{}
		}
		return time.UnixMilli(t.UnixMilli()).UTC()
	}
	w.Time, w.ReceivedAt = ms(e.Time), ms(e.ReceivedAt)
	if len(w.Identifiers) == 0 {
		w.Identifiers = nil
	}
	if len(w.Traits) == 0 {
		w.Traits = nil
	}
	if len(w.Properties) == 0 {
		w.Properties = nil
	}
	return &w
}

func randomEvent(rng *rand.Rand) *Event {
	str := func() string {
		parts := []string{"", "a", "Z", "9", "@", ".", "ã", "é", "中文", "😀", "\"", "\\", "{\"a\":1}", "\x00", "\xff"}
		var b []byte
		for n := rng.IntN(6); n > 0; n-- {
			b = append(b, parts[rng.IntN(len(parts))]...)
		}
		if rng.IntN(50) == 0 {
			b = append(b, bytes.Repeat([]byte("y"), 64+rng.IntN(300))...)
		}
		return string(b)
	}
	tm := func() time.Time {
		switch rng.IntN(5) {
		case 0:
			return time.Time{}
		case 1:
			return time.UnixMilli(rng.Int64N(1 << 45)).UTC()
		case 2:
			return time.Unix(rng.Int64N(1<<33)-(1<<32), rng.Int64N(1e9))
		default:
			return time.Date(2026, 11, 23, rng.IntN(24), rng.IntN(60), rng.IntN(60), rng.IntN(1e9), time.UTC)
		}
	}
	strMap := func() map[string]string {
		switch rng.IntN(4) {
		case 0:
			return nil
		case 1:
			return map[string]string{}
		}
		m := map[string]string{}
		for n := rng.IntN(6); n > 0; n-- {
			m[str()] = str()
		}
		return m
	}
	e := &Event{Tenant: str(), ID: str(), Type: str(), Time: tm(), Source: str(), Partner: str(), ReceivedAt: tm(),
		Traits: strMap(), Properties: strMap()}
	if rng.IntN(2) == 0 {
		e.Topic = str()
	}
	switch n := rng.IntN(6); n {
	case 0:
	case 1:
		e.Identifiers = []Identifier{}
	default:
		for range n {
			e.Identifiers = append(e.Identifiers, Identifier{Type: str(), Value: str()})
		}
	}
	return e
}

// BenchmarkEncodeEvent compares the hand-written encoder with goavro.
func BenchmarkEncodeEvent(b *testing.B) {
	e := fullEvent()
	b.Run("hand-written", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := EncodeEvent(e); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("goavro", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			encodeEventGoavro(b, e)
		}
	})
}
