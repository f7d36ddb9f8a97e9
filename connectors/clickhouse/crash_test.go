//go:build unix

package clickhouse

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rolodex/rolodex/internal/kafkaclient"
	"github.com/rolodex/rolodex/schemas"
)

// The crash test runs the sink in child processes (this test binary,
// re-executed) and kills them with SIGKILL: no deferred code, no commit, no
// leaving the group.
const (
	childEnv        = "ROLODEX_TEST_SINK_CHILD"
	childBrokersEnv = "ROLODEX_TEST_SINK_BROKERS"
	childDBEnv      = "ROLODEX_TEST_SINK_DB"
	// childHTTPEnv, when set, is the HTTP address the child writes the
	// events table over.
	childHTTPEnv = "ROLODEX_TEST_SINK_HTTP"
	// childCrashEnv names a flush point ("<table>-written", "written") at
	// which the child kills itself the second time it gets there.
	childCrashEnv = "ROLODEX_TEST_SINK_CRASH_AT"
)

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		os.Exit(childSink())
	}
	if os.Getenv(benchBrokerEnv) != "" {
		os.Exit(childBroker())
	}
	os.Exit(m.Run())
}

// childSink runs a sink until SIGTERM (graceful: flush and commit).
func childSink() int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	s, err := NewSink(Config{
		Kafka:         kafkaclient.Config{Brokers: strings.Split(os.Getenv(childBrokersEnv), ",")},
		ClickHouse:    ConnConfig{Addr: os.Getenv(envAddr), HTTPAddr: os.Getenv(childHTTPEnv), Database: os.Getenv(childDBEnv)},
		BatchRows:     500,
		BatchInterval: 30 * time.Millisecond,
		Logger:        quietLogger(),
		KafkaOpts: []kgo.Opt{
			// A killed member is noticed after its session times out.
			kgo.SessionTimeout(time.Second), kgo.HeartbeatInterval(200 * time.Millisecond),
		},
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if at := os.Getenv(childCrashEnv); at != "" {
		var n atomic.Int32
		s.hook = func(point string) {
			if point == at && n.Add(1) == 2 {
				syscall.Kill(os.Getpid(), syscall.SIGKILL)
				select {}
			}
		}
	}
	defer s.Close()
	if err := s.Connect(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	// SIGTERM is handled since NotifyContext (before, Go's default action
	// would end the process: "signal: terminated"), and the sink is
	// connected: a SIGTERM now stops a running sink, the case the test
	// checks. It sends SIGTERM only after reading this line.
	fmt.Println(childReady)
	if err := s.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// childReady is the line a child prints once it handles SIGTERM and its
// sink is connected.
const childReady = "sink child: handling SIGTERM"

type child struct {
	cmd    *exec.Cmd
	stderr bytes.Buffer
	done   chan error
	ready  chan struct{} // closed when the child printed childReady
}

// startChild starts a sink child; httpAddr, when set, is where it writes
// the events table over HTTP.
func startChild(t *testing.T, brokers []string, db, crashAt, httpAddr string) *child {
	t.Helper()
	c := &child{done: make(chan error, 1), ready: make(chan struct{})}
	c.cmd = exec.Command(os.Args[0], "-test.run=^$")
	c.cmd.Env = append(os.Environ(), childEnv+"=1", childBrokersEnv+"="+strings.Join(brokers, ","), childDBEnv+"="+db, childCrashEnv+"="+crashAt,
		childHTTPEnv+"="+httpAddr)
	c.cmd.Stderr = &c.stderr
	stdout, err := c.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan struct{})
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if sc.Text() == childReady {
				close(c.ready)
				break
			}
		}
		io.Copy(io.Discard, stdout)
	}()
	go func() {
		<-lines // Wait must not close the pipe before it is read to the end
		c.done <- c.cmd.Wait()
	}()
	t.Cleanup(func() {
		c.cmd.Process.Kill()
		<-c.done
	})
	return c
}

// terminate asks the child to stop gracefully (SIGTERM) once it handles the
// signal and its sink is connected: a SIGTERM that came before would end it
// by Go's default action, or stop it while it connects, and the test is
// about the shutdown of a running sink.
func (c *child) terminate(t *testing.T) {
	t.Helper()
	select {
	case <-c.ready:
	case err := <-c.done:
		c.done <- err
		t.Fatalf("sink child exited before it was connected: %v; stderr:\n%s", err, c.stderr.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("sink child did not handle SIGTERM and connect within 30s; stderr:\n%s", c.stderr.String())
	}
	c.cmd.Process.Signal(syscall.SIGTERM)
}

// wait waits for the child to exit and returns how.
func (c *child) wait(t *testing.T, d time.Duration) error {
	t.Helper()
	select {
	case err := <-c.done:
		c.done <- err
		return err
	case <-time.After(d):
		t.Fatalf("sink child did not exit within %s; stderr:\n%s", d, c.stderr.String())
		return nil
	}
}

// Kill the sink at every point of a batch, restart it, and check that the
// tables hold every event, profile, node, merge, tag change, message event
// and message state exactly once as seen
// through FINAL, and that the report views equal the Go reference.
func TestSinkCrashRestart(t *testing.T) {
	conn, db := testDB(t)
	cluster := newCluster(t, 4, kfake.GroupMinSessionTimeout(100*time.Millisecond))
	brokers := cluster.ListenAddrs()
	w := genWorkload(3, 8000, 300).withMessages(600)
	p := newProducer(t, brokers)
	p.deadLetters(t, w.deadLetters)
	r := rand.New(rand.NewPCG(7, 7))
	kills := []struct {
		name    string
		crashAt string // a flush point, or "" for a SIGKILL from outside
	}{
		{"after the inserts, before the commit", "written"},
		{"between the events and dead_letters inserts", "events-written"},
		{"between the profiles and profile_nodes inserts", "profiles-written"},
		{"between the profile_nodes and profile_merges inserts", "profile_nodes-written"},
		{"between the profile_merges and tag_changes inserts", "profile_merges-written"},
		{"between the tag_changes and message_events inserts", "tag_changes-written"},
		{"between the message_events and message_states inserts", "message_events-written"},
		{"at a random moment", ""},
	}
	chunks := len(kills)
	chunk := (len(w.events) + chunks - 1) / chunks
	produceChunk := func(i int) {
		p.events(t, w.events[i*chunk:min((i+1)*chunk, len(w.events))])
		p.identityChunk(t, w, i, chunks)
		p.tagChunk(t, w, i, chunks)
		p.messageStateChunk(t, w, i, chunks)
	}
	rawEvents := func() uint64 { return count(t, conn, "SELECT count() FROM "+db+".events") }

	for i, k := range kills {
		produceChunk(i)
		before := rawEvents()
		// Both insert paths: every other child writes events over HTTP
		// (the kill between the events and dead_letters inserts among them).
		httpAddr := ""
		if i%2 == 1 {
			httpAddr = serverHTTPAddr(t)
		}
		c := startChild(t, brokers, db, k.crashAt, httpAddr)
		if k.crashAt != "" {
			err := c.wait(t, 30*time.Second)
			if ws, ok := err.(*exec.ExitError); !ok || ws.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
				t.Fatalf("kill %d (%s): child exited with %v, want killed by SIGKILL; stderr:\n%s", i+1, k.name, err, c.stderr.String())
			}
		} else {
			waitFor(t, 30*time.Second, "the sink child to write", func() bool { return rawEvents() > before })
			time.Sleep(time.Duration(r.IntN(150)) * time.Millisecond)
			c.cmd.Process.Signal(syscall.SIGKILL)
			c.wait(t, 10*time.Second)
		}
		t.Logf("%s kill %d (%s): events holds %d raw rows", time.Now().Format("15:04:05.000"), i+1, k.name, rawEvents())
		if k.crashAt == "written" {
			// The state this kill is for: rows in ClickHouse that Kafka
			// has not seen committed, so they will be read and written again.
			// Which tables they are in depends on the order the broker
			// returns the five topics in (a fetch may hold only profile or
			// merge records), so every table with Kafka positions counts.
			if n, per := writtenNotCommitted(t, conn, db, brokers); n == 0 {
				t.Fatalf("kill %d (%s): no row beyond the committed offsets", i+1, k.name)
			} else {
				t.Logf("kill %d: %d rows written but not committed %v", i+1, n, per)
			}
		}
	}

	final := uint64(len(finalEvents(w.events)))
	c := startChild(t, brokers, db, "", serverHTTPAddr(t))
	waitFor(t, 45*time.Second, "every record written and committed after the restarts", func() bool {
		return caughtUp(t, brokers, "")
	})
	c.terminate(t)
	if err := c.wait(t, 30*time.Second); err != nil {
		t.Fatalf("the last sink child did not stop cleanly: %v; stderr:\n%s", err, c.stderr.String())
	}

	raw := rawEvents()
	t.Logf("%d records, %d distinct events, %d raw rows after the crashes (background merges collapse some copies; FINAL all)", len(w.events), final, raw)
	if n := count(t, conn, "SELECT count() FROM "+db+".events FINAL"); n != final {
		t.Fatalf("events FINAL: %d rows, want %d", n, final)
	}
	checkEvents(t, conn, db, w.events, p.eventsAt)
	checkDeadLetters(t, conn, db, w.deadLetters, p.deadAt)
	checkReports(t, conn, db, w, "")
	checkIdentity(t, conn, db, w)
	checkTagChanges(t, conn, db, w)
	checkMessageTables(t, conn, db, w)
	checkCommitted(t, brokers, "")
}

// writtenNotCommitted counts the rows of the tables written from one topic
// each (events, dead_letters, profiles, profile_merges, tag_changes) whose Kafka offset is
// at or beyond the sink group's committed offset of their partition, in all
// and per table.
func writtenNotCommitted(t *testing.T, conn driver.Conn, db string, brokers []string) (uint64, map[string]uint64) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	committed, err := kadm.NewClient(cl).FetchOffsets(ctx, Group)
	if err != nil {
		t.Fatal(err)
	}
	var total uint64
	per := map[string]uint64{}
	for _, tt := range []struct{ table, topic string }{
		{tableEvents, schemas.TopicEvents},
		{tableDeadLetters, schemas.TopicDeadLetter},
		{tableProfiles, schemas.TopicProfiles},
		{tableProfileMerges, schemas.TopicMerges},
		{tableTagChanges, schemas.TopicProfileTags},
		{tableMessageStates, schemas.TopicLifecycleTable},
	} {
		for p := int32(0); p < 4; p++ {
			at := int64(0)
			if o, ok := committed.Lookup(tt.topic, p); ok {
				at = o.At
			}
			n := count(t, conn, fmt.Sprintf("SELECT count() FROM %s.%s WHERE kafka_partition = %d AND kafka_offset >= %d", db, tt.table, p, at))
			per[tt.table] += n
			total += n
		}
	}
	return total, per
}
