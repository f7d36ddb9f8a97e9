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

// A contribution's EventTimes are, after every event, per type the latest
// EventTimesLimit of its events: read from Recent while it holds them all,
// then from Times; the same after a JSON round trip (the node's value).
func TestContributionEventTimes(t *testing.T) {
	types := []string{"page.viewed", "purchase.completed", "form.submitted"}
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for seed := int64(1); seed <= 40; seed++ {
		rng := rand.New(rand.NewSource(seed))
		var c Contribution
		all := map[string][]int64{}
		for i := range 2*EventTimesLimit + rng.Intn(2*EventTimesLimit) {
			typ := types[rng.Intn(len(types))]
			if rng.Intn(2) == 0 {
				typ = types[0]
			}
			at := base.Add(time.Duration(rng.Intn(5*EventTimesLimit)) * time.Second)
			c.Add(&Event{ID: fmt.Sprint("e", i), Type: typ, Source: "web", Time: at})
			all[typ] = append(all[typ], at.UnixMilli())
			want := map[string][]int64{}
			for typ, ts := range all {
				want[typ] = latestTimes(ts)
			}
			if got := c.EventTimes(); !reflect.DeepEqual(got, want) {
				t.Fatalf("seed %d, after %d events: EventTimes =\n %v\nwant\n %v", seed, i+1, got, want)
			}
			if (c.Times == nil) != (i < RecentLimit) {
				t.Fatalf("seed %d, after %d events: Times is nil: %v, want it nil only while Recent (%d) holds every event", seed, i+1, c.Times == nil, RecentLimit)
			}
			if i%37 == 0 {
				data, err := JSONCodec[Contribution]{}.Encode(&c)
				if err != nil {
					t.Fatal(err)
				}
				back, err := JSONCodec[Contribution]{}.Decode(data)
				if err != nil {
					t.Fatal(err)
				}
				if got := back.(*Contribution).EventTimes(); !reflect.DeepEqual(got, want) {
					t.Fatalf("seed %d, after %d events, decoded: EventTimes =\n %v\nwant\n %v", seed, i+1, got, want)
				}
			}
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

// The cost of keeping event times: one AddTime per event (into a full list
// of EventTimesLimit, the worst case), one MergeTimes per type and member
// per snapshot (two full lists).
func BenchmarkEventTimes(b *testing.B) {
	rng := rand.New(rand.NewSource(1))
	full := latestTimes(randomTimes(rng, 2*EventTimesLimit))
	other := latestTimes(randomTimes(rng, 2*EventTimesLimit))
	b.Run("AddTime/full", func(b *testing.B) {
		l := slices.Clone(full)
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			l = AddTime(l, full[0]+int64(i)) // the newest: shifts the whole list
		}
	})
	b.Run("MergeTimes/full", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			MergeTimes(full, other)
		}
	})
	// The event times' share of a snapshot's fold: a typical root (the
	// identity benchmark's profiles have 4 events on 2 nodes), and a busy
	// one (5 nodes of 300 events of 3 types: every contribution keeps
	// Times).
	for _, shape := range []struct {
		name          string
		nodes, events int
	}{{"typical", 2, 2}, {"busy", 5, 300}} {
		n := &Node{Tenant: "t"}
		var cs []Contribution
		for i := range shape.nodes {
			c := Contribution{Node: fmt.Sprint("p_", i), Identifier: Identifier{Type: IDUserID, Value: fmt.Sprint("u", i)}}
			for j := range shape.events {
				c.Add(&Event{ID: fmt.Sprint("e", j), Type: []string{"page.viewed", "form.submitted", "login"}[j%3], Source: "web", Time: time.UnixMilli(rng.Int63n(1 << 40))})
			}
			cs = append(cs, c)
		}
		n.Own = cs[0]
		n.Join(cs[1:])
		for _, times := range []bool{false, true} {
			b.Run(fmt.Sprintf("FoldWith/%s/EventTimes=%v", shape.name, times), func(b *testing.B) {
				opts := &FoldOptions{EventTimes: times}
				b.ReportAllocs()
				for i := 0; i < b.N; i++ {
					FoldWith("p_0", n, opts)
				}
			})
		}
	}
}
