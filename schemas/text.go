package schemas

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Text must be Unicode. Decoding replaces invalid UTF-8, and a JSON \u
// escape of half a UTF-16 surrogate pair, with U+FFFD: "nu\xff@x.com"
// would become another address, and two ids that differ only in their
// invalid bytes would become one. So every decoder of events rejects such
// text instead, with an *InvalidUTF8Error saying where it is.

// InvalidUTF8Error reports text that is not valid UTF-8, or a JSON \u
// escape of half a surrogate pair, and where its first invalid byte is.
type InvalidUTF8Error struct {
	// Field names the text: a path into the JSON document ("id",
	// "identifiers.email[1]", "data.traits.name"; "a key in traits" for an
	// object key), or what the caller named it (a CSV column).
	Field string
	// Offset is the position of the first invalid byte (of the escape's
	// backslash): from the start of the JSON document when InDocument, else
	// from the start of the field's text.
	Offset     int
	InDocument bool
	// Escape is the \u escape at Offset, when that is what is invalid.
	Escape string
}

func (e *InvalidUTF8Error) Error() string {
	where := fmt.Sprintf("byte %d of %s", e.Offset, e.Field)
	if e.InDocument {
		where = fmt.Sprintf("byte %d (in %s)", e.Offset, e.Field)
	}
	if e.Escape != "" {
		return fmt.Sprintf("invalid Unicode at %s: %s is half of a UTF-16 surrogate pair, not a character", where, e.Escape)
	}
	return "invalid UTF-8 at " + where
}

// CheckUTF8 returns an *InvalidUTF8Error naming field when s is not valid
// UTF-8, and nil when it is.
func CheckUTF8(field, s string) error {
	if utf8.ValidString(s) {
		return nil
	}
	return &InvalidUTF8Error{Field: field, Offset: firstInvalid(s)}
}

// firstInvalid returns the offset of the first byte of s that does not
// start a valid UTF-8 sequence, or -1.
func firstInvalid(s string) int {
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			return i
		}
		i += size
	}
	return -1
}

// CheckUTF8 returns an *InvalidUTF8Error for the first of the event's texts
// that is not valid UTF-8: id, type, time, source, identifier types and
// values, trait and property names and values (in that order, names in
// sorted order). Offsets count from the start of the text.
func (r *RawEvent) CheckUTF8() error {
	if r.validText() {
		return nil
	}
	for _, f := range [...]struct{ name, s string }{{"id", r.ID}, {"type", r.Type}, {"time", r.Time}, {"source", r.Source}} {
		if err := CheckUTF8(f.name, f.s); err != nil {
			return err
		}
	}
	for _, typ := range slices.Sorted(maps.Keys(r.Identifiers)) {
		if err := CheckUTF8("a key in identifiers", typ); err != nil {
			return err
		}
		for i, v := range r.Identifiers[typ] {
			if err := CheckUTF8(fmt.Sprintf("identifiers.%s[%d]", typ, i), v); err != nil {
				return err
			}
		}
	}
	for _, m := range [...]struct {
		name string
		m    map[string]json.RawMessage
	}{{"traits", r.Traits}, {"properties", r.Properties}} {
		for _, k := range slices.Sorted(maps.Keys(m.m)) {
			if err := CheckUTF8("a key in "+m.name, k); err != nil {
				return err
			}
			if err := CheckUTF8(m.name+"."+k, string(m.m[k])); err != nil {
				return err
			}
		}
	}
	return nil // not reached: validText found invalid text
}

// validText reports whether every text of r is valid UTF-8, without
// allocating.
func (r *RawEvent) validText() bool {
	if !utf8.ValidString(r.ID) || !utf8.ValidString(r.Type) || !utf8.ValidString(r.Time) || !utf8.ValidString(r.Source) {
		return false
	}
	for typ, vals := range r.Identifiers {
		if !utf8.ValidString(typ) {
			return false
		}
		for _, v := range vals {
			if !utf8.ValidString(v) {
				return false
			}
		}
	}
	for _, m := range [...]map[string]json.RawMessage{r.Traits, r.Properties} {
		for k, v := range m {
			if !utf8.ValidString(k) || !utf8.Valid(v) {
				return false
			}
		}
	}
	return true
}

// CheckJSONText returns an *InvalidUTF8Error (InDocument) for the first
// string of the JSON document b, key or value in document order, that is
// not Unicode: invalid UTF-8, or a \u escape of half a surrogate pair. It
// returns nil when there is none, and when b is not valid JSON:
// encoding/json then says what is wrong, as it would first.
func CheckJSONText(b []byte) error {
	if utf8.Valid(b) && bytes.IndexByte(b, '\\') < 0 {
		return nil
	}
	w := textWalker{jsonScanner: jsonScanner{b: b}}
	w.space()
	ok := w.value(0)
	w.space()
	if !ok || w.i != len(b) || w.bad == nil {
		return nil
	}
	return w.bad
}

// maxTextDepth is encoding/json's nesting limit: a deeper document is an
// error of its own.
const maxTextDepth = 10000

// textWalker walks a JSON document, checking its syntax, and keeps where
// the first string that is not Unicode text is.
type textWalker struct {
	jsonScanner
	path []pathSeg
	bad  *InvalidUTF8Error
}

// pathSeg is an object key (b[from:to], the key's token) or an array index.
type pathSeg struct {
	from, to int
	index    int
}

// value moves past one value and reports false at a syntax error.
func (w *textWalker) value(depth int) bool {
	if w.i >= len(w.b) {
		return false
	}
	switch c := w.b[w.i]; c {
	case '"':
		return w.str(false)
	case '{', '[':
		if depth >= maxTextDepth {
			return false
		}
		closing, empty := w.open()
		if empty {
			return true
		}
		for n := 0; ; n++ {
			seg := pathSeg{index: n}
			if c == '{' {
				seg.from = w.i
				if !w.atString() || !w.str(true) {
					return false
				}
				seg.to = w.i
				if !w.colon() {
					return false
				}
			}
			w.path = append(w.path, seg)
			if !w.value(depth + 1) {
				return false
			}
			w.path = w.path[:len(w.path)-1]
			if more, ok := w.member(closing); !more {
				return ok
			}
		}
	}
	return w.skip(1) // a literal or a number: no text
}

// str moves past the string at w.i; key says it is an object key.
func (w *textWalker) str(key bool) bool {
	for i := w.i + 1; i < len(w.b); {
		c := w.b[i]
		switch {
		case c == '"':
			w.i = i + 1
			return true
		case c < 0x20:
			return false
		case c == '\\':
			if i+1 >= len(w.b) {
				return false
			}
			switch w.b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
				continue
			case 'u':
			default:
				return false
			}
			u, ok := hex4(w.b, i+2)
			if !ok {
				return false
			}
			switch {
			case u >= 0xd800 && u < 0xdc00: // must be followed by the low half
				if lo, ok := hex4(w.b, i+8); ok && w.b[i+6] == '\\' && w.b[i+7] == 'u' && lo >= 0xdc00 && lo < 0xe000 {
					i += 12
					continue
				}
				w.fail(i, key, string(w.b[i:i+6]))
			case u >= 0xdc00 && u < 0xe000:
				w.fail(i, key, string(w.b[i:i+6]))
			}
			i += 6
		case c < utf8.RuneSelf:
			i++
		default:
			r, size := utf8.DecodeRune(w.b[i:])
			if r == utf8.RuneError && size == 1 {
				w.fail(i, key, "")
			}
			i += size
		}
	}
	return false
}

// hex4 reads the four hex digits at b[i:], as a \u escape has them.
func hex4(b []byte, i int) (rune, bool) {
	if i+4 > len(b) {
		return 0, false
	}
	var r rune
	for _, h := range b[i : i+4] {
		var d byte
		switch {
		case h >= '0' && h <= '9':
			d = h - '0'
		case h >= 'a' && h <= 'f':
			d = h - 'a' + 10
		case h >= 'A' && h <= 'F':
			d = h - 'A' + 10
		default:
			return 0, false
		}
		r = r<<4 | rune(d)
	}
	return r, true
}

// fail records invalid text at off, unless some came before.
func (w *textWalker) fail(off int, key bool, escape string) {
	if w.bad != nil {
		return
	}
	var p strings.Builder
	for _, seg := range w.path {
		if seg.to == 0 {
			p.WriteString("[" + strconv.Itoa(seg.index) + "]")
			continue
		}
		var k string
		if json.Unmarshal(w.b[seg.from:seg.to], &k) != nil {
			k = string(w.b[seg.from+1 : seg.to-1])
		}
		if p.Len() > 0 {
			p.WriteByte('.')
		}
		p.WriteString(k)
	}
	field := p.String()
	switch {
	case key && field == "":
		field = "a key of the top-level object"
	case key:
		field = "a key in " + field
	case field == "":
		field = "the top-level string"
	}
	w.bad = &InvalidUTF8Error{Field: field, Offset: off, InDocument: true, Escape: escape}
}
