package rules

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/rolodex/rolodex/schemas"
)

func testLead() *schemas.RoutingLead {
	return &schemas.RoutingLead{ID: "L1", EventID: "e1", Type: "lead.created", Time: base.Add(-time.Minute).UnixMilli(),
		Properties:  map[string]string{"region": `"SP"`, "value": `42000`, "model": `{"name":"Onix","year":2025}`},
		Traits:      map[string]string{"name": `"Ana"`},
		Identifiers: map[string][]string{"email": {"ana@example.com"}},
		Profile: &schemas.Profile{ID: "p1", Tenant: "t", Traits: map[string]json.RawMessage{"city": json.RawMessage(`"Campinas"`)},
			Consent: map[string]schemas.ConsentState{"lead_sharing": {Status: schemas.ConsentGranted}}}}
}

func TestLeadConditions(t *testing.T) {
	in := FromLead(testLead(), base)
	cases := []struct {
		cond string
		want bool
	}{
		{`lead.properties.region == "SP"`, true},
		{`lead.properties.region == "RJ"`, false},
		{`lead.properties.value >= 40000 && lead.type == "lead.created"`, true},
		{`lead.properties.model.name == "Onix"`, true},
		{`lead.traits.name == "Ana" && "ana@example.com" in lead.identifiers.email`, true},
		{`lead.id == "L1"`, true},
		{`lead.time < timestamp("2025-06-01T12:00:00Z")`, true},
		{`traits.city == "Campinas" && consent["lead_sharing"] == "granted" && !blacklisted`, true},
		{`has(lead.properties.product) && lead.properties.product == "truck"`, false},
	}
	for _, c := range cases {
		t.Run(c.cond, func(t *testing.T) {
			p, err := CompileLead(c.cond)
			if err != nil {
				t.Fatal(err)
			}
			got, err := p.Eval(in)
			if err != nil {
				t.Fatal(err)
			}
			if got != c.want {
				t.Fatalf("got %v, want %v", got, c.want)
			}
		})
	}
}

// The tag-rule environment stays as it was: lead is unknown there, and a
// comprehension variable named lead is still allowed.
func TestLeadOnlyInLeadEnvironment(t *testing.T) {
	_, err := Compile(`lead.properties.region == "SP"`)
	var re *Error
	if !errors.As(err, &re) || re.Reason != ReasonType {
		t.Fatalf("Compile with lead: %v, want a type refusal", err)
	}
	mustCompile(t, `tags.exists(lead, lead == "vip")`)
	if _, err := CompileLead(`tags.exists(lead, lead == "vip")`); !errors.As(err, &re) || re.Reason != ReasonType {
		t.Fatalf("CompileLead shadowing lead: %v, want a type refusal", err)
	}
}

func TestLeadProfileless(t *testing.T) {
	l := testLead()
	l.Profile = nil
	p, err := CompileLead(`!blacklisted && size(traits) == 0 && lead.properties.region == "SP"`)
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := p.Eval(FromLead(l, base)); err != nil || !ok {
		t.Fatalf("got %v, %v", ok, err)
	}
	// A missing property is a run-time error, as for traits.
	p, _ = CompileLead(`lead.properties.product == "truck"`)
	if _, err := p.Eval(FromLead(l, base)); err == nil {
		t.Fatal("missing property: no error")
	}
}

func TestLeadExplain(t *testing.T) {
	p, err := CompileLead(`lead.properties.region == "SP" && traits.city == "Campinas"`)
	if err != nil {
		t.Fatal(err)
	}
	ok, reads, err := p.Explain(FromLead(testLead(), base))
	if err != nil || !ok {
		t.Fatalf("Explain: %v, %v", ok, err)
	}
	if len(reads) != 2 || reads[0].Expr != "lead.properties.region" || reads[0].Value != "SP" {
		t.Fatalf("reads %+v", reads)
	}
}
