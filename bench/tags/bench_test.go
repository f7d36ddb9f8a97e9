package tags

import (
	"testing"
	"time"

	"github.com/rolodex/rolodex/bench/measure"
	"github.com/rolodex/rolodex/processors/tags"
	"github.com/rolodex/rolodex/schemas"
)

// benchProfiles is how many distinct profiles the benchmarks cycle
// through, so that no run evaluates one profile from a warm cache.
const benchProfiles = 2000

// benchNow is the instant of the generated workload.
var benchNow = time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)

// cpuPerOp reports the CPU time of the whole process per operation since
// cpu0 (measure.ProcessCPU): on a shared machine it moves far less than
// ns/op. It includes the garbage collector's background work.
func cpuPerOp(b *testing.B, cpu0 time.Duration) {
	b.ReportMetric(float64(measure.ProcessCPU()-cpu0)/float64(b.N), "cpu-ns/op")
}

type fixture struct {
	profiles []*schemas.Profile
	states   []*tags.State // each profile's state after its first snapshot, under ExampleRules
	stored   [][]byte      // states as the table stores them (JSON)
	env      *tags.Env     // ExampleRules
	changed  *tags.Env     // ChangedRules
	none     *tags.Env     // no rules: the status tags only
}

func newFixture(tb testing.TB, n int) *fixture {
	tb.Helper()
	f := &fixture{profiles: Profiles(n, 1, benchNow)}
	groups := tags.NewGroups(schemas.StatusConfig{Groups: []schemas.TagGroup{{Name: "stage", Tags: []string{"lead", "customer"}, Exclusive: true}}})
	env := func(rs []schemas.TagRule) *tags.Env {
		set, errs := tags.NewRuleSet(rs)
		if len(errs) > 0 {
			tb.Fatal(errs)
		}
		return &tags.Env{Rules: set, Groups: groups}
	}
	f.env, f.changed, f.none = env(ExampleRules()), env(ChangedRules()), &tags.Env{Groups: groups}
	at := benchNow.Add(-time.Minute).UnixMilli()
	for _, p := range f.profiles {
		r := tags.Apply(nil, p.ID, tags.Message{Snapshot: p, Origin: 1, At: at}, f.env)
		b, err := schemas.JSONCodec[tags.State]{}.Encode(r.State)
		if err != nil {
			tb.Fatal(err)
		}
		f.states = append(f.states, r.State)
		f.stored = append(f.stored, b)
	}
	return f
}

// BenchmarkApply is one profile update in the tag stage: Apply of a new
// snapshot on the profile's state, with the tenant's four example rules
// (rules=4) and with no rules (rules=0: status tags only). The snapshot
// and the state are decoded already.
func BenchmarkApply(b *testing.B) {
	f := newFixture(b, benchProfiles)
	at := benchNow.UnixMilli()
	for _, c := range []struct {
		name string
		env  *tags.Env
	}{{"rules=0", f.none}, {"rules=4", f.env}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			i, cpu0 := 0, measure.ProcessCPU()
			for b.Loop() {
				k := i % len(f.profiles)
				i++
				r := tags.Apply(f.states[k], f.profiles[k].ID, tags.Message{Snapshot: f.profiles[k], Origin: 2, At: at}, c.env)
				if !r.Write {
					b.Fatal("a snapshot is always written")
				}
			}
			cpuPerOp(b, cpu0)
		})
	}
}

// BenchmarkUpdate is a profile update with what goka does around Apply:
// decode the snapshot from rolodex.profiles and the state from the table,
// Apply, encode the new state.
func BenchmarkUpdate(b *testing.B) {
	f := newFixture(b, benchProfiles)
	var snaps [][]byte
	for _, p := range f.profiles {
		v, err := schemas.JSONCodec[schemas.Profile]{}.Encode(p)
		if err != nil {
			b.Fatal(err)
		}
		snaps = append(snaps, v)
	}
	at := benchNow.UnixMilli()
	b.ReportAllocs()
	i, cpu0 := 0, measure.ProcessCPU()
	for b.Loop() {
		k := i % len(f.profiles)
		i++
		pv, err := schemas.JSONCodec[schemas.Profile]{}.Decode(snaps[k])
		if err != nil {
			b.Fatal(err)
		}
		sv, err := schemas.JSONCodec[tags.State]{}.Decode(f.stored[k])
		if err != nil {
			b.Fatal(err)
		}
		p := pv.(*schemas.Profile)
		r := tags.Apply(sv.(*tags.State), p.ID, tags.Message{Snapshot: p, Origin: 2, At: at}, f.env)
		if _, err := (schemas.JSONCodec[tags.State]{}).Encode(r.State); err != nil {
			b.Fatal(err)
		}
	}
	cpuPerOp(b, cpu0)
}

// BenchmarkRuleChange is what a changed rule costs per stored profile
// (ChangedRules: the first example rule from 3 views to 5): the visit
// decodes the state and evaluates it (Visit); a profile the change
// affects gets a tick, whose callback decodes the state again, applies the
// tick and encodes the new state. A new version alone writes nothing, so
// ticked/op of the profiles get a tick and a write, and changed/op of them
// a change of tags. Parallel runs GOMAXPROCS goroutines over the profiles,
// as the stage's partitions do.
func BenchmarkRuleChange(b *testing.B) {
	f := newFixture(b, benchProfiles)
	now := benchNow.UnixMilli()
	// one handles profile k; it reports whether the visit asked for a
	// tick and whether the tick changed the profile's tags.
	one := func(k int) (bool, bool) {
		codec := schemas.JSONCodec[tags.State]{}
		sv, err := codec.Decode(f.stored[k])
		if err != nil {
			b.Fatal(err)
		}
		key := f.profiles[k].ID
		at, tick := tags.Visit(sv.(*tags.State), key, now, f.changed)
		if !tick {
			return false, false
		}
		sv, err = codec.Decode(f.stored[k])
		if err != nil {
			b.Fatal(err)
		}
		r := tags.Apply(sv.(*tags.State), key, tags.Message{Tick: true, Origin: 1, At: at}, f.changed)
		if !r.Write {
			b.Fatal("a tick after a visit that asked for it writes the state")
		}
		if _, err := codec.Encode(r.State); err != nil {
			b.Fatal(err)
		}
		return true, len(r.Changes) > 0
	}
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		i, ticked, changed, cpu0 := 0, 0, 0, measure.ProcessCPU()
		for b.Loop() {
			t, c := one(i % len(f.profiles))
			if t {
				ticked++
			}
			if c {
				changed++
			}
			i++
		}
		cpuPerOp(b, cpu0)
		b.ReportMetric(float64(ticked)/float64(i), "ticked/op")
		b.ReportMetric(float64(changed)/float64(i), "changed/op")
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		cpu0 := measure.ProcessCPU()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				one(i % len(f.profiles))
				i++
			}
		})
		cpuPerOp(b, cpu0)
	})
	// restart is the visit of an instance's start (or a rebalance) with
	// the rules unchanged: decode and Visit, no tick (the wakes are in
	// the future).
	b.Run("restart", func(b *testing.B) {
		b.ReportAllocs()
		i, ticked, cpu0 := 0, 0, measure.ProcessCPU()
		for b.Loop() {
			k := i % len(f.profiles)
			sv, err := (schemas.JSONCodec[tags.State]{}).Decode(f.stored[k])
			if err != nil {
				b.Fatal(err)
			}
			if _, tick := tags.Visit(sv.(*tags.State), f.profiles[k].ID, now, f.env); tick {
				ticked++
			}
			i++
		}
		cpuPerOp(b, cpu0)
		b.ReportMetric(float64(ticked)/float64(i), "ticked/op")
	})
	// The parts, serial.
	b.Run("decode", func(b *testing.B) {
		b.ReportAllocs()
		i, cpu0 := 0, measure.ProcessCPU()
		for b.Loop() {
			if _, err := (schemas.JSONCodec[tags.State]{}).Decode(f.stored[i%len(f.stored)]); err != nil {
				b.Fatal(err)
			}
			i++
		}
		cpuPerOp(b, cpu0)
		var n int
		for _, s := range f.stored {
			n += len(s)
		}
		b.ReportMetric(float64(n)/float64(len(f.stored)), "state-bytes")
	})
	b.Run("visit", func(b *testing.B) {
		b.ReportAllocs()
		i, cpu0 := 0, measure.ProcessCPU()
		for b.Loop() {
			k := i % len(f.profiles)
			tags.Visit(f.states[k], f.profiles[k].ID, now, f.changed)
			i++
		}
		cpuPerOp(b, cpu0)
	})
	b.Run("encode", func(b *testing.B) {
		b.ReportAllocs()
		i, cpu0 := 0, measure.ProcessCPU()
		for b.Loop() {
			if _, err := (schemas.JSONCodec[tags.State]{}).Encode(f.states[i%len(f.states)]); err != nil {
				b.Fatal(err)
			}
			i++
		}
		cpuPerOp(b, cpu0)
	})
}
