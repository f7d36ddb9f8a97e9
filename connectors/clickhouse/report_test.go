package clickhouse

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestResultWrite(t *testing.T) {
	res := &Result{
		Columns: []string{"day", "source", "events"},
		Types:   []string{"Date", "String", "UInt64"},
		Rows: [][]string{
			{"2026-11-01", "web", "12"},
			{"2026-11-02", "whatsapp, \"wa\"", "3"},
		},
	}
	tests := []struct {
		format string
		want   string
	}{
		{"table", "" +
			"day         source          events\n" +
			"---         ------          ------\n" +
			"2026-11-01  web                 12\n" +
			"2026-11-02  whatsapp, \"wa\"       3\n" +
			"(2 rows)\n"},
		{"csv", "day,source,events\n2026-11-01,web,12\n2026-11-02,\"whatsapp, \"\"wa\"\"\",3\n"},
		{"json", `[
  {
    "day": "2026-11-01",
    "source": "web",
    "events": 12
  },
  {
    "day": "2026-11-02",
    "source": "whatsapp, \"wa\"",
    "events": 3
  }
]
`},
	}
	for _, tt := range tests {
		t.Run(tt.format, func(t *testing.T) {
			var b bytes.Buffer
			if err := res.Write(&b, tt.format); err != nil {
				t.Fatal(err)
			}
			if b.String() != tt.want {
				t.Fatalf("got\n%s\nwant\n%s", b.String(), tt.want)
			}
		})
	}
	if err := res.Write(&bytes.Buffer{}, "xml"); err == nil || !strings.Contains(err.Error(), "unknown format") {
		t.Fatalf("format xml: %v", err)
	}
	var empty bytes.Buffer
	if err := (&Result{Columns: []string{"a"}}).Write(&empty, "json"); err != nil || strings.TrimSpace(empty.String()) != "[]" {
		t.Fatalf("empty json: %q, %v", empty.String(), err)
	}
}

// Numbers align right under their header, text left; one row is "(1 row)".
func TestResultWriteTableAlignment(t *testing.T) {
	res := &Result{
		Columns: []string{"tenant", "profiles_merged", "share", "note"},
		Types:   []string{"String", "Nullable(UInt64)", "Float64", "String"},
		Rows:    [][]string{{"demo", "7", "0.5", "São\tPaulo"}},
	}
	want := "" +
		"tenant  profiles_merged  share  note\n" +
		"------  ---------------  -----  ----\n" +
		"demo                  7    0.5  São Paulo\n" +
		"(1 row)\n"
	var b bytes.Buffer
	if err := res.Write(&b, "table"); err != nil {
		t.Fatal(err)
	}
	if b.String() != want {
		t.Fatalf("got\n%s\nwant\n%s", b.String(), want)
	}
	b.Reset()
	if err := (&Result{Columns: []string{"day"}, Types: []string{"Date"}}).Write(&b, "table"); err != nil || b.String() != "day\n---\n(0 rows)\n" {
		t.Fatalf("no rows: %q, %v", b.String(), err)
	}
}

func TestReportCatalogue(t *testing.T) {
	seen := map[string]bool{}
	for _, r := range Reports {
		if r.Name == "" || r.View == "" || r.OrderBy == "" || r.Doc == "" || seen[r.Name] {
			t.Errorf("report %+v: incomplete or repeated", r)
		}
		seen[r.Name] = true
		if got, ok := ReportByName(r.Name); !ok || got.View != r.View {
			t.Errorf("ReportByName(%q) = %+v, %v", r.Name, got, ok)
		}
	}
	if _, ok := ReportByName("nope"); ok {
		t.Error("unknown report found")
	}
}

// The reports read through the driver exactly what the views hold, in
// every format, on an empty database too.
func TestRunReport(t *testing.T) {
	conn, db := testDB(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, r := range Reports {
		res, err := RunReport(ctx, conn, db, r, time.Time{})
		if err != nil {
			t.Fatalf("%s: %v", r.Name, err)
		}
		if len(res.Rows) != 0 || len(res.Columns) == 0 || res.Columns[0] != "day" {
			t.Fatalf("%s on an empty database: %+v", r.Name, res)
		}
	}
	w := genWorkload(5, 400, 30)
	w.insert(t, ctx, conn, db)
	checkReports(t, conn, db, w, "")
	checkReports(t, conn, db, w, "2026-11-05")

	r, _ := ReportByName("activity")
	res, err := RunReport(ctx, conn, db, r, time.Date(2026, 11, 5, 0, 0, 0, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"day", "tenant", "source", "type", "events", "profiles"}
	if strings.Join(res.Columns, ",") != strings.Join(want, ",") {
		t.Fatalf("activity columns %v, want %v", res.Columns, want)
	}
	var b bytes.Buffer
	if err := res.Write(&b, "json"); err != nil {
		t.Fatal(err)
	}
	var rows []map[string]any
	if err := json.Unmarshal(b.Bytes(), &rows); err != nil {
		t.Fatal(err)
	}
	if len(rows) != len(res.Rows) || rows[0]["day"] != "2026-11-05" {
		t.Fatalf("json rows: %v", rows)
	}
	if _, ok := rows[0]["events"].(float64); !ok {
		t.Fatalf("events is %T in JSON, want a number", rows[0]["events"])
	}
}
