package views

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/lovoo/goka"
	"github.com/lovoo/goka/storage"

	"github.com/rolodex/rolodex/internal/gokaconfig"
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
	v *goka.View
}

// NewTagView opens a view of the tag stage's table; storageDir keeps its
// local copy.
func NewTagView(brokers []string, storageDir string, opts ...goka.ViewOption) (*TagView, error) {
	if err := os.MkdirAll(storageDir, 0o755); err != nil {
		return nil, fmt.Errorf("views: %w", err)
	}
	sc := gokaconfig.Sarama("rolodex-views")
	base := []goka.ViewOption{
		goka.WithViewStorageBuilder(storage.DefaultBuilder(filepath.Clean(storageDir))),
		goka.WithViewConsumerSaramaBuilder(goka.SaramaConsumerBuilderWithConfig(sc)),
		goka.WithViewTopicManagerBuilder(goka.TopicManagerBuilderWithConfig(sc, gokaconfig.TopicManager(1))),
		goka.WithViewAutoReconnect(),
		goka.WithViewClientID("rolodex-views-tags"),
	}
	v, err := goka.NewView(brokers, goka.GroupTable(schemas.GroupTags), schemas.JSONCodec[schemas.TagTable]{}, append(base, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("views: tag view: %w", err)
	}
	return &TagView{v: v}, nil
}

// Run keeps the view up to date until ctx is done.
func (v *TagView) Run(ctx context.Context) error {
	if err := v.v.Run(ctx); err != nil {
		return fmt.Errorf("views: tag view: %w", err)
	}
	return nil
}

// Ready reports whether the view has caught up with the table once.
func (v *TagView) Ready() bool { return v.v.Recovered() }

// TagState returns the tag stage's state of profile key, nil if none.
func (v *TagView) TagState(key string) (*schemas.TagTable, error) {
	val, err := v.v.Get(key)
	if err != nil {
		return nil, fmt.Errorf("views: get tags of %s: %w", key, err)
	}
	if val == nil {
		return nil, nil
	}
	return val.(*schemas.TagTable), nil
}

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
