package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/lovoo/goka"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rolodex/rolodex/internal/kafkaclient"
	"github.com/rolodex/rolodex/schemas"
)

// The routing and lead commands against dev mode (the real API, routing-
// rule store and lead view on the embedded broker): lead get prints a
// lead of the routing stage's table (written to the table topic here, as
// the stage writes it), routing get prints the tenant's list, routing
// apply replaces it and prints the new version, and reports a refusal
// with the rule and field.
func TestRoutingCommands(t *testing.T) {
	api, kafka := startDevKafka(t)
	write, rolodex := cliEnv(t, api)

	// A lead of tenant demo in the routing stage's table.
	at := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	table := schemas.RoutingTable{Tenant: "demo", At: at.UnixMilli(), Leads: map[string]*schemas.LeadState{
		"L-1": {ID: "L-1", Status: schemas.LeadRouted, Partner: "demo", Tried: []string{"demo"}, Deadline: at.Add(30 * time.Minute).UnixMilli(),
			Lead: &schemas.RoutingLead{ID: "L-1", EventID: "e-1", Type: "lead.created", Time: at.UnixMilli(), Properties: map[string]string{"region": `"SP"`}},
			History: []schemas.RoutingDecision{{Attempt: 1, Cause: schemas.CauseLead, At: at.UnixMilli(), Rule: "sp", RuleVersion: 1, Partner: "demo",
				Candidates: []schemas.RoutingCandidate{{Rule: "sp", Partner: "demo"}}}}},
	}}
	val, err := json.Marshal(&table)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := kafkaclient.NewClient(kafkaclient.Config{Brokers: []string{kafka}})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	rec := &kgo.Record{Topic: string(goka.GroupTable(schemas.GroupRouting)), Key: []byte("demo"), Value: val}
	if err := cl.ProduceSync(context.Background(), rec).FirstErr(); err != nil {
		t.Fatal(err)
	}
	var out, errOut string
	var code int
	eventually(t, "lead get L-1 prints the lead", func() bool {
		out, errOut, code = rolodex("lead", "get", "L-1")
		return code == 0
	})
	for _, want := range []string{`"id": "L-1"`, `"status": "routed"`, `"deadline": "2026-12-06T10:30:00Z"`, `"region": "SP"`, `"rule": "sp"`, `"at": "2026-12-06T10:00:00Z"`} {
		if !strings.Contains(out, want) {
			t.Errorf("lead get: stdout lacks %s:\n%s", want, out)
		}
	}
	if _, errOut, code = rolodex("lead", "get", "nope"); code != 1 || !strings.Contains(errOut, "lead: no lead nope in this tenant (404 not_found)") {
		t.Fatalf("lead get nope: exit %d, stderr %q", code, errOut)
	}
	if _, _, code = rolodex("lead", "get"); code != 2 {
		t.Fatalf("lead get without an id: exit %d, want 2", code)
	}

	eventually(t, "the routing-rule store is ready", func() bool {
		out, errOut, code = rolodex("routing", "get")
		return code == 0
	})
	if !strings.Contains(out, `"version": 0`) || !strings.Contains(out, `"rules": []`) {
		t.Fatalf("routing get before any apply:\n%s", out)
	}
	good := write("routing.yaml", `
rules:
  - id: sp
    condition: 'lead.properties.region == "SP"'
    strategy: weighted
    pool: [{partner: dealer-sp, weight: 2}]
    cap_per_day: {dealer-sp: 50}
    sla: 30m
    max_reroutes: 2
    fallback: national
  - {id: national, condition: "true", strategy: round_robin, pool: [{partner: dealer-rj}]}
`)
	if out, errOut, code = rolodex("routing", "apply", "-f", good); code != 0 || out != "routing rules: version 1 (2 rules)\n" {
		t.Fatalf("routing apply: exit %d, stderr %q, stdout %q", code, errOut, out)
	}
	if out, errOut, code = rolodex("routing", "apply", "-f", good); code != 0 || out != "routing rules: version 2 (2 rules)\n" {
		t.Fatalf("routing apply again: exit %d, stderr %q, stdout %q", code, errOut, out)
	}
	out, _, code = rolodex("routing", "get")
	if code != 0 || !strings.Contains(out, `"version": 2`) || !strings.Contains(out, `"sla": "30m"`) || !strings.Contains(out, `"updated_by": "demo"`) ||
		strings.Index(out, `"id": "sp"`) > strings.Index(out, `"id": "national"`) {
		t.Fatalf("routing get: exit %d:\n%s", code, out)
	}

	// Refusals: the API's, naming the rule and field; the file's.
	for _, tt := range []struct{ body, want string }{
		{"rules:\n  - {id: sp, condition: 'true', strategy: first, pool: [{partner: dealer-x}]}\n",
			`routing apply: rule 1 (sp): pool[0].partner: "dealer-x" is not a partner of this tenant with a delivery (400 invalid_rules)`},
		{"rules:\n  - {id: sp, condition: 'lead.properties.region ==', strategy: first, pool: [{partner: dealer-rj}]}\n",
			"routing apply: rule 1 (sp): condition: refused at 1:26 (syntax): "},
		{"rules:\n  - {id: a, condition: 'true', strategy: first, pool: [{partner: dealer-rj}], fallback: b}\n  - {id: b, condition: 'true', strategy: first, pool: [{partner: dealer-rj}], fallback: a}\n",
			"routing apply: rule 1 (a): fallback: a cycle of fallbacks: a -> b -> a (400 invalid_rules)"},
		{"rules:\n  - {id: a, condition: 'true', strategy: first, pool: [{partner: dealer-rj}], slaa: 1h}\n", `unknown field "slaa" (400 bad_request)`},
		{"- id: a\n", "want rules: a list of {id, condition, strategy, pool, ...}"},
		{"rule: []\n", "field rule not found"},
		{"rules:\n", "rules: is missing or null (write rules: [] to remove every rule)"},
		{"", "empty (want rules: a list of {id, condition, strategy, pool, ...})"},
	} {
		_, errOut, code := rolodex("routing", "apply", "-f", write("bad.yaml", tt.body))
		if code != 1 || !strings.Contains(errOut, tt.want) {
			t.Errorf("apply %q: exit %d, stderr %q, want %q", tt.body, code, errOut, tt.want)
		}
	}
	if out, _, _ = rolodex("routing", "get"); !strings.Contains(out, `"version": 2`) {
		t.Fatalf("refused applies changed the list:\n%s", out)
	}
	// An empty list removes every rule.
	if out, errOut, code = rolodex("routing", "apply", "-f", write("none.yaml", "rules: []\n")); code != 0 || out != "routing rules: version 3 (0 rules)\n" {
		t.Fatalf("routing apply of rules: []: exit %d, stderr %q, stdout %q", code, errOut, out)
	}
	if _, _, code = rolodex("routing", "apply"); code != 2 {
		t.Errorf("apply without -f: exit %d, want 2", code)
	}
	if _, _, code = rolodex("routing", "get", "x"); code != 2 {
		t.Errorf("routing get with an argument: exit %d, want 2", code)
	}
}
