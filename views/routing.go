package views

// The routing API (docs/routing.md, docs/api.md "Routing"): PUT and GET
// /v1/routing/rules (scope admin), a tenant's whole ordered list of
// routing rules on rolodex.routing.rules (RoutingStore), and
// GET /v1/leads/{id} (scope profiles:read or admin), a lead's state and
// decision history from a goka view of the routing stage's table.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"unicode"

	"github.com/lovoo/goka"

	"github.com/rolodex/rolodex/partners"
	"github.com/rolodex/rolodex/rules"
	"github.com/rolodex/rolodex/schemas"
)

// RoutingRuleList is the answer of PUT and GET /v1/routing/rules.
type RoutingRuleList struct {
	// Version counts the tenant's writes from 1; 0: never written.
	Version   int64                 `json:"version"`
	Rules     []schemas.RoutingRule `json:"rules"`
	UpdatedAt string                `json:"updated_at,omitempty"`
	UpdatedBy string                `json:"updated_by,omitempty"`
}

func routingListOf(rl schemas.RoutingRules) RoutingRuleList {
	return RoutingRuleList{Version: rl.Version, Rules: rl.Rules, UpdatedAt: rl.UpdatedAt, UpdatedBy: rl.UpdatedBy}
}

type putRoutingRequest struct {
	Rules *[]routingRuleIn `json:"rules"`
}

// routingRuleIn is a rule as PUT /v1/routing/rules takes it: null is
// refused anywhere in it (a rule and its fields are objects, strings,
// numbers, booleans in the API document; a field is left out by leaving
// it out). Found by the contract tier: "fallback": null was accepted as
// no fallback, "weight": null as weight 1.
type routingRuleIn schemas.RoutingRule

func (r *routingRuleIn) UnmarshalJSON(b []byte) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	// Per open object or array: is it an object, and is a key next.
	type level struct{ object, wantKey bool }
	var stack []level
	key := ""
	for {
		tok, err := dec.Token()
		if err != nil {
			break // io.EOF, or the decode below reports a malformed rule
		}
		var top *level
		if len(stack) > 0 {
			top = &stack[len(stack)-1]
		}
		if d, ok := tok.(json.Delim); ok && (d == '}' || d == ']') {
			stack = stack[:len(stack)-1]
			continue
		}
		if top != nil && top.object && top.wantKey {
			key, top.wantKey = tok.(string), false
			continue
		}
		if top != nil && top.object {
			top.wantKey = true // this token is the key's value
		}
		switch tok := tok.(type) {
		case json.Delim:
			stack = append(stack, level{object: tok == '{', wantKey: true})
		case nil:
			if key == "" {
				return errors.New("a rule is null: send an object")
			}
			return fmt.Errorf("a rule's %s is null: leave the field out instead", key)
		}
	}
	dec = json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	return dec.Decode((*schemas.RoutingRule)(r))
}

// routingLoaded waits, up to WriteTimeout, for the routing-rule store to
// have read its topic; it answers 503 not_ready itself when the wait ends
// first.
func (a *API) routingLoaded(w http.ResponseWriter, r *http.Request) bool {
	ctx, cancel := context.WithTimeout(r.Context(), a.cfg.WriteTimeout)
	defer cancel()
	if err := a.cfg.Routing.WaitReady(ctx); err != nil {
		answerRuleError(w, err, "")
		return false
	}
	return true
}

// putRouting is PUT /v1/routing/rules {"rules": [...]}: the tenant's
// whole list, validated (rules.ValidateRouting: every partner named must
// be one of the tenant's), written as the next version; 200 only after
// Kafka acknowledged it.
func (a *API) putRouting(w http.ResponseWriter, r *http.Request) {
	p, ok := a.authorize(w, r, partners.ScopeAdmin)
	if !ok {
		return
	}
	var req putRoutingRequest
	if !a.decodeBody(w, r, &req) {
		return
	}
	if req.Rules == nil {
		writeJSON(w, http.StatusBadRequest, errorBody{Error: "bad_request", Message: `rules is required: the tenant's whole ordered list ({"rules": []} removes every rule)`})
		return
	}
	// A partner a rule may name: one of the caller's tenant that receives
	// leads (it has a delivery); any other would hold leads it never gets.
	ofTenant := func(name string) bool {
		q, ok := a.partners.ByName(name)
		return ok && q.Tenant == p.Tenant && q.Delivery != nil
	}
	list := make([]schemas.RoutingRule, len(*req.Rules))
	for i, rule := range *req.Rules {
		list[i] = schemas.RoutingRule(rule)
	}
	if err := rules.ValidateRouting(list, ofTenant); err != nil {
		var re *rules.RoutingError
		switch {
		case errors.As(err, &re) && re.Condition != nil:
			writeJSON(w, http.StatusBadRequest, errorBody{Error: "invalid_condition", Message: re.Error(),
				Reason: re.Condition.Reason, Line: re.Condition.Pos.Line, Column: re.Condition.Pos.Column})
		case re != nil:
			writeJSON(w, http.StatusBadRequest, errorBody{Error: "invalid_rules", Message: re.Error()})
		default:
			writeJSON(w, http.StatusInternalServerError, errorBody{Error: "internal", Message: err.Error()})
		}
		return
	}
	if !a.routingLoaded(w, r) {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), a.cfg.WriteTimeout)
	defer cancel()
	stored, err := a.cfg.Routing.Put(ctx, p.Tenant, list, p.Name)
	if errors.Is(err, ErrRoutingTooLarge) {
		writeJSON(w, http.StatusRequestEntityTooLarge, errorBody{Error: "too_large", Message: err.Error()})
		return
	}
	if err != nil {
		a.cfg.Logger.Error("views: routing rules not written", "partner", p.Name, "err", err)
		answerRuleError(w, err, "")
		return
	}
	writeJSON(w, http.StatusOK, routingListOf(stored))
}

// getRouting is GET /v1/routing/rules: the tenant's current list.
func (a *API) getRouting(w http.ResponseWriter, r *http.Request) {
	p, ok := a.authorize(w, r, partners.ScopeAdmin)
	if !ok {
		return
	}
	if !a.routingLoaded(w, r) {
		return
	}
	rl, err := a.cfg.Routing.Get(p.Tenant)
	if err != nil {
		answerRuleError(w, err, "")
		return
	}
	writeJSON(w, http.StatusOK, routingListOf(rl))
}

// Leads reads the routing stage's table by tenant.
type Leads interface {
	Routing(tenant string) (*schemas.RoutingTable, error)
	Ready() bool
}

// LeadView is a goka view of the routing stage's table
// (rolodex-routing-table, key: tenant).
type LeadView struct {
	*tableView[schemas.RoutingTable]
}

// NewLeadView opens a view of the routing stage's table; storageDir keeps
// its local copy.
func NewLeadView(brokers []string, storageDir string, opts ...goka.ViewOption) (*LeadView, error) {
	tv, err := newTableView[schemas.RoutingTable](brokers, goka.GroupTable(schemas.GroupRouting), storageDir, "rolodex-views-leads", "lead view", opts...)
	if err != nil {
		return nil, err
	}
	return &LeadView{tv}, nil
}

// Routing returns the tenant's routing state, nil if none.
func (v *LeadView) Routing(tenant string) (*schemas.RoutingTable, error) { return v.get(tenant) }

// Lead is the answer of GET /v1/leads/{id}: the lead's state in the
// routing stage, its times as RFC 3339.
type Lead struct {
	ID string `json:"id"`
	// Status: routed (held by Partner, waiting for acceptance), accepted,
	// or unrouted (with Reason).
	Status  string `json:"status"`
	Partner string `json:"partner,omitempty"`
	Reason  string `json:"reason,omitempty"`
	// Tried lists every partner the lead was routed to, in order.
	Tried []string `json:"tried"`
	// Deadline is the SLA deadline of a routed lead.
	Deadline    string         `json:"deadline,omitempty"`
	MaxReroutes int            `json:"max_reroutes"`
	SLAReroutes int            `json:"sla_reroutes"`
	DeliveredAt string         `json:"delivered_at,omitempty"`
	ClosedAt    string         `json:"closed_at,omitempty"`
	Lead        *LeadFacts     `json:"lead"`
	History     []LeadDecision `json:"history"`
}

// LeadFacts is the lead event as the routing stage received it.
type LeadFacts struct {
	ID      string `json:"id"`
	EventID string `json:"event_id"`
	Type    string `json:"type"`
	Time    string `json:"time"`
	// Properties and Traits hold each value as JSON.
	Properties  map[string]RawJSON  `json:"properties"`
	Traits      map[string]RawJSON  `json:"traits"`
	Identifiers map[string][]string `json:"identifiers"`
	// Profile is the lead's profile as the identity stage saw it with the
	// lead folded in (what the rules read); absent if unknown.
	Profile *schemas.Profile `json:"profile,omitempty"`
}

// RawJSON is a value kept as its JSON encoding; an encoding that is not
// JSON is written as a JSON string.
type RawJSON string

// MarshalJSON writes the encoding as it is when it is JSON.
func (r RawJSON) MarshalJSON() ([]byte, error) {
	if b := []byte(r); json.Valid(b) {
		return b, nil
	}
	return json.Marshal(string(r))
}

// LeadDecision is one decision of a lead's history.
type LeadDecision struct {
	Attempt int `json:"attempt"`
	// Cause: lead, rejected, sla, delivery_failed.
	Cause       string `json:"cause"`
	At          string `json:"at"`
	Rule        string `json:"rule,omitempty"`
	RuleVersion int64  `json:"rule_version,omitempty"`
	Partner     string `json:"partner,omitempty"`
	// Unrouted is the reason when no partner was chosen.
	Unrouted   string                     `json:"unrouted,omitempty"`
	Candidates []schemas.RoutingCandidate `json:"candidates"`
}

// maxLeadID bounds a lead id in the path, in bytes.
const maxLeadID = 1000

// validLeadID: 1 to maxLeadID bytes, no white space around it, no control
// character.
func validLeadID(id string) bool {
	return id != "" && len(id) <= maxLeadID && strings.TrimSpace(id) == id && !strings.ContainsFunc(id, unicode.IsControl)
}

// getLead is GET /v1/leads/{id}: the lead of the caller's tenant.
func (a *API) getLead(w http.ResponseWriter, r *http.Request) {
	p, ok := a.authorizeAny(w, r, partners.ScopeProfilesRead, partners.ScopeAdmin)
	if !ok {
		return
	}
	id := r.PathValue("id")
	if !validLeadID(id) {
		writeJSON(w, http.StatusBadRequest, errorBody{Error: "bad_request",
			Message: fmt.Sprintf("a lead id is properties.lead_id of its lead event, else the event id: 1 to %d bytes, no white space around it, no control character", maxLeadID)})
		return
	}
	if !a.cfg.Leads.Ready() {
		w.Header().Set("Retry-After", "1")
		writeJSON(w, http.StatusServiceUnavailable, errorBody{Error: "not_ready", Message: "the lead view is still loading; retry shortly"})
		return
	}
	st, err := a.cfg.Leads.Routing(p.Tenant)
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, errorBody{Error: "internal", Message: err.Error()})
		return
	}
	var l *schemas.LeadState
	if st != nil && st.Tenant == p.Tenant {
		l = st.Leads[id]
	}
	if l == nil {
		writeJSON(w, http.StatusNotFound, errorBody{Error: "not_found", Message: "no lead " + id + " in this tenant"})
		return
	}
	writeJSON(w, http.StatusOK, leadOf(l))
}

// leadOf is the answer for a lead's state.
func leadOf(l *schemas.LeadState) *Lead {
	out := &Lead{ID: l.ID, Status: l.Status, Partner: l.Partner, Reason: l.Reason, Tried: append([]string{}, l.Tried...),
		Deadline: optMs(l.Deadline), MaxReroutes: l.MaxReroutes, SLAReroutes: l.SLAReroutes,
		DeliveredAt: optMs(l.DeliveredAt), ClosedAt: optMs(l.ClosedAt), History: make([]LeadDecision, len(l.History))}
	if f := l.Lead; f != nil {
		out.Lead = &LeadFacts{ID: f.ID, EventID: f.EventID, Type: f.Type, Time: formatMs(f.Time),
			Properties: rawMap(f.Properties), Traits: rawMap(f.Traits), Identifiers: map[string][]string{}, Profile: f.Profile}
		for k, v := range f.Identifiers {
			out.Lead.Identifiers[k] = append([]string{}, v...)
		}
	}
	for i, d := range l.History {
		out.History[i] = LeadDecision{Attempt: d.Attempt, Cause: d.Cause, At: formatMs(d.At), Rule: d.Rule, RuleVersion: d.RuleVersion,
			Partner: d.Partner, Unrouted: d.Unrouted, Candidates: append([]schemas.RoutingCandidate{}, d.Candidates...)}
	}
	return out
}

// optMs formats a Unix ms time, "" for 0 (none).
func optMs(ms int64) string {
	if ms == 0 {
		return ""
	}
	return formatMs(ms)
}

func rawMap(m map[string]string) map[string]RawJSON {
	out := make(map[string]RawJSON, len(m))
	for k, v := range m {
		out[k] = RawJSON(v)
	}
	return out
}
