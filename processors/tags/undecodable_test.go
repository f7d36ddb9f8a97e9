package tags

import (
	"context"
	"io"
	"log"
	"log/slog"
	"testing"
	"time"

	"github.com/lovoo/goka"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rolodex/rolodex/internal/kafkatest"
	"github.com/rolodex/rolodex/schemas"
)

// A record that does not decode on rolodex.profiles or rolodex.tag.ticks
// is dead-lettered (reason undecodable, its topic, partition, offset and
// bytes) and skipped: the next valid profile gets its tag and the stage
// keeps running (before, goka stopped the group on it at every restart).
func TestUndecodableRecordsDeadLettered(t *testing.T) {
	brokers := kafkatest.Cluster(t, 1, schemas.TopicProfiles)
	cl := kafkatest.Client(t, brokers)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := EnsureTopics(ctx, cl, 1); err != nil {
		t.Fatal(err)
	}
	base := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	rule := schemas.TagRule{Tenant: "t", ID: "hot", Tag: "hot", Condition: `events("a", duration("1h")) >= 1`, Enabled: true, Version: 1}
	kafkatest.ProduceJSON(t, cl, schemas.TopicTagRules, schemas.RuleKey("t", "hot"), rule, base)
	garbage := map[string][]byte{schemas.TopicProfiles: []byte("{not json"), schemas.TopicTagTicks: []byte("\x00\x01")}
	offsets := map[string]int64{}
	for _, topic := range []string{schemas.TopicProfiles, schemas.TopicTagTicks} {
		r, err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Key: []byte("p_1"), Value: garbage[topic]}).First()
		if err != nil {
			t.Fatal(err)
		}
		offsets[topic] = r.Offset
	}
	kafkatest.ProduceJSON(t, cl, schemas.TopicProfiles, "p_1",
		&schemas.Profile{ID: "p_1", Tenant: "t", EventTimes: map[string][]int64{"a": {base.Add(-time.Minute).UnixMilli()}}}, base)

	reg := prometheus.NewRegistry()
	p, err := New(Config{Brokers: brokers, StorageDir: t.TempDir(), Tick: 20 * time.Millisecond, Registerer: reg,
		Now:    func() time.Time { return base },
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, goka.WithLogger(log.New(io.Discard, "", 0)))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	stopped := false
	defer func() {
		cancel()
		if !stopped {
			<-done
		}
	}()
	deadline := time.Now().Add(90 * time.Second)
	for {
		select {
		case err := <-done:
			stopped = true
			t.Fatalf("the stage stopped: %v", err)
		default:
		}
		letters := kafkatest.ReadAll(t, brokers, schemas.TopicDeadLetter)
		tags := kafkatest.ReadAll(t, brokers, schemas.TopicProfileTags)
		if len(letters) == len(garbage) && len(tags) > 0 {
			for _, r := range letters {
				d, err := schemas.DecodeDeadLetter(r.Value)
				if err != nil {
					t.Fatal(err)
				}
				if d.Reason != schemas.ReasonUndecodable || d.SourceKind != schemas.SourceProcessor || d.Message == "" ||
					string(d.Payload) != string(garbage[d.Topic]) || d.Partition != 0 || d.Offset != offsets[d.Topic] {
					t.Errorf("dead letter %+v, want reason undecodable of %s/0@%d", d, d.Topic, offsets[d.Topic])
				}
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 90 s: %d dead letters (want %d), %d tag changes (want some)", len(letters), len(garbage), len(tags))
		}
		time.Sleep(200 * time.Millisecond)
	}
	for _, topic := range []string{schemas.TopicProfiles, schemas.TopicTagTicks} {
		if got := undecodable(t, reg, schemas.GroupTags, topic); got != 1 {
			t.Errorf("rolodex_processor_undecodable_records_total{%s} = %v, want 1", topic, got)
		}
	}
}

// undecodable is the count of group and topic on reg.
func undecodable(t *testing.T, reg *prometheus.Registry, group, topic string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "rolodex_processor_undecodable_records_total" {
			continue
		}
		for _, m := range mf.Metric {
			labels := map[string]string{}
			for _, l := range m.Label {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["group"] == group && labels["topic"] == topic {
				return m.Counter.GetValue()
			}
		}
	}
	return 0
}
