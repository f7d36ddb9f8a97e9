package schemas

import (
	"strconv"
	"testing"
	"time"
)

var statusBase = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func statusEvent(id, typ string, minute int, props map[string]string) *Event {
	p := map[string]string{}
	for k, v := range props {
		p[k] = strconv.Quote(v)
	}
	return &Event{Tenant: "t", ID: id, Type: typ, Source: "api", Time: statusBase.Add(time.Duration(minute) * time.Minute),
		Identifiers: []Identifier{{Type: IDEmail, Value: "ana@example.com"}}, Properties: p}
}

// foldEvents folds evs, split over two nodes as a merge would, in the given
// order, and returns the profile.
func foldEvents(t *testing.T, sc StatusConfig, now time.Time, evs ...*Event) *Profile {
	t.Helper()
	n := &Node{Tenant: "t", Identifier: Identifier{Type: IDEmail, Value: "ana@example.com"}, Own: Contribution{Node: "p_a", Identifier: Identifier{Type: IDEmail, Value: "ana@example.com"}}}
	other := Contribution{Node: "p_b", Identifier: Identifier{Type: IDPhone, Value: "+34600000000"}}
	for i, ev := range evs {
		if i%2 == 0 {
			n.Own.Add(ev)
		} else {
			other.Add(ev)
		}
	}
	if other.Version > 0 {
		n.Join([]Contribution{other})
	}
	return FoldWith("p_a", n, &FoldOptions{Status: sc, Now: now})
}

func tagsOf(p *Profile) map[string]string {
	out := map[string]string{}
	for _, t := range p.Tags {
		out[t.Tag] = t.Source + "@" + strconv.FormatInt((t.SinceMs-statusBase.UnixMilli())/60000, 10)
	}
	return out
}

func TestStatusOrderIndependent(t *testing.T) {
	sc := StatusConfig{Default: []string{"new"}, Groups: []TagGroup{{Name: "stage", Tags: []string{"lead", "customer", "churned"}, Exclusive: true}}}
	evs := []*Event{
		statusEvent("1", "page.viewed", 0, nil),
		statusEvent("2", EventTagAdded, 5, map[string]string{"tag": "vip"}),
		statusEvent("3", EventTagRemoved, 3, map[string]string{"tag": "vip"}), // older: loses
		statusEvent("4", EventTagAdded, 6, map[string]string{"tag": "lead"}),
		statusEvent("5", EventTagAdded, 8, map[string]string{"tag": "customer"}),
		statusEvent("6", EventTagRemoved, 9, map[string]string{"tag": "new"}),
		statusEvent("7", EventBlacklistAdded, 10, map[string]string{"reason": "fraud"}),
		statusEvent("8", EventConsentGranted, 11, map[string]string{"purpose": "marketing", "expires_at": statusBase.Add(time.Hour).Format(time.RFC3339)}),
		statusEvent("9", EventIdentifierInvalidated, 12, map[string]string{"type": IDPhone, "value": "+34600000000", "reason": "hard_bounce"}),
	}
	want := map[string]string{"vip": "manual@5", "customer": "manual@8"}
	for perm := 0; perm < 20; perm++ {
		order := append([]*Event(nil), evs...)
		for i := range order {
			j := (i*7 + perm*13) % len(order)
			order[i], order[j] = order[j], order[i]
		}
		p := foldEvents(t, sc, statusBase.Add(30*time.Minute), order...)
		if got := tagsOf(p); len(got) != len(want) || got["vip"] != want["vip"] || got["customer"] != want["customer"] {
			t.Fatalf("perm %d: tags %v, want %v", perm, got, want)
		}
		if !p.Blacklisted || p.Blacklist.Reason != "fraud" {
			t.Fatalf("perm %d: blacklist %v %+v", perm, p.Blacklisted, p.Blacklist)
		}
		if !p.Granted("marketing") {
			t.Fatalf("perm %d: consent %+v", perm, p.Consent)
		}
		if len(p.Channels["sms"]) != 0 || len(p.Channels["email"]) != 1 || len(p.InvalidIdentifiers) != 1 {
			t.Fatalf("perm %d: channels %v invalid %v", perm, p.Channels, p.InvalidIdentifiers)
		}
	}
}

func TestDefaultTags(t *testing.T) {
	sc := StatusConfig{Default: []string{"new"}}
	p := foldEvents(t, sc, time.Time{}, statusEvent("1", "page.viewed", 4, nil), statusEvent("2", "page.viewed", 2, nil))
	if got := tagsOf(p); got["new"] != "default@2" || len(got) != 1 {
		t.Fatalf("tags %v", got)
	}
	// A remove at the first event's very time still wins (a default has no source).
	p = foldEvents(t, sc, time.Time{}, statusEvent("1", EventTagRemoved, 2, map[string]string{"tag": "new"}))
	if len(p.Tags) != 0 || len(p.RemovedTags) != 1 || p.RemovedTags[0].Source != TagSourceManual {
		t.Fatalf("tags %v removed %v", p.Tags, p.RemovedTags)
	}
	// No event yet: no default tag.
	n := &Node{Tenant: "t", Own: Contribution{Node: "p_a"}}
	if p := FoldWith("p_a", n, &FoldOptions{Status: sc}); len(p.Tags) != 0 {
		t.Fatalf("tags without events: %v", p.Tags)
	}
}

func TestExclusiveGroup(t *testing.T) {
	sc := StatusConfig{Default: []string{"lead"}, Groups: []TagGroup{{Name: "stage", Tags: []string{"lead", "customer", "churned"}, Exclusive: true}}}
	// customer set at 5 removes the default lead; customer removed at 7
	// leaves the group empty: lead does not come back.
	p := foldEvents(t, sc, time.Time{}, statusEvent("1", "x", 0, nil), statusEvent("2", EventTagAdded, 5, map[string]string{"tag": "customer"}),
		statusEvent("3", EventTagRemoved, 7, map[string]string{"tag": "customer"}))
	if len(p.Tags) != 0 {
		t.Fatalf("tags %v", p.Tags)
	}
	removed := map[string]int64{}
	for _, r := range p.RemovedTags {
		removed[r.Tag] = (r.SinceMs - statusBase.UnixMilli()) / 60000
	}
	if removed["lead"] != 5 || removed["customer"] != 7 {
		t.Fatalf("removed %v", p.RemovedTags)
	}
	// A non-exclusive group changes nothing.
	sc.Groups[0].Exclusive = false
	p = foldEvents(t, sc, time.Time{}, statusEvent("1", "x", 0, nil), statusEvent("2", EventTagAdded, 5, map[string]string{"tag": "customer"}))
	if len(p.Tags) != 2 {
		t.Fatalf("tags %v", p.Tags)
	}
}

func TestConsentExpiry(t *testing.T) {
	exp := statusBase.Add(time.Hour)
	ev := statusEvent("1", EventConsentGranted, 0, map[string]string{"purpose": "marketing", "expires_at": exp.Format(time.RFC3339)})
	if p := foldEvents(t, StatusConfig{}, exp.Add(-time.Millisecond), ev); !p.Granted("marketing") || p.Consent["marketing"].Expired {
		t.Fatalf("before expiry: %+v", p.Consent)
	}
	p := foldEvents(t, StatusConfig{}, exp, ev)
	if c := p.Consent["marketing"]; p.Granted("marketing") || !c.Expired || c.Status != ConsentExpired {
		t.Fatalf("at expiry: %+v", p.Consent)
	}
	p = foldEvents(t, StatusConfig{}, exp, ev, statusEvent("2", EventConsentRevoked, 1, map[string]string{"purpose": "marketing"}))
	if c := p.Consent["marketing"]; c.Status != ConsentRevoked || c.Expired {
		t.Fatalf("revoked: %+v", c)
	}
}

func TestStatusConfigValidate(t *testing.T) {
	ok := StatusConfig{Default: []string{"new", "lead"}, Groups: []TagGroup{{Name: "stage", Tags: []string{"lead", "customer"}, Exclusive: true}}}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []StatusConfig{
		{Default: []string{"lead", "customer"}, Groups: []TagGroup{{Name: "stage", Tags: []string{"lead", "customer"}, Exclusive: true}}},
		{Default: []string{"bad tag"}},
		{Groups: []TagGroup{{Name: "a", Tags: []string{"x"}, Exclusive: true}, {Name: "b", Tags: []string{"x"}, Exclusive: true}}},
		{Groups: []TagGroup{{Name: "a"}}},
		{Groups: []TagGroup{{Name: "a", Tags: []string{"x"}}, {Name: "a", Tags: []string{"y"}}}},
	} {
		if err := bad.Validate(); err == nil {
			t.Errorf("%+v: accepted", bad)
		}
	}
	// Two defaults in a group that is not exclusive are fine.
	if err := (&StatusConfig{Default: []string{"a", "b"}, Groups: []TagGroup{{Name: "g", Tags: []string{"a", "b"}}}}).Validate(); err != nil {
		t.Fatal(err)
	}
}
