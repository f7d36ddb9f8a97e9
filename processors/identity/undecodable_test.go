package identity

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rolodex/rolodex/internal/kafkaclient"
	"github.com/rolodex/rolodex/internal/kafkatest"
	"github.com/rolodex/rolodex/processors/processortest"
	"github.com/rolodex/rolodex/schemas"
)

// A record that does not decode, on rolodex.events or on the loopback,
// is dead-lettered (reason undecodable, its topic, partition, offset and
// bytes) and skipped: the next valid event is folded and the processor
// keeps running (before, goka stopped the group on it at every restart).
func TestUndecodableRecordsDeadLettered(t *testing.T) {
	brokers := kafkatest.Cluster(t, 1, schemas.TopicEvents)
	cl := kafkatest.Client(t, brokers)
	if err := kafkaclient.EnsureTopics(context.Background(), cl, 1, Topics(1)...); err != nil {
		t.Fatal(err)
	}
	gs := []processortest.Garbled{
		{Group: schemas.GroupIdentity, Topic: schemas.TopicEvents, Key: "k", Value: []byte("not avro at all")},
		{Group: schemas.GroupIdentity, Topic: schemas.GroupIdentity + "-loop", Key: "k", Value: []byte("{not json")},
	}
	processortest.Produce(t, cl, gs)
	processortest.ProduceEvent(t, cl, ev("t1", "e1", 1, "email", "a@example.com"))

	reg := prometheus.NewRegistry()
	p, err := New(ProcessorConfig{Brokers: brokers, StorageDir: filepath.Join(t.TempDir(), "s"), Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	s := processortest.Start(t, p.Run)
	processortest.WaitDeadLettered(t, s, brokers, gs, func() bool { return len(latest(t, brokers, schemas.TopicProfiles)) > 0 })
	processortest.CheckCounted(t, reg, gs)
}
