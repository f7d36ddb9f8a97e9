package clickhouse

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rolodex/rolodex/internal/kafkaclient"
	"github.com/rolodex/rolodex/schemas"
)

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// testSinkConfig is a sink on brokers writing into db, with small batches,
// writing events over HTTP as users get it by default (onPath changes
// that).
func testSinkConfig(t testing.TB, brokers []string, db string) Config {
	return Config{
		Kafka:         kafkaclient.Config{Brokers: brokers},
		ClickHouse:    ConnConfig{Addr: serverAddr(t), HTTPAddr: serverHTTPAddr(t), Database: db},
		BatchRows:     700,
		BatchInterval: 100 * time.Millisecond,
		Logger:        quietLogger(),
	}
}

// runSink connects and runs a sink until the returned stop is called; stop
// cancels Run (the graceful path: the batch in hand is written and
// committed) and closes the sink.
func runSink(t testing.TB, cfg Config) (s *Sink, stop func()) {
	t.Helper()
	s, err := NewSink(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := s.Connect(ctx); err != nil {
		s.Close()
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("Run did not return within 30s of cancel")
		}
		s.Close()
	}
	t.Cleanup(stop)
	return s, stop
}

func TestSinkEndToEnd(t *testing.T) {
	for _, path := range insertPaths {
		t.Run(path.name, func(t *testing.T) { testSinkEndToEnd(t, path.http) })
	}
}

func testSinkEndToEnd(t *testing.T, http bool) {
	// Migrated here, not first by the sink (its Connect migrates again, a
	// no-op; TestMergeRepointsEvents has a sink migrate an empty database),
	// so that background merges of events are stopped before its first
	// insert: the raw row count below must not depend on whether
	// ClickHouse has collapsed the workload's resends yet.
	conn, db := testDB(t)
	stopMerges(t, conn, db, tableEvents)
	cluster := newCluster(t, 4)
	brokers := cluster.ListenAddrs()
	w := genWorkload(2, 3000, 60).withMessages(300)
	p := newProducer(t, brokers)
	p.events(t, w.events)
	p.deadLetters(t, w.deadLetters)
	p.identity(t, w)
	p.tagChunk(t, w, 0, 1)
	p.messageStates(t, w)
	p.raw(t, schemas.TopicEvents, "not avro", "\x00\x00\x00\x00\x02garbage")
	p.raw(t, schemas.TopicDeadLetter, "{}")
	p.raw(t, schemas.TopicProfiles, "not json", `{"tenant":"t1"}`)
	p.raw(t, schemas.TopicMerges, `{"tenant":"t1","from":"p_x"}`)
	p.raw(t, schemas.TopicProfileTags, "not json", `{"tenant":"t1","profile_id":"p_x","tag":"vip","op":"flipped"}`)

	reg := prometheus.NewRegistry()
	cfg := testSinkConfig(t, brokers, db)
	onPath(t, &cfg, http)
	cfg.Registerer = reg
	s, stop := runSink(t, cfg)
	// A SIGKILLed sink's partitions wait for its session to end:
	// kafkaclient's, not franz-go's 45 s.
	if got := s.cl.OptValue(kgo.SessionTimeout); got != kafkaclient.SessionTimeout {
		t.Errorf("the sink's group session is %v, want kafkaclient.SessionTimeout %v", got, kafkaclient.SessionTimeout)
	}

	waitFor(t, 30*time.Second, "every record in ClickHouse and committed", func() bool { return caughtUp(t, brokers, cfg.Group) })
	stop()

	// No crash: every record was written exactly once.
	if n := count(t, conn, "SELECT count() FROM "+db+".events"); n != uint64(len(w.events)) {
		t.Errorf("events holds %d raw rows, want %d (one per record)", n, len(w.events))
	}
	checkEvents(t, conn, db, w.events, p.eventsAt)
	checkDeadLetters(t, conn, db, w.deadLetters, p.deadAt)
	checkReports(t, conn, db, w, "")
	checkReports(t, conn, db, w, "2026-11-04")
	checkIdentity(t, conn, db, w)
	checkTagChanges(t, conn, db, w)
	checkMessageTables(t, conn, db, w)

	m := s.Metrics()
	for _, c := range []struct {
		name      string
		got, want float64
	}{
		{"rows written, events", testutil.ToFloat64(m.RowsWritten.WithLabelValues(tableEvents)), float64(len(w.events))},
		{"rows written, dead letters", testutil.ToFloat64(m.RowsWritten.WithLabelValues(tableDeadLetters)), float64(len(w.deadLetters))},
		{"undecodable, events", testutil.ToFloat64(m.Undecodable.WithLabelValues(schemas.TopicEvents)), 2},
		{"undecodable, dead letters", testutil.ToFloat64(m.Undecodable.WithLabelValues(schemas.TopicDeadLetter)), 1},
		{"undecodable, profiles", testutil.ToFloat64(m.Undecodable.WithLabelValues(schemas.TopicProfiles)), 2},
		{"undecodable, merges", testutil.ToFloat64(m.Undecodable.WithLabelValues(schemas.TopicMerges)), 1},
		{"undecodable, tag changes", testutil.ToFloat64(m.Undecodable.WithLabelValues(schemas.TopicProfileTags)), 2},
		{"retries", testutil.ToFloat64(m.Retries), 0},
	} {
		if c.got != c.want {
			t.Errorf("metric %s: %v, want %v", c.name, c.got, c.want)
		}
	}
	// Profiles and merges are deduplicated per batch, node rows written
	// once per member count: at least one row per distinct key, at most
	// one per record (node rows: per node of a record).
	nodeRows := 0
	for _, pr := range w.ident().profiles {
		nodeRows += 1 + len(pr.MergedIDs)
	}
	distinctTags := map[schemas.TagChange]bool{}
	for _, c := range w.tagChanges() {
		distinctTags[c] = true
	}
	for _, c := range []struct {
		table    string
		min, max int
	}{
		{tableProfiles, len(w.ident().finalProfiles), len(w.ident().profiles)},
		{tableProfileMerges, len(w.ident().firstMerges), len(w.ident().merges)},
		{tableProfileNodes, len(w.ident().rootOf), nodeRows},
		{tableTagChanges, len(distinctTags), len(w.tagChanges())},
	} {
		n := int(testutil.ToFloat64(m.RowsWritten.WithLabelValues(c.table)))
		t.Logf("%s: %d rows written (distinct keys %d, records %d)", c.table, n, c.min, c.max)
		if n < c.min || n > c.max {
			t.Errorf("%s: %d rows written, want %d to %d", c.table, n, c.min, c.max)
		}
	}
	if testutil.ToFloat64(m.Batches) < 2 {
		t.Errorf("%v batches, want several (BatchRows %d)", testutil.ToFloat64(m.Batches), cfg.BatchRows)
	}
	names, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range names {
		if !strings.HasPrefix(mf.GetName(), "rolodex_sink_") {
			t.Errorf("metric %s is not named rolodex_sink_*", mf.GetName())
		}
	}

	// Everything, undecodable records included, is committed.
	checkCommitted(t, brokers, cfg.Group)
}

// membersOwning counts the members of a stable group that own partitions
// of topic.
func membersOwning(t testing.TB, brokers []string, group, topic string) int {
	t.Helper()
	if group == "" {
		group = Group
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	groups, err := kadm.NewClient(cl).DescribeGroups(ctx, group)
	if err != nil {
		return 0
	}
	g, ok := groups[group]
	if !ok || g.Err != nil || g.State != "Stable" {
		return 0
	}
	n := 0
	for _, m := range g.Members {
		if c, ok := m.Assigned.AsConsumer(); ok {
			for _, tp := range c.Topics {
				if tp.Topic == topic && len(tp.Partitions) > 0 {
					n++
					break
				}
			}
		}
	}
	return n
}

// checkCommitted checks that the group committed every partition of every
// topic up to its end.
func checkCommitted(t testing.TB, brokers []string, group string) {
	t.Helper()
	if behind := uncommitted(t, brokers, group); len(behind) > 0 {
		t.Errorf("not committed to the end: %s", strings.Join(behind, "; "))
	}
}

// caughtUp reports whether the group committed every partition of every
// topic up to its end.
func caughtUp(t testing.TB, brokers []string, group string) bool {
	t.Helper()
	return len(uncommitted(t, brokers, group)) == 0
}

// uncommitted lists the partitions whose committed offset is short of the
// end (or why the offsets could not be read).
func uncommitted(t testing.TB, brokers []string, group string) []string {
	t.Helper()
	if group == "" {
		group = Group
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ends, err := adm.ListEndOffsets(ctx, Topics...)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return []string{"end offsets: " + err.Error()}
	}
	committed, err := adm.FetchOffsets(ctx, group)
	if err != nil {
		// Also before the group's first commit.
		return []string{"committed offsets: " + err.Error()}
	}
	var behind []string
	ends.Each(func(o kadm.ListedOffset) {
		c, ok := committed.Lookup(o.Topic, o.Partition)
		if o.Offset > 0 && (!ok || c.At != o.Offset) {
			behind = append(behind, fmt.Sprintf("%s/%d: committed %d, end %d", o.Topic, o.Partition, c.At, o.Offset))
		}
	})
	sort.Strings(behind)
	return behind
}

func TestSinkConfigValidate(t *testing.T) {
	ok := func() Config {
		return Config{Kafka: kafkaclient.Config{Brokers: []string{"127.0.0.1:9092"}}, ClickHouse: ConnConfig{Addr: "127.0.0.1:9000"}}
	}
	tests := []struct {
		name   string
		change func(*Config)
		want   string
	}{
		{"defaults", func(*Config) {}, ""},
		{"no brokers", func(c *Config) { c.Kafka.Brokers = nil }, "no brokers"},
		{"no clickhouse", func(c *Config) { c.ClickHouse.Addr = "" }, "no address"},
		{"clickhouse not host:port", func(c *Config) { c.ClickHouse.Addr = "clickhouse" }, "not host:port"},
		{"bad database", func(c *Config) { c.ClickHouse.Database = "x;y" }, "database name"},
		{"negative batch", func(c *Config) { c.BatchRows = -1 }, "BatchRows"},
		{"negative interval", func(c *Config) { c.BatchInterval = -time.Second }, "BatchInterval"},
		{"backoff above max", func(c *Config) { c.RetryBackoff = time.Minute }, "MaxRetryBackoff"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ok()
			tt.change(&c)
			_, err := NewSink(c)
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err %v, want it to mention %q", err, tt.want)
			}
		})
	}
}

// Two sinks share the group while events keep coming: a second instance
// joins mid-stream (rebalance), then the first leaves (rebalance again).
// Every event lands once, and both instances did part of the work.
func TestSinkRebalance(t *testing.T) {
	conn, db := testDB(t)
	cluster := newCluster(t, 8)
	brokers := cluster.ListenAddrs()
	w := genWorkload(6, 6000, 120)
	p := newProducer(t, brokers)
	p.deadLetters(t, w.deadLetters)
	chunk := len(w.events) / 6
	produce := func(i int) { p.events(t, w.events[i*chunk:min((i+1)*chunk, len(w.events))]) }
	if len(w.events)%6 != 0 {
		t.Fatal("workload size must divide into 6 chunks")
	}

	cfg := testSinkConfig(t, brokers, db)
	cfg.BatchRows = 300
	a, stopA := runSink(t, cfg)
	produce(0)
	produce(1)
	waitFor(t, 30*time.Second, "sink a to write", func() bool {
		return testutil.ToFloat64(a.Metrics().RowsWritten.WithLabelValues(tableEvents)) > 0
	})
	b, _ := runSink(t, cfg)
	// Records produced before the group gave b partitions of
	// rolodex.events would all go to a; wait for the rebalance.
	waitFor(t, 30*time.Second, "both sinks to own partitions of "+schemas.TopicEvents, func() bool {
		return membersOwning(t, brokers, cfg.Group, schemas.TopicEvents) == 2
	})
	for i := 2; i < 4; i++ {
		produce(i)
		time.Sleep(300 * time.Millisecond)
	}
	waitFor(t, 30*time.Second, "sink b to write", func() bool {
		return testutil.ToFloat64(b.Metrics().RowsWritten.WithLabelValues(tableEvents)) > 0
	})
	stopA()
	produce(4)
	produce(5)

	final := uint64(len(finalEvents(w.events)))
	waitFor(t, 30*time.Second, "every event and dead letter", func() bool {
		return count(t, conn, "SELECT count() FROM "+db+".events FINAL") >= final &&
			count(t, conn, "SELECT count() FROM "+db+".dead_letters FINAL") >= uint64(len(w.deadLetters))
	})
	wa := testutil.ToFloat64(a.Metrics().RowsWritten.WithLabelValues(tableEvents))
	wb := testutil.ToFloat64(b.Metrics().RowsWritten.WithLabelValues(tableEvents))
	t.Logf("sink a wrote %v event rows, sink b %v, for %d records", wa, wb, len(w.events))
	// With the commit before every rebalance, no record is written twice.
	if wa+wb != float64(len(w.events)) {
		t.Errorf("the sinks wrote %v event rows for %d records", wa+wb, len(w.events))
	}
	checkEvents(t, conn, db, w.events, p.eventsAt)
	checkDeadLetters(t, conn, db, w.deadLetters, p.deadAt)
	checkReports(t, conn, db, w, "")
}

// A second sink joins while events keep coming without a pause, so the
// first always has records to hold: the rebalance must still go through
// promptly (Run lets it through after every flush; an overlapped flush,
// tried in e04d8ca, needed franz-go's OnPartitionsCallbackBlocked signal
// for this), and no record is written twice.
func TestSinkRebalanceUnderLoad(t *testing.T) {
	conn, db := testDB(t)
	cluster := newCluster(t, 8)
	brokers := cluster.ListenAddrs()
	w := genWorkload(8, 30000, 0)
	p := newProducer(t, brokers)

	cfg := testSinkConfig(t, brokers, db)
	cfg.BatchRows = 200
	a, stopA := runSink(t, cfg)
	const chunk = 100
	produced := 0
	produce := func() {
		if produced < len(w.events) {
			p.events(t, w.events[produced:min(produced+chunk, len(w.events))])
			produced = min(produced+chunk, len(w.events))
			time.Sleep(10 * time.Millisecond)
		}
	}
	for testutil.ToFloat64(a.Metrics().RowsWritten.WithLabelValues(tableEvents)) == 0 {
		produce()
	}
	b, _ := runSink(t, cfg)
	joined := time.Now()
	for membersOwning(t, brokers, cfg.Group, schemas.TopicEvents) < 2 {
		if time.Since(joined) > 30*time.Second {
			t.Fatalf("the second sink got no partition of %s within 30s under load", schemas.TopicEvents)
		}
		produce()
	}
	t.Logf("rebalanced %s after the second sink started, %d of %d events produced", time.Since(joined).Round(time.Millisecond), produced, len(w.events))
	if produced == len(w.events) {
		t.Fatalf("the rebalance waited %s, until the load ended: a sink holding batches under load must let it through", time.Since(joined).Round(time.Millisecond))
	}
	for produced < len(w.events) {
		produce()
	}
	waitFor(t, 30*time.Second, "every event written and committed", func() bool { return caughtUp(t, brokers, cfg.Group) })
	stopA()
	wa := testutil.ToFloat64(a.Metrics().RowsWritten.WithLabelValues(tableEvents))
	wb := testutil.ToFloat64(b.Metrics().RowsWritten.WithLabelValues(tableEvents))
	t.Logf("sink a wrote %v event rows, sink b %v, for %d records", wa, wb, len(w.events))
	if wa+wb != float64(len(w.events)) || wb == 0 {
		t.Errorf("the sinks wrote %v + %v event rows for %d records", wa, wb, len(w.events))
	}
	checkEvents(t, conn, db, w.events, p.eventsAt)
}
