package clickhouse

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/rolodex/rolodex/schemas"
)

// storedEvent is one row of events as read back.
type storedEvent struct {
	tenant, eventID, typ, source, partner string
	time                                  time.Time
	timeMS                                int64
	receivedAt                            time.Time
	receivedAtMS                          uint64
	nodeID                                string
	idTypes, idValues                     []string
	traitKeys, traitValues                []string
	propKeys, propValues                  []string
	partition                             int32
	offset                                int64
}

// wantEvent is the row the sink must write for ev read at pos.
func wantEvent(ev *schemas.Event, pos produced) storedEvent {
	var r EventRows
	r.Add(ev, ev.Key(), pos.partition, pos.offset)
	return storedEvent{
		tenant: ev.Tenant, eventID: ev.ID, typ: ev.Type, source: ev.Source, partner: ev.Partner,
		time: DateTime(ev.Time), timeMS: ev.Time.UnixMilli(), receivedAt: DateTime(ev.ReceivedAt),
		receivedAtMS: uint64(ev.ReceivedAt.UnixMilli()), nodeID: ev.Key(),
		idTypes: r.idTypes[0], idValues: r.idValues[0], traitKeys: r.traitKeys[0], traitValues: r.traitValues[0],
		propKeys: r.propKeys[0], propValues: r.propValues[0], partition: pos.partition, offset: pos.offset,
	}
}

// readEvents reads events FINAL ordered by its key.
func readEvents(t testing.TB, conn driver.Conn, db string) []storedEvent {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	rows, err := conn.Query(ctx, `SELECT tenant, event_id, type, source, partner, time, time_ms, received_at, received_at_ms,
		node_id, identifier_types, identifier_values, trait_keys, trait_values, property_keys, property_values,
		kafka_partition, kafka_offset FROM `+db+`.events FINAL ORDER BY tenant, source, event_id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []storedEvent
	for rows.Next() {
		var e storedEvent
		if err := rows.Scan(&e.tenant, &e.eventID, &e.typ, &e.source, &e.partner, &e.time, &e.timeMS, &e.receivedAt, &e.receivedAtMS,
			&e.nodeID, &e.idTypes, &e.idValues, &e.traitKeys, &e.traitValues, &e.propKeys, &e.propValues,
			&e.partition, &e.offset); err != nil {
			t.Fatal(err)
		}
		e.time, e.receivedAt = e.time.UTC(), e.receivedAt.UTC()
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// checkEvents compares events FINAL with the reference, row by row.
// positions may be nil: then Kafka positions are not compared.
func checkEvents(t testing.TB, conn driver.Conn, db string, evs []*schemas.Event, positions map[*schemas.Event]produced) {
	t.Helper()
	final := finalEvents(evs)
	var want []storedEvent
	for _, ev := range final {
		want = append(want, wantEvent(ev, positions[ev]))
	}
	slices.SortFunc(want, func(a, b storedEvent) int {
		for _, c := range [][2]string{{a.tenant, b.tenant}, {a.source, b.source}, {a.eventID, b.eventID}} {
			if c[0] != c[1] {
				if c[0] < c[1] {
					return -1
				}
				return 1
			}
		}
		return 0
	})
	got := readEvents(t, conn, db)
	if positions == nil {
		for i := range got {
			got[i].partition, got[i].offset = 0, 0
		}
	}
	if len(got) != len(want) {
		t.Fatalf("events FINAL has %d rows, want %d", len(got), len(want))
	}
	bad := 0
	for i := range want {
		if !reflect.DeepEqual(normEmpty(got[i]), normEmpty(want[i])) {
			bad++
			if bad <= 3 {
				t.Errorf("row %d:\n got %+v\nwant %+v", i, got[i], want[i])
			}
		}
	}
	if bad > 0 {
		t.Fatalf("%d of %d rows differ", bad, len(want))
	}
}

// normEmpty makes nil and empty slices equal.
func normEmpty(e storedEvent) storedEvent {
	for _, s := range []*[]string{&e.idTypes, &e.idValues, &e.traitKeys, &e.traitValues, &e.propKeys, &e.propValues} {
		if len(*s) == 0 {
			*s = nil
		}
	}
	return e
}

// checkReports compares every report view with the Go reference.
func checkReports(t testing.TB, conn driver.Conn, db string, w *workload, since string) {
	t.Helper()
	checkReportsWith(t, w, since, func(r Report, since time.Time) *Result {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		res, err := RunReport(ctx, conn, db, r, since)
		if err != nil {
			t.Fatal(err)
		}
		return res
	})
}

// checkReportsWith compares every report, as run returns it, with the Go
// reference.
func checkReportsWith(t testing.TB, w *workload, since string, run func(r Report, since time.Time) *Result) {
	t.Helper()
	want := map[string][][]string{
		"activity":     refActivity(w, since),
		"profiles":     refProfiles(w, since),
		"merges":       refMerges(w, since),
		"dead-letters": refDeadLetters(w.deadLetters, since),
		"tags":         refTagMembership(w, since),
		"funnel":       refFunnel(w, since),
		// The workload routes no leads and fans nothing out (leads_test.go
		// and deliveries_test.go check those reports).
		"leads":      nil,
		"deliveries": nil,
	}
	var sinceT time.Time
	if since != "" {
		var err error
		if sinceT, err = time.Parse("2006-01-02", since); err != nil {
			t.Fatal(err)
		}
	}
	for _, r := range Reports {
		res := run(r, sinceT)
		if len(want[r.Name]) == 0 && (r.Name != "merges" || w.resolved) && (r.Name != "tags" || w.tagged) && (r.Name != "funnel" || w.messaged) && r.Name != "leads" && r.Name != "deliveries" {
			t.Fatalf("report %s: the reference is empty; the test input is too small", r.Name)
		}
		if !reflect.DeepEqual(res.Rows, want[r.Name]) {
			t.Errorf("report %s (since %q): %d rows, want %d\n%s", r.Name, since, len(res.Rows), len(want[r.Name]), firstDiff(res.Rows, want[r.Name]))
		}
	}
}

func firstDiff(got, want [][]string) string {
	for i := 0; i < max(len(got), len(want)); i++ {
		var g, w []string
		if i < len(got) {
			g = got[i]
		}
		if i < len(want) {
			w = want[i]
		}
		if !slices.Equal(g, w) {
			return fmt.Sprintf("first difference at row %d:\n got %v\nwant %v", i, g, w)
		}
	}
	return ""
}

// checkDeadLetters reads dead_letters FINAL back and compares every column
// with what the sink must write for ds read at positions.
func checkDeadLetters(t testing.TB, conn driver.Conn, db string, ds []*schemas.DeadLetter, positions map[*schemas.DeadLetter]produced) {
	t.Helper()
	sorted := slices.Clone(ds)
	slices.SortFunc(sorted, func(a, b *schemas.DeadLetter) int {
		pa, pb := positions[a], positions[b]
		if pa.partition != pb.partition {
			return int(pa.partition - pb.partition)
		}
		return int(pa.offset - pb.offset)
	})
	var want DeadLetterRows
	for _, d := range sorted {
		want.Add(d, schemas.TopicDeadLetter, positions[d].partition, positions[d].offset)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rows, err := conn.Query(ctx, "SELECT "+strings.Join(DeadLetterColumns, ", ")+" FROM "+db+".dead_letters FINAL ORDER BY kafka_topic, kafka_partition, kafka_offset")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var got DeadLetterRows
	for rows.Next() {
		var (
			topic, tenant, partner, reason, message, kind, reqID, srcTopic, file, payload string
			part, srcPart                                                                 int32
			off, srcOff, row, ms                                                          int64
			tm                                                                            time.Time
		)
		if err := rows.Scan(&topic, &part, &off, &tm, &ms, &tenant, &partner, &reason, &message, &kind, &reqID, &srcTopic, &srcPart, &srcOff, &file, &row, &payload); err != nil {
			t.Fatal(err)
		}
		d := &schemas.DeadLetter{Time: time.UnixMilli(ms).UTC(), Tenant: tenant, Partner: partner, Reason: reason, Message: message, SourceKind: kind,
			RequestID: reqID, Topic: srcTopic, Partition: srcPart, Offset: srcOff, File: file, Row: row, Payload: []byte(payload)}
		if !tm.Equal(DateTime(d.Time)) {
			t.Errorf("dead letter %s/%d@%d: time %s, time_ms %d", topic, part, off, tm, ms)
		}
		got.Add(d, topic, part, off)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("dead_letters FINAL differs from the input (%d rows, want %d)", got.Len(), want.Len())
	}
}
