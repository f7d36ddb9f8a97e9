package views

// The status API (docs/api.md, "Profile status"): every change is an event
// of a reserved type (schemas.EventTagAdded ...) published to
// rolodex.events, answered 202 once Kafka acknowledged it. The identity
// stage folds it into the profile like any event: deduplicated by id,
// last write wins by event time, safe across merges.

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/rolodex/rolodex/normalize"
	"github.com/rolodex/rolodex/partners"
	"github.com/rolodex/rolodex/schemas"
)

// SourceAPI is the source of the events the API publishes.
const SourceAPI = "rolodex-api"

// HeaderIdempotencyKey makes the ids of a request's events a function of
// the key (and of the profile, type and tag or purpose), so that a retried
// request publishes the same ids and the identity stage drops the repeats.
const HeaderIdempotencyKey = "Idempotency-Key"

// Blacklist page sizes.
const (
	DefaultPageLimit = 100
	MaxPageLimit     = 1000
)

// maxReason bounds a blacklist reason.
const maxReason = 500

// validID reports whether id looks like a profile (node) id.
func validID(id string) bool { return strings.HasPrefix(id, "p_") && len(id) <= 64 }

const badIDMessage = "a profile id looks like p_ followed by 26 characters"

// nodeOf returns the node id in tenant, or ErrNotFound when there is none
// or it belongs to another tenant. Any node of a profile addresses the
// profile: status is folded across all its members.
func (a *API) nodeOf(tenant, id string) (*schemas.Node, error) {
	if !a.nodes.Ready() {
		return nil, ErrNotReady
	}
	n, err := a.nodes.Node(id)
	if err != nil {
		return nil, err
	}
	if n == nil || n.Tenant != tenant || n.Identifier.Type == "" {
		return nil, ErrNotFound
	}
	return n, nil
}

// change is one status change to publish: the event type, the addressed
// node's identifier and the properties (plain strings, JSON-encoded when
// the event is built). name is the tag or purpose, part of the derived id.
type change struct {
	typ   string
	node  string
	id    schemas.Identifier
	name  string
	props map[string]string
}

// events builds the events of changes for partner p: tenant, partner and
// time are the server's, never the request's.
func (a *API) events(p *partners.Partner, r *http.Request, changes []change) []*schemas.Event {
	now := a.cfg.Now().UTC().Truncate(time.Millisecond)
	idem := r.Header.Get(HeaderIdempotencyKey)
	out := make([]*schemas.Event, len(changes))
	for i, c := range changes {
		var props map[string]string
		if len(c.props) > 0 {
			props = make(map[string]string, len(c.props))
		}
		for k, v := range c.props {
			b, _ := json.Marshal(v)
			props[k] = string(b)
		}
		out[i] = &schemas.Event{
			Tenant: p.Tenant, ID: eventID(p.Name, idem, c), Type: c.typ, Time: now, Source: SourceAPI, Partner: p.Name,
			Identifiers: []schemas.Identifier{c.id}, Properties: props, ReceivedAt: now,
		}
	}
	return out
}

// eventID is random, or with an idempotency key the SHA-256 of the
// partner, the key, the node, the type, the tag or purpose and the
// properties: the same request sent again has the same ids.
func eventID(partner, idem string, c change) string {
	if idem == "" {
		var b [16]byte
		_, _ = rand.Read(b[:])
		return "api_" + hex.EncodeToString(b[:])
	}
	h := sha256.New()
	for _, s := range []string{partner, idem, c.node, c.typ, c.name} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	// The properties too (a blacklist reason, a consent's expiry): a key
	// sent again with another body is another change.
	for _, k := range schemas.SortedKeys(c.props) {
		h.Write([]byte(k))
		h.Write([]byte{0})
		h.Write([]byte(c.props[k]))
		h.Write([]byte{0})
	}
	return "api_" + hex.EncodeToString(h.Sum(nil)[:16])
}

// publish publishes the events of changes and answers 503 (true: answered)
// when Kafka did not acknowledge them in time.
func (a *API) publish(w http.ResponseWriter, r *http.Request, p *partners.Partner, changes []change) bool {
	if len(changes) == 0 {
		return true
	}
	evs := a.events(p, r, changes)
	ctx, cancel := context.WithTimeout(r.Context(), a.cfg.WriteTimeout)
	defer cancel()
	if err := a.cfg.Publisher.Events(ctx, evs); err != nil {
		a.cfg.Logger.Error("views: status changes not acknowledged", "partner", p.Name, "events", len(evs), "err", err)
		w.Header().Set("Retry-After", "5")
		writeJSON(w, http.StatusServiceUnavailable, errorBody{Error: "kafka_unavailable",
			Message: "Kafka did not acknowledge the change in time; nothing is guaranteed written, retry the same request (send an Idempotency-Key header to make retries safe)"})
		return false
	}
	for _, ev := range evs {
		a.changes.WithLabelValues(ev.Type).Inc()
	}
	return true
}

// decodeBody decodes the JSON body into v, answering 400 or 413 itself.
func (a *API) decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, a.cfg.MaxBodyBytes))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil && dec.More() {
		err = errors.New("more than one JSON value")
	}
	if err == nil {
		if _, terr := dec.Token(); terr != io.EOF {
			err = errors.New("text after the JSON value")
		}
	}
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		writeJSON(w, http.StatusRequestEntityTooLarge, errorBody{Error: "too_large", Message: fmt.Sprintf("the body exceeds %d bytes", a.cfg.MaxBodyBytes)})
		return false
	case errors.Is(err, io.EOF):
		writeJSON(w, http.StatusBadRequest, errorBody{Error: "bad_request", Message: "the body is empty; send a JSON object"})
		return false
	case err != nil:
		writeJSON(w, http.StatusBadRequest, errorBody{Error: "bad_request", Message: "the body is not the JSON this endpoint takes: " + err.Error()})
		return false
	}
	return true
}

// answerLookupError answers a failed node lookup.
func answerLookupError(w http.ResponseWriter, err error, id string) {
	switch {
	case errors.Is(err, ErrNotFound):
		writeJSON(w, http.StatusNotFound, errorBody{Error: "not_found", Message: "no profile " + id + " in this tenant"})
	case errors.Is(err, ErrNotReady):
		w.Header().Set("Retry-After", "1")
		writeJSON(w, http.StatusServiceUnavailable, errorBody{Error: "not_ready", Message: "the profile view is still loading; retry shortly"})
	default:
		writeJSON(w, http.StatusInternalServerError, errorBody{Error: "internal", Message: err.Error()})
	}
}

// badName answers 400 unless name is a tag or purpose name.
func badName(w http.ResponseWriter, what, name string) bool {
	if schemas.NameRe.MatchString(name) {
		return false
	}
	writeJSON(w, http.StatusBadRequest, errorBody{Error: "invalid_name",
		Message: fmt.Sprintf("%s %q is not valid: a letter or digit, then up to 99 letters, digits or _.:- (%s)", what, name, schemas.NameRe)})
	return true
}

// Published is the answer of a change to one profile.
type Published struct {
	Published int `json:"published"`
}

type tagsRequest struct {
	Add    []string `json:"add"`
	Remove []string `json:"remove"`
}

// postProfileTags is POST /v1/profiles/{id}/tags {"add": [...], "remove": [...]}.
func (a *API) postProfileTags(w http.ResponseWriter, r *http.Request) {
	p, ok := a.authorize(w, r, partners.ScopeProfilesWrite)
	if !ok {
		return
	}
	id := r.PathValue("id")
	if !validID(id) {
		writeJSON(w, http.StatusBadRequest, errorBody{Error: "bad_request", Message: badIDMessage})
		return
	}
	var req tagsRequest
	if !a.decodeBody(w, r, &req) {
		return
	}
	if len(req.Add)+len(req.Remove) == 0 {
		writeJSON(w, http.StatusBadRequest, errorBody{Error: "bad_request", Message: `nothing to change: send {"add": [tags], "remove": [tags]}`})
		return
	}
	seen := map[string]string{}
	type op struct{ typ, tag string }
	var ops []op
	for _, l := range []struct {
		typ  string
		tags []string
	}{{schemas.EventTagAdded, req.Add}, {schemas.EventTagRemoved, req.Remove}} {
		for _, t := range l.tags {
			if badName(w, "tag", t) {
				return
			}
			if prev, dup := seen[t]; dup {
				if prev != l.typ {
					writeJSON(w, http.StatusBadRequest, errorBody{Error: "bad_request", Message: fmt.Sprintf("tag %q is both added and removed", t)})
					return
				}
				continue
			}
			seen[t] = l.typ
			ops = append(ops, op{l.typ, t})
		}
	}
	// Two adds of one exclusive group in one request would be set at the
	// same instant: the winner would be decided by event ids.
	for _, g := range a.cfg.Status.Groups {
		if !g.Exclusive {
			continue
		}
		var adds []string
		for _, t := range g.Tags {
			if seen[t] == schemas.EventTagAdded {
				adds = append(adds, t)
			}
		}
		if len(adds) > 1 {
			writeJSON(w, http.StatusBadRequest, errorBody{Error: "bad_request", Message: fmt.Sprintf("tags %s are in the exclusive group %q: a profile holds one of them; add one", strings.Join(adds, ", "), g.Name)})
			return
		}
	}
	n, err := a.nodeOf(p.Tenant, id)
	if err != nil {
		answerLookupError(w, err, id)
		return
	}
	changes := make([]change, len(ops))
	for i, o := range ops {
		changes[i] = change{typ: o.typ, node: id, id: n.Identifier, name: o.tag, props: map[string]string{"tag": o.tag}}
	}
	if a.publish(w, r, p, changes) {
		writeJSON(w, http.StatusAccepted, Published{Published: len(changes)})
	}
}

// IdentifierRef is an identifier of a bulk request.
type IdentifierRef struct {
	Type  string `json:"type"`
	Value string `json:"value"`
}

// targets are the profiles of a bulk request: profile ids or identifiers.
type targets struct {
	Profiles    []string        `json:"profiles"`
	Identifiers []IdentifierRef `json:"identifiers"`
}

// BulkItem is one profile or identifier of a bulk request that was not
// applied: its index in the request, what it was, and for an invalid one
// why.
type BulkItem struct {
	Index   int    `json:"index"`
	Profile string `json:"profile,omitempty"`
	Type    string `json:"type,omitempty"`
	Value   string `json:"value,omitempty"`
	Reason  string `json:"reason,omitempty"`
	Message string `json:"message,omitempty"`
}

// BulkResult is the answer of a bulk request: how many profiles the change
// was published for, which were not found in the tenant and which were
// invalid.
type BulkResult struct {
	Applied  int        `json:"applied"`
	NotFound []BulkItem `json:"not_found"`
	Invalid  []BulkItem `json:"invalid,omitempty"`
}

// resolved is a target found in the tenant.
type resolved struct {
	node string
	id   schemas.Identifier
}

// resolveTargets finds the nodes of t in tenant; it answers the request
// itself (ok false) when t is empty, too long, or the view is not ready.
// Two targets of one node make one change.
func (a *API) resolveTargets(w http.ResponseWriter, tenant string, t targets) (found []resolved, res BulkResult, ok bool) {
	res.NotFound = []BulkItem{}
	total := len(t.Profiles) + len(t.Identifiers)
	switch {
	case len(t.Profiles) > 0 && len(t.Identifiers) > 0:
		writeJSON(w, http.StatusBadRequest, errorBody{Error: "bad_request", Message: `send either "profiles" or "identifiers", not both`})
		return nil, res, false
	case total == 0:
		writeJSON(w, http.StatusBadRequest, errorBody{Error: "bad_request", Message: `no profiles: send "profiles": [ids] or "identifiers": [{"type", "value"}]`})
		return nil, res, false
	case total > a.cfg.MaxBulk:
		writeJSON(w, http.StatusRequestEntityTooLarge, errorBody{Error: "too_large",
			Message: fmt.Sprintf("%d profiles in one request; the limit is %d: split it into requests of at most %d", total, a.cfg.MaxBulk, a.cfg.MaxBulk)})
		return nil, res, false
	}
	if !a.nodes.Ready() {
		answerLookupError(w, ErrNotReady, "")
		return nil, res, false
	}
	seen := map[string]bool{}
	look := func(key string, item BulkItem) error {
		n, err := a.nodeOf(tenant, key)
		switch {
		case errors.Is(err, ErrNotFound):
			res.NotFound = append(res.NotFound, item)
			return nil
		case err != nil:
			return err
		}
		if !seen[key] {
			seen[key] = true
			found = append(found, resolved{node: key, id: n.Identifier})
		}
		return nil
	}
	for i, id := range t.Profiles {
		item := BulkItem{Index: i, Profile: id}
		if !validID(id) {
			item.Reason, item.Message = "invalid_profile_id", badIDMessage
			res.Invalid = append(res.Invalid, item)
			continue
		}
		if err := look(id, item); err != nil {
			answerLookupError(w, err, id)
			return nil, res, false
		}
	}
	for i, ref := range t.Identifiers {
		item := BulkItem{Index: i, Type: ref.Type, Value: ref.Value}
		nt, err := a.norm.Type(ref.Type)
		if err != nil {
			item.Reason, item.Message = "unknown_identifier_type", err.Error()
			res.Invalid = append(res.Invalid, item)
			continue
		}
		nv, err := a.norm.Identifier(nt, ref.Value)
		if err != nil {
			item.Reason, item.Message = "invalid_identifier", err.Error()
			var ne *normalize.Error
			if errors.As(err, &ne) {
				item.Reason = ne.Reason
			}
			res.Invalid = append(res.Invalid, item)
			continue
		}
		if err := look(schemas.NodeID(tenant, schemas.Identifier{Type: nt, Value: nv}), item); err != nil {
			answerLookupError(w, err, "")
			return nil, res, false
		}
	}
	return found, res, true
}

type bulkTagRequest struct {
	Action string `json:"action"`
	targets
}

// postBulkTag is POST /v1/tags/{tag} {"action": "add"|"remove", "profiles": [ids] | "identifiers": [...]}.
func (a *API) postBulkTag(w http.ResponseWriter, r *http.Request) {
	p, ok := a.authorize(w, r, partners.ScopeProfilesWrite)
	if !ok {
		return
	}
	tag := r.PathValue("tag")
	if badName(w, "tag", tag) {
		return
	}
	var req bulkTagRequest
	if !a.decodeBody(w, r, &req) {
		return
	}
	typ := map[string]string{"add": schemas.EventTagAdded, "remove": schemas.EventTagRemoved}[req.Action]
	if typ == "" {
		writeJSON(w, http.StatusBadRequest, errorBody{Error: "bad_request", Message: fmt.Sprintf(`action %q: use "add" or "remove"`, req.Action)})
		return
	}
	found, res, ok := a.resolveTargets(w, p.Tenant, req.targets)
	if !ok {
		return
	}
	changes := make([]change, len(found))
	for i, f := range found {
		changes[i] = change{typ: typ, node: f.node, id: f.id, name: tag, props: map[string]string{"tag": tag}}
	}
	if a.publish(w, r, p, changes) {
		res.Applied = len(changes)
		writeJSON(w, http.StatusAccepted, res)
	}
}

type blacklistRequest struct {
	Reason string `json:"reason"`
	targets
}

// postBlacklist is POST /v1/blacklist {"profiles" | "identifiers", "reason"}.
func (a *API) postBlacklist(w http.ResponseWriter, r *http.Request) {
	p, ok := a.authorize(w, r, partners.ScopeProfilesWrite)
	if !ok {
		return
	}
	var req blacklistRequest
	if !a.decodeBody(w, r, &req) {
		return
	}
	if len(req.Reason) > maxReason {
		writeJSON(w, http.StatusBadRequest, errorBody{Error: "bad_request", Message: fmt.Sprintf("the reason has %d bytes; at most %d", len(req.Reason), maxReason)})
		return
	}
	found, res, ok := a.resolveTargets(w, p.Tenant, req.targets)
	if !ok {
		return
	}
	var props map[string]string
	if req.Reason != "" {
		props = map[string]string{"reason": req.Reason}
	}
	changes := make([]change, len(found))
	for i, f := range found {
		changes[i] = change{typ: schemas.EventBlacklistAdded, node: f.node, id: f.id, props: props}
	}
	if a.publish(w, r, p, changes) {
		res.Applied = len(changes)
		writeJSON(w, http.StatusAccepted, res)
	}
}

// deleteBlacklist is DELETE /v1/blacklist/{id}: publishes blacklist.removed
// (a profile that is not blacklisted stays so).
func (a *API) deleteBlacklist(w http.ResponseWriter, r *http.Request) {
	p, ok := a.authorize(w, r, partners.ScopeProfilesWrite)
	if !ok {
		return
	}
	id := r.PathValue("id")
	if !validID(id) {
		writeJSON(w, http.StatusBadRequest, errorBody{Error: "bad_request", Message: badIDMessage})
		return
	}
	n, err := a.nodeOf(p.Tenant, id)
	if err != nil {
		answerLookupError(w, err, id)
		return
	}
	if a.publish(w, r, p, []change{{typ: schemas.EventBlacklistRemoved, node: id, id: n.Identifier}}) {
		writeJSON(w, http.StatusAccepted, Published{Published: 1})
	}
}

type consentRequest struct {
	Status string `json:"status"`
	// ExpiresAt is nil when absent or null; an empty string is not a time
	// (it used to read as "no expiry": a blank form field granted consent
	// forever).
	ExpiresAt *string `json:"expires_at"`
}

// putConsent is PUT /v1/profiles/{id}/consent/{purpose} {"status", "expires_at"}.
func (a *API) putConsent(w http.ResponseWriter, r *http.Request) {
	p, ok := a.authorize(w, r, partners.ScopeProfilesWrite)
	if !ok {
		return
	}
	id, purpose := r.PathValue("id"), r.PathValue("purpose")
	if !validID(id) {
		writeJSON(w, http.StatusBadRequest, errorBody{Error: "bad_request", Message: badIDMessage})
		return
	}
	if badName(w, "purpose", purpose) {
		return
	}
	var req consentRequest
	if !a.decodeBody(w, r, &req) {
		return
	}
	var typ string
	switch req.Status {
	case schemas.ConsentGranted:
		typ = schemas.EventConsentGranted
	case schemas.ConsentDenied:
		typ = schemas.EventConsentDenied
	case schemas.ConsentRevoked:
		typ = schemas.EventConsentRevoked
	default:
		writeJSON(w, http.StatusBadRequest, errorBody{Error: "bad_request", Message: fmt.Sprintf(`status %q: use "granted", "denied" or "revoked"`, req.Status)})
		return
	}
	props := map[string]string{"purpose": purpose}
	if req.ExpiresAt != nil {
		if typ != schemas.EventConsentGranted {
			writeJSON(w, http.StatusBadRequest, errorBody{Error: "bad_request", Message: "expires_at goes only with status granted"})
			return
		}
		t, err := time.Parse(time.RFC3339Nano, *req.ExpiresAt)
		if err != nil {
			writeJSON(w, http.StatusBadRequest, errorBody{Error: "bad_request", Message: fmt.Sprintf("expires_at %q is not an RFC 3339 time (e.g. 2027-01-31T00:00:00Z); leave it out for a consent that does not expire", *req.ExpiresAt)})
			return
		}
		if !t.After(a.cfg.Now()) {
			writeJSON(w, http.StatusBadRequest, errorBody{Error: "bad_request", Message: fmt.Sprintf("expires_at %s is not in the future", *req.ExpiresAt)})
			return
		}
		props["expires_at"] = t.UTC().Format(time.RFC3339Nano)
	}
	n, err := a.nodeOf(p.Tenant, id)
	if err != nil {
		answerLookupError(w, err, id)
		return
	}
	if a.publish(w, r, p, []change{{typ: typ, node: id, id: n.Identifier, name: purpose, props: props}}) {
		writeJSON(w, http.StatusAccepted, Published{Published: 1})
	}
}

// BlacklistEntry is one blacklisted profile of GET /v1/blacklist.
type BlacklistEntry struct {
	ID     string `json:"id"`
	Reason string `json:"reason"`
	Since  string `json:"since"`
}

// BlacklistPage is one page of GET /v1/blacklist. NextCursor is empty on
// the last page.
type BlacklistPage struct {
	Profiles   []BlacklistEntry `json:"profiles"`
	NextCursor string           `json:"next_cursor,omitempty"`
}

const cursorPrefix = "v1:"

func encodeCursor(key string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(cursorPrefix + key))
}

func decodeCursor(c string) (string, bool) {
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil || !strings.HasPrefix(string(b), cursorPrefix) {
		return "", false
	}
	return strings.TrimPrefix(string(b), cursorPrefix), true
}

// listBlacklist is GET /v1/blacklist?limit=&cursor=: the tenant's
// blacklisted live profiles, in id order. A page reads at most ScanPerPage
// nodes (of every tenant), so it may hold fewer than limit profiles, even
// none, with a next_cursor; the list ends when next_cursor is absent.
func (a *API) listBlacklist(w http.ResponseWriter, r *http.Request) {
	tenant, ok := a.tenant(w, r)
	if !ok {
		return
	}
	q := r.URL.Query()
	limit := DefaultPageLimit
	if q.Has("limit") {
		s := q.Get("limit")
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > MaxPageLimit {
			writeJSON(w, http.StatusBadRequest, errorBody{Error: "bad_request", Message: fmt.Sprintf("limit %q: a number from 1 to %d", s, MaxPageLimit)})
			return
		}
		limit = n
	}
	after := ""
	if c := q.Get("cursor"); c != "" {
		var ok bool
		if after, ok = decodeCursor(c); !ok {
			writeJSON(w, http.StatusBadRequest, errorBody{Error: "bad_request", Message: "cursor is not one this API gave: pass next_cursor as it came"})
			return
		}
	}
	if !a.nodes.Ready() {
		answerLookupError(w, ErrNotReady, "")
		return
	}
	fold := a.fold
	fold.Now = a.cfg.Now()
	page := BlacklistPage{Profiles: []BlacklistEntry{}}
	scanned, last, more := 0, "", false
	err := a.nodes.Scan(after, func(key string, n *schemas.Node) bool {
		if scanned == a.cfg.ScanPerPage || len(page.Profiles) == limit {
			more = true
			return false
		}
		scanned++
		last = key
		if n.Tenant != tenant || !n.IsRoot() || !mayBeBlacklisted(n) {
			return true
		}
		if p := schemas.FoldWith(key, n, &fold); p.Blacklisted {
			page.Profiles = append(page.Profiles, BlacklistEntry{ID: key, Reason: p.Blacklist.Reason, Since: p.Blacklist.Since})
		}
		return true
	})
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, errorBody{Error: "internal", Message: err.Error()})
		return
	}
	if more {
		page.NextCursor = encodeCursor(last)
	}
	writeJSON(w, http.StatusOK, page)
}

// mayBeBlacklisted reports whether a contribution of n was ever
// blacklisted: only those profiles need folding.
func mayBeBlacklisted(n *schemas.Node) bool {
	if n.Own.Blacklist != nil && n.Own.Blacklist.On {
		return true
	}
	for _, c := range n.Members {
		if c.Blacklist != nil && c.Blacklist.On {
			return true
		}
	}
	return false
}
