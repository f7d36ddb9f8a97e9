package clickhouse

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rolodex/rolodex/reference"
	"github.com/rolodex/rolodex/schemas"
)

// identityOut is what the identity stage would write for a workload's
// events, played by simulateIdentity: the records of rolodex.profiles and
// rolodex.profile.merges in the order they are produced, and the final
// state the tables must show.
type identityOut struct {
	// profiles and merges are the records, replays included.
	profiles []*schemas.Profile
	merges   []schemas.Merge
	// fresh are the snapshots as first made, without the replays.
	fresh []*schemas.Profile
	// rootOf is every node's final profile id.
	rootOf map[string]string
	// finalProfiles is the record of every profile id that profiles FINAL
	// must show: the last snapshot of a live profile, the merged_into
	// record of a merged-away id.
	finalProfiles map[string]*schemas.Profile
	// firstMerges is, per merged-away id, the earliest copy of its merge.
	firstMerges map[string]schemas.Merge
}

// simulateIdentity plays the identity stage over evs in order, simply and
// sequentially, on the reference model (reference.Identity: all
// identifiers of an event are linked, the smallest node id of a component
// is its root, the events of a node are deduplicated by (source, id)). It
// writes what the real stage writes: a snapshot of the root after every
// change, a merged_into record and a merge record for every root that
// merges away. Like the real stage after crashes, it also repeats records:
// copies of merges with a later time, copies of snapshots, and older
// snapshots of a profile re-sent after newer ones.
func simulateIdentity(seed uint64, evs []*schemas.Event) *identityOut {
	r := rand.New(rand.NewPCG(seed, 99))
	out := &identityOut{rootOf: map[string]string{}, finalProfiles: map[string]*schemas.Profile{}, firstMerges: map[string]schemas.Merge{}}
	ref := reference.NewIdentity()
	var history []*schemas.Profile // snapshots to re-send late
	emit := func(p *schemas.Profile) {
		out.fresh = append(out.fresh, p)
		out.profiles = append(out.profiles, p)
		if p.MergedInto == "" {
			history = append(history, p)
		}
		if r.IntN(25) == 0 {
			out.profiles = append(out.profiles, p) // a replay repeats it
		}
		if r.IntN(40) == 0 && len(history) > 0 {
			out.profiles = append(out.profiles, history[r.IntN(len(history))]) // an old one, late
		}
	}
	for _, ev := range evs {
		step := ref.Add(ev)
		for _, mg := range step.Merges {
			emit(&schemas.Profile{ID: mg.From, Tenant: ev.Tenant, MergedInto: mg.Into})
			m := schemas.Merge{Tenant: ev.Tenant, From: mg.From, Into: mg.Into, Time: ev.ReceivedAt.UnixMilli() + 1}
			out.merges = append(out.merges, m)
			if r.IntN(5) == 0 {
				// A replay of the accepting root: the same merge, later.
				again := m
				again.Time += int64(1 + r.IntN(120_000))
				out.merges = append(out.merges, again)
			}
		}
		for _, root := range step.Changed {
			emit(ref.Profile(root))
		}
	}
	for _, n := range ref.Nodes() {
		out.rootOf[n] = ref.Root(n)
	}
	for _, p := range out.profiles {
		if cur, ok := out.finalProfiles[p.ID]; !ok || ProfileVersion(p) >= ProfileVersion(cur) {
			out.finalProfiles[p.ID] = p
		}
	}
	for _, m := range out.merges {
		if cur, ok := out.firstMerges[m.From]; !ok || m.Time < cur.Time {
			out.firstMerges[m.From] = m
		}
	}
	return out
}

// profileOf returns the final profile id of a node.
func (o *identityOut) profileOf(node string) string {
	if p, ok := o.rootOf[node]; ok {
		return p
	}
	return node
}

// identity produces the identity records of w (rolodex.profiles keyed by
// profile id, rolodex.profile.merges keyed by the merged-away id) and marks
// w as resolved: the report references then count profiles, not nodes.
func (p *producer) identity(t testing.TB, w *workload) {
	t.Helper()
	p.identityChunk(t, w, 0, 1)
}

// identityChunk produces the i-th of n equal parts of w's identity records
// and marks w as resolved (its references are right once every part is
// produced).
func (p *producer) identityChunk(t testing.TB, w *workload, i, n int) {
	t.Helper()
	part := func(l int) (int, int) { return i * l / n, (i + 1) * l / n }
	pa, pb := part(len(w.ident().profiles))
	ma, mb := part(len(w.ident().merges))
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	done := func(_ *kgo.Record, err error) {
		defer wg.Done()
		mu.Lock()
		defer mu.Unlock()
		if err != nil && firstErr == nil {
			firstErr = err
		}
	}
	for _, pr := range w.ident().profiles[pa:pb] {
		v, err := json.Marshal(pr)
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		p.cl.Produce(context.Background(), &kgo.Record{Topic: schemas.TopicProfiles, Key: []byte(pr.ID), Value: v}, done)
	}
	for _, m := range w.ident().merges[ma:mb] {
		v, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		p.cl.Produce(context.Background(), &kgo.Record{Topic: schemas.TopicMerges, Key: []byte(m.From), Value: v, Timestamp: time.UnixMilli(m.Time)}, done)
	}
	wg.Wait()
	if firstErr != nil {
		t.Fatal(firstErr)
	}
	w.resolved = true
}

// refMerges is report_merges_daily computed in Go: merged-away ids per day
// of their earliest merge record.
func refMerges(w *workload, since string) [][]string {
	if !w.resolved {
		return nil
	}
	type k struct{ day, tenant string }
	n := map[k]int{}
	for _, m := range w.ident().firstMerges {
		n[k{day(time.UnixMilli(m.Time)), m.Tenant}]++
	}
	var rows [][]string
	for kk, c := range n {
		if kk.day >= since {
			rows = append(rows, []string{kk.day, kk.tenant, strconv.Itoa(c)})
		}
	}
	sortRows(rows, 2)
	return rows
}
