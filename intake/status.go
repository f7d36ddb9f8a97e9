package intake

// Ingest checks of the reserved status event types (docs/events.md,
// "Reserved event types"): each must carry what folding it needs, so that
// an event the identity stage would have to ignore is refused at the door
// with a reason instead.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/rolodex/rolodex/schemas"
)

// ReasonInvalidStatusEvent rejects an event of a reserved type
// (schemas.IsStatusEvent) without the properties its type needs, or with
// one that is not what it must be.
const ReasonInvalidStatusEvent = "invalid_status_event"

// MaxStatusReasonLen bounds properties.reason of blacklist and identifier
// events, in characters.
const MaxStatusReasonLen = 500

// checkStatus checks the properties of an event of reserved type typ and
// normalises properties.type and properties.value of identifier events in
// place, so that they name the identifier the way the profile holds it.
func (v *Validator) checkStatus(id, typ string, props map[string]string) *Rejection {
	bad := func(format string, args ...any) *Rejection {
		return reject(ReasonInvalidStatusEvent, "event %q of type %s: %s", id, typ, fmt.Sprintf(format, args...))
	}
	switch typ {
	case schemas.EventTagAdded, schemas.EventTagRemoved:
		return checkName(props, "tag", bad)
	case schemas.EventBlacklistAdded, schemas.EventBlacklistRemoved:
		return checkReason(props, bad)
	case schemas.EventConsentGranted, schemas.EventConsentDenied, schemas.EventConsentRevoked:
		if rej := checkName(props, "purpose", bad); rej != nil {
			return rej
		}
		x, present, ok := stringProperty(props, "expires_at")
		switch {
		case !present:
		case typ != schemas.EventConsentGranted:
			return bad("properties.expires_at is only for %s (a %s consent does not expire)", schemas.EventConsentGranted, typ[len("consent."):])
		case !ok:
			return bad("properties.expires_at must be an RFC 3339 string (e.g. 2027-01-01T00:00:00Z)")
		default:
			if _, err := time.Parse(time.RFC3339Nano, x); err != nil {
				return bad("properties.expires_at %q is not RFC 3339 (e.g. 2027-01-01T00:00:00Z)", clipText(x))
			}
		}
		return nil
	case schemas.EventIdentifierInvalidated, schemas.EventIdentifierRevalidated:
		rt, present, ok := stringProperty(props, "type")
		if !present || !ok || rt == "" {
			return bad("properties.type must be an identifier type (email, phone, user_id, anonymous_id, whatsapp, facebook or external:<name>)")
		}
		nt, err := v.norm.Type(rt)
		if err != nil {
			return bad("properties.type %q is not an identifier type (email, phone, user_id, anonymous_id, whatsapp, facebook or external:<name>)", clipText(rt))
		}
		rv, present, ok := stringProperty(props, "value")
		if !present || !ok {
			return bad("properties.value must be the identifier's value, a string")
		}
		nv, err := v.norm.Identifier(nt, rv)
		if err != nil {
			return bad("properties.value: %v", err)
		}
		if rej := checkReason(props, bad); rej != nil {
			return rej
		}
		props["type"], props["value"] = jsonString(nt), jsonString(nv)
		return nil
	}
	return nil
}

// checkName checks that property k is a JSON string matching
// schemas.NameRe (a tag, a consent purpose).
func checkName(props map[string]string, k string, bad func(string, ...any) *Rejection) *Rejection {
	s, present, ok := stringProperty(props, k)
	switch {
	case !present:
		return bad("properties.%s is required", k)
	case !ok:
		return bad("properties.%s must be a string", k)
	case !schemas.NameRe.MatchString(s):
		return bad("properties.%s %q is not a name: a letter or digit, then up to 99 letters, digits, '_', '.', ':' or '-'", k, clipText(s))
	}
	return nil
}

// checkReason checks the optional properties.reason: a string of at most
// MaxStatusReasonLen characters.
func checkReason(props map[string]string, bad func(string, ...any) *Rejection) *Rejection {
	s, present, ok := stringProperty(props, "reason")
	switch {
	case !present:
	case !ok:
		return bad("properties.reason must be a string")
	case utf8.RuneCountInString(s) > MaxStatusReasonLen:
		return bad("properties.reason is %d characters long, at most %d", utf8.RuneCountInString(s), MaxStatusReasonLen)
	}
	return nil
}

// stringProperty returns property k as a string: present is false when the
// event has no such property or it is null, ok false when it is not a JSON
// string.
func stringProperty(props map[string]string, k string) (s string, present, ok bool) {
	raw, found := props[k]
	if !found || raw == "null" {
		return "", false, false
	}
	if json.Unmarshal([]byte(raw), &s) != nil {
		return "", true, false
	}
	return s, true, true
}

// jsonString is s as compact JSON text, without HTML escaping.
func jsonString(s string) string {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s) // a string always encodes
	return string(bytes.TrimSuffix(buf.Bytes(), []byte("\n")))
}

// clipText shortens s for a message.
func clipText(s string) string {
	const max = 64
	if len(s) <= max {
		return s
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}
