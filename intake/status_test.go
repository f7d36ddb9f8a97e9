package intake

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/rolodex/rolodex/schemas"
)

// Every reserved event type is checked for the properties it needs; an
// event without them is rejected with ReasonInvalidStatusEvent and a
// message naming the property.
func TestValidateStatusEvents(t *testing.T) {
	v, p := testValidator(t)
	received := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	long := `"` + strings.Repeat("é", MaxStatusReasonLen) + `"`
	tooLong := `"` + strings.Repeat("é", MaxStatusReasonLen+1) + `"`
	tests := []struct {
		name  string
		typ   string
		props map[string]string // raw JSON of each property
		// want is the rejection message's telling part, "" to accept.
		want string
		// wantProps are properties of the accepted event.
		wantProps map[string]string
	}{
		{name: "tag added", typ: schemas.EventTagAdded, props: map[string]string{"tag": `"vip"`}},
		{name: "tag removed, any name", typ: schemas.EventTagRemoved, props: map[string]string{"tag": `"Stage:lead-2.b_c"`}},
		{name: "tag missing", typ: schemas.EventTagAdded, want: "properties.tag is required"},
		{name: "tag null", typ: schemas.EventTagRemoved, props: map[string]string{"tag": `null`}, want: "properties.tag is required"},
		{name: "tag not a string", typ: schemas.EventTagAdded, props: map[string]string{"tag": `7`}, want: "properties.tag must be a string"},
		{name: "tag with a space", typ: schemas.EventTagAdded, props: map[string]string{"tag": `"big spender"`}, want: `properties.tag "big spender" is not a name`},
		{name: "tag empty", typ: schemas.EventTagAdded, props: map[string]string{"tag": `""`}, want: "is not a name"},
		{name: "tag starting with a dash", typ: schemas.EventTagAdded, props: map[string]string{"tag": `"-x"`}, want: "is not a name"},
		{name: "tag too long", typ: schemas.EventTagAdded, props: map[string]string{"tag": `"` + strings.Repeat("a", 101) + `"`}, want: "is not a name"},

		{name: "blacklist without reason", typ: schemas.EventBlacklistAdded},
		{name: "blacklist with reason", typ: schemas.EventBlacklistAdded, props: map[string]string{"reason": `"fraud"`}},
		{name: "blacklist reason of 500 characters", typ: schemas.EventBlacklistRemoved, props: map[string]string{"reason": long}},
		{name: "blacklist reason too long", typ: schemas.EventBlacklistAdded, props: map[string]string{"reason": tooLong}, want: "properties.reason is 501 characters long, at most 500"},
		{name: "blacklist reason not a string", typ: schemas.EventBlacklistRemoved, props: map[string]string{"reason": `{"why":"x"}`}, want: "properties.reason must be a string"},

		{name: "consent granted", typ: schemas.EventConsentGranted, props: map[string]string{"purpose": `"marketing"`}},
		{name: "consent granted until", typ: schemas.EventConsentGranted, props: map[string]string{"purpose": `"marketing"`, "expires_at": `"2027-01-01T00:00:00-03:00"`}},
		{name: "consent granted until, fractions", typ: schemas.EventConsentGranted, props: map[string]string{"purpose": `"sms"`, "expires_at": `"2027-01-01T00:00:00.250Z"`}},
		{name: "consent denied", typ: schemas.EventConsentDenied, props: map[string]string{"purpose": `"marketing"`}},
		{name: "consent revoked", typ: schemas.EventConsentRevoked, props: map[string]string{"purpose": `"marketing"`, "expires_at": `null`}},
		{name: "consent without purpose", typ: schemas.EventConsentGranted, want: "properties.purpose is required"},
		{name: "consent bad purpose", typ: schemas.EventConsentDenied, props: map[string]string{"purpose": `"e-mail marketing"`}, want: "properties.purpose"},
		{name: "consent expiry not RFC 3339", typ: schemas.EventConsentGranted, props: map[string]string{"purpose": `"marketing"`, "expires_at": `"01/01/2027"`}, want: `properties.expires_at "01/01/2027" is not RFC 3339`},
		{name: "consent expiry a number", typ: schemas.EventConsentGranted, props: map[string]string{"purpose": `"marketing"`, "expires_at": `1798761600`}, want: "properties.expires_at must be an RFC 3339 string"},
		{name: "consent denied with expiry", typ: schemas.EventConsentDenied, props: map[string]string{"purpose": `"marketing"`, "expires_at": `"2027-01-01T00:00:00Z"`}, want: "properties.expires_at is only for consent.granted"},
		{name: "consent revoked with expiry", typ: schemas.EventConsentRevoked, props: map[string]string{"purpose": `"marketing"`, "expires_at": `"2027-01-01T00:00:00Z"`}, want: "properties.expires_at is only for consent.granted"},

		{name: "identifier invalidated, email normalised", typ: schemas.EventIdentifierInvalidated,
			props:     map[string]string{"type": `"Email"`, "value": `" Ana@Example.COM "`, "reason": `"hard_bounce"`},
			wantProps: map[string]string{"type": `"email"`, "value": `"ana@example.com"`, "reason": `"hard_bounce"`}},
		{name: "identifier revalidated, phone normalised", typ: schemas.EventIdentifierRevalidated,
			props:     map[string]string{"type": `"phone"`, "value": `"(11) 91234-5678"`},
			wantProps: map[string]string{"type": `"phone"`, "value": `"+5511912345678"`}},
		{name: "identifier external, case kept, no HTML escaping", typ: schemas.EventIdentifierInvalidated,
			props:     map[string]string{"type": `"external:crm"`, "value": `"L<9>&Co"`},
			wantProps: map[string]string{"type": `"external:crm"`, "value": `"L<9>&Co"`}},
		{name: "identifier without type", typ: schemas.EventIdentifierInvalidated, props: map[string]string{"value": `"a@b.co"`}, want: "properties.type must be an identifier type"},
		{name: "identifier unknown type", typ: schemas.EventIdentifierInvalidated, props: map[string]string{"type": `"emial"`, "value": `"a@b.co"`}, want: `properties.type "emial" is not an identifier type`},
		{name: "identifier without value", typ: schemas.EventIdentifierRevalidated, props: map[string]string{"type": `"email"`}, want: "properties.value must be the identifier's value"},
		{name: "identifier value not a string", typ: schemas.EventIdentifierRevalidated, props: map[string]string{"type": `"user_id"`, "value": `42`}, want: "properties.value must be the identifier's value"},
		{name: "identifier invalid value", typ: schemas.EventIdentifierInvalidated, props: map[string]string{"type": `"email"`, "value": `"ana@"`}, want: "properties.value: "},
		{name: "identifier blocked value", typ: schemas.EventIdentifierInvalidated, props: map[string]string{"type": `"email"`, "value": `"test@test.com"`}, want: "properties.value: "},
		{name: "identifier reason too long", typ: schemas.EventIdentifierInvalidated, props: map[string]string{"type": `"email"`, "value": `"a@b.co"`, "reason": tooLong}, want: "properties.reason is 501 characters long"},

		{name: "not reserved: anything goes", typ: "tag.renamed", props: map[string]string{"tag": `7`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw := &schemas.RawEvent{ID: "e-1", Type: tt.typ, Identifiers: map[string][]string{"user_id": {"u-1"}}}
			if tt.props != nil {
				raw.Properties = map[string]json.RawMessage{}
				for k, v := range tt.props {
					raw.Properties[k] = json.RawMessage(v)
				}
			}
			ev, _, rej := v.Validate(p, raw, received)
			if tt.want != "" {
				if rej == nil || rej.Reason != ReasonInvalidStatusEvent || ev != nil {
					t.Fatalf("Validate = %+v, %v; want a rejection %s", ev, rej, ReasonInvalidStatusEvent)
				}
				if !strings.Contains(rej.Message, tt.want) || !strings.Contains(rej.Message, `event "e-1" of type `+tt.typ) {
					t.Fatalf("message %q, want it to name the event, its type and %q", rej.Message, tt.want)
				}
				return
			}
			if rej != nil {
				t.Fatalf("rejected: %v", rej)
			}
			for k, want := range tt.wantProps {
				if got := ev.Properties[k]; got != want {
					t.Errorf("properties.%s = %s, want %s", k, got, want)
				}
			}
		})
	}
}

// An accepted status event folds into what it says: the normalised
// identifier of an identifier.invalidated event is the one the profile
// holds, whatever the partner's spelling.
func TestStatusEventFoldsAsNormalised(t *testing.T) {
	v, p := testValidator(t)
	received := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	seen, _, rej := v.Validate(p, &schemas.RawEvent{ID: "e-1", Type: "page.viewed", Identifiers: map[string][]string{"email": {"ana@example.com"}}}, received)
	if rej != nil {
		t.Fatal(rej)
	}
	bounce, _, rej := v.Validate(p, &schemas.RawEvent{ID: "e-2", Type: schemas.EventIdentifierInvalidated,
		Identifiers: map[string][]string{"email": {"ANA@example.com"}},
		Properties:  map[string]json.RawMessage{"type": json.RawMessage(`"EMAIL"`), "value": json.RawMessage(`"Ana@Example.com"`)}}, received)
	if rej != nil {
		t.Fatal(rej)
	}
	c := schemas.Contribution{Node: seen.Key(), Identifier: seen.Identifiers[0]}
	c.Add(seen)
	c.Add(bounce)
	prof := schemas.Fold(seen.Key(), &schemas.Node{Tenant: seen.Tenant, Identifier: seen.Identifiers[0], Own: c})
	if len(prof.InvalidIdentifiers) != 1 || prof.InvalidIdentifiers[0].Value != "ana@example.com" || len(prof.Channels["email"]) != 0 {
		t.Fatalf("invalid %+v, channels %v: want ana@example.com invalid and no email channel", prof.InvalidIdentifiers, prof.Channels)
	}
}
