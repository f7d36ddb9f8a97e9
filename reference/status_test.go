package reference

import (
	"encoding/json"
	"reflect"
	"strconv"
	"testing"
	"time"

	"github.com/rolodex/rolodex/schemas"
)

var statusBase = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func at(minute int) time.Time { return statusBase.Add(time.Duration(minute) * time.Minute) }

func atMs(minute int) int64 { return at(minute).UnixMilli() }

func atText(minute int) string { return at(minute).Format(time.RFC3339Nano) }

// statusEv is an event of tenant t1; props are strings, ids type/value pairs.
func statusEv(id, typ, source string, minute int, props map[string]string, ids ...string) *schemas.Event {
	ev := &schemas.Event{Tenant: "t1", ID: id, Type: typ, Source: source, Time: at(minute)}
	for k, v := range props {
		if ev.Properties == nil {
			ev.Properties = map[string]string{}
		}
		ev.Properties[k] = strconv.Quote(v)
	}
	for i := 0; i+1 < len(ids); i += 2 {
		ev.Identifiers = append(ev.Identifiers, schemas.Identifier{Type: ids[i], Value: ids[i+1]})
	}
	return ev
}

func tag(name, source string, minute int) schemas.ProfileTag {
	return schemas.ProfileTag{Tag: name, Source: source, Since: atText(minute), SinceMs: atMs(minute)}
}

var stageConfig = schemas.StatusConfig{
	Default: []string{"new"},
	Groups: []schemas.TagGroup{
		{Name: "stage", Tags: []string{"lead", "customer", "churned"}, Exclusive: true},
		{Name: "interest", Tags: []string{"cars", "bikes"}},
	},
}

// The status of a profile whose events land on three nodes, with the
// expected values worked out by hand from the rules of docs/events.md.
func TestIdentityStatus(t *testing.T) {
	const email, phone, wa = "a@x.com", "+5511912345678", "+5511987654321"
	events := []*schemas.Event{
		statusEv("e1", "page.viewed", "web", 10, nil, "email", email, "phone", phone, "whatsapp", wa),
		// vip: added and removed at one time; the source decides (web > crm).
		statusEv("e2", schemas.EventTagAdded, "crm", 20, map[string]string{"tag": "vip"}, "phone", phone),
		statusEv("e3", schemas.EventTagRemoved, "web", 20, map[string]string{"tag": "vip"}, "email", email),
		// stage: lead set at 15, customer at 30 and removed and added
		// again at 40 by one source: the event id decides (e7 > e6).
		statusEv("e4", schemas.EventTagAdded, "web", 15, map[string]string{"tag": "lead"}, "email", email),
		statusEv("e5", schemas.EventTagAdded, "web", 30, map[string]string{"tag": "customer"}, "phone", phone),
		statusEv("e6", schemas.EventTagRemoved, "web", 40, map[string]string{"tag": "customer"}, "email", email),
		statusEv("e7", schemas.EventTagAdded, "web", 40, map[string]string{"tag": "customer"}, "whatsapp", wa),
		// The default tag new, removed at the profile's first event time.
		statusEv("e8", schemas.EventTagRemoved, "api", 10, map[string]string{"tag": "new"}, "phone", phone),
		// A group that is not exclusive holds both.
		statusEv("e9", schemas.EventTagAdded, "web", 20, map[string]string{"tag": "cars"}, "email", email),
		statusEv("e10", schemas.EventTagAdded, "web", 25, map[string]string{"tag": "bikes"}, "email", email),
		// Blacklisted at 50; the removal is older.
		statusEv("e11", schemas.EventBlacklistAdded, "web", 50, map[string]string{"reason": "fraud"}, "phone", phone),
		statusEv("e12", schemas.EventBlacklistRemoved, "crm", 45, nil, "email", email),
		// Consent: marketing granted until the next day; sms granted then
		// revoked; newsletter denied.
		statusEv("e13", schemas.EventConsentGranted, "web", 60, map[string]string{"purpose": "marketing", "expires_at": "2026-01-02T00:00:00Z"}, "email", email),
		statusEv("e14", schemas.EventConsentGranted, "web", 70, map[string]string{"purpose": "sms", "expires_at": "2026-06-01T00:00:00Z"}, "phone", phone),
		statusEv("e15", schemas.EventConsentRevoked, "web", 80, map[string]string{"purpose": "sms"}, "email", email),
		statusEv("e16", schemas.EventConsentDenied, "crm", 90, map[string]string{"purpose": "newsletter"}, "whatsapp", wa),
		// The phone bounces; the email bounced and was revalidated later;
		// an identifier the profile does not hold is listed all the same.
		statusEv("e17", schemas.EventIdentifierInvalidated, "web", 100, map[string]string{"type": "phone", "value": phone, "reason": "hard_bounce"}, "email", email),
		statusEv("e18", schemas.EventIdentifierInvalidated, "web", 90, map[string]string{"type": "email", "value": email, "reason": "hard_bounce"}, "phone", phone),
		statusEv("e19", schemas.EventIdentifierRevalidated, "web", 95, map[string]string{"type": "email", "value": email}, "phone", phone),
		statusEv("e20", schemas.EventIdentifierInvalidated, "crm", 110, map[string]string{"type": "external:crm", "value": "L-1"}, "email", email),
		// Another profile: only the default tag.
		statusEv("e21", "page.viewed", "web", 12, nil, "user_id", "u9"),
	}
	m := NewIdentityWith(Options{Status: stageConfig, Now: at(12 * 60)})
	for _, ev := range events {
		m.Add(ev)
	}
	// A re-send changes nothing.
	m.Add(events[2])
	profiles := m.Profiles()
	if len(profiles) != 2 {
		t.Fatalf("%d profiles, want 2", len(profiles))
	}
	p := profiles[m.Root(schemas.NodeID("t1", schemas.Identifier{Type: "email", Value: email}))]
	check := func(name string, got, want any) {
		t.Helper()
		if !reflect.DeepEqual(got, want) {
			gj, _ := json.Marshal(got)
			wj, _ := json.Marshal(want)
			t.Errorf("%s:\n got %s\nwant %s", name, gj, wj)
		}
	}
	check("tags", p.Tags, []schemas.ProfileTag{tag("bikes", "manual", 25), tag("cars", "manual", 20), tag("customer", "manual", 40)})
	check("removed tags", p.RemovedTags, []schemas.ProfileTag{tag("lead", "manual", 40), tag("new", "manual", 10), tag("vip", "manual", 20)})
	check("blacklist", []any{p.Blacklisted, p.Blacklist}, []any{true, &schemas.BlacklistState{Reason: "fraud", Since: atText(50), SinceMs: atMs(50)}})
	check("consent", p.Consent, map[string]schemas.ConsentState{
		"marketing":  {Status: "granted", Since: atText(60), ExpiresAt: "2026-01-02T00:00:00Z"},
		"sms":        {Status: "revoked", Since: atText(80)},
		"newsletter": {Status: "denied", Since: atText(90)},
	})
	check("invalid identifiers", p.InvalidIdentifiers, []schemas.InvalidIdentifier{
		{Type: "external:crm", Value: "L-1", Since: atText(110)},
		{Type: "phone", Value: phone, Reason: "hard_bounce", Since: atText(100)},
	})
	check("channels", p.Channels, map[string][]string{"email": {email}, "whatsapp": {wa}})

	other := profiles[schemas.NodeID("t1", schemas.Identifier{Type: "user_id", Value: "u9"})]
	check("default tag", other.Tags, []schemas.ProfileTag{tag("new", "default", 12)})
	check("no removed tags", other.RemovedTags, []schemas.ProfileTag(nil))
	check("no status", []any{other.Blacklisted, other.Consent, other.InvalidIdentifiers, other.Channels},
		[]any{false, map[string]schemas.ConsentState{}, []schemas.InvalidIdentifier{}, map[string][]string{}})

	// Consent expiry is read at Now: at the expiry instant it is expired.
	m.opts.Now = time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC)
	p = m.Profile(p.ID)
	check("expired consent", p.Consent["marketing"], schemas.ConsentState{Status: "expired", Since: atText(60), ExpiresAt: "2026-01-02T00:00:00Z", Expired: true})
	m.opts.Now = m.opts.Now.Add(-time.Millisecond)
	p = m.Profile(p.ID)
	check("consent a millisecond before", p.Consent["marketing"].Status, "granted")
}

// In an exclusive group a default tag goes off when another tag of the
// group is set, and does not come back when that one is removed.
func TestIdentityExclusiveDefault(t *testing.T) {
	sc := schemas.StatusConfig{Default: []string{"lead"}, Groups: []schemas.TagGroup{{Name: "stage", Tags: []string{"lead", "customer", "churned"}, Exclusive: true}}}
	m := NewIdentityWith(Options{Status: sc})
	for _, ev := range []*schemas.Event{
		statusEv("1", "x", "web", 0, nil, "email", "a@x.com"),
		statusEv("2", schemas.EventTagAdded, "web", 5, map[string]string{"tag": "customer"}, "email", "a@x.com"),
		statusEv("3", schemas.EventTagRemoved, "web", 7, map[string]string{"tag": "customer"}, "email", "a@x.com"),
		statusEv("4", schemas.EventTagAdded, "web", 9, map[string]string{"tag": "churned"}, "user_id", "u1"),
	} {
		m.Add(ev)
	}
	ps := m.Profiles()
	p := ps[schemas.NodeID("t1", schemas.Identifier{Type: "email", Value: "a@x.com"})]
	if len(p.Tags) != 0 || !reflect.DeepEqual(p.RemovedTags, []schemas.ProfileTag{tag("customer", "manual", 7), tag("lead", "manual", 5)}) {
		t.Fatalf("tags %+v, removed %+v: want none on, customer removed at 7, lead at 5 by the set of customer", p.Tags, p.RemovedTags)
	}
	// On its own profile, churned set at 9 is later than the default lead
	// at 9 (a default has no source).
	p = ps[schemas.NodeID("t1", schemas.Identifier{Type: "user_id", Value: "u1"})]
	if !reflect.DeepEqual(p.Tags, []schemas.ProfileTag{tag("churned", "manual", 9)}) || !reflect.DeepEqual(p.RemovedTags, []schemas.ProfileTag{tag("lead", "manual", 9)}) {
		t.Fatalf("tags %+v, removed %+v", p.Tags, p.RemovedTags)
	}
}
