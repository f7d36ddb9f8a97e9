package clickhouse

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// A Report is one analyst report: a view created by the migrations.
type Report struct {
	// Name is what "rolodex report NAME" takes.
	Name string
	// View is the view in the Rolodex database.
	View string
	// OrderBy orders the printed rows.
	OrderBy string
	// Doc says what one row is.
	Doc string
	// Partner and Topic: the view has a partner (a topic) column that
	// ReportFilter.Partner (Topic) selects on.
	Partner, Topic bool
}

// Reports lists every report, in the order "rolodex report" lists them.
// Every report has a day column that --since filters on.
var Reports = []Report{
	{
		Name: "activity", View: "report_activity_daily", OrderBy: "day, tenant, source, type",
		Doc: "events and distinct profiles per day, tenant, source (channel) and event type",
	},
	{
		Name: "profiles", View: "report_profiles_daily", OrderBy: "day, tenant",
		Doc: "active, new and returning profiles per day and tenant",
	},
	{
		Name: "merges", View: "report_merges_daily", OrderBy: "day, tenant",
		Doc: "profiles merged into another per day and tenant",
	},
	{
		Name: "dead-letters", View: "report_dead_letters_daily", OrderBy: "day, tenant, partner, reason, source_kind", Partner: true,
		Doc: "rejected records per day, tenant, partner, reason and source kind",
	},
	{
		Name: "tags", View: "report_tag_membership_daily", OrderBy: "day, tenant, tag",
		Doc: "profiles holding each tag at the end of each day with a change, per tenant",
	},
	{
		Name: "funnel", View: "report_message_funnel", OrderBy: "day, tenant, channel",
		Doc: "messages sent per day (of the first send), tenant and channel: how many were delivered, opened, clicked, bounced (hard, soft), reported as spam, unsubscribed, and the rates",
	},
	{
		Name: "leads", View: "report_leads_by_partner", OrderBy: "day, tenant, partner", Partner: true,
		Doc: "leads routed per day (UTC, of the routing decision), tenant and partner: how many were delivered, failed delivery, accepted, rejected, re-routed away, missed their SLA, and the median time to accept",
	},
	{
		Name: "deliveries", View: "report_deliveries", OrderBy: "day, tenant, partner, topic", Partner: true, Topic: true,
		Doc: "fan-out deliveries ended per day (UTC, of the delivery's last report), tenant, partner and topic: how many were delivered, retried, failed (permanent, gone), exhausted, dropped, and the p50 and p99 latency (ms) of the request that delivered",
	},
}

// ReportByName finds a report.
func ReportByName(name string) (Report, bool) {
	for _, r := range Reports {
		if r.Name == name {
			return r, true
		}
	}
	return Report{}, false
}

// ReportNames lists the report names.
func ReportNames() []string {
	out := make([]string, len(Reports))
	for i, r := range Reports {
		out[i] = r.Name
	}
	return out
}

// Result is a report's rows as text, in the column order of the view.
type Result struct {
	Columns []string
	// Types are the ClickHouse types of the columns (e.g. "Date", "UInt64").
	Types []string
	Rows  [][]string
}

// RunReport reads report r from database db: every row with day >= since
// (no filter when since is zero), ordered by the report's OrderBy.
func RunReport(ctx context.Context, conn driver.Conn, db string, r Report, since time.Time) (*Result, error) {
	return RunReportFor(ctx, conn, db, r, since, "")
}

// RunReportFor is RunReport for one tenant (every tenant when tenant is
// empty); every report has a tenant column.
func RunReportFor(ctx context.Context, conn driver.Conn, db string, r Report, since time.Time, tenant string) (*Result, error) {
	return RunReportFilter(ctx, conn, db, r, ReportFilter{Since: since, Tenant: tenant})
}

// ReportFilter selects the rows of a report: the days from Since to Until
// (both included; a zero time is no bound, only the date counts) of one
// tenant (empty: every tenant), one partner and one topic (empty: every
// one; only for a report with that column, Report.Partner and Topic).
type ReportFilter struct {
	Since, Until   time.Time
	Tenant         string
	Partner, Topic string
}

// Check reports a filter report r cannot apply.
func (f ReportFilter) Check(r Report) error {
	if f.Partner != "" && !r.Partner {
		return fmt.Errorf("report %s has no partner column", r.Name)
	}
	if f.Topic != "" && !r.Topic {
		return fmt.Errorf("report %s has no topic column", r.Name)
	}
	return nil
}

// RunReportFilter reads report r from database db: the rows f selects,
// ordered by the report's OrderBy.
func RunReportFilter(ctx context.Context, conn driver.Conn, db string, r Report, f ReportFilter) (*Result, error) {
	if err := validDatabase(db); err != nil {
		return nil, err
	}
	if err := f.Check(r); err != nil {
		return nil, err
	}
	return Query(ctx, conn, reportQueryFilter(db, r, f))
}

// reportQuery is the SELECT of RunReport. The date is written into the
// text (it is formatted here, never taken from input as is), so the same
// text runs anywhere: the chDB test tier runs it on current ClickHouse.
func reportQuery(db string, r Report, since time.Time) string {
	return reportQueryFor(db, r, since, "")
}

// reportQueryFor is the SELECT of RunReportFor; the tenant is written as a
// quoted string literal.
func reportQueryFor(db string, r Report, since time.Time, tenant string) string {
	return reportQueryFilter(db, r, ReportFilter{Since: since, Tenant: tenant})
}

// reportQueryFilter is the SELECT of RunReportFilter.
func reportQueryFilter(db string, r Report, f ReportFilter) string {
	q := "SELECT * FROM " + db + "." + r.View
	var where []string
	if !f.Since.IsZero() {
		where = append(where, "day >= toDate('"+f.Since.UTC().Format("2006-01-02")+"')")
	}
	if !f.Until.IsZero() {
		where = append(where, "day <= toDate('"+f.Until.UTC().Format("2006-01-02")+"')")
	}
	if f.Tenant != "" {
		where = append(where, "tenant = "+quoteString(f.Tenant))
	}
	if f.Partner != "" {
		where = append(where, "partner = "+quoteString(f.Partner))
	}
	if f.Topic != "" {
		where = append(where, "topic = "+quoteString(f.Topic))
	}
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	return q + " ORDER BY " + r.OrderBy
}

// quoteString writes s as a ClickHouse string literal: in single quotes,
// with backslashes and single quotes escaped by a backslash.
func quoteString(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}

// Query runs any SELECT and returns its rows as text.
func Query(ctx context.Context, conn driver.Conn, query string, args ...any) (*Result, error) {
	rows, err := conn.Query(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("clickhouse: query: %w", err)
	}
	defer rows.Close()
	res := &Result{Columns: rows.Columns()}
	cts := rows.ColumnTypes()
	dest := make([]any, len(cts))
	for i, ct := range cts {
		res.Types = append(res.Types, ct.DatabaseTypeName())
		dest[i] = reflect.New(ct.ScanType()).Interface()
	}
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			return nil, fmt.Errorf("clickhouse: query: scan: %w", err)
		}
		row := make([]string, len(dest))
		for i, d := range dest {
			row[i] = text(reflect.ValueOf(d).Elem().Interface(), res.Types[i])
		}
		res.Rows = append(res.Rows, row)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("clickhouse: query: %w", err)
	}
	return res, nil
}

// text renders one value the way clickhouse-client would.
func text(v any, typ string) string {
	switch x := v.(type) {
	case time.Time:
		if strings.HasPrefix(typ, "Date") && !strings.HasPrefix(typ, "DateTime") {
			return x.Format("2006-01-02")
		}
		return x.UTC().Format("2006-01-02 15:04:05")
	case string:
		return x
	case []byte:
		return string(x)
	case nil:
		return "NULL"
	}
	rv := reflect.ValueOf(v)
	if rv.Kind() == reflect.Pointer {
		if rv.IsNil() {
			return "NULL"
		}
		return text(rv.Elem().Interface(), strings.TrimSuffix(strings.TrimPrefix(typ, "Nullable("), ")"))
	}
	return fmt.Sprint(v)
}

// Formats lists what Write takes.
var Formats = []string{"table", "csv", "json"}

// Write prints the result as an aligned table, as CSV with a header line,
// or as JSON (an array of objects; numeric columns are JSON numbers).
func (r *Result) Write(w io.Writer, format string) error {
	switch format {
	case "table", "":
		return r.writeTable(w)
	case "csv":
		cw := csv.NewWriter(w)
		if err := cw.Write(r.Columns); err != nil {
			return err
		}
		if err := cw.WriteAll(r.Rows); err != nil {
			return err
		}
		return cw.Error()
	case "json":
		return r.writeJSON(w)
	}
	return fmt.Errorf("report: unknown format %q (known: %s)", format, strings.Join(Formats, ", "))
}

// writeTable prints aligned columns, numeric ones aligned right, and the
// row count.
func (r *Result) writeTable(w io.Writer) error {
	clean := strings.NewReplacer("\t", " ", "\n", " ")
	lines := make([][]string, 0, len(r.Rows)+2)
	dashes := make([]string, len(r.Columns))
	for i, c := range r.Columns {
		dashes[i] = strings.Repeat("-", utf8.RuneCountInString(c))
	}
	lines = append(lines, r.Columns, dashes)
	for _, row := range r.Rows {
		cells := make([]string, len(row))
		for i, c := range row {
			cells[i] = clean.Replace(c)
		}
		lines = append(lines, cells)
	}
	width := make([]int, len(r.Columns))
	for _, l := range lines {
		for i, c := range l {
			if i < len(width) {
				width[i] = max(width[i], utf8.RuneCountInString(c))
			}
		}
	}
	var b strings.Builder
	for _, l := range lines {
		for i, c := range l {
			if i > 0 {
				b.WriteString("  ")
			}
			pad := ""
			if i < len(width) {
				pad = strings.Repeat(" ", width[i]-utf8.RuneCountInString(c))
			}
			switch {
			case i < len(r.Types) && isNumeric(r.Types[i]):
				b.WriteString(pad + c)
			case i < len(l)-1:
				b.WriteString(c + pad)
			default:
				b.WriteString(c) // no trailing blanks
			}
		}
		b.WriteByte('\n')
	}
	unit := "rows"
	if len(r.Rows) == 1 {
		unit = "row"
	}
	fmt.Fprintf(&b, "(%d %s)\n", len(r.Rows), unit)
	_, err := io.WriteString(w, b.String())
	return err
}

func (r *Result) writeJSON(w io.Writer) error {
	out := make([]json.RawMessage, 0, len(r.Rows))
	for _, row := range r.Rows {
		var b strings.Builder
		b.WriteByte('{')
		for i, c := range row {
			if i > 0 {
				b.WriteByte(',')
			}
			k, _ := json.Marshal(r.Columns[i])
			b.Write(k)
			b.WriteByte(':')
			if i < len(r.Types) && isNumeric(r.Types[i]) {
				if _, err := strconv.ParseFloat(c, 64); err == nil {
					b.WriteString(c)
					continue
				}
			}
			v, _ := json.Marshal(c)
			b.Write(v)
		}
		b.WriteByte('}')
		out = append(out, json.RawMessage(b.String()))
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

func isNumeric(typ string) bool {
	typ = strings.TrimSuffix(strings.TrimPrefix(typ, "Nullable("), ")")
	return strings.HasPrefix(typ, "UInt") || strings.HasPrefix(typ, "Int") || strings.HasPrefix(typ, "Float") || strings.HasPrefix(typ, "Decimal")
}
