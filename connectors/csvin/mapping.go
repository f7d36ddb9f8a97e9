package csvin

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/rolodex/rolodex/intake"
	"github.com/rolodex/rolodex/normalize"
	"github.com/rolodex/rolodex/schemas"
)

// Field is one mapped column: the identifier type, trait or property name it
// feeds, and the header name of the column.
type Field struct {
	Name   string
	Column string
}

// Mapping says which CSV column feeds which field of an event. Column names
// are header names. ID, Type, Time and Source are empty when not mapped.
type Mapping struct {
	ID     string
	Type   string
	Time   string
	Source string
	// Identifiers may name one type several times (two email columns).
	Identifiers []Field
	Traits      []Field
	Properties  []Field
}

const targetHelp = "id, type, time, source, an identifier type (email, phone, user_id, anonymous_id, whatsapp, facebook, external:<name>), traits.<name> or properties.<name>"

// ParseMapping parses a mapping written as comma-separated target=Column
// pairs, e.g. "email=E-mail,phone=Phone,traits.name=Full name". Targets are
// id, type, time, source, an identifier type (email, phone, user_id,
// anonymous_id, whatsapp, facebook, external:<name>), traits.<name> and
// properties.<name>. Spaces around targets and columns are ignored. At
// least one identifier target is required.
func ParseMapping(spec string) (*Mapping, error) {
	if strings.TrimSpace(spec) == "" {
		return nil, errors.New("csvin: mapping is empty; write target=Column pairs separated by commas, e.g. email=Email,phone=Phone")
	}
	// A zero-config normalizer only to check identifier type names: Type
	// does not depend on the config.
	norm, err := normalize.New(normalize.Config{})
	if err != nil {
		return nil, fmt.Errorf("csvin: %w", err)
	}
	m := &Mapping{}
	seen := map[string]string{} // target -> column, for duplicates
	for _, pair := range strings.Split(spec, ",") {
		if strings.TrimSpace(pair) == "" {
			continue
		}
		target, column, ok := strings.Cut(pair, "=")
		target, column = strings.TrimSpace(target), strings.TrimSpace(column)
		switch {
		case !ok:
			return nil, fmt.Errorf("csvin: mapping: %q is not target=Column", strings.TrimSpace(pair))
		case target == "":
			return nil, fmt.Errorf("csvin: mapping: %q has no target before '='", strings.TrimSpace(pair))
		case column == "":
			return nil, fmt.Errorf("csvin: mapping: %q has no column after '='", strings.TrimSpace(pair))
		}
		lower := strings.ToLower(target)
		key := lower // what may be mapped only once
		switch {
		case lower == "id":
			m.ID = column
		case lower == "type":
			m.Type = column
		case lower == "time":
			m.Time = column
		case lower == "source":
			m.Source = column
		case strings.HasPrefix(lower, "traits."):
			name := strings.TrimSpace(target[len("traits."):])
			if name == "" {
				return nil, fmt.Errorf("csvin: mapping: %q: a trait needs a name (traits.<name>)", target)
			}
			key = "traits." + name
			m.Traits = append(m.Traits, Field{Name: name, Column: column})
		case strings.HasPrefix(lower, "properties."):
			name := strings.TrimSpace(target[len("properties."):])
			if name == "" {
				return nil, fmt.Errorf("csvin: mapping: %q: a property needs a name (properties.<name>)", target)
			}
			key = "properties." + name
			m.Properties = append(m.Properties, Field{Name: name, Column: column})
		default:
			typ, err := norm.Type(target)
			if err != nil {
				return nil, fmt.Errorf("csvin: mapping: unknown target %q: want %s", target, targetHelp)
			}
			// One identifier type may take several columns; the same pair
			// twice is a mistake.
			key = typ + "=" + column
			m.Identifiers = append(m.Identifiers, Field{Name: typ, Column: column})
		}
		if prev, dup := seen[key]; dup {
			return nil, fmt.Errorf("csvin: mapping: target %q is mapped twice (to %q and %q)", target, prev, column)
		}
		seen[key] = column
	}
	if len(m.Identifiers) == 0 {
		return nil, errors.New("csvin: mapping has no identifier column: map at least one of email, phone, user_id, anonymous_id, whatsapp, facebook or external:<name> (e.g. email=Email)")
	}
	if len(m.Identifiers) > intake.MaxIdentifiers {
		return nil, fmt.Errorf("csvin: mapping has %d identifier columns, at most %d are allowed", len(m.Identifiers), intake.MaxIdentifiers)
	}
	if n := len(m.Traits) + len(m.Properties); n > intake.MaxFields {
		return nil, fmt.Errorf("csvin: mapping has %d trait and property columns, at most %d are allowed", n, intake.MaxFields)
	}
	return m, nil
}

// String writes the mapping back in the form ParseMapping reads.
func (m *Mapping) String() string {
	var parts []string
	add := func(target, column string) {
		if column != "" {
			parts = append(parts, target+"="+column)
		}
	}
	add("id", m.ID)
	add("type", m.Type)
	add("time", m.Time)
	add("source", m.Source)
	for _, f := range m.Identifiers {
		add(f.Name, f.Column)
	}
	for _, f := range m.Traits {
		add("traits."+f.Name, f.Column)
	}
	for _, f := range m.Properties {
		add("properties."+f.Name, f.Column)
	}
	return strings.Join(parts, ",")
}

// col is a mapped field bound to a column index.
type col struct {
	name  string
	index int
}

// binding is a Mapping resolved against one file's header.
type binding struct {
	width                 int // columns in the header
	id, typ, time, source int // -1 when not mapped
	ids                   []col
	traits, props         []col
	// idColumns names the identifier columns, for the "all empty" message.
	idColumns string
	// header is the file's header; mapped lists the indexes of the mapped
	// columns, ascending.
	header []string
	mapped []int
}

// bind resolves the mapping's column names against header. A name matches
// its column exactly (ignoring surrounding spaces), or else
// case-insensitively when exactly one column matches that way.
func (m *Mapping) bind(header []string) (*binding, error) {
	exact := make(map[string][]int, len(header))
	for i, h := range header {
		h = strings.TrimSpace(h)
		exact[h] = append(exact[h], i)
	}
	var missing []string
	find := func(target, column string) int {
		idx := exact[column]
		if len(idx) == 0 {
			for i, h := range header {
				if strings.EqualFold(strings.TrimSpace(h), column) {
					idx = append(idx, i)
				}
			}
		}
		switch len(idx) {
		case 1:
			return idx[0]
		case 0:
			missing = append(missing, fmt.Sprintf("column %q (for %s) is not in the header", column, target))
		default:
			missing = append(missing, fmt.Sprintf("column %q (for %s) appears %d times in the header", column, target, len(idx)))
		}
		return -1
	}
	opt := func(target, column string) int {
		if column == "" {
			return -1
		}
		return find(target, column)
	}
	b := &binding{
		width:  len(header),
		id:     opt("id", m.ID),
		typ:    opt("type", m.Type),
		time:   opt("time", m.Time),
		source: opt("source", m.Source),
	}
	var idNames []string
	for _, f := range m.Identifiers {
		b.ids = append(b.ids, col{f.Name, find(f.Name, f.Column)})
		idNames = append(idNames, f.Column)
	}
	b.idColumns = strings.Join(idNames, ", ")
	for _, f := range m.Traits {
		b.traits = append(b.traits, col{f.Name, find("traits."+f.Name, f.Column)})
	}
	for _, f := range m.Properties {
		b.props = append(b.props, col{f.Name, find("properties."+f.Name, f.Column)})
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("the header does not match the mapping: %s; the header has %s",
			strings.Join(missing, "; "), describeHeader(header))
	}
	b.header = header
	for _, i := range []int{b.id, b.typ, b.time, b.source} {
		if i >= 0 {
			b.mapped = append(b.mapped, i)
		}
	}
	for _, cols := range [][]col{b.ids, b.traits, b.props} {
		for _, c := range cols {
			b.mapped = append(b.mapped, c.index)
		}
	}
	slices.Sort(b.mapped)
	b.mapped = slices.Compact(b.mapped)
	return b, nil
}

func describeHeader(header []string) string {
	const show = 30
	q := make([]string, 0, min(len(header), show))
	for i, h := range header {
		if i == show {
			break
		}
		q = append(q, fmt.Sprintf("%q", h))
	}
	s := strings.Join(q, ", ")
	if len(header) > show {
		s += fmt.Sprintf(" and %d more", len(header)-show)
	}
	return s
}

// converter turns rows into raw events. It is not safe for concurrent use.
type converter struct {
	b           *binding
	defaultType string
	// idPrefix is hashed before every row's fields for the deterministic id:
	// the partner and the file's base name.
	idPrefix []byte
	h        hash.Hash
	sum      []byte
	buf      []byte
}

func newConverter(b *binding, defaultType, partner, fileBase string) *converter {
	c := &converter{b: b, defaultType: defaultType, h: sha256.New()}
	c.idPrefix = appendField(c.idPrefix, partner)
	c.idPrefix = appendField(c.idPrefix, fileBase)
	return c
}

// appendField appends s length-prefixed, so that no two field lists hash
// the same bytes.
func appendField(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

// rowID is the deterministic id of a row without an id column:
// "csv:" + the first 32 hex digits of SHA-256 over the partner, the file's
// base name and the row's fields. Importing the same file again yields the
// same ids, which the dedupe stage drops; identical rows share one id.
func (c *converter) rowID(rec []string) string {
	c.h.Reset()
	c.buf = append(c.buf[:0], c.idPrefix...)
	c.buf = binary.AppendUvarint(c.buf, uint64(len(rec)))
	for _, f := range rec {
		c.buf = appendField(c.buf, f)
	}
	c.h.Write(c.buf)
	c.sum = c.h.Sum(c.sum[:0])
	return "csv:" + hex.EncodeToString(c.sum[:16])
}

// convert turns one row into a raw event, or rejects a row whose identifier
// cells are all empty, or whose mapped cells are not all valid UTF-8
// (normalising or JSON-encoding them would replace the invalid bytes).
func (c *converter) convert(rec []string) (*schemas.RawEvent, *intake.Rejection) {
	b := c.b
	for _, i := range b.mapped {
		if !utf8.ValidString(rec[i]) {
			err := schemas.CheckUTF8(fmt.Sprintf("column %q", b.header[i]), rec[i])
			return nil, &intake.Rejection{Reason: intake.ReasonInvalidUTF8, Message: err.Error()}
		}
	}
	raw := &schemas.RawEvent{}
	if b.id >= 0 {
		raw.ID = rec[b.id]
	} else {
		raw.ID = c.rowID(rec)
	}
	if b.typ >= 0 {
		raw.Type = strings.TrimSpace(rec[b.typ])
	}
	if raw.Type == "" {
		raw.Type = c.defaultType
	}
	if b.time >= 0 {
		raw.Time = rec[b.time]
	}
	if b.source >= 0 {
		raw.Source = rec[b.source]
	}
	for _, f := range b.ids {
		v := rec[f.index]
		if strings.TrimSpace(v) == "" {
			continue
		}
		if raw.Identifiers == nil {
			raw.Identifiers = make(map[string][]string, len(b.ids))
		}
		raw.Identifiers[f.name] = append(raw.Identifiers[f.name], v)
	}
	if len(raw.Identifiers) == 0 {
		return nil, &intake.Rejection{Reason: intake.ReasonNoIdentifiers,
			Message: fmt.Sprintf("row has no identifier: column(s) %s empty", b.idColumns)}
	}
	raw.Traits = jsonCells(rec, b.traits)
	raw.Properties = jsonCells(rec, b.props)
	return raw, nil
}

// jsonCells maps each non-empty cell of cols to its text as a JSON string.
// Cells are trimmed of surrounding spaces.
func jsonCells(rec []string, cols []col) map[string]json.RawMessage {
	var out map[string]json.RawMessage
	for _, f := range cols {
		v := strings.TrimSpace(rec[f.index])
		if v == "" {
			continue
		}
		if out == nil {
			out = make(map[string]json.RawMessage, len(cols))
		}
		out[f.name] = appendJSONString(nil, v)
	}
	return out
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string. Unlike encoding/json it
// leaves <, > and & alone; invalid UTF-8 becomes U+FFFD.
func appendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				dst = append(dst, '\\', c)
			case c == '\n':
				dst = append(dst, '\\', 'n')
			case c == '\r':
				dst = append(dst, '\\', 'r')
			case c == '\t':
				dst = append(dst, '\\', 't')
			case c < 0x20 || c == 0x7f:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			default:
				dst = append(dst, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, `\ufffd`...)
		} else {
			dst = append(dst, s[i:i+size]...)
		}
		i += size
	}
	return append(dst, '"')
}
