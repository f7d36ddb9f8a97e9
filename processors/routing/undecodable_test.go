package routing

import (
	"context"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/lovoo/goka"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

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
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	groups := map[string]string{schemas.TopicRoutingInput: schemas.GroupRouting, schemas.TopicRoutingRules: schemas.GroupRouting,
		schemas.TopicRoutingTicks: schemas.GroupRouting, schemas.TopicEvents: schemas.GroupRoutingRouter}
	type at struct {
		partition int32
		offset    int64
	}
	where := map[string]at{}
	garbage := []byte("{not json, not avro")
	for topic := range groups {
		r, err := k.prod.ProduceSync(ctx, &kgo.Record{Topic: topic, Key: []byte("t1"), Value: garbage}).First()
		if err != nil {
			t.Fatal(err)
		}
		where[topic] = at{r.Partition, r.Offset}
	}
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
			t.Fatalf("routing stopped: %v", err)
		default:
		}
		letters := k.readAll(schemas.TopicDeadLetter)
		states := k.readAll(string(goka.GroupTable(schemas.GroupRouting)))
		rekeyed := sum(t, reg, "rolodex_routing_rekeyed_total", nil)
		if len(letters) == len(groups) && len(states) > 0 && rekeyed == 1 {
			for _, r := range letters {
				d, err := schemas.DecodeDeadLetter(r.Value)
				if err != nil {
					t.Fatal(err)
				}
				w, ok := where[d.Topic]
				if !ok || d.Reason != schemas.ReasonUndecodable || d.SourceKind != schemas.SourceProcessor || d.Message == "" ||
					string(d.Payload) != string(garbage) || d.Partition != w.partition || d.Offset != w.offset {
					t.Errorf("dead letter %+v, want reason undecodable of %s/%d@%d", d, d.Topic, w.partition, w.offset)
				}
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 90 s: %d dead letters (want %d), %d table records (want some), %v re-keyed (want 1)",
				len(letters), len(groups), len(states), rekeyed)
		}
		time.Sleep(200 * time.Millisecond)
	}
	for topic, group := range groups {
		if got := sum(t, reg, "rolodex_processor_undecodable_records_total", map[string]string{"group": group, "topic": topic}); got != 1 {
			t.Errorf("rolodex_processor_undecodable_records_total{%s,%s} = %v, want 1", group, topic, got)
		}
	}
}

// sum sums the series of name on reg whose labels include want.
func sum(t *testing.T, reg *prometheus.Registry, name string, want map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	total := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metric:
		for _, m := range mf.Metric {
			labels := map[string]string{}
			for _, l := range m.Label {
				labels[l.GetName()] = l.GetValue()
			}
			for k, v := range want {
				if labels[k] != v {
					continue metric
				}
			}
			total += m.Counter.GetValue()
		}
	}
	return total
}
