package views

// The tag-rule API (docs/tags.md, "Rules: API, storage, CLI"), scope
// admin: PUT, GET and DELETE of a tenant's rules on rolodex.tag.rules
// (RuleStore), and POST /v1/tag-rules/evaluate, a dry run of a condition
// on a profile.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"time"

	"github.com/rolodex/rolodex/partners"
	"github.com/rolodex/rolodex/rules"
	"github.com/rolodex/rolodex/schemas"
)

// maxDescription bounds a rule's description, in bytes.
const maxDescription = 1000

// Rule is a tag rule as the API shows it.
type Rule struct {
	ID          string `json:"id"`
	Tag         string `json:"tag"`
	Condition   string `json:"condition"`
	Description string `json:"description"`
	Enabled     bool   `json:"enabled"`
	Version     int64  `json:"version"`
	UpdatedAt   string `json:"updated_at"`
	UpdatedBy   string `json:"updated_by,omitempty"`
}

func ruleOf(r schemas.TagRule) Rule {
	return Rule{ID: r.ID, Tag: r.Tag, Condition: r.Condition, Description: r.Description, Enabled: r.Enabled,
		Version: r.Version, UpdatedAt: r.UpdatedAt, UpdatedBy: r.UpdatedBy}
}

// PutRuleAnswer is the answer of PUT /v1/tag-rules/{id}: the stored rule
// and what the request changed.
type PutRuleAnswer struct {
	Rule
	Change RuleChange `json:"change"`
}

// RuleList is the answer of GET /v1/tag-rules.
type RuleList struct {
	Rules []Rule `json:"rules"`
}

// compile compiles condition, answering a refusal itself (400
// invalid_condition with the reason and position).
func (a *API) compile(w http.ResponseWriter, condition string) (*rules.Program, bool) {
	prg, err := rules.Compile(condition)
	if err == nil {
		return prg, true
	}
	var re *rules.Error
	if !errors.As(err, &re) {
		writeJSON(w, http.StatusInternalServerError, errorBody{Error: "internal", Message: err.Error()})
		return nil, false
	}
	a.refused.WithLabelValues(re.Reason).Inc()
	writeJSON(w, http.StatusBadRequest, errorBody{Error: "invalid_condition", Message: fmt.Sprintf("the condition is refused at %s (%s): %s", re.Pos, re.Reason, re.Message),
		Reason: re.Reason, Line: re.Pos.Line, Column: re.Pos.Column})
	return nil, false
}

// answerRuleError answers a failed rule read or write: 404, 503 not_ready
// while the store loads, 503 kafka_unavailable when a write was not
// acknowledged in time.
func answerRuleError(w http.ResponseWriter, err error, id string) {
	switch {
	case errors.Is(err, ErrRuleNotFound):
		writeJSON(w, http.StatusNotFound, errorBody{Error: "not_found", Message: "no rule " + id + " in this tenant"})
	case errors.Is(err, ErrRulesNotReady), errors.Is(err, ErrRoutingNotReady):
		w.Header().Set("Retry-After", "1")
		writeJSON(w, http.StatusServiceUnavailable, errorBody{Error: "not_ready", Message: "the rules are still loading; retry shortly"})
	case errors.Is(err, ErrRuleUnavailable), errors.Is(err, context.DeadlineExceeded):
		w.Header().Set("Retry-After", "5")
		writeJSON(w, http.StatusServiceUnavailable, errorBody{Error: "kafka_unavailable",
			Message: "Kafka did not acknowledge the rule in time; nothing is guaranteed written: retry the same request"})
	default:
		writeJSON(w, http.StatusInternalServerError, errorBody{Error: "internal", Message: err.Error()})
	}
}

// rulesLoaded waits, up to WriteTimeout, for the rule store to have read
// the rules topic (a server that just started); it answers 503 not_ready
// itself when the wait ends first.
func (a *API) rulesLoaded(w http.ResponseWriter, r *http.Request) bool {
	ctx, cancel := context.WithTimeout(r.Context(), a.cfg.WriteTimeout)
	defer cancel()
	if err := a.cfg.Rules.WaitReady(ctx); err != nil {
		answerRuleError(w, err, "")
		return false
	}
	return true
}

// reservedRuleID is the last segment of /v1/tag-rules/evaluate, not a
// rule id: GET, PUT and DELETE of that path answer 405, whatever the key,
// as the router answers a method no route takes (the path takes POST, the
// dry run).
const reservedRuleID = "evaluate"

// reserved answers 405 (true: answered) for the reserved id.
func reserved(w http.ResponseWriter, r *http.Request) bool {
	if r.PathValue("id") != reservedRuleID {
		return false
	}
	w.Header().Set("Allow", http.MethodPost)
	writeJSON(w, http.StatusMethodNotAllowed, errorBody{Error: "method_not_allowed",
		Message: fmt.Sprintf("%s %s: use POST (the dry run); %q is not a rule id", r.Method, r.URL.Path, reservedRuleID)})
	return true
}

// ruleID returns the request's rule id, answering 400 invalid_name itself.
func ruleID(w http.ResponseWriter, r *http.Request) (string, bool) {
	id := r.PathValue("id")
	if badName(w, "rule id", id) {
		return "", false
	}
	return id, true
}

type putRuleRequest struct {
	Tag         string `json:"tag"`
	Condition   string `json:"condition"`
	Description string `json:"description"`
	Enabled     *bool  `json:"enabled"`
}

// putRule is PUT /v1/tag-rules/{id} {tag, condition, description, enabled}.
func (a *API) putRule(w http.ResponseWriter, r *http.Request) {
	p, id, ok := a.ruleRequest(w, r, false)
	if !ok {
		return
	}
	var req putRuleRequest
	if !a.decodeBody(w, r, &req) {
		return
	}
	if badName(w, "tag", req.Tag) {
		return
	}
	if len(req.Description) > maxDescription {
		writeJSON(w, http.StatusBadRequest, errorBody{Error: "bad_request", Message: fmt.Sprintf("the description has %d bytes; at most %d", len(req.Description), maxDescription)})
		return
	}
	if _, ok := a.compile(w, req.Condition); !ok {
		return
	}
	if !a.rulesLoaded(w, r) {
		return
	}
	enabled := req.Enabled == nil || *req.Enabled
	ctx, cancel := context.WithTimeout(r.Context(), a.cfg.WriteTimeout)
	defer cancel()
	stored, change, err := a.cfg.Rules.Put(ctx, schemas.TagRule{Tenant: p.Tenant, ID: id, Tag: req.Tag, Condition: req.Condition,
		Description: req.Description, Enabled: enabled, UpdatedBy: p.Name})
	if err != nil {
		a.cfg.Logger.Error("views: rule not written", "partner", p.Name, "rule", id, "err", err)
		answerRuleError(w, err, id)
		return
	}
	writeJSON(w, http.StatusOK, PutRuleAnswer{Rule: ruleOf(stored), Change: change})
}

// listRules is GET /v1/tag-rules: the tenant's rules, deleted ones left
// out, by id.
func (a *API) listRules(w http.ResponseWriter, r *http.Request) {
	p, ok := a.authorize(w, r, partners.ScopeAdmin)
	if !ok {
		return
	}
	if !a.rulesLoaded(w, r) {
		return
	}
	rs, err := a.cfg.Rules.List(p.Tenant)
	if err != nil {
		answerRuleError(w, err, "")
		return
	}
	out := RuleList{Rules: make([]Rule, len(rs))}
	for i, r := range rs {
		out.Rules[i] = ruleOf(r)
	}
	writeJSON(w, http.StatusOK, out)
}

// ruleRequest answers what every request on /v1/tag-rules/{id} checks
// first: the path is a rule id (not "evaluate"), the key has the admin
// scope, the id is valid, and (when loaded) the rule store has loaded.
func (a *API) ruleRequest(w http.ResponseWriter, r *http.Request, loaded bool) (*partners.Partner, string, bool) {
	if reserved(w, r) {
		return nil, "", false
	}
	p, ok := a.authorize(w, r, partners.ScopeAdmin)
	if !ok {
		return nil, "", false
	}
	id, ok := ruleID(w, r)
	if !ok {
		return nil, "", false
	}
	if loaded && !a.rulesLoaded(w, r) {
		return nil, "", false
	}
	return p, id, true
}

// getRule is GET /v1/tag-rules/{id}.
func (a *API) getRule(w http.ResponseWriter, r *http.Request) {
	p, id, ok := a.ruleRequest(w, r, true)
	if !ok {
		return
	}
	rule, found, err := a.cfg.Rules.Get(p.Tenant, id)
	if err == nil && (!found || rule.Deleted) {
		err = ErrRuleNotFound
	}
	if err != nil {
		answerRuleError(w, err, id)
		return
	}
	writeJSON(w, http.StatusOK, ruleOf(rule))
}

// deleteRule is DELETE /v1/tag-rules/{id}: 204, or 404 if the tenant has
// no such rule.
func (a *API) deleteRule(w http.ResponseWriter, r *http.Request) {
	p, id, ok := a.ruleRequest(w, r, true)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), a.cfg.WriteTimeout)
	defer cancel()
	if _, err := a.cfg.Rules.Delete(ctx, p.Tenant, id, p.Name); err != nil {
		if !errors.Is(err, ErrRuleNotFound) {
			a.cfg.Logger.Error("views: rule delete not written", "partner", p.Name, "rule", id, "err", err)
		}
		answerRuleError(w, err, id)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

type evaluateRequest struct {
	Condition string          `json:"condition"`
	Profile   json.RawMessage `json:"profile"`
	Now       *string         `json:"now"`
}

// inlineProfile is a profile given in an evaluate request: a profile as
// GET /v1/profiles/{id} answers it, plus event_times (per event type, Unix
// ms or RFC 3339 times, in any order).
type inlineProfile struct {
	schemas.Profile
	EventTimes map[string][]flexTime `json:"event_times"`
}

// flexTime is a time written as Unix milliseconds or RFC 3339.
type flexTime time.Time

func (t *flexTime) UnmarshalJSON(b []byte) error {
	var s string
	if json.Unmarshal(b, &s) == nil {
		x, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return fmt.Errorf("event time %q is not RFC 3339 (2026-12-01T10:00:00Z) or Unix milliseconds", s)
		}
		*t = flexTime(x)
		return nil
	}
	ms, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil {
		return fmt.Errorf("event time %s is not RFC 3339 (2026-12-01T10:00:00Z) or Unix milliseconds", b)
	}
	*t = flexTime(time.UnixMilli(ms))
	return nil
}

// Read is one value a dry run read.
type Read struct {
	Expression string `json:"expression"`
	Value      any    `json:"value"`
	Error      string `json:"error,omitempty"`
}

// Evaluation is the answer of POST /v1/tag-rules/evaluate.
type Evaluation struct {
	Result bool   `json:"result"`
	Reads  []Read `json:"reads"`
	// Error is the runtime error of the condition on this profile (the
	// result is then false; a rule with this error leaves the tag as it
	// was).
	Error string `json:"error,omitempty"`
	// Now is the instant evaluated at.
	Now string `json:"now"`
}

// evaluate is POST /v1/tag-rules/evaluate {condition, profile, now}: a dry
// run of condition on a profile of the tenant (its id) or given inline.
func (a *API) evaluate(w http.ResponseWriter, r *http.Request) {
	p, ok := a.authorize(w, r, partners.ScopeAdmin)
	if !ok {
		return
	}
	var req evaluateRequest
	if !a.decodeBody(w, r, &req) {
		return
	}
	now := a.cfg.Now()
	if req.Now != nil {
		t, err := time.Parse(time.RFC3339Nano, *req.Now)
		if err != nil {
			writeJSON(w, http.StatusBadRequest, errorBody{Error: "bad_request", Message: fmt.Sprintf("now %q is not an RFC 3339 time (e.g. 2026-12-01T10:00:00Z); leave it out for the current time", *req.Now)})
			return
		}
		now = t
	}
	prg, ok := a.compile(w, req.Condition)
	if !ok {
		return
	}
	var (
		prof  *schemas.Profile
		times = map[string][]time.Time{}
	)
	raw := bytes.TrimSpace(req.Profile)
	switch {
	case len(raw) > 0 && raw[0] == '"':
		var id string
		_ = json.Unmarshal(raw, &id)
		if !validID(id) {
			writeJSON(w, http.StatusBadRequest, errorBody{Error: "bad_request", Message: badIDMessage})
			return
		}
		fold := a.fold
		fold.Now, fold.EventTimes = now, true
		var err error
		if prof, err = ResolveWith(a.nodes, p.Tenant, id, &fold); err != nil {
			answerLookupError(w, err, id)
			return
		}
		for typ, ms := range prof.EventTimes {
			ts := make([]time.Time, len(ms))
			for i, m := range ms {
				ts[i] = time.UnixMilli(m).UTC()
			}
			times[typ] = ts
		}
	case len(raw) > 0 && raw[0] == '{':
		var in inlineProfile
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&in); err != nil {
			writeJSON(w, http.StatusBadRequest, errorBody{Error: "bad_request", Message: "the profile is not a profile object (as GET /v1/profiles/{id} answers, plus event_times): " + err.Error()})
			return
		}
		prof = &in.Profile
		for typ, fts := range in.EventTimes {
			ts := make([]time.Time, len(fts))
			for i, ft := range fts {
				ts[i] = time.Time(ft).UTC()
			}
			sort.Slice(ts, func(i, j int) bool { return ts[i].After(ts[j]) }) // newest first
			if len(ts) > schemas.EventTimesLimit {
				ts = ts[:schemas.EventTimesLimit]
			}
			times[typ] = ts
		}
	default:
		writeJSON(w, http.StatusBadRequest, errorBody{Error: "bad_request", Message: `profile is required: a profile id of this tenant ("p_...") or a profile object`})
		return
	}
	in := rules.FromProfile(prof, times, now)
	result, reads, err := prg.Explain(in)
	out := Evaluation{Result: result, Reads: make([]Read, len(reads)), Now: in.Now.UTC().Format(time.RFC3339Nano)}
	for i, rd := range reads {
		out.Reads[i] = Read{Expression: rd.Expr, Value: rd.Value, Error: rd.Error}
	}
	if err != nil {
		out.Result, out.Error = false, err.Error()
	}
	writeJSON(w, http.StatusOK, out)
}
