// Package clickhousetest compares what the ClickHouse sink wrote with the
// reference model (package reference): the tests that run the whole path
// into ClickHouse (e2e, system) share it. It is test support: only _test.go
// files import it.
package clickhousetest

import (
	"context"
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/rolodex/rolodex/connectors/clickhouse"
	"github.com/rolodex/rolodex/reference"
	"github.com/rolodex/rolodex/schemas"
)

// Want is what a Rolodex database must hold once the sink has caught up.
type Want struct {
	model       *reference.Identity
	events      map[[3]string]string        // tenant, source, id -> its profile
	profiles    map[string]*schemas.Profile // profile id -> its profile
	reports     reference.Reports
	deadLetters int
	since       time.Time
	ruleTags    map[string][]string // profile id -> the rule tags it holds
}

// NewWant says what the database must hold: the accepted events (each
// delivery; copies count once) all folded into model (merge protection
// off, so that the partition into profiles is a function of the events),
// deadLetters records on rolodex.deadletter, and merges made from the day
// of since on.
func NewWant(model *reference.Identity, events []*schemas.Event, deadLetters int, since time.Time) *Want {
	w := &Want{model: model, events: map[[3]string]string{}, profiles: model.Profiles(),
		reports: model.Reports(events), deadLetters: deadLetters, since: since}
	for _, e := range events {
		w.events[[3]string{e.Tenant, e.Source, e.ID}] = model.Root(e.Key())
	}
	return w
}

// WithRuleTags adds the rule tags the live profiles hold once the tag
// stage has caught up (profile id -> tags), and returns w. The reference
// model folds the status events only (manual and default tags); rule tags
// are a function of the rules and the clock as well, which the test
// controls, so it says what they are. They count in the tag membership
// report (tag_changes), not in the profiles table's tags (the identity
// stage writes that, and it does not read rules). A tag a profile holds
// both ways counts once. Rules whose tags are in an exclusive group with
// status tags are not modelled: a rule tag there can end a default tag.
func (w *Want) WithRuleTags(tags map[string][]string) *Want {
	w.ruleTags = tags
	return w
}

// Profiles returns the live profiles, by id.
func (w *Want) Profiles() map[string]*schemas.Profile { return w.profiles }

// Merges returns the nodes merged away into another, in all tenants.
func (w *Want) Merges() int {
	n := 0
	for _, m := range w.reports.Merges {
		n += m
	}
	return n
}

// Diff returns the first difference between database db and w, "" when
// there is none.
func (w *Want) Diff(ctx context.Context, conn driver.Conn, db string) string {
	query := func(q string) ([][]string, error) {
		res, err := clickhouse.Query(ctx, conn, q)
		if err != nil {
			return nil, err
		}
		return res.Rows, nil
	}

	// Every event once, under its profile.
	rows, err := query("SELECT tenant, source, event_id, profile_id, profile_resolved FROM " + db + ".events_with_profile")
	if err != nil {
		return err.Error()
	}
	got := map[[3]string]string{}
	for _, r := range rows {
		k := [3]string{r[0], r[1], r[2]}
		if _, dup := got[k]; dup {
			return fmt.Sprintf("event %v twice in events_with_profile", k)
		}
		if r[4] != "1" {
			return fmt.Sprintf("event %v: its node has no profile yet", k)
		}
		got[k] = r[3]
	}
	if len(got) != len(w.events) {
		return fmt.Sprintf("events_with_profile has %d events, want %d", len(got), len(w.events))
	}
	for k, want := range w.events {
		if got[k] != want {
			return fmt.Sprintf("event %v: profile %q, want %s", k, got[k], want)
		}
	}

	// profiles FINAL: every live profile with its members and events;
	// every other node that was ever a root, merged away.
	rows, err = query("SELECT profile_id, merged_into, arrayStringConcat(merged_ids, ','), event_count, tenant, " +
		"arrayStringConcat(tags, ','), arrayStringConcat(tag_sources, ','), toString(blacklisted), " +
		"arrayStringConcat(arrayMap((p, s) -> concat(p, '=', s), consent_purposes, consent_statuses), ','), arrayStringConcat(channels, ',') FROM " + db + ".profiles FINAL")
	if err != nil {
		return err.Error()
	}
	live := 0
	for _, r := range rows {
		id, into := r[0], r[1]
		root := w.model.Root(id)
		switch {
		case root == "":
			return fmt.Sprintf("profiles FINAL: unknown id %s", id)
		case id == root:
			live++
			p := w.profiles[id]
			if into != "" || r[2] != strings.Join(p.MergedIDs, ",") || r[3] != strconv.FormatInt(p.EventCount, 10) || r[4] != p.Tenant {
				return fmt.Sprintf("profiles FINAL, %s: %v, want members %v and %d events", id, r, p.MergedIDs, p.EventCount)
			}
			if st := statusColumns(p); !reflect.DeepEqual(r[5:], st) {
				return fmt.Sprintf("profiles FINAL, %s: status (tags, sources, blacklisted, consent, channels) %q, want %q", id, r[5:], st)
			}
		case into == "" || w.model.Root(into) != root:
			return fmt.Sprintf("profiles FINAL, %s: merged_into %q, want a node of %s", id, into, root)
		}
	}
	if live != len(w.profiles) {
		return fmt.Sprintf("profiles FINAL: %d live profiles, want %d", live, len(w.profiles))
	}

	// Tag membership: the latest day's members of every tag of every
	// tenant are the live profiles holding it, by status or by a rule
	// (tag_changes, through the sink, from the tag stage).
	for _, id := range schemas.SortedKeys(w.ruleTags) {
		if w.profiles[id] == nil {
			return fmt.Sprintf("the test gave rule tags %v of %s, which is not a live profile", w.ruleTags[id], id)
		}
	}
	rows, err = query("SELECT tenant, tag, toString(argMax(members, day)) FROM " + db + ".report_tag_membership_daily GROUP BY tenant, tag HAVING argMax(members, day) != 0 ORDER BY tenant, tag")
	if err != nil {
		return err.Error()
	}
	if want := w.tagMembers(); fmt.Sprint(rows) != fmt.Sprint(want) {
		return fmt.Sprintf("report tags (tenant, tag, members on the latest day): %v, want %v", rows, want)
	}

	// The reports.
	for name, want := range map[string][][]string{"activity": w.reports.Activity, "profiles": w.reports.Profiles} {
		r, _ := clickhouse.ReportByName(name)
		res, err := clickhouse.RunReport(ctx, conn, db, r, time.Time{})
		if err != nil {
			return err.Error()
		}
		reference.SortRows(res.Rows)
		if !reflect.DeepEqual(res.Rows, want) {
			return fmt.Sprintf("report %s: %d rows, want %d:\n got %v\nwant %v", name, len(res.Rows), len(want), res.Rows, want)
		}
	}
	// Merges happen as the identity stage runs: their days are those of
	// the test run.
	rows, err = query("SELECT tenant, toString(sum(merges)), toString(countIf(day < toDate('" + w.since.UTC().Format("2006-01-02") +
		"') OR day > today())) FROM " + db + ".report_merges_daily GROUP BY tenant ORDER BY tenant")
	if err != nil {
		return err.Error()
	}
	var want [][]string
	for _, tenant := range schemas.SortedKeys(w.reports.Merges) {
		if n := w.reports.Merges[tenant]; n > 0 {
			want = append(want, []string{tenant, strconv.Itoa(n), "0"})
		}
	}
	if !reflect.DeepEqual(rows, want) {
		return fmt.Sprintf("report merges (tenant, merges, days outside the run): %v, want %v", rows, want)
	}
	rows, err = query("SELECT toString(sum(dead_letters)) FROM " + db + ".report_dead_letters_daily")
	if err != nil {
		return err.Error()
	}
	if rows[0][0] != strconv.Itoa(w.deadLetters) {
		return fmt.Sprintf("report dead-letters: %s in all, want %d", rows[0][0], w.deadLetters)
	}
	return ""
}

// Await runs Diff every second until it finds no difference or ctx ends,
// and returns the last difference: "" when the database matched. A check
// under way when ctx ends runs to its end (30 s at most), so that the
// difference returned is the database's, not a cancelled query's.
func (w *Want) Await(ctx context.Context, conn driver.Conn, db string) string {
	for {
		qctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		diff := w.Diff(qctx, conn, db)
		cancel()
		if diff == "" {
			return ""
		}
		select {
		case <-ctx.Done():
			return diff
		case <-time.After(time.Second):
		}
	}
}

// statusColumns renders p's status as Diff reads it from profiles: tags
// and their sources, blacklisted, purpose=status (a granted consent past
// its expiry is stored as granted: queries decide expiry), channels.
func statusColumns(p *schemas.Profile) []string {
	var tags, sources, consent []string
	for _, t := range p.Tags {
		tags, sources = append(tags, t.Tag), append(sources, t.Source)
	}
	for _, k := range schemas.SortedKeys(p.Consent) {
		st := p.Consent[k].Status
		if st == schemas.ConsentExpired {
			st = schemas.ConsentGranted
		}
		consent = append(consent, k+"="+st)
	}
	bl := "0"
	if p.Blacklisted {
		bl = "1"
	}
	return []string{strings.Join(tags, ","), strings.Join(sources, ","), bl, strings.Join(consent, ","), strings.Join(schemas.SortedKeys(p.Channels), ",")}
}

// tagMembers is, per tenant and tag with members, how many live profiles
// hold the tag (by status or by a rule), as rows of (tenant, tag,
// members).
func (w *Want) tagMembers() [][]string {
	count := map[[2]string]int{}
	for id, p := range w.profiles {
		held := map[string]bool{}
		for _, t := range p.Tags {
			held[t.Tag] = true
		}
		for _, t := range w.ruleTags[id] {
			held[t] = true
		}
		for t := range held {
			count[[2]string{p.Tenant, t}]++
		}
	}
	var keys [][2]string
	for k := range count {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		return keys[i][0] < keys[j][0] || keys[i][0] == keys[j][0] && keys[i][1] < keys[j][1]
	})
	rows := [][]string{}
	for _, k := range keys {
		rows = append(rows, []string{k[0], k[1], strconv.Itoa(count[k])})
	}
	return rows
}
