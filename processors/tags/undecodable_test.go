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

	"github.com/rolodex/rolodex/internal/kafkatest"
	"github.com/rolodex/rolodex/processors/processortest"
	"github.com/rolodex/rolodex/schemas"
)

// A record that does not decode on rolodex.profiles or rolodex.tag.ticks
// is dead-lettered (reason undecodable, its topic, partition, offset and
// bytes) and skipped: the next valid profile gets its tag and the stage
// keeps running (before, goka stopped the group on it at every restart).
func TestUndecodableRecordsDeadLettered(t *testing.T) {
	brokers := kafkatest.Cluster(t, 1, schemas.TopicProfiles)
	cl := kafkatest.Client(t, brokers)
	if err := EnsureTopics(context.Background(), cl, 1); err != nil {
		t.Fatal(err)
	}
	base := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	rule := schemas.TagRule{Tenant: "t", ID: "hot", Tag: "hot", Condition: `events("a", duration("1h")) >= 1`, Enabled: true, Version: 1}
	kafkatest.ProduceJSON(t, cl, schemas.TopicTagRules, schemas.RuleKey("t", "hot"), rule, base)
	gs := []processortest.Garbled{
		{Group: schemas.GroupTags, Topic: schemas.TopicProfiles, Key: "p_1", Value: []byte("{not json")},
		{Group: schemas.GroupTags, Topic: schemas.TopicTagTicks, Key: "p_1", Value: []byte("\x00\x01")},
	}
	processortest.Produce(t, cl, gs)
	kafkatest.ProduceJSON(t, cl, schemas.TopicProfiles, "p_1",
		&schemas.Profile{ID: "p_1", Tenant: "t", EventTimes: map[string][]int64{"a": {base.Add(-time.Minute).UnixMilli()}}}, base)

	reg := prometheus.NewRegistry()
	p, err := New(Config{Brokers: brokers, StorageDir: t.TempDir(), Tick: 20 * time.Millisecond, Registerer: reg,
		Now:    func() time.Time { return base },
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, goka.WithLogger(log.New(io.Discard, "", 0)))
	if err != nil {
		t.Fatal(err)
	}
	s := processortest.Start(t, p.Run)
	processortest.WaitDeadLettered(t, s, brokers, gs, func() bool { return len(kafkatest.ReadAll(t, brokers, schemas.TopicProfileTags)) > 0 })
	processortest.CheckCounted(t, reg, gs)
}
