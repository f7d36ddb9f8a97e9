package views

import (
	"sort"
	"time"

	"github.com/lovoo/goka"

	"github.com/rolodex/rolodex/schemas"
)

// TagStates reads the tag stage's table (schemas.TagTable) by profile id:
// the rule tags a profile holds.
type TagStates interface {
	TagState(key string) (*schemas.TagTable, error)
	// Ready reports whether the states have caught up with the table
	// once.
	Ready() bool
}

// TagView is a goka view of the tag stage's table.
type TagView struct {
	*tableView[schemas.TagTable]
}

// NewTagView opens a view of the tag stage's table; storageDir keeps its
// local copy.
func NewTagView(brokers []string, storageDir string, opts ...goka.ViewOption) (*TagView, error) {
	tv, err := newTableView[schemas.TagTable](brokers, goka.GroupTable(schemas.GroupTags), storageDir, "rolodex-views-tags", "tag view", opts...)
	if err != nil {
		return nil, err
	}
	return &TagView{tv}, nil
}

// TagState returns the tag stage's state of profile key, nil if none.
func (v *TagView) TagState(key string) (*schemas.TagTable, error) { return v.get(key) }

// WithRuleTags adds to p the rule tags its tag state holds (source
// "rule", the rule id), and takes off a default tag that a rule tag of its
// exclusive group displaced (docs/tags.md, "Exclusive groups"). The other
// tags come from the profile's own fold, which is fresher than the tag
// stage: a tag a person just set shows at once.
func WithRuleTags(p *schemas.Profile, st *schemas.TagTable, cfg schemas.StatusConfig) {
	if st == nil || p == nil {
		return
	}
	present := map[string]bool{}
	for _, t := range p.Tags {
		present[t.Tag] = true
	}
	ruleGroups := map[string]bool{}
	group := map[string]string{}
	for _, g := range cfg.Groups {
		if g.Exclusive {
			for _, t := range g.Tags {
				group[t] = g.Name
			}
		}
	}
	// A group with a tag a person set: the tag stage takes its rule tags
	// off (docs/tags.md, "Exclusive groups"), and the profile's own fold
	// may be ahead of it.
	manual := map[string]bool{}
	for _, t := range p.Tags {
		if g, ok := group[t.Tag]; ok && t.Source != schemas.TagSourceDefault {
			manual[g] = true
		}
	}
	for _, tag := range schemas.SortedKeys(st.Tags) {
		h := st.Tags[tag]
		id, ok := schemas.RuleOfCause(h.Cause)
		if !ok {
			continue
		}
		if g, ok := group[tag]; ok {
			if manual[g] && !present[tag] {
				continue
			}
			ruleGroups[g] = true
		}
		if present[tag] {
			continue
		}
		p.Tags = append(p.Tags, schemas.ProfileTag{Tag: tag, Source: schemas.TagSourceRule, Rule: id,
			Since: formatMs(h.Since), SinceMs: h.Since})
	}
	sort.Slice(p.Tags, func(i, j int) bool { return p.Tags[i].Tag < p.Tags[j].Tag })
	kept := p.Tags[:0]
	for _, t := range p.Tags {
		if t.Source == schemas.TagSourceDefault && ruleGroups[group[t.Tag]] {
			if _, held := st.Tags[t.Tag]; !held {
				continue
			}
		}
		kept = append(kept, t)
	}
	p.Tags = kept
}

func formatMs(ms int64) string { return time.UnixMilli(ms).UTC().Format(time.RFC3339Nano) }
