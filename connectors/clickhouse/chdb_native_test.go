//go:build chdb

package clickhouse

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The Native block the sink posts over HTTP (ch-go's EncodeRawBlock at
// protocol version 0) reads on current ClickHouse as the same rows as
// those events inserted another way (JSONEachRow): the encoding is not
// something only 18.16 accepts.
func TestChDBNativeBlock(t *testing.T) {
	s := startChDB(t)
	const db = "rolodex"
	s.migrate(db, Migrations)
	var rows EventRows
	direct := EventRows{block: newEventBlock()}
	for i, ev := range roundTripEvents() {
		rows.Add(ev, "", int32(i%4), int64(i))
		direct.Add(ev, "", int32(i%4), int64(i))
	}
	s.insert(db, "events", EventColumns, rows.columns())
	body, err := direct.block.encodeRows()
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "events.native")
	if err := os.WriteFile(file, body, 0o644); err != nil {
		t.Fatal(err)
	}
	s.exec("a table like events", "CREATE TABLE "+db+".events_native AS "+db+".events")
	cols := strings.Join(EventColumns, ", ")
	s.exec("INSERT of the Native block", "INSERT INTO "+db+".events_native ("+cols+") SELECT "+cols+" FROM file('"+file+"', 'Native')")
	sel := func(table string) string {
		out, err := s.run("SELECT "+cols+" FROM "+db+"."+table+" ORDER BY kafka_offset FORMAT TabSeparated", "TabSeparated")
		if err != nil {
			t.Fatalf("select from %s on ClickHouse %s: %v", table, s.version, err)
		}
		return out
	}
	// Current ClickHouse collapses the workload's resends on insert
	// (optimize_on_insert), in both tables alike.
	want, got := sel("events"), sel("events_native")
	if n := strings.Count(want, "\n"); n < len(finalEvents(roundTripEvents())) {
		t.Fatalf("events holds %d rows, want at least %d", n, len(finalEvents(roundTripEvents())))
	}
	if got != want {
		t.Fatalf("ClickHouse %s reads the Native block as other rows (%d bytes) than the JSON insert (%d bytes)", s.version, len(got), len(want))
	}
	t.Logf("ClickHouse %s: %d rows, %d bytes of Native, read as %d rows equal to the JSON insert's", s.version, rows.Len(), len(body), strings.Count(got, "\n"))
}
