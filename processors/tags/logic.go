// Package tags is the tag stage: a goka group that reads every profile
// snapshot on rolodex.profiles and writes one record per effective change
// of a profile's tags to rolodex.profile.tags (docs/profile-status.md).
// Rule tags (a later issue) are computed here too.
package tags

import "github.com/rolodex/rolodex/schemas"

// OutboxLimit is how many of its latest records a profile's state keeps to
// send again when the message that made them is replayed.
const OutboxLimit = 256

// CauseConfig removes a tag that vanished from a profile without a write
// removing it: a default tag taken out of the configuration.
const CauseConfig = "config"

// Held is a tag a profile holds: what added it and since when (Unix ms).
type Held struct {
	Cause string `json:"c"`
	Since int64  `json:"s"`
}

// Sent is a record the state made, with the origin of the message that
// made it.
type Sent struct {
	By     int64             `json:"by"`
	Change schemas.TagChange `json:"ch"`
}

// State is the value of the tag table, keyed by profile id: the tags the
// records so far say the profile holds.
type State struct {
	Tenant string          `json:"tn"`
	Tags   map[string]Held `json:"tg,omitempty"`
	// By is the origin of the latest message that changed the state.
	By int64 `json:"by,omitempty"`
	// Outbox holds the latest records, oldest first, at most OutboxLimit
	// (never fewer than the latest message's).
	Outbox []Sent `json:"ob,omitempty"`
}

// Step handles one snapshot of profile key made at ts (Unix ms; the
// record's Kafka timestamp) and delivered as origin (docs/profile-status.md,
// "The tag stage"). It returns the new state, the records to write, and
// whether the state must be written.
//
// A message already reflected in the state (origin <= s.By: a replay after
// a crash) changes nothing and sends its own records again: the crash may
// have lost them while the state's write reached the table.
func Step(s *State, key string, p *schemas.Profile, origin, ts int64) (*State, []schemas.TagChange, bool) {
	if s != nil && origin <= s.By {
		var again []schemas.TagChange
		for _, o := range s.Outbox {
			if o.By == origin {
				again = append(again, o.Change)
			}
		}
		return s, again, true
	}
	var held map[string]Held
	if s != nil {
		held = s.Tags
	}
	now := map[string]Held{}
	removedBy := map[string]schemas.ProfileTag{}
	if p.MergedInto == "" {
		for _, t := range p.Tags {
			now[t.Tag] = Held{Cause: t.Source, Since: t.SinceMs}
		}
		for _, t := range p.RemovedTags {
			removedBy[t.Tag] = t
		}
	}
	var changes []schemas.TagChange
	for _, tag := range schemas.SortedKeys(held) {
		if _, on := now[tag]; on {
			continue
		}
		c := schemas.TagChange{Tenant: p.Tenant, Profile: key, Tag: tag, Op: schemas.TagRemoved}
		switch r, ok := removedBy[tag]; {
		case p.MergedInto != "":
			// The survivor holds the tag now, with its own record: this
			// id's membership is withdrawn from when it began, so that
			// counts over time see one person once.
			c.Cause, c.Time = schemas.TagCauseMerge, held[tag].Since
		case ok:
			c.Cause, c.Time = r.Source, r.SinceMs
		default:
			c.Cause, c.Time = CauseConfig, ts
		}
		changes = append(changes, c)
	}
	for _, tag := range schemas.SortedKeys(now) {
		if _, had := held[tag]; had {
			continue // a re-add of a present tag is not a change
		}
		h := now[tag]
		changes = append(changes, schemas.TagChange{Tenant: p.Tenant, Profile: key, Tag: tag, Op: schemas.TagAdded, Cause: h.Cause, Time: h.Since})
	}
	if len(changes) == 0 {
		return s, nil, false
	}
	next := &State{Tenant: p.Tenant, By: origin}
	if len(now) > 0 {
		next.Tags = map[string]Held{}
		for tag, h := range now {
			if old, had := held[tag]; had {
				h = old // the record that added it says since when
			}
			next.Tags[tag] = h
		}
	}
	if s != nil {
		next.Outbox = append(next.Outbox, s.Outbox...)
	}
	for _, c := range changes {
		next.Outbox = append(next.Outbox, Sent{By: origin, Change: c})
	}
	if drop := len(next.Outbox) - max(OutboxLimit, len(changes)); drop > 0 {
		next.Outbox = append([]Sent(nil), next.Outbox[drop:]...)
	}
	return next, changes, true
}
