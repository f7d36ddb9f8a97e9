package jsonscan

import (
	"encoding/json"
	"math/rand/v2"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/rolodex/rolodex/internal/jsonscan/jsonscantest"
)

// TestFindInvalidText: the first string that is not Unicode text, and its
// path. A | in doc marks where (and is removed): the first invalid byte,
// or the backslash of the escape.
func TestFindInvalidText(t *testing.T) {
	for _, tt := range []struct {
		doc, path string
		key       bool
		escape    string
	}{
		{`{"id":"a|\xff\xfe","type":"t"}`, "id", false, ""},
		{`{"a":{"b":["ok","R|\xfaa"]}}`, "a.b[1]", false, ""},
		{`{"a":[{"b":{"c":[0,true,"|\xc3"]}}]}`, "a[0].b.c[2]", false, ""},
		{`[[1,"|\xff"]]`, "[0][1]", false, ""},
		{`[{"id":"ok"},{"id":"|\xff"}]`, "[1].id", false, ""},
		{`"|\xff"`, "", false, ""},
		{`{"i|\xffd":1}`, "", true, ""},
		{`{"a":{"c|\xedty":"x"}}`, "a", true, ""},
		{`{"a":{"ok":1,"b|\xc3\x28":1}}`, "a", true, ""},
		{`{"tr\u0061its":{"n":"|\xff"}}`, "traits.n", false, ""},
		{`{"a.b":{"":"|\xff"}}`, "a.b.", false, ""},
		{`{"a":"|\xff","b":"\xfe"}`, "a", false, ""},
		{`{"a":"|\xed\xa0\x80"}`, "a", false, ""}, // an encoded surrogate
		{`{"a":"|\xc0\xaf"}`, "a", false, ""},     // an overlong encoding
		{`{"a":"x|\ud800"}`, "a", false, `\ud800`},
		{`{"a":"|\uDC00x"}`, "a", false, `\uDC00`},
		{`{"a":"|\ud83d\u0041"}`, "a", false, `\ud83d`},
		{`{"a":"|\ud83d\ud83d\ude00"}`, "a", false, `\ud83d`},
		{`{"a":"ok\ud83d\ude00|\xff"}`, "a", false, ""},
		{` [ 1 , { "k" : [ "|\xff" ] } ] `, "[1].k[0]", false, ""},
	} {
		doc := jsonscantest.Bin(strings.Replace(tt.doc, "|", "", 1))
		want := InvalidText{Path: tt.path, Key: tt.key, Offset: strings.Index(jsonscantest.Bin(tt.doc), "|"), Escape: tt.escape}
		if got, found := FindInvalidText([]byte(doc)); !found || got != want {
			t.Errorf("FindInvalidText(%q) = %+v, %v; want %+v", doc, got, found, want)
		}
	}
	for _, doc := range []string{
		`{"id":"café","type":"中文","traits":{"e":"\u00e9","s":"\ud83d\ude00","r":"\uFFFD"}}`,
		`{"id":"a\\ud800"}`,         // an escaped backslash, then plain text
		`{"id":"\"\\\/\b\f\n\r\t"}`, // every short escape
		`{"id":"\xef\xbf\xbd"}`,     // U+FFFD sent as such is text
		`[1, -2.5e3, true, false, null, {}, []]`,
		// Not JSON: encoding/json reports the syntax error.
		`{"id":"\xff"`, `{"id":"\xff",}`, `{"id":"\xff"} x`, `{"id":"\xff\q"}`, `{"id":"\xff\u12"}`, "{\"id\":\"\xff\t\"}", `{"id":\xff}`,
	} {
		if got, found := FindInvalidText([]byte(jsonscantest.Bin(doc))); found {
			t.Errorf("FindInvalidText(%q) = %+v, want none", jsonscantest.Bin(doc), got)
		}
	}
}

// refInvalidText is FindInvalidText's reference on valid JSON, written
// another way: the string tokens found by a regular expression, their
// escapes by another, invalid bytes by utf8.DecodeRune.
func refInvalidText(b []byte) (offset int, escape string) {
	for _, tok := range stringToken.FindAllIndex(b, -1) {
		from, to := tok[0]+1, tok[1]-1
		offset = -1
		for i := from; i < to; {
			r, size := utf8.DecodeRune(b[i:to])
			if r == utf8.RuneError && size == 1 {
				offset = i
				break
			}
			i += size
		}
		highAt := -1
		for _, e := range escapeToken.FindAllSubmatchIndex(b[from:to], -1) {
			at := from + e[0]
			if offset >= 0 && at > offset {
				break
			}
			var u uint64 = 0x41 // a short escape
			if e[2] >= 0 {
				u, _ = strconv.ParseUint(string(b[from+e[2]:from+e[3]]), 16, 16)
			}
			low := u >= 0xdc00 && u < 0xe000
			if highAt >= 0 && low && at == highAt+6 {
				highAt = -1
				continue
			}
			if highAt >= 0 {
				return highAt, string(b[highAt : highAt+6])
			}
			if low {
				return at, string(b[at : at+6])
			}
			if u >= 0xd800 && u < 0xdc00 {
				highAt = at
			}
		}
		if highAt >= 0 && (offset < 0 || highAt < offset) {
			return highAt, string(b[highAt : highAt+6])
		}
		if offset >= 0 {
			return offset, ""
		}
	}
	return -1, ""
}

var (
	stringToken = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)
	escapeToken = regexp.MustCompile(`\\(?:u([0-9a-fA-F]{4})|.)`)
)

// TestFindInvalidTextRandom compares FindInvalidText with refInvalidText
// on generated objects with odd strings (invalid bytes, escapes,
// surrogates), some with a byte changed.
func TestFindInvalidTextRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 14))
	n, invalid := 20000, 0
	if testing.Short() || raceEnabled {
		n = 2000
	}
	for i := 0; i < n; i++ {
		b := []byte(`{"id":` + jsonscantest.String(rng, true) + `,"traits":` + jsonscantest.Value(rng, 3, true) + "}")
		if rng.IntN(6) == 0 {
			b[rng.IntN(len(b))] = `{}[],:"\ 0a-.e`[rng.IntN(14)]
		}
		if !json.Valid(b) {
			if got, found := FindInvalidText(b); found {
				t.Fatalf("FindInvalidText(%q) = %+v on invalid JSON, want none", b, got)
			}
			continue
		}
		off, esc := refInvalidText(b)
		got, found := FindInvalidText(b)
		if off < 0 {
			if found {
				t.Fatalf("FindInvalidText(%q) = %+v, the reference finds nothing", b, got)
			}
			continue
		}
		invalid++
		if !found || got.Offset != off || got.Escape != esc {
			t.Fatalf("FindInvalidText(%q) = %+v, %v; the reference says byte %d %q", b, got, found, off, esc)
		}
	}
	if invalid < n/10 {
		t.Fatalf("only %d of %d documents had invalid text: the test does not test much", invalid, n)
	}
}
