package tags

import (
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/lovoo/goka"

	"github.com/rolodex/rolodex/internal/childtest"
	"github.com/rolodex/rolodex/internal/kafkatest"
	"github.com/rolodex/rolodex/processors/processortest"
	"github.com/rolodex/rolodex/schemas"
)

// The tag stage's local table copy survives a start only after a clean
// shutdown: a run ended by cancel leaves the marker and the next New keeps
// the copy; a run killed with SIGKILL leaves none and the next New clears
// it (goka rebuilds it from rolodex-tags-table). Before, a killed run's
// copy was kept: a state goka had stored locally but Kafka never got made
// the replay of its snapshot look handled, and the table topic lacked it.
func TestStorageKeptOnlyAfterCleanShutdown(t *testing.T) {
	brokers := kafkatest.Cluster(t, 3, schemas.TopicProfiles)
	cl := kafkatest.Client(t, brokers)
	if err := EnsureTopics(context.Background(), cl, 1); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "tags")
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	write := func(t *testing.T, round int) {
		var keys []string
		for i := range 3 {
			id := fmt.Sprintf("p_%d_%d", round, i)
			keys = append(keys, id)
			kafkatest.ProduceJSON(t, cl, schemas.TopicProfiles, id, &schemas.Profile{ID: id, Tenant: "t",
				Tags: []schemas.ProfileTag{{Tag: "vip", Source: schemas.TagSourceManual, SinceMs: 1000}}}, time.Now())
		}
		processortest.WaitKeys(t, brokers, string(goka.GroupTable(schemas.GroupTags)), keys...)
	}
	processortest.CheckStorage(t, processortest.Storage{
		Dirs: []string{dir},
		New: func(t *testing.T) func(context.Context) error {
			p, err := New(Config{Brokers: brokers, StorageDir: dir, Logger: quiet}, goka.WithLogger(log.New(io.Discard, "", 0)))
			if err != nil {
				t.Fatal(err)
			}
			return p.Run
		},
		Write: write,
		Crash: func(t *testing.T) {
			ch := childtest.Start(t, envChild, brokers, dir, 1)
			ch.WaitJoined(t, schemas.GroupTags)
			write(t, 1)
			_ = ch.Cmd.Process.Kill()
			<-ch.Exited
		},
	})
}
