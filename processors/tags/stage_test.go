package tags

import (
	"context"
	"encoding/json"
	"io"
	"log"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lovoo/goka"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rolodex/rolodex/internal/kafkaclient"
	"github.com/rolodex/rolodex/schemas"
)

// The tag stage on Kafka (kfake over TCP), on a controllable clock: a rule
// tag comes with a snapshot, goes away on its own when its window passes
// (no new snapshot: the scheduler's tick), and follows a changed and a
// deleted rule on a profile that gets no new event (hot reload), each
// record with its rule's cause and version.
func TestRuleTagsFollowTimeOnKafka(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, schemas.TopicProfiles))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	brokers := c.ListenAddrs()
	cl, err := kafkaclient.NewClient(kafkaclient.Config{Brokers: brokers})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := EnsureTopics(ctx, cl, 1); err != nil {
		t.Fatal(err)
	}
	prod, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.RecordPartitioner(kafkaclient.Partitioner()), kgo.ProducerLinger(0))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	produce := func(topic, key string, v any, ts time.Time) {
		t.Helper()
		b, _ := json.Marshal(v)
		if err := prod.ProduceSync(ctx, &kgo.Record{Topic: topic, Key: []byte(key), Value: b, Timestamp: ts}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	base := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	var clock atomic.Int64
	clock.Store(base.UnixMilli())
	rule := schemas.TagRule{Tenant: "t", ID: "hot", Tag: "hot", Condition: `events("a", duration("1h")) >= 2`, Enabled: true, Version: 1}
	produce(schemas.TopicTagRules, schemas.RuleKey("t", "hot"), rule, base)

	p, err := New(Config{Brokers: brokers, StorageDir: t.TempDir(), Tick: 20 * time.Millisecond,
		Now:    func() time.Time { return time.UnixMilli(clock.Load()) },
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, goka.WithLogger(log.New(io.Discard, "", 0)))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	defer func() { cancel(); <-done }()

	ms := func(d time.Duration) int64 { return base.Add(d).UnixMilli() }
	snap := func(id string, times ...int64) *schemas.Profile {
		return &schemas.Profile{ID: id, Tenant: "t", EventTimes: map[string][]int64{"a": times}}
	}
	// p_1: two views 10 and 20 minutes ago; p_2: one.
	produce(schemas.TopicProfiles, "p_1", snap("p_1", ms(-10*time.Minute), ms(-20*time.Minute)), base)
	produce(schemas.TopicProfiles, "p_2", snap("p_2", ms(-5*time.Minute)), base)

	var seen []schemas.TagChange
	consumer, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(schemas.TopicProfileTags))
	if err != nil {
		t.Fatal(err)
	}
	defer consumer.Close()
	expect := func(what string, want ...schemas.TagChange) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for len(seen) < len(want) && time.Now().Before(deadline) {
			pctx, pcancel := context.WithTimeout(ctx, 500*time.Millisecond)
			f := consumer.PollFetches(pctx)
			pcancel()
			f.EachRecord(func(r *kgo.Record) {
				var ch schemas.TagChange
				if err := json.Unmarshal(r.Value, &ch); err != nil {
					t.Fatal(err)
				}
				seen = append(seen, ch)
			})
		}
		if len(seen) != len(want) {
			t.Fatalf("%s: records %+v, want %+v", what, seen, want)
		}
		for i := range want {
			if seen[i] != want[i] {
				t.Fatalf("%s: records %+v, want %+v", what, seen, want)
			}
		}
		seen = nil
	}
	change := func(op, cause string, at int64) schemas.TagChange {
		return schemas.TagChange{Tenant: "t", Profile: "p_1", Tag: "hot", Op: op, Cause: cause, Time: at}
	}
	expect("snapshot", change(schemas.TagAdded, "rule:hot@1", base.UnixMilli()))

	// 40 minutes on, the older view leaves the hour: the tag goes at that
	// instant, with no new snapshot.
	clock.Store(ms(41 * time.Minute))
	expect("window passed", change(schemas.TagRemoved, "rule:hot@1", ms(40*time.Minute)))

	// A wider window (version 2) puts it back; deleting the rule
	// (version 3) takes it away.
	rule.Condition, rule.Version = `events("a", duration("3h")) >= 2`, 2
	produce(schemas.TopicTagRules, schemas.RuleKey("t", "hot"), rule, base)
	expect("rule changed", change(schemas.TagAdded, "rule:hot@2", ms(41*time.Minute)))
	rule.Deleted, rule.Version = true, 3
	clock.Store(ms(50 * time.Minute))
	produce(schemas.TopicTagRules, schemas.RuleKey("t", "hot"), rule, base)
	expect("rule deleted", change(schemas.TagRemoved, "rule:hot@3", ms(50*time.Minute)))
}
