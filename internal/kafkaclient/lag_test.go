package kafkaclient

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestLagMetrics produces records with known timestamps on kfake, commits
// part of them for a group, and reads the gauges: records behind, seconds
// behind (the age of the record at the committed offset, in the middle of
// a batch), 0 when caught up, the log's first record when nothing is
// committed; then a member joins and consumes everything.
func TestLagMetrics(t *testing.T) {
	const topic, group = "lag.test", "lag-group"
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, topic))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	base := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	now := base.Add(time.Hour)
	// Partition 0: five records a minute apart, in one batch; partition 1:
	// three; partition 2: two.
	var recs []*kgo.Record
	for p, n := range []int{5, 3, 2} {
		for i := range n {
			recs = append(recs, &kgo.Record{Topic: topic, Partition: int32(p), Value: []byte("x"),
				Timestamp: base.Add(time.Duration(10*p+i) * time.Minute)})
		}
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	adm := kadm.NewClient(cl)
	offs := kadm.Offsets{}
	offs.Add(kadm.Offset{Topic: topic, Partition: 0, At: 2, LeaderEpoch: -1})
	offs.Add(kadm.Offset{Topic: topic, Partition: 1, At: 3, LeaderEpoch: -1})
	if err := adm.CommitAllOffsets(ctx, group, offs); err != nil {
		t.Fatal(err)
	}

	reg := prometheus.NewRegistry()
	m := NewLagMetrics(reg)
	m.now = func() time.Time { return now }
	if err := m.refresh(ctx, cl, adm, group); err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{
		// Offset 2 of partition 0 is base+2m: 58 minutes behind.
		`rolodex_consumer_lag_records{group="lag-group",partition="0",topic="lag.test"}`: 3,
		`rolodex_consumer_lag_seconds{group="lag-group",partition="0",topic="lag.test"}`: now.Sub(base.Add(2 * time.Minute)).Seconds(),
		`rolodex_consumer_lag_records{group="lag-group",partition="1",topic="lag.test"}`: 0,
		`rolodex_consumer_lag_seconds{group="lag-group",partition="1",topic="lag.test"}`: 0,
		`rolodex_consumer_group_members{group="lag-group"}`:                              0,
	}
	got := gauges(t, reg)
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			t.Errorf("%s = %v (present %v), want %v", k, g, ok, v)
		}
	}
	// Partition 2 has no commit (kadm lists the partitions of the topics
	// a group committed): two records behind, as old as the log's first
	// record (base+20m).
	if g := got[`rolodex_consumer_lag_records{group="lag-group",partition="2",topic="lag.test"}`]; g != 2 {
		t.Errorf("partition 2: %v records behind, want 2", g)
	}
	if s, want := got[`rolodex_consumer_lag_seconds{group="lag-group",partition="2",topic="lag.test"}`], now.Sub(base.Add(20*time.Minute)).Seconds(); s != want {
		t.Errorf("partition 2: %v seconds behind, want %v", s, want)
	}

	// A member joins, reads everything and commits: caught up, one member.
	consumer, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.DisableAutoCommit())
	if err != nil {
		t.Fatal(err)
	}
	defer consumer.Close()
	for seen := 0; seen < 3+2; { // partition 0 from offset 2, partition 2 from its start
		fs := consumer.PollFetches(ctx)
		if err := fs.Err0(); err != nil {
			t.Fatal(err)
		}
		seen += fs.NumRecords()
	}
	if err := consumer.CommitUncommittedOffsets(ctx); err != nil {
		t.Fatal(err)
	}
	if err := m.refresh(ctx, cl, adm, group); err != nil {
		t.Fatal(err)
	}
	got = gauges(t, reg)
	for p := range 3 {
		for _, name := range []string{"records", "seconds"} {
			k := `rolodex_consumer_lag_` + name + `{group="lag-group",partition="` + string(rune('0'+p)) + `",topic="lag.test"}`
			if g, ok := got[k]; !ok || g != 0 {
				t.Errorf("after consuming: %s = %v (present %v), want 0", k, g, ok)
			}
		}
	}
	if g := got[`rolodex_consumer_group_members{group="lag-group"}`]; g != 1 {
		t.Errorf("members = %v, want 1", g)
	}
}

// gauges reads every gauge of reg as name{labels} -> value.
func gauges(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+`="`+l.GetValue()+`"`)
			}
			out[mf.GetName()+"{"+strings.Join(labels, ",")+"}"] = m.GetGauge().GetValue()
		}
	}
	return out
}
