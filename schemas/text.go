package schemas

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"unicode/utf8"

	"github.com/rolodex/rolodex/internal/jsonscan"
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
	bad, found := jsonscan.FindInvalidText(b)
	if !found {
		return nil
	}
	field := bad.Path
	switch {
	case bad.Key && field == "":
		field = "a key of the top-level object"
	case bad.Key:
		field = "a key in " + field
	case field == "":
		field = "the top-level string"
	}
	return &InvalidUTF8Error{Field: field, Offset: bad.Offset, InDocument: true, Escape: bad.Escape}
}
