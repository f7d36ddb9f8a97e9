package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/rolodex/rolodex/docs"
	"github.com/rolodex/rolodex/internal/requestid"
)

// router is a server's http.ServeMux. It records every pattern mounted on
// it (TestRoutesMatchOpenAPI compares them with docs/openapi.yaml), and it
// answers a request no route matches with a JSON error like every other
// answer of the API (404 not_found, or 405 method_not_allowed with the
// mux's Allow header), where the bare mux would answer plain text.
type router struct {
	mux      *http.ServeMux
	patterns []string
}

func newRouter() *router { return &router{mux: http.NewServeMux()} }

// Handle mounts h at pattern ("METHOD /path"; see http.ServeMux).
func (r *router) Handle(pattern string, h http.Handler) {
	r.patterns = append(r.patterns, pattern)
	r.mux.Handle(pattern, h)
}

// HandleFunc mounts h at pattern.
func (r *router) HandleFunc(pattern string, h func(http.ResponseWriter, *http.Request)) {
	r.Handle(pattern, http.HandlerFunc(h))
}

func (r *router) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	h, pattern := r.mux.Handler(req)
	if pattern != "" { // a route, or the mux's redirect to one
		r.mux.ServeHTTP(w, req)
		return
	}
	// The mux's own 404 or 405 handler: keep its status and Allow header,
	// answer JSON.
	probe := &statusProbe{header: http.Header{}, code: http.StatusOK}
	h.ServeHTTP(probe, req)
	id := requestid.New()
	w.Header().Set(requestid.Header, id)
	body := map[string]string{"error": "not_found", "message": fmt.Sprintf("no route %s %s; the API is described at /openapi.yaml", req.Method, req.URL.Path), "request_id": id}
	if probe.code == http.StatusMethodNotAllowed {
		allow := r.allowed(req, probe.header.Get("Allow"))
		w.Header().Set("Allow", allow)
		body["error"] = "method_not_allowed"
		body["message"] = fmt.Sprintf("%s %s: use %s", req.Method, req.URL.Path, strings.ReplaceAll(allow, ", ", " or "))
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(probe.code)
	_ = json.NewEncoder(w).Encode(body)
}

// allowed narrows the mux's Allow (every method some pattern matching the
// path takes) to the methods of the most specific path: for
// /v1/tag-rules/evaluate, POST, not also the methods of
// /v1/tag-rules/{id} (whose handlers answer 405 for that id themselves).
// The most specific path is the one with the fewest wildcards.
func (r *router) allowed(req *http.Request, allow string) string {
	type m struct {
		method    string
		wildcards int
	}
	var ms []m
	fewest := -1
	for _, method := range strings.Split(allow, ", ") {
		probe := req.Clone(req.Context())
		probe.Method = method
		_, pattern := r.mux.Handler(probe)
		_, path, _ := strings.Cut(pattern, " ")
		n := strings.Count(path, "{")
		ms = append(ms, m{method, n})
		if fewest < 0 || n < fewest {
			fewest = n
		}
	}
	var out []string
	for _, x := range ms {
		if x.wildcards == fewest {
			out = append(out, x.method)
		}
	}
	return strings.Join(out, ", ")
}

// statusProbe is a ResponseWriter that keeps only the status and headers.
type statusProbe struct {
	header http.Header
	code   int
}

func (p *statusProbe) Header() http.Header         { return p.header }
func (p *statusProbe) Write(b []byte) (int, error) { return len(b), nil }
func (p *statusProbe) WriteHeader(code int)        { p.code = code }

// openapiComponent serves the API document, docs/openapi.yaml, at
// GET /openapi.yaml and (converted once, here) GET /openapi.json, without
// a key, to any origin (so a browser's API viewer can load it).
func openapiComponent(e *env) error {
	js, err := docs.OpenAPIJSON()
	if err != nil {
		return err
	}
	serve := func(contentType string, b []byte) http.HandlerFunc {
		return func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", contentType)
			w.Header().Set("Access-Control-Allow-Origin", "*")
			_, _ = w.Write(b)
		}
	}
	e.mux.HandleFunc("GET /openapi.yaml", serve("application/yaml", docs.OpenAPIYAML))
	e.mux.HandleFunc("GET /openapi.json", serve("application/json", js))
	return nil
}
