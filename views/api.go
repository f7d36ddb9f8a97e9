package views

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rolodex/rolodex/internal/requestid"
	"github.com/rolodex/rolodex/normalize"
	"github.com/rolodex/rolodex/partners"
	"github.com/rolodex/rolodex/schemas"
)

// API is the profile API: the reads (GET /v1/profiles/{id},
// GET /v1/lookup, GET /v1/blacklist) and the status writes of status.go
// (tags, blacklist, consent), each published as an event to
// rolodex.events. Every request needs a partner's bearer key with the
// endpoint's scope and sees only that partner's tenant.
type API struct {
	nodes    Nodes
	partners *partners.Registry
	norm     *normalize.Normalizer
	cfg      Config
	fold     schemas.FoldOptions
	changes  *prometheus.CounterVec
	refused  *prometheus.CounterVec
}

// Publisher publishes events and returns once Kafka acknowledged every one
// (intake.Publisher).
type Publisher interface {
	Events(ctx context.Context, evs []*schemas.Event) error
}

// Config of the API.
type Config struct {
	// Status is the tags configuration profiles are folded with (default
	// tags, tag groups).
	Status schemas.StatusConfig
	// Publisher publishes the status changes. Required.
	Publisher Publisher
	// WriteTimeout bounds the wait for Kafka's acknowledgement of a status
	// change; past it the answer is 503. Default 10s.
	WriteTimeout time.Duration
	// MaxBodyBytes bounds a request body. Default 4 MiB (a bulk request of
	// MaxBulk identifiers).
	MaxBodyBytes int64
	// MaxBulk bounds the profiles or identifiers of one bulk request
	// (POST /v1/tags/{tag}, POST /v1/blacklist). Default 10,000.
	MaxBulk int
	// ScanPerPage bounds the nodes one page of GET /v1/blacklist reads.
	// Default 50,000.
	ScanPerPage int
	// Rules, when set, serves the tag-rule API (rules.go) from that store.
	Rules *RuleStore
	// Registerer receives the API's metrics; nil registers none.
	Registerer prometheus.Registerer
	// Logger; default slog.Default().
	Logger *slog.Logger
	// Now is the clock of event times; default time.Now.
	Now func() time.Time
	// RuleTags, when set, adds the rule tags of the tag stage's table to
	// the profiles the API returns.
	RuleTags TagStates
	// Messages, when set, serves GET /v1/messages/{id} (messages.go) from
	// the lifecycle's table.
	Messages Messages
	// Routing, when set, serves PUT and GET /v1/routing/rules (routing.go)
	// from that store.
	Routing *RoutingStore
	// Leads, when set, serves GET /v1/leads/{id} (routing.go) from the
	// routing stage's table.
	Leads Leads
	// Topics and Subscriptions, when set (both or neither), serve
	// /v1/topics and /v1/subscriptions (topics.go) from those stores.
	Topics        *TopicStore
	Subscriptions *SubscriptionStore
}

func (c *Config) setDefaults() {
	if c.WriteTimeout == 0 {
		c.WriteTimeout = 10 * time.Second
	}
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = 4 << 20
	}
	if c.MaxBulk == 0 {
		c.MaxBulk = 10000
	}
	if c.ScanPerPage == 0 {
		c.ScanPerPage = 50000
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Validate reports a config that cannot work.
func (c *Config) Validate() error {
	if c.Publisher == nil {
		return errors.New("views: the API needs a publisher for status changes")
	}
	if c.WriteTimeout < 0 || c.MaxBodyBytes < 0 || c.MaxBulk < 0 || c.ScanPerPage < 0 {
		return errors.New("views: limits and timeouts must not be negative")
	}
	if (c.Topics == nil) != (c.Subscriptions == nil) {
		return errors.New("views: the topic and subscription stores go together: set both or neither")
	}
	if err := c.Status.Validate(); err != nil {
		return fmt.Errorf("views: %w", err)
	}
	return nil
}

// NewAPI serves profiles from nodes. norm must be configured like ingest's,
// so a lookup value is normalised exactly as the events that carried it.
func NewAPI(nodes Nodes, reg *partners.Registry, norm *normalize.Normalizer, cfg Config) (*API, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	a := &API{nodes: nodes, partners: reg, norm: norm, cfg: cfg, fold: schemas.FoldOptions{Status: cfg.Status}}
	a.changes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "rolodex_api_status_changes_total",
		Help: "Status change events (tag.added, blacklist.added, consent.granted, ...) the API published and Kafka acknowledged, by event type.",
	}, []string{"type"})
	a.refused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "rolodex_tag_rules_refused_total",
		Help: "Conditions the tag-rule API refused (PUT and evaluate), by reason: syntax, type, result, cost, events, time.",
	}, []string{"reason"})
	if cfg.Registerer != nil {
		cfg.Registerer.MustRegister(a.changes, a.refused)
	}
	return a, nil
}

// Mux is where Register mounts the routes: an *http.ServeMux, or a server's
// wrapper of one.
type Mux interface {
	Handle(pattern string, handler http.Handler)
}

// Register mounts the routes on mux (the tag-rule API's when
// Config.Rules is set, the message API's when Config.Messages is, the
// routing rules' when Config.Routing is, the lead's when Config.Leads is, the topics' and subscriptions' when
// Config.Topics is). Every route the servers mount is in
// the API document, docs/openapi.yaml (cmd/rolodex's route test).
func (a *API) Register(mux Mux) {
	for _, r := range []struct {
		pattern string
		h       http.HandlerFunc
	}{
		{"GET /v1/profiles/{id}", a.getProfile},
		{"GET /v1/lookup", a.lookup},
		{"POST /v1/profiles/{id}/tags", a.postProfileTags},
		{"POST /v1/tags/{tag}", a.postBulkTag},
		{"POST /v1/blacklist", a.postBlacklist},
		{"DELETE /v1/blacklist/{id}", a.deleteBlacklist},
		{"GET /v1/blacklist", a.listBlacklist},
		{"PUT /v1/profiles/{id}/consent/{purpose}", a.putConsent},
	} {
		mux.Handle(r.pattern, withRequestID(r.h))
	}
	if a.cfg.Messages != nil {
		mux.Handle("GET /v1/messages/{id}", withRequestID(a.getMessage))
	}
	if a.cfg.Routing != nil {
		mux.Handle("PUT /v1/routing/rules", withRequestID(a.putRouting))
		mux.Handle("GET /v1/routing/rules", withRequestID(a.getRouting))
	}
	if a.cfg.Leads != nil {
		mux.Handle("GET /v1/leads/{id}", withRequestID(a.getLead))
	}
	if a.cfg.Topics != nil {
		a.registerFanout(mux)
	}
	if a.cfg.Rules == nil {
		return
	}
	for _, r := range []struct {
		pattern string
		h       http.HandlerFunc
	}{
		{"PUT /v1/tag-rules/{id}", a.putRule},
		{"GET /v1/tag-rules", a.listRules},
		{"GET /v1/tag-rules/{id}", a.getRule},
		{"DELETE /v1/tag-rules/{id}", a.deleteRule},
		{"POST /v1/tag-rules/evaluate", a.evaluate},
	} {
		mux.Handle(r.pattern, withRequestID(r.h))
	}
}

// withRequestID gives every answer of h an X-Request-Id, which writeJSON
// copies into an error body's request_id.
func withRequestID(h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(requestid.Header, requestid.New())
		h(w, r)
	})
}

type errorBody struct {
	Error     string `json:"error"`
	Message   string `json:"message"`
	RequestID string `json:"request_id,omitempty"`
	// RequiredScope is the scope a 403 forbidden answer says the key lacks.
	RequiredScope string `json:"required_scope,omitempty"`
	// Reason, Line and Column say why and where an invalid_condition
	// answer's condition is refused (rules.Error).
	Reason string `json:"reason,omitempty"`
	Line   int    `json:"line,omitempty"`
	Column int    `json:"column,omitempty"`
}

// writeJSON answers v with status; an errorBody gets the request's id.
func writeJSON(w http.ResponseWriter, status int, v any) {
	if e, ok := v.(errorBody); ok && e.RequestID == "" {
		e.RequestID = w.Header().Get(requestid.Header)
		v = e
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false) // conditions (&&, <) and messages read as written
	_ = enc.Encode(v)
}

// authorize checks the request's bearer key (401) and that it has scope
// (403); it answers the request itself when either fails.
func (a *API) authorize(w http.ResponseWriter, r *http.Request, scope partners.Scope) (*partners.Partner, bool) {
	return a.authorizeAny(w, r, scope)
}

// authorizeAny is authorize for an endpoint that any of scopes opens (the
// first is the one a 403 names).
func (a *API) authorizeAny(w http.ResponseWriter, r *http.Request, scopes ...partners.Scope) (*partners.Partner, bool) {
	pr, err := a.partners.Authenticate(r.Header.Get("Authorization"))
	if err != nil {
		writeJSON(w, http.StatusUnauthorized, errorBody{Error: "unauthorized", Message: err.Error()})
		return nil, false
	}
	for _, s := range scopes {
		if pr.Has(s) {
			return pr.Partner, true
		}
	}
	msg := pr.Require(scopes[0]).Error()
	if len(scopes) > 1 {
		names := make([]string, len(scopes))
		for i, s := range scopes {
			names[i] = string(s)
		}
		msg = "the key has none of the scopes this endpoint takes: " + strings.Join(names, ", ")
	}
	writeJSON(w, http.StatusForbidden, errorBody{Error: "forbidden", Message: msg, RequiredScope: string(scopes[0])})
	return nil, false
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
	if !validID(id) {
		writeJSON(w, http.StatusBadRequest, errorBody{Error: "bad_request", Message: badIDMessage})
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
	fold := a.fold
	fold.Now = a.cfg.Now()
	p, err := ResolveWith(a.nodes, tenant, key, &fold)
	switch {
	case errors.Is(err, ErrNotFound):
		writeJSON(w, http.StatusNotFound, errorBody{Error: "not_found", Message: notFound})
	case errors.Is(err, ErrNotReady):
		w.Header().Set("Retry-After", "1")
		writeJSON(w, http.StatusServiceUnavailable, errorBody{Error: "not_ready", Message: "the profile view is still loading; retry shortly"})
	case err != nil:
		writeJSON(w, http.StatusInternalServerError, errorBody{Error: "internal", Message: err.Error()})
	default:
		if a.cfg.RuleTags != nil {
			if !a.cfg.RuleTags.Ready() {
				w.Header().Set("Retry-After", "1")
				writeJSON(w, http.StatusServiceUnavailable, errorBody{Error: "not_ready", Message: "the tag view is still loading; retry shortly"})
				return
			}
			st, err := a.cfg.RuleTags.TagState(p.ID)
			if err != nil {
				writeJSON(w, http.StatusInternalServerError, errorBody{Error: "internal", Message: err.Error()})
				return
			}
			WithRuleTags(p, st, a.cfg.Status)
		}
		writeJSON(w, http.StatusOK, p)
	}
}
