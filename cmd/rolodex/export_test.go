package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/rolodex/rolodex/connectors/clickhouse"
	"github.com/rolodex/rolodex/schemas"
)

// profileJSON is a profile snapshot as the identity stage publishes it:
// every third profile in tenant t2, every second tagged vip (every
// profile new), every fifth blacklisted, every fourth with email consent
// granted (every eighth of those expired), every seventh merged away.
func profileJSON(i int) (string, *schemas.Profile) {
	id, tenant := fmt.Sprintf("p_%06d", i), "t1"
	if i%3 == 0 {
		tenant = "t2"
	}
	if i%7 == 0 {
		return id, &schemas.Profile{ID: id, Tenant: tenant, MergedInto: "p_x"}
	}
	p := &schemas.Profile{
		ID: id, Tenant: tenant, Identifiers: map[string][]string{"email": {id + "@example.com"}},
		Traits:    map[string]json.RawMessage{"name": json.RawMessage(fmt.Sprintf(`"Person %d, \"quoted\""`, i))},
		FirstSeen: "2026-11-01T10:00:00Z", LastSeen: "2026-11-02T10:00:00Z", EventCount: 2, Counters: map[string]int64{"x": 2},
		MergedIDs: []string{}, Tags: []schemas.ProfileTag{{Tag: "new", Source: "default"}},
		Consent:     map[string]schemas.ConsentState{},
		Channels:    map[string][]string{"email": {id + "@example.com"}},
		Blacklisted: i%5 == 0,
	}
	if i%2 == 0 {
		p.Tags = append(p.Tags, schemas.ProfileTag{Tag: "vip", Source: "manual"})
	}
	if p.Blacklisted {
		p.Blacklist = &schemas.BlacklistState{Reason: "fraud"}
	}
	if i%4 == 0 {
		c := schemas.ConsentState{Status: "granted"}
		if i%8 == 0 {
			c.ExpiresAt = "2026-01-01T00:00:00Z" // long past
		}
		p.Consent["email"] = c
	}
	return id, p
}

// chTestDB migrates a database of the test's own on the ClickHouse server
// of $ROLODEX_CLICKHOUSE_ADDR (scripts/clickhouse start; ./scripts/test
// starts one) and fills it with n profiles (profileJSON) and a few tag
// changes; it is dropped at the end unless the test failed. Without the
// variable the test fails: it never skips.
func chTestDB(t *testing.T, n int) (addr, db string) {
	t.Helper()
	addr = os.Getenv(envClickHouseAddr)
	if addr == "" {
		t.Fatalf("%s is not set: this test needs a real ClickHouse server; run ./scripts/test, or "+
			"./scripts/clickhouse install && eval \"$(./scripts/clickhouse start /tmp/ch-dev)\"", envClickHouseAddr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	conn, err := clickhouse.Open(ctx, clickhouse.ConnConfig{Addr: addr})
	if err != nil {
		t.Fatal(err)
	}
	var b [6]byte
	rand.Read(b[:])
	db = "rolodex_cmdtest_" + hex.EncodeToString(b[:])
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("kept database %s on %s", db, addr)
		} else {
			conn.Exec(context.Background(), "DROP DATABASE IF EXISTS "+db)
		}
		conn.Close()
	})
	if err := clickhouse.Migrate(ctx, conn, db); err != nil {
		t.Fatal(err)
	}
	var rows clickhouse.ProfileRows
	for i := 0; i < n; i++ {
		id, p := profileJSON(i)
		v, _ := json.Marshal(p)
		row, err := clickhouse.DecodeProfile(v, id, time.Now(), 0, int64(i))
		if err != nil {
			t.Fatal(err)
		}
		rows.Add(row)
	}
	if err := rows.Insert(ctx, conn, db); err != nil {
		t.Fatal(err)
	}
	var tags clickhouse.TagChangeRows
	for i, c := range []string{
		`{"tenant":"t1","profile_id":"p_a","tag":"vip","op":"added","cause":"manual","time":1793527200000}`,  // 2026-11-01
		`{"tenant":"t1","profile_id":"p_b","tag":"vip","op":"added","cause":"manual","time":1793530800000}`,  // 2026-11-01
		`{"tenant":"t1","profile_id":"p_b","tag":"vip","op":"removed","cause":"merge","time":1793703600000}`, // 2026-11-03
		`{"tenant":"t2","profile_id":"p_c","tag":"vip","op":"added","cause":"manual","time":1793527200000}`,
		// A rule tag: on, off when its window passed, on for another
		// profile, back with the rule's version 2.
		`{"tenant":"t1","profile_id":"p_a","tag":"hot","op":"added","cause":"rule:hot@1","time":1793613600000}`,   // 2026-11-02 10:00
		`{"tenant":"t1","profile_id":"p_a","tag":"hot","op":"removed","cause":"rule:hot@1","time":1793613608000}`, // 2026-11-02 10:00:08
		`{"tenant":"t1","profile_id":"p_b","tag":"hot","op":"added","cause":"rule:hot@1","time":1793620800000}`,   // 2026-11-02 12:00
		`{"tenant":"t1","profile_id":"p_a","tag":"hot","op":"added","cause":"rule:hot@2","time":1793696400000}`,   // 2026-11-03 09:00
	} {
		row, err := clickhouse.DecodeTagChange([]byte(c), "", 0, int64(i))
		if err != nil {
			t.Fatal(err)
		}
		tags.Add(row)
	}
	if err := tags.Insert(ctx, conn, db); err != nil {
		t.Fatal(err)
	}
	// Message states as the lifecycle's table topic holds them
	// (TestReportFunnel): t1's m1 delivered and opened, m2 hard-bounced,
	// m3 refused (invalid recipient), all email on 2026-11-01; t2's m1
	// an SMS sent on 2026-11-02.
	var states clickhouse.MessageStateRows
	for i, m := range []string{
		`{"tn":"t1","m":"m1","st":"opened","c":"email","by":3,"h":[{"state":"draft","time":1793527200000,"event":"e1","how":"implied"},{"state":"sent","time":1793527200000,"event":"e1","how":"event"},{"state":"delivered","time":1793530800000,"event":"e2","how":"implied"},{"state":"opened","time":1793530800000,"event":"e2","how":"event"}]}`,
		`{"tn":"t1","m":"m2","st":"bounced","b":"hard","c":"email","by":2,"h":[{"state":"draft","time":1793527200000,"event":"e3","how":"implied"},{"state":"sent","time":1793527200000,"event":"e3","how":"event"},{"state":"bounced","time":1793530800000,"event":"e4","how":"event","bounce":"hard"}]}`,
		`{"tn":"t1","m":"m3","c":"email","by":1,"h":[{"state":"sent","time":1793527200000,"event":"e5","how":"refused","reason":"invalid_recipient"}]}`,
		`{"tn":"t2","m":"m1","st":"sent","c":"sms","by":1,"h":[{"state":"draft","time":1793613600000,"event":"e6","how":"implied"},{"state":"sent","time":1793613600000,"event":"e6","how":"event"}]}`,
	} {
		row, err := clickhouse.DecodeMessageState([]byte(m), "", 0, int64(i))
		if err != nil {
			t.Fatal(err)
		}
		states.Add(row)
	}
	if err := states.Insert(ctx, conn, db); err != nil {
		t.Fatal(err)
	}
	return addr, db
}

// wantExported returns the ids of the first n profiles that are live and
// pass the filter (tenant, tag, blacklisted "", "true" or "false", email
// consent), sorted.
func wantExported(n int, tenant, tag, blacklisted string, consent bool) []string {
	var out []string
	for i := 0; i < n; i++ {
		id, p := profileJSON(i)
		switch {
		case p.MergedInto != "", tenant != "" && p.Tenant != tenant, tag != "" && !p.HasTag(tag),
			blacklisted != "" && fmt.Sprint(p.Blacklisted) != blacklisted,
			consent && (p.Consent["email"].Status != "granted" || p.Consent["email"].ExpiresAt != ""):
			continue
		}
		out = append(out, id)
	}
	sort.Strings(out)
	return out
}

// rolodex profiles export, on a few thousand profiles: every filter, both
// formats, to a file and to stdout.
func TestProfilesExport(t *testing.T) {
	const n = 4000
	addr, db := chTestDB(t, n)
	dir := t.TempDir()
	tests := []struct {
		name                     string
		flags                    []string
		tenant, tag, blacklisted string
		consent                  bool
	}{
		{name: "all"},
		{name: "tenant", flags: []string{"--tenant", "t2"}, tenant: "t2"},
		{name: "tag", flags: []string{"--tag", "vip"}, tag: "vip"},
		{name: "blacklisted", flags: []string{"--blacklisted", "true"}, blacklisted: "true"},
		{name: "not blacklisted, tag, tenant", flags: []string{"--blacklisted", "false", "--tag", "vip", "--tenant", "t1"}, tenant: "t1", tag: "vip", blacklisted: "false"},
		{name: "consent", flags: []string{"--consent", "email"}, consent: true},
	}
	for _, tt := range tests {
		want := wantExported(n, tt.tenant, tt.tag, tt.blacklisted, tt.consent)
		if len(want) == 0 || (tt.name != "all" && len(want) >= len(wantExported(n, "", "", "", false))) {
			t.Fatalf("%s: %d profiles wanted: the filter must keep some and drop some", tt.name, len(want))
		}
		for _, format := range []string{"json", "csv"} {
			t.Run(tt.name+"/"+format, func(t *testing.T) {
				file := filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "_")+"."+format)
				args := append([]string{"profiles", "export", "--clickhouse", addr, "--database", db, "--format", format, "-o", file}, tt.flags...)
				var stdout, stderr bytes.Buffer
				if err := run(context.Background(), args, &stdout, &stderr); err != nil {
					t.Fatalf("%v: %v\n%s", args, err, stderr.String())
				}
				if stdout.Len() != 0 {
					t.Fatalf("stdout with -o: %q", stdout.String())
				}
				if !strings.Contains(stderr.String(), fmt.Sprintf("exported %d profiles to %s (%s)", len(want), file, format)) {
					t.Fatalf("stderr: %q", stderr.String())
				}
				data, err := os.ReadFile(file)
				if err != nil {
					t.Fatal(err)
				}
				var got []string
				switch format {
				case "json":
					sc := bufio.NewScanner(bytes.NewReader(data))
					for sc.Scan() {
						var p clickhouse.ExportedProfile
						if err := json.Unmarshal(sc.Bytes(), &p); err != nil {
							t.Fatalf("line %q: %v", sc.Text(), err)
						}
						got = append(got, p.ID)
						if !strings.HasPrefix(string(p.Traits["name"]), `"Person `) || p.Identifiers["email"][0] != p.ID+"@example.com" {
							t.Fatalf("profile %+v", p)
						}
					}
				case "csv":
					recs, err := csv.NewReader(bytes.NewReader(data)).ReadAll()
					if err != nil {
						t.Fatal(err)
					}
					if !slices.Equal(recs[0], clickhouse.ExportCSVHeader) {
						t.Fatalf("header %v", recs[0])
					}
					for _, r := range recs[1:] {
						got = append(got, r[0])
					}
				}
				sort.Strings(got)
				if !slices.Equal(got, want) {
					t.Fatalf("%d profiles exported, want %d", len(got), len(want))
				}
			})
		}
	}

	// To stdout, CSV: a header and one row per profile, with the columns
	// of the header.
	var stdout, stderr bytes.Buffer
	if err := run(context.Background(), []string{"profiles", "export", "--clickhouse", addr, "--database", db, "--format", "csv", "--tag", "vip", "--tenant", "t2"}, &stdout, &stderr); err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(&stdout).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if want := wantExported(n, "t2", "vip", "", false); len(recs) != len(want)+1 {
		t.Fatalf("%d lines, want a header and %d profiles", len(recs), len(want))
	}
	row := map[string]string{}
	for i, c := range recs[0] {
		row[c] = recs[1][i]
	}
	if row["tenant"] != "t2" || row["tags"] != "new;vip" || row["channels"] != "email" || row["event_count"] != "2" ||
		!strings.Contains(row["traits"], `\"quoted\"`) || (row["blacklisted"] != "true" && row["blacklisted"] != "false") {
		t.Fatalf("row %v", row)
	}
}

func TestProfilesExportUsage(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"profiles", "export"}, "--format"},
		{[]string{"profiles", "export", "--format", "xml"}, "want csv or json"},
		{[]string{"profiles", "export", "--format", "csv", "--blacklisted", "maybe"}, "--blacklisted"},
		{[]string{"profiles", "export", "--format", "csv", "extra"}, "unexpected argument"},
	} {
		err := run(context.Background(), tt.args, &bytes.Buffer{}, &bytes.Buffer{})
		if exitCode(err) != 2 || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%v: %v (exit %d), want a usage error about %s", tt.args, err, exitCode(err), tt.want)
		}
	}
	// A failed export leaves no file behind.
	file := filepath.Join(t.TempDir(), "out.csv")
	err := run(context.Background(), []string{"profiles", "export", "--clickhouse", closedAddr(t), "--format", "csv", "-o", file}, &bytes.Buffer{}, &bytes.Buffer{})
	if err == nil || exitCode(err) != 1 {
		t.Fatalf("export from a closed address: %v", err)
	}
	if _, err := os.Stat(file); !os.IsNotExist(err) {
		t.Fatalf("%s exists after a failed export: %v", file, err)
	}
}

// rolodex report tags: the running membership per tag, for a tenant, rule
// tags (cause rule:<id>@<version>) with manual ones.
func TestReportTags(t *testing.T) {
	addr, db := chTestDB(t, 10)
	var stdout, stderr bytes.Buffer
	if err := run(context.Background(), []string{"report", "tags", "--clickhouse", addr, "--database", db, "--tenant", "t1", "--format", "csv"}, &stdout, &stderr); err != nil {
		t.Fatalf("%v\n%s", err, stderr.String())
	}
	want := "day,tenant,tag,members\n2026-11-01,t1,vip,2\n2026-11-02,t1,hot,1\n2026-11-03,t1,hot,2\n2026-11-03,t1,vip,1\n"
	if stdout.String() != want {
		t.Fatalf("report tags:\n%s\nwant\n%s", stdout.String(), want)
	}
}

// chConn opens db on addr for a test, for a minute at most (closed when
// the test ends).
func chConn(t *testing.T, addr, db string) (context.Context, driver.Conn) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	conn, err := clickhouse.Open(ctx, clickhouse.ConnConfig{Addr: addr, Database: db})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return ctx, conn
}

// reportCase is a run of rolodex report: its flags, and its whole output.
type reportCase struct {
	flags []string
	want  string
}

// checkReport runs rolodex report name on db with each case's flags and
// fails unless it writes exactly the case's output.
func checkReport(t *testing.T, name, addr, db string, cases []reportCase) {
	t.Helper()
	for _, tt := range cases {
		var stdout, stderr bytes.Buffer
		args := append([]string{"report", name, "--clickhouse", addr, "--database", db}, tt.flags...)
		if err := run(context.Background(), args, &stdout, &stderr); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, stderr.String())
		}
		if stdout.String() != tt.want {
			t.Fatalf("%v:\n%s\nwant\n%s", args, stdout.String(), tt.want)
		}
	}
}

// rolodex report funnel: messages sent per day and channel, what became
// of them and the rates; a refused send is not counted.
func TestReportFunnel(t *testing.T) {
	addr, db := chTestDB(t, 10)
	checkReport(t, "funnel", addr, db, []reportCase{
		{[]string{"--tenant", "t1", "--format", "csv"}, "day,tenant,channel,sent,delivered,opened,clicked,bounced,bounced_hard,bounced_soft,spam,unsubscribed," +
			"delivery_rate,open_rate,click_rate,click_to_open_rate,bounce_rate,hard_bounce_rate,soft_bounce_rate,spam_rate,unsubscribe_rate\n" +
			"2026-11-01,t1,email,2,1,1,0,1,1,0,0,0,0.5,1,0,0,0.5,0.5,0,0,0\n"},
		{[]string{"--since", "2026-11-02", "--format", "json"}, `[
  {
    "day": "2026-11-02",
    "tenant": "t2",
    "channel": "sms",
    "sent": 1,
    "delivered": 0,
    "opened": 0,
    "clicked": 0,
    "bounced": 0,
    "bounced_hard": 0,
    "bounced_soft": 0,
    "spam": 0,
    "unsubscribed": 0,
    "delivery_rate": 0,
    "open_rate": 0,
    "click_rate": 0,
    "click_to_open_rate": 0,
    "bounce_rate": 0,
    "hard_bounce_rate": 0,
    "soft_bounce_rate": 0,
    "spam_rate": 0,
    "unsubscribe_rate": 0
  }
]
`},
	})
}
