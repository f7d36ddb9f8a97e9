package lifecycle

import (
	"context"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/lovoo/goka"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/rolodex/rolodex/internal/kafkatest"
	"github.com/rolodex/rolodex/processors/processortest"
	"github.com/rolodex/rolodex/schemas"
)

// A record that does not decode on the input of each of the three groups
// (rolodex.events for the router, rolodex.messages.recipients,
// rolodex.messages.events) is dead-lettered (reason undecodable, its
// topic, partition, offset and bytes) and skipped: the next valid send is
// routed, folded and checked, and no group stops (before, goka stopped the
// group on it at every restart).
func TestUndecodableRecordsDeadLettered(t *testing.T) {
	brokers := kafkatest.Cluster(t, 1, schemas.TopicEvents)
	cl := kafkatest.Client(t, brokers)
	if err := EnsureTopics(context.Background(), cl, 1); err != nil {
		t.Fatal(err)
	}
	gs := []processortest.Garbled{
		{Group: schemas.GroupMessagesRouter, Topic: schemas.TopicEvents, Key: "k", Value: []byte("not avro")},
		{Group: schemas.GroupRecipients, Topic: schemas.TopicMessageRecipients, Key: "k", Value: []byte("{not json")},
		{Group: schemas.GroupLifecycle, Topic: schemas.TopicMessageEvents, Key: "k", Value: []byte("[1,")},
	}
	processortest.Produce(t, cl, gs)
	ev := &schemas.Event{Tenant: "t1", ID: "s-1", Type: schemas.MessageEventType(schemas.MessageSent), Time: time.UnixMilli(5000), Source: "test",
		Partner: "p", Identifiers: []schemas.Identifier{{Type: schemas.IDEmail, Value: "ana@example.com"}},
		Properties: map[string]string{"message_id": strconv.Quote("welcome")}, ReceivedAt: time.UnixMilli(5000)}
	processortest.ProduceEvent(t, cl, ev)

	reg := prometheus.NewRegistry()
	p, err := New(Config{Brokers: brokers, StorageDir: filepath.Join(t.TempDir(), "lifecycle"), Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	s := processortest.Start(t, p.Run)
	processortest.WaitDeadLettered(t, s, brokers, gs, func() bool {
		return len(kafkatest.ReadAll(t, brokers, string(goka.GroupTable(schemas.GroupLifecycle)))) > 0 &&
			len(kafkatest.ReadAll(t, brokers, string(goka.GroupTable(schemas.GroupRecipients)))) > 0
	})
	processortest.CheckCounted(t, reg, gs)
}
