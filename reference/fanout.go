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
// logical sequence of directory changes, topic events, status changes and
// replays, handled once each, in order, with nothing but maps and loops.
// It does not import processors/fanout: the stream's core is compared with
// it.
type Fanout struct {
	// Topics by "<tenant>/<name>", Subs by id: the latest version of each.
	Topics map[string]*schemas.TopicRecord
	Subs   map[string]*schemas.SubscriptionRecord
	// Facts: profile id → its latest facts.
	Facts map[string]*schemas.FanoutProfile
	// Held: profile id → subscription → purpose → true.
	Held map[string]map[string]map[string]bool
	// Seen: profile id → event id → true (never forgotten).
	Seen map[string]map[string]bool
	// Mark: profile id → the length of Deliveries when it was last
	// blacklisted (what a blacklisting cancels came after it).
	Mark map[string]int

	// Deliveries of every message, in order.
	Deliveries []FanoutDelivered
	// Outcome and Skips of the last message handled.
	Outcome string
	Skips   map[string]string

	at int64 // the instant of the message being handled
}

// FanoutDelivered is one record the model delivered.
type FanoutDelivered struct {
	Kind, Subscription, Partner, Tenant, Topic, Profile, WebhookID, Body string
}

// FanoutMessage is one message of the sequence: Profile is the key of an
// event, a status change or a replay; At its instant.
type FanoutMessage struct {
	Profile string
	At      int64
	Input   schemas.FanoutInput
}

// NewFanout returns an empty model.
func NewFanout() *Fanout {
	return &Fanout{Topics: map[string]*schemas.TopicRecord{}, Subs: map[string]*schemas.SubscriptionRecord{},
		Facts: map[string]*schemas.FanoutProfile{}, Held: map[string]map[string]map[string]bool{},
		Seen: map[string]map[string]bool{}, Mark: map[string]int{}}
}

// Handle handles one message.
func (r *Fanout) Handle(m FanoutMessage) {
	r.Outcome, r.Skips, r.at = "", map[string]string{}, m.At
	in := m.Input
	if t := in.Topic; t != nil {
		k := t.Topic.Tenant + "/" + t.Topic.Name
		if r.Topics[k] == nil || r.Topics[k].Version < t.Version {
			c := *t
			r.Topics[k] = &c
		}
	}
	if s := in.Subscription; s != nil {
		if r.Subs[s.Subscription.ID] == nil || r.Subs[s.Subscription.ID].Version < s.Version {
			c := *s
			r.Subs[s.Subscription.ID] = &c
		}
	}
	if st := in.Status; st != nil && st.Profile != nil {
		r.facts(m.Profile, st.Profile)
	}
	if ev := in.Event; ev != nil {
		if r.Seen[m.Profile] == nil {
			r.Seen[m.Profile] = map[string]bool{}
		}
		if r.Seen[m.Profile][ev.EventID] {
			r.Outcome = schemas.FanoutDuplicate
			return
		}
		r.Seen[m.Profile][ev.EventID] = true
		if ev.Profile != nil {
			r.facts(m.Profile, ev.Profile)
		}
		var ids []string
		for id, s := range r.Subs {
			if s.Subscription.Topic == ev.Topic {
				ids = append(ids, id)
			}
		}
		r.fan(m, ev, ev.Profile, ids)
	}
	if rp := in.Replay; rp != nil {
		facts := r.Facts[m.Profile]
		if facts == nil {
			facts = rp.Event.Profile
		}
		if s := r.Subs[rp.Subscription]; s == nil || s.Subscription.Topic != rp.Event.Topic {
			if r.wholeEvent(&rp.Event, facts) == "" {
				r.Outcome = schemas.FanoutNoTopic
				return
			}
		}
		r.fan(m, &rp.Event, facts, []string{rp.Subscription})
	}
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

func (r *Fanout) fan(m FanoutMessage, ev *schemas.FanoutEvent, facts *schemas.FanoutProfile, ids []string) {
	if why := r.wholeEvent(ev, facts); why != "" {
		r.Outcome = why
		return
	}
	r.Outcome = "fanned"
	t := r.Topics[ev.Tenant+"/"+ev.Topic].Topic
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
			if !ok || c.Status != schemas.ConsentGranted || (c.Expires != 0 && m.At >= c.Expires) {
				why = schemas.FanoutNoConsent
			}
		}
		if why != "" {
			r.Skips[id] = why
			continue
		}
		r.Deliveries = append(r.Deliveries, FanoutDelivered{Kind: schemas.KindTopicEvent, Subscription: id,
			Partner: s.Partner, Tenant: s.Tenant, Topic: t.Name, Profile: m.Profile,
			WebhookID: id + "." + ev.EventID, Body: fanoutEventBody(&t, ev)})
		if t.RequiresConsent != "" {
			if r.Held[m.Profile] == nil {
				r.Held[m.Profile] = map[string]map[string]bool{}
			}
			if r.Held[m.Profile][id] == nil {
				r.Held[m.Profile][id] = map[string]bool{}
			}
			r.Held[m.Profile][id][t.RequiresConsent] = true
		}
	}
}

// facts records new facts of a profile; a purpose that was granted and is
// now revoked or denied is revoked at every live subscription holding it.
func (r *Fanout) facts(profile string, f *schemas.FanoutProfile) {
	prev := r.Facts[profile]
	r.Facts[profile] = f
	r.revocations(profile, prev, f)
	if f.Blacklisted && (prev == nil || !prev.Blacklisted) {
		r.blacklisted(profile)
	}
}

// blacklisted cancels, at every active subscription that received a topic
// event of the profile since it was last blacklisted, what may still wait
// there: one record of kind blacklisted, without body.
func (r *Fanout) blacklisted(profile string) {
	got := map[string]bool{}
	for _, d := range r.Deliveries[r.Mark[profile]:] {
		if d.Profile == profile && d.Kind == schemas.KindTopicEvent {
			got[d.Subscription] = true
		}
	}
	var subs []string
	for id := range got {
		subs = append(subs, id)
	}
	sort.Strings(subs)
	for _, id := range subs {
		s := r.Subs[id]
		if s == nil || s.Subscription.Status != schemas.SubscriptionActive {
			continue
		}
		r.Deliveries = append(r.Deliveries, FanoutDelivered{Kind: schemas.KindBlacklisted, Subscription: id,
			Partner: s.Subscription.Partner, Tenant: s.Subscription.Tenant, Topic: s.Subscription.Topic,
			Profile: profile, WebhookID: id + ".blacklisted." + profile + "." + strconv.FormatInt(r.at, 10)})
	}
	r.Mark[profile] = len(r.Deliveries)
}

// revocations sends the revocations of the purposes granted in prev and
// revoked or denied in f.
func (r *Fanout) revocations(profile string, prev, f *schemas.FanoutProfile) {
	if prev == nil {
		return
	}
	var purposes []string
	for p := range prev.Consent {
		purposes = append(purposes, p)
	}
	sort.Strings(purposes)
	for _, p := range purposes {
		now, ok := f.Consent[p]
		if prev.Consent[p].Status != schemas.ConsentGranted || !ok {
			continue
		}
		if now.Status != schemas.ConsentRevoked && now.Status != schemas.ConsentDenied {
			continue
		}
		var subs []string
		for id, held := range r.Held[profile] {
			if held[p] {
				subs = append(subs, id)
			}
		}
		sort.Strings(subs)
		for _, id := range subs {
			delete(r.Held[profile][id], p)
			s := r.Subs[id]
			if s == nil || s.Subscription.Status != schemas.SubscriptionActive {
				continue
			}
			body := fanoutJSON(map[string]string{"kind": schemas.KindConsentRevoked,
				"type": "profile.consent_revoked", "tenant": s.Subscription.Tenant, "profile_id": profile,
				"purpose": p, "topic": s.Subscription.Topic, "time": fanoutTime(now.Since)})
			r.Deliveries = append(r.Deliveries, FanoutDelivered{Kind: schemas.KindConsentRevoked, Subscription: id,
				Partner: s.Subscription.Partner, Tenant: s.Subscription.Tenant, Topic: s.Subscription.Topic,
				Profile: profile, WebhookID: id + ".revoked." + p + "." + strconv.FormatInt(now.Since, 10),
				Body: body})
		}
	}
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
