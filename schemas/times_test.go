package schemas

import (
	"cmp"
	"fmt"
	"math/rand"
	"reflect"
	"slices"
	"testing"
	"time"
)

// latestTimes is the plain model of a kept list of event times: every
// time, newest first, equal times repeated, cut to EventTimesLimit.
func latestTimes(ts []int64) []int64 {
	out := slices.Clone(ts)
	slices.SortFunc(out, func(a, b int64) int { return cmp.Compare(b, a) })
	if len(out) > EventTimesLimit {
		out = out[:EventTimesLimit]
	}
	return out
}

// randomTimes returns n times, often equal: drawn from a range that is
// sometimes narrower than n.
func randomTimes(rng *rand.Rand, n int) []int64 {
	span := int64(1 + rng.Intn(3*EventTimesLimit))
	base := rng.Int63n(1 << 40)
	ts := make([]int64, n)
	for i := range ts {
		ts[i] = base + rng.Int63n(span)
	}
	return ts
}

// addAll folds ts one by one with AddTime, checking the bound on the way.
func addAll(t *testing.T, ts []int64) []int64 {
	t.Helper()
	var l []int64
	for i, x := range ts {
		l = AddTime(l, x)
		if want := min(i+1, EventTimesLimit); len(l) != want {
			t.Fatalf("after %d times AddTime kept %d, want %d", i+1, len(l), want)
		}
	}
	return l
}

func TestAddTimeKeepsTheLatest(t *testing.T) {
	for seed := int64(1); seed <= 300; seed++ {
		rng := rand.New(rand.NewSource(seed))
		n := rng.Intn(3 * EventTimesLimit)
		if seed <= 3 {
			n = []int{0, 1, EventTimesLimit}[seed-1]
		}
		ts := randomTimes(rng, n)
		got := addAll(t, ts)
		if want := latestTimes(ts); !slices.Equal(got, want) {
			t.Fatalf("seed %d, %d times: AddTime kept\n %v\nwant\n %v", seed, n, got, want)
		}
		// Another insertion order keeps the same list.
		rng.Shuffle(len(ts), func(i, j int) { ts[i], ts[j] = ts[j], ts[i] })
		if again := addAll(t, ts); !slices.Equal(again, got) {
			t.Fatalf("seed %d: another order kept\n %v\nfirst order\n %v", seed, again, got)
		}
	}
}

func TestAddTimeEdges(t *testing.T) {
	full := make([]int64, 0, EventTimesLimit)
	for i := range EventTimesLimit {
		full = append(full, int64(1000-i)) // 1000 ... 901
	}
	tests := []struct {
		name string
		l    []int64
		t    int64
		want []int64
	}{
		{"into nothing", nil, 5, []int64{5}},
		{"newest goes first", []int64{3, 2}, 4, []int64{4, 3, 2}},
		{"oldest goes last", []int64{3, 2}, 1, []int64{3, 2, 1}},
		{"an equal time repeats", []int64{3, 2}, 3, []int64{3, 3, 2}},
		{"full: older than every kept one is dropped", full, 900, full},
		{"full: equal to the oldest kept is dropped", full, 901, full},
		{"full: a newer one pushes the oldest out", full, 2000, append([]int64{2000}, full[:EventTimesLimit-1]...)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := AddTime(slices.Clone(tt.l), tt.t)
			if !slices.Equal(got, tt.want) {
				t.Fatalf("AddTime(%v, %d) = %v, want %v", tt.l, tt.t, got, tt.want)
			}
		})
	}
}

// MergeTimes of two kept lists is the kept list of all their times: the
// latest EventTimesLimit of a union are among each part's latest.
func TestMergeTimesKeepsTheLatestOfTheUnion(t *testing.T) {
	for seed := int64(1); seed <= 300; seed++ {
		rng := rand.New(rand.NewSource(seed))
		all := randomTimes(rng, rng.Intn(4*EventTimesLimit))
		cut := 0
		if len(all) > 0 {
			cut = rng.Intn(len(all) + 1)
		}
		a, b := latestTimes(all[:cut]), latestTimes(all[cut:])
		ac, bc := slices.Clone(a), slices.Clone(b)
		got := MergeTimes(a, b)
		if want := latestTimes(all); !slices.Equal(got, want) {
			t.Fatalf("seed %d: MergeTimes of %d and %d times =\n %v\nwant\n %v", seed, len(a), len(b), got, want)
		}
		if !slices.Equal(a, ac) || !slices.Equal(b, bc) {
			t.Fatalf("seed %d: MergeTimes changed its arguments", seed)
		}
		if swapped := MergeTimes(b, a); !slices.Equal(swapped, got) {
			t.Fatalf("seed %d: MergeTimes(b, a) = %v, MergeTimes(a, b) = %v", seed, swapped, got)
		}
		if len(got) > 0 && len(a) > 0 && &got[0] == &a[0] {
			t.Fatalf("seed %d: MergeTimes returned its argument's array", seed)
		}
	}
}

// A profile's EventTimes are, per type, the latest EventTimesLimit times
// of every event of all its nodes, whichever node each event was folded
// on and in whichever order.
func TestFoldEventTimes(t *testing.T) {
	types := []string{"page.viewed", "purchase.completed", "form.submitted"}
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for seed := int64(1); seed <= 60; seed++ {
		rng := rand.New(rand.NewSource(seed))
		var evs []*Event
		want := map[string][]int64{}
		for i := range rng.Intn(5 * EventTimesLimit) {
			typ := types[rng.Intn(len(types))]
			if rng.Intn(4) == 0 {
				typ = types[0] // one type past the bound more often
			}
			at := base.Add(time.Duration(rng.Intn(20*EventTimesLimit)) * time.Second)
			evs = append(evs, &Event{Tenant: "t", ID: fmt.Sprint("e", i), Type: typ, Source: "web", Time: at})
			want[typ] = append(want[typ], at.UnixMilli())
		}
		for typ, ts := range want {
			want[typ] = latestTimes(ts)
		}
		members := 1 + rng.Intn(4)
		on := make([]int, len(evs)) // the contribution each event is folded on
		for i := range on {
			on[i] = rng.Intn(members + 1)
		}
		fold := func(order []int) *Profile {
			cs := make([]Contribution, members+1)
			for i := range cs {
				cs[i] = Contribution{Node: fmt.Sprintf("p_%02d", i), Identifier: Identifier{Type: IDUserID, Value: fmt.Sprint("u", i)}}
			}
			for _, i := range order {
				cs[on[i]].Add(evs[i])
			}
			n := &Node{Tenant: "t", Identifier: cs[0].Identifier, Own: cs[0]}
			n.Join(cs[1:])
			return FoldWith(cs[0].Node, n, &FoldOptions{EventTimes: true})
		}
		order := rng.Perm(len(evs))
		p := fold(order)
		if len(evs) == 0 {
			if p.EventTimes != nil {
				t.Fatalf("seed %d: a profile without events has event times %v", seed, p.EventTimes)
			}
			continue
		}
		if !reflect.DeepEqual(p.EventTimes, want) {
			t.Fatalf("seed %d, %d events on %d nodes: EventTimes =\n %v\nwant\n %v", seed, len(evs), members+1, p.EventTimes, want)
		}
		slices.Reverse(order)
		if again := fold(order); !reflect.DeepEqual(again.EventTimes, p.EventTimes) {
			t.Fatalf("seed %d: the reverse order folds\n %v\nnot\n %v", seed, again.EventTimes, p.EventTimes)
		}
		// Without the option the profile carries none (the query API's fold).
		n := &Node{Tenant: "t", Own: Contribution{Node: "p_00"}}
		n.Own.Add(evs[0])
		if q := FoldWith("p_00", n, &FoldOptions{}); q.EventTimes != nil {
			t.Fatalf("seed %d: folded without EventTimes, the profile has %v", seed, q.EventTimes)
		}
	}
}
