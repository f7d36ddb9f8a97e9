// Package jsonscan checks and walks JSON text in one pass, without
// decoding it: whether a value is compact (IsCompact), the elements of an
// array (SplitArray), the first string that is not Unicode text
// (FindInvalidText), and a Scanner for decoders of their own that check the
// syntax of every byte they pass over, as encoding/json does.
package jsonscan

import (
	"encoding/json"
	"unicode/utf8"
)

// maxDepth bounds the nesting Skip follows: a deeper value fails it, and
// callers leave it to encoding/json (which allows 10000 levels).
const maxDepth = 200

// Scanner checks JSON syntax as encoding/json's scanner does (RFC 8259;
// any byte from 0x80 up is accepted inside strings). It moves through its
// input token by token; each method moves past what it checks and reports
// whether it was there and well formed. Where a method reports false, the
// position is unspecified unless its documentation says otherwise. The
// zero Scanner has no input; Reset gives it one.
type Scanner struct {
	b []byte
	i int
	// spaced records that Space skipped white space.
	spaced bool
	// strict fails every string that is not Unicode text: invalid UTF-8,
	// or a \u escape of half a surrogate pair.
	strict bool
}

// Reset puts s at the start of b. A strict scanner's ScanString (and so
// Skip) fails every string that is not Unicode text: invalid UTF-8, or a
// \u escape of half a UTF-16 surrogate pair.
//
// It sets the fields in place: a decoder that embeds a Scanner starts it
// without copying one.
func (s *Scanner) Reset(b []byte, strict bool) {
	s.b, s.i, s.spaced, s.strict = b, 0, false, strict
}

// Input returns the scanner's input.
func (s *Scanner) Input() []byte { return s.b }

// Pos returns the position of the scanner in its input.
func (s *Scanner) Pos() int { return s.i }

// Peek returns the byte at the position; ok is false at the end of the
// input.
func (s *Scanner) Peek() (c byte, ok bool) {
	if s.i < len(s.b) {
		return s.b[s.i], true
	}
	return 0, false
}

// At reports whether c is the byte at the position.
func (s *Scanner) At(c byte) bool { return s.i < len(s.b) && s.b[s.i] == c }

// Space moves past white space.
func (s *Scanner) Space() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
			s.spaced = true
		default:
			return
		}
	}
}

// Next moves past c if it is the next byte.
func (s *Scanner) Next(c byte) bool {
	if s.i < len(s.b) && s.b[s.i] == c {
		s.i++
		return true
	}
	return false
}

// Literal moves past lit if it comes next.
func (s *Scanner) Literal(lit string) bool {
	if len(s.b)-s.i >= len(lit) && string(s.b[s.i:s.i+len(lit)]) == lit {
		s.i += len(lit)
		return true
	}
	return false
}

// ScanString moves past the string token at the position (its opening
// quote). plain reports a string without escapes whose bytes are valid
// UTF-8: its text is what stands between its quotes.
func (s *Scanner) ScanString() (plain, ok bool) {
	start := s.i + 1
	ascii, escaped := true, false
	for i := start; i < len(s.b); i++ {
		c := s.b[i]
		switch {
		case c == '"':
			s.i = i + 1
			if ascii || (escaped && !s.strict) {
				return !escaped, true
			}
			valid := utf8.Valid(s.b[start:i])
			return valid && !escaped, valid || !s.strict
		case c < 0x20:
			return false, false
		case c == '\\':
			escaped = true
			i++
			if i >= len(s.b) {
				return false, false
			}
			switch s.b[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if i+4 >= len(s.b) {
					return false, false
				}
				for _, h := range s.b[i+1 : i+5] {
					if !isHex(h) {
						return false, false
					}
				}
				if s.strict && (s.b[i+1]|0x20) == 'd' && s.b[i+2] >= '8' {
					// A surrogate: only the high half followed by the low
					// half is a character.
					hi, _ := hex4(s.b, i+1)
					lo, ok := hex4(s.b, i+7)
					if hi >= 0xdc00 || !ok || s.b[i+5] != '\\' || s.b[i+6] != 'u' || lo < 0xdc00 || lo >= 0xe000 {
						return false, false
					}
					i += 6
				}
				i += 4
			default:
				return false, false
			}
		case c >= utf8.RuneSelf:
			ascii = false
		}
	}
	return false, false
}

// ScanASCIIString moves past the string token at the position when it is
// made of ASCII without escapes, and returns where its text is in the
// input: Input()[start:end]. At any other token it reports false and stays
// where it is. It is written to fit the compiler's inlining budget (go
// build -gcflags=-m): decoders call it for every object key.
func (s *Scanner) ScanASCIIString() (start, end int, ok bool) {
	if s.i >= len(s.b) || s.b[s.i] != '"' {
		return 0, 0, false
	}
	for i := s.i + 1; i < len(s.b); i++ {
		c := s.b[i]
		if c == '"' {
			start, s.i = s.i+1, i+1
			return start, i, true
		}
		if c < 0x20 || c == '\\' || c >= utf8.RuneSelf {
			break
		}
	}
	return 0, 0, false
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

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

// Number moves past a number token: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func (s *Scanner) Number() bool {
	b, i := s.b, s.i
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i >= len(b):
		return false
	case b[i] == '0':
		i++
	case b[i] >= '1' && b[i] <= '9':
		for i < len(b) && isDigit(b[i]) {
			i++
		}
	default:
		return false
	}
	if i < len(b) && b[i] == '.' {
		i++
		if i >= len(b) || !isDigit(b[i]) {
			return false
		}
		for i < len(b) && isDigit(b[i]) {
			i++
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i >= len(b) || !isDigit(b[i]) {
			return false
		}
		for i < len(b) && isDigit(b[i]) {
			i++
		}
	}
	s.i = i
	return true
}

// open moves past the '{' or '[' at s.i and the white space after it, and
// returns the byte that closes it; empty reports that it did at once.
func (s *Scanner) open() (closing byte, empty bool) {
	closing = '}'
	if s.b[s.i] == '[' {
		closing = ']'
	}
	s.i++
	s.Space()
	return closing, s.Next(closing)
}

// colon moves past the ':' after an object key, and the white space around
// it.
func (s *Scanner) colon() bool {
	s.Space()
	if !s.Next(':') {
		return false
	}
	s.Space()
	return true
}

// member moves past what ends a member of a container that closing closes:
// a ',' (more) or closing itself; ok is false at anything else.
func (s *Scanner) member(closing byte) (more, ok bool) {
	s.Space()
	if s.Next(',') {
		s.Space()
		return true, true
	}
	return false, s.Next(closing)
}

// Skip moves past one value, checking its syntax; depth is the value's
// nesting depth (1 at the top level), and a value nested deeper than 200
// levels fails it. The byte after the value is left to the caller (it must
// be a delimiter).
func (s *Scanner) Skip(depth int) bool {
	if s.i >= len(s.b) {
		return false
	}
	switch c := s.b[s.i]; {
	case c == '"':
		_, ok := s.ScanString()
		return ok
	case c == '{', c == '[':
		if depth >= maxDepth {
			return false
		}
		closing, empty := s.open()
		if empty {
			return true
		}
		for {
			if c == '{' {
				if !s.At('"') {
					return false
				}
				if _, ok := s.ScanString(); !ok || !s.colon() {
					return false
				}
			}
			if !s.Skip(depth + 1) {
				return false
			}
			if more, ok := s.member(closing); !more {
				return ok
			}
		}
	case c == 't':
		return s.Literal("true")
	case c == 'f':
		return s.Literal("false")
	case c == 'n':
		return s.Literal("null")
	case c == '-' || isDigit(c):
		return s.Number()
	}
	return false
}

// IsCompact reports whether b is one JSON value without insignificant
// white space: json.Valid(b) holds and json.Compact would return b as it
// is. It checks b in one pass; for a value nested deeper than encoding/json
// allows, or nearly as deep, it may report false. Like ScanASCIIString, it
// fits the inlining budget.
func IsCompact(b []byte) bool {
	s := Scanner{b: b}
	return s.Skip(1) && s.i == len(b) && !s.spaced
}

// SplitArray returns the elements of the JSON array b, each as the bytes
// it has in b (not copied). It accepts and rejects what json.Unmarshal
// into a []json.RawMessage does, with the same errors, but checks a
// well-formed array in one pass without copying.
func SplitArray(b []byte) ([][]byte, error) {
	if elems, ok := splitArray(b); ok {
		return elems, nil
	}
	var raw []json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil || raw == nil {
		return nil, err
	}
	elems := make([][]byte, len(raw))
	for i, e := range raw {
		elems[i] = e
	}
	return elems, nil
}

func splitArray(b []byte) ([][]byte, bool) {
	s := Scanner{b: b}
	s.Space()
	if !s.Next('[') {
		return nil, false
	}
	s.Space()
	elems := make([][]byte, 0, 16)
	if !s.Next(']') {
		for {
			start := s.i
			if !s.Skip(1) {
				return nil, false
			}
			elems = append(elems, b[start:s.i:s.i])
			s.Space()
			if s.Next(',') {
				s.Space()
				continue
			}
			if s.Next(']') {
				break
			}
			return nil, false
		}
	}
	s.Space()
	return elems, s.i == len(b)
}
