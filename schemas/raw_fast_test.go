package schemas

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"

	"github.com/rolodex/rolodex/internal/jsonscan"
	"github.com/rolodex/rolodex/internal/jsonscan/jsonscantest"
)

// slowRawEvent decodes with encoding/json only: the reference the fast
// path is held to.
type slowRawEvent RawEvent

func (s *slowRawEvent) UnmarshalJSON(b []byte) error {
	return (*RawEvent)(s).unmarshalJSONSlow(b)
}

// checkDecode fails t unless DecodeRawEventJSON, RawEvent.UnmarshalJSON
// (through json.Unmarshal) and the fast path alone agree with the
// reference on b: encoding/json, after CheckJSONText rejected text that is
// not Unicode. It reports whether the fast path took b.
func checkDecode(t *testing.T, b []byte) bool {
	t.Helper()
	var want slowRawEvent
	werr := CheckJSONText(b)
	if werr == nil {
		werr = json.Unmarshal(b, &want)
	}

	got, gerr := DecodeRawEventJSON(b)
	if fmt.Sprint(gerr) != fmt.Sprint(werr) {
		t.Fatalf("DecodeRawEventJSON(%q) error %v, encoding/json %v", b, gerr, werr)
	}
	if werr == nil && !reflect.DeepEqual(*got, RawEvent(want)) {
		t.Fatalf("DecodeRawEventJSON(%q) = %#v, encoding/json %#v", b, *got, RawEvent(want))
	}

	var viaUnmarshal RawEvent
	uerr := json.Unmarshal(b, &viaUnmarshal)
	uwant := werr
	if _, invalid := werr.(*InvalidUTF8Error); invalid {
		// UnmarshalJSON counts from the object's first byte.
		uwant = CheckJSONText(bytes.TrimLeft(b, " \t\r\n"))
	}
	if fmt.Sprint(uerr) != fmt.Sprint(uwant) {
		t.Fatalf("json.Unmarshal(%q) error %v, reference %v", b, uerr, uwant)
	}
	if werr == nil && !reflect.DeepEqual(viaUnmarshal, RawEvent(want)) {
		t.Fatalf("json.Unmarshal(%q) = %#v, reference %#v", b, viaUnmarshal, RawEvent(want))
	}

	var fast RawEvent
	if !fast.decodeFast(b) {
		return false
	}
	if werr != nil {
		t.Fatalf("fast path decoded %q, encoding/json fails: %v", b, werr)
	}
	if !reflect.DeepEqual(fast, RawEvent(want)) {
		t.Fatalf("fast path decoded %q as %#v, encoding/json %#v", b, fast, RawEvent(want))
	}
	// The result must not share memory with b.
	saved := bytes.Clone(b)
	for i := range b {
		b[i] = 'X'
	}
	if !reflect.DeepEqual(fast, RawEvent(want)) {
		t.Fatalf("the event decoded from %q changed when the input was overwritten", saved)
	}
	copy(b, saved)
	return true
}

var decodeSeeds = []string{
	`{"id":"e-1","type":"page.viewed","time":"2026-11-22T10:00:00Z","source":"web","identifiers":{"email":"Ana@Example.com","phone":"+55 11 91234-5678","user_id":"u-1"},"traits":{"name":"Ana"},"properties":{"url":"/cars/42"}}`,
	`{"id":1,"type":"x","identifiers":{"phone":5511912345678,"email":["a@b.co","c@d.co"]}}`,
	`{"id":"x","type":"t","identifiers":{"external:crm":"L-1"},"traits":{"n":null}}`,
	`{"id":null,"type":5}`, `{"identifiers":[]}`, `[]`, `{`, `null`, ``, "\x00", `{}`, ` { } `,
	`{"ID":"a"}`, `{"id":"a","id":"b"}`, `{"Type":"t"}`, `{"ſource":"s"}`, `{"\u0069d":"x"}`,
	`{"id":-1.5e+3,"identifiers":{"email":null,"phone":[],"x":[null,"a"]}}`,
	`{"id":true}`, `{"id":{}}`, `{"id":[1]}`, `{"identifiers":{"e":true}}`, `{"identifiers":{"e":{}}}`,
	`{"identifiers":{"e":[1]}}`, `{"identifiers":{"e":"a","e":"b"}}`, `{"identifiers":{}}`, `{"identifiers":null}`,
	`{"traits":{}}`, `{"traits":null}`, `{"traits":[]}`, `{"traits":{"a":1,"a":2}}`, `{"traits":{"a":{"b":[1,2,{"c":null}]}}}`,
	`{"id":"caf\u00e9","type":"a\"b","source":"\ud83d\ude00","time":"\ud800"}`, "{\"id\":\"\xff\xfe\"}",
	`{"id":"é","identifiers":{"émail":"á"}}`, `{"id":01}`, `{"id":1.}`, `{"id":-}`, `{"id":1e}`, `{"id":"a"} x`,
	`{"id":"a",}`, `{"id" "a"}`, `{"id":"a"`, "{\"id\":\"a\tb\"}", `{"traits":{"a":tru}}`, `{"traits":{"a":nul}}`,
	`{"unknown":{"deep":[[[[]]]]},"id":"x"}`, `{"unknown":[1,2,"x",{"a":{}}]}`, `{"properties":{"p":"\u0026"}}`,
	"{\n  \"id\" : \"a\" ,\r\n\t\"type\":\"b\"\n}\n", `{"traits":{"a":[1,2,3,]}}`, `{"traits":{"a":{"b":1,}}}`,
	`{"traits":{"a":"\x"}}`, `{"traits":{"a":"\u12"}}`, `{"traits":{"":1}}`, `{"identifiers":{"":""}}`,
	`{"id":"a","identifiers":{"email":"a@b.co"},"IDENTIFIERS":{}}`, `{"id":"a","idx":"b","ids":1}`,
}

// FuzzRawEventJSON: the fast path of the event decoding decodes exactly
// what encoding/json decodes, and everything else goes to encoding/json.
// Run with go test -fuzz FuzzRawEventJSON ./schemas/; the seeds run in the
// normal suite.
func FuzzRawEventJSON(f *testing.F) {
	for _, s := range decodeSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		checkDecode(t, b)
	})
}

// TestDecodeRandomEvents compares the decoders on many generated events,
// from the plain shape to every oddity encoding/json decides on.
func TestDecodeRandomEvents(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	n := 20000
	if testing.Short() || raceEnabled {
		n = 2000
	}
	fast := 0
	for i := 0; i < n; i++ {
		if checkDecode(t, randomEventJSON(rng, rng.IntN(4) == 0)) {
			fast++
		}
	}
	t.Logf("fast path took %d of %d events", fast, n)
	if fast < n/2 {
		t.Errorf("fast path took only %d of %d events", fast, n)
	}
}

// TestDecodeFastTakesPlainEvents: the shape partners send takes the fast
// path.
func TestDecodeFastTakesPlainEvents(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	for i := 0; i < 1000; i++ {
		b := randomEventJSON(rng, false)
		if !checkDecode(t, b) {
			t.Fatalf("a plain event did not take the fast path: %s", b)
		}
	}
	for _, s := range decodeSeeds[:3] {
		if !checkDecode(t, []byte(s)) {
			t.Fatalf("a plain event did not take the fast path: %s", s)
		}
	}
}

// randomEventJSON writes an event. Plain events use the documented field
// names once each and well-typed values; odd ones also get field names in
// other cases, repeated fields, wrong types, escapes, invalid UTF-8 and
// syntax errors.
func randomEventJSON(rng *rand.Rand, odd bool) []byte {
	var sb strings.Builder
	ws := func() {
		if rng.IntN(4) == 0 {
			sb.WriteString([]string{" ", "\n", "\t", "\r\n  "}[rng.IntN(4)])
		}
	}
	type field struct{ name, value string }
	var fields []field
	str := func() string { return jsonscantest.String(rng, odd) }
	switch rng.IntN(5) {
	case 0:
		fields = append(fields, field{"id", fmt.Sprint(rng.IntN(1 << 40))})
	case 1:
		fields = append(fields, field{"id", "null"})
	default:
		fields = append(fields, field{"id", str()})
	}
	fields = append(fields, field{"type", str()})
	if rng.IntN(3) > 0 {
		fields = append(fields, field{"time", `"2026-11-23T10:00:00.123Z"`})
	}
	if rng.IntN(2) == 0 {
		fields = append(fields, field{"source", str()})
	}
	if rng.IntN(10) > 0 {
		var ids []string
		for j := rng.IntN(4); j >= 0; j-- {
			var v string
			switch rng.IntN(6) {
			case 0:
				v = "null"
			case 1:
				v = fmt.Sprint(rng.Int64N(1e13))
			case 2:
				var l []string
				for k := rng.IntN(3); k > 0; k-- {
					if rng.IntN(5) == 0 {
						l = append(l, "null")
					} else {
						l = append(l, str())
					}
				}
				v = "[" + strings.Join(l, ",") + "]"
			default:
				v = str()
			}
			ids = append(ids, []string{`"email"`, `"phone"`, `"user_id"`, `"external:crm"`, str()}[rng.IntN(5)]+":"+v)
		}
		fields = append(fields, field{"identifiers", "{" + strings.Join(ids, ",") + "}"})
	}
	for _, name := range []string{"traits", "properties"} {
		if rng.IntN(3) == 0 {
			continue
		}
		var kv []string
		for j := rng.IntN(4); j > 0; j-- {
			kv = append(kv, str()+":"+jsonscantest.Value(rng, 3, odd))
		}
		fields = append(fields, field{name, "{" + strings.Join(kv, ",") + "}"})
	}
	if rng.IntN(4) == 0 {
		fields = append(fields, field{"context", jsonscantest.Value(rng, 4, odd)})
	}
	if odd {
		switch rng.IntN(8) {
		case 0:
			f := fields[rng.IntN(len(fields))]
			fields = append(fields, field{f.name, jsonscantest.Value(rng, 2, true)})
		case 1:
			i := rng.IntN(len(fields))
			fields[i].name = strings.ToUpper(fields[i].name[:1]) + fields[i].name[1:]
		case 2:
			i := rng.IntN(len(fields))
			fields[i].value = jsonscantest.Value(rng, 2, true)
		}
	}
	rng.Shuffle(len(fields), func(i, j int) { fields[i], fields[j] = fields[j], fields[i] })
	ws()
	sb.WriteByte('{')
	for i, f := range fields {
		if i > 0 {
			sb.WriteByte(',')
		}
		ws()
		sb.WriteString(`"` + f.name + `"`)
		ws()
		sb.WriteByte(':')
		ws()
		sb.WriteString(f.value)
		ws()
	}
	sb.WriteByte('}')
	ws()
	b := []byte(sb.String())
	if odd && rng.IntN(6) == 0 && len(b) > 0 {
		// A syntax error, or not.
		i := rng.IntN(len(b))
		b[i] = `{}[],:"\ 0a-.e`[rng.IntN(14)]
	}
	return b
}

func BenchmarkDecodeRawEventJSON(b *testing.B) {
	ev := []byte(decodeSeeds[0])
	b.Run("fast", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(ev)))
		for b.Loop() {
			if _, err := DecodeRawEventJSON(ev); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(ev)))
		for b.Loop() {
			var r slowRawEvent
			if err := json.Unmarshal(ev, &r); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkDecodeBatch decodes a request body of 100 events the way the
// HTTP ingest did before (an array of json.RawMessage, then each element
// through encoding/json) and the way it does now (jsonscan.SplitArray, then
// DecodeRawEventJSON). Reported per event.
func BenchmarkDecodeBatch(b *testing.B) {
	body := decodeBatchBody()
	b.Run("encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			var raw []json.RawMessage
			if err := json.Unmarshal(body, &raw); err != nil {
				b.Fatal(err)
			}
			for _, e := range raw {
				var ev slowRawEvent
				if err := json.Unmarshal(e, &ev); err != nil {
					b.Fatal(err)
				}
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/100, "ns/event")
	})
	b.Run("one-pass", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			raw, err := jsonscan.SplitArray(body)
			if err != nil {
				b.Fatal(err)
			}
			for _, e := range raw {
				if _, err := DecodeRawEventJSON(e); err != nil {
					b.Fatal(err)
				}
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/100, "ns/event")
	})
}

// decodeBatchBody is a request body of 100 plain events.
func decodeBatchBody() []byte {
	var elems []string
	for i := range 100 {
		elems = append(elems, fmt.Sprintf(`{"id":"evt-%06d","type":"page.viewed","time":"2026-11-23T10:%02d:00Z","source":"bench",`+
			`"identifiers":{"email":"Ana.Silva%d@Example.com","phone":"(41) 97798-%04d","user_id":"u-%06d"},`+
			`"traits":{"name":"Ana Silva","city":"Curitiba"},"properties":{"page":"/cars/%d","amount":%d.5}}`, i, i%60, i, i, i, i, i))
	}
	return []byte("[" + strings.Join(elems, ",") + "]")
}
