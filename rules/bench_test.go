package rules

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/rolodex/rolodex/schemas"
)

// benchProfile is a profile of typical size: 20 traits (14 strings, 4
// numbers, 2 objects), 4 identifier
// types, 10 counters, 3 tags, 2 consents, 50 kept page views.
func benchProfile() (*schemas.Profile, map[string][]time.Time) {
	p := &schemas.Profile{ID: "p", Tenant: "t", Traits: map[string]json.RawMessage{"city": json.RawMessage(`"Campinas"`)},
		Identifiers: map[string][]string{"email": {"a@b.c"}, "phone": {"+5519999999999"}, "cookie": {"c1", "c2"}, "external:crm": {"42"}},
		Counters:    map[string]int64{"form.submitted": 1, "page.viewed": 50}, EventCount: 60,
		FirstSeen: base.Add(-1000 * time.Hour).Format(time.RFC3339Nano), LastSeen: base.Add(-time.Hour).Format(time.RFC3339Nano),
		Tags:     []schemas.ProfileTag{{Tag: "new"}, {Tag: "lead"}, {Tag: "vip"}},
		Consent:  map[string]schemas.ConsentState{"marketing": {Status: "granted"}, "analytics": {Status: "denied"}},
		Channels: map[string][]string{"email": {"a@b.c"}, "sms": {"+5519999999999"}}}
	for i := 0; i < 19; i++ {
		v := `"some text value"`
		switch {
		case i < 4:
			v = `1234`
		case i < 6:
			v = `{"x": 1, "y": "text"}`
		}
		p.Traits[string(rune('a'+i))+"_trait"] = json.RawMessage(v)
	}
	for i := 0; i < 8; i++ {
		p.Counters[string(rune('a'+i))+".event"] = int64(i)
	}
	var views []time.Time
	for i := 0; i < 50; i++ {
		views = append(views, base.Add(-time.Duration(i)*5*time.Hour))
	}
	return p, map[string][]time.Time{"page.viewed": views}
}

// BenchmarkEval: one rule on one profile's Input (the Input is built once
// per profile update and shared by every rule).
func BenchmarkEval(b *testing.B) {
	pr, times := benchProfile()
	in := FromProfile(pr, times, base)
	for _, c := range []struct{ name, cond string }{
		{"views", viewsRule}, {"lapsed", lapsedRule}, {"campinas", campinasRule}, {"form", formRule},
	} {
		p := mustCompile(b, c.cond)
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := p.Eval(in); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkFromProfile: building the Input of a profile (once per update).
func BenchmarkFromProfile(b *testing.B) {
	pr, times := benchProfile()
	b.ReportAllocs()
	for b.Loop() {
		FromProfile(pr, times, base)
	}
}

// BenchmarkNextChange: the scheduler's question after an evaluation.
func BenchmarkNextChange(b *testing.B) {
	pr, times := benchProfile()
	in := FromProfile(pr, times, base)
	for _, c := range []struct{ name, cond string }{{"views", viewsRule}, {"lapsed", lapsedRule}} {
		p := mustCompile(b, c.cond)
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				p.NextChange(in)
			}
		})
	}
}
