package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/rolodex/rolodex/docs"
	"github.com/rolodex/rolodex/docs/openapitest"
	"github.com/rolodex/rolodex/internal/devbroker"
)

// documentOperations returns every operation of docs/openapi.yaml as
// "METHOD /path".
func documentOperations(t *testing.T) []string {
	t.Helper()
	var doc struct {
		Paths map[string]map[string]yaml.Node `yaml:"paths"`
	}
	if err := yaml.Unmarshal(docs.OpenAPIYAML, &doc); err != nil {
		t.Fatal(err)
	}
	var ops []string
	for path, item := range doc.Paths {
		for method := range item {
			switch method {
			case "get", "put", "post", "delete", "options", "head", "patch", "trace":
				ops = append(ops, strings.ToUpper(method)+" "+path)
			}
		}
	}
	slices.Sort(ops)
	return ops
}

// mountedRoutes starts a server of components on broker, as the rolodex
// commands do (the built-in configuration), and returns every route
// pattern it mounted.
func mountedRoutes(t *testing.T, brokers []string, components []component) []string {
	t.Helper()
	cfg, err := loadServerConfig("")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var patterns []string
	opts := serverOptions{brokers: brokers, httpAddr: "127.0.0.1:0", cfg: cfg, dev: true,
		mounted: func(p []string) { patterns = slices.Clone(p) },
		ready:   func(*fileConfig, string) { cancel() }, // listening: every route is mounted
	}
	if err := runServer(ctx, opts, slog.New(slog.NewTextHandler(io.Discard, nil)), components...); err != nil {
		t.Fatalf("server: %v", err)
	}
	slices.Sort(patterns)
	return patterns
}

// The document and the servers agree, route for route: dev mode mounts
// exactly the operations of docs/openapi.yaml (a route the document lacks,
// or an operation no route serves, fails here), and "rolodex run ingest"
// and "rolodex run api" mount some of them, and the document. Every route
// is registered with its method, so that the pattern is the operation.
func TestRoutesMatchOpenAPI(t *testing.T) {
	cluster, err := devbroker.Start(devbroker.Config{Addr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	brokers := cluster.ListenAddrs()
	documented := documentOperations(t)
	if len(documented) < 10 {
		t.Fatalf("the document has %d operations: %v", len(documented), documented)
	}
	for _, srv := range []struct {
		name       string
		components func(state string) []component
		all        bool // serves every operation
	}{
		{"dev", devComponents, true},
		{"run ingest", func(string) []component { return ingestComponents() }, false},
		{"run api", apiComponents, false},
	} {
		t.Run(srv.name, func(t *testing.T) {
			mounted := mountedRoutes(t, brokers, srv.components(t.TempDir()))
			for _, p := range mounted {
				method, path, ok := strings.Cut(p, " ")
				if !ok || method == "" || !strings.HasPrefix(path, "/") {
					t.Errorf("route %q has no method: register \"METHOD /path\", the operation the document describes", p)
					continue
				}
				if !slices.Contains(documented, p) {
					t.Errorf("%s serves %s, which docs/openapi.yaml lacks: document it (paths: %s: %s:)", srv.name, p, path, strings.ToLower(method))
				}
			}
			for _, want := range []string{"GET /openapi.yaml", "GET /openapi.json", "GET /healthz", "GET /metrics"} {
				if !slices.Contains(mounted, want) {
					t.Errorf("%s does not serve %s", srv.name, want)
				}
			}
			if !srv.all {
				return
			}
			for _, op := range documented {
				if !slices.Contains(mounted, op) {
					t.Errorf("docs/openapi.yaml has %s, which no route serves", op)
				}
			}
		})
	}
}

// The document is served without a key, in YAML as written and in JSON.
func TestServesOpenAPI(t *testing.T) {
	e := &env{mux: newRouter()}
	if err := openapiComponent(e); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(e.mux)
	defer srv.Close()
	for _, tt := range []struct{ path, ctype string }{{"/openapi.yaml", "application/yaml"}, {"/openapi.json", "application/json"}} {
		res, err := http.Get(srv.URL + tt.path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusOK || res.Header.Get("Content-Type") != tt.ctype {
			t.Fatalf("GET %s: %d %s", tt.path, res.StatusCode, res.Header.Get("Content-Type"))
		}
		var doc struct {
			OpenAPI string         `json:"openapi" yaml:"openapi"`
			Paths   map[string]any `json:"paths" yaml:"paths"`
		}
		if tt.ctype == "application/json" {
			err = json.Unmarshal(body, &doc)
		} else {
			if string(body) != string(docs.OpenAPIYAML) {
				t.Fatal("GET /openapi.yaml is not docs/openapi.yaml")
			}
			err = yaml.Unmarshal(body, &doc)
		}
		if err != nil || !strings.HasPrefix(doc.OpenAPI, "3.1") || doc.Paths["/v1/events"] == nil {
			t.Fatalf("GET %s: openapi %q, %d paths, %v", tt.path, doc.OpenAPI, len(doc.Paths), err)
		}
	}
}

// A request no route matches is answered in JSON like every other error:
// 404 not_found, or 405 method_not_allowed with the Allow header.
func TestRouterAnswersJSON(t *testing.T) {
	r := newRouter()
	r.HandleFunc("POST /v1/things/{id}", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusAccepted) })
	r.HandleFunc("POST /v1/items/special", func(w http.ResponseWriter, _ *http.Request) {})
	r.HandleFunc("GET /v1/items/{id}", func(w http.ResponseWriter, _ *http.Request) {})
	r.HandleFunc("PUT /v1/items/{id}", func(w http.ResponseWriter, _ *http.Request) {})
	srv := httptest.NewServer(r)
	defer srv.Close()
	for _, tt := range []struct {
		method, path string
		status       int
		code, allow  string
	}{
		{"POST", "/v1/things/1", http.StatusAccepted, "", ""},
		{"GET", "/v1/things/1", http.StatusMethodNotAllowed, "method_not_allowed", "POST"},
		{"DELETE", "/v1/things/1", http.StatusMethodNotAllowed, "method_not_allowed", "POST"},
		{"GET", "/v1/nothing", http.StatusNotFound, "not_found", ""},
		// The methods of the most specific path only: /v1/items/special
		// takes POST; GET and PUT are /v1/items/{id}'s.
		{"OPTIONS", "/v1/items/special", http.StatusMethodNotAllowed, "method_not_allowed", "POST"},
		{"PATCH", "/v1/items/2", http.StatusMethodNotAllowed, "method_not_allowed", "GET, HEAD, PUT"},
		{"POST", "/v1/things/", http.StatusNotFound, "not_found", ""},
	} {
		req, _ := http.NewRequest(tt.method, srv.URL+tt.path, nil)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != tt.status {
			t.Errorf("%s %s: %d, want %d", tt.method, tt.path, res.StatusCode, tt.status)
			continue
		}
		if tt.code == "" {
			continue
		}
		var e struct {
			Error     string `json:"error"`
			Message   string `json:"message"`
			RequestID string `json:"request_id"`
		}
		if err := json.Unmarshal(body, &e); err != nil || e.Error != tt.code || e.Message == "" ||
			res.Header.Get("Content-Type") != "application/json" || e.RequestID == "" || res.Header.Get("X-Request-Id") != e.RequestID {
			t.Errorf("%s %s: %s %q (%v)", tt.method, tt.path, res.Header.Get("Content-Type"), body, err)
		}
		if got := res.Header.Get("Allow"); got != tt.allow {
			t.Errorf("%s %s: Allow %q, want %q", tt.method, tt.path, got, tt.allow)
		}
	}
}

// Dev mode's answers are the ones docs/openapi.yaml declares (status,
// content type, body schema), for a request of every operation, the
// README's examples and the errors around them; among them the
// regressions the contract tier (scripts/contract) found.
func TestDevAnswersMatchOpenAPI(t *testing.T) {
	contract, err := openapitest.Load()
	if err != nil {
		t.Fatal(err)
	}
	api := startDev(t)
	do := func(method, path, ctype, body string, headers ...string) (int, []byte) {
		t.Helper()
		req, err := http.NewRequest(method, api+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer demo-key")
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		for i := 0; i+1 < len(headers); i += 2 {
			req.Header.Set(headers[i], headers[i+1])
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if err := contract.CheckResponse(req, res, raw); err != nil {
			t.Errorf("the answer is not the document's: %v", err)
		}
		return res.StatusCode, raw
	}
	const ctJSON = "application/json"
	type call struct {
		method, path, ctype, body string
		status                    int
		headers                   []string
	}
	run := func(calls []call) {
		t.Helper()
		for _, c := range calls {
			if status, body := do(c.method, c.path, c.ctype, c.body, c.headers...); status != c.status {
				t.Errorf("%s %s %s: %d %s, want %d", c.method, c.path, c.body, status, body, c.status)
			}
		}
	}
	// The profile view answers 503 not_ready until it has read the table
	// once; the calls below expect the answers of a ready view.
	eventually(t, "the profile view is ready", func() bool {
		status, _ := do("GET", "/v1/profiles/p_0000000000000000000000000a", "", "")
		return status != http.StatusServiceUnavailable
	})
	run([]call{
		{"POST", "/v1/events", ctJSON, `{"id":"e-1","type":"page.viewed","time":"2026-11-22T10:00:00Z","source":"web","identifiers":{"email":"Ana@Example.com","phone":"+55 11 91234-5678","user_id":"u-1"},"traits":{"name":"Ana","city":"Campinas"},"properties":{"url":"/cars/42"}}`, 202, nil},
		{"POST", "/v1/events", ctJSON, `[{"id":"e-2","type":"page.viewed","identifiers":{"email":"ana@example.com","phone":"000"}}]`, 202, nil}, // a warning
		{"POST", "/v1/events", ctJSON, `[{"id":"e-3","type":"page.viewed","identifiers":{"email":"ana@example.com"}},{"id":"e-4","identifiers":{}}]`, 400, nil},
		{"POST", "/v1/events", ctJSON, `not json`, 400, nil},
		{"POST", "/v1/events", "text/plain", `{}`, 415, nil},
		{"POST", "/v1/events", "application/cloudevents+json", `{"specversion":"1.0","id":"ce-1","type":"signup","source":"/web","data":{"identifiers":{"email":"bia@example.com"},"traits":{"plan":"pro"}}}`, 202, nil},
		{"POST", "/v1/events", "application/cloudevents-batch+json", `[]`, 202, nil},
		{"POST", "/v1/events", ctJSON, `{"identifiers":{"whatsapp":"+55 11 91234-5678"},"properties":{"text":"oi"}}`, 202,
			[]string{"ce-specversion", "1.0", "ce-id", "ce-2", "ce-type", "whatsapp.message", "ce-source", "wa"}},
		{"POST", "/v1/webhooks/crm-lead", ctJSON, `{"lead":{"id":"L-1001","created_at":"2026-11-22T10:00:00Z","contact":{"name":"Ana Souza","email":"Ana@Example.com","phone":"(11) 91234-5678"},"address":{"city":"Campinas","state":"SP"},"product":{"model":"Compass","interest":"test-drive"}}}`, 202, nil},
		// The email providers' mappings the built-in configuration ships (docs/webhooks.md).
		{"POST", "/v1/webhooks/sendgrid", ctJSON, `[{"email":"gil@example.com","timestamp":1764151200,"event":"delivered","sg_event_id":"sg-1","sg_message_id":"14c5d75ce93.filter1.0"},{"email":"gil@example.com","timestamp":1764151300,"event":"bounce","type":"blocked","sg_event_id":"sg-2","sg_message_id":"14c5d75ce93.filter1.0"}]`, 202, nil},
		// A batch is accepted in part: the 202 lists the rejected element; a lone bad payload is 400.
		{"POST", "/v1/webhooks/sendgrid", ctJSON, `[{"email":"gil@example.com","timestamp":1764151400,"event":"open","sg_event_id":"sg-4","sg_message_id":"14c5d75ce93.filter1.0"},{"email":"gil@example.com","timestamp":"soon","event":"open","sg_event_id":"sg-3","sg_message_id":"14c5d75ce93.filter1.0"}]`, 202, nil},
		{"POST", "/v1/webhooks/sendgrid", ctJSON, `{"email":"gil@example.com","timestamp":"soon","event":"open","sg_event_id":"sg-3","sg_message_id":"14c5d75ce93.filter1.0"}`, 400, nil},
		{"POST", "/v1/webhooks/mailgun", ctJSON, `{"signature":{"timestamp":"1764151200","token":"t","signature":"s"},"event-data":{"id":"mg-1","timestamp":1764151200.5,"event":"opened","recipient":"gil@example.com","message":{"headers":{"message-id":"20251126.1@mg.example.com"}}}}`, 202, nil},
		{"POST", "/v1/webhooks/postmark", ctJSON, `{"RecordType":"Delivery","MessageID":"883953f4-6105-42a2-a16a-77a8eac79483","Recipient":"gil@example.com","DeliveredAt":"2025-11-26T10:01:00Z"}`, 202,
			[]string{"Authorization", "Basic " + base64.StdEncoding.EncodeToString([]byte("postmark:demo-key"))}},
		{"POST", "/v1/webhooks/nope", ctJSON, `{}`, 404, nil},
		{"GET", "/v1/profiles/nope", "", "", 400, nil},
		{"GET", "/v1/profiles/p_0000000000000000000000000a", "", "", 404, nil},
		{"GET", "/v1/lookup?type=email", "", "", 400, nil},
		{"GET", "/v1/lookup?type=email&value=ana@", "", "", 400, nil},
		{"GET", "/healthz", "", "", 200, nil},
		{"GET", "/metrics", "", "", 200, nil},
		{"GET", "/openapi.yaml", "", "", 200, nil},
		{"GET", "/openapi.json", "", "", 200, nil},
	})
	// Once her three events (e-1, e-2, the webhook's lead) are folded and
	// her four identifiers (email, phone, user_id, the lead's CRM id) are
	// one profile, its id is final. Three events alone are not enough: the
	// CRM id's node may still be merging in, and if its node id is the
	// smallest the profile's id changes once it has.
	var id string
	eventually(t, "Ana's profile with her three events and four identifiers", func() bool {
		status, body := do("GET", "/v1/lookup?type=email&value=ana@example.com", "", "")
		var p struct {
			ID         string   `json:"id"`
			EventCount int      `json:"event_count"`
			MergedIDs  []string `json:"merged_ids"`
		}
		_ = json.Unmarshal(body, &p)
		id = p.ID
		return status == http.StatusOK && p.EventCount == 3 && len(p.MergedIDs) == 3
	})
	run([]call{
		{"GET", "/v1/profiles/" + id, "", "", 200, nil},
		{"POST", "/v1/profiles/" + id + "/tags", ctJSON, `{"add":["vip","lead"],"remove":["new"]}`, 202, nil},
		{"POST", "/v1/profiles/" + id + "/tags", ctJSON, `{}`, 400, nil},
		{"POST", "/v1/tags/vip", ctJSON, `{"action":"add","identifiers":[{"type":"email","value":"Ana@Example.com"},{"type":"phone","value":"(11) 98888-7777"},{"type":"email","value":"ana@"}]}`, 202, nil},
		{"POST", "/v1/blacklist", ctJSON, `{"profiles":["` + id + `"],"reason":"asked to be left alone"}`, 202, []string{"Idempotency-Key", "k-1"}},
		{"POST", "/v1/blacklist", ctJSON, `{"profiles":["` + id + `"],"identifiers":[{"type":"email","value":"a@b.co"}]}`, 400, nil},
		{"PUT", "/v1/profiles/" + id + "/consent/marketing", ctJSON, `{"status":"granted","expires_at":"2999-01-31T00:00:00Z"}`, 202, nil},
		{"PUT", "/v1/profiles/" + id + "/consent/marketing", ctJSON, `{"status":"granted","expires_at":""}`, 400, nil}, // contract tier finding
		{"GET", "/v1/blacklist?limit=", "", "", 400, nil}, // contract tier finding
	})
	eventually(t, "the blacklist lists Ana", func() bool {
		_, body := do("GET", "/v1/blacklist?limit=10", "", "")
		return strings.Contains(string(body), id)
	})
	eventually(t, "Ana's profile shows her status", func() bool {
		_, body := do("GET", "/v1/profiles/"+id, "", "")
		return strings.Contains(string(body), `"blacklisted": true`) && strings.Contains(string(body), `"marketing"`) && strings.Contains(string(body), `"vip"`)
	})
	run([]call{
		{"DELETE", "/v1/blacklist/" + id, "", "", 202, nil},
		{"DELETE", "/v1/blacklist/p_0000000000000000000000000a", "", "", 404, nil},
	})
	// Tag rules: the rule store answers 503 not_ready until it has read
	// rolodex.tag.rules once.
	eventually(t, "the rule store is ready", func() bool {
		status, _ := do("GET", "/v1/tag-rules", "", "")
		return status != http.StatusServiceUnavailable
	})
	hot := `{"tag":"hot-lead","condition":"events(\"page.viewed\", duration(\"168h\")) >= 1","description":"a view in 7 days"}`
	run([]call{
		{"PUT", "/v1/tag-rules/hot-lead", ctJSON, hot, 200, nil},
		{"PUT", "/v1/tag-rules/hot-lead", ctJSON, hot, 200, nil}, // unchanged
		{"PUT", "/v1/tag-rules/campinas", ctJSON, `{"tag":"campinas","condition":"has(traits.city) && traits.city == \"Campinas\"","enabled":false}`, 200, nil},
		{"PUT", "/v1/tag-rules/bad", ctJSON, `{"tag":"t","condition":"traits.city == "}`, 400, nil},
		{"PUT", "/v1/tag-rules/bad", ctJSON, `{"tag":"t","condition":"events(\"a\", duration(\"1h\")) >= 101"}`, 400, nil},
		{"PUT", "/v1/tag-rules/bad", ctJSON, `{"tag":"no tag","condition":"true"}`, 400, nil},
		{"GET", "/v1/tag-rules", "", "", 200, nil},
		{"GET", "/v1/tag-rules/hot-lead", "", "", 200, nil},
		{"GET", "/v1/tag-rules/bad", "", "", 404, nil},
		{"POST", "/v1/tag-rules/evaluate", ctJSON, `{"condition":"events(\"page.viewed\", duration(\"876000h\")) >= 2 && traits.city == \"Campinas\"","profile":"` + id + `"}`, 200, nil},
		{"POST", "/v1/tag-rules/evaluate", ctJSON, `{"condition":"last(\"purchase.completed\") < now - duration(\"2160h\")","profile":{"event_times":{"purchase.completed":["2026-11-01T00:00:00Z",1793491200000]}},"now":"2026-12-06T12:00:00Z"}`, 200, nil},
		{"POST", "/v1/tag-rules/evaluate", ctJSON, `{"condition":"traits.plan == \"pro\"","profile":"` + id + `"}`, 200, nil}, // a runtime error
		{"POST", "/v1/tag-rules/evaluate", ctJSON, `{"condition":"traits.city == ","profile":"` + id + `"}`, 400, nil},
		{"POST", "/v1/tag-rules/evaluate", ctJSON, `{"condition":"true","profile":"p_0000000000000000000000000a"}`, 404, nil},
		{"DELETE", "/v1/tag-rules/hot-lead", "", "", 204, nil},
		{"DELETE", "/v1/tag-rules/hot-lead", "", "", 404, nil},
		{"GET", "/v1/tag-rules/hot-lead", "", "", 404, nil},
	})
	// Messages: the message view answers 503 not_ready until it has read
	// the lifecycle's table once; a message shows once the lifecycle
	// folded its events.
	eventually(t, "the message view is ready", func() bool {
		status, _ := do("GET", "/v1/messages/nope", "", "")
		return status != http.StatusServiceUnavailable
	})
	run([]call{
		{"POST", "/v1/events", ctJSON, `[{"id":"m-e1","type":"message.sent","time":"2026-11-22T10:00:00Z","identifiers":{"email":"ana@example.com"},"properties":{"message_id":"camp/1","channel":"email"}},` +
			`{"id":"m-e2","type":"message.opened","time":"2026-11-22T10:05:00Z","identifiers":{"email":"ana@example.com"},"properties":{"message_id":"camp/1","provider_event_id":"sg-1"}},` +
			`{"id":"m-e3","type":"message.deleted","time":"2026-11-22T10:06:00Z","identifiers":{"email":"ana@example.com"},"properties":{"message_id":"camp/1"}}]`, 202, nil},
		{"POST", "/v1/events", ctJSON, `{"id":"m-bad","type":"message.bounced","identifiers":{"email":"ana@example.com"},"properties":{"message_id":"camp/1","bounce":"permanent"}}`, 400, nil},
		{"GET", "/v1/messages/nope", "", "", 404, nil},
		{"GET", "/v1/messages/%20camp", "", "", 400, nil},
	})
	eventually(t, "message camp/1 opened, its delete refused", func() bool {
		status, body := do("GET", "/v1/messages/camp%2F1", "", "")
		return status == http.StatusOK && strings.Contains(string(body), `"state": "opened"`) && strings.Contains(string(body), `"asked": "deleted"`)
	})
	// Routing rules: the store answers 503 not_ready until it has read
	// rolodex.routing.rules once; leads: the view until it has read the
	// routing stage's table.
	eventually(t, "the routing-rule store is ready", func() bool {
		status, _ := do("GET", "/v1/routing/rules", "", "")
		return status != http.StatusServiceUnavailable
	})
	eventually(t, "the lead view is ready", func() bool {
		status, _ := do("GET", "/v1/leads/nope", "", "")
		return status != http.StatusServiceUnavailable
	})
	run([]call{
		{"GET", "/v1/routing/rules", "", "", 200, nil},
		{"PUT", "/v1/routing/rules", ctJSON, `{"rules":[{"id":"sp","condition":"lead.properties.region == \"SP\"","strategy":"weighted","pool":[{"partner":"dealer-sp","weight":2}],"cap_per_day":{"dealer-sp":50},"sla":"30m","max_reroutes":2,"fallback":"national"},` +
			`{"id":"national","condition":"true","strategy":"round_robin","pool":[{"partner":"dealer-rj"}],"outside_hours":true}]}`, 200, nil},
		{"GET", "/v1/routing/rules", "", "", 200, nil},
		{"PUT", "/v1/routing/rules", ctJSON, `{"rules":[{"id":"sp","condition":"true","strategy":"first","pool":[{"partner":"dealer-x"}]}]}`, 400, nil},
		{"PUT", "/v1/routing/rules", ctJSON, `{"rules":[{"id":"sp","condition":"lead.properties.region ==","strategy":"first","pool":[{"partner":"dealer-rj"}]}]}`, 400, nil},
		{"PUT", "/v1/routing/rules", ctJSON, `{}`, 400, nil},
		{"GET", "/v1/leads/nope", "", "", 404, nil},
		{"GET", "/v1/leads/%20x", "", "", 400, nil},
	})
	// Partner fan-out: the stores answer 503 not_ready until they have
	// read their topics once.
	eventually(t, "the fan-out stores are ready", func() bool {
		status, _ := do("GET", "/v1/topics", "", "")
		return status != http.StatusServiceUnavailable
	})
	run([]call{
		{"POST", "/v1/topics", ctJSON, `{"name":"car-chosen","description":"a customer chose a car","allowed":["demo"],"requires_consent":"partner_offers","include_profile":["traits.name","identifiers.email"]}`, 201, nil},
		{"POST", "/v1/topics", ctJSON, `{"name":"car-chosen"}`, 409, nil},
		{"POST", "/v1/topics", ctJSON, `{"name":"x","allowed":["nobody"]}`, 400, nil},
		{"GET", "/v1/topics", "", "", 200, nil},
		{"PUT", "/v1/topics/car-chosen/access", ctJSON, `{"allowed":["demo"]}`, 200, nil},
		{"PUT", "/v1/topics/nope/access", ctJSON, `{"allowed":[]}`, 404, nil},
		{"POST", "/v1/subscriptions", ctJSON, `{"topic":"car-chosen","kafka":true}`, 201, nil},
		{"POST", "/v1/subscriptions", ctJSON, `{"topic":"car-chosen","kafka":true}`, 409, nil},
		{"POST", "/v1/subscriptions", ctJSON, `{"topic":"car-chosen","webhook":{"url":"https://bank.example/hooks"}}`, 201, nil},
		{"POST", "/v1/subscriptions", ctJSON, `{"topic":"nope","kafka":true}`, 404, nil},
		{"POST", "/v1/subscriptions", ctJSON, `{"topic":"car-chosen"}`, 400, nil},
		{"GET", "/v1/subscriptions", "", "", 200, nil},
		{"GET", "/v1/subscriptions/sub_00000000000000000000000000000000", "", "", 404, nil},
		{"GET", "/v1/subscriptions/x", "", "", 400, nil},
	})
	_, body := do("GET", "/v1/subscriptions", "", "")
	var subs struct {
		Subscriptions []struct{ ID string } `json:"subscriptions"`
	}
	if err := json.Unmarshal(body, &subs); err != nil || len(subs.Subscriptions) != 2 {
		t.Fatalf("subscriptions: %s %v", body, err)
	}
	sub := subs.Subscriptions[0].ID
	run([]call{
		{"GET", "/v1/subscriptions/" + sub, "", "", 200, nil},
		{"POST", "/v1/subscriptions/" + sub + "/replay", ctJSON, `{"since":"2026-01-01T00:00:00Z"}`, 202, nil},
		{"POST", "/v1/subscriptions/" + sub + "/replay", ctJSON, `{"since":"soon"}`, 400, nil},
		{"DELETE", "/v1/subscriptions/" + sub, "", "", 200, nil},
		{"POST", "/v1/subscriptions/" + sub + "/replay", ctJSON, `{"since":"2026-01-01T00:00:00Z"}`, 409, nil},
		{"DELETE", "/v1/topics/car-chosen", "", "", 200, nil},
		{"DELETE", "/v1/topics/car-chosen", "", "", 404, nil},
	})
	// Without a key, or with a key without the scope.
	req, _ := http.NewRequest("GET", api+"/v1/profiles/"+id, nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if err := contract.CheckResponse(req, res, raw); err != nil || res.StatusCode != http.StatusUnauthorized {
		t.Errorf("no key: %d %s %v", res.StatusCode, raw, err)
	}
}
