package reference

import (
	"bytes"
	"encoding/json"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/rolodex/rolodex/schemas"
)

// Fanout is the offline model of partner fan-out (docs/fanout.md): the
// logical sequence of directory changes, topic events, status changes,
// replays and merges, handled once each, in order, with nothing but maps
// and loops. It does not import processors/fanout: the stream's core is
// compared with it.
type Fanout struct {
	// Topics by "<tenant>/<name>", Subs by id: the latest version of each.
	Topics map[string]*schemas.TopicRecord
	Subs   map[string]*schemas.SubscriptionRecord
	// Facts: profile key → its latest facts.
	Facts map[string]*schemas.FanoutProfile
	// Hold: profile key → profile id (the key's own, or a profile merged
	// into it) → what subscriptions received under that id.
	Hold map[string]map[string]*FanoutHold
	// Seen: profile key → event id → true (never forgotten).
	Seen map[string]map[string]bool
	// MergedInto: profile key → the profile its handover named.
	MergedInto map[string]string
	// Revoked: profile key → purpose → the latest revocation or denial
	// (its since) the key's facts showed.
	Revoked map[string]map[string]int64

	// Deliveries of every message, in order.
	Deliveries []FanoutDelivered
	// Outcome, Skips and Forwards of the last message handled.
	Outcome  string
	Skips    map[string]string
	Forwards []FanoutMessage

	at      int64 // the instant of the message being handled
	newSeen []string
}

// FanoutHold is what subscriptions received under one profile id: the
// consent purposes each holds, and those sent a topic event since the
// id's last blacklisting.
type FanoutHold struct {
	Held map[string]map[string]bool
	Sent map[string]bool
	// Granted: subscription → purpose → the since of the grant the first
	// record of the holding went out under.
	Granted map[string]map[string]int64
}

// FanoutDelivered is one record the model delivered.
type FanoutDelivered struct {
	Kind, Subscription, Partner, Tenant, Topic, Profile, WebhookID, Body string
}

// FanoutMessage is one message of the sequence: Profile is the key of an
// event, a status change, a replay or a step of a merge; At its instant.
type FanoutMessage struct {
	Profile string
	At      int64
	Input   schemas.FanoutInput
}

// NewFanout returns an empty model.
func NewFanout() *Fanout {
	return &Fanout{Topics: map[string]*schemas.TopicRecord{}, Subs: map[string]*schemas.SubscriptionRecord{},
		Facts: map[string]*schemas.FanoutProfile{}, Hold: map[string]map[string]*FanoutHold{},
		Seen: map[string]map[string]bool{}, MergedInto: map[string]string{}, Revoked: map[string]map[string]int64{}}
}

// Handle handles one message; Forwards are the messages it writes to the
// stage's own input (a merge's handover and moves).
func (r *Fanout) Handle(m FanoutMessage) {
	r.Outcome, r.Skips, r.Forwards, r.at, r.newSeen = "", map[string]string{}, nil, m.At, nil
	in := m.Input
	k := m.Profile
	if t := in.Topic; t != nil {
		key := t.Topic.Tenant + "/" + t.Topic.Name
		if r.Topics[key] == nil || r.Topics[key].Version < t.Version {
			c := *t
			r.Topics[key] = &c
		}
	}
	if s := in.Subscription; s != nil {
		if r.Subs[s.Subscription.ID] == nil || r.Subs[s.Subscription.ID].Version < s.Version {
			c := *s
			r.Subs[s.Subscription.ID] = &c
		}
	}
	if in.Directory() {
		return
	}
	if r.Seen[k] == nil {
		r.Seen[k] = map[string]bool{}
	}
	switch {
	case in.Replay != nil && r.MergedInto[k] != "":
		r.Forwards = append(r.Forwards, FanoutMessage{Profile: r.MergedInto[k], Input: schemas.FanoutInput{Replay: in.Replay}})
	case in.Status != nil:
		if in.Status.Profile != nil {
			r.facts(k, in.Status.Profile)
		}
	case in.Event != nil:
		ev := in.Event
		if r.Seen[k][ev.EventID] {
			r.Outcome = schemas.FanoutDuplicate
			break
		}
		r.Seen[k][ev.EventID] = true
		r.newSeen = append(r.newSeen, ev.EventID)
		if ev.Profile != nil {
			r.facts(k, ev.Profile)
		}
		var ids []string
		for id, s := range r.Subs {
			if s.Subscription.Topic == ev.Topic {
				ids = append(ids, id)
			}
		}
		r.fan(k, m.At, ev, ev.Profile, ids)
	case in.Replay != nil:
		rp := in.Replay
		facts := r.Facts[k]
		if facts == nil {
			facts = rp.Event.Profile
		}
		if s := r.Subs[rp.Subscription]; s == nil || s.Subscription.Topic != rp.Event.Topic {
			if r.wholeEvent(&rp.Event, facts) == "" {
				r.Outcome = schemas.FanoutNoTopic
				break
			}
		}
		r.fan(k, m.At, &rp.Event, facts, []string{rp.Subscription})
	case in.Absorbed != nil:
		// The survivor asks the merged-away profile for its holdings.
		if from := in.Absorbed.From; from != "" && from != k {
			r.Forwards = append(r.Forwards, FanoutMessage{Profile: from, Input: schemas.FanoutInput{Handover: &schemas.FanoutHandover{To: k}}})
		}
	case in.Handover != nil:
		if to := in.Handover.To; to != "" && to != k && to != r.MergedInto[k] {
			r.MergedInto[k] = to
			r.newSeen = nil
			for e := range r.Seen[k] {
				r.newSeen = append(r.newSeen, e)
			}
		}
	case in.Moved != nil:
		for id, h := range in.Moved.Holdings {
			mine := r.hold(k, id)
			for sub, ps := range h.Held {
				for _, p := range ps {
					if mine.Held[sub] == nil {
						mine.Held[sub] = map[string]bool{}
					}
					mine.Held[sub][p] = true
				}
			}
			for _, sub := range h.Sent {
				mine.Sent[sub] = true
			}
			for k, g := range h.Granted {
				sub, p, _ := strings.Cut(k, "/")
				if old, ok := mine.Granted[sub][p]; !ok || g < old {
					if mine.Granted[sub] == nil {
						mine.Granted[sub] = map[string]int64{}
					}
					mine.Granted[sub][p] = g
				}
			}
		}
		for _, id := range sortedKeys(in.Moved.Holdings) {
			if id != k && r.MergedInto[k] == "" {
				r.settle(k, id)
			}
		}
		for _, e := range in.Moved.Seen {
			if !r.Seen[k][e] {
				r.Seen[k][e] = true
				r.newSeen = append(r.newSeen, e)
			}
		}
	}
	// A merged-away profile hands on at once whatever it holds and the
	// event ids it handled.
	if into := r.MergedInto[k]; into != "" {
		mv := &schemas.FanoutMoved{From: k}
		for _, id := range sortedKeys(r.Hold[k]) {
			h := r.Hold[k][id]
			out := &schemas.FanoutHoldings{}
			for _, sub := range sortedKeys(h.Held) {
				ps := sortedKeys(h.Held[sub])
				if len(ps) > 0 {
					if out.Held == nil {
						out.Held = map[string][]string{}
						out.Granted = map[string]int64{}
					}
					out.Held[sub] = ps
					for _, p := range ps {
						out.Granted[sub+"/"+p] = h.Granted[sub][p]
					}
				}
			}
			out.Sent = sortedKeys(h.Sent)
			if len(out.Held) > 0 || len(out.Sent) > 0 {
				if mv.Holdings == nil {
					mv.Holdings = map[string]*schemas.FanoutHoldings{}
				}
				mv.Holdings[id] = out
			}
		}
		sort.Strings(r.newSeen)
		mv.Seen = r.newSeen
		delete(r.Hold, k)
		if len(mv.Holdings) > 0 || len(mv.Seen) > 0 {
			r.Forwards = append(r.Forwards, FanoutMessage{Profile: into, Input: schemas.FanoutInput{Moved: mv}})
		}
	}
}

func sortedKeys[V any](m map[string]V) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// hold is what key holds under profile id, made when missing.
func (r *Fanout) hold(key, id string) *FanoutHold {
	if r.Hold[key] == nil {
		r.Hold[key] = map[string]*FanoutHold{}
	}
	if r.Hold[key][id] == nil {
		r.Hold[key][id] = &FanoutHold{Held: map[string]map[string]bool{}, Sent: map[string]bool{}, Granted: map[string]map[string]int64{}}
	}
	return r.Hold[key][id]
}

// wholeEvent is why the whole event is not delivered, "" if it may be.
func (r *Fanout) wholeEvent(ev *schemas.FanoutEvent, facts *schemas.FanoutProfile) string {
	t := r.Topics[ev.Tenant+"/"+ev.Topic]
	if t == nil || t.Deleted {
		return schemas.FanoutNoTopic
	}
	if t.Topic.Owner != ev.Publisher {
		return schemas.FanoutNotOwner
	}
	if facts == nil || facts.Tenant != ev.Tenant {
		return schemas.FanoutNoProfile
	}
	if facts.Blacklisted {
		return schemas.FanoutBlacklisted
	}
	return ""
}

func (r *Fanout) fan(key string, at int64, ev *schemas.FanoutEvent, facts *schemas.FanoutProfile, ids []string) {
	if why := r.wholeEvent(ev, facts); why != "" {
		r.Outcome = why
		return
	}
	r.Outcome = "fanned"
	t := r.Topics[ev.Tenant+"/"+ev.Topic].Topic
	// The id the subscription gets is the one it is held under.
	holder := key
	if ev.Profile != nil && ev.Profile.ID != "" {
		holder = ev.Profile.ID
	}
	sort.Strings(ids)
	for _, id := range ids {
		s := r.Subs[id].Subscription
		allowed := false
		for _, p := range t.Allowed {
			if p == s.Partner {
				allowed = true
			}
		}
		why := ""
		if s.Tenant != t.Tenant {
			why = schemas.FanoutOtherTenant
		} else if s.Status != schemas.SubscriptionActive {
			why = schemas.FanoutInactive
		} else if !allowed {
			why = schemas.FanoutNotAllowed
		} else if t.RequiresConsent != "" {
			c, ok := facts.Consent[t.RequiresConsent]
			if !ok || c.Status != schemas.ConsentGranted || (c.Expires != 0 && at >= c.Expires) {
				why = schemas.FanoutNoConsent
			}
		}
		if why != "" {
			r.Skips[id] = why
			continue
		}
		r.Deliveries = append(r.Deliveries, FanoutDelivered{Kind: schemas.KindTopicEvent, Subscription: id,
			Partner: s.Partner, Tenant: s.Tenant, Topic: t.Name, Profile: holder,
			WebhookID: id + "." + ev.EventID, Body: fanoutEventBody(&t, ev)})
		h := r.hold(key, holder)
		h.Sent[id] = true
		if p := t.RequiresConsent; p != "" {
			if h.Held[id] == nil {
				h.Held[id] = map[string]bool{}
			}
			if !h.Held[id][p] {
				if h.Granted[id] == nil {
					h.Granted[id] = map[string]int64{}
				}
				h.Granted[id][p] = facts.Consent[p].Since
			}
			h.Held[id][p] = true
		}
	}
}

// facts records new facts of a profile: a purpose that was granted and is
// now revoked or denied is revoked at every live subscription holding it
// under the profile's own id; a blacklisting cancels at every live
// subscription sent a topic event under it since the last one; then each
// profile merged into it is settled with the facts.
func (r *Fanout) facts(key string, f *schemas.FanoutProfile) {
	prev := r.Facts[key]
	r.Facts[key] = f
	for p, c := range f.Consent {
		if (c.Status == schemas.ConsentRevoked || c.Status == schemas.ConsentDenied) && c.Since > r.Revoked[key][p] {
			if r.Revoked[key] == nil {
				r.Revoked[key] = map[string]int64{}
			}
			r.Revoked[key][p] = c.Since
		}
	}
	own := r.hold(key, key)
	if prev != nil {
		for _, p := range sortedKeys(prev.Consent) {
			now, ok := f.Consent[p]
			if prev.Consent[p].Status != schemas.ConsentGranted || !ok ||
				(now.Status != schemas.ConsentRevoked && now.Status != schemas.ConsentDenied) {
				continue
			}
			for _, sub := range sortedKeys(own.Held) {
				if own.Held[sub][p] {
					delete(own.Held[sub], p)
					delete(own.Granted[sub], p)
					r.revoked(sub, key, p, now.Since)
				}
			}
		}
	}
	if f.Blacklisted {
		r.cancel(key, own)
	}
	if r.MergedInto[key] == "" {
		for _, id := range sortedKeys(r.Hold[key]) {
			if id != key {
				r.settle(key, id)
			}
		}
	}
}

// settle tells the subscriptions holding alias id's records at key what
// key's facts say now: a purpose revoked or denied is revoked, a
// blacklisting cancels.
func (r *Fanout) settle(key, id string) {
	f := r.Facts[key]
	if f == nil {
		return
	}
	h := r.hold(key, id)
	for _, sub := range sortedKeys(h.Held) {
		for _, p := range sortedKeys(h.Held[sub]) {
			c, ok := f.Consent[p]
			switch rv, seen := r.Revoked[key][p]; {
			case ok && (c.Status == schemas.ConsentRevoked || c.Status == schemas.ConsentDenied):
				// What the facts say now.
			case seen && rv > h.Granted[sub][p]:
				// Revoked after the grant its first record went out
				// under, granted again since.
				c.Since = rv
			default:
				continue
			}
			delete(h.Held[sub], p)
			delete(h.Granted[sub], p)
			r.revoked(sub, id, p, c.Since)
		}
	}
	if f.Blacklisted {
		r.cancel(id, h)
	}
}

// cancel sends, at every active subscription h was sent a topic event
// since its last blacklisting, one record of kind blacklisted, without
// body, for profile id.
func (r *Fanout) cancel(id string, h *FanoutHold) {
	for _, sub := range sortedKeys(h.Sent) {
		s := r.Subs[sub]
		if s == nil || s.Subscription.Status != schemas.SubscriptionActive {
			continue
		}
		r.Deliveries = append(r.Deliveries, FanoutDelivered{Kind: schemas.KindBlacklisted, Subscription: sub,
			Partner: s.Subscription.Partner, Tenant: s.Subscription.Tenant, Topic: s.Subscription.Topic,
			Profile: id, WebhookID: sub + ".blacklisted." + id + "." + strconv.FormatInt(r.at, 10)})
	}
	h.Sent = map[string]bool{}
}

// revoked tells subscription sub, if active, that profile id's purpose p
// was revoked at since.
func (r *Fanout) revoked(sub, id, p string, since int64) {
	s := r.Subs[sub]
	if s == nil || s.Subscription.Status != schemas.SubscriptionActive {
		return
	}
	body := fanoutJSON(map[string]string{"kind": schemas.KindConsentRevoked,
		"type": "profile.consent_revoked", "tenant": s.Subscription.Tenant, "profile_id": id,
		"purpose": p, "topic": s.Subscription.Topic, "time": fanoutTime(since)})
	r.Deliveries = append(r.Deliveries, FanoutDelivered{Kind: schemas.KindConsentRevoked, Subscription: sub,
		Partner: s.Subscription.Partner, Tenant: s.Subscription.Tenant, Topic: s.Subscription.Topic,
		Profile: id, WebhookID: sub + ".revoked." + id + "." + p + "." + strconv.FormatInt(since, 10),
		Body: body})
}

func fanoutTime(ms int64) string {
	return time.UnixMilli(ms).UTC().Format("2006-01-02T15:04:05.000Z")
}

func fanoutRaw(v string) json.RawMessage {
	if json.Valid([]byte(v)) {
		return json.RawMessage(v)
	}
	b, _ := json.Marshal(v)
	return b
}

// fanoutEventBody writes the body of docs/fanout.md, "Deliveries".
func fanoutEventBody(t *schemas.Topic, ev *schemas.FanoutEvent) string {
	b := map[string]any{"kind": "topic_event", "topic": t.Name, "tenant": t.Tenant, "publisher": ev.Publisher,
		"event_id": ev.EventID, "type": ev.Type, "time": fanoutTime(ev.Time)}
	p := ev.Profile
	if p != nil {
		b["profile_id"] = p.ID
	}
	if len(ev.Properties) > 0 {
		props := map[string]json.RawMessage{}
		for k, v := range ev.Properties {
			props[k] = fanoutRaw(v)
		}
		b["properties"] = props
	}
	if p != nil {
		prof := map[string]any{}
		traits := map[string]json.RawMessage{}
		ids := map[string][]string{}
		for _, f := range t.IncludeProfile {
			if f == "traits" {
				for k, v := range p.Traits {
					traits[k] = fanoutRaw(v)
				}
			} else if name, ok := strings.CutPrefix(f, "traits."); ok {
				if v, ok := p.Traits[name]; ok {
					traits[name] = fanoutRaw(v)
				}
			} else if f == "identifiers" {
				for k, v := range p.Identifiers {
					if len(v) > 0 {
						ids[k] = v
					}
				}
			} else if typ, ok := strings.CutPrefix(f, "identifiers."); ok {
				if len(p.Identifiers[typ]) > 0 {
					ids[typ] = p.Identifiers[typ]
				}
			} else if f == "tags" && len(p.Tags) > 0 {
				prof["tags"] = p.Tags
			}
		}
		if len(traits) > 0 {
			prof["traits"] = traits
		}
		if len(ids) > 0 {
			prof["identifiers"] = ids
		}
		if len(prof) > 0 {
			b["profile"] = prof
		}
	}
	if t.RequiresConsent != "" {
		c := map[string]string{"purpose": t.RequiresConsent}
		if p != nil && p.Consent[t.RequiresConsent].Expires != 0 {
			c["expires_at"] = fanoutTime(p.Consent[t.RequiresConsent].Expires)
		}
		b["consent"] = c
	}
	return fanoutJSON(b)
}

// fanoutJSON writes JSON as the bodies are: sorted keys, no HTML escaping.
func fanoutJSON(v any) string {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
	return strings.TrimSuffix(buf.String(), "\n")
}
