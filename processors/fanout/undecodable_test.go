package fanout

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rolodex/rolodex/internal/kafkatest"
	"github.com/rolodex/rolodex/processors/processortest"
	"github.com/rolodex/rolodex/schemas"
)

// A record that does not decode on rolodex.fanout.input is dead-lettered
// (reason undecodable, its topic, partition, offset and bytes) and
// skipped: the next valid event is handled (counted by its outcome) and
// the stage keeps running (before, goka stopped the group on it at every
// restart).
func TestUndecodableRecordsDeadLettered(t *testing.T) {
	k := newKafkaEnv(t, 1)
	gs := []processortest.Garbled{{Group: schemas.GroupFanout, Topic: schemas.TopicFanoutInput, Key: "p_1", Value: []byte("{not json")}}
	processortest.Produce(t, k.prod, gs)
	kafkatest.ProduceJSON(t, k.prod, schemas.TopicFanoutInput, "p_1",
		&schemas.FanoutInput{Event: &schemas.FanoutEvent{Tenant: "t", Topic: "nobody", Publisher: "p", EventID: "e1", Type: "x", Time: 1}}, time.UnixMilli(1))

	reg := prometheus.NewRegistry()
	p, err := New(Config{Brokers: k.brokers, StorageDir: filepath.Join(t.TempDir(), "fanout"), Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	s := processortest.Start(t, p.Run)
	processortest.WaitDeadLettered(t, s, k.brokers, gs, func() bool {
		return processortest.Sum(t, reg, "rolodex_fanout_events_total", nil) == 1
	})
	processortest.CheckCounted(t, reg, gs)
	if got := processortest.Sum(t, reg, "rolodex_fanout_invalid_records_total", nil); got != 0 {
		t.Errorf("rolodex_fanout_invalid_records_total = %v, want 0 (the dead letter counts it)", got)
	}
}
