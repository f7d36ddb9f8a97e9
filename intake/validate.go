// Package ingest is what every ingest connector (HTTP, Kafka, CSV) shares:
// turning a partner's raw event into an accepted, normalised event or a
// rejection with a reason, and publishing both to Kafka.
package intake

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/rolodex/rolodex/internal/jsonscan"
	"github.com/rolodex/rolodex/normalize"
	"github.com/rolodex/rolodex/partners"
	"github.com/rolodex/rolodex/schemas"
)

// Rejection reasons. They label metrics and dead letters.
const (
	ReasonInvalidJSON       = "invalid_json"
	ReasonInvalidUTF8       = "invalid_utf8"
	ReasonInvalidAvro       = "invalid_avro"
	ReasonMissingID         = "missing_id"
	ReasonInvalidID         = "invalid_id"
	ReasonMissingType       = "missing_type"
	ReasonInvalidType       = "invalid_type"
	ReasonInvalidTime       = "invalid_time"
	ReasonNoIdentifiers     = "no_identifiers"
	ReasonUnknownIDType     = "unknown_identifier_type"
	ReasonNoValidIdentifier = "no_valid_identifier"
	ReasonTooManyFields     = "too_many_fields"
	ReasonInvalidCloudEvent = "invalid_cloudevent"
	ReasonMapping           = "mapping_failed"
	ReasonUnknownPartner    = "unknown_partner"
	ReasonInvalidCSV        = "invalid_csv"
	ReasonEncodeFailed      = "encode_failed"
	// ReasonInvalidStatusEvent (intake/status.go): a reserved event type
	// without the properties it needs.
	// ReasonInvalidMessageEvent (intake/message.go): a reserved message
	// event without a valid message_id, channel or bounce.
)

// Rejection says why an event was not accepted.
type Rejection struct {
	Reason  string `json:"reason"`
	Message string `json:"message"`
}

func (r *Rejection) Error() string { return r.Reason + ": " + r.Message }

func reject(reason, format string, args ...any) *Rejection {
	return &Rejection{Reason: reason, Message: fmt.Sprintf(format, args...)}
}

// DecodeFailed is the rejection of a record that could not be decoded into
// an event, for reason, or for ReasonInvalidUTF8 when err is (or wraps) an
// *schemas.InvalidUTF8Error.
func DecodeFailed(reason string, err error) *Rejection {
	var ie *schemas.InvalidUTF8Error
	if errors.As(err, &ie) {
		reason = ReasonInvalidUTF8
	}
	return &Rejection{Reason: reason, Message: err.Error()}
}

// Limits bound what one event may carry.
const (
	MaxIDLen       = 256
	MaxTypeLen     = 128
	MaxFields      = 256 // traits + properties
	MaxIdentifiers = 64
	MaxFutureSkew  = 24 * time.Hour
)

// Validator checks and normalises raw events. It is safe for concurrent use.
type Validator struct {
	norm *normalize.Normalizer
}

// NewValidator returns a validator normalising identifiers with norm.
func NewValidator(norm *normalize.Normalizer) *Validator { return &Validator{norm: norm} }

// Validate turns raw into an accepted event for partner p, or says why not.
// received is the time the event reached Rolodex; it is the event time when
// raw has none. Identifiers whose values are invalid or blocked are dropped;
// dropped lists them. If none is left the event is rejected.
//
// Text that is not valid UTF-8 rejects the event (ReasonInvalidUTF8): the
// decoders reject it already, this catches any other way in. Each text is
// checked where the loops below pass it anyway.
func (v *Validator) Validate(p *partners.Partner, raw *schemas.RawEvent, received time.Time) (ev *schemas.Event, dropped []*normalize.Error, rej *Rejection) {
	return v.validate(nil, p, raw, received)
}

// ValidateReusing is Validate, with the memory of events released to buf
// before (an event, its identifiers, its traits and properties maps). The
// result is the same.
func (v *Validator) ValidateReusing(buf *EventBuffer, p *partners.Partner, raw *schemas.RawEvent, received time.Time) (ev *schemas.Event, dropped []*normalize.Error, rej *Rejection) {
	return v.validate(buf, p, raw, received)
}

// EventBuffer holds events that are done with, emptied, for the next
// validations to fill (Validator.ValidateReusing). The zero value is
// ready to use; it is not safe for concurrent use (keep one per request,
// in a sync.Pool).
type EventBuffer struct {
	events []*schemas.Event
	maps   []map[string]string
}

// maxSpareMapLen: a larger map is not kept, so a pooled buffer holds on
// to no large map.
const maxSpareMapLen = 8

// Release hands evs to b: nothing may use them afterwards. Their maps,
// identifiers and the events themselves are reused by the next
// validations.
func (b *EventBuffer) Release(evs []*schemas.Event) {
	for _, ev := range evs {
		for _, m := range [2]map[string]string{ev.Traits, ev.Properties} {
			if m != nil && len(m) <= maxSpareMapLen {
				clear(m)
				b.maps = append(b.maps, m)
			}
		}
		ids := ev.Identifiers[:cap(ev.Identifiers)]
		clear(ids)
		*ev = schemas.Event{Identifiers: ids[:0]}
		b.events = append(b.events, ev)
	}
}

// event returns an empty event, with room for n identifiers.
func (b *EventBuffer) event(n int) *schemas.Event {
	if b != nil && len(b.events) > 0 {
		ev := b.events[len(b.events)-1]
		b.events = b.events[:len(b.events)-1]
		if cap(ev.Identifiers) < n {
			ev.Identifiers = make([]schemas.Identifier, 0, n)
		}
		return ev
	}
	return &schemas.Event{Identifiers: make([]schemas.Identifier, 0, n)}
}

// stringMap returns an empty map.
func (b *EventBuffer) stringMap(n int) map[string]string {
	if b != nil && len(b.maps) > 0 {
		m := b.maps[len(b.maps)-1]
		b.maps = b.maps[:len(b.maps)-1]
		return m
	}
	return make(map[string]string, n)
}

func (v *Validator) validate(buf *EventBuffer, p *partners.Partner, raw *schemas.RawEvent, received time.Time) (ev *schemas.Event, dropped []*normalize.Error, rej *Rejection) {
	if !utf8.ValidString(raw.ID) || !utf8.ValidString(raw.Type) || !utf8.ValidString(raw.Time) || !utf8.ValidString(raw.Source) {
		return nil, nil, invalidText(raw)
	}
	id := strings.TrimSpace(raw.ID)
	switch {
	case id == "":
		return nil, nil, reject(ReasonMissingID, "the event has no id")
	case len(id) > MaxIDLen:
		return nil, nil, reject(ReasonInvalidID, "the id must be at most %d bytes", MaxIDLen)
	}
	typ := strings.TrimSpace(raw.Type)
	switch {
	case typ == "":
		return nil, nil, reject(ReasonMissingType, "event %q has no type", id)
	case !ValidTypeName(typ):
		return nil, nil, reject(ReasonInvalidType, "event %q: type %q must be 1-%d letters, digits, '.', '_', '-' or ':'", id, typ, MaxTypeLen)
	}
	received = received.UTC().Truncate(time.Millisecond)
	t := received
	if s := strings.TrimSpace(raw.Time); s != "" {
		parsed, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return nil, nil, reject(ReasonInvalidTime, "event %q: time %q is not RFC 3339 (e.g. 2026-11-22T10:00:00Z)", id, s)
		}
		if parsed.After(received.Add(MaxFutureSkew)) {
			return nil, nil, reject(ReasonInvalidTime, "event %q: time %s is more than %s in the future", id, s, MaxFutureSkew)
		}
		t = parsed.UTC().Truncate(time.Millisecond)
	}
	if len(raw.Identifiers) == 0 {
		return nil, nil, reject(ReasonNoIdentifiers, "event %q has no identifiers; send at least one of email, phone, user_id, anonymous_id, whatsapp, facebook or external:<name>", id)
	}
	if len(raw.Traits)+len(raw.Properties) > MaxFields {
		return nil, nil, reject(ReasonTooManyFields, "event %q has more than %d traits and properties", id, MaxFields)
	}
	// The event is filled in at the end; it is taken now for its room
	// for identifiers. A rejected event goes back to buf (nothing of it
	// escapes: the rejection's messages are strings of their own).
	out := buf.event(len(raw.Identifiers))
	ids := out.Identifiers
	defer func() {
		if rej != nil && buf != nil {
			out.Identifiers = ids
			buf.Release([]*schemas.Event{out})
		}
	}()
	for rt, values := range raw.Identifiers {
		if !utf8.ValidString(rt) {
			return nil, nil, invalidText(raw)
		}
		nt, err := v.norm.Type(rt)
		if err != nil {
			return nil, nil, reject(ReasonUnknownIDType, "event %q: identifier type %q is unknown; use email, phone, user_id, anonymous_id, whatsapp, facebook or external:<name>", id, rt)
		}
		for _, val := range values {
			if !utf8.ValidString(val) {
				return nil, nil, invalidText(raw)
			}
			nv, err := v.norm.Identifier(nt, val)
			if err != nil {
				if ne, ok := err.(*normalize.Error); ok {
					dropped = append(dropped, ne)
				} else {
					dropped = append(dropped, &normalize.Error{Type: nt, Value: val, Reason: "invalid", Message: err.Error()})
				}
				continue
			}
			ids = append(ids, schemas.Identifier{Type: nt, Value: nv})
		}
	}
	if len(ids) == 0 {
		msgs := make([]string, len(dropped))
		for i, d := range dropped {
			msgs[i] = d.Message
		}
		sort.Strings(msgs)
		if len(msgs) == 0 {
			msgs = []string{"every identifier value is empty"}
		}
		return nil, dropped, reject(ReasonNoValidIdentifier, "event %q has no valid identifier: %s", id, strings.Join(msgs, "; "))
	}
	schemas.SortIdentifiers(ids)
	ids = dedupeSorted(ids)
	if len(ids) > MaxIdentifiers {
		return nil, nil, reject(ReasonTooManyFields, "event %q has more than %d identifiers", id, MaxIdentifiers)
	}
	source := strings.TrimSpace(raw.Source)
	if source == "" {
		source = p.Name
	}
	traits, err := buf.jsonValues(raw.Traits)
	if err == errInvalidText {
		return nil, nil, invalidText(raw)
	}
	if err != nil {
		return nil, nil, reject(ReasonInvalidJSON, "event %q: trait %s", id, err)
	}
	props, err := buf.jsonValues(raw.Properties)
	if err == errInvalidText {
		return nil, nil, invalidText(raw)
	}
	if err != nil {
		return nil, nil, reject(ReasonInvalidJSON, "event %q: property %s", id, err)
	}
	if schemas.IsStatusEvent(typ) {
		if props == nil {
			props = map[string]string{}
		}
		if rej := v.checkStatus(id, typ, props); rej != nil {
			return nil, nil, rej
		}
		if len(props) == 0 {
			props = nil
		}
	}
	if schemas.IsMessageEvent(typ) {
		if rej := checkMessage(id, typ, props); rej != nil {
			return nil, nil, rej
		}
	}
	*out = schemas.Event{
		Tenant:      p.Tenant,
		ID:          id,
		Type:        typ,
		Time:        t,
		Source:      source,
		Partner:     p.Name,
		Identifiers: ids,
		Traits:      traits,
		Properties:  props,
		ReceivedAt:  received,
	}
	return out, dropped, nil
}

// ValidTypeName reports whether s is a valid event type: 1 to MaxTypeLen
// letters, digits, '.', '_', '-' or ':'.
func ValidTypeName(s string) bool {
	if s == "" || len(s) > MaxTypeLen {
		return false
	}
	for _, c := range s {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '_', c == '-', c == ':':
		default:
			return false
		}
	}
	return true
}

func dedupeSorted(ids []schemas.Identifier) []schemas.Identifier {
	out := ids[:1]
	for _, id := range ids[1:] {
		if id != out[len(out)-1] {
			out = append(out, id)
		}
	}
	return out
}

// invalidText rejects raw, which has text that is not valid UTF-8, naming
// the first.
func invalidText(raw *schemas.RawEvent) *Rejection {
	return reject(ReasonInvalidUTF8, "%v", raw.CheckUTF8())
}

// errInvalidText is jsonValues' error for a name or value that is not
// valid UTF-8.
var errInvalidText = errors.New("not valid UTF-8")

// jsonValues compacts each value to its canonical JSON text. A value that
// is already compact (the usual case: machine-written JSON) is checked in
// one pass and copied as it is; json.Compact handles the others and words
// the error for invalid ones. The values are substrings of one string: one
// allocation for all of them.
func jsonValues(m map[string]json.RawMessage) (map[string]string, error) {
	return (*EventBuffer)(nil).jsonValues(m)
}

// jsonValues is jsonValues, into a map from b.
func (b *EventBuffer) jsonValues(m map[string]json.RawMessage) (map[string]string, error) {
	if len(m) == 0 {
		return nil, nil
	}
	type span struct {
		key        string
		start, end int
	}
	var (
		spanStack [8]span
		textStack [512]byte
		compacted bytes.Buffer
	)
	spans, text := spanStack[:0], textStack[:0]
	for k, v := range m {
		if !utf8.ValidString(k) || !utf8.Valid(v) {
			return nil, errInvalidText
		}
		if k == "" {
			return nil, fmt.Errorf("names must not be empty")
		}
		if len(v) == 0 {
			v = json.RawMessage("null")
		}
		if !jsonscan.IsCompact(v) {
			compacted.Reset()
			if err := json.Compact(&compacted, v); err != nil {
				return nil, fmt.Errorf("%q is not valid JSON: %v", k, err)
			}
			v = compacted.Bytes()
		}
		spans = append(spans, span{k, len(text), len(text) + len(v)})
		text = append(text, v...)
	}
	all := string(text)
	out := b.stringMap(len(spans))
	for _, s := range spans {
		out[s.key] = all[s.start:s.end]
	}
	return out, nil
}
