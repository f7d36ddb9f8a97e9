package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rolodex/rolodex/connectors/clickhouse"
	"github.com/rolodex/rolodex/connectors/clickhouse/clickhousetest"
	"github.com/rolodex/rolodex/internal/kafkaclient"
	"github.com/rolodex/rolodex/reference"
	"github.com/rolodex/rolodex/schemas"
)

// A rule tag in real time, the whole path: events posted to the HTTP
// ingest API, the identity stage, the tag stage with a rule read from
// rolodex.tag.rules, the sink into ClickHouse. Rule "hot",
// events("page.viewed", duration("8s")) >= 2, comes on for a profile with
// two views a second apart and goes away on its own when the older view
// leaves the window, with no new event: the removal record's time is the
// instant the view leaves (its time + 8 s, to the millisecond), written
// within a few seconds of it (the bound is 60 s). Version 2 of the
// rule (a one-hour window) puts the tag back on that profile, which got no
// new event (hot reload). A profile with one view never gets the tag.
// ClickHouse holds the three rule-caused changes in tag_changes with their
// causes, and the tag membership report counts the rule tag.
//
// The tag stage runs with its default Tick (1 s): the delay measured is a
// deployment's.
func TestRuleTagsInRealTime(t *testing.T) {
	const window = 8 * time.Second
	// How late after the instant the removal may be written: Tick (1 s)
	// plus the group's lag, with room for a loaded two-core machine. The
	// issue's bound is 60 s.
	const late = 10 * time.Second
	rule := schemas.TagRule{Tenant: "demo", ID: "hot", Tag: "hot", Enabled: true, Version: 1,
		Condition: fmt.Sprintf(`events("page.viewed", duration(%q)) >= 2`, window.String()),
		UpdatedAt: time.Now().UTC().Format(time.RFC3339)}
	s := startStack(t, stackConfig{Rules: []schemas.TagRule{rule}})
	start := time.Now().UTC()

	consumer, err := kafkaclient.NewClient(kafkaclient.Config{Brokers: s.brokers, ClientID: "e2e-tags-reader"},
		kgo.ConsumeTopics(schemas.TopicProfileTags))
	if err != nil {
		t.Fatal(err)
	}
	defer consumer.Close()
	type record struct {
		schemas.TagChange
		written time.Time // the record's Kafka timestamp
	}
	var seen []record
	taken := map[int]bool{}
	// await returns the first record not returned before that matches,
	// reading rolodex.profile.tags until deadline.
	poll := func(d time.Duration) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), d)
		f := consumer.PollFetches(ctx)
		cancel()
		f.EachRecord(func(kr *kgo.Record) {
			var ch schemas.TagChange
			if err := json.Unmarshal(kr.Value, &ch); err != nil {
				t.Fatalf("record %q on %s: %v", kr.Value, schemas.TopicProfileTags, err)
			}
			seen = append(seen, record{ch, kr.Timestamp})
		})
	}
	await := func(what string, deadline time.Time, match func(schemas.TagChange) bool) record {
		t.Helper()
		for {
			for i, r := range seen {
				if !taken[i] && match(r.TagChange) {
					taken[i] = true
					return r
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: no such record on %s by %s; records: %+v", what, schemas.TopicProfileTags, deadline.Format(time.RFC3339Nano), seen)
			}
			poll(max(10*time.Millisecond, min(500*time.Millisecond, time.Until(deadline))))
		}
	}

	model := reference.NewIdentityWith(reference.Options{})
	var accepted []*schemas.Event
	n := 0
	// postEvent posts one event of user id user, of type typ at tm, and
	// returns the profile it belongs to (the reference model's).
	postEvent := func(user, typ string, tm time.Time, props map[string]string) string {
		t.Helper()
		n++
		id := fmt.Sprintf("rt-%d", n)
		body := map[string]any{"id": id, "type": typ, "time": tm.Format(time.RFC3339Nano), "source": "web",
			"identifiers": map[string]string{"user_id": user}}
		if props != nil {
			body["properties"] = props
		}
		if code := s.post("demo", body); code != http.StatusAccepted {
			t.Fatalf("POST %s: %d", id, code)
		}
		v, err := s.norm.Identifier("user_id", user)
		if err != nil {
			t.Fatal(err)
		}
		e := &schemas.Event{Tenant: "demo", ID: id, Type: typ, Time: tm, Source: "web", Identifiers: []schemas.Identifier{{Type: "user_id", Value: v}}}
		if props != nil {
			e.Properties = map[string]string{}
			for k, v := range props {
				b, _ := json.Marshal(v)
				e.Properties[k] = string(b)
			}
		}
		model.Add(e)
		accepted = append(accepted, e)
		return model.Root(e.Key())
	}

	// Warm-up: a manual tag on another profile shows that ingest, the
	// identity stage and the tag stage all run (the groups' first joins
	// take seconds here), so the window below starts on a live pipeline.
	warm := postEvent("warm-1", schemas.EventTagAdded, time.Now().UTC().Truncate(time.Millisecond), map[string]string{"tag": "warm"})
	await("the warm-up's manual tag", time.Now().Add(120*time.Second), func(c schemas.TagChange) bool {
		return c.Profile == warm && c.Tag == "warm" && c.Op == schemas.TagAdded && c.Cause == schemas.TagSourceManual
	})

	// Two views a second apart (hot-1), one view (hot-2).
	t2 := time.Now().UTC().Truncate(time.Millisecond)
	t1 := t2.Add(-time.Second)
	hot := postEvent("hot-1", "page.viewed", t1, nil)
	if p := postEvent("hot-1", "page.viewed", t2, nil); p != hot {
		t.Fatalf("the two views of hot-1 are in profiles %s and %s", hot, p)
	}
	cold := postEvent("hot-2", "page.viewed", t2, nil)
	isHot := func(op string, version int64) func(schemas.TagChange) bool {
		return func(c schemas.TagChange) bool {
			return c.Tenant == "demo" && c.Profile == hot && c.Tag == "hot" && c.Op == op && c.Cause == schemas.RuleCause("hot", version)
		}
	}
	leaves := t1.Add(window) // the older view leaves the window
	on := await("tag on", leaves.Add(late), isHot(schemas.TagAdded, 1))
	// Evaluated at the snapshot's Kafka timestamp: after the views were
	// posted, before the older one left the window.
	if on.Time < t2.UnixMilli() || on.Time >= leaves.UnixMilli() {
		t.Fatalf("tag on at %s, want in [%s, %s)", time.UnixMilli(on.Time).UTC(), t2, leaves)
	}

	// No new event: the tag goes when the older view leaves the window.
	off := await("tag off", leaves.Add(60*time.Second), isHot(schemas.TagRemoved, 1))
	if off.Time != leaves.UnixMilli() {
		t.Fatalf("tag off at %s, want %s: the instant the view at %s leaves the %s window", time.UnixMilli(off.Time).UTC(), leaves, t1, window)
	}
	if delay := off.written.Sub(leaves); delay < 0 || delay > late {
		t.Fatalf("the removal at %s was written at %s (%s after), want within %s after", leaves, off.written, delay, late)
	} else {
		t.Logf("the tag went %s after its window passed (written at %s, record time %s)", delay, off.written.UTC().Format(time.RFC3339Nano), leaves.Format(time.RFC3339Nano))
	}

	// Hot reload: version 2, a one-hour window, holds again for hot-1,
	// which got no new event since.
	rule.Version, rule.Condition = 2, `events("page.viewed", duration("1h")) >= 2`
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	changed := time.Now().UTC().Truncate(time.Millisecond)
	err = produceRule(ctx, consumer, rule)
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	again := await("tag on again with version 2", changed.Add(60*time.Second), isHot(schemas.TagAdded, 2))
	if again.Time < changed.UnixMilli() || again.written.Sub(changed) > 60*time.Second {
		t.Fatalf("version 2's tag at %s, written at %s, want from %s, within 60 s", time.UnixMilli(again.Time).UTC(), again.written, changed)
	}
	t.Logf("version 2 reached the profile %s after the rule changed", again.written.Sub(changed))

	// ClickHouse: every table and report as the reference says, with hot-1
	// holding the rule tag; the rule-caused rows of tag_changes are the
	// three records, with their causes and times; the tag membership report
	// (rolodex report tags) counts hot-1.
	want := clickhousetest.NewWant(model, accepted, 0, start).WithRuleTags(map[string][]string{hot: {"hot"}})
	wctx, wcancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer wcancel()
	if diff := want.Await(wctx, s.conn, s.db); diff != "" {
		t.Fatalf("ClickHouse never matched the reference; last difference: %s", diff)
	}
	res, err := clickhouse.Query(wctx, s.conn, "SELECT profile_id, tag, op, cause, toString(time_ms) FROM "+s.db+
		".tag_changes FINAL WHERE tenant = 'demo' AND startsWith(cause, 'rule:') ORDER BY time_ms, op")
	if err != nil {
		t.Fatal(err)
	}
	wantRows := [][]string{}
	for _, r := range []record{on, off, again} {
		wantRows = append(wantRows, []string{r.Profile, r.Tag, r.Op, r.Cause, strconv.FormatInt(r.Time, 10)})
	}
	if !reflect.DeepEqual(res.Rows, wantRows) {
		t.Fatalf("tag_changes, rule causes:\n got %v\nwant %v", res.Rows, wantRows)
	}
	r, _ := clickhouse.ReportByName("tags")
	rep, err := clickhouse.RunReportFor(wctx, s.conn, s.db, r, time.Time{}, "demo")
	if err != nil {
		t.Fatal(err)
	}
	latest := map[string]string{} // tag -> members on its latest day
	for _, row := range rep.Rows {
		latest[row[2]] = row[3]
	}
	if w := map[string]string{"hot": "1", "warm": "1"}; !reflect.DeepEqual(latest, w) {
		t.Fatalf("report tags for demo, members on each tag's latest day: %v, want %v; rows %v", latest, w, rep.Rows)
	}

	// Nothing else was written: no record for hot-2, one of each above.
	poll(time.Second)
	for i, r := range seen {
		if !taken[i] {
			t.Errorf("unexpected record %+v (hot-1 is %s, hot-2 is %s)", r.TagChange, hot, cold)
		}
	}
	s.stop()
}
