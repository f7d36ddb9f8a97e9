package intake

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/rolodex/rolodex/schemas"
)

// Every reserved message event is checked at ingest: message_id required
// and well formed, channel one of the four, bounce hard or soft and only
// on message.bounced; a bad one is rejected with ReasonInvalidMessageEvent
// and a message naming the property. What ingest accepts, the lifecycle
// reads (schemas.MessageEventOf).
func TestValidateMessageEvents(t *testing.T) {
	v, p := testValidator(t)
	received := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	id := func(s string) map[string]string { return map[string]string{"message_id": s} }
	with := func(m map[string]string, kv ...string) map[string]string {
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	tests := []struct {
		name  string
		typ   string
		props map[string]string
		want  string // "" to accept
	}{
		{name: "sent", typ: "message.sent", props: id(`"m-1"`)},
		{name: "every channel", typ: "message.delivered", props: with(id(`"m-1"`), "channel", `"whatsapp"`)},
		{name: "messenger", typ: "message.opened", props: with(id(`"m-1"`), "channel", `"messenger"`, "provider_event_id", `"pe-1"`)},
		{name: "hard bounce", typ: "message.bounced", props: with(id(`"m-1"`), "bounce", `"hard"`)},
		{name: "bounce of unknown kind", typ: "message.bounced", props: id(`"m-1"`)},
		{name: "id of 200 bytes", typ: "message.draft", props: id(`"` + strings.Repeat("m", 200) + `"`)},
		{name: "id with a slash and unicode", typ: "message.draft", props: id(`"camp/2026/é"`)},

		{name: "no properties", typ: "message.sent", want: "properties.message_id is required"},
		{name: "no message id", typ: "message.sent", props: map[string]string{"channel": `"email"`}, want: "properties.message_id is required"},
		{name: "null message id", typ: "message.spam", props: id(`null`), want: "properties.message_id is required"},
		{name: "numeric message id", typ: "message.sent", props: id(`42`), want: "properties.message_id must be a string"},
		{name: "empty message id", typ: "message.sent", props: id(`""`), want: "properties.message_id must be 1 to 200 bytes long (it is 0)"},
		{name: "message id too long", typ: "message.sent", props: id(`"` + strings.Repeat("m", 201) + `"`), want: "properties.message_id must be 1 to 200 bytes long (it is 201)"},
		{name: "message id with spaces around", typ: "message.sent", props: id(`" m-1"`), want: "starts or ends with white space"},
		{name: "message id with a control character", typ: "message.sent", props: id(`"m\u0000-1"`), want: "holds a control character"},
		{name: "unknown channel", typ: "message.sent", props: with(id(`"m-1"`), "channel", `"fax"`), want: `properties.channel must be email, sms, whatsapp or messenger (absent: email), not "fax"`},
		{name: "null channel", typ: "message.sent", props: with(id(`"m-1"`), "channel", `null`), want: "properties.channel must be"},
		{name: "channel not a string", typ: "message.sent", props: with(id(`"m-1"`), "channel", `1`), want: "properties.channel must be"},
		{name: "channel in capitals", typ: "message.sent", props: with(id(`"m-1"`), "channel", `"Email"`), want: "properties.channel must be"},
		{name: "bounce of another state", typ: "message.delivered", props: with(id(`"m-1"`), "bounce", `"hard"`), want: "properties.bounce is only for message.bounced"},
		{name: "bounce neither hard nor soft", typ: "message.bounced", props: with(id(`"m-1"`), "bounce", `"permanent"`), want: `properties.bounce must be hard or soft (absent: soft), not "permanent"`},
		{name: "bounce null", typ: "message.bounced", props: with(id(`"m-1"`), "bounce", `null`), want: "properties.bounce must be hard or soft"},
		{name: "provider event id a number", typ: "message.opened", props: with(id(`"m-1"`), "provider_event_id", `123`), want: "properties.provider_event_id must be a string"},
		{name: "provider event id too long", typ: "message.opened", props: with(id(`"m-1"`), "provider_event_id", `"`+strings.Repeat("x", 257)+`"`), want: "properties.provider_event_id must be at most 256 bytes"},

		{name: "not reserved: message.received", typ: "message.received", props: map[string]string{"text": `"oi"`}},
		{name: "not reserved: messages.sent", typ: "messages.sent"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw := &schemas.RawEvent{ID: "e-1", Type: tt.typ, Identifiers: map[string][]string{"email": {"ana@example.com"}}}
			if tt.props != nil {
				raw.Properties = map[string]json.RawMessage{}
				for k, v := range tt.props {
					raw.Properties[k] = json.RawMessage(v)
				}
			}
			ev, _, rej := v.Validate(p, raw, received)
			if tt.want != "" {
				if rej == nil || rej.Reason != ReasonInvalidMessageEvent || ev != nil {
					t.Fatalf("Validate = %+v, %v; want a rejection %s", ev, rej, ReasonInvalidMessageEvent)
				}
				if !strings.Contains(rej.Message, tt.want) || !strings.Contains(rej.Message, `event "e-1" of type `+tt.typ) {
					t.Fatalf("message %q, want it to name the event, its type and %q", rej.Message, tt.want)
				}
				return
			}
			if rej != nil {
				t.Fatalf("rejected: %v", rej)
			}
			if schemas.IsMessageEvent(tt.typ) {
				if _, err := schemas.MessageEventOf(ev); err != nil {
					t.Fatalf("accepted, but the lifecycle cannot read it: %v", err)
				}
			}
		})
	}
}

// Every one of the fourteen states' event types is checked.
func TestEveryMessageStateIsChecked(t *testing.T) {
	v, p := testValidator(t)
	for _, s := range schemas.MessageStates() {
		raw := &schemas.RawEvent{ID: "e-1", Type: schemas.MessageEventType(s), Identifiers: map[string][]string{"email": {"ana@example.com"}}}
		if _, _, rej := v.Validate(p, raw, time.Now()); rej == nil || rej.Reason != ReasonInvalidMessageEvent {
			t.Errorf("%s without message_id: %v, want %s", raw.Type, rej, ReasonInvalidMessageEvent)
		}
	}
}
