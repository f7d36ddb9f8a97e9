package schemas

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// RawEvent is an event as a partner sends it, before validation: the JSON
// contract of docs/events.md.
type RawEvent struct {
	ID     string
	Type   string
	Time   string
	Source string
	// Identifiers maps an identifier type to its values; in JSON a value may
	// be one string or an array of strings.
	Identifiers map[string][]string
	Traits      map[string]json.RawMessage
	Properties  map[string]json.RawMessage
}

type rawEventJSON struct {
	ID          json.RawMessage            `json:"id"`
	Type        string                     `json:"type"`
	Time        string                     `json:"time"`
	Source      string                     `json:"source"`
	Identifiers map[string]stringOrList    `json:"identifiers"`
	Traits      map[string]json.RawMessage `json:"traits"`
	Properties  map[string]json.RawMessage `json:"properties"`
}

type stringOrList []string

func (s *stringOrList) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case len(b) > 0 && b[0] == '[':
		var l []string
		if err := json.Unmarshal(b, &l); err != nil {
			return errors.New("an identifier must be a string or an array of strings")
		}
		*s = l
	case len(b) > 0 && b[0] == '"':
		var v string
		if err := json.Unmarshal(b, &v); err != nil {
			return err
		}
		*s = []string{v}
	case bytes.Equal(b, []byte("null")):
		*s = nil
	default:
		// Numbers are accepted as their literal text (phones sent as numbers).
		var n json.Number
		if err := json.Unmarshal(b, &n); err != nil {
			return errors.New("an identifier must be a string or an array of strings")
		}
		*s = []string{n.String()}
	}
	return nil
}

// UnmarshalJSON decodes the JSON form of an event. A numeric id is accepted
// as its literal text.
//
// Plain events take a fast path (see decodeFast); anything else, and every
// error, goes through encoding/json as before (unmarshalJSONSlow).
//
// Text that is not Unicode (see CheckJSONText) is an *InvalidUTF8Error.
func (r *RawEvent) UnmarshalJSON(b []byte) error {
	if r.decodeFast(b) {
		return nil
	}
	if err := CheckJSONText(b); err != nil {
		return err
	}
	return r.unmarshalJSONSlow(b)
}

// DecodeRawEventJSON decodes one event from its JSON form. It returns what
// json.Unmarshal(b, &ev) returns for a new RawEvent ev, with the same
// errors, but decodes a plain event in a single pass over b. The event
// does not share memory with b. Text that is not Unicode (see
// CheckJSONText) is an *InvalidUTF8Error.
func DecodeRawEventJSON(b []byte) (*RawEvent, error) {
	ev := new(RawEvent)
	if ev.decodeFast(b) {
		return ev, nil
	}
	if err := CheckJSONText(b); err != nil {
		return nil, err
	}
	if err := json.Unmarshal(b, ev); err != nil {
		return nil, err
	}
	return ev, nil
}

// unmarshalJSONSlow is the encoding/json decoding of an event, the
// reference for decodeFast.
func (r *RawEvent) unmarshalJSONSlow(b []byte) error {
	var j rawEventJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	id, err := idText(j.ID)
	if err != nil {
		return err
	}
	*r = RawEvent{ID: id, Type: j.Type, Time: j.Time, Source: j.Source,
		Traits: j.Traits, Properties: j.Properties}
	if len(j.Identifiers) > 0 {
		r.Identifiers = make(map[string][]string, len(j.Identifiers))
		for k, v := range j.Identifiers {
			r.Identifiers[k] = v
		}
	}
	return nil
}

// MarshalJSON encodes the event in its JSON contract form.
func (r RawEvent) MarshalJSON() ([]byte, error) {
	type out struct {
		ID          string                     `json:"id"`
		Type        string                     `json:"type"`
		Time        string                     `json:"time,omitempty"`
		Source      string                     `json:"source,omitempty"`
		Identifiers map[string][]string        `json:"identifiers"`
		Traits      map[string]json.RawMessage `json:"traits,omitempty"`
		Properties  map[string]json.RawMessage `json:"properties,omitempty"`
	}
	return json.Marshal(out{r.ID, r.Type, r.Time, r.Source, r.Identifiers, r.Traits, r.Properties})
}

func idText(b json.RawMessage) (string, error) {
	b = bytes.TrimSpace(b)
	if len(b) == 0 || bytes.Equal(b, []byte("null")) {
		return "", nil
	}
	if b[0] == '"' {
		var s string
		err := json.Unmarshal(b, &s)
		return s, err
	}
	var n json.Number
	if err := json.Unmarshal(b, &n); err != nil {
		return "", fmt.Errorf("id must be a string or a number")
	}
	return n.String(), nil
}

// The fast path of the JSON decoding.
//
// decodeFast decodes the common shape of an event in one pass: an object
// whose keys are the field names as documented (lowercase, each at most
// once), with string or numeric ids, string, numeric or string-array
// identifier values, and any JSON as trait and property values. It checks
// the syntax of every byte it passes over, as encoding/json does. Whenever
// encoding/json could decide differently or fail (a field name in another
// case or escaped, a repeated field, a value of the wrong type, a syntax
// error, very deep nesting), it gives up and the caller runs encoding/json:
// it never reports an error itself, so the errors are encoding/json's.
//
// Strings without escapes and with valid UTF-8 are taken as they are;
// others are decoded by encoding/json. A string (anywhere in b) that is
// not Unicode text, which encoding/json would change into U+FFFD, makes it
// give up too: the caller reports it (CheckJSONText).

// maxFastDepth bounds the nesting decodeFast follows (encoding/json allows
// 10000 levels); deeper values go to encoding/json.
const maxFastDepth = 200

// rawEventFields lists the JSON field names of an event, in the order of
// the bits of decodeFast's seen mask.
var rawEventFields = [...]string{"id", "type", "time", "source", "identifiers", "traits", "properties"}

// decodeFast decodes b into r and reports true, or leaves r alone and
// reports false.
func (r *RawEvent) decodeFast(b []byte) bool {
	d := fastDecoder{jsonScanner: jsonScanner{b: b, strict: true}}
	d.space()
	if !d.next('{') {
		return false
	}
	var (
		ev   RawEvent
		seen uint
	)
	d.space()
	if !d.next('}') {
		for {
			key, ok := d.plainKey()
			if !ok {
				return false
			}
			field := -1
			for i, name := range rawEventFields {
				if key == name {
					field = i
					break
				}
			}
			if field < 0 {
				// encoding/json matches field names case-insensitively.
				for _, name := range rawEventFields {
					if strings.EqualFold(key, name) {
						return false
					}
				}
			} else if seen&(1<<field) != 0 {
				return false
			} else {
				seen |= 1 << field
			}
			d.space()
			if !d.next(':') {
				return false
			}
			d.space()
			switch field {
			case 0:
				ok = d.id(&ev.ID)
			case 1:
				ok = d.optString(&ev.Type)
			case 2:
				ok = d.optString(&ev.Time)
			case 3:
				ok = d.optString(&ev.Source)
			case 4:
				ok = d.identifiers(&ev.Identifiers)
			case 5:
				ok = d.rawMap(&ev.Traits)
			case 6:
				ok = d.rawMap(&ev.Properties)
			default:
				ok = d.skip(1)
			}
			if !ok {
				return false
			}
			d.space()
			if d.next(',') {
				d.space()
				continue
			}
			if d.next('}') {
				break
			}
			return false
		}
	}
	d.space()
	if d.i != len(b) {
		return false
	}
	*r = ev
	return true
}

// fastDecoder turns tokens into values without copying each one: decoded
// strings are substrings of one copy of the input, raw values subslices of
// another.
type fastDecoder struct {
	jsonScanner
	str  string // copy of b, made on first use
	raw  []byte // copy of b, made on first use
	vals []string
}

func (d *fastDecoder) text(start, end int) string {
	if d.str == "" {
		d.str = string(d.b)
	}
	return d.str[start:end]
}

func (d *fastDecoder) rawText(start, end int) json.RawMessage {
	if d.raw == nil {
		d.raw = bytes.Clone(d.b)
	}
	return d.raw[start:end:end]
}

// string decodes the string token at d.i.
func (d *fastDecoder) string() (string, bool) {
	start := d.i
	plain, ok := d.scanString()
	if !ok {
		return "", false
	}
	if plain {
		return d.text(start+1, d.i-1), true
	}
	var s string
	if json.Unmarshal(d.b[start:d.i], &s) != nil {
		return "", false
	}
	return s, true
}

// plainKey reads an object key made of ASCII without escapes; other keys
// (which encoding/json may fold to a field name) make decodeFast give up.
func (d *fastDecoder) plainKey() (string, bool) {
	if d.i >= len(d.b) || d.b[d.i] != '"' {
		return "", false
	}
	start := d.i
	for i := start + 1; i < len(d.b); i++ {
		switch c := d.b[i]; {
		case c == '"':
			d.i = i + 1
			return d.text(start+1, i), true
		case c < 0x20 || c == '\\' || c >= utf8.RuneSelf:
			return "", false
		}
	}
	return "", false
}

// id decodes the id: a string, a number (its literal text) or null ("").
func (d *fastDecoder) id(dst *string) bool {
	if d.i >= len(d.b) {
		return false
	}
	switch c := d.b[d.i]; {
	case c == '"':
		s, ok := d.string()
		*dst = s
		return ok
	case c == 'n':
		return d.literal("null")
	case c == '-' || (c >= '0' && c <= '9'):
		start := d.i
		if !d.number() {
			return false
		}
		*dst = d.text(start, d.i)
		return true
	}
	return false
}

// optString decodes a string field; null leaves it empty.
func (d *fastDecoder) optString(dst *string) bool {
	if d.i < len(d.b) && d.b[d.i] == 'n' {
		return d.literal("null")
	}
	if d.i >= len(d.b) || d.b[d.i] != '"' {
		return false
	}
	s, ok := d.string()
	*dst = s
	return ok
}

// identifiers decodes the identifiers object (or null). Each value is a
// string, a number (its literal text), null (no values) or an array of
// strings and nulls (""), as stringOrList decodes them. An empty object
// decodes as nil, as unmarshalJSONSlow leaves it.
func (d *fastDecoder) identifiers(dst *map[string][]string) bool {
	if d.i < len(d.b) && d.b[d.i] == 'n' {
		return d.literal("null")
	}
	if !d.next('{') {
		return false
	}
	d.space()
	if d.next('}') {
		return true
	}
	m := make(map[string][]string, 4)
	for {
		if d.i >= len(d.b) || d.b[d.i] != '"' {
			return false
		}
		key, ok := d.string()
		if !ok {
			return false
		}
		d.space()
		if !d.next(':') {
			return false
		}
		d.space()
		if d.i >= len(d.b) {
			return false
		}
		var vals []string
		switch c := d.b[d.i]; {
		case c == '"':
			s, ok := d.string()
			if !ok {
				return false
			}
			vals = d.one(s)
		case c == 'n':
			if !d.literal("null") {
				return false
			}
		case c == '-' || (c >= '0' && c <= '9'):
			start := d.i
			if !d.number() {
				return false
			}
			vals = d.one(d.text(start, d.i))
		case c == '[':
			if vals, ok = d.stringList(); !ok {
				return false
			}
		default:
			return false
		}
		m[key] = vals
		d.space()
		if d.next(',') {
			d.space()
			continue
		}
		if d.next('}') {
			break
		}
		return false
	}
	if len(m) > 0 {
		*dst = m
	}
	return true
}

// one returns []string{s}, carved from a shared backing array (capacity 1,
// so an append copies).
func (d *fastDecoder) one(s string) []string {
	if len(d.vals) == cap(d.vals) {
		d.vals = make([]string, 0, 4)
	}
	d.vals = append(d.vals, s)
	n := len(d.vals)
	return d.vals[n-1 : n : n]
}

// stringList decodes an array of strings; a null element is "".
func (d *fastDecoder) stringList() ([]string, bool) {
	d.i++ // '['
	d.space()
	l := []string{}
	if d.next(']') {
		return l, true
	}
	for {
		if d.i >= len(d.b) {
			return nil, false
		}
		switch d.b[d.i] {
		case '"':
			s, ok := d.string()
			if !ok {
				return nil, false
			}
			l = append(l, s)
		case 'n':
			if !d.literal("null") {
				return nil, false
			}
			l = append(l, "")
		default:
			return nil, false
		}
		d.space()
		if d.next(',') {
			d.space()
			continue
		}
		if d.next(']') {
			return l, true
		}
		return nil, false
	}
}

// rawMap decodes an object of raw JSON values (or null). An empty object
// decodes as an empty map, as encoding/json does.
func (d *fastDecoder) rawMap(dst *map[string]json.RawMessage) bool {
	if d.i < len(d.b) && d.b[d.i] == 'n' {
		return d.literal("null")
	}
	if !d.next('{') {
		return false
	}
	d.space()
	m := make(map[string]json.RawMessage, 4)
	if d.next('}') {
		*dst = m
		return true
	}
	for {
		if d.i >= len(d.b) || d.b[d.i] != '"' {
			return false
		}
		key, ok := d.string()
		if !ok {
			return false
		}
		d.space()
		if !d.next(':') {
			return false
		}
		d.space()
		start := d.i
		if !d.skip(2) {
			return false
		}
		m[key] = d.rawText(start, d.i)
		d.space()
		if d.next(',') {
			d.space()
			continue
		}
		if d.next('}') {
			*dst = m
			return true
		}
		return false
	}
}

// jsonScanner checks JSON syntax as encoding/json's scanner does (RFC 8259;
// any byte from 0x80 up is accepted inside strings).
type jsonScanner struct {
	b []byte
	i int
	// spaced records that space skipped white space.
	spaced bool
	// strict fails every string that is not Unicode text: invalid UTF-8,
	// or a \u escape of half a surrogate pair.
	strict bool
}

func (s *jsonScanner) space() {
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

// next consumes c if it is the next byte.
func (s *jsonScanner) next(c byte) bool {
	if s.i < len(s.b) && s.b[s.i] == c {
		s.i++
		return true
	}
	return false
}

func (s *jsonScanner) literal(lit string) bool {
	if len(s.b)-s.i >= len(lit) && string(s.b[s.i:s.i+len(lit)]) == lit {
		s.i += len(lit)
		return true
	}
	return false
}

// scanString moves past the string token at s.i. plain reports a string
// without escapes whose bytes are valid UTF-8: its text is its content.
func (s *jsonScanner) scanString() (plain, ok bool) {
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

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// number moves past a number token: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func (s *jsonScanner) number() bool {
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
func (s *jsonScanner) open() (closing byte, empty bool) {
	closing = '}'
	if s.b[s.i] == '[' {
		closing = ']'
	}
	s.i++
	s.space()
	return closing, s.next(closing)
}

// atString reports whether a string token starts at s.i.
func (s *jsonScanner) atString() bool { return s.i < len(s.b) && s.b[s.i] == '"' }

// colon moves past the ':' after an object key, and the white space around
// it.
func (s *jsonScanner) colon() bool {
	s.space()
	if !s.next(':') {
		return false
	}
	s.space()
	return true
}

// member moves past what ends a member of a container that closing closes:
// a ',' (more) or closing itself; ok is false at anything else.
func (s *jsonScanner) member(closing byte) (more, ok bool) {
	s.space()
	if s.next(',') {
		s.space()
		return true, true
	}
	return false, s.next(closing)
}

// skip moves past one value at nesting depth depth, checking its syntax.
// The byte after it is left to the caller (it must be a delimiter).
func (s *jsonScanner) skip(depth int) bool {
	if s.i >= len(s.b) {
		return false
	}
	switch c := s.b[s.i]; {
	case c == '"':
		_, ok := s.scanString()
		return ok
	case c == '{', c == '[':
		if depth >= maxFastDepth {
			return false
		}
		closing, empty := s.open()
		if empty {
			return true
		}
		for {
			if c == '{' {
				if !s.atString() {
					return false
				}
				if _, ok := s.scanString(); !ok || !s.colon() {
					return false
				}
			}
			if !s.skip(depth + 1) {
				return false
			}
			if more, ok := s.member(closing); !more {
				return ok
			}
		}
	case c == 't':
		return s.literal("true")
	case c == 'f':
		return s.literal("false")
	case c == 'n':
		return s.literal("null")
	case c == '-' || isDigit(c):
		return s.number()
	}
	return false
}

// IsCompactJSON reports whether b is one JSON value without insignificant
// white space: json.Valid(b) holds and json.Compact would return b as it
// is. It checks b in one pass; for a value nested deeper than encoding/json
// allows, or nearly as deep, it may report false.
func IsCompactJSON(b []byte) bool {
	s := jsonScanner{b: b}
	return s.skip(1) && s.i == len(b) && !s.spaced
}

// SplitJSONArray returns the elements of the JSON array b, each as the
// bytes it has in b (not copied). It accepts and rejects what
// json.Unmarshal into a []json.RawMessage does, with the same errors, but
// checks a well-formed array in one pass without copying.
func SplitJSONArray(b []byte) ([][]byte, error) {
	if elems, ok := splitJSONArray(b); ok {
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

func splitJSONArray(b []byte) ([][]byte, bool) {
	s := jsonScanner{b: b}
	s.space()
	if !s.next('[') {
		return nil, false
	}
	s.space()
	elems := make([][]byte, 0, 16)
	if !s.next(']') {
		for {
			start := s.i
			if !s.skip(1) {
				return nil, false
			}
			elems = append(elems, b[start:s.i:s.i])
			s.space()
			if s.next(',') {
				s.space()
				continue
			}
			if s.next(']') {
				break
			}
			return nil, false
		}
	}
	s.space()
	return elems, s.i == len(b)
}
