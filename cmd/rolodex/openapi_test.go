package main

import (
	"context"
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
