package views

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"

	"github.com/rolodex/rolodex/normalize"
	"github.com/rolodex/rolodex/partners"
	"github.com/rolodex/rolodex/schemas"
)

// API is the read-only query API: GET /v1/profiles/{id} and
// GET /v1/lookup?type=...&value=.... Every request needs a partner's bearer
// key and sees only that partner's tenant.
type API struct {
	nodes    Nodes
	partners *partners.Registry
	norm     *normalize.Normalizer
}

// NewAPI serves profiles from nodes. norm must be configured like ingest's,
// so a lookup value is normalised exactly as the events that carried it.
func NewAPI(nodes Nodes, reg *partners.Registry, norm *normalize.Normalizer) *API {
	return &API{nodes: nodes, partners: reg, norm: norm}
}

// Register mounts the routes on mux.
func (a *API) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/profiles/{id}", a.getProfile)
	mux.HandleFunc("GET /v1/lookup", a.lookup)
}

type errorBody struct {
	Error   string `json:"error"`
	Message string `json:"message"`
	// RequiredScope is the scope a 403 forbidden answer says the key lacks.
	RequiredScope string `json:"required_scope,omitempty"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// authorize checks the request's bearer key (401) and that it has scope
// (403); it answers the request itself when either fails.
func (a *API) authorize(w http.ResponseWriter, r *http.Request, scope partners.Scope) (*partners.Partner, bool) {
	pr, err := a.partners.Authenticate(r.Header.Get("Authorization"))
	if err != nil {
		writeJSON(w, http.StatusUnauthorized, errorBody{Error: "unauthorized", Message: err.Error()})
		return nil, false
	}
	if err := pr.Require(scope); err != nil {
		writeJSON(w, http.StatusForbidden, errorBody{Error: "forbidden", Message: err.Error(), RequiredScope: string(scope)})
		return nil, false
	}
	return pr.Partner, true
}

// tenant is authorize for a read: the tenant of a key with profiles:read.
func (a *API) tenant(w http.ResponseWriter, r *http.Request) (string, bool) {
	p, ok := a.authorize(w, r, partners.ScopeProfilesRead)
	if !ok {
		return "", false
	}
	return p.Tenant, true
}

func (a *API) getProfile(w http.ResponseWriter, r *http.Request) {
	tenant, ok := a.tenant(w, r)
	if !ok {
		return
	}
	id := r.PathValue("id")
	if !strings.HasPrefix(id, "p_") || len(id) > 64 {
		writeJSON(w, http.StatusBadRequest, errorBody{Error: "bad_request", Message: "a profile id looks like p_ followed by 26 characters"})
		return
	}
	a.answer(w, tenant, id, "no profile "+id+" in this tenant")
}

func (a *API) lookup(w http.ResponseWriter, r *http.Request) {
	tenant, ok := a.tenant(w, r)
	if !ok {
		return
	}
	q := r.URL.Query()
	typ, value := q.Get("type"), q.Get("value")
	if typ == "" || value == "" {
		writeJSON(w, http.StatusBadRequest, errorBody{Error: "bad_request", Message: "both type and value are required, e.g. /v1/lookup?type=email&value=ana@example.com"})
		return
	}
	nt, err := a.norm.Type(typ)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, errorBody{Error: "unknown_identifier_type", Message: err.Error()})
		return
	}
	nv, err := a.norm.Identifier(nt, value)
	if err != nil {
		reason := "invalid_identifier"
		var ne *normalize.Error
		if errors.As(err, &ne) {
			reason = ne.Reason
		}
		writeJSON(w, http.StatusBadRequest, errorBody{Error: reason, Message: err.Error()})
		return
	}
	a.answer(w, tenant, schemas.NodeID(tenant, schemas.Identifier{Type: nt, Value: nv}), "no profile holds "+nt+" "+nv+" in this tenant")
}

func (a *API) answer(w http.ResponseWriter, tenant, key, notFound string) {
	p, err := Resolve(a.nodes, tenant, key)
	switch {
	case errors.Is(err, ErrNotFound):
		writeJSON(w, http.StatusNotFound, errorBody{Error: "not_found", Message: notFound})
	case errors.Is(err, ErrNotReady):
		w.Header().Set("Retry-After", "1")
		writeJSON(w, http.StatusServiceUnavailable, errorBody{Error: "not_ready", Message: "the profile view is still loading; retry shortly"})
	case err != nil:
		writeJSON(w, http.StatusInternalServerError, errorBody{Error: "internal", Message: err.Error()})
	default:
		writeJSON(w, http.StatusOK, p)
	}
}
