package kafkaclient

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/rolodex/rolodex/internal/metrics"
)

// LagMetrics exports a consumer group's lag, refreshed every interval until
// ctx is done:
//
//   - rolodex_consumer_lag_records{group,topic,partition}: end offset minus
//     committed offset;
//   - rolodex_consumer_lag_seconds{group,topic,partition}: the age of the
//     oldest record the group has not processed (the record at the
//     committed offset: now minus its Kafka timestamp), 0 when caught up;
//   - rolodex_consumer_group_members{group}: the group's members as the
//     coordinator describes it (0: nobody consumes, the lag only grows).
//
// One instance serves every group of a process (the gauges are shared, see
// NewLagMetrics); each group has its own Run.
type LagMetrics struct {
	lag     *prometheus.GaugeVec
	seconds *prometheus.GaugeVec
	members *prometheus.GaugeVec
	// now is the clock of the seconds behind (tests set it).
	now func() time.Time
}

// NewLagMetrics registers the lag gauges on reg (a nil reg leaves them
// unregistered). A second call on the same registry (another component of
// the same process) shares the gauges registered first.
func NewLagMetrics(reg prometheus.Registerer) *LagMetrics {
	m := &LagMetrics{
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "rolodex_consumer_lag_records",
			Help: "Records not yet processed by a consumer group: end offset minus committed offset, per topic and partition.",
		}, []string{"group", "topic", "partition"}),
		seconds: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "rolodex_consumer_lag_seconds",
			Help: "Age of the oldest record a consumer group has not processed (the record at its committed offset), per topic and partition; 0 when caught up.",
		}, []string{"group", "topic", "partition"}),
		members: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "rolodex_consumer_group_members",
			Help: "Members of a consumer group, as its coordinator describes it.",
		}, []string{"group"}),
		now: time.Now,
	}
	if reg != nil {
		var err error
		if m.lag, err = metrics.Register(reg, m.lag); err != nil {
			panic(err)
		}
		if m.seconds, err = metrics.Register(reg, m.seconds); err != nil {
			panic(err)
		}
		if m.members, err = metrics.Register(reg, m.members); err != nil {
			panic(err)
		}
	}
	return m
}

// Run refreshes the lag of group every interval until ctx is done. A
// refresh that fails (Kafka unreachable, the group's coordinator moving)
// leaves the gauges as they were until the next one.
func (m *LagMetrics) Run(ctx context.Context, cl *kgo.Client, group string, interval time.Duration) error {
	adm := kadm.NewClient(cl)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		_ = m.refresh(ctx, cl, adm, group)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// lagging is a partition with records the group has not processed: the
// oldest of them is at offset.
type lagging struct {
	topic     string
	partition int32
	offset    int64
}

// refresh reads the group's lag once and sets the gauges.
func (m *LagMetrics) refresh(ctx context.Context, cl *kgo.Client, adm *kadm.Client, group string) error {
	lags, err := adm.Lag(ctx, group)
	if err != nil {
		return err
	}
	l, ok := lags[group]
	if !ok {
		return fmt.Errorf("lag: group %s not described", group)
	}
	if err := l.Error(); err != nil {
		return err
	}
	m.members.WithLabelValues(group).Set(float64(len(l.Members)))
	var behind []lagging
	for topic, parts := range l.Lag {
		for p, ml := range parts {
			if ml.Err != nil || ml.Lag < 0 {
				continue
			}
			part := strconv.Itoa(int(p))
			m.lag.WithLabelValues(group, topic, part).Set(float64(ml.Lag))
			if ml.Lag == 0 {
				m.seconds.WithLabelValues(group, topic, part).Set(0)
				continue
			}
			// No commit yet: the group starts at the log's start.
			// Below the log's start, retention deleted the records: the
			// oldest left is the first one.
			off := ml.Commit.At
			if off < 0 || (ml.Start.Err == nil && off < ml.Start.Offset) {
				off = ml.Start.Offset
			}
			behind = append(behind, lagging{topic: topic, partition: p, offset: off})
		}
	}
	if len(behind) == 0 {
		return nil
	}
	stamps, err := oldestTimestamps(ctx, cl, adm, behind)
	now := m.now()
	for _, b := range behind {
		ts, ok := stamps[b.topic][b.partition]
		if !ok {
			continue // not read this time: the gauge keeps its last value
		}
		age := now.Sub(ts).Seconds()
		if age < 0 {
			age = 0 // a producer's clock ahead of ours
		}
		m.seconds.WithLabelValues(group, b.topic, strconv.Itoa(int(b.partition))).Set(age)
	}
	return err
}

// oldestTimestamps fetches, for each lagging partition, the first record
// at or after its offset and returns that record's timestamp: one small
// fetch request per partition, sent to its leader, which answers with the
// one record batch holding that offset (a fetch's first partition always
// gets its first batch whole, however small the limit; later partitions of
// the same request would get nothing when their batch is over it).
// Partitions whose record could not be read are left out; the first error
// is returned with what was read.
func oldestTimestamps(ctx context.Context, cl *kgo.Client, adm *kadm.Client, behind []lagging) (map[string]map[int32]time.Time, error) {
	topics := map[string]bool{}
	for _, b := range behind {
		topics[b.topic] = true
	}
	names := make([]string, 0, len(topics))
	for t := range topics {
		names = append(names, t)
	}
	md, err := adm.Metadata(ctx, names...)
	if err != nil {
		return nil, fmt.Errorf("lag: metadata: %w", err)
	}
	out := map[string]map[int32]time.Time{}
	var firstErr error
	fail := func(err error) {
		if firstErr == nil {
			firstErr = err
		}
	}
	decompressor := kgo.DefaultDecompressor()
	for _, b := range behind {
		td, ok := md.Topics[b.topic]
		if !ok || td.Err != nil {
			fail(fmt.Errorf("lag: metadata of %s: %v", b.topic, td.Err))
			continue
		}
		pd, ok := td.Partitions[b.partition]
		if !ok || pd.Err != nil || pd.Leader < 0 {
			fail(fmt.Errorf("lag: no leader for %s/%d", b.topic, b.partition))
			continue
		}
		ts, err := recordTimestamp(ctx, cl.Broker(int(pd.Leader)), td.ID, b, decompressor)
		if err != nil {
			fail(err)
			continue
		}
		if out[b.topic] == nil {
			out[b.topic] = map[int32]time.Time{}
		}
		out[b.topic][b.partition] = ts
	}
	return out, firstErr
}

// recordTimestamp fetches the batch holding b's offset from the partition's
// leader and returns the timestamp of the first record at or after it.
func recordTimestamp(ctx context.Context, leader *kgo.Broker, id kadm.TopicID, b lagging, decompressor kgo.Decompressor) (time.Time, error) {
	req := kmsg.NewPtrFetchRequest()
	req.ReplicaID = -1
	req.MaxWaitMillis = 0
	req.MinBytes = 1
	req.MaxBytes = 1
	req.IsolationLevel = 0 // read uncommitted, as the groups read
	req.SessionEpoch = -1  // no fetch session
	rt := kmsg.NewFetchRequestTopic()
	rt.Topic, rt.TopicID = b.topic, id
	rp := kmsg.NewFetchRequestTopicPartition()
	rp.Partition = b.partition
	rp.FetchOffset = b.offset
	rp.CurrentLeaderEpoch = -1
	rp.LogStartOffset = -1
	rp.PartitionMaxBytes = 1
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)

	kresp, err := leader.Request(ctx, req)
	if err != nil {
		return time.Time{}, fmt.Errorf("lag: fetch %s/%d: %w", b.topic, b.partition, err)
	}
	resp := kresp.(*kmsg.FetchResponse)
	if err := kerr.ErrorForCode(resp.ErrorCode); err != nil {
		return time.Time{}, fmt.Errorf("lag: fetch %s/%d: %w", b.topic, b.partition, err)
	}
	for i := range resp.Topics {
		for j := range resp.Topics[i].Partitions {
			part := &resp.Topics[i].Partitions[j]
			if part.Partition != b.partition {
				continue
			}
			if err := kerr.ErrorForCode(part.ErrorCode); err != nil {
				return time.Time{}, fmt.Errorf("lag: fetch %s/%d: %w", b.topic, b.partition, err)
			}
			fp, _ := kgo.ProcessFetchPartition(kgo.ProcessFetchPartitionOpts{
				Offset: b.offset, Topic: b.topic, Partition: b.partition,
			}, part, decompressor, nil)
			for _, r := range fp.Records {
				if r.Offset >= b.offset {
					return r.Timestamp, nil
				}
			}
		}
	}
	return time.Time{}, fmt.Errorf("lag: fetch %s/%d: no record at offset %d", b.topic, b.partition, b.offset)
}
