package intake

// Ingest checks of the reserved message event types (docs/lifecycle.md,
// "Message events"): message.<state> for the fourteen states. An event the
// lifecycle could not fold is refused at the door with a reason, as status
// events are (status.go); the lifecycle's router keeps its own dead letter
// for such events as a second line (events that reached rolodex.events
// before this check).

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/rolodex/rolodex/schemas"
)

// ReasonInvalidMessageEvent rejects a reserved message event
// (schemas.IsMessageEvent) without a well-formed properties.message_id, or
// with a channel, bounce or provider_event_id that is not what it must be.
const ReasonInvalidMessageEvent = schemas.ReasonInvalidMessageEvent

// MaxProviderEventIDLen bounds properties.provider_event_id, in bytes.
const MaxProviderEventIDLen = 256

// checkMessage checks the properties of a reserved message event of type
// typ. It refuses at least what schemas.MessageEventOf refuses, so an
// accepted message event is one the lifecycle folds.
func checkMessage(id, typ string, props map[string]string) *Rejection {
	bad := func(format string, args ...any) *Rejection {
		return reject(ReasonInvalidMessageEvent, "event %q of type %s: %s", id, typ, fmt.Sprintf(format, args...))
	}
	m, present, ok := stringProperty(props, schemas.PropMessageID)
	switch {
	case !present:
		return bad("properties.message_id is required: the id of the message the event is about")
	case !ok:
		return bad("properties.message_id must be a string")
	case m == "" || len(m) > schemas.MessageIDMaxLen:
		return bad("properties.message_id must be 1 to %d bytes long (it is %d)", schemas.MessageIDMaxLen, len(m))
	case strings.TrimSpace(m) != m:
		return bad("properties.message_id %q starts or ends with white space", clipText(m))
	case strings.ContainsFunc(m, unicode.IsControl) || !utf8.ValidString(m):
		return bad("properties.message_id %q holds a control character", clipText(m))
	}
	if _, found := props[schemas.PropChannel]; found {
		ch, _, ok := stringProperty(props, schemas.PropChannel)
		if _, known := schemas.AddressType(ch); !ok || !known {
			return bad("properties.channel must be email, sms, whatsapp or messenger (absent: email), not %s", clipText(props[schemas.PropChannel]))
		}
	}
	if raw, found := props[schemas.PropBounce]; found {
		if typ != schemas.MessageEventType(schemas.MessageBounced) {
			return bad("properties.bounce is only for %s", schemas.MessageEventType(schemas.MessageBounced))
		}
		b, _, ok := stringProperty(props, schemas.PropBounce)
		if !ok || (b != schemas.BounceHard && b != schemas.BounceSoft) {
			return bad("properties.bounce must be hard or soft (absent: soft), not %s", clipText(raw))
		}
	}
	if raw, found := props[schemas.PropProviderEventID]; found {
		p, _, ok := stringProperty(props, schemas.PropProviderEventID)
		switch {
		case !ok:
			return bad("properties.provider_event_id must be a string, not %s", clipText(raw))
		case len(p) > MaxProviderEventIDLen:
			return bad("properties.provider_event_id must be at most %d bytes long (it is %d)", MaxProviderEventIDLen, len(p))
		}
	}
	// The lifecycle's own reading, in case the two ever drift apart.
	if _, err := schemas.MessageEventOf(&schemas.Event{ID: id, Type: typ, Properties: props}); err != nil {
		return bad("%v", err)
	}
	return nil
}
