package clickhouse

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rolodex/rolodex/schemas"
)

func TestDecodeProfile(t *testing.T) {
	ts := time.Date(2026, 11, 3, 10, 0, 0, 0, time.UTC)
	tests := []struct {
		name, value, key string
		want             *ProfileRow
		err              string
	}{
		{
			name: "live profile",
			key:  "p_a",
			value: `{"id":"p_a","tenant":"t1","identifiers":{"phone":["+5511900000001"],"email":["b@x.com","a@x.com"]},
				"traits":{"name":"Ana","age":42,"tags":["x","y"]},"first_seen":"2026-11-01T10:00:00.123Z","last_seen":"2026-11-02T11:00:00Z",
				"event_count":3,"counters":{"page.viewed":2,"form.submitted":1},"merged_ids":["p_c","p_b"],"recent":[],
				"tags":[{"tag":"vip","source":"manual","since":"2026-11-01T10:00:00Z","since_ms":1793527200000},{"tag":"new","source":"default","since":"2026-11-01T10:00:00Z","since_ms":1793527200000}],
				"removed_tags":[{"tag":"lead","source":"manual","since":"2026-11-01T10:00:00Z","since_ms":1793527200000}],
				"blacklisted":true,"blacklist":{"reason":"fraud","since":"2026-11-02T11:00:00Z","since_ms":1793617200000},
				"consent":{"sms":{"status":"denied","since":"2026-11-01T10:00:00Z","expired":false},
				           "email":{"status":"expired","since":"2026-11-01T10:00:00Z","expires_at":"2026-11-02T00:00:00.5Z","expired":true},
				           "whatsapp":{"status":"granted","since":"2026-11-01T10:00:00Z","expires_at":"2027-01-01T00:00:00Z","expired":false}},
				"invalid_identifiers":[{"type":"phone","value":"+5511900000001","reason":"bounce","since":"2026-11-01T10:00:00Z"},{"type":"email","value":"b@x.com","reason":"","since":"2026-11-01T10:00:00Z"}],
				"channels":{"email":["a@x.com"],"sms":[]}}`,
			want: &ProfileRow{
				Tenant: "t1", ProfileID: "p_a",
				IdentifierTypes: []string{"email", "email", "phone"}, IdentifierValues: []string{"a@x.com", "b@x.com", "+5511900000001"},
				TraitKeys: []string{"age", "name", "tags"}, TraitValues: []string{"42", `"Ana"`, `["x","y"]`},
				FirstSeen: time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC), FirstSeenMS: time.Date(2026, 11, 1, 10, 0, 0, 123e6, time.UTC).UnixMilli(),
				LastSeen: time.Date(2026, 11, 2, 11, 0, 0, 0, time.UTC), LastSeenMS: time.Date(2026, 11, 2, 11, 0, 0, 0, time.UTC).UnixMilli(),
				EventCount: 3, CounterTypes: []string{"form.submitted", "page.viewed"}, CounterValues: []uint64{1, 2},
				MergedIDs: []string{"p_b", "p_c"}, Members: 3, Version: 3 + 3 + 3, UpdatedAt: ts, Partition: 2, Offset: 7,
				Tags: []string{"new", "vip"}, TagSources: []string{"default", "manual"}, Blacklisted: 1, BlacklistReason: "fraud",
				// expired is stored granted, with its expiry: queries decide.
				ConsentPurposes: []string{"email", "sms", "whatsapp"}, ConsentStatuses: []string{"granted", "denied", "granted"},
				ConsentExpiresMS:       []int64{time.Date(2026, 11, 2, 0, 0, 0, 5e8, time.UTC).UnixMilli(), 0, time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli()},
				InvalidIdentifierTypes: []string{"email", "phone"}, InvalidIdentifierValues: []string{"b@x.com", "+5511900000001"},
				Channels: []string{"email"},
			},
		},
		{
			name:  "no events yet, id from the key",
			key:   "p_k",
			value: `{"tenant":"t1","identifiers":{"email":["k@x.com"]},"traits":{},"event_count":0,"counters":{},"merged_ids":[]}`,
			want: &ProfileRow{
				Tenant: "t1", ProfileID: "p_k", IdentifierTypes: []string{"email"}, IdentifierValues: []string{"k@x.com"},
				TraitKeys: []string{}, TraitValues: []string{}, FirstSeen: time.Unix(0, 0).UTC(), LastSeen: time.Unix(0, 0).UTC(),
				CounterTypes: []string{}, CounterValues: []uint64{}, MergedIDs: []string{}, Members: 1, Version: 2,
				UpdatedAt: ts, Partition: 2, Offset: 7,
			},
		},
		{
			name:  "merged away",
			key:   "p_z",
			value: `{"id":"p_z","tenant":"t1","merged_into":"p_a"}`,
			want: &ProfileRow{
				Tenant: "t1", ProfileID: "p_z", MergedInto: "p_a", IdentifierTypes: []string{}, IdentifierValues: []string{},
				TraitKeys: []string{}, TraitValues: []string{}, FirstSeen: time.Unix(0, 0).UTC(), LastSeen: time.Unix(0, 0).UTC(),
				CounterTypes: []string{}, CounterValues: []uint64{}, MergedIDs: []string{}, Version: MergedVersion,
				UpdatedAt: ts, Partition: 2, Offset: 7,
			},
		},
		{name: "not json", value: `p_a`, err: "profile"},
		{name: "no id", value: `{"tenant":"t1"}`, err: "no id"},
		{name: "bad time", key: "p_a", value: `{"id":"p_a","first_seen":"yesterday"}`, err: "first_seen"},
		{name: "bad consent expiry", key: "p_a", value: `{"id":"p_a","consent":{"email":{"status":"granted","expires_at":"soon"}}}`, err: "consent email"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DecodeProfile([]byte(tt.value), tt.key, ts, 2, 7)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err %v, want it to mention %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(normProfile(*got), normProfile(*tt.want)) {
				t.Fatalf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

// The event times a snapshot carries for the tag stage's rules
// (event_times) land in no column: the row of a snapshot with them is the
// row of the same snapshot without them.
func TestDecodeProfileLeavesEventTimesOut(t *testing.T) {
	id := schemas.Identifier{Type: schemas.IDEmail, Value: "ana@example.com"}
	n := &schemas.Node{Tenant: "t1", Identifier: id, Own: schemas.Contribution{Node: "p_a", Identifier: id}}
	for i, typ := range []string{"page.viewed", "page.viewed", "purchase.completed"} {
		n.Own.Add(&schemas.Event{Tenant: "t1", ID: fmt.Sprint("e", i), Type: typ, Source: "web", Time: time.Date(2026, 11, 1, i, 0, 0, 0, time.UTC)})
	}
	with := schemas.FoldWith("p_a", n, &schemas.FoldOptions{EventTimes: true})
	if len(with.EventTimes) != 2 {
		t.Fatalf("the snapshot has event times %v, want two types", with.EventTimes)
	}
	without := *with
	without.EventTimes = nil
	ts := time.Date(2026, 11, 3, 10, 0, 0, 0, time.UTC)
	var rows []*ProfileRow
	for _, p := range []*schemas.Profile{with, &without} {
		v, _ := json.Marshal(p)
		row, err := DecodeProfile(v, p.ID, ts, 0, 1)
		if err != nil {
			t.Fatal(err)
		}
		rows = append(rows, row)
	}
	if !reflect.DeepEqual(rows[0], rows[1]) {
		t.Fatalf("with event times the row is\n %+v\nwithout\n %+v", rows[0], rows[1])
	}
}

func TestDecodeMerge(t *testing.T) {
	m, err := DecodeMerge([]byte(`{"tenant":"t1","from":"p_b","into":"p_a","time":1793700000123}`), 1, 5)
	if err != nil {
		t.Fatal(err)
	}
	want := &MergeRow{Tenant: "t1", From: "p_b", Into: "p_a", Time: time.UnixMilli(1793700000000).UTC(), TimeMS: 1793700000123,
		Version: MergeVersion(1793700000123), Partition: 1, Offset: 5}
	if !reflect.DeepEqual(m, want) {
		t.Fatalf("got %+v, want %+v", m, want)
	}
	if MergeVersion(1000) <= MergeVersion(2000) {
		t.Fatal("an earlier merge must have the larger version")
	}
	for _, bad := range []string{`{}`, `{"from":"p_b"}`, `[]`} {
		if _, err := DecodeMerge([]byte(bad), 0, 0); err == nil {
			t.Errorf("%s: decoded", bad)
		}
	}
}

// The version argument of profiles.go, checked on the simulated identity
// stage: per profile id, every new snapshot has a larger version than the
// one before, and once merged away an id gets no snapshot again. Per node,
// the member count of the roots it belongs to strictly grows.
func TestProfileVersionsGrow(t *testing.T) {
	w := genWorkload(11, 4000, 1)
	last := map[string]*schemas.Profile{}
	nodeMembers := map[string]int{}
	nodeRoot := map[string]string{}
	for _, p := range w.ident().fresh {
		if prev, ok := last[p.ID]; ok {
			if prev.MergedInto != "" {
				t.Fatalf("%s: a snapshot after it merged away", p.ID)
			}
			if ProfileVersion(p) <= ProfileVersion(prev) {
				a, _ := json.Marshal(prev)
				b, _ := json.Marshal(p)
				t.Fatalf("%s: version %d after %d\nbefore %s\nafter  %s", p.ID, ProfileVersion(p), ProfileVersion(prev), a, b)
			}
		}
		last[p.ID] = p
		if p.MergedInto != "" {
			continue
		}
		for _, n := range append([]string{p.ID}, p.MergedIDs...) {
			m := 1 + len(p.MergedIDs)
			if root, ok := nodeRoot[n]; ok && root != p.ID && m <= nodeMembers[n] {
				t.Fatalf("node %s moved from %s (%d members) to %s with %d", n, root, nodeMembers[n], p.ID, m)
			}
			nodeRoot[n], nodeMembers[n] = p.ID, m
		}
	}
	merges := 0
	for _, p := range w.ident().fresh {
		if p.MergedInto != "" {
			merges++
		}
	}
	if merges < 50 {
		t.Fatalf("only %d merges in the workload; the test needs more", merges)
	}
}

// storedProfile is what checkIdentity compares of a row of profiles.
func storedProfile(r *ProfileRow) ProfileRow {
	c := *r
	c.UpdatedAt, c.Partition, c.Offset = time.Time{}, 0, 0
	return c
}

// checkIdentity compares profiles FINAL, profile_nodes FINAL,
// profile_merges FINAL and the profile ids of events_with_profile with the
// simulated identity stage of w.
func checkIdentity(t testing.TB, conn driver.Conn, db string, w *workload) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	id := w.ident()

	// profiles FINAL: the last record of every profile id.
	rows, err := conn.Query(ctx, "SELECT "+strings.Join(ProfileColumns, ", ")+" FROM "+db+".profiles FINAL")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]ProfileRow{}
	for rows.Next() {
		var r ProfileRow
		if err := rows.Scan(&r.Tenant, &r.ProfileID, &r.MergedInto, &r.IdentifierTypes, &r.IdentifierValues, &r.TraitKeys, &r.TraitValues,
			&r.FirstSeen, &r.FirstSeenMS, &r.LastSeen, &r.LastSeenMS, &r.EventCount, &r.CounterTypes, &r.CounterValues,
			&r.MergedIDs, &r.Members, &r.Version, &r.UpdatedAt, &r.Partition, &r.Offset,
			&r.Tags, &r.TagSources, &r.Blacklisted, &r.BlacklistReason, &r.ConsentPurposes, &r.ConsentStatuses, &r.ConsentExpiresMS,
			&r.InvalidIdentifierTypes, &r.InvalidIdentifierValues, &r.Channels); err != nil {
			t.Fatal(err)
		}
		r.FirstSeen, r.LastSeen = r.FirstSeen.UTC(), r.LastSeen.UTC()
		got[r.ProfileID] = storedProfile(&r)
	}
	rows.Close()
	if len(got) != len(id.finalProfiles) {
		t.Errorf("profiles FINAL has %d rows, want %d", len(got), len(id.finalProfiles))
	}
	bad, live := 0, 0
	for pid, p := range id.finalProfiles {
		v, _ := json.Marshal(p)
		want, err := DecodeProfile(v, pid, time.Time{}, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		if p.MergedInto == "" {
			live++
		}
		if g, ok := got[pid]; !ok || !reflect.DeepEqual(normProfile(g), normProfile(storedProfile(want))) {
			if bad++; bad <= 3 {
				t.Errorf("profiles FINAL, %s:\n got %+v\nwant %+v", pid, g, storedProfile(want))
			}
		}
	}
	if bad > 0 {
		t.Fatalf("profiles FINAL: %d of %d rows differ", bad, len(id.finalProfiles))
	}
	if live == len(id.finalProfiles) || live == 0 {
		t.Fatalf("%d live profiles of %d ids: the test wants both live and merged-away ids", live, len(id.finalProfiles))
	}

	// profile_nodes FINAL: every node's final profile.
	nodes := map[string]string{}
	rows, err = conn.Query(ctx, "SELECT node_id, profile_id FROM "+db+".profile_nodes FINAL")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var n, p string
		if err := rows.Scan(&n, &p); err != nil {
			t.Fatal(err)
		}
		nodes[n] = p
	}
	rows.Close()
	if !reflect.DeepEqual(nodes, id.rootOf) {
		t.Fatalf("profile_nodes FINAL: %d nodes, want %d; %s", len(nodes), len(id.rootOf), firstMapDiff(nodes, id.rootOf))
	}

	// events_with_profile: every event once, under its final profile.
	evProfiles := map[eventKey]string{}
	rows, err = conn.Query(ctx, "SELECT tenant, source, event_id, profile_id, profile_resolved FROM "+db+".events_with_profile")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var k eventKey
		var p string
		var resolved uint8
		if err := rows.Scan(&k.tenant, &k.source, &k.id, &p, &resolved); err != nil {
			t.Fatal(err)
		}
		if _, dup := evProfiles[k]; dup {
			t.Errorf("events_with_profile: %v twice", k)
		}
		if resolved != 1 {
			t.Errorf("events_with_profile: %v not resolved", k)
		}
		evProfiles[k] = p
	}
	rows.Close()
	wantEv := map[eventKey]string{}
	for k, ev := range finalEvents(w.events) {
		wantEv[k] = w.profileOf(ev)
	}
	if !reflect.DeepEqual(evProfiles, wantEv) {
		t.Fatalf("events_with_profile: %d events, want %d; %s", len(evProfiles), len(wantEv), firstMapDiff(evProfiles, wantEv))
	}

	// profile_merges FINAL: one row per merged-away id, its earliest copy.
	type merge struct {
		into string
		ms   int64
	}
	gotM, wantM := map[string]merge{}, map[string]merge{}
	rows, err = conn.Query(ctx, "SELECT from_id, into_id, time_ms FROM "+db+".profile_merges FINAL")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var from string
		var m merge
		if err := rows.Scan(&from, &m.into, &m.ms); err != nil {
			t.Fatal(err)
		}
		gotM[from] = m
	}
	rows.Close()
	for from, m := range id.firstMerges {
		wantM[from] = merge{m.Into, m.Time}
	}
	if !reflect.DeepEqual(gotM, wantM) {
		t.Fatalf("profile_merges FINAL: %d rows, want %d; %s", len(gotM), len(wantM), firstMapDiff(gotM, wantM))
	}
}

// normProfile makes nil and empty slices equal.
func normProfile(r ProfileRow) ProfileRow {
	for _, s := range []*[]string{&r.IdentifierTypes, &r.IdentifierValues, &r.TraitKeys, &r.TraitValues, &r.CounterTypes, &r.MergedIDs,
		&r.Tags, &r.TagSources, &r.ConsentPurposes, &r.ConsentStatuses, &r.InvalidIdentifierTypes, &r.InvalidIdentifierValues, &r.Channels} {
		if len(*s) == 0 {
			*s = nil
		}
	}
	if len(r.CounterValues) == 0 {
		r.CounterValues = nil
	}
	if len(r.ConsentExpiresMS) == 0 {
		r.ConsentExpiresMS = nil
	}
	return r
}

func firstMapDiff[K comparable, V comparable](got, want map[K]V) string {
	for k, w := range want {
		if g, ok := got[k]; !ok || g != w {
			return fmt.Sprintf("%v: got %v (present %v), want %v", k, g, ok, w)
		}
	}
	for k, g := range got {
		if _, ok := want[k]; !ok {
			return fmt.Sprintf("%v: got %v, not expected", k, g)
		}
	}
	return ""
}

// A merge re-points events: before it, two people are two profiles; after
// it, events_with_profile counts every event of both under the survivor,
// profiles FINAL shows the survivor and the merged-away id with
// merged_into, and the reports count one profile. The identity records are
// hand-built JSON, produced in an unkind order: the merged-away id's last
// record and the merge first, the survivor's snapshot after them, then a
// stale snapshot of the merged-away id and a replayed merge.
func TestMergeRepointsEvents(t *testing.T) {
	conn, db := openTestDB(t)
	cluster := newCluster(t, 2)
	brokers := cluster.ListenAddrs()
	p := newProducer(t, brokers)

	email := schemas.Identifier{Type: schemas.IDEmail, Value: "ana@example.com"}
	phone := schemas.Identifier{Type: schemas.IDPhone, Value: "+5511912345678"}
	a, b := schemas.NodeID("t1", email), schemas.NodeID("t1", phone)
	survivor, gone := min(a, b), max(a, b)
	day1 := time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC)
	day2 := day1.Add(24 * time.Hour)
	ev := func(id string, tm time.Time, ids ...schemas.Identifier) *schemas.Event {
		return &schemas.Event{Tenant: "t1", ID: id, Type: "page.viewed", Source: "web", Partner: "demo", Time: tm, ReceivedAt: tm, Identifiers: ids}
	}
	raw := func(topic, key, value string) {
		t.Helper()
		if err := p.cl.ProduceSync(context.Background(), &kgo.Record{Topic: topic, Key: []byte(key), Value: []byte(value)}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	snapshot := func(id string, events int, ids map[string][]string, merged ...string) string {
		idj, _ := json.Marshal(ids)
		mj, _ := json.Marshal(append([]string{}, merged...))
		return fmt.Sprintf(`{"id":%q,"tenant":"t1","identifiers":%s,"traits":{"name":"Ana"},"first_seen":"2026-11-01T10:00:00Z","last_seen":"2026-11-02T10:00:00Z","event_count":%d,"counters":{"page.viewed":%d},"merged_ids":%s,"recent":[]}`,
			id, idj, events, events, mj)
	}
	idsOf := func(n string) map[string][]string {
		if n == a {
			return map[string][]string{"email": {email.Value}}
		}
		return map[string][]string{"phone": {phone.Value}}
	}

	// Day 1: Ana by email; day 2: Ana by phone. Two profiles.
	p.events(t, []*schemas.Event{ev("e1", day1, email), ev("e2", day2, phone)})
	raw(schemas.TopicProfiles, a, snapshot(a, 1, idsOf(a)))
	raw(schemas.TopicProfiles, b, snapshot(b, 1, idsOf(b)))
	cfg := testSinkConfig(t, brokers, db)
	_, stop := runSink(t, cfg)
	waitFor(t, 30*time.Second, "the sink to catch up", func() bool { return caughtUp(t, brokers, cfg.Group) })
	before := map[string][][]string{
		"profiles":            {{"2026-11-01", "t1", "1", "1", "0"}, {"2026-11-02", "t1", "1", "1", "0"}},
		"events_with_profile": {{"e1", a}, {"e2", b}},
	}
	checkQuery(t, conn, "SELECT * FROM "+db+".report_profiles_daily ORDER BY day", before["profiles"])
	checkQuery(t, conn, "SELECT event_id, profile_id FROM "+db+".events_with_profile ORDER BY event_id", before["events_with_profile"])

	// Day 2 again: an event with both links them; the larger id merges
	// into the smaller.
	p.events(t, []*schemas.Event{ev("e3", day2.Add(time.Hour), email, phone)})
	merge := fmt.Sprintf(`{"tenant":"t1","from":%q,"into":%q,"time":%d}`, gone, survivor, day2.Add(time.Hour).UnixMilli())
	raw(schemas.TopicProfiles, gone, fmt.Sprintf(`{"id":%q,"tenant":"t1","merged_into":%q}`, gone, survivor))
	raw(schemas.TopicMerges, gone, merge)
	both := map[string][]string{"email": {email.Value}, "phone": {phone.Value}}
	raw(schemas.TopicProfiles, survivor, snapshot(survivor, 3, both, gone))
	raw(schemas.TopicProfiles, gone, snapshot(gone, 1, idsOf(gone)))                                                                                 // stale, late
	raw(schemas.TopicMerges, gone, fmt.Sprintf(`{"tenant":"t1","from":%q,"into":%q,"time":%d}`, gone, survivor, day2.Add(49*time.Hour).UnixMilli())) // replayed, later
	waitFor(t, 30*time.Second, "the sink to catch up", func() bool { return caughtUp(t, brokers, cfg.Group) })
	stop()

	checkQuery(t, conn, "SELECT event_id, profile_id FROM "+db+".events_with_profile ORDER BY event_id",
		[][]string{{"e1", survivor}, {"e2", survivor}, {"e3", survivor}})
	checkQuery(t, conn, "SELECT profile_id, merged_into, members, event_count, arrayStringConcat(merged_ids, ',') FROM "+db+".profiles FINAL ORDER BY merged_into",
		[][]string{{survivor, "", "2", "3", gone}, {gone, survivor, "0", "0", ""}})
	checkQuery(t, conn, "SELECT node_id, profile_id FROM "+db+".profile_nodes FINAL ORDER BY node_id",
		[][]string{{survivor, survivor}, {gone, survivor}})
	checkQuery(t, conn, "SELECT from_id, into_id, time_ms FROM "+db+".profile_merges FINAL",
		[][]string{{gone, survivor, fmt.Sprint(day2.Add(time.Hour).UnixMilli())}})
	checkQuery(t, conn, "SELECT * FROM "+db+".report_profiles_daily ORDER BY day",
		[][]string{{"2026-11-01", "t1", "1", "1", "0"}, {"2026-11-02", "t1", "1", "0", "1"}})
	checkQuery(t, conn, "SELECT * FROM "+db+".report_activity_daily ORDER BY day",
		[][]string{{"2026-11-01", "t1", "web", "page.viewed", "1", "1"}, {"2026-11-02", "t1", "web", "page.viewed", "2", "1"}})
	checkQuery(t, conn, "SELECT * FROM "+db+".report_merges_daily ORDER BY day", [][]string{{"2026-11-02", "t1", "1"}})
}

// checkQuery compares a query's rows, as text, with want.
func checkQuery(t testing.TB, conn driver.Conn, query string, want [][]string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := Query(ctx, conn, query)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(res.Rows, want) {
		t.Fatalf("%s:\n got %v\nwant %v", query, res.Rows, want)
	}
}

// The identity tables do not depend on the order rows arrive in: the
// identity records are inserted in parts, last part first (each part one
// INSERT, as the sink would write a batch), and every part twice; FINAL
// and the reports still show the final state.
func TestIdentityTablesIgnoreArrivalOrder(t *testing.T) {
	conn, db := testDB(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	w := genWorkload(5, 1500, 10)
	w.insert(t, ctx, conn, db)
	parts := 7
	for i := parts - 1; i >= 0; i-- {
		var ps ProfileRows
		nodes := &ProfileNodeRows{}
		var ms MergeRows
		lo, hi := i*len(w.ident().profiles)/parts, (i+1)*len(w.ident().profiles)/parts
		for j, p := range w.ident().profiles[lo:hi] {
			v, _ := json.Marshal(p)
			row, err := DecodeProfile(v, p.ID, time.Now(), 0, int64(lo+j))
			if err != nil {
				t.Fatal(err)
			}
			ps.Add(row)
			if !row.Merged() {
				nodes.Add(row)
			}
		}
		lo, hi = i*len(w.ident().merges)/parts, (i+1)*len(w.ident().merges)/parts
		for j, m := range w.ident().merges[lo:hi] {
			v, _ := json.Marshal(m)
			row, err := DecodeMerge(v, 0, int64(lo+j))
			if err != nil {
				t.Fatal(err)
			}
			ms.Add(row)
		}
		for range 2 {
			for _, insert := range []func(context.Context, driver.Conn, string) error{ps.Insert, nodes.Insert, ms.Insert} {
				if err := insert(ctx, conn, db); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	w.resolved = true
	for _, table := range []string{"profiles", "profile_nodes", "profile_merges"} {
		// Background merges may already have collapsed some copies.
		t.Logf("%s: %d rows stored, %d FINAL", table, count(t, conn, "SELECT count() FROM "+db+"."+table),
			count(t, conn, "SELECT count() FROM "+db+"."+table+" FINAL"))
	}
	checkIdentity(t, conn, db, w)
	checkReports(t, conn, db, w, "")
	checkReports(t, conn, db, w, "2026-11-03")
}
