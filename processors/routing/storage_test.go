package routing

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
	"github.com/rolodex/rolodex/processors/processortest"
	"github.com/rolodex/rolodex/schemas"
)

// rolodex-routing's local table copy survives a start only after a clean
// shutdown: a run ended by cancel leaves the marker and the next New keeps
// the copy; a run killed with SIGKILL leaves none and the next New clears
// it (goka rebuilds it from rolodex-routing-table). Before, a killed run's
// copy was kept: a tenant's state goka had stored locally but Kafka never
// got made the replay of its message look handled, and the table topic
// lacked it.
func TestStorageKeptOnlyAfterCleanShutdown(t *testing.T) {
	k := newKafkaEnv(t)
	dir := filepath.Join(t.TempDir(), "routing")
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	write := func(t *testing.T, round int) {
		var tenants []string
		for i := range 3 {
			tn := fmt.Sprintf("t%d-%d", round, i)
			tenants = append(tenants, tn)
			k.produceJSON(schemas.TopicRoutingRules, tn, killRules(tn, 1), time.Now())
		}
		processortest.WaitKeys(t, k.brokers, string(goka.GroupTable(schemas.GroupRouting)), tenants...)
	}
	processortest.CheckStorage(t, processortest.Storage{
		Dirs: []string{dir},
		New: func(t *testing.T) func(context.Context) error {
			p, err := New(Config{Brokers: k.brokers, StorageDir: dir, Partners: killPartners, Logger: quiet},
				goka.WithLogger(log.New(io.Discard, "", 0)))
			if err != nil {
				t.Fatal(err)
			}
			return p.Run
		},
		Write: write,
		Crash: func(t *testing.T) {
			ch := childtest.Start(t, envChild, k.brokers, dir, 1)
			ch.WaitJoined(t, schemas.GroupRouting, schemas.GroupRoutingRouter)
			write(t, 1)
			_ = ch.Cmd.Process.Kill()
			<-ch.Exited
		},
	})
}
