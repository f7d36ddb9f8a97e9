package tags

import (
	"fmt"
	"math/rand"
	"reflect"
	"sort"
	"testing"

	"github.com/rolodex/rolodex/reference"
	"github.com/rolodex/rolodex/schemas"
)

func snap(tags map[string]int64, removed map[string]int64) *schemas.Profile {
	p := &schemas.Profile{ID: "p_1", Tenant: "t"}
	for _, k := range schemas.SortedKeys(tags) {
		p.Tags = append(p.Tags, schemas.ProfileTag{Tag: k, Source: schemas.TagSourceManual, SinceMs: tags[k]})
	}
	for _, k := range schemas.SortedKeys(removed) {
		p.RemovedTags = append(p.RemovedTags, schemas.ProfileTag{Tag: k, Source: schemas.TagSourceManual, SinceMs: removed[k]})
	}
	return p
}

func TestStep(t *testing.T) {
	change := func(tag, op, cause string, at int64) schemas.TagChange {
		return schemas.TagChange{Tenant: "t", Profile: "p_1", Tag: tag, Op: op, Cause: cause, Time: at}
	}
	s, out, write := Step(nil, "p_1", snap(map[string]int64{"vip": 5, "new": 1}, nil), 1, 100)
	if want := []schemas.TagChange{change("new", "added", "manual", 1), change("vip", "added", "manual", 5)}; !write || !reflect.DeepEqual(out, want) {
		t.Fatalf("first snapshot: %v %v", write, out)
	}
	// A re-add (a newer since) of a present tag is not a change (the
	// state is written: it keeps the latest snapshot).
	if _, out, write := Step(s, "p_1", snap(map[string]int64{"vip": 9, "new": 1}, nil), 2, 100); !write || len(out) != 0 {
		t.Fatalf("re-add: %v %v", write, out)
	}
	s2, out, _ := Step(s, "p_1", snap(map[string]int64{"new": 1}, map[string]int64{"vip": 12}), 3, 100)
	if want := []schemas.TagChange{change("vip", "removed", "manual", 12)}; !reflect.DeepEqual(out, want) {
		t.Fatalf("removal: %v", out)
	}
	// A replay of the message that made the state sends its records again,
	// an older message's nothing; neither changes the state.
	if again, out, write := Step(s2, "p_1", snap(nil, nil), 3, 100); !write || again != s2 || !reflect.DeepEqual(out, []schemas.TagChange{change("vip", "removed", "manual", 12)}) {
		t.Fatalf("replay: %v %v", write, out)
	}
	if _, out, _ := Step(s2, "p_1", snap(nil, nil), 2, 100); len(out) != 0 {
		t.Fatalf("replay of an older message: %v", out)
	}
	// A tag that vanished without a removal (a default taken out of the
	// configuration) is removed at the snapshot's timestamp.
	if _, out, _ := Step(s2, "p_1", snap(nil, nil), 4, 100); !reflect.DeepEqual(out, []schemas.TagChange{change("new", "removed", CauseConfig, 100)}) {
		t.Fatalf("vanished: %v", out)
	}
	// Merged away: every tag removed at the time it was added.
	if _, out, _ := Step(s2, "p_1", &schemas.Profile{ID: "p_1", Tenant: "t", MergedInto: "p_0"}, 4, 100); !reflect.DeepEqual(out, []schemas.TagChange{change("new", "removed", schemas.TagCauseMerge, 1)}) {
		t.Fatalf("merged: %v", out)
	}
}

func TestOutboxBounded(t *testing.T) {
	var s *State
	for i := int64(1); i <= 2*OutboxLimit; i++ {
		tags := map[string]int64{}
		if i%2 == 1 {
			tags["x"] = i
		}
		s, _, _ = Step(s, "p_1", snap(tags, map[string]int64{"x": i}), i, 0)
	}
	if len(s.Outbox) != OutboxLimit || s.Outbox[len(s.Outbox)-1].By != 2*OutboxLimit {
		t.Fatalf("outbox of %d, last by %d", len(s.Outbox), s.Outbox[len(s.Outbox)-1].By)
	}
}

// randomSnapshots returns n snapshots of key as the identity stage makes
// them: tags come and go, their since only grows, a removal says when, and
// the id may merge away at the end.
func randomSnapshots(r *rand.Rand, key string, n int) []*schemas.Profile {
	vocab := []string{"new", "vip", "lead", "customer"}
	on := map[string]schemas.ProfileTag{}
	off := map[string]schemas.ProfileTag{}
	clock := int64(1000)
	var out []*schemas.Profile
	for i := 0; i < n; i++ {
		if i == n-1 && r.Intn(4) == 0 {
			out = append(out, &schemas.Profile{ID: key, Tenant: "t", MergedInto: "p_0"})
			break
		}
		for j := r.Intn(3); j >= 0; j-- {
			clock += int64(r.Intn(3))
			tag := vocab[r.Intn(len(vocab))]
			source := []string{schemas.TagSourceManual, schemas.TagSourceDefault}[r.Intn(2)]
			if _, isOn := on[tag]; isOn && r.Intn(2) == 0 {
				delete(on, tag)
				off[tag] = schemas.ProfileTag{Tag: tag, Source: schemas.TagSourceManual, SinceMs: clock}
			} else {
				delete(off, tag)
				on[tag] = schemas.ProfileTag{Tag: tag, Source: source, SinceMs: clock}
			}
		}
		p := &schemas.Profile{ID: key, Tenant: "t"}
		for _, k := range schemas.SortedKeys(on) {
			p.Tags = append(p.Tags, on[k])
		}
		for _, k := range schemas.SortedKeys(off) {
			p.RemovedTags = append(p.RemovedTags, off[k])
		}
		out = append(out, p)
	}
	return out
}

type input struct {
	key string
	p   *schemas.Profile
}

func changeKey(c schemas.TagChange) string { return fmt.Sprintf("%+v", c) }

// diffSets returns, sorted, what want has and got lacks, and the reverse.
func diffSets(want, got map[string]bool) (missing, extra []string) {
	for k := range want {
		if !got[k] {
			missing = append(missing, k)
		}
	}
	for k := range got {
		if !want[k] {
			extra = append(extra, k)
		}
	}
	sort.Strings(missing)
	sort.Strings(extra)
	return missing, extra
}

// TestStepUnderCrashes runs Step over random snapshots of several ids on
// one partition as goka would, crashing at random moments: at a crash the
// table and the output each keep a prefix of the writes made since the
// last commit (each is one partition, written in order), the local store
// keeps every write or is recovered from the table, and processing resumes
// at the committed offset. The distinct records written must be exactly
// the reference model's.
func TestStepUnderCrashes(t *testing.T) {
	for seed := int64(1); seed <= 300; seed++ {
		r := rand.New(rand.NewSource(seed))
		var log []input
		want := map[string]bool{}
		perKey := map[string][]*schemas.Profile{}
		for k := 0; k < 4; k++ {
			key := fmt.Sprintf("p_%d", k+1)
			perKey[key] = randomSnapshots(r, key, 5+r.Intn(30))
		}
		// Interleave the keys' snapshots, each key's in order.
		next := map[string]int{}
		for len(next) < len(perKey) || func() bool {
			for k, ps := range perKey {
				if next[k] < len(ps) {
					return true
				}
			}
			return false
		}() {
			keys := schemas.SortedKeys(perKey)
			k := keys[r.Intn(len(keys))]
			if next[k] < len(perKey[k]) {
				log = append(log, input{k, perKey[k][next[k]]})
			}
			next[k]++
		}
		for k, ps := range perKey {
			ts := make([]int64, len(ps))
			for _, c := range reference.TagChanges(k, ps, ts) {
				want[changeKey(c)] = true
			}
		}

		table := map[string]*State{} // what the table topic holds
		local := map[string]*State{} // the instance's store
		got := map[string]bool{}
		committed := 0
		type write struct {
			key string
			s   *State
		}
		var pendingTable []write
		var pendingOut []schemas.TagChange
		pendingFrom := 0
		for off := 0; off < len(log); {
			in := log[off]
			s, out, w := Step(local[in.key], in.key, in.p, int64(off)+1, 0)
			if w {
				local[in.key] = s
				pendingTable = append(pendingTable, write{in.key, s})
			}
			pendingOut = append(pendingOut, out...)
			off++
			switch x := r.Intn(10); {
			case x < 6: // everything so far acknowledged and committed
				for _, tw := range pendingTable {
					table[tw.key] = tw.s
				}
				for _, c := range pendingOut {
					got[changeKey(c)] = true
				}
				pendingTable, pendingOut, committed, pendingFrom = nil, nil, off, off
			case x == 9: // crash
				for _, tw := range pendingTable[:r.Intn(len(pendingTable)+1)] {
					table[tw.key] = tw.s
				}
				for _, c := range pendingOut[:r.Intn(len(pendingOut)+1)] {
					got[changeKey(c)] = true
				}
				if r.Intn(2) == 0 {
					local = map[string]*State{}
					for k, s := range table {
						local[k] = s
					}
				}
				pendingTable, pendingOut = nil, nil
				off = committed
				_ = pendingFrom
			}
		}
		for _, c := range pendingOut {
			got[changeKey(c)] = true
		}
		if missing, extra := diffSets(want, got); len(missing)+len(extra) > 0 {
			t.Fatalf("seed %d: missing %v\nextra %v", seed, missing, extra)
		}
	}
}
