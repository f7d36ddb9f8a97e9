package routing

import (
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/lovoo/goka"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/rolodex/rolodex/processors/processortest"
	"github.com/rolodex/rolodex/schemas"
)

// A record that does not decode on any input of the routing group
// (rolodex.routing.input, .rules, .ticks) or of the router
// (rolodex.events) is dead-lettered (reason undecodable, its topic,
// partition, offset and bytes) and skipped: the next valid rules record is
// applied, the next lead feedback event re-keyed, and neither group stops
// (before, goka stopped the group on it at every restart).
func TestUndecodableRecordsDeadLettered(t *testing.T) {
	k := newKafkaEnv(t)
	garbage := []byte("{not json, not avro")
	gs := []processortest.Garbled{
		{Group: schemas.GroupRouting, Topic: schemas.TopicRoutingInput, Key: "t1", Value: garbage},
		{Group: schemas.GroupRouting, Topic: schemas.TopicRoutingRules, Key: "t1", Value: garbage},
		{Group: schemas.GroupRouting, Topic: schemas.TopicRoutingTicks, Key: "t1", Value: garbage},
		{Group: schemas.GroupRoutingRouter, Topic: schemas.TopicEvents, Key: "t1", Value: garbage},
	}
	processortest.Produce(t, k.prod, gs)
	k.produceJSON(schemas.TopicRoutingRules, "t1", killRules("t1", 1), time.UnixMilli(1))
	ev := &schemas.Event{Tenant: "t1", ID: "f-1", Type: schemas.EventLeadAccepted, Time: time.UnixMilli(1), Source: "test", Partner: "p",
		Identifiers: []schemas.Identifier{{Type: schemas.IDEmail, Value: "a@example.com"}},
		Properties:  map[string]string{PropLeadID: strconv.Quote("l-1")}, ReceivedAt: time.UnixMilli(1)}
	v, err := schemas.EncodeEvent(ev)
	if err != nil {
		t.Fatal(err)
	}
	k.produce(schemas.TopicEvents, ev.Key(), v, time.UnixMilli(1))

	reg := prometheus.NewRegistry()
	p, err := New(Config{Brokers: k.brokers, StorageDir: filepath.Join(t.TempDir(), "routing"), Partners: killPartners, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	s := processortest.Start(t, p.Run)
	processortest.WaitDeadLettered(t, s, k.brokers, gs, func() bool {
		return len(k.readAll(string(goka.GroupTable(schemas.GroupRouting)))) > 0 &&
			processortest.Sum(t, reg, "rolodex_routing_rekeyed_total", nil) == 1
	})
	processortest.CheckCounted(t, reg, gs)
}
