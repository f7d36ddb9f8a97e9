//go:build system

package system

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// repoRoot is the repository's root: go test runs in the package's
// directory.
func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// buildRolodex builds the rolodex binary into dir, as an operator
// installs it.
func buildRolodex(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "rolodex")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/rolodex")
	cmd.Dir = repoRoot(t)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/rolodex: %v\n%s", err, out)
	}
	return bin
}

// proc is one rolodex process the test started, its output in a file.
type proc struct {
	name   string
	cmd    *exec.Cmd
	log    string
	exited chan struct{}
	err    error // of Wait, once exited is closed
	// addr is the address its HTTP server listens on, read from its log.
	addr string
}

// readyLine is the log line a server prints once it listens: "rolodex
// running" with http=ADDR (ingest, processors, api), "sink running" with
// metrics=ADDR.
var readyLine = regexp.MustCompile(`msg="(?:rolodex|sink) running".*? (?:http|metrics)=(\S+)`)

// startProc runs bin with args, its stdout and stderr in dir/name.log,
// and kills it at the end of owner (the test the process outlives
// subtests of) if it still runs then.
func startProc(owner *testing.T, dir, bin, name string, args ...string) (*proc, error) {
	p := &proc{name: name, log: filepath.Join(dir, name+".log"), exited: make(chan struct{})}
	f, err := os.Create(p.log)
	if err != nil {
		return nil, err
	}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Stdout, p.cmd.Stderr = f, f
	if err := p.cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		f.Close()
		close(p.exited)
	}()
	owner.Cleanup(func() {
		if p.alive() {
			p.cmd.Process.Kill()
			<-p.exited
		}
	})
	return p, nil
}

func (p *proc) alive() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// tail returns the last lines of the process's output.
func (p *proc) tail() string {
	b, _ := os.ReadFile(p.log)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > 40 {
		lines = lines[len(lines)-40:]
	}
	return fmt.Sprintf("--- %s (%s), last %d lines:\n%s", p.name, p.log, len(lines), strings.Join(lines, "\n"))
}

// waitHealthy waits until the process has printed the address it listens
// on and its /healthz answers 200. It fails at once when the process
// exits.
func (p *proc) waitHealthy(t *testing.T, ctx context.Context) {
	t.Helper()
	client := &http.Client{Timeout: 5 * time.Second}
	var last string
	for {
		if !p.alive() {
			t.Fatalf("%s exited while starting: %v\n%s", p.name, p.err, p.tail())
		}
		if p.addr == "" {
			b, _ := os.ReadFile(p.log)
			if m := readyLine.FindSubmatch(b); m != nil {
				p.addr = string(m[1])
			}
			last = "no \"running\" line in its log yet"
		}
		if p.addr != "" {
			resp, err := client.Get("http://" + p.addr + "/healthz")
			if err == nil {
				var body bytes.Buffer
				body.ReadFrom(resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					return
				}
				last = fmt.Sprintf("/healthz: %d %s", resp.StatusCode, strings.TrimSpace(body.String()))
			} else {
				last = err.Error()
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s not healthy: %v (last: %s)\n%s", p.name, ctx.Err(), last, p.tail())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// stop sends SIGTERM and requires a clean exit (status 0) within timeout.
func (p *proc) stop(t *testing.T, timeout time.Duration) {
	t.Helper()
	if !p.alive() {
		t.Errorf("%s had exited already: %v\n%s", p.name, p.err, p.tail())
		return
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
		if p.err != nil {
			t.Errorf("%s did not stop cleanly on SIGTERM: %v\n%s", p.name, p.err, p.tail())
		}
	case <-time.After(timeout):
		t.Errorf("%s did not stop within %s of SIGTERM\n%s", p.name, timeout, p.tail())
	}
}

// run runs bin with args and returns its stdout; it fails the test on a
// non-zero exit.
func run(t *testing.T, ctx context.Context, bin string, args ...string) string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\nstderr:\n%s", filepath.Base(bin), strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String()
}
