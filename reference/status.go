package reference

// The profile status (docs/events.md, "Reserved event types"), folded the
// plain way from a profile's deduplicated events: every write of a key (a
// tag, the blacklist, a consent purpose, an identifier) in one list, sorted
// by event time, source and event id, and the last one wins. It uses none
// of schemas' status fold (Stamp, TagMark, EffectiveTags, FoldWith), so
// that comparing with it checks them.

import (
	"encoding/json"
	"sort"
	"strings"
	"time"

	"github.com/rolodex/rolodex/schemas"
)

// Options are what the model folds status with: the tag configuration and
// the instant consent expiry is read at (zero: time.Now() at each fold);
// and whether its profiles carry their event times (EventTimes), as the
// snapshots on rolodex.profiles do (schemas.FoldOptions.EventTimes).
type Options struct {
	Status     schemas.StatusConfig
	Now        time.Time
	EventTimes bool
}

// write is one write of one key.
type write struct {
	time   int64 // event time, Unix ms
	source string
	id     string // event id
	// deflt marks the write of a default tag: at the profile's first event
	// time, before every event's write at that time (it has no source).
	deflt bool
	on    bool // tag added, blacklisted, identifier invalid
	// reason: of a blacklist or identifier write; status and expires
	// (Unix ms, 0 never): of a consent write.
	reason  string
	status  string
	expires int64
}

// before orders the writes of a key: event time, source, event id; the
// rest only orders two writes of one (time, source, id), which only events
// re-sent with other identifiers can make: on before off, then by the
// consent status, the reason and the expiry, as schemas breaks such ties.
func (a write) before(b write) bool {
	if a.time != b.time {
		return a.time < b.time
	}
	if a.source != b.source {
		return a.source < b.source
	}
	if a.id != b.id {
		return a.id < b.id
	}
	if a.on != b.on {
		return !a.on
	}
	if a.status != b.status {
		return a.status < b.status
	}
	if a.reason != b.reason {
		return a.reason < b.reason
	}
	return a.expires < b.expires
}

// stamp is where a write sits in time: what "later" means between writes
// of different keys (exclusive tag groups).
func (a write) stampAfter(b write) bool {
	if a.time != b.time {
		return a.time > b.time
	}
	if a.source != b.source {
		return a.source > b.source
	}
	return a.id > b.id
}

// last returns the latest write of ws.
func last(ws []write) write {
	sort.Slice(ws, func(i, j int) bool { return ws[i].before(ws[j]) })
	return ws[len(ws)-1]
}

// prop returns the string value of an event property ("" if absent or not
// a string), as the stage reads it.
func prop(ev *schemas.Event, k string) string {
	var s string
	if raw, ok := ev.Properties[k]; ok && json.Unmarshal([]byte(raw), &s) == nil {
		return s
	}
	return ""
}

var channels = map[string]string{schemas.IDEmail: "email", schemas.IDPhone: "sms", schemas.IDWhatsApp: "whatsapp", schemas.IDFacebook: "facebook"}

func rfc3339(ms int64) string { return time.UnixMilli(ms).UTC().Format(time.RFC3339Nano) }

// foldStatus fills the status fields of p (its identifiers filled in) from
// evs, the profile's events; first is their earliest time.
func (m *Identity) foldStatus(p *schemas.Profile, evs []*schemas.Event, first int64) {
	type ident struct{ typ, value string }
	tags := map[string][]write{}
	var blacklist []write
	consent := map[string][]write{}
	invalid := map[ident][]write{}
	for _, ev := range evs {
		w := write{time: ev.Time.UnixMilli(), source: ev.Source, id: ev.ID}
		switch ev.Type {
		case schemas.EventTagAdded, schemas.EventTagRemoved:
			if tag := prop(ev, "tag"); tag != "" {
				w.on = ev.Type == schemas.EventTagAdded
				tags[tag] = append(tags[tag], w)
			}
		case schemas.EventBlacklistAdded, schemas.EventBlacklistRemoved:
			w.on, w.reason = ev.Type == schemas.EventBlacklistAdded, prop(ev, "reason")
			blacklist = append(blacklist, w)
		case schemas.EventConsentGranted, schemas.EventConsentDenied, schemas.EventConsentRevoked:
			purpose := prop(ev, "purpose")
			if purpose == "" {
				continue
			}
			w.status = strings.TrimPrefix(ev.Type, "consent.")
			if t, err := time.Parse(time.RFC3339Nano, prop(ev, "expires_at")); err == nil {
				w.expires = t.UnixMilli()
			}
			consent[purpose] = append(consent[purpose], w)
		case schemas.EventIdentifierInvalidated, schemas.EventIdentifierRevalidated:
			id := ident{prop(ev, "type"), prop(ev, "value")}
			if id.typ != "" && id.value != "" {
				w.on, w.reason = ev.Type == schemas.EventIdentifierInvalidated, prop(ev, "reason")
				invalid[id] = append(invalid[id], w)
			}
		}
	}

	// Tags: a default tag is added at the first event time; then each
	// tag's latest write says whether it is on, and its latest add is
	// when it was last set.
	if len(evs) > 0 {
		for _, tag := range m.opts.Status.Default {
			tags[tag] = append(tags[tag], write{time: first, deflt: true, on: true})
		}
	}
	type tagState struct {
		on     bool
		source string
		since  int64
		set    *write // the latest add, nil if none
	}
	source := func(w write) string {
		if w.deflt {
			return schemas.TagSourceDefault
		}
		return schemas.TagSourceManual
	}
	states := map[string]*tagState{}
	for tag, ws := range tags {
		l := last(ws)
		st := &tagState{on: l.on, source: source(l), since: l.time}
		for i := len(ws) - 1; i >= 0; i-- { // sorted by last
			if ws[i].on {
				st.set = &ws[i]
				break
			}
		}
		states[tag] = st
	}
	// Exclusive groups: a tag that is on is off if another tag of its
	// group was set later, since the latest such set.
	type off struct {
		source string
		since  int64
	}
	offs := map[string]off{}
	for _, g := range m.opts.Status.Groups {
		if !g.Exclusive {
			continue
		}
		for _, t := range g.Tags {
			st := states[t]
			if st == nil || !st.on {
				continue
			}
			var later *write
			for _, u := range g.Tags {
				if su := states[u]; u != t && su != nil && su.set != nil && su.set.stampAfter(*st.set) && (later == nil || su.set.stampAfter(*later)) {
					later = su.set
				}
			}
			if later != nil {
				offs[t] = off{source(*later), later.time}
			}
		}
	}
	for t, o := range offs {
		states[t].on, states[t].source, states[t].since = false, o.source, o.since
	}
	p.Tags = []schemas.ProfileTag{}
	names := make([]string, 0, len(states))
	for t := range states {
		names = append(names, t)
	}
	sort.Strings(names)
	for _, t := range names {
		st := states[t]
		pt := schemas.ProfileTag{Tag: t, Source: st.source, Since: rfc3339(st.since), SinceMs: st.since}
		if st.on {
			p.Tags = append(p.Tags, pt)
		} else {
			p.RemovedTags = append(p.RemovedTags, pt)
		}
	}

	if len(blacklist) > 0 {
		if l := last(blacklist); l.on {
			p.Blacklisted = true
			p.Blacklist = &schemas.BlacklistState{Reason: l.reason, Since: rfc3339(l.time), SinceMs: l.time}
		}
	}

	now := m.opts.Now
	if now.IsZero() {
		now = time.Now()
	}
	p.Consent = map[string]schemas.ConsentState{}
	for purpose, ws := range consent {
		l := last(ws)
		cs := schemas.ConsentState{Status: l.status, Since: rfc3339(l.time)}
		if l.expires != 0 {
			cs.ExpiresAt = rfc3339(l.expires)
			if l.status == schemas.ConsentGranted && !now.Before(time.UnixMilli(l.expires)) {
				cs.Status, cs.Expired = schemas.ConsentExpired, true
			}
		}
		p.Consent[purpose] = cs
	}

	// Invalid identifiers, sorted by "type:value"; the channels are the
	// profile's identifiers of a channel type that are not invalid.
	p.InvalidIdentifiers = []schemas.InvalidIdentifier{}
	bad := map[ident]bool{}
	for id, ws := range invalid {
		if l := last(ws); l.on {
			bad[id] = true
			p.InvalidIdentifiers = append(p.InvalidIdentifiers, schemas.InvalidIdentifier{Type: id.typ, Value: id.value, Reason: l.reason, Since: rfc3339(l.time)})
		}
	}
	sort.Slice(p.InvalidIdentifiers, func(i, j int) bool {
		a, b := p.InvalidIdentifiers[i], p.InvalidIdentifiers[j]
		return a.Type+":"+a.Value < b.Type+":"+b.Value
	})
	p.Channels = map[string][]string{}
	for typ, vs := range p.Identifiers {
		ch, ok := channels[typ]
		if !ok {
			continue
		}
		for _, v := range vs {
			if !bad[ident{typ, v}] {
				p.Channels[ch] = append(p.Channels[ch], v)
			}
		}
	}
	for _, vs := range p.Channels {
		sort.Strings(vs)
	}
}
