package jsonscan

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/rolodex/rolodex/internal/jsonscan/jsonscantest"
)

// checkSplit fails t unless SplitArray agrees with json.Unmarshal into
// []json.RawMessage on b.
func checkSplit(t *testing.T, b []byte) {
	t.Helper()
	var want []json.RawMessage
	werr := json.Unmarshal(b, &want)
	got, gerr := SplitArray(b)
	if fmt.Sprint(gerr) != fmt.Sprint(werr) {
		t.Fatalf("SplitArray(%q) error %v, encoding/json %v", b, gerr, werr)
	}
	if werr != nil {
		return
	}
	if len(got) != len(want) || (got == nil) != (want == nil) {
		t.Fatalf("SplitArray(%q) = %d elements (nil %v), encoding/json %d (nil %v)", b, len(got), got == nil, len(want), want == nil)
	}
	for i := range got {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("SplitArray(%q)[%d] = %q, encoding/json %q", b, i, got[i], want[i])
		}
	}
}

// FuzzSplitArray: SplitArray splits exactly as encoding/json does, b and
// b as the one element of an array. Run with
// go test -fuzz FuzzSplitArray ./internal/jsonscan/; the seeds run in the
// normal suite.
func FuzzSplitArray(f *testing.F) {
	for _, s := range []string{`[]`, `[1]`, ` [ 1 , "a" , {"b":[null]} ] `, `[1,]`, `[,1]`, `[1 2]`, `[1]]`, `[[1]`, `null`, `{}`, `"a"`, `[`, ``,
		`[{"id":"a"},{"id":"b"}]`, `[01]`, `["\ud800"]`, "[\"\xff\"]", `[true,false,null]`, `[tru]`, "[1]\n", "[1] 2",
		`{"id":"e-1","identifiers":{"email":["a@b.co",null]},"traits":{"a":{"b":[1,2,{"c":null}]}}}`, `{"traits":{"a":[1,2,3,]}}`,
		`{"id":-1.5e+3}`, `{"id":1.}`, `{"id":"a\tb"}`, `{"a":"\x"}`, `{"a":"\u12"}`, "{\n  \"id\" : \"a\" ,\r\n\t\"type\":\"b\"\n}\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		checkSplit(t, b)
		checkSplit(t, append(append([]byte("["), b...), ']'))
	})
}

// TestSplitArrayRandom compares SplitArray with encoding/json on arrays of
// generated values, some with a byte changed.
func TestSplitArrayRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	n := 4000
	if testing.Short() || raceEnabled {
		n = 400
	}
	for range n {
		var elems []string
		for range 5 {
			elems = append(elems, jsonscantest.Value(rng, 3, rng.IntN(4) == 0))
		}
		b := []byte("[" + strings.Join(elems, ", ") + "]")
		if rng.IntN(6) == 0 {
			b[rng.IntN(len(b))] = `{}[],:"\ 0a-.e`[rng.IntN(14)]
		}
		checkSplit(t, b)
	}
}

// checkCompact fails t unless IsCompact(b) reports b valid and unchanged
// by json.Compact only when it is.
func checkCompact(t *testing.T, b []byte) {
	t.Helper()
	if !IsCompact(b) {
		return
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, b); err != nil {
		t.Fatalf("IsCompact(%q) = true, json.Compact fails: %v", b, err)
	}
	if !bytes.Equal(buf.Bytes(), b) {
		t.Fatalf("IsCompact(%q) = true, json.Compact gives %q", b, buf.Bytes())
	}
}

// FuzzIsCompact: IsCompact never calls a value compact that json.Compact
// would reject or change.
func FuzzIsCompact(f *testing.F) {
	for _, s := range []string{`1`, ` 1`, `1 `, `"a b"`, `{"a":1}`, `{"a": 1}`, `[1,2]`, `[1, 2]`, `[1,2,]`, `null`, `nul`, `-0.5e+3`, `01`,
		`"\u00e9"`, "\"\xff\"", `{"a":{"b":[true,false,null,"x"]}}`, `{}`, `[]`, `[ ]`, "\"\t\"", `"\t"`, ``, `"a"x`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) { checkCompact(t, b) })
}

// TestIsCompactRandom: on generated values IsCompact agrees with
// json.Valid and json.Compact, in both directions: it calls compact every
// valid value json.Compact leaves as it is.
func TestIsCompactRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	n := 20000
	if testing.Short() || raceEnabled {
		n = 2000
	}
	for i := 0; i < n; i++ {
		b := []byte(jsonscantest.Value(rng, 4, rng.IntN(3) == 0))
		if rng.IntN(5) == 0 && len(b) > 0 {
			b[rng.IntN(len(b))] = ` ,:{}[]"\0a`[rng.IntN(11)]
		}
		checkCompact(t, b)
		var buf bytes.Buffer
		if json.Compact(&buf, b) == nil && bytes.Equal(buf.Bytes(), b) && !IsCompact(b) {
			t.Fatalf("IsCompact(%q) = false, but it is valid and compact", b)
		}
	}
}

// TestScanASCIIString: a string of ASCII without escapes is scanned; at
// anything else the scanner stays where it is.
func TestScanASCIIString(t *testing.T) {
	for _, tt := range []struct {
		in   string
		text string
		ok   bool
	}{
		{`"id":1`, "id", true}, {`"":1`, "", true}, {`"a b@c.d"`, "a b@c.d", true},
		{`"é"`, "", false}, {`"a\"b"`, "", false}, {`"a\u0062"`, "", false}, {"\"a\tb\"", "", false},
		{`"abc`, "", false}, {`abc"`, "", false}, {``, "", false}, {`1`, "", false},
	} {
		var s Scanner
		s.Reset([]byte(tt.in), false)
		start, end, ok := s.ScanASCIIString()
		switch {
		case ok != tt.ok:
			t.Errorf("ScanASCIIString(%q) ok = %v, want %v", tt.in, ok, tt.ok)
		case ok && (tt.in[start:end] != tt.text || s.Pos() != end+1):
			t.Errorf("ScanASCIIString(%q) = %q, at %d; want %q, at %d", tt.in, tt.in[start:end], s.Pos(), tt.text, len(tt.text)+2)
		case !ok && s.Pos() != 0:
			t.Errorf("ScanASCIIString(%q) failed and moved to %d", tt.in, s.Pos())
		}
	}
}
