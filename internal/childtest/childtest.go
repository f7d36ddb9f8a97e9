// Package childtest runs a stage in a child process of a test binary, so
// that a test can SIGKILL it mid-stream and start it again (the kill tests
// of processors/tags, lifecycle, routing and fanout). Test support only.
package childtest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Main is the TestMain of a package with kill tests: in a child started
// by Start with the same prefix it runs run (until SIGTERM) and exits 0,
// or 1 when run fails; otherwise it runs the tests.
func Main(m *testing.M, prefix string, run func(ctx context.Context, brokers []string, dir string) error) {
	if brokers := os.Getenv(prefix + "_BROKERS"); brokers != "" {
		ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGTERM)
		err := run(ctx, strings.Split(brokers, ","), os.Getenv(prefix+"_STORAGE"))
		cancel()
		if err != nil && ctx.Err() == nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// Child is a running child process; its output goes to Log.
type Child struct {
	Cmd    *exec.Cmd
	Log    string
	Exited chan struct{}
}

// Start starts the test binary as a child running the stage with brokers
// and the storage dir; its log is dir.n.log. The test's cleanup kills it.
func Start(t *testing.T, prefix string, brokers []string, dir string, n int) *Child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), prefix+"_BROKERS="+strings.Join(brokers, ","), prefix+"_STORAGE="+dir)
	c := &Child{Cmd: cmd, Log: fmt.Sprintf("%s.%d.log", dir, n), Exited: make(chan struct{})}
	f, err := os.Create(c.Log)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = cmd.Wait(); f.Close(); close(c.Exited) }()
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-c.Exited })
	return c
}

// Logs is what the child wrote so far.
func (c *Child) Logs() string {
	b, _ := os.ReadFile(c.Log)
	return string(b)
}

// WaitLog waits, up to two minutes, until ok holds for the child's log;
// the test fails if the child exits first.
func (c *Child) WaitLog(t *testing.T, what string, ok func(log string) bool) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		if ok(c.Logs()) {
			return
		}
		select {
		case <-c.Exited:
			t.Fatalf("child exited before %s:\n%s", what, c.Logs())
		case <-time.After(50 * time.Millisecond):
		}
	}
	t.Fatalf("child: not %s within 2 minutes:\n%s", what, c.Logs())
}

// WaitJoined waits for each group's "setup generation" in goka's log
// ("[Processor <group>] setup generation ..."): killing a member of a
// kfake group between its JoinGroup and the answer leaves a ghost member
// (see processors/identity, kfakeSchedule).
func (c *Child) WaitJoined(t *testing.T, groups ...string) {
	t.Helper()
	c.WaitLog(t, "joined "+strings.Join(groups, ", "), func(log string) bool {
		joined := map[string]bool{}
		for _, line := range strings.Split(log, "\n") {
			if !strings.Contains(line, "setup generation") {
				continue
			}
			for _, g := range groups {
				if strings.Contains(line, "[Processor "+g+"]") {
					joined[g] = true
				}
			}
		}
		return len(joined) == len(groups)
	})
}
