package views

// The partner fan-out API (docs/fanout.md, "Topics" and "Subscriptions";
// docs/api.md "Partner fan-out"): a partner's topics with their access
// lists (POST, PUT access, GET, DELETE /v1/topics; topics:write or admin
// to change them, and only the owner may), and the subscriptions of a
// partner on the topics it may read (/v1/subscriptions: any key of the
// partner; the topic's access list decides, not a scope). Nothing is seen
// or changed across tenants: a topic is its tenant's name, a subscription
// its partner's.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"time"

	"github.com/rolodex/rolodex/partners"
	"github.com/rolodex/rolodex/schemas"
)

// maxTopicDescription bounds a topic's description, in bytes; maxHookURL a
// webhook URL.
const (
	maxTopicDescription = 1000
	maxHookURL          = 2000
)

// subscriptionIDRe is what a subscription id looks like ("sub_" and 32
// hex digits).
var subscriptionIDRe = regexp.MustCompile(`^sub_[0-9a-f]{32}$`)

// Topic is a topic as the API shows it. Its owner sees everything; a
// partner that may read it sees neither the access list nor the
// version.
type Topic struct {
	Name            string    `json:"name"`
	Owner           string    `json:"owner"`
	Description     string    `json:"description,omitempty"`
	Allowed         *[]string `json:"allowed,omitempty"`
	RequiresConsent string    `json:"requires_consent,omitempty"`
	IncludeProfile  []string  `json:"include_profile"`
	Version         int64     `json:"version,omitempty"`
	Deleted         bool      `json:"deleted,omitempty"`
	UpdatedAt       string    `json:"updated_at,omitempty"`
	UpdatedBy       string    `json:"updated_by,omitempty"`
	// SubscriptionsEnded counts the subscriptions a DELETE ended.
	SubscriptionsEnded *int `json:"subscriptions_ended,omitempty"`
}

// TopicList is the answer of GET /v1/topics.
type TopicList struct {
	// Owned are the caller's topics; Readable those of other partners of
	// its tenant whose access list names it.
	Owned    []Topic `json:"owned"`
	Readable []Topic `json:"readable"`
}

func ownedTopic(r schemas.TopicRecord) Topic {
	t := readableTopic(r.Topic)
	allowed := append([]string{}, r.Topic.Allowed...)
	t.Allowed, t.Version, t.Deleted, t.UpdatedAt, t.UpdatedBy = &allowed, r.Version, r.Deleted, r.UpdatedAt, r.UpdatedBy
	return t
}

func readableTopic(t schemas.Topic) Topic {
	return Topic{Name: t.Name, Owner: t.Owner, Description: t.Description, RequiresConsent: t.RequiresConsent,
		IncludeProfile: append([]string{}, t.IncludeProfile...)}
}

// Subscription is a subscription as the API shows it; Secret only in the
// answer of its creation.
type Subscription struct {
	ID        string                      `json:"id"`
	Topic     string                      `json:"topic"`
	Partner   string                      `json:"partner"`
	Kafka     bool                        `json:"kafka,omitempty"`
	Webhook   *schemas.SubscriptionHook   `json:"webhook,omitempty"`
	Secret    string                      `json:"secret,omitempty"`
	Status    string                      `json:"status"`
	Reason    string                      `json:"reason,omitempty"`
	CreatedAt string                      `json:"created_at"`
	Version   int64                       `json:"version"`
	UpdatedAt string                      `json:"updated_at"`
	Replay    *schemas.SubscriptionReplay `json:"replay,omitempty"`
}

// SubscriptionList is the answer of GET /v1/subscriptions.
type SubscriptionList struct {
	Subscriptions []Subscription `json:"subscriptions"`
}

func subscriptionOf(r schemas.SubscriptionRecord) Subscription {
	s := r.Subscription
	return Subscription{ID: s.ID, Topic: s.Topic, Partner: s.Partner, Kafka: s.Kafka, Webhook: s.Webhook, Status: s.Status,
		Reason: s.Reason, CreatedAt: s.CreatedAt, Version: r.Version, UpdatedAt: r.UpdatedAt, Replay: r.Replay}
}

// refusal is an answer decided under a store's write lock.
type refusal struct {
	status int
	body   errorBody
}

func (r *refusal) Error() string { return r.body.Message }

func refuse(status int, code, format string, args ...any) error {
	return &refusal{status, errorBody{Error: code, Message: fmt.Sprintf(format, args...)}}
}

// answerFanoutError answers a refusal, or a failed store read or write:
// 503 not_ready while the stores load, 503 kafka_unavailable when a write
// was not acknowledged in time.
func (a *API) answerFanoutError(w http.ResponseWriter, err error) {
	var rf *refusal
	switch {
	case errors.As(err, &rf):
		writeJSON(w, rf.status, rf.body)
	case errors.Is(err, ErrFanoutNotReady):
		w.Header().Set("Retry-After", "1")
		writeJSON(w, http.StatusServiceUnavailable, errorBody{Error: "not_ready", Message: "the topics and subscriptions are still loading; retry shortly"})
	case errors.Is(err, ErrRuleUnavailable), errors.Is(err, context.DeadlineExceeded):
		w.Header().Set("Retry-After", "5")
		writeJSON(w, http.StatusServiceUnavailable, errorBody{Error: "kafka_unavailable",
			Message: "Kafka did not acknowledge the change in time; nothing is guaranteed written: retry the same request"})
	default:
		a.cfg.Logger.Error("views: fan-out store", "err", err)
		writeJSON(w, http.StatusInternalServerError, errorBody{Error: "internal", Message: err.Error()})
	}
}

func (a *API) registerFanout(mux Mux) {
	for _, r := range []struct {
		pattern string
		h       http.HandlerFunc
	}{
		{"POST /v1/topics", a.postTopic},
		{"GET /v1/topics", a.listTopics},
		{"PUT /v1/topics/{name}/access", a.putTopicAccess},
		{"DELETE /v1/topics/{name}", a.deleteTopic},
		{"POST /v1/subscriptions", a.postSubscription},
		{"GET /v1/subscriptions", a.listSubscriptions},
		{"GET /v1/subscriptions/{id}", a.getSubscription},
		{"DELETE /v1/subscriptions/{id}", a.deleteSubscription},
		{"POST /v1/subscriptions/{id}/replay", a.replaySubscription},
	} {
		mux.Handle(r.pattern, withRequestID(r.h))
	}
}

// authenticate checks the request's bearer key (401), whatever its
// scopes: what a subscription needs.
func (a *API) authenticate(w http.ResponseWriter, r *http.Request) (*partners.Partner, bool) {
	pr, err := a.partners.Authenticate(r.Header.Get("Authorization"))
	if err != nil {
		writeJSON(w, http.StatusUnauthorized, errorBody{Error: "unauthorized", Message: err.Error()})
		return nil, false
	}
	return pr.Partner, true
}

// fanoutLoaded waits, up to WriteTimeout, for both stores to have read
// their topics; it answers 503 not_ready itself when the wait ends first.
func (a *API) fanoutLoaded(w http.ResponseWriter, r *http.Request) bool {
	ctx, cancel := context.WithTimeout(r.Context(), a.cfg.WriteTimeout)
	defer cancel()
	err := a.cfg.Topics.WaitReady(ctx)
	if err == nil {
		err = a.cfg.Subscriptions.WaitReady(ctx)
	}
	if err != nil {
		a.answerFanoutError(w, err)
		return false
	}
	return true
}

// checkAllowed reports an access list entry that is not a partner of
// tenant.
func (a *API) checkAllowed(tenant string, allowed []string) error {
	for i, name := range allowed {
		if q, ok := a.partners.ByName(name); !ok || q.Tenant != tenant {
			return refuse(http.StatusBadRequest, "invalid_topic", "allowed[%d]: %q is not a partner of this tenant", i, name)
		}
	}
	return nil
}

// topicName is the {name} of the path, answering 400 itself.
func topicName(w http.ResponseWriter, r *http.Request) (string, bool) {
	name := r.PathValue("name")
	if !schemas.TopicNameRe.MatchString(name) {
		writeJSON(w, http.StatusBadRequest, errorBody{Error: "bad_request", Message: fmt.Sprintf("name: %q is not a topic name (%s)", name, schemas.TopicNameRe)})
		return "", false
	}
	return name, true
}

type postTopicRequest struct {
	Name            string     `json:"name"`
	Description     string     `json:"description"`
	Allowed         stringList `json:"allowed"`
	RequiresConsent string     `json:"requires_consent"`
	IncludeProfile  stringList `json:"include_profile"`
}

// stringList is a JSON array of strings that refuses null: the API
// document says array, and null is not an empty list (absent is). Found by
// the contract tier: "allowed": null was accepted.
type stringList []string

func (l *stringList) UnmarshalJSON(b []byte) error {
	if string(bytes.TrimSpace(b)) == "null" {
		return errors.New("a list of strings was null: send [] or leave the field out")
	}
	return json.Unmarshal(b, (*[]string)(l))
}

// postTopic is POST /v1/topics: a topic of the caller's tenant, owned by
// the key's partner; 201, or 409 when the tenant has a topic of that name.
func (a *API) postTopic(w http.ResponseWriter, r *http.Request) {
	p, ok := a.authorizeAny(w, r, partners.ScopeTopicsWrite, partners.ScopeAdmin)
	if !ok {
		return
	}
	var req postTopicRequest
	if !a.decodeBody(w, r, &req) {
		return
	}
	t := schemas.Topic{Tenant: p.Tenant, Name: req.Name, Owner: p.Name, Description: req.Description,
		Allowed: []string{}, RequiresConsent: req.RequiresConsent, IncludeProfile: req.IncludeProfile}
	if req.Allowed != nil {
		t.Allowed = req.Allowed
	}
	if err := a.validTopic(&t); err != nil {
		a.answerFanoutError(w, err)
		return
	}
	if !a.fanoutLoaded(w, r) {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), a.cfg.WriteTimeout)
	defer cancel()
	rec, err := a.cfg.Topics.Update(ctx, p.Tenant, t.Name, p.Name, func(prev *schemas.TopicRecord) (*schemas.TopicRecord, error) {
		if prev != nil && !prev.Deleted {
			return nil, refuse(http.StatusConflict, "conflict", "name: this tenant has a topic %q (owned by %s); topic names are unique in a tenant", t.Name, prev.Topic.Owner)
		}
		return &schemas.TopicRecord{Topic: t}, nil
	})
	if err != nil {
		a.answerFanoutError(w, err)
		return
	}
	a.inForce(w, r, a.cfg.Topics.versioned, rec.Topic.Key())
	writeJSON(w, http.StatusCreated, ownedTopic(rec))
}

// validTopic checks a topic as the API takes it, naming the field.
func (a *API) validTopic(t *schemas.Topic) error {
	if t.Name == "" {
		return refuse(http.StatusBadRequest, "invalid_topic", "name is required (%s)", schemas.TopicNameRe)
	}
	if err := t.Validate(); err != nil {
		return refuse(http.StatusBadRequest, "invalid_topic", "%s", err.Error())
	}
	if len(t.Description) > maxTopicDescription {
		return refuse(http.StatusBadRequest, "invalid_topic", "description: %d bytes; at most %d", len(t.Description), maxTopicDescription)
	}
	seen := map[string]bool{}
	for _, f := range t.IncludeProfile {
		if seen[f] {
			return refuse(http.StatusBadRequest, "invalid_topic", "include_profile: %q is listed twice", f)
		}
		seen[f] = true
	}
	return a.checkAllowed(t.Tenant, t.Allowed)
}

// listTopics is GET /v1/topics: the caller's topics, and those of its
// tenant whose access list names it. Any key of the partner.
func (a *API) listTopics(w http.ResponseWriter, r *http.Request) {
	p, ok := a.authenticate(w, r)
	if !ok {
		return
	}
	if !a.fanoutLoaded(w, r) {
		return
	}
	recs, err := a.cfg.Topics.List(p.Tenant)
	if err != nil {
		a.answerFanoutError(w, err)
		return
	}
	out := TopicList{Owned: []Topic{}, Readable: []Topic{}}
	for _, rec := range recs {
		switch {
		case rec.Topic.Owner == p.Name:
			out.Owned = append(out.Owned, ownedTopic(rec))
		case rec.Topic.Allows(p.Name):
			out.Readable = append(out.Readable, readableTopic(rec.Topic))
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// ownTopic checks, under the store's write lock, that prev is a live topic
// the partner owns: 404 for none, 403 for another partner's.
func ownTopic(prev *schemas.TopicRecord, p *partners.Partner, name, what string) error {
	if prev == nil || prev.Deleted {
		return refuse(http.StatusNotFound, "not_found", "no topic %s in this tenant", name)
	}
	if prev.Topic.Owner != p.Name {
		return refuse(http.StatusForbidden, "forbidden", "topic %s belongs to %s: only its owner may %s", name, prev.Topic.Owner, what)
	}
	return nil
}

type putAccessRequest struct {
	Allowed *[]string `json:"allowed"`
}

// putTopicAccess is PUT /v1/topics/{name}/access {"allowed": [...]}: the
// topic's whole access list, owner only.
func (a *API) putTopicAccess(w http.ResponseWriter, r *http.Request) {
	p, ok := a.authorizeAny(w, r, partners.ScopeTopicsWrite, partners.ScopeAdmin)
	if !ok {
		return
	}
	name, ok := topicName(w, r)
	if !ok {
		return
	}
	var req putAccessRequest
	if !a.decodeBody(w, r, &req) {
		return
	}
	if req.Allowed == nil {
		writeJSON(w, http.StatusBadRequest, errorBody{Error: "bad_request", Message: `allowed is required: the topic's whole access list ({"allowed": []} removes every partner)`})
		return
	}
	if !a.fanoutLoaded(w, r) {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), a.cfg.WriteTimeout)
	defer cancel()
	rec, err := a.cfg.Topics.Update(ctx, p.Tenant, name, p.Name, func(prev *schemas.TopicRecord) (*schemas.TopicRecord, error) {
		if err := ownTopic(prev, p, name, "change its access list"); err != nil {
			return nil, err
		}
		next := &schemas.TopicRecord{Topic: prev.Topic}
		next.Topic.Allowed = *req.Allowed
		if err := a.validTopic(&next.Topic); err != nil {
			return nil, err
		}
		return next, nil
	})
	if err != nil {
		a.answerFanoutError(w, err)
		return
	}
	a.inForce(w, r, a.cfg.Topics.versioned, rec.Topic.Key())
	writeJSON(w, http.StatusOK, ownedTopic(rec))
}

// deleteTopic is DELETE /v1/topics/{name}, owner only: its subscriptions
// end (status deleted), then the topic is a deleted record.
func (a *API) deleteTopic(w http.ResponseWriter, r *http.Request) {
	p, ok := a.authorizeAny(w, r, partners.ScopeTopicsWrite, partners.ScopeAdmin)
	if !ok {
		return
	}
	name, ok := topicName(w, r)
	if !ok {
		return
	}
	if !a.fanoutLoaded(w, r) {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), a.cfg.WriteTimeout)
	defer cancel()
	prev, found, err := a.cfg.Topics.Get(p.Tenant, name)
	if err == nil {
		var held *schemas.TopicRecord
		if found {
			held = &prev
		}
		err = ownTopic(held, p, name, "delete it")
	}
	if err != nil {
		a.answerFanoutError(w, err)
		return
	}
	// The subscriptions first: a DELETE that fails half way leaves the
	// topic, and the same request again ends the rest.
	subs, err := a.cfg.Subscriptions.List(func(s *schemas.Subscription) bool {
		return s.Tenant == p.Tenant && s.Topic == name && s.Status != schemas.SubscriptionDeleted
	})
	if err != nil {
		a.answerFanoutError(w, err)
		return
	}
	for _, s := range subs {
		if _, err := a.cfg.Subscriptions.Update(ctx, s.Subscription.ID, endSubscription("topic deleted")); err != nil {
			a.answerFanoutError(w, err)
			return
		}
	}
	rec, err := a.cfg.Topics.Update(ctx, p.Tenant, name, p.Name, func(prev *schemas.TopicRecord) (*schemas.TopicRecord, error) {
		if err := ownTopic(prev, p, name, "delete it"); err != nil {
			return nil, err
		}
		return &schemas.TopicRecord{Topic: prev.Topic, Deleted: true}, nil
	})
	if err != nil {
		a.answerFanoutError(w, err)
		return
	}
	out := ownedTopic(rec)
	n := len(subs)
	out.SubscriptionsEnded = &n
	a.inForce(w, r, a.cfg.Topics.versioned, rec.Topic.Key())
	writeJSON(w, http.StatusOK, out)
}

// HeaderInForce answers a change of a topic or a subscription: "true"
// once the change is in every partition of the fan-out stage's input, so
// that every event published after the answer is decided with it;
// "false" when that did not happen within the API's in-force wait (the
// fan-out stage is not running or is behind; the change takes effect
// when it catches up).
const HeaderInForce = "Rolodex-In-Force"

// inForce waits for the write of key k to be in force and says so in the
// answer's HeaderInForce.
func (a *API) inForce(w http.ResponseWriter, r *http.Request, s interface {
	WaitInForce(context.Context, string) bool
}, k string) {
	w.Header().Set(HeaderInForce, strconv.FormatBool(s.WaitInForce(r.Context(), k)))
}

// endSubscription marks a subscription deleted (nothing when it is
// already).
func endSubscription(reason string) func(prev *schemas.SubscriptionRecord) (*schemas.SubscriptionRecord, error) {
	return func(prev *schemas.SubscriptionRecord) (*schemas.SubscriptionRecord, error) {
		if prev == nil || prev.Subscription.Status == schemas.SubscriptionDeleted {
			return nil, errUnchanged
		}
		next := *prev
		next.Subscription.Status, next.Subscription.Reason = schemas.SubscriptionDeleted, reason
		return &next, nil
	}
}

type postSubscriptionRequest struct {
	Topic   string                    `json:"topic"`
	Kafka   bool                      `json:"kafka"`
	Webhook *schemas.SubscriptionHook `json:"webhook"`
}

// maxIdempotencyKey bounds the Idempotency-Key of a subscription create;
// idempotencyKeyRe is what it may be (empty: none).
const maxIdempotencyKey = 255

var idempotencyKeyRe = regexp.MustCompile(fmt.Sprintf(`^[\x21-\x7e]{0,%d}$`, maxIdempotencyKey))

// madeBy answers whether prev, the subscription an Idempotency-Key made,
// is what this request asks for and still active: nil (the retry is
// answered with it, secret included), or a 409.
func (req *postSubscriptionRequest) madeBy(prev *schemas.SubscriptionRecord, key string) error {
	s := &prev.Subscription
	sameHook := (req.Webhook == nil && s.Webhook == nil) || (req.Webhook != nil && s.Webhook != nil && req.Webhook.URL == s.Webhook.URL)
	if s.Topic != req.Topic || s.Kafka != req.Kafka || !sameHook {
		return refuse(http.StatusConflict, "conflict", "the %s %q made subscription %s of topic %s to another place; a different request needs a new key",
			HeaderIdempotencyKey, key, s.ID, s.Topic)
	}
	if s.Status != schemas.SubscriptionActive {
		return refuse(http.StatusConflict, "conflict", "the %s %q made subscription %s, which is %s now; a new subscription needs a new key",
			HeaderIdempotencyKey, key, s.ID, s.Status)
	}
	return nil
}

// randomHex is n random bytes in hex.
func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return hex.EncodeToString(b)
}

// newSecret is a signing secret: "whsec_" and 32 random bytes in base64.
func newSecret() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return "whsec_" + base64.StdEncoding.EncodeToString(b)
}

// postSubscription is POST /v1/subscriptions {topic, kafka: true} or
// {topic, webhook: {url}}: a subscription of the key's partner to a topic
// of its tenant that names it; 201 with the signing secret, once.
func (a *API) postSubscription(w http.ResponseWriter, r *http.Request) {
	p, ok := a.authenticate(w, r)
	if !ok {
		return
	}
	var req postSubscriptionRequest
	if !a.decodeBody(w, r, &req) {
		return
	}
	bad := func(format string, args ...any) {
		writeJSON(w, http.StatusBadRequest, errorBody{Error: "invalid_subscription", Message: fmt.Sprintf(format, args...)})
	}
	switch {
	case req.Topic == "":
		bad("topic is required: the name of a topic of this tenant")
		return
	case !schemas.TopicNameRe.MatchString(req.Topic):
		bad("topic: %q is not a topic name (%s)", req.Topic, schemas.TopicNameRe)
		return
	case req.Kafka && req.Webhook != nil:
		bad(`set webhook {"url": ...} or kafka: true, not both`)
		return
	case !req.Kafka && req.Webhook == nil:
		bad(`set webhook {"url": ...} or kafka: true (records on %s)`, schemas.OutTopic(p.Name))
		return
	}
	if h := req.Webhook; h != nil {
		u, err := url.Parse(h.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || len(h.URL) > maxHookURL {
			bad("webhook.url: %q is not an absolute http or https URL of at most %d bytes", h.URL, maxHookURL)
			return
		}
	}
	idem := r.Header.Get(HeaderIdempotencyKey)
	if !idempotencyKeyRe.MatchString(idem) {
		bad("the %s header: at most %d visible ASCII characters (no spaces), not %q", HeaderIdempotencyKey, maxIdempotencyKey, idem)
		return
	}
	if !a.fanoutLoaded(w, r) {
		return
	}
	t, found, err := a.cfg.Topics.Get(p.Tenant, req.Topic)
	if err == nil {
		switch {
		case !found || t.Deleted:
			err = refuse(http.StatusNotFound, "not_found", "topic: no topic %s in this tenant", req.Topic)
		case !t.Topic.Allows(p.Name):
			err = refuse(http.StatusForbidden, "forbidden", "topic: %s is not on the access list of topic %s (its owner %s decides)", p.Name, req.Topic, t.Topic.Owner)
		}
	}
	if err != nil {
		a.answerFanoutError(w, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), a.cfg.WriteTimeout)
	defer cancel()
	id := "sub_" + randomHex(16)
	secret := newSecret()
	now := a.cfg.Now().UTC().Truncate(time.Millisecond).Format(time.RFC3339Nano)
	var replay *schemas.SubscriptionRecord
	rec, err := a.cfg.Subscriptions.Update(ctx, id, func(prev *schemas.SubscriptionRecord) (*schemas.SubscriptionRecord, error) {
		if prev != nil { // 128 random bits: never
			return nil, errors.New("views: a subscription id drawn twice")
		}
		// A retry whose first try landed: what the first try made
		// (decided under the store's write lock: two tries on one
		// instance never both miss each other).
		if idem != "" {
			made, err := a.cfg.Subscriptions.ByIdempotencyKey(p.Tenant, p.Name, idem)
			if err != nil {
				return nil, err
			}
			if made != nil {
				if err := req.madeBy(made, idem); err != nil {
					return nil, err
				}
				replay = made
				return nil, errUnchanged
			}
		}
		// One active subscription per partner, topic and target: a second
		// would deliver every record twice to the same place.
		dup, err := a.cfg.Subscriptions.List(func(s *schemas.Subscription) bool {
			return s.Tenant == p.Tenant && s.Partner == p.Name && s.Topic == req.Topic && s.Live() &&
				s.Kafka == req.Kafka && (req.Webhook == nil || (s.Webhook != nil && s.Webhook.URL == req.Webhook.URL))
		})
		if err != nil {
			return nil, err
		}
		for i := range dup {
			// The first try, read since the lookup above.
			if idem != "" && dup[i].IdempotencyKey == idem {
				replay = &dup[i]
				return nil, errUnchanged
			}
		}
		if len(dup) > 0 {
			return nil, refuse(http.StatusConflict, "conflict", "subscription %s already delivers topic %s to the same place; delete it first to make a new one (a new secret)",
				dup[0].Subscription.ID, req.Topic)
		}
		return &schemas.SubscriptionRecord{Secret: secret, IdempotencyKey: idem, Subscription: schemas.Subscription{ID: id, Tenant: p.Tenant, Partner: p.Name,
			Topic: req.Topic, Kafka: req.Kafka, Webhook: req.Webhook, Status: schemas.SubscriptionActive, CreatedAt: now}}, nil
	})
	if err != nil {
		a.answerFanoutError(w, err)
		return
	}
	if replay != nil {
		rec = *replay
	}
	out := subscriptionOf(rec)
	out.Secret = rec.Secret
	a.inForce(w, r, a.cfg.Subscriptions.versioned, rec.Subscription.ID)
	writeJSON(w, http.StatusCreated, out)
}

// listSubscriptions is GET /v1/subscriptions: the partner's subscriptions
// that are not deleted (active and disabled).
func (a *API) listSubscriptions(w http.ResponseWriter, r *http.Request) {
	p, ok := a.authenticate(w, r)
	if !ok {
		return
	}
	if !a.fanoutLoaded(w, r) {
		return
	}
	recs, err := a.cfg.Subscriptions.List(func(s *schemas.Subscription) bool {
		return s.Tenant == p.Tenant && s.Partner == p.Name && s.Status != schemas.SubscriptionDeleted
	})
	if err != nil {
		a.answerFanoutError(w, err)
		return
	}
	out := SubscriptionList{Subscriptions: make([]Subscription, len(recs))}
	for i, rec := range recs {
		out.Subscriptions[i] = subscriptionOf(rec)
	}
	writeJSON(w, http.StatusOK, out)
}

// subscriptionRequest authenticates and reads the {id} of the path: the
// partner and id, answering 400 itself.
func (a *API) subscriptionRequest(w http.ResponseWriter, r *http.Request) (*partners.Partner, string, bool) {
	p, ok := a.authenticate(w, r)
	if !ok {
		return nil, "", false
	}
	id := r.PathValue("id")
	if !subscriptionIDRe.MatchString(id) {
		writeJSON(w, http.StatusBadRequest, errorBody{Error: "bad_request", Message: fmt.Sprintf("id: %q is not a subscription id (sub_ and 32 hex digits)", id)})
		return nil, "", false
	}
	if !a.fanoutLoaded(w, r) {
		return nil, "", false
	}
	return p, id, true
}

// ownSubscription: prev is the partner's (of its tenant), else 404 (a
// subscription of another partner is not told apart from none).
func ownSubscription(prev *schemas.SubscriptionRecord, p *partners.Partner, id string) error {
	if prev == nil || prev.Subscription.Tenant != p.Tenant || prev.Subscription.Partner != p.Name {
		return refuse(http.StatusNotFound, "not_found", "no subscription %s of partner %s", id, p.Name)
	}
	return nil
}

// getSubscription is GET /v1/subscriptions/{id}: the partner's
// subscription, deleted or not, without its secret.
func (a *API) getSubscription(w http.ResponseWriter, r *http.Request) {
	p, id, ok := a.subscriptionRequest(w, r)
	if !ok {
		return
	}
	rec, found, err := a.cfg.Subscriptions.Get(id)
	if err == nil {
		var held *schemas.SubscriptionRecord
		if found {
			held = &rec
		}
		err = ownSubscription(held, p, id)
	}
	if err != nil {
		a.answerFanoutError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, subscriptionOf(rec))
}

// deleteSubscription is DELETE /v1/subscriptions/{id}: status deleted
// (again: the same answer, nothing written).
func (a *API) deleteSubscription(w http.ResponseWriter, r *http.Request) {
	p, id, ok := a.subscriptionRequest(w, r)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), a.cfg.WriteTimeout)
	defer cancel()
	end := endSubscription("deleted by " + p.Name)
	rec, err := a.cfg.Subscriptions.Update(ctx, id, func(prev *schemas.SubscriptionRecord) (*schemas.SubscriptionRecord, error) {
		if err := ownSubscription(prev, p, id); err != nil {
			return nil, err
		}
		return end(prev)
	})
	if err != nil {
		a.answerFanoutError(w, err)
		return
	}
	a.inForce(w, r, a.cfg.Subscriptions.versioned, rec.Subscription.ID)
	writeJSON(w, http.StatusOK, subscriptionOf(rec))
}

type replayRequest struct {
	Since string `json:"since"`
}

// replaySubscription is POST /v1/subscriptions/{id}/replay {since}: the
// request, recorded on the subscription's record (a new version with
// Replay) for the replay step; 202.
func (a *API) replaySubscription(w http.ResponseWriter, r *http.Request) {
	p, id, ok := a.subscriptionRequest(w, r)
	if !ok {
		return
	}
	var req replayRequest
	if !a.decodeBody(w, r, &req) {
		return
	}
	since, err := time.Parse(time.RFC3339Nano, req.Since)
	now := a.cfg.Now()
	switch {
	case req.Since == "":
		writeJSON(w, http.StatusBadRequest, errorBody{Error: "bad_request", Message: `since is required: an RFC 3339 instant ("2025-01-01T00:00:00Z")`})
		return
	case err != nil:
		writeJSON(w, http.StatusBadRequest, errorBody{Error: "bad_request", Message: fmt.Sprintf("since: %q is not an RFC 3339 instant (2025-01-01T00:00:00Z)", req.Since)})
		return
	case since.After(now):
		writeJSON(w, http.StatusBadRequest, errorBody{Error: "bad_request", Message: fmt.Sprintf("since: %s is in the future", req.Since)})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), a.cfg.WriteTimeout)
	defer cancel()
	stamp := func(t time.Time) string { return t.UTC().Truncate(time.Millisecond).Format(time.RFC3339Nano) }
	rec, err := a.cfg.Subscriptions.Update(ctx, id, func(prev *schemas.SubscriptionRecord) (*schemas.SubscriptionRecord, error) {
		if err := ownSubscription(prev, p, id); err != nil {
			return nil, err
		}
		if !prev.Subscription.Live() {
			return nil, refuse(http.StatusConflict, "conflict", "subscription %s is %s: only an active subscription is replayed", id, prev.Subscription.Status)
		}
		next := *prev
		next.Replay = &schemas.SubscriptionReplay{ID: "rpl_" + randomHex(16), Since: stamp(since), RequestedAt: stamp(now), RequestedBy: p.Name}
		return &next, nil
	})
	if err != nil {
		a.answerFanoutError(w, err)
		return
	}
	writeJSON(w, http.StatusAccepted, subscriptionOf(rec))
}
