package clickhouse

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rolodex/rolodex/schemas"
)

var wlTags = []string{"new", "vip", "lead", "customer"}

// tagChanges returns what the tag stage writes for w: per profile and tag
// a history of effective changes (added and removed alternating, strictly
// later each time) with causes default, manual and rule:..., some profile
// ids merging away (every tag they hold then removed with cause merge,
// nothing after), and about 5% of the records repeated later (replays of
// the tag stage after a crash, identical). The profile ids are node ids of
// w's events.
func (w *workload) tagChanges() []schemas.TagChange {
	if w.tags != nil {
		return w.tags
	}
	r := rand.New(rand.NewPCG(w.seed, 0x7a65))
	seen := map[string]bool{}
	var nodes []*schemas.Event
	for _, ev := range w.events {
		if !seen[ev.Key()] {
			seen[ev.Key()] = true
			nodes = append(nodes, ev)
		}
	}
	var out []schemas.TagChange
	window := int64(5 * 24 * time.Hour / time.Millisecond)
	for i, ev := range nodes {
		if i%2 == 1 {
			continue // half the nodes never get a tag
		}
		start := wlStart.UnixMilli() + r.Int64N(window/2)
		mergeAt := int64(-1)
		if r.IntN(8) == 0 {
			mergeAt = start + r.Int64N(window/2)
		}
		for ti, tag := range wlTags {
			if ti > 0 && r.IntN(2) == 0 {
				continue
			}
			on := false
			at := start
			cause := schemas.TagSourceDefault
			if ti > 0 {
				at += r.Int64N(window / 4)
				cause = schemas.TagSourceManual
			}
			for step := 0; step < 1+r.IntN(4); step++ {
				if mergeAt >= 0 && at >= mergeAt {
					break
				}
				op := schemas.TagAdded
				if on {
					op = schemas.TagRemoved
				}
				out = append(out, schemas.TagChange{Tenant: ev.Tenant, Profile: ev.Key(), Tag: tag, Op: op, Cause: cause, Time: at})
				on = !on
				at += 1 + r.Int64N(window/4)
				cause = []string{schemas.TagSourceManual, "rule:r1@2"}[r.IntN(2)]
			}
			if on && mergeAt >= 0 {
				out = append(out, schemas.TagChange{Tenant: ev.Tenant, Profile: ev.Key(), Tag: tag, Op: schemas.TagRemoved, Cause: schemas.TagCauseMerge, Time: mergeAt})
			}
		}
	}
	r.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	n := len(out)
	for i := 0; i < n; i++ {
		if r.IntN(20) == 0 {
			out = append(out, out[i])
		}
	}
	w.tags = out
	return out
}

// refTagMembership is report_tag_membership_daily computed in Go, from
// since on, from the distinct records: per (tenant, tag) and every day
// with a change, the profiles whose latest change up to the end of that
// day is an add. (It replays each profile's history; the view sums +1 and
// -1: two computations that agree only if the records alternate.)
func refTagMembership(w *workload, since string) [][]string {
	if !w.tagged {
		return nil
	}
	type key struct{ tenant, tag string }
	distinct := map[schemas.TagChange]bool{}
	for _, c := range w.tagChanges() {
		distinct[c] = true
	}
	days := map[key]map[string]bool{}
	hist := map[key]map[string][]schemas.TagChange{}
	for c := range distinct {
		k := key{c.Tenant, c.Tag}
		if days[k] == nil {
			days[k], hist[k] = map[string]bool{}, map[string][]schemas.TagChange{}
		}
		days[k][day(time.UnixMilli(c.Time))] = true
		hist[k][c.Profile] = append(hist[k][c.Profile], c)
	}
	var rows [][]string
	for k, ds := range days {
		for d := range ds {
			if d < since {
				continue
			}
			members := 0
			for _, cs := range hist[k] {
				var last *schemas.TagChange
				for i := range cs {
					if day(time.UnixMilli(cs[i].Time)) <= d && (last == nil || cs[i].Time > last.Time) {
						last = &cs[i]
					}
				}
				if last != nil && last.Op == schemas.TagAdded {
					members++
				}
			}
			rows = append(rows, []string{d, k.tenant, k.tag, strconv.Itoa(members)})
		}
	}
	sortRows(rows, 3)
	return rows
}

// tagChangeRows are w's tag changes as the sink writes them, each at
// offset i of partition 0, one TagChangeRows per call (the batch drops the
// copies it holds twice).
func (w *workload) tagChangeRows(t testing.TB) *TagChangeRows {
	t.Helper()
	rows := &TagChangeRows{}
	for i, c := range w.tagChanges() {
		v, _ := json.Marshal(c)
		row, err := DecodeTagChange(v, c.Profile, 0, int64(i))
		if err != nil {
			t.Fatal(err)
		}
		rows.Add(row)
	}
	return rows
}

// tags produces the i-th of n equal parts of w's tag changes on
// rolodex.profile.tags, keyed by profile id, and marks w as tagged once the
// last part is out.
func (p *producer) tagChunk(t testing.TB, w *workload, i, n int) {
	t.Helper()
	all := w.tagChanges()
	a, b := i*len(all)/n, (i+1)*len(all)/n
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	for _, c := range all[a:b] {
		v, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		p.cl.Produce(context.Background(), &kgo.Record{Topic: schemas.TopicProfileTags, Key: []byte(c.Profile), Value: v}, func(_ *kgo.Record, err error) {
			defer wg.Done()
			mu.Lock()
			defer mu.Unlock()
			if err != nil && firstErr == nil {
				firstErr = err
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		t.Fatal(firstErr)
	}
	if i == n-1 {
		w.tagged = true
	}
}

// checkTagChanges compares tag_changes FINAL with w's distinct tag
// changes, every field.
func checkTagChanges(t testing.TB, conn driver.Conn, db string, w *workload) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rows, err := conn.Query(ctx, "SELECT tenant, profile_id, tag, op, cause, time, time_ms FROM "+db+".tag_changes FINAL")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	got := map[schemas.TagChange]int{}
	for rows.Next() {
		var c schemas.TagChange
		var tm time.Time
		if err := rows.Scan(&c.Tenant, &c.Profile, &c.Tag, &c.Op, &c.Cause, &tm, &c.Time); err != nil {
			t.Fatal(err)
		}
		if !tm.Equal(DateTime(time.UnixMilli(c.Time))) {
			t.Errorf("tag change %+v: time %s", c, tm)
		}
		got[c]++
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	want := map[schemas.TagChange]int{}
	for _, c := range w.tagChanges() {
		want[c] = 1
	}
	if len(want) == len(w.tagChanges()) {
		t.Fatal("the workload has no repeated tag change; the test needs some")
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("tag_changes FINAL: %d distinct rows, want %d; %s", len(got), len(want), firstMapDiff(got, want))
	}
}

func TestDecodeTagChange(t *testing.T) {
	row, err := DecodeTagChange([]byte(`{"tenant":"t1","profile_id":"p_a","tag":"vip","op":"removed","cause":"merge","time":1793700000123}`), "p_a", 3, 9)
	if err != nil {
		t.Fatal(err)
	}
	want := &TagChangeRow{Tenant: "t1", ProfileID: "p_a", Tag: "vip", Op: "removed", Cause: "merge",
		Time: time.UnixMilli(1793700000000).UTC(), TimeMS: 1793700000123, Partition: 3, Offset: 9}
	if !reflect.DeepEqual(row, want) {
		t.Fatalf("got %+v, want %+v", row, want)
	}
	if row, err := DecodeTagChange([]byte(`{"tenant":"t1","tag":"vip","op":"added","cause":"manual","time":1}`), "p_k", 0, 0); err != nil || row.ProfileID != "p_k" {
		t.Fatalf("profile id from the key: %+v, %v", row, err)
	}
	for _, bad := range []string{`nope`, `{"tenant":"t1","tag":"vip","op":"added"}`, `{"profile_id":"p_a","op":"added"}`, `{"profile_id":"p_a","tag":"x","op":"on"}`} {
		if _, err := DecodeTagChange([]byte(bad), "", 0, 0); err == nil {
			t.Errorf("%s: decoded", bad)
		}
	}
	// A batch keeps each change once.
	var rows TagChangeRows
	rows.Add(want)
	again := *want
	again.Offset = 10
	rows.Add(&again)
	other := *want
	other.Op = "added"
	rows.Add(&other)
	if rows.Len() != 2 {
		t.Fatalf("batch holds %d rows, want 2", rows.Len())
	}
}

// The membership view, on hand-made changes: a running count per tag,
// days without a change absent, a merge removal counted, copies (in one
// insert and across inserts) once, --since keeping the count of earlier
// days, and the tenant filter.
// tagMembershipScenario is a few tag changes of two tenants over five
// days: default tags, a merge's removal, a manual add, remove and a rule's
// add again.
func tagMembershipScenario() []schemas.TagChange {
	d := func(day, hour int) int64 {
		return time.Date(2026, 11, day, hour, 0, 0, 0, time.UTC).UnixMilli()
	}
	return []schemas.TagChange{
		{Tenant: "t1", Profile: "p_a", Tag: "new", Op: "added", Cause: "default", Time: d(1, 9)},
		{Tenant: "t1", Profile: "p_b", Tag: "new", Op: "added", Cause: "default", Time: d(1, 10)},
		{Tenant: "t1", Profile: "p_c", Tag: "new", Op: "added", Cause: "default", Time: d(3, 8)},
		{Tenant: "t1", Profile: "p_b", Tag: "new", Op: "removed", Cause: "merge", Time: d(3, 9)},
		{Tenant: "t1", Profile: "p_a", Tag: "vip", Op: "added", Cause: "manual", Time: d(3, 23)},
		{Tenant: "t1", Profile: "p_a", Tag: "vip", Op: "removed", Cause: "manual", Time: d(5, 1)},
		{Tenant: "t1", Profile: "p_a", Tag: "vip", Op: "added", Cause: "rule:r1@2", Time: d(5, 2)},
		{Tenant: "t2", Profile: "p_z", Tag: "new", Op: "added", Cause: "default", Time: d(2, 0)},
	}
}

// insertTagChanges writes cs to tag_changes in one INSERT, as the sink
// would.
func insertTagChanges(t *testing.T, ctx context.Context, conn driver.Conn, db string, cs ...schemas.TagChange) {
	t.Helper()
	var rows TagChangeRows
	for i, c := range cs {
		rows.Add(&TagChangeRow{Tenant: c.Tenant, ProfileID: c.Profile, Tag: c.Tag, Op: c.Op, Cause: c.Cause,
			Time: DateTime(time.UnixMilli(c.Time)), TimeMS: c.Time, Offset: int64(i)})
	}
	if err := rows.Insert(ctx, conn, db); err != nil {
		t.Fatal(err)
	}
}

func TestTagMembershipView(t *testing.T) {
	conn, db := testDB(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	changes := tagMembershipScenario()
	insert := func(cs ...schemas.TagChange) {
		t.Helper()
		insertTagChanges(t, ctx, conn, db, cs...)
	}
	stopMerges(t, conn, db, tableTagChanges)
	insert(changes...)
	insert(changes[1], changes[3], changes[5]) // a replay, in a later batch
	if n := count(t, conn, "SELECT count() FROM "+db+".tag_changes"); n != uint64(len(changes)+3) {
		t.Fatalf("tag_changes holds %d raw rows, want %d", n, len(changes)+3)
	}
	r, _ := ReportByName("tags")
	run := func(since time.Time, tenant string) [][]string {
		t.Helper()
		res, err := RunReportFor(ctx, conn, db, r, since, tenant)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Join(res.Columns, ",") != "day,tenant,tag,members" {
			t.Fatalf("columns %v", res.Columns)
		}
		return res.Rows
	}
	all := [][]string{
		{"2026-11-01", "t1", "new", "2"},
		{"2026-11-02", "t2", "new", "1"},
		{"2026-11-03", "t1", "new", "2"}, // +p_c, -p_b (merge)
		{"2026-11-03", "t1", "vip", "1"},
		{"2026-11-05", "t1", "vip", "1"}, // removed and added again
	}
	if got := run(time.Time{}, ""); !reflect.DeepEqual(got, all) {
		t.Fatalf("report tags:\n got %v\nwant %v", got, all)
	}
	if got, want := run(time.Date(2026, 11, 3, 0, 0, 0, 0, time.UTC), "t1"), [][]string{all[2], all[3], all[4]}; !reflect.DeepEqual(got, want) {
		t.Fatalf("report tags --since 2026-11-03 --tenant t1:\n got %v\nwant %v", got, want)
	}
	if got := run(time.Time{}, "t'2"); len(got) != 0 {
		t.Fatalf("tenant t'2: %v", got)
	}
}

// The Grafana panel "Tag membership" (deploy/grafana/dashboards/reports.json)
// runs as Grafana would run it, its time macros replaced: one series per
// tenant and tag, members at the end of each day with a change, up to the
// range's end.
func TestTagMembershipGrafanaPanel(t *testing.T) {
	sql := reportsPanelSQL(t, "Tag membership", "rolodex.report_tag_membership_daily")
	conn, db := testDB(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	insertTagChanges(t, ctx, conn, db, tagMembershipScenario()...)
	q := panelQuery(sql, db, "2026-11-01 00:00:00", "2026-11-04 12:00:00")
	res, err := Query(ctx, conn, q)
	if err != nil {
		t.Fatal(err)
	}
	// In time order (the panel's ORDER BY); the series of one day in any
	// order. Up to 2026-11-04: the vip remove and add of the 5th are after it.
	if !slices.IsSortedFunc(res.Rows, func(a, b []string) int { return strings.Compare(a[0], b[0]) }) {
		t.Fatalf("not in time order: %v", res.Rows)
	}
	got := slices.Clone(res.Rows)
	slices.SortFunc(got, func(a, b []string) int { return strings.Compare(strings.Join(a, "|"), strings.Join(b, "|")) })
	want := [][]string{
		{"2026-11-01 00:00:00", "t1 new", "2"},
		{"2026-11-02 00:00:00", "t2 new", "1"},
		{"2026-11-03 00:00:00", "t1 new", "2"},
		{"2026-11-03 00:00:00", "t1 vip", "1"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s:\n got %v\nwant %v", q, res.Rows, want)
	}
}
