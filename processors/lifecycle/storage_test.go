package lifecycle

import (
	"context"
	"fmt"
	"io"
	"log"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/lovoo/goka"

	"github.com/rolodex/rolodex/internal/childtest"
	"github.com/rolodex/rolodex/internal/kafkatest"
	"github.com/rolodex/rolodex/processors/processortest"
	"github.com/rolodex/rolodex/schemas"
)

// The local table copies of rolodex-recipients and rolodex-lifecycle, each
// in its own directory, survive a start only after a clean shutdown: a run
// ended by cancel leaves the marker in both and the next New keeps them; a
// run killed with SIGKILL leaves none and the next New clears both (goka
// rebuilds them from the table topics).
func TestStorageKeptOnlyAfterCleanShutdown(t *testing.T) {
	brokers := kafkatest.Cluster(t, 3, schemas.TopicEvents)
	cl := kafkatest.Client(t, brokers)
	if err := EnsureTopics(context.Background(), cl, 1); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "lifecycle")
	recipientsDir, lifecycleDir := storageDirs(dir)
	if recipientsDir == lifecycleDir || filepath.Dir(recipientsDir) != dir || filepath.Dir(lifecycleDir) != dir {
		t.Fatalf("the groups' directories %s and %s: want one each under %s", recipientsDir, lifecycleDir, dir)
	}
	write := func(t *testing.T, round int) {
		var messages, recipients []string
		for i := range 3 {
			msg := fmt.Sprintf("m%d-%d", round, i)
			addr := schemas.Identifier{Type: schemas.IDEmail, Value: fmt.Sprintf("r%d-%d@example.com", round, i)}
			at := time.UnixMilli(int64(1000 + i))
			processortest.ProduceEvent(t, cl, &schemas.Event{Tenant: "t1", ID: "e-" + msg, Type: schemas.MessageEventType(schemas.MessageSent),
				Time: at, Source: "test", Partner: "p", Identifiers: []schemas.Identifier{addr},
				Properties: map[string]string{"message_id": strconv.Quote(msg)}, ReceivedAt: at})
			messages = append(messages, schemas.MessageKey("t1", msg))
			recipients = append(recipients, schemas.NodeID("t1", addr))
		}
		processortest.WaitKeys(t, brokers, string(goka.GroupTable(schemas.GroupRecipients)), recipients...)
		processortest.WaitKeys(t, brokers, string(goka.GroupTable(schemas.GroupLifecycle)), messages...)
	}
	processortest.CheckStorage(t, processortest.Storage{
		Dirs: []string{recipientsDir, lifecycleDir},
		New: func(t *testing.T) func(context.Context) error {
			p, err := New(Config{Brokers: brokers, StorageDir: dir}, goka.WithLogger(log.New(io.Discard, "", 0)))
			if err != nil {
				t.Fatal(err)
			}
			return p.Run
		},
		Write: write,
		Crash: func(t *testing.T) {
			ch := childtest.Start(t, envChild, brokers, dir, 1)
			ch.WaitJoined(t, schemas.GroupMessagesRouter, schemas.GroupRecipients, schemas.GroupLifecycle)
			write(t, 1)
			_ = ch.Cmd.Process.Kill()
			<-ch.Exited
		},
	})
}
