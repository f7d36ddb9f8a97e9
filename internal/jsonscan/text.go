package jsonscan

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
	"unicode/utf8"
)

// InvalidText is where a JSON document has text that is not Unicode: a
// string with invalid UTF-8, or with a \u escape of half a UTF-16
// surrogate pair (which decoding would replace with U+FFFD).
type InvalidText struct {
	// Path is where the string is in the document: object keys joined by
	// dots, array indexes in brackets ("identifiers.email[1]",
	// "[1].id"); "" at the top level. For an object key, it is the path of
	// the key's object.
	Path string
	// Key reports that the string is an object key.
	Key bool
	// Offset is the position of the first invalid byte (of the escape's
	// backslash) from the start of the document.
	Offset int
	// Escape is the \u escape at Offset, when that is what is invalid.
	Escape string
}

// FindInvalidText returns the first string of the JSON document b, key or
// value in document order, that is not Unicode text: invalid UTF-8, or a
// \u escape of half a surrogate pair. It reports false when there is none,
// and when b is not valid JSON.
func FindInvalidText(b []byte) (InvalidText, bool) {
	if utf8.Valid(b) && bytes.IndexByte(b, '\\') < 0 {
		return InvalidText{}, false
	}
	w := textWalker{Scanner: Scanner{b: b}}
	w.Space()
	ok := w.value(0)
	w.Space()
	if !ok || w.i != len(b) || !w.found {
		return InvalidText{}, false
	}
	return w.bad, true
}

// maxTextDepth is encoding/json's nesting limit: a deeper document is an
// error of its own.
const maxTextDepth = 10000

// textWalker walks a JSON document, checking its syntax, and keeps where
// the first string that is not Unicode text is.
type textWalker struct {
	Scanner
	path  []pathSeg
	bad   InvalidText
	found bool
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
				if !w.At('"') || !w.str(true) {
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
	return w.Skip(1) // a literal or a number: no text
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

// fail records invalid text at off, unless some came before.
func (w *textWalker) fail(off int, key bool, escape string) {
	if w.found {
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
	w.bad = InvalidText{Path: p.String(), Key: key, Offset: off, Escape: escape}
	w.found = true
}
