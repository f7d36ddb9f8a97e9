package reference

import (
	"sort"

	"github.com/rolodex/rolodex/schemas"
)

// EventTimes is the offline model of a profile's event times (docs/tags.md,
// "Memory bound"): given every deduplicated event of the profile, per event
// type the times (Unix ms) of the latest schemas.EventTimesLimit, newest
// first, equal times repeated; nil when there are no events. It is what a
// snapshot on rolodex.profiles carries as event_times, and what the tag
// stage's events() and last() read.
//
// It collects, sorts and cuts, without schemas.AddTime or MergeTimes, so
// that comparing with it checks those.
func EventTimes(evs []*schemas.Event) map[string][]int64 {
	if len(evs) == 0 {
		return nil
	}
	out := map[string][]int64{}
	for _, ev := range evs {
		out[ev.Type] = append(out[ev.Type], ev.Time.UnixMilli())
	}
	for typ, ts := range out {
		sort.Slice(ts, func(i, j int) bool { return ts[i] > ts[j] })
		if len(ts) > schemas.EventTimesLimit {
			ts = ts[:schemas.EventTimesLimit]
		}
		out[typ] = ts
	}
	return out
}

// Events returns the deduplicated events of the profile whose root is
// root, in the order they were added per node, nodes sorted; nil when root
// is not a root.
func (m *Identity) Events(root string) []*schemas.Event {
	nodes, ok := m.members[root]
	if !ok {
		return nil
	}
	return m.eventsOf(nodes)
}

// eventsOf returns the events folded in on nodes, nodes sorted.
func (m *Identity) eventsOf(nodes []string) []*schemas.Event {
	nodes = append([]string(nil), nodes...)
	sort.Strings(nodes)
	var evs []*schemas.Event
	for _, n := range nodes {
		evs = append(evs, m.events[n]...)
	}
	return evs
}
