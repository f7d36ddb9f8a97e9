package clickhouse

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rolodex/rolodex/schemas"
)

// exportNow is the export's clock in these tests: consents expiring before
// it read as expired.
var exportNow = time.Date(2026, 11, 10, 12, 0, 0, 0, time.UTC)

// statusSnapshots makes n profiles in two tenants with random status, as
// the identity stage publishes them: a first snapshot, for some a later
// one (one more event, the status changed: tags dropped or added, the
// blacklist lifted or set, consent changed), for some a merged_into record
// last. It returns every record in publishing order and the final record
// of each id.
func statusSnapshots(seed uint64, n int) (records []*schemas.Profile, final map[string]*schemas.Profile) {
	r := rand.New(rand.NewPCG(seed, 0x5747))
	final = map[string]*schemas.Profile{}
	purposes := []string{"email", "sms", "whatsapp"}
	statuses := []string{schemas.ConsentGranted, schemas.ConsentGranted, schemas.ConsentDenied, schemas.ConsentRevoked}
	snapshot := func(id, tenant string, events int64) *schemas.Profile {
		p := &schemas.Profile{
			ID: id, Tenant: tenant, EventCount: events, Counters: map[string]int64{"page.viewed": events}, MergedIDs: []string{},
			Identifiers: map[string][]string{schemas.IDEmail: {id + "@example.com"}, schemas.IDPhone: {"+5511" + id[2:]}},
			Traits:      map[string]json.RawMessage{"name": json.RawMessage(fmt.Sprintf(`"Person, \"%s\""`, id)), "score": json.RawMessage("42")},
			FirstSeen:   "2026-11-01T10:00:00Z", LastSeen: "2026-11-02T10:00:00.5Z",
			Consent: map[string]schemas.ConsentState{}, Channels: map[string][]string{"email": {id + "@example.com"}},
		}
		for _, tag := range wlTags {
			if r.IntN(2) == 0 {
				src := schemas.TagSourceManual
				if tag == "new" {
					src = schemas.TagSourceDefault
				}
				p.Tags = append(p.Tags, schemas.ProfileTag{Tag: tag, Source: src, Since: "2026-11-01T10:00:00Z"})
			}
		}
		if r.IntN(4) == 0 {
			p.Blacklisted = true
			p.Blacklist = &schemas.BlacklistState{Reason: "fraud; \"chargeback\""}
		}
		for _, purpose := range purposes {
			if r.IntN(3) == 0 {
				continue
			}
			c := schemas.ConsentState{Status: statuses[r.IntN(len(statuses))], Since: "2026-11-01T10:00:00Z"}
			switch r.IntN(3) {
			case 0: // expired before now
				c.ExpiresAt = exportNow.Add(-time.Duration(1+r.IntN(100)) * time.Hour).Format(time.RFC3339Nano)
				if c.Status == schemas.ConsentGranted && r.IntN(2) == 0 {
					c.Status, c.Expired = schemas.ConsentExpired, true // folded after the expiry
				}
			case 1: // expires after now
				c.ExpiresAt = exportNow.Add(time.Duration(1+r.IntN(100)) * time.Hour).Format(time.RFC3339Nano)
			}
			p.Consent[purpose] = c
		}
		if r.IntN(5) == 0 {
			p.InvalidIdentifiers = []schemas.InvalidIdentifier{{Type: schemas.IDPhone, Value: "+5511" + id[2:], Reason: "bounce"}}
		} else {
			p.Channels["sms"] = []string{"+5511" + id[2:]}
		}
		return p
	}
	for i := 0; i < n; i++ {
		id, tenant := fmt.Sprintf("p_%06d", i), "t1"
		if i%3 == 0 {
			tenant = "t2"
		}
		p := snapshot(id, tenant, 1)
		records = append(records, p)
		if r.IntN(3) == 0 {
			p = snapshot(id, tenant, 2)
			records = append(records, p)
		}
		if r.IntN(10) == 0 {
			p = &schemas.Profile{ID: id, Tenant: tenant, MergedInto: "p_zzz"}
			records = append(records, p)
		}
		final[id] = p
	}
	return records, final
}

// wantExport returns the ids of the final live records that pass f at
// exportNow, sorted: the filter's rules written plainly.
func wantExport(final map[string]*schemas.Profile, f ExportFilter) []string {
	var out []string
	for id, p := range final {
		if p.MergedInto != "" || (f.Tenant != "" && p.Tenant != f.Tenant) || (f.Tag != "" && !p.HasTag(f.Tag)) ||
			(f.Blacklisted != nil && p.Blacklisted != *f.Blacklisted) {
			continue
		}
		if f.Consent != "" {
			c, ok := p.Consent[f.Consent]
			granted := ok && (c.Status == schemas.ConsentGranted || c.Status == schemas.ConsentExpired)
			if !granted || (c.ExpiresAt != "" && !mustTime(c.ExpiresAt).After(exportNow)) {
				continue
			}
		}
		out = append(out, id)
	}
	sort.Strings(out)
	return out
}

func mustTime(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return t
}

// statusRows decodes records into ProfileRows, one per part of parts (each
// part one batch, as the sink would write it).
func statusRows(t testing.TB, records []*schemas.Profile, parts int) []*ProfileRows {
	t.Helper()
	var out []*ProfileRows
	for i := 0; i < parts; i++ {
		rows := &ProfileRows{}
		for j, p := range records[i*len(records)/parts : (i+1)*len(records)/parts] {
			v, err := json.Marshal(p)
			if err != nil {
				t.Fatal(err)
			}
			row, err := DecodeProfile(v, p.ID, exportNow, 0, int64(j))
			if err != nil {
				t.Fatal(err)
			}
			rows.Add(row)
		}
		out = append(out, rows)
	}
	return out
}

func exportFilters() []ExportFilter {
	yes, no := true, false
	return []ExportFilter{
		{},
		{Tenant: "t1"},
		{Tag: "vip"},
		{Tag: "new", Tenant: "t2"},
		{Blacklisted: &yes},
		{Blacklisted: &no, Tenant: "t1"},
		{Consent: "email"},
		{Consent: "whatsapp", Tag: "lead", Blacklisted: &no},
		{Tag: "nope"},
		{Tenant: "t'1"},
	}
}

// The export returns exactly the live profiles that pass the filter,
// through FINAL: the snapshots arrive last part first, each part twice,
// with background merges stopped, so that superseded versions (a tag since
// removed, a blacklist since lifted, an id since merged away) are still
// stored next to the current ones.
func TestExportProfilesFilters(t *testing.T) {
	conn, db := testDB(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	stopMerges(t, conn, db, tableProfiles)
	records, final := statusSnapshots(3, 600)
	parts := statusRows(t, records, 4)
	for i := len(parts) - 1; i >= 0; i-- {
		for range 2 {
			if err := parts[i].Insert(ctx, conn, db); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, f := range exportFilters() {
		name := fmt.Sprintf("%+v", f)
		if f.Blacklisted != nil {
			name = strings.Replace(name, fmt.Sprintf("%p", f.Blacklisted), fmt.Sprint(*f.Blacklisted), 1)
		}
		f.Now = exportNow
		want := wantExport(final, f)
		var got []string
		err := ExportProfiles(ctx, conn, db, f, func(p *ExportedProfile) error {
			got = append(got, p.ID)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		sort.Strings(got)
		if !slices.Equal(got, want) {
			t.Errorf("export %s: %d profiles, want %d\n got %v\nwant %v", name, len(got), len(want), head(got), head(want))
		}
		n, err := CountProfiles(ctx, conn, db, f)
		if err != nil {
			t.Fatal(err)
		}
		if n != uint64(len(want)) {
			t.Errorf("count %s: %d, want %d", name, n, len(want))
		}
		if len(want) == 0 && f.Tag != "nope" && f.Tenant != "t'1" {
			t.Errorf("export %s: the reference is empty; the test input is too small", name)
		}
	}
}

func head(s []string) []string { return s[:min(len(s), 8)] }

// Every field of an exported profile, as JSON and as CSV.
func TestExportProfileFields(t *testing.T) {
	conn, db := testDB(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	raw := `{"id":"p_a","tenant":"t1","identifiers":{"email":["a@x.com"],"phone":["+5511900000001"]},
		"traits":{"name":"Ana, \"A\"","age":42},"first_seen":"2026-11-01T10:00:00.123Z","last_seen":"2026-11-02T11:00:00Z",
		"event_count":3,"counters":{"page.viewed":3},"merged_ids":[],
		"tags":[{"tag":"vip","source":"manual"},{"tag":"new","source":"default"}],
		"blacklisted":true,"blacklist":{"reason":"fraud"},
		"consent":{"sms":{"status":"denied"},"email":{"status":"expired","expires_at":"2026-11-02T00:00:00Z","expired":true},
		           "whatsapp":{"status":"granted","expires_at":"2027-01-01T00:00:00Z"},"push":{"status":"granted","expires_at":"2026-11-10T00:00:00Z"}},
		"invalid_identifiers":[{"type":"phone","value":"+5511900000001","reason":"bounce"}],
		"channels":{"email":["a@x.com"]}}`
	row, err := DecodeProfile([]byte(raw), "p_a", exportNow, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	var rows ProfileRows
	rows.Add(row)
	if err := rows.Insert(ctx, conn, db); err != nil {
		t.Fatal(err)
	}
	var got []*ExportedProfile
	// At 2026-11-09 the push consent is still granted; the email one
	// expired on 2026-11-02 whenever the snapshot was folded.
	f := ExportFilter{Now: time.Date(2026, 11, 9, 0, 0, 0, 0, time.UTC)}
	if err := ExportProfiles(ctx, conn, db, f, func(p *ExportedProfile) error { got = append(got, p); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 {
		t.Fatalf("%d profiles", len(got))
	}
	js, _ := json.Marshal(got[0])
	want := `{"id":"p_a","tenant":"t1","identifiers":{"email":["a@x.com"],"phone":["+5511900000001"]},"traits":{"age":42,"name":"Ana, \"A\""},` +
		`"tags":[{"tag":"new","source":"default"},{"tag":"vip","source":"manual"}],"blacklisted":true,"blacklist_reason":"fraud",` +
		`"consent":{"email":{"status":"expired","expires_at":"2026-11-02T00:00:00Z"},"push":{"status":"granted","expires_at":"2026-11-10T00:00:00Z"},` +
		`"sms":{"status":"denied"},"whatsapp":{"status":"granted","expires_at":"2027-01-01T00:00:00Z"}},` +
		`"invalid_identifiers":[{"type":"phone","value":"+5511900000001"}],"channels":["email"],` +
		`"first_seen":"2026-11-01T10:00:00.123Z","last_seen":"2026-11-02T11:00:00Z","event_count":3}`
	if string(js) != want {
		t.Fatalf("json:\n got %s\nwant %s", js, want)
	}
	csvWant := []string{"p_a", "t1", `{"email":["a@x.com"],"phone":["+5511900000001"]}`, `{"age":42,"name":"Ana, \"A\""}`, "new;vip", "true", "fraud",
		"email=expired;push=granted;sms=denied;whatsapp=granted", "email", `[{"type":"phone","value":"+5511900000001"}]`,
		"2026-11-01T10:00:00.123Z", "2026-11-02T11:00:00Z", "3"}
	if rec := got[0].CSVRecord(); !reflect.DeepEqual(rec, csvWant) || len(rec) != len(ExportCSVHeader) {
		t.Fatalf("csv:\n got %q\nwant %q", rec, csvWant)
	}
	// A day later the push consent has expired too: no new snapshot needed.
	for _, tt := range []struct {
		now  time.Time
		want uint64
	}{{time.Date(2026, 11, 9, 0, 0, 0, 0, time.UTC), 1}, {time.Date(2026, 11, 10, 0, 0, 0, 0, time.UTC), 0}} {
		n, err := CountProfiles(ctx, conn, db, ExportFilter{Consent: "push", Now: tt.now})
		if err != nil {
			t.Fatal(err)
		}
		if n != tt.want {
			t.Errorf("consent push at %s: %d profiles, want %d", tt.now, n, tt.want)
		}
	}
}

// Through the sink: snapshots with status on rolodex.profiles land in the
// status columns, and the export reads them back as the reference wants.
func TestSinkWritesProfileStatus(t *testing.T) {
	conn, db := testDB(t)
	cluster := newCluster(t, 2)
	brokers := cluster.ListenAddrs()
	p := newProducer(t, brokers)
	records, final := statusSnapshots(21, 200)
	for _, pr := range records {
		v, err := json.Marshal(pr)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.cl.ProduceSync(context.Background(), &kgo.Record{Topic: schemas.TopicProfiles, Key: []byte(pr.ID), Value: v}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	cfg := testSinkConfig(t, brokers, db)
	_, stop := runSink(t, cfg)
	waitFor(t, 30*time.Second, "the sink to catch up", func() bool { return caughtUp(t, brokers, cfg.Group) })
	stop()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	got := map[string]*ExportedProfile{}
	if err := ExportProfiles(ctx, conn, db, ExportFilter{Now: exportNow}, func(e *ExportedProfile) error { got[e.ID] = e; return nil }); err != nil {
		t.Fatal(err)
	}
	if want := wantExport(final, ExportFilter{}); len(got) != len(want) {
		t.Fatalf("%d live profiles exported, want %d", len(got), len(want))
	}
	for id, e := range got {
		pr := final[id]
		var tags []string
		for _, tg := range pr.Tags {
			tags = append(tags, tg.Tag+"/"+tg.Source)
		}
		var gotTags []string
		for _, tg := range e.Tags {
			gotTags = append(gotTags, tg.Tag+"/"+tg.Source)
		}
		sort.Strings(tags)
		if !slices.Equal(gotTags, tags) || e.Blacklisted != pr.Blacklisted || len(e.Consent) != len(pr.Consent) ||
			len(e.InvalidIdentifiers) != len(pr.InvalidIdentifiers) || len(e.Channels) != len(pr.Channels) {
			t.Fatalf("%s: exported %+v, snapshot %+v", id, e, pr)
		}
		if pr.Blacklisted && e.BlacklistReason != pr.Blacklist.Reason {
			t.Fatalf("%s: blacklist reason %q, want %q", id, e.BlacklistReason, pr.Blacklist.Reason)
		}
		for purpose, c := range pr.Consent {
			status := c.Status
			if status == schemas.ConsentGranted && c.ExpiresAt != "" && !mustTime(c.ExpiresAt).After(exportNow) {
				status = schemas.ConsentExpired
			}
			if e.Consent[purpose].Status != status || (c.ExpiresAt != "" && !mustTime(e.Consent[purpose].ExpiresAt).Equal(mustTime(c.ExpiresAt))) {
				t.Fatalf("%s: consent %s %+v, snapshot %+v", id, purpose, e.Consent[purpose], c)
			}
		}
	}
}
