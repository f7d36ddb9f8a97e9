package intake

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/rolodex/rolodex/normalize"
	"github.com/rolodex/rolodex/partners"
	"github.com/rolodex/rolodex/schemas"
)

func testValidator(t testing.TB) (*Validator, *partners.Partner) {
	t.Helper()
	n, err := normalize.New(normalize.Config{DefaultRegion: "BR"})
	if err != nil {
		t.Fatal(err)
	}
	reg, err := partners.New([]partners.Partner{{Name: "crm", Tenant: "acme", Keys: []string{"crm-key-123"}}})
	if err != nil {
		t.Fatal(err)
	}
	p, _ := reg.ByName("crm")
	return NewValidator(n), p
}

func TestValidate(t *testing.T) {
	v, p := testValidator(t)
	received := time.Date(2026, 11, 22, 12, 0, 0, 123456789, time.UTC)
	ok := func() *schemas.RawEvent {
		return &schemas.RawEvent{ID: "e-1", Type: "page.viewed", Identifiers: map[string][]string{"email": {" Ana@Example.com "}}}
	}
	tests := []struct {
		name    string
		edit    func(r *schemas.RawEvent)
		reason  string
		check   func(t *testing.T, ev *schemas.Event)
		dropped int
	}{
		{name: "defaults", edit: func(r *schemas.RawEvent) {}, check: func(t *testing.T, ev *schemas.Event) {
			if ev.Tenant != "acme" || ev.Partner != "crm" || ev.Source != "crm" {
				t.Errorf("tenant/partner/source = %q/%q/%q, want acme/crm/crm", ev.Tenant, ev.Partner, ev.Source)
			}
			if !ev.Time.Equal(received.Truncate(time.Millisecond)) || !ev.ReceivedAt.Equal(ev.Time) {
				t.Errorf("time = %v received = %v, want receive time at ms precision", ev.Time, ev.ReceivedAt)
			}
			if len(ev.Identifiers) != 1 || ev.Identifiers[0] != (schemas.Identifier{Type: "email", Value: "ana@example.com"}) {
				t.Errorf("identifiers = %v", ev.Identifiers)
			}
			if ev.Key() != schemas.NodeID("acme", schemas.Identifier{Type: "email", Value: "ana@example.com"}) {
				t.Errorf("key = %q", ev.Key())
			}
		}},
		{name: "full event", edit: func(r *schemas.RawEvent) {
			r.Time = "2026-11-22T10:00:00-03:00"
			r.Source = "web"
			r.Identifiers = map[string][]string{"email": {"Ana@Example.com"}, "phone": {"+55 11 91234-5678"}, "user_id": {"u-1"}, "external:crm": {"L-9", "L-9"}}
			r.Traits = map[string]json.RawMessage{"name": json.RawMessage(`"Ana"`), "age": json.RawMessage(` 31 `)}
			r.Properties = map[string]json.RawMessage{"url": json.RawMessage(`{ "a" : [1, 2] }`)}
		}, check: func(t *testing.T, ev *schemas.Event) {
			if want := time.Date(2026, 11, 22, 13, 0, 0, 0, time.UTC); !ev.Time.Equal(want) || ev.Time.Location() != time.UTC {
				t.Errorf("time = %v, want %v UTC", ev.Time, want)
			}
			got := make([]string, len(ev.Identifiers))
			for i, id := range ev.Identifiers {
				got[i] = id.String()
			}
			if want := "user_id:u-1,email:ana@example.com,phone:+5511912345678,external:crm:L-9"; strings.Join(got, ",") != want {
				t.Errorf("identifiers = %s, want %s (sorted by priority, deduplicated)", strings.Join(got, ","), want)
			}
			if ev.Source != "web" || ev.Traits["name"] != `"Ana"` || ev.Traits["age"] != "31" || ev.Properties["url"] != `{"a":[1,2]}` {
				t.Errorf("source/traits/properties = %q %v %v", ev.Source, ev.Traits, ev.Properties)
			}
		}},
		{name: "one junk identifier dropped", edit: func(r *schemas.RawEvent) {
			r.Identifiers["phone"] = []string{"0000000000"}
		}, dropped: 1, check: func(t *testing.T, ev *schemas.Event) {
			if len(ev.Identifiers) != 1 {
				t.Errorf("identifiers = %v, want only the email", ev.Identifiers)
			}
		}},
		{name: "missing id", edit: func(r *schemas.RawEvent) { r.ID = "  " }, reason: ReasonMissingID},
		{name: "long id", edit: func(r *schemas.RawEvent) { r.ID = strings.Repeat("x", MaxIDLen+1) }, reason: ReasonInvalidID},
		{name: "missing type", edit: func(r *schemas.RawEvent) { r.Type = "" }, reason: ReasonMissingType},
		{name: "bad type", edit: func(r *schemas.RawEvent) { r.Type = "page viewed" }, reason: ReasonInvalidType},
		{name: "bad time", edit: func(r *schemas.RawEvent) { r.Time = "22/11/2026" }, reason: ReasonInvalidTime},
		{name: "far future", edit: func(r *schemas.RawEvent) { r.Time = "2027-11-22T10:00:00Z" }, reason: ReasonInvalidTime},
		{name: "no identifiers", edit: func(r *schemas.RawEvent) { r.Identifiers = nil }, reason: ReasonNoIdentifiers},
		{name: "unknown identifier type", edit: func(r *schemas.RawEvent) { r.Identifiers["emial"] = []string{"a@b.co"} }, reason: ReasonUnknownIDType},
		{name: "all blocked", edit: func(r *schemas.RawEvent) {
			r.Identifiers = map[string][]string{"email": {"test@test.com"}, "user_id": {"null"}}
		}, reason: ReasonNoValidIdentifier, dropped: 2},
		{name: "invalid email only", edit: func(r *schemas.RawEvent) { r.Identifiers = map[string][]string{"email": {"ana@"}} }, reason: ReasonNoValidIdentifier, dropped: 1},
		{name: "empty values only", edit: func(r *schemas.RawEvent) { r.Identifiers = map[string][]string{"email": {}} }, reason: ReasonNoValidIdentifier},
		{name: "invalid trait JSON", edit: func(r *schemas.RawEvent) { r.Traits = map[string]json.RawMessage{"x": json.RawMessage("{")} }, reason: ReasonInvalidJSON},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw := ok()
			tt.edit(raw)
			ev, dropped, rej := v.Validate(p, raw, received)
			if len(dropped) != tt.dropped {
				t.Errorf("dropped %d identifiers (%v), want %d", len(dropped), dropped, tt.dropped)
			}
			if tt.reason != "" {
				if rej == nil || rej.Reason != tt.reason {
					t.Fatalf("rejection = %v, want reason %s", rej, tt.reason)
				}
				if rej.Message == "" || ev != nil {
					t.Fatalf("rejection without message or with an event: %v %v", rej, ev)
				}
				return
			}
			if rej != nil {
				t.Fatalf("rejected: %v", rej)
			}
			tt.check(t, ev)
		})
	}
}

// Invalid UTF-8 in any text rejects the event; it never reaches the
// normaliser, which would turn it into U+FFFD.
func TestValidateRejectsInvalidUTF8(t *testing.T) {
	v, p := testValidator(t)
	bad := "nu\xff\xfe@example.com"
	tests := map[string]func(r *schemas.RawEvent){
		"id":                   func(r *schemas.RawEvent) { r.ID = bad },
		"type":                 func(r *schemas.RawEvent) { r.Type = bad },
		"time":                 func(r *schemas.RawEvent) { r.Time = bad },
		"source":               func(r *schemas.RawEvent) { r.Source = bad },
		"a key in identifiers": func(r *schemas.RawEvent) { r.Identifiers[bad] = []string{"x"} },
		"identifiers.email[0]": func(r *schemas.RawEvent) { r.Identifiers["email"] = []string{bad} },
		"a key in traits":      func(r *schemas.RawEvent) { r.Traits = map[string]json.RawMessage{bad: json.RawMessage(`1`)} },
		"traits.name": func(r *schemas.RawEvent) {
			r.Traits = map[string]json.RawMessage{"name": json.RawMessage(`"` + bad + `"`)}
		},
		"a key in properties": func(r *schemas.RawEvent) { r.Properties = map[string]json.RawMessage{bad: json.RawMessage(`1`)} },
		"properties.url": func(r *schemas.RawEvent) {
			r.Properties = map[string]json.RawMessage{"url": json.RawMessage(`"` + bad + `"`)}
		},
	}
	for field, edit := range tests {
		t.Run(field, func(t *testing.T) {
			raw := &schemas.RawEvent{ID: "e-1", Type: "t", Identifiers: map[string][]string{"user_id": {"u-1"}}}
			edit(raw)
			ev, _, rej := v.Validate(p, raw, time.Now())
			if rej == nil || rej.Reason != ReasonInvalidUTF8 || !strings.Contains(rej.Message, "invalid UTF-8 at byte ") || !strings.Contains(rej.Message, " of "+field) {
				t.Fatalf("Validate = %+v, %v; want %s naming %s", ev, rej, ReasonInvalidUTF8, field)
			}
		})
	}
}

func TestDecodeFailed(t *testing.T) {
	_, err := schemas.DecodeRawEventJSON([]byte("{\"id\":\"a\xff\"}"))
	if rej := DecodeFailed(ReasonInvalidJSON, fmt.Errorf("data: %w", err)); rej.Reason != ReasonInvalidUTF8 || rej.Message != "data: invalid UTF-8 at byte 8 (in id)" {
		t.Fatalf("invalid UTF-8: %+v", rej)
	}
	_, err = schemas.DecodeRawEventJSON([]byte(`{"id":`))
	if rej := DecodeFailed(ReasonInvalidJSON, err); rej.Reason != ReasonInvalidJSON || rej.Message != err.Error() {
		t.Fatalf("invalid JSON: %+v", rej)
	}
}

// The tenant comes from the credential, never from the body.
func TestValidateTenantFromPartner(t *testing.T) {
	v, p := testValidator(t)
	var raw schemas.RawEvent
	if err := json.Unmarshal([]byte(`{"id":"1","type":"x","tenant":"evil","identifiers":{"user_id":"u"}}`), &raw); err != nil {
		t.Fatal(err)
	}
	ev, _, rej := v.Validate(p, &raw, time.Now())
	if rej != nil || ev.Tenant != "acme" {
		t.Fatalf("tenant = %v (%v), want acme", ev, rej)
	}
}

// BenchmarkValidate validates a typical event: three identifiers, two
// traits, two properties.
func BenchmarkValidate(b *testing.B) {
	v, p := testValidator(b)
	raw, err := schemas.DecodeRawEventJSON([]byte(`{"id":"evt-000042","type":"page.viewed","time":"2026-11-23T10:42:00Z","source":"bench",` +
		`"identifiers":{"email":"Ana.Silva42@Example.com","phone":"(41) 97798-0042","user_id":"u-000042"},` +
		`"traits":{"name":"Ana Silva","city":"Curitiba"},"properties":{"page":"/cars/42","amount":42.5}}`))
	if err != nil {
		b.Fatal(err)
	}
	received := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	b.ReportAllocs()
	for b.Loop() {
		if _, _, rej := v.Validate(p, raw, received); rej != nil {
			b.Fatal(rej)
		}
	}
}
