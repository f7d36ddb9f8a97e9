package webhooks

import (
	"encoding/json"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/rolodex/rolodex/schemas"
)

// dealerLead is the lead of the worked example (docs/routing.md,
// "Delivery"): values as RoutingLead keeps them, JSON-encoded.
func dealerLead() *Routed {
	return &Routed{Tenant: "demo", Partner: "dealer-sp", Attempt: 2, Rule: "sp", Lead: &schemas.RoutingLead{
		ID: "crm-981", EventID: "ev-1", Type: "lead.created", Time: 1735725600123,
		Properties: map[string]string{"model": `"Onix"`, "region": `"SP"`, "budget": `89900.5`, "financing": `true`,
			"vehicle": `{"model":"Tracker","year":2025}`, "channel": `"site"`},
		Traits:      map[string]string{"name": `"Ana Souza"`},
		Identifiers: map[string][]string{"email": {"ana@example.com", "ana.souza@example.com"}},
		Profile: &schemas.Profile{ID: "p-77", Traits: map[string]json.RawMessage{"name": json.RawMessage(`"Ana S."`),
			"city": json.RawMessage(`"Campinas"`), "score": json.RawMessage(`12`)},
			Identifiers: map[string][]string{"phone": {"+5511912345678"}, "email": {"ana@example.com"}}},
	}}
}

// The mapping of the worked example, as the config file writes it.
const dealerMappingYAML = `
cliente.nome: traits.name
cliente.email: identifiers.email
cliente.telefone: identifiers.phone
cliente.cidade: traits.city
veiculo.modelo: properties.vehicle.model
veiculo.ano: properties.vehicle.year
interesse: properties.model
orcamento: properties.budget
financiamento: properties.financing
origem: "=rolodex"
versao: 2
lead.codigo: lead.id
lead.tentativa: lead.attempt
lead.recebido_em: lead.time
lead.perfil: profile.id
canal: {from: properties.channel, map: {site: WEB, whatsapp: WPP}, default: OUTRO}
regiao: {from: properties.region, map: {SP: 11, RJ: 21}}
uf: {from: properties.state, map: {SP: "São Paulo"}}
campanha: {from: properties.campaign, default: nenhuma}
sobrenome: properties.last_name|traits.name
`

func TestMappingWorkedExample(t *testing.T) {
	var m map[string]any
	if err := yaml.Unmarshal([]byte(dealerMappingYAML), &m); err != nil {
		t.Fatal(err)
	}
	cm, err := CompileMapping(m)
	if err != nil {
		t.Fatal(err)
	}
	body, err := cm.Body(dealerLead())
	if err != nil {
		t.Fatal(err)
	}
	want := `{
	  "cliente": {"nome": "Ana Souza", "email": "ana@example.com", "telefone": "+5511912345678", "cidade": "Campinas"},
	  "veiculo": {"modelo": "Tracker", "ano": 2025},
	  "interesse": "Onix", "orcamento": 89900.5, "financiamento": true,
	  "origem": "rolodex", "versao": 2,
	  "lead": {"codigo": "crm-981", "tentativa": 2, "recebido_em": "2025-01-01T10:00:00.123Z", "perfil": "p-77"},
	  "canal": "WEB", "regiao": 11, "campanha": "nenhuma", "sobrenome": "Ana Souza"}`
	assertJSON(t, body, want)
	// Numbers stay numbers, digit for digit.
	if !strings.Contains(string(body), `"orcamento":89900.5`) || !strings.Contains(string(body), `"ano":2025`) {
		t.Fatalf("numbers changed: %s", body)
	}
	// uf: not in the map and no default: left out, never null.
	if strings.Contains(string(body), "uf") {
		t.Fatalf("an unmapped value without default was written: %s", body)
	}
}

func TestMappingDefaultAndFollowUpBodies(t *testing.T) {
	var nilMapping *Mapping
	body, err := nilMapping.Body(dealerLead())
	if err != nil {
		t.Fatal(err)
	}
	assertJSON(t, body, `{"lead_id":"crm-981","attempt":2,"tenant":"demo","partner":"dealer-sp","rule":"sp",
	  "type":"lead.created","event_id":"ev-1","time":"2025-01-01T10:00:00.123Z","profile_id":"p-77",
	  "properties":{"model":"Onix","region":"SP","budget":89900.5,"financing":true,"vehicle":{"model":"Tracker","year":2025},"channel":"site"},
	  "traits":{"name":"Ana Souza","city":"Campinas","score":12},
	  "identifiers":{"email":["ana@example.com","ana.souza@example.com"],"phone":["+5511912345678"]}}`)
	fu, err := FollowUpBody("demo", "dealer-sp", 1735725600123, &schemas.LeadFollowUp{LeadID: "crm-981", EventID: "ev-9",
		Type: "opportunity.updated", Properties: map[string]string{"stage": `"test_drive"`, "value": `91000`}})
	if err != nil {
		t.Fatal(err)
	}
	assertJSON(t, fu, `{"kind":"follow_up","lead_id":"crm-981","tenant":"demo","partner":"dealer-sp","event_id":"ev-9",
	  "type":"opportunity.updated","time":"2025-01-01T10:00:00.123Z","properties":{"stage":"test_drive","value":91000}}`)
}

func TestMappingRefusals(t *testing.T) {
	for _, c := range []struct {
		m    map[string]any
		want string
	}{
		{map[string]any{"a": "lead.nome"}, "lead.<field>"},
		{map[string]any{"a": "contact.name"}, `unknown source root "contact"`},
		{map[string]any{"a": "properties"}, "names no properties"},
		{map[string]any{"a": "identifiers.email.0"}, "identifiers.<type>"},
		{map[string]any{"a": "profile.tags"}, "profile.id"},
		{map[string]any{"a": "traits..x"}, "empty path segment"},
		{map[string]any{"a..b": "traits.x"}, "empty segment"},
		{map[string]any{"cliente": "traits.name", "cliente.nome": "traits.name"}, "both a value and the object"},
		{map[string]any{"a": map[string]any{"map": map[string]any{"x": "y"}}}, "needs from"},
		{map[string]any{"a": map[string]any{"from": "traits.x", "mapa": map[string]any{}}}, `unknown key "mapa"`},
		{map[string]any{"a": map[string]any{"from": "traits.x", "map": "x"}}, "map must be an object"},
		{map[string]any{"a": nil}, "no source"},
		{map[string]any{"a": []any{"x"}}, "a source is a path"},
	} {
		_, err := CompileMapping(c.m)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("CompileMapping(%v) = %v, want an error with %q", c.m, err, c.want)
		}
	}
}

func TestValidateDelivery(t *testing.T) {
	ok := func() *schemas.PartnerDelivery {
		return &schemas.PartnerDelivery{Webhook: &schemas.WebhookTarget{URL: "https://crm.example/leads", Secret: testSecret, PerMinute: 10, Timeout: "5s"},
			Mapping: map[string]any{"nome": "traits.name"}}
	}
	if err := ValidateDelivery("d", ok()); err != nil {
		t.Fatal(err)
	}
	if err := ValidateDelivery("d", nil); err != nil {
		t.Fatal(err)
	}
	if err := ValidateDelivery("d", &schemas.PartnerDelivery{Kafka: true}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		edit func(d *schemas.PartnerDelivery)
		want string
	}{
		{func(d *schemas.PartnerDelivery) { d.Kafka = true }, "not both"},
		{func(d *schemas.PartnerDelivery) { d.Webhook = nil }, "set webhook"},
		{func(d *schemas.PartnerDelivery) { d.Webhook.URL = "crm.example/leads" }, "absolute http or https"},
		{func(d *schemas.PartnerDelivery) { d.Webhook.URL = "ftp://crm.example/" }, "absolute http or https"},
		{func(d *schemas.PartnerDelivery) { d.Webhook.Secret = "" }, "secret is required"},
		{func(d *schemas.PartnerDelivery) { d.Webhook.Secret = "whsec_not base64!" }, "not base64"},
		{func(d *schemas.PartnerDelivery) { d.Webhook.PerMinute = -1 }, "negative"},
		{func(d *schemas.PartnerDelivery) { d.Webhook.Timeout = "soon" }, "positive Go duration"},
		{func(d *schemas.PartnerDelivery) { d.Webhook.Timeout = "-1s" }, "positive Go duration"},
		{func(d *schemas.PartnerDelivery) { d.Mapping["x"] = "account.name" }, "unknown source root"},
	} {
		d := ok()
		c.edit(d)
		err := ValidateDelivery("dealer-sp", d)
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "partner dealer-sp: delivery") {
			t.Errorf("ValidateDelivery = %v, want an error naming the partner with %q", err, c.want)
		}
	}
}

// assertJSON compares two JSON documents by value, numbers exactly.
func assertJSON(t *testing.T, got []byte, want string) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("got %s: %v", got, err)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("want: %v", err)
	}
	gb, _ := json.Marshal(g)
	wb, _ := json.Marshal(w)
	if string(gb) != string(wb) {
		t.Fatalf("body\n got %s\nwant %s", gb, wb)
	}
}
