package clickhouse

import (
	"context"
	"testing"
	"time"

	"github.com/rolodex/rolodex/schemas"
)

// Every kind of insert is checked by its row count: clickhouse-go can
// insert nothing without an error when the column list is missing.
func TestInsertRowCounts(t *testing.T) {
	conn, db := testDB(t)
	// The raw counts below are exact only while no background merge has
	// collapsed the copies yet.
	stopMerges(t, conn, db, tableEvents)
	stopMerges(t, conn, db, tableDeadLetters)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	w := genWorkload(1, 500, 40)

	positions := map[*schemas.Event]produced{}
	var evs EventRows
	for i, ev := range w.events {
		pos := produced{int32(i % 4), int64(i)}
		positions[ev] = pos
		evs.Add(ev, ev.Key(), pos.partition, pos.offset)
	}
	dlPositions := map[*schemas.DeadLetter]produced{}
	var dls DeadLetterRows
	for i, d := range w.deadLetters {
		pos := produced{int32(i % 2), int64(i)}
		dlPositions[d] = pos
		dls.Add(d, schemas.TopicDeadLetter, pos.partition, pos.offset)
	}
	if evs.Len() != len(w.events) || dls.Len() != len(w.deadLetters) {
		t.Fatalf("rows: %d events, %d dead letters", evs.Len(), dls.Len())
	}
	final := uint64(len(finalEvents(w.events)))
	if final == uint64(len(w.events)) {
		t.Fatal("the workload has no resends; the collapse is not tested")
	}

	tests := []struct {
		name                          string
		insert                        func() error
		events, eventsFinal           uint64
		deadLetters, deadLettersFinal uint64
	}{
		{"events", func() error { return evs.Insert(ctx, conn, db) }, 500, final, 0, 0},
		{"dead letters", func() error { return dls.Insert(ctx, conn, db) }, 500, final, 40, 40},
		// A replayed batch doubles the raw rows; FINAL still counts each once.
		{"events again", func() error { return evs.Insert(ctx, conn, db) }, 1000, final, 40, 40},
		{"dead letters again", func() error { return dls.Insert(ctx, conn, db) }, 1000, final, 80, 40},
		{"empty events", func() error { var e EventRows; return e.Insert(ctx, conn, db) }, 1000, final, 80, 40},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.insert(); err != nil {
				t.Fatal(err)
			}
			for _, c := range []struct {
				query string
				want  uint64
			}{
				{"SELECT count() FROM " + db + ".events", tt.events},
				{"SELECT count() FROM " + db + ".events FINAL", tt.eventsFinal},
				{"SELECT count() FROM " + db + ".dead_letters", tt.deadLetters},
				{"SELECT count() FROM " + db + ".dead_letters FINAL", tt.deadLettersFinal},
			} {
				if n := count(t, conn, c.query); n != c.want {
					t.Errorf("%s: %d, want %d", c.query, n, c.want)
				}
			}
		})
	}
	// After a forced merge the copies are gone from the table itself.
	if err := conn.Exec(ctx, "SYSTEM START MERGES "+db+".events"); err != nil {
		t.Fatal(err)
	}
	if err := conn.Exec(ctx, "OPTIMIZE TABLE "+db+".events FINAL"); err != nil {
		t.Fatal(err)
	}
	if n := count(t, conn, "SELECT count() FROM "+db+".events"); n != final {
		t.Errorf("after OPTIMIZE FINAL events holds %d rows, want %d", n, final)
	}
	checkEvents(t, conn, db, w.events, positions)
	checkDeadLetters(t, conn, db, w.deadLetters, dlPositions)
	checkReports(t, conn, db, w, "")
	checkReports(t, conn, db, w, "2026-11-03")
}
