// Package fanout is the partner fan-out stage (docs/fanout.md): events
// published into topics, delivered to the subscriptions of the partners
// the topic's access list names, with the profile fields the topic shares,
// consent-aware. This file is its pure core: ApplyDirectory (a partition's
// copy of topics and subscriptions) and Apply (one profile's state and one
// message); the goka group around it comes in a later slice.
package fanout

import (
	"bytes"
	"encoding/json"
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/rolodex/rolodex/schemas"
)

// OutboxLimit is how many of its latest deliveries a profile's state keeps
// to send again when the message that made them is replayed.
const OutboxLimit = 256

// ForwardLimit is how many of its latest forwards (a merge's handover and
// moves) a profile's state keeps to write again when the message that
// made them is replayed, whatever the deliveries since: a lost forward
// would strand a merged-away profile's holdings.
const ForwardLimit = 64

// trimOutbox keeps the entries of the message of origin and the latest
// OutboxLimit deliveries and ForwardLimit forwards, in order.
func trimOutbox(out []schemas.FanoutSent, origin int64) []schemas.FanoutSent {
	if len(out) <= OutboxLimit {
		return out
	}
	keep := make([]bool, len(out))
	deliveries, forwards, kept := 0, 0, 0
	for i := len(out) - 1; i >= 0; i-- {
		switch o := &out[i]; {
		case o.By == origin:
			keep[i] = true
		case o.Forward != nil:
			forwards++
			keep[i] = forwards <= ForwardLimit
		default:
			deliveries++
			keep[i] = deliveries <= OutboxLimit
		}
		if keep[i] {
			kept++
		}
	}
	if kept == len(out) {
		return out
	}
	trimmed := make([]schemas.FanoutSent, 0, kept)
	for i := range out {
		if keep[i] {
			trimmed = append(trimmed, out[i])
		}
	}
	return trimmed
}

// SeenLimit is how many of its latest topic event ids a profile's state
// keeps to recognise a duplicate.
const SeenLimit = 1024

// State is the fan-out table's value for one profile.
type State = schemas.FanoutState

// Directory is a partition's copy of the topics and subscriptions.
type Directory = schemas.FanoutDirectory

// Message is one record of rolodex.fanout.input.
type Message struct {
	Input *schemas.FanoutInput
	// Origin identifies a delivery: its offset plus one; 0 for a message
	// that is never replayed.
	Origin int64
	// At is the record's instant (its Kafka timestamp, Unix ms): the
	// delivery time entitlement is decided at.
	At int64
}

// Skip is a subscription of the event's topic that was not delivered, and
// the first entitlement rule it failed.
type Skip struct {
	Subscription string
	Reason       string
}

// Result is what handling a message makes.
type Result struct {
	State     *State
	Directory *Directory
	// Deliveries, in order: revocations first, then blacklisting
	// cancels, then the event's records, each by subscription id.
	Deliveries []schemas.FanoutDelivery
	// Outcome of a topic event or a replay: "fanned", or the reason the
	// whole event was dropped (schemas.Fanout*); empty for other messages.
	Outcome string
	Skips   []Skip
	// Forwards are records to write to rolodex.fanout.input itself, each
	// under its key: a merge's handover and moves (docs/fanout.md,
	// "Merges").
	Forwards []schemas.FanoutForward
	// Write: the value must be written.
	Write bool
	// Replayed: the message was handled before; Deliveries are its
	// records, sent again.
	Replayed bool
}

// Fanned is the outcome of an event whose subscriptions were each decided.
const Fanned = "fanned"

// ApplyDirectory applies a directory change (a topic or a subscription
// record) to a partition's directory. A record no newer than the one held
// changes nothing; a replayed message changes nothing.
func ApplyDirectory(d *Directory, m Message) Result {
	if d != nil && m.Origin > 0 && m.Origin <= d.By {
		return Result{Directory: d, Replayed: true}
	}
	if d == nil {
		d = &Directory{}
	}
	if d.Topics == nil {
		d.Topics = map[string]*schemas.TopicRecord{}
	}
	if d.Subscriptions == nil {
		d.Subscriptions = map[string]*schemas.SubscriptionRecord{}
	}
	if in := m.Input; in != nil {
		if t := in.Topic; t != nil {
			k := t.Topic.Key()
			if old := d.Topics[k]; old == nil || t.Version > old.Version {
				c := *t
				d.Topics[k] = &c
			}
		}
		if s := in.Subscription; s != nil {
			k := s.Subscription.ID
			if old := d.Subscriptions[k]; old == nil || s.Version > old.Version {
				c := *s
				c.Secret = "" // the directory never holds secrets
				d.Subscriptions[k] = &c
			}
		}
	}
	if m.Origin > 0 {
		d.By = m.Origin
	}
	return Result{Directory: d, Write: true}
}

// Apply handles one message of profile key: a topic event, a status
// change, a replay or a step of a merge, under the partition's directory
// d (read only). It changes s in place. A message already reflected in
// the state (a replay after a crash) changes nothing and sends its
// deliveries and forwards again.
func Apply(d *Directory, s *State, key string, m Message) Result {
	if s != nil && m.Origin > 0 && m.Origin <= s.By {
		r := Result{State: s, Replayed: true}
		for _, o := range s.Outbox {
			if o.By != m.Origin {
				continue
			}
			if o.Forward != nil {
				r.Forwards = append(r.Forwards, *o.Forward)
			} else {
				r.Deliveries = append(r.Deliveries, o.Delivery)
			}
		}
		return r
	}
	if s == nil {
		s = &State{ProfileID: key}
	}
	if d == nil {
		d = &Directory{}
	}
	f := &fanner{d: d, s: s, at: m.At}
	if in := m.Input; in != nil {
		switch {
		case in.Replay != nil && s.MergedInto != "":
			// The profile merged away: the survivor decides with its
			// facts (it holds what this id's subscriptions received).
			f.forward(s.MergedInto, schemas.FanoutInput{Replay: in.Replay})
		case in.Event != nil:
			f.event(in.Event)
		case in.Status != nil:
			f.observe(in.Status.Profile)
		case in.Replay != nil:
			f.replay(in.Replay)
		case in.Absorbed != nil:
			if from := in.Absorbed.From; from != "" && from != key {
				f.forward(from, schemas.FanoutInput{Handover: &schemas.FanoutHandover{To: key}})
			}
		case in.Handover != nil:
			if to := in.Handover.To; to != "" && to != key && to != s.MergedInto {
				s.MergedInto = to
				f.newSeen = slices.Clone(s.Seen)
			}
		case in.Moved != nil:
			f.moved(in.Moved)
		}
	}
	if s.MergedInto != "" {
		f.moveOut()
	}
	if m.Origin > 0 {
		s.By = m.Origin
		for _, o := range f.out {
			s.Outbox = append(s.Outbox, schemas.FanoutSent{By: m.Origin, Delivery: o})
		}
		for i := range f.fwd {
			s.Outbox = append(s.Outbox, schemas.FanoutSent{By: m.Origin, Forward: &f.fwd[i]})
		}
		s.Outbox = trimOutbox(s.Outbox, m.Origin)
	}
	return Result{State: s, Deliveries: f.out, Forwards: f.fwd, Outcome: f.outcome, Skips: f.skips, Write: true}
}

type fanner struct {
	d       *Directory
	s       *State
	at      int64
	out     []schemas.FanoutDelivery
	fwd     []schemas.FanoutForward
	outcome string
	skips   []Skip
	// newSeen: topic event ids this message added to Seen (all of Seen on
	// a handover), for the survivor.
	newSeen []string
}

func (f *fanner) forward(key string, in schemas.FanoutInput) {
	f.fwd = append(f.fwd, schemas.FanoutForward{Key: key, Input: in})
}

// event decides a topic event: revocations its facts show first, then one
// record per entitled subscription.
func (f *fanner) event(ev *schemas.FanoutEvent) {
	if slices.Contains(f.s.Seen, ev.EventID) {
		f.outcome = schemas.FanoutDuplicate
		return
	}
	f.s.Seen = appendSeen(f.s.Seen, ev.EventID)
	f.newSeen = append(f.newSeen, ev.EventID)
	if ev.Profile != nil {
		f.observe(ev.Profile)
	}
	t, reason := f.topic(ev, ev.Profile)
	if reason != "" {
		f.outcome = reason
		return
	}
	f.outcome = Fanned
	for _, id := range sortedKeys(f.d.Subscriptions) {
		sub := &f.d.Subscriptions[id].Subscription
		if sub.Topic != ev.Topic {
			continue
		}
		if why := f.entitled(t, sub, ev.Profile); why != "" {
			f.skips = append(f.skips, Skip{Subscription: id, Reason: why})
			continue
		}
		f.deliver(t, sub, ev, ev.Profile, false)
	}
}

// replay delivers one event again to one subscription, if it is entitled
// now: the profile's latest facts, today's directory.
func (f *fanner) replay(r *schemas.FanoutReplay) {
	ev := &r.Event
	facts := f.s.Facts
	if facts == nil {
		facts = ev.Profile
	}
	t, reason := f.topic(ev, facts)
	if reason != "" {
		f.outcome = reason
		return
	}
	rec := f.d.Subscriptions[r.Subscription]
	if rec == nil || rec.Subscription.Topic != ev.Topic {
		f.outcome = schemas.FanoutNoTopic
		return
	}
	f.outcome = Fanned
	sub := &rec.Subscription
	if why := f.entitled(t, sub, facts); why != "" {
		f.skips = append(f.skips, Skip{Subscription: sub.ID, Reason: why})
		return
	}
	f.deliver(t, sub, ev, facts, true)
}

// topic finds the event's topic and checks the rules of the whole event:
// the topic exists, the publisher owns it, the profile is known and not
// blacklisted.
func (f *fanner) topic(ev *schemas.FanoutEvent, facts *schemas.FanoutProfile) (*schemas.Topic, string) {
	rec := f.d.Topics[schemas.TopicKey(ev.Tenant, ev.Topic)]
	switch {
	case rec == nil || rec.Deleted:
		return nil, schemas.FanoutNoTopic
	case rec.Topic.Owner != ev.Publisher:
		return nil, schemas.FanoutNotOwner
	case facts == nil || facts.Tenant != ev.Tenant:
		return nil, schemas.FanoutNoProfile
	case facts.Blacklisted:
		return nil, schemas.FanoutBlacklisted
	}
	return &rec.Topic, ""
}

// entitled is the first per-subscription rule sub fails, "" when it is
// entitled (docs/fanout.md, "Entitlement").
func (f *fanner) entitled(t *schemas.Topic, sub *schemas.Subscription, facts *schemas.FanoutProfile) string {
	switch {
	case sub.Tenant != t.Tenant:
		return schemas.FanoutOtherTenant
	case !sub.Live():
		return schemas.FanoutInactive
	case !t.Allows(sub.Partner):
		return schemas.FanoutNotAllowed
	case t.RequiresConsent != "" && !facts.Consent[t.RequiresConsent].GrantedAt(f.at):
		return schemas.FanoutNoConsent
	}
	return ""
}

func (f *fanner) deliver(t *schemas.Topic, sub *schemas.Subscription, ev *schemas.FanoutEvent, facts *schemas.FanoutProfile, replay bool) {
	// The profile id the subscription gets (the body's profile_id) is the
	// one what it received is held under: an event of a merged-away
	// profile replayed at the survivor is held as that alias's.
	holder := f.s.ProfileID
	if ev.Profile != nil && ev.Profile.ID != "" {
		holder = ev.Profile.ID
	}
	f.out = append(f.out, schemas.FanoutDelivery{Kind: schemas.KindTopicEvent, Tenant: t.Tenant, Partner: sub.Partner,
		Subscription: sub.ID, Topic: t.Name, Kafka: sub.Kafka, ProfileID: holder, EventID: ev.EventID, Type: ev.Type,
		At: f.at, WebhookID: WebhookID(sub.ID, ev.EventID), Body: EventBody(t, ev), Replay: replay})
	h := f.holdings(holder)
	if i, ok := slices.BinarySearch(h.Sent, sub.ID); !ok {
		h.Sent = slices.Insert(h.Sent, i, sub.ID)
	}
	if p := t.RequiresConsent; p != "" {
		if h.Held == nil {
			h.Held = map[string][]string{}
		}
		if !slices.Contains(h.Held[sub.ID], p) {
			h.Held[sub.ID] = append(h.Held[sub.ID], p)
			sort.Strings(h.Held[sub.ID])
		}
		// The grant the first record of this holding went out under.
		if k := schemas.HeldKey(sub.ID, p); h.Granted[k] == 0 {
			if h.Granted == nil {
				h.Granted = map[string]int64{}
			}
			h.Granted[k] = facts.Consent[p].Since
		}
	}
	f.setHoldings(holder, h)
}

// holdings returns a copy of what subscriptions received under profile
// id: the state's own Held and Sent, or an alias's.
func (f *fanner) holdings(id string) schemas.FanoutHoldings {
	if id == f.s.ProfileID {
		return schemas.FanoutHoldings{Held: f.s.Held, Sent: f.s.Sent, Granted: f.s.HeldGranted}
	}
	if h := f.s.Aliases[id]; h != nil {
		return *h
	}
	return schemas.FanoutHoldings{}
}

func (f *fanner) setHoldings(id string, h schemas.FanoutHoldings) {
	if len(h.Held) == 0 {
		h.Held = nil
	}
	if len(h.Granted) == 0 {
		h.Granted = nil
	}
	if id == f.s.ProfileID {
		f.s.Held, f.s.Sent, f.s.HeldGranted = h.Held, h.Sent, h.Granted
		return
	}
	if h.Empty() {
		delete(f.s.Aliases, id)
		if len(f.s.Aliases) == 0 {
			f.s.Aliases = nil
		}
		return
	}
	if f.s.Aliases == nil {
		f.s.Aliases = map[string]*schemas.FanoutHoldings{}
	}
	f.s.Aliases[id] = &h
}

// moved takes a merged-away profile's holdings (docs/fanout.md,
// "Merges"): each id's are added to what this state holds under it, and
// its subscriptions are told at once what the facts already say (a
// revocation, a blacklisting's cancel); the event ids join Seen.
func (f *fanner) moved(mv *schemas.FanoutMoved) {
	for _, id := range sortedKeys(mv.Holdings) {
		in := mv.Holdings[id]
		if in.Empty() {
			continue
		}
		h := f.holdings(id)
		held := maps.Clone(h.Held)
		for sub, ps := range in.Held {
			for _, p := range ps {
				if !slices.Contains(held[sub], p) {
					if held == nil {
						held = map[string][]string{}
					}
					held[sub] = append(slices.Clone(held[sub]), p)
					sort.Strings(held[sub])
				}
			}
		}
		sent := slices.Clone(h.Sent)
		for _, sub := range in.Sent {
			if i, ok := slices.BinarySearch(sent, sub); !ok {
				sent = slices.Insert(sent, i, sub)
			}
		}
		granted := maps.Clone(h.Granted)
		for k, g := range in.Granted { // the earlier grant of the two
			if old, ok := granted[k]; !ok || g < old {
				if granted == nil {
					granted = map[string]int64{}
				}
				granted[k] = g
			}
		}
		f.setHoldings(id, schemas.FanoutHoldings{Held: held, Sent: sent, Granted: granted})
		if id != f.s.ProfileID && f.s.MergedInto == "" {
			f.settleAlias(id)
		}
	}
	// The moved ids go in as the oldest: when Seen is full they leave
	// before this profile's own recent ids.
	var older []string
	for _, e := range mv.Seen {
		if !slices.Contains(f.s.Seen, e) && !slices.Contains(older, e) {
			older = append(older, e)
			f.newSeen = append(f.newSeen, e)
		}
	}
	if len(older) > 0 {
		seen := append(older, f.s.Seen...)
		if drop := len(seen) - SeenLimit; drop > 0 {
			seen = seen[drop:]
		}
		f.s.Seen = seen
	}
}

// moveOut hands what this merged-away profile holds (its own and its
// aliases') and the event ids it handled since the last move to the
// profile it merged into.
func (f *fanner) moveOut() {
	mv := &schemas.FanoutMoved{From: f.s.ProfileID, Seen: f.newSeen}
	if own := (schemas.FanoutHoldings{Held: f.s.Held, Sent: f.s.Sent, Granted: f.s.HeldGranted}); !own.Empty() {
		mv.Holdings = map[string]*schemas.FanoutHoldings{f.s.ProfileID: &own}
	}
	for id, h := range f.s.Aliases {
		if mv.Holdings == nil {
			mv.Holdings = map[string]*schemas.FanoutHoldings{}
		}
		mv.Holdings[id] = h
	}
	if len(mv.Holdings) == 0 && len(mv.Seen) == 0 {
		return
	}
	f.s.Held, f.s.Sent, f.s.HeldGranted, f.s.Aliases = nil, nil, nil, nil
	f.forward(f.s.MergedInto, schemas.FanoutInput{Moved: mv})
}

// settleAlias tells the subscriptions holding alias id's records what the
// facts say now: a purpose revoked or denied is revoked (whatever the
// facts were before: the alias's records were delivered under its own,
// granted, facts), and so is one this profile revoked or denied after the
// grant the holding's first record went out under, even if granted again
// since (Revoked); a blacklisting cancels what may wait.
func (f *fanner) settleAlias(id string) {
	facts := f.s.Facts
	if facts == nil {
		return
	}
	h := f.holdings(id)
	held := maps.Clone(h.Held)
	for _, sub := range sortedKeys(h.Held) {
		for _, p := range h.Held[sub] {
			since := int64(0)
			if c, ok := facts.Consent[p]; ok && (c.Status == schemas.ConsentRevoked || c.Status == schemas.ConsentDenied) {
				since = c.Since
			} else if r, ok := f.s.Revoked[p]; ok && r > h.Granted[schemas.HeldKey(sub, p)] {
				since = r
			} else {
				continue
			}
			held[sub] = slices.DeleteFunc(slices.Clone(held[sub]), func(x string) bool { return x == p })
			if len(held[sub]) == 0 {
				delete(held, sub)
			}
			delete(h.Granted, schemas.HeldKey(sub, p))
			f.revocation(sub, id, p, since)
		}
	}
	h.Held = held
	if facts.Blacklisted {
		f.cancel(id, h.Sent)
		h.Sent = nil
	}
	f.setHoldings(id, h)
}

// observe takes new facts of the profile: a purpose granted in the
// previous facts and now revoked or denied sends a revocation to every
// live subscription holding it, and leaves what they hold; a blacklisting
// then cancels what may still wait for each live subscription sent a
// topic event of the profile since the last one (blacklist). Then each
// alias (a profile merged into this one) is settled with the facts.
func (f *fanner) observe(facts *schemas.FanoutProfile) {
	if facts == nil {
		return
	}
	prev := f.s.Facts
	f.s.Facts = facts
	for p, c := range facts.Consent {
		if (c.Status == schemas.ConsentRevoked || c.Status == schemas.ConsentDenied) && c.Since > f.s.Revoked[p] {
			if f.s.Revoked == nil {
				f.s.Revoked = map[string]int64{}
			}
			f.s.Revoked[p] = c.Since
		}
	}
	if prev != nil {
		f.revoke(prev, facts)
	}
	if facts.Blacklisted {
		f.cancel(f.s.ProfileID, f.s.Sent)
		f.s.Sent = nil
	}
	if f.s.MergedInto == "" {
		for _, id := range sortedKeys(f.s.Aliases) {
			f.settleAlias(id)
		}
	}
}

// cancel sends a KindBlacklisted record under profile id to every live
// subscription of sent. Sent fills only while the profile is not
// blacklisted (nothing is delivered otherwise), so this acts once per
// blacklisting: facts that stay blacklisted find it empty.
func (f *fanner) cancel(id string, sent []string) {
	for _, sid := range sent {
		rec := f.d.Subscriptions[sid]
		if rec == nil || !rec.Subscription.Live() {
			continue // its waiting records are dropped inactive anyway
		}
		sub := &rec.Subscription
		f.out = append(f.out, schemas.FanoutDelivery{Kind: schemas.KindBlacklisted, Tenant: sub.Tenant,
			Partner: sub.Partner, Subscription: sid, Topic: sub.Topic, Kafka: sub.Kafka, ProfileID: id,
			Type: schemas.EventBlacklistedType, At: f.at, WebhookID: BlacklistedID(sid, id, f.at)})
	}
}

// revoke sends the revocations of the purposes granted in prev and
// revoked or denied in facts.
func (f *fanner) revoke(prev, facts *schemas.FanoutProfile) {
	for _, p := range sortedKeys(prev.Consent) {
		now, ok := facts.Consent[p]
		if prev.Consent[p].Status != schemas.ConsentGranted || !ok ||
			(now.Status != schemas.ConsentRevoked && now.Status != schemas.ConsentDenied) {
			continue
		}
		for _, id := range sortedKeys(f.s.Held) {
			held := f.s.Held[id]
			i := slices.Index(held, p)
			if i < 0 {
				continue
			}
			held = slices.Delete(slices.Clone(held), i, i+1)
			if len(held) == 0 {
				delete(f.s.Held, id)
			} else {
				f.s.Held[id] = held
			}
			delete(f.s.HeldGranted, schemas.HeldKey(id, p))
			f.revocation(id, f.s.ProfileID, p, now.Since)
		}
	}
}

// revocation sends subscription sid, if live, a consent_revoked record of
// purpose p for profile id.
func (f *fanner) revocation(sid, id, p string, since int64) {
	rec := f.d.Subscriptions[sid]
	if rec == nil || !rec.Subscription.Live() {
		return
	}
	sub := &rec.Subscription
	f.out = append(f.out, schemas.FanoutDelivery{Kind: schemas.KindConsentRevoked, Tenant: sub.Tenant,
		Partner: sub.Partner, Subscription: sid, Topic: sub.Topic, Kafka: sub.Kafka, ProfileID: id,
		Type: schemas.EventConsentRevokedType, At: f.at, WebhookID: RevokedID(sid, id, p, since),
		Body: RevokedBody(sub, id, p, since)})
}

func appendSeen(seen []string, id string) []string {
	seen = append(seen, id)
	if drop := len(seen) - SeenLimit; drop > 0 {
		seen = append([]string(nil), seen[drop:]...)
	}
	return seen
}

// WebhookID is a topic event's id for one subscription: the same on every
// retry, after a crash, for a duplicate and for a replay.
func WebhookID(subscription, eventID string) string { return subscription + "." + eventID }

// RevokedID is a revocation's id: the consent write that revoked it is
// the same when identity writes the status again. It names the profile:
// after a merge one subscription may be told of the same write for two
// profile ids.
func RevokedID(subscription, profile, purpose string, since int64) string {
	return subscription + ".revoked." + profile + "." + purpose + "." + strconv.FormatInt(since, 10)
}

// BlacklistedID is a blacklisting cancel's id (never sent to a partner;
// it names the record in logs): the profile blacklisted at at.
func BlacklistedID(subscription, profile string, at int64) string {
	return subscription + ".blacklisted." + profile + "." + strconv.FormatInt(at, 10)
}

// Time is how bodies write an instant: RFC 3339 UTC with milliseconds.
func Time(ms int64) string {
	return time.UnixMilli(ms).UTC().Format("2006-01-02T15:04:05.000Z07:00")
}

// EventBody is the JSON body of a topic event for a subscription of t.
func EventBody(t *schemas.Topic, ev *schemas.FanoutEvent) string {
	b := map[string]any{"kind": schemas.KindTopicEvent, "topic": t.Name, "tenant": t.Tenant, "publisher": ev.Publisher,
		"event_id": ev.EventID, "type": ev.Type, "time": Time(ev.Time)}
	if ev.Profile != nil {
		b["profile_id"] = ev.Profile.ID
	}
	if len(ev.Properties) > 0 {
		b["properties"] = rawValues(ev.Properties)
	}
	if p := profileFields(t.IncludeProfile, ev.Profile); len(p) > 0 {
		b["profile"] = p
	}
	if t.RequiresConsent != "" {
		c := map[string]any{"purpose": t.RequiresConsent}
		if ev.Profile != nil {
			if x := ev.Profile.Consent[t.RequiresConsent].Expires; x != 0 {
				c["expires_at"] = Time(x)
			}
		}
		b["consent"] = c
	}
	return marshal(b)
}

// RevokedBody is the JSON body of a profile.consent_revoked record.
func RevokedBody(sub *schemas.Subscription, profile, purpose string, since int64) string {
	return marshal(map[string]any{"kind": schemas.KindConsentRevoked, "type": schemas.EventConsentRevokedType,
		"tenant": sub.Tenant, "profile_id": profile, "purpose": purpose, "topic": sub.Topic, "time": Time(since)})
}

// profileFields picks the include_profile fields the profile has.
func profileFields(include []string, p *schemas.FanoutProfile) map[string]any {
	if p == nil {
		return nil
	}
	out := map[string]any{}
	traits := map[string]string{}
	ids := map[string][]string{}
	for _, f := range include {
		switch {
		case f == "traits":
			for k, v := range p.Traits {
				traits[k] = v
			}
		case strings.HasPrefix(f, "traits."):
			if v, ok := p.Traits[strings.TrimPrefix(f, "traits.")]; ok {
				traits[strings.TrimPrefix(f, "traits.")] = v
			}
		case f == "identifiers":
			for k, v := range p.Identifiers {
				if len(v) > 0 {
					ids[k] = v
				}
			}
		case strings.HasPrefix(f, "identifiers."):
			if v := p.Identifiers[strings.TrimPrefix(f, "identifiers.")]; len(v) > 0 {
				ids[strings.TrimPrefix(f, "identifiers.")] = v
			}
		case f == "tags" && len(p.Tags) > 0:
			out["tags"] = p.Tags
		}
	}
	if len(traits) > 0 {
		out["traits"] = rawValues(traits)
	}
	if len(ids) > 0 {
		out["identifiers"] = ids
	}
	return out
}

// rawValues decodes values stored as their JSON encoding; one that is not
// JSON is written as a string.
func rawValues(m map[string]string) map[string]json.RawMessage {
	out := make(map[string]json.RawMessage, len(m))
	for k, v := range m {
		if json.Valid([]byte(v)) {
			out[k] = json.RawMessage(v)
		} else {
			b, _ := json.Marshal(v)
			out[k] = b
		}
	}
	return out
}

// marshal writes JSON with sorted keys and without HTML escaping.
func marshal(v any) string {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		// Every value is a string, a map of those or valid raw JSON.
		panic("fanout: body: " + err.Error())
	}
	return strings.TrimSuffix(buf.String(), "\n")
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
