package reference

import (
	"sort"

	"github.com/rolodex/rolodex/schemas"
)

// TagChanges is the offline model of the tag stage: given the snapshots of
// one profile id in the order rolodex.profiles holds them, the records
// rolodex.profile.tags must hold for it (docs/profile-status.md). A tag is
// added when a snapshot shows it and the previous records left it off,
// removed when they left it on and the snapshot does not show it: with the
// cause and time the snapshot's removed_tags give, or "merge" at the time
// it was added when the id merged away. ts are the snapshots' Kafka
// timestamps (Unix ms), the time of a tag that vanished without a removal.
//
// It is written without the tag stage's types, so comparing with it checks
// them.
func TagChanges(key string, snapshots []*schemas.Profile, ts []int64) []schemas.TagChange {
	type on struct{ since int64 }
	held := map[string]on{}
	var out []schemas.TagChange
	for i, p := range snapshots {
		shown := map[string]schemas.ProfileTag{}
		removed := map[string]schemas.ProfileTag{}
		if p.MergedInto == "" {
			for _, t := range p.Tags {
				shown[t.Tag] = t
			}
			for _, t := range p.RemovedTags {
				removed[t.Tag] = t
			}
		}
		var gone []string
		for tag := range held {
			if _, ok := shown[tag]; !ok {
				gone = append(gone, tag)
			}
		}
		sort.Strings(gone)
		for _, tag := range gone {
			c := schemas.TagChange{Tenant: p.Tenant, Profile: key, Tag: tag, Op: "removed", Cause: "config", Time: ts[i]}
			if p.MergedInto != "" {
				c.Cause, c.Time = "merge", held[tag].since
			} else if r, ok := removed[tag]; ok {
				c.Cause, c.Time = r.Source, r.SinceMs
			}
			out = append(out, c)
			delete(held, tag)
		}
		var added []string
		for tag := range shown {
			if _, ok := held[tag]; !ok {
				added = append(added, tag)
			}
		}
		sort.Strings(added)
		for _, tag := range added {
			t := shown[tag]
			out = append(out, schemas.TagChange{Tenant: p.Tenant, Profile: key, Tag: tag, Op: "added", Cause: t.Source, Time: t.SinceMs})
			held[tag] = on{since: t.SinceMs}
		}
	}
	return out
}
