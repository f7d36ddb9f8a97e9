package tags

import (
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/rolodex/rolodex/schemas"
)

// TestRunSane runs the benchmark on a few profiles: every phase ends with
// the records the stage must make (Run checks the rule change's against
// the expected ones) and reports sane numbers.
func TestRunSane(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := Run(ctx, Config{Profiles: 300, Partitions: 4, Settle: 1500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Embedded || res.SnapshotRecords < 300 || res.RuleChangeRecords == 0 || res.Ticks != res.WantTicks || res.Ticks == 0 || res.Ticks >= 300 {
		t.Fatalf("embedded %v, %d snapshot records (want at least one per profile), %d rule change records (want some), %d ticks (want %d: one per profile the change affects, not all 300)",
			res.Embedded, res.SnapshotRecords, res.RuleChangeRecords, res.Ticks, res.WantTicks)
	}
	for name, p := range map[string]float64{"passthrough": res.Passthrough.EventsPerSec, "snapshots": res.Snapshots.EventsPerSec, "rule change": res.RuleChange.EventsPerSec, "restart": res.Restart.EventsPerSec} {
		if p <= 0 {
			t.Errorf("%s: %v profiles/s", name, p)
		}
	}
	if res.FirstVisit <= 0 || res.FirstVisit > res.Restart.Elapsed {
		t.Errorf("first visit %v, restart %v", res.FirstVisit, res.Restart.Elapsed)
	}
	if res.FirstChange <= 0 || res.FirstChange > res.RuleChange.Elapsed || res.PerMillion < res.RuleChange.Elapsed {
		t.Errorf("first change %v, rule change %v, scaled to 1M %v", res.FirstChange, res.RuleChange.Elapsed, res.PerMillion)
	}
}

// TestProfiles: the generated snapshots have the documented shape and
// are reproducible.
func TestProfiles(t *testing.T) {
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	ps := Profiles(500, 1, now)
	if !reflect.DeepEqual(ps, Profiles(500, 1, now)) {
		t.Fatal("the same seed gave other profiles")
	}
	ids := map[string]bool{}
	for _, p := range ps {
		ids[p.ID] = true
		if len(p.Traits) != 5 || len(p.Identifiers) != 4 || len(p.Tags) == 0 || p.Tenant != Tenant {
			t.Fatalf("profile %s: %d traits, %d identifier types, %d tags, tenant %q", p.ID, len(p.Traits), len(p.Identifiers), len(p.Tags), p.Tenant)
		}
		if p.EventCount < 10 || p.EventCount > 300 {
			t.Fatalf("profile %s has %d events", p.ID, p.EventCount)
		}
		for typ, ts := range p.EventTimes {
			if len(ts) == 0 || len(ts) > schemas.EventTimesLimit || int64(len(ts)) > p.Counters[typ] {
				t.Fatalf("profile %s: %d times of %s, counter %d", p.ID, len(ts), typ, p.Counters[typ])
			}
			for i := 1; i < len(ts); i++ {
				if ts[i] > ts[i-1] || ts[0] > now.UnixMilli() {
					t.Fatalf("profile %s: times of %s not newest first or in the future", p.ID, typ)
				}
			}
		}
	}
	if len(ids) != len(ps) {
		t.Fatalf("%d distinct ids for %d profiles", len(ids), len(ps))
	}
}
