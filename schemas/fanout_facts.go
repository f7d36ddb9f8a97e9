package schemas

import (
	"encoding/binary"
	"hash/fnv"
	"slices"
)

// FanoutEventOf is the fan-out record of a topic event (ev.Topic set),
// without its profile: the identity root adds the facts after folding it
// (docs/fanout.md, "How a topic event gets its profile").
func FanoutEventOf(ev *Event) *FanoutEvent {
	return &FanoutEvent{Tenant: ev.Tenant, Topic: ev.Topic, Publisher: ev.Partner, EventID: ev.ID, Type: ev.Type,
		Time: ev.Time.UnixMilli(), Properties: ev.Properties}
}

// FanoutStatus is the blacklist and consent of root n's profile, joined
// from its contributions as FoldWith joins them, with each consent's write
// as it was made (a granted consent past its expiry is still granted
// here: fan-out decides expiry at delivery).
func (n *Node) FanoutStatus() (blacklisted bool, consent map[string]FanoutConsent) {
	var st status
	for _, c := range n.Contributions() {
		st.join(&c)
	}
	if st.blacklist != nil && st.blacklist.On {
		blacklisted = true
	}
	for k, m := range st.consent {
		if consent == nil {
			consent = map[string]FanoutConsent{}
		}
		consent[k] = FanoutConsent{Status: m.Status, Since: m.Last.Time, Expires: m.Expires}
	}
	return blacklisted, consent
}

// FanoutStatusDigest identifies a blacklist and consent: equal facts have
// equal digests, and a profile with neither has 0 (the identity root
// writes a status record to fan-out when its digest changes).
func FanoutStatusDigest(blacklisted bool, consent map[string]FanoutConsent) uint64 {
	if !blacklisted && len(consent) == 0 {
		return 0
	}
	h := fnv.New64a()
	var b [8]byte
	if blacklisted {
		h.Write([]byte{1})
	} else {
		h.Write([]byte{0})
	}
	keys := make([]string, 0, len(consent))
	for k := range consent {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		c := consent[k]
		h.Write([]byte(k))
		h.Write([]byte{0})
		h.Write([]byte(c.Status))
		h.Write([]byte{0})
		binary.BigEndian.PutUint64(b[:], uint64(c.Since))
		h.Write(b[:])
		binary.BigEndian.PutUint64(b[:], uint64(c.Expires))
		h.Write(b[:])
	}
	return h.Sum64() | 1 // never 0
}

// FanoutFacts is what fan-out needs of root n's profile p (p is n's fold):
// blacklist, consent, traits, identifiers and tags.
func FanoutFacts(p *Profile, n *Node) *FanoutProfile {
	f := &FanoutProfile{ID: p.ID, Tenant: p.Tenant}
	f.Blacklisted, f.Consent = n.FanoutStatus()
	if len(p.Traits) > 0 {
		f.Traits = make(map[string]string, len(p.Traits))
		for k, v := range p.Traits {
			f.Traits[k] = string(v)
		}
	}
	for t, vs := range p.Identifiers {
		if len(vs) == 0 {
			continue
		}
		if f.Identifiers == nil {
			f.Identifiers = map[string][]string{}
		}
		f.Identifiers[t] = vs
	}
	for _, t := range p.Tags {
		f.Tags = append(f.Tags, t.Tag)
	}
	return f
}
