package views

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/rolodex/rolodex/normalize"
	"github.com/rolodex/rolodex/partners"
	"github.com/rolodex/rolodex/schemas"
)

type memNodes struct {
	m     map[string]*schemas.Node
	ready bool
}

func (m *memNodes) Node(k string) (*schemas.Node, error) { return m.m[k], nil }
func (m *memNodes) Ready() bool                          { return m.ready }
func (m *memNodes) Scan(after string, fn func(string, *schemas.Node) bool) error {
	for _, k := range schemas.SortedKeys(m.m) {
		if k > after && !fn(k, m.m[k]) {
			return nil
		}
	}
	return nil
}

// noPublisher fails every publication: the read tests publish nothing.
type noPublisher struct{}

func (noPublisher) Events(context.Context, []*schemas.Event) error {
	return errors.New("the read API published")
}

func id(typ, val string) schemas.Identifier { return schemas.Identifier{Type: typ, Value: val} }

// testMux serves the API from nodes to partners p1 (tenant t1, key
// key-of-t1) and p2 (t2, key-of-t2).
func testMux(t *testing.T, nodes Nodes) *http.ServeMux {
	t.Helper()
	reg, err := partners.New([]partners.Partner{{Name: "p1", Tenant: "t1", Keys: []string{"key-of-t1"}}, {Name: "p2", Tenant: "t2", Keys: []string{"key-of-t2"}},
		{Name: "w1", Tenant: "t1", ScopedKeys: partners.KeyList{{Key: "writer-of-t1", Scopes: []partners.Scope{partners.ScopeEventsWrite, partners.ScopeProfilesWrite, partners.ScopeAdmin}}}}})
	if err != nil {
		t.Fatal(err)
	}
	norm, err := normalize.New(normalize.Config{})
	if err != nil {
		t.Fatal(err)
	}
	api, err := NewAPI(nodes, reg, norm, Config{Publisher: noPublisher{}})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	api.Register(mux)
	return mux
}

func TestAPI(t *testing.T) {
	email, phone := id("email", "ana@example.com"), id("phone", "+5511912345678")
	a, b := schemas.NodeID("t1", email), schemas.NodeID("t1", phone)
	root, child := a, b
	if b < a {
		root, child = b, a
	}
	other := schemas.NodeID("t2", email)
	ids := map[string]schemas.Identifier{a: email, b: phone}
	nodes := &memNodes{ready: true, m: map[string]*schemas.Node{
		root: {Tenant: "t1", Identifier: ids[root], Own: schemas.Contribution{Node: root, Identifier: ids[root], Version: 2,
			Counters: map[string]int64{"page.viewed": 2}, FirstSeen: 1000, LastSeen: 5000, Times: map[string][]int64{"page.viewed": {5000, 1000}},
			Traits: map[string]schemas.Trait{"name": {Value: `"Ana"`, Time: 5000}}},
			Members: map[string]schemas.Contribution{child: {Node: child, Identifier: ids[child], Version: 1, Counters: map[string]int64{"form.submitted": 1},
				FirstSeen: 500, LastSeen: 500, Times: map[string][]int64{"form.submitted": {500}}}}},
		child: {Tenant: "t1", Identifier: ids[child], Parent: root, Own: schemas.Contribution{Node: child, Identifier: ids[child]}},
		other: {Tenant: "t2", Identifier: email, Own: schemas.Contribution{Node: other, Identifier: email, Version: 1}},
	}}
	srv := httptest.NewServer(testMux(t, nodes))
	defer srv.Close()

	get := func(path, key string) (int, map[string]any) {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+path, nil)
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var body map[string]any
		if err := json.NewDecoder(res.Body).Decode(&body); err != nil {
			t.Fatalf("%s: body is not JSON: %v", path, err)
		}
		return res.StatusCode, body
	}
	lookup := func(typ, val string) string {
		return "/v1/lookup?type=" + url.QueryEscape(typ) + "&value=" + url.QueryEscape(val)
	}
	tests := []struct {
		name, path, key string
		status          int
		wantID          string
	}{
		{"root", "/v1/profiles/" + root, "key-of-t1", 200, root},
		{"merged-away id redirects", "/v1/profiles/" + child, "key-of-t1", 200, root},
		{"lookup normalises like ingest", lookup("EMAIL", " Ana@Example.COM "), "key-of-t1", 200, root},
		{"lookup by phone", lookup("phone", "(11) 91234-5678"), "key-of-t1", 200, root},
		{"other tenant's profile is not found", "/v1/profiles/" + other, "key-of-t1", 404, ""},
		{"other tenant sees its own", lookup("email", "ana@example.com"), "key-of-t2", 200, other},
		{"other tenant cannot see t1's phone", lookup("phone", "+5511912345678"), "key-of-t2", 404, ""},
		{"unknown", "/v1/profiles/p_0000000000000000000000000a", "key-of-t1", 404, ""},
		{"bad id", "/v1/profiles/nope", "key-of-t1", 400, ""},
		{"unknown type", lookup("emial", "a@b.co"), "key-of-t1", 400, ""},
		{"invalid email", lookup("email", "ana@"), "key-of-t1", 400, ""},
		{"blocked value", lookup("email", "test@test.com"), "key-of-t1", 400, ""},
		{"missing value", "/v1/lookup?type=email", "key-of-t1", 400, ""},
		{"no key", "/v1/profiles/" + root, "", 401, ""},
		{"wrong key", "/v1/profiles/" + root, "key-of-nobody", 401, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body := get(tt.path, tt.key)
			if status != tt.status {
				t.Fatalf("status %d, want %d: %v", status, tt.status, body)
			}
			if tt.wantID != "" && body["id"] != tt.wantID {
				t.Fatalf("id %v, want %s", body["id"], tt.wantID)
			}
			if tt.status >= 400 && (body["error"] == nil || body["message"] == nil) {
				t.Fatalf("error body without error/message: %v", body)
			}
		})
	}
	_, p := get("/v1/profiles/"+child, "key-of-t1")
	if p["event_count"] != 3.0 || p["first_seen"] != "1970-01-01T00:00:00.5Z" || len(p["merged_ids"].([]any)) != 1 ||
		p["traits"].(map[string]any)["name"] != "Ana" || p["counters"].(map[string]any)["form.submitted"] != 1.0 {
		t.Fatalf("profile = %v", p)
	}
	// The event times the nodes keep for the tag stage's rules stay
	// inside: the API's profile has none (docs/tags.md, "Memory bound").
	for _, path := range []string{"/v1/profiles/" + root, "/v1/profiles/" + child, lookup("email", "ana@example.com")} {
		if _, p := get(path, "key-of-t1"); p["event_times"] != nil || p["id"] != root {
			t.Fatalf("GET %s: event_times = %v (want none), id %v", path, p["event_times"], p["id"])
		}
	}
	nodes.ready = false
	if status, _ := get("/v1/profiles/"+root, "key-of-t1"); status != http.StatusServiceUnavailable {
		t.Fatalf("not-ready view answered %d", status)
	}
}

// A request without a partner's bearer key is answered 401 with the
// messages of partners.Authenticate.
func TestAPIUnauthorized(t *testing.T) {
	mux := testMux(t, &memNodes{ready: true})
	tests := []struct{ authorization, body string }{
		{"", `{"error":"unauthorized","message":"missing credential: send Authorization: Bearer \u003cpartner key\u003e"}`},
		{"bearer key-of-t1", `{"error":"unauthorized","message":"missing credential: send Authorization: Bearer \u003cpartner key\u003e"}`},
		{"Bearer key-of-t3", `{"error":"unauthorized","message":"unknown partner key"}`},
		{"Bearer key-of-t1 ", `{"error":"not_found","message":"no profile holds user_id u in this tenant"}`},
	}
	for _, tt := range tests {
		t.Run(tt.authorization, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodGet, "/v1/lookup?type=user_id&value=u", nil)
			if tt.authorization != "" {
				req.Header.Set("Authorization", tt.authorization)
			}
			rec := httptest.NewRecorder()
			mux.ServeHTTP(rec, req)
			want := http.StatusUnauthorized
			if strings.Contains(tt.body, "not_found") {
				want = http.StatusNotFound
			}
			got := withoutRequestID(t, rec)
			if rec.Code != want || got != tt.body || rec.Header().Get("Content-Type") != "application/json" {
				t.Fatalf("%d %s (%s), want %d %s", rec.Code, got, rec.Header().Get("Content-Type"), want, tt.body)
			}
		})
	}
}

// The read endpoints need profiles:read: a key without it is answered 403
// forbidden naming the scope.
func TestAPIReadForbidden(t *testing.T) {
	mux := testMux(t, &memNodes{ready: true})
	for _, path := range []string{"/v1/profiles/p_0000000000000000000000000a", "/v1/lookup?type=user_id&value=u"} {
		t.Run(path, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodGet, path, nil)
			req.Header.Set("Authorization", "Bearer writer-of-t1")
			rec := httptest.NewRecorder()
			mux.ServeHTTP(rec, req)
			got := withoutRequestID(t, rec)
			want := `{"error":"forbidden","message":"this key lacks the scope profiles:read","required_scope":"profiles:read"}`
			if rec.Code != http.StatusForbidden || got != want {
				t.Fatalf("%d %s, want 403 %s", rec.Code, got, want)
			}
		})
	}
}

// withoutRequestID returns the JSON error body of rec without its
// request_id, after checking that it is the answer's X-Request-Id.
func withoutRequestID(t *testing.T, rec *httptest.ResponseRecorder) string {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &m); err != nil {
		t.Fatalf("%d %q: %v", rec.Code, rec.Body, err)
	}
	if id := rec.Header().Get("X-Request-Id"); id == "" || m["request_id"] != id {
		t.Fatalf("request_id %v, X-Request-Id %q", m["request_id"], id)
	}
	delete(m, "request_id")
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
