package schemas

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/rolodex/rolodex/internal/jsonscan"
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
// the syntax of every byte it passes over, as encoding/json does (with a
// strict jsonscan.Scanner, which also gives up beyond 200 levels of
// nesting). Whenever
// encoding/json could decide differently or fail (a field name in another
// case or escaped, a repeated field, a value of the wrong type, a syntax
// error, very deep nesting), it gives up and the caller runs encoding/json:
// it never reports an error itself, so the errors are encoding/json's.
//
// Strings without escapes and with valid UTF-8 are taken as they are;
// others are decoded by encoding/json. A string (anywhere in b) that is
// not Unicode text, which encoding/json would change into U+FFFD, makes it
// give up too: the caller reports it (CheckJSONText).

// rawEventFields lists the JSON field names of an event, in the order of
// the bits of decodeFast's seen mask.
var rawEventFields = [...]string{"id", "type", "time", "source", "identifiers", "traits", "properties"}

// decodeFast decodes b into r and reports true, or leaves r alone and
// reports false.
func (r *RawEvent) decodeFast(b []byte) bool {
	var d fastDecoder
	d.Reset(b, true) // strict: a string that is not Unicode text fails it
	d.Space()
	ev, ok := d.event()
	if !ok {
		return false
	}
	d.Space()
	if d.Pos() != len(b) {
		return false
	}
	*r = ev
	return true
}

// DecodeRawEventArray decodes a JSON array of events in one pass: what
// jsonscan.SplitArray(array) and DecodeRawEventJSON of each element give,
// when every element is an event the fast path of DecodeRawEventJSON takes
// (see decodeFast). It returns the events and, for each, its element: the
// bytes it has in array, not copied, as SplitArray returns them. The events
// themselves share no memory with array (their text is in one copy of it).
//
// It reports ok=false, and nothing else, for anything else: an empty array,
// more than maxEvents elements, an element the fast path does not take, or
// any syntax error. The caller then splits and decodes the array element by
// element, which gives the same events or the errors.
func DecodeRawEventArray(array []byte, maxEvents int) (events []RawEvent, elems [][]byte, ok bool) {
	var d fastDecoder
	events, elems, ok = d.array(array, maxEvents, nil, nil)
	if !ok {
		return nil, nil, false
	}
	return events, elems, true
}

// RawEventBuffer decodes arrays of events as DecodeRawEventArray does, and
// reuses the maps (identifiers, traits, properties) and slices of the
// events it decoded before: the events and elements of one Decode are
// valid until the next Decode. The zero value is ready to use; it is not
// safe for concurrent use (keep one per request, in a sync.Pool).
type RawEventBuffer struct {
	events []RawEvent
	elems  [][]byte
	spare  spareMaps
}

// spareMaps are emptied maps of earlier events, for the next ones.
type spareMaps struct {
	ids []map[string][]string
	raw []map[string]json.RawMessage
}

// maxSpareMapLen: a map that held more entries is not kept for reuse, so
// a buffer in a pool does not hold on to large maps.
const maxSpareMapLen = 8

// Decode is DecodeRawEventArray, with the buffer's maps and slices.
func (b *RawEventBuffer) Decode(array []byte, maxEvents int) (events []RawEvent, elems [][]byte, ok bool) {
	b.recycle()
	d := fastDecoder{spare: &b.spare}
	// The events decoded before a failure are kept, for their maps.
	b.events, b.elems, ok = d.array(array, maxEvents, b.events, b.elems)
	if !ok {
		return nil, nil, false
	}
	return b.events, b.elems, true
}

// recycle empties the events of the last Decode and keeps their maps.
func (b *RawEventBuffer) recycle() {
	for i := range b.events {
		ev := &b.events[i]
		if m := ev.Identifiers; m != nil && len(m) <= maxSpareMapLen {
			clear(m)
			b.spare.ids = append(b.spare.ids, m)
		}
		for _, m := range [2]map[string]json.RawMessage{ev.Traits, ev.Properties} {
			if m != nil && len(m) <= maxSpareMapLen {
				clear(m)
				b.spare.raw = append(b.spare.raw, m)
			}
		}
		*ev = RawEvent{}
	}
	clear(b.elems)
	b.events, b.elems = b.events[:0], b.elems[:0]
}

// array decodes the array of events b into events and elems (appending),
// and returns them with ok=false if it declines (see DecodeRawEventArray).
func (d *fastDecoder) array(array []byte, maxEvents int, events []RawEvent, elems [][]byte) ([]RawEvent, [][]byte, bool) {
	d.Reset(array, true)
	d.Space()
	if !d.Next('[') {
		return events, elems, false
	}
	d.Space()
	if d.At(']') {
		return events, elems, false
	}
	for {
		if len(events) == maxEvents {
			return events, elems, false
		}
		start := d.Pos()
		ev, ok := d.event()
		if !ok {
			return events, elems, false
		}
		if cap(events) == 0 {
			// Room for as many events as the array holds if they are the
			// size of the first.
			n := min(maxEvents, len(array)/max(1, d.Pos()-start)+1)
			events, elems = make([]RawEvent, 0, n), make([][]byte, 0, n)
		}
		events = append(events, ev)
		elems = append(elems, array[start:d.Pos():d.Pos()])
		d.Space()
		if d.Next(',') {
			d.Space()
			continue
		}
		if d.Next(']') {
			break
		}
		return events, elems, false
	}
	d.Space()
	return events, elems, d.Pos() == len(array)
}

// event decodes the event object at the position.
func (d *fastDecoder) event() (RawEvent, bool) {
	var (
		ev   RawEvent
		seen uint
	)
	if !d.Next('{') {
		return ev, false
	}
	d.Space()
	if d.Next('}') {
		return ev, true
	}
	for {
		key, ok := d.plainKey()
		if !ok {
			return ev, false
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
					return ev, false
				}
			}
		} else if seen&(1<<field) != 0 {
			return ev, false
		} else {
			seen |= 1 << field
		}
		d.Space()
		if !d.Next(':') {
			return ev, false
		}
		d.Space()
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
			ok = d.Skip(1)
		}
		if !ok {
			return ev, false
		}
		d.Space()
		if d.Next(',') {
			d.Space()
			continue
		}
		if d.Next('}') {
			return ev, true
		}
		return ev, false
	}
}

// fastDecoder turns tokens into values without copying each one: decoded
// strings are substrings of one copy of the input, raw values subslices of
// another.
type fastDecoder struct {
	jsonscan.Scanner
	str   string // copy of b, made on first use
	raw   []byte // copy of b, made on first use
	vals  []string
	spare *spareMaps // maps to reuse, or nil
}

// idMap returns an empty map for identifiers.
func (d *fastDecoder) idMap() map[string][]string {
	if s := d.spare; s != nil && len(s.ids) > 0 {
		m := s.ids[len(s.ids)-1]
		s.ids = s.ids[:len(s.ids)-1]
		return m
	}
	return make(map[string][]string, 4)
}

// rawValueMap returns an empty map for traits or properties.
func (d *fastDecoder) rawValueMap() map[string]json.RawMessage {
	if s := d.spare; s != nil && len(s.raw) > 0 {
		m := s.raw[len(s.raw)-1]
		s.raw = s.raw[:len(s.raw)-1]
		return m
	}
	return make(map[string]json.RawMessage, 4)
}

func (d *fastDecoder) text(start, end int) string {
	if d.str == "" {
		d.str = string(d.Input())
	}
	return d.str[start:end]
}

func (d *fastDecoder) rawText(start, end int) json.RawMessage {
	if d.raw == nil {
		d.raw = bytes.Clone(d.Input())
	}
	return d.raw[start:end:end]
}

// string decodes the string token at the position.
func (d *fastDecoder) string() (string, bool) {
	start := d.Pos()
	plain, ok := d.ScanString()
	if !ok {
		return "", false
	}
	end := d.Pos()
	if plain {
		return d.text(start+1, end-1), true
	}
	var s string
	if json.Unmarshal(d.Input()[start:end], &s) != nil {
		return "", false
	}
	return s, true
}

// plainKey reads an object key made of ASCII without escapes; other keys
// (which encoding/json may fold to a field name) make decodeFast give up.
func (d *fastDecoder) plainKey() (string, bool) {
	start, end, ok := d.ScanASCIIString()
	if !ok {
		return "", false
	}
	return d.text(start, end), true
}

// id decodes the id: a string, a number (its literal text) or null ("").
func (d *fastDecoder) id(dst *string) bool {
	c, ok := d.Peek()
	if !ok {
		return false
	}
	switch {
	case c == '"':
		s, ok := d.string()
		*dst = s
		return ok
	case c == 'n':
		return d.Literal("null")
	case c == '-' || (c >= '0' && c <= '9'):
		start := d.Pos()
		if !d.Number() {
			return false
		}
		*dst = d.text(start, d.Pos())
		return true
	}
	return false
}

// optString decodes a string field; null leaves it empty.
func (d *fastDecoder) optString(dst *string) bool {
	if d.At('n') {
		return d.Literal("null")
	}
	if !d.At('"') {
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
	if d.At('n') {
		return d.Literal("null")
	}
	if !d.Next('{') {
		return false
	}
	d.Space()
	if d.Next('}') {
		return true
	}
	m := d.idMap()
	for {
		if !d.At('"') {
			return false
		}
		key, ok := d.string()
		if !ok {
			return false
		}
		d.Space()
		if !d.Next(':') {
			return false
		}
		d.Space()
		c, ok := d.Peek()
		if !ok {
			return false
		}
		var vals []string
		switch {
		case c == '"':
			s, ok := d.string()
			if !ok {
				return false
			}
			vals = d.one(s)
		case c == 'n':
			if !d.Literal("null") {
				return false
			}
		case c == '-' || (c >= '0' && c <= '9'):
			start := d.Pos()
			if !d.Number() {
				return false
			}
			vals = d.one(d.text(start, d.Pos()))
		case c == '[':
			if vals, ok = d.stringList(); !ok {
				return false
			}
		default:
			return false
		}
		m[key] = vals
		d.Space()
		if d.Next(',') {
			d.Space()
			continue
		}
		if d.Next('}') {
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
	d.Next('[') // the caller saw it
	d.Space()
	l := []string{}
	if d.Next(']') {
		return l, true
	}
	for {
		c, ok := d.Peek()
		if !ok {
			return nil, false
		}
		switch c {
		case '"':
			s, ok := d.string()
			if !ok {
				return nil, false
			}
			l = append(l, s)
		case 'n':
			if !d.Literal("null") {
				return nil, false
			}
			l = append(l, "")
		default:
			return nil, false
		}
		d.Space()
		if d.Next(',') {
			d.Space()
			continue
		}
		if d.Next(']') {
			return l, true
		}
		return nil, false
	}
}

// rawMap decodes an object of raw JSON values (or null). An empty object
// decodes as an empty map, as encoding/json does.
func (d *fastDecoder) rawMap(dst *map[string]json.RawMessage) bool {
	if d.At('n') {
		return d.Literal("null")
	}
	if !d.Next('{') {
		return false
	}
	d.Space()
	m := d.rawValueMap()
	if d.Next('}') {
		*dst = m
		return true
	}
	for {
		if !d.At('"') {
			return false
		}
		key, ok := d.string()
		if !ok {
			return false
		}
		d.Space()
		if !d.Next(':') {
			return false
		}
		d.Space()
		start := d.Pos()
		if !d.Skip(2) {
			return false
		}
		m[key] = d.rawText(start, d.Pos())
		d.Space()
		if d.Next(',') {
			d.Space()
			continue
		}
		if d.Next('}') {
			*dst = m
			return true
		}
		return false
	}
}
