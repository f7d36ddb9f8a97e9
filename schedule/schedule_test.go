package schedule

import (
	"fmt"
	"math/rand"
	"sort"
	"testing"
)

// Against a plain map: after random sets, replacements and removals, Pop
// returns exactly the keys whose latest wake is due, earliest first, each
// once, and leaves the others.
func TestSchedulerMatchesMap(t *testing.T) {
	r := rand.New(rand.NewSource(1))
	for round := 0; round < 200; round++ {
		s := New()
		want := map[string]int64{}
		for i := 0; i < 3000; i++ {
			k := fmt.Sprintf("k%d", r.Intn(500))
			at := int64(r.Intn(1000))
			if r.Intn(10) == 0 {
				at = 0
			}
			s.Set(k, at)
			if at == 0 {
				delete(want, k)
			} else {
				want[k] = at
			}
		}
		now := int64(r.Intn(1000))
		var due []Wake
		for k, at := range want {
			if at <= now {
				due = append(due, Wake{Key: k, At: at})
			}
		}
		sort.Slice(due, func(i, j int) bool {
			if due[i].At != due[j].At {
				return due[i].At < due[j].At
			}
			return due[i].Key < due[j].Key
		})
		var got []Wake
		for {
			batch := s.Pop(now, 7)
			if len(batch) == 0 {
				break
			}
			got = append(got, batch...)
		}
		if fmt.Sprint(got) != fmt.Sprint(due) {
			t.Fatalf("round %d: popped %v\nwant %v", round, got, due)
		}
		if s.Len() != len(want)-len(due) {
			t.Fatalf("round %d: %d left, want %d", round, s.Len(), len(want)-len(due))
		}
	}
}
