package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The README's commands, run the way a new user runs them: in one shell,
// in the README's order, each block as written. The README marks every
// block this test runs with a comment line before it,
//
//	<!-- readme-test: NAME -->
//
// and readmeSteps below says, for each NAME in the same order, how to run
// that block and what its output must show. A marked block without a step,
// or a step without its block, fails the test, so the two cannot drift.
//
// What differs from a user's shell, all of it here:
//   - Ports and paths: dev mode runs on free ports and the ClickHouse server
//     in the test's directory, so the blocks' 127.0.0.1:8080, 127.0.0.1:9092
//     and /tmp/ch are replaced by those, and a wrapper named rolodex adds
//     the port flags to the commands that rely on dev mode's default
//     addresses (readmeShim).
//   - "go install" installs into the test's directory ($GOBIN), which is on
//     PATH; no ROLODEX_* variable comes from the environment of the test.
//   - Blocks that keep running (dev mode, --follow, a receiver "in another
//     terminal") run in the background; "stop dev mode (Ctrl-C)" is a
//     SIGINT to the previous one, which must then exit 0. The webhook
//     receiver's 127.0.0.1:8765 is a free port too.
//   - Blocks that read what other blocks caused (profiles, dead letters,
//     reports) run again until their output shows it, for up to two
//     minutes (the identity group's first join on a loaded two-core machine
//     takes seconds), as a user would after a moment.

// stepKind says how a block runs.
type stepKind int

const (
	// runBlock runs the block; every command in it must succeed.
	runBlock stepKind = iota
	// fileBlock writes the block to the file named by the step.
	fileBlock
	// serveBlock runs the block in the background until the next
	// serveBlock, or the end, interrupts it; it is ready when dev mode
	// answers /healthz.
	serveBlock
	// followBlock runs the block in the background until its output shows
	// want, then interrupts it.
	followBlock
	// terminalBlock runs the block in the background, as in another
	// terminal: it is ready when its stdout or stderr shows ready; a later
	// step that watches it interrupts it once its stdout shows what that
	// step wants of it.
	terminalBlock
)

type readmeStep struct {
	name string
	kind stepKind
	// inRepo runs the block in the repository root; the others run in the
	// test's working directory, where the file blocks are.
	inRepo bool
	// file is where a fileBlock goes, in the working directory.
	file string
	// retry runs the block again until it succeeds and shows want.
	retry bool
	// want are strings stdout must contain; one listed twice must be
	// there twice.
	want []string
	// check, when set, looks at stdout further.
	check func(t *testing.T, w *readmeWorld, stdout string)
	// ready is what a terminalBlock prints once it is ready.
	ready string
	// watch names a terminalBlock whose stdout must show watchWant after
	// this step ran (within two minutes); then it is interrupted and must
	// exit 0.
	watch     string
	watchWant []string
}

var readmeSteps = []readmeStep{
	{name: "install", inRepo: true, want: []string{"rolodex ", "go:       go1.", "rolodex deadletters tail"}, check: checkEveryHelp},
	{name: "dev", kind: serveBlock},
	{name: "post-event", want: []string{`"accepted":1`}},
	{name: "post-cloudevent-structured", want: []string{`"accepted":1`}},
	{name: "post-cloudevent-binary", want: []string{`"accepted":1`}},
	{name: "post-webhook", want: []string{`"accepted":1`}},
	{name: "post-provider-webhooks", want: []string{`"accepted":2`, `"accepted":1`}},
	{name: "signing-config", kind: fileBlock, file: "signing.yaml"},
	{name: "dev-signing", kind: serveBlock},
	{name: "post-signed", want: []string{`"accepted":1`, `"error":"bad_signature"`}},
	{name: "kcat", retry: true, want: []string{"key=p_"}},
	{name: "deadletters", retry: true, want: []string{"invalid_json", "rolodex.ingest.demo[", "not an event"}},
	{name: "deadletters-follow", kind: followBlock, want: []string{`"reason":"invalid_json"`, `"payload":"not an event"`}},
	{name: "contacts-csv", kind: fileBlock, file: "contacts.csv"},
	{name: "import-csv", want: []string{"rows read:     2", "accepted:      2"}},
	{name: "read-profiles", retry: true, want: []string{
		// Four commands, one profile.
		`"id": "p_3qr07gtl18llnqdkb0j4bkc6pc"`, `"id": "p_3qr07gtl18llnqdkb0j4bkc6pc"`,
		`"id": "p_3qr07gtl18llnqdkb0j4bkc6pc"`, `"id": "p_3qr07gtl18llnqdkb0j4bkc6pc"`,
		`"+5511912345678"`, `"name": "Ana"`,
	}},
	{name: "leads-csv", kind: fileBlock, file: "leads.csv"},
	{name: "status", want: []string{`"published": 2`}},
	{name: "status-read", retry: true, want: []string{
		`"tag": "campaign-12"`, `"tag": "lead"`, `"tag": "vip"`, `"source": "manual"`,
		`"status": "granted"`, `"blacklisted": false`,
	}},
	{name: "rules-yaml", kind: fileBlock, file: "rules.yaml"},
	{name: "rules-apply", want: []string{
		"hot-lead: created (version 1)\n", "reachable-vip: created (version 1)\n", "lapsed: created (version 1)\n",
		"3 rules\n", `"result": true`, `"reason": "syntax"`, `"column": 16`, "rule lapsed deleted\n",
	}},
	{name: "messages-post", want: []string{`"accepted":3`, `"reason":"invalid_message_event"`}},
	{name: "messages-read", retry: true, want: []string{
		`"state": "bounced"`, `"bounce": "hard"`, `"state": "none"`, `"reason": "invalid_recipient"`,
		`"reason": "hard_bounce"`, `"reason":"invalid_recipient"`, `message \"promo-caio\": event \"m-3\" asks for sent in state none`,
	}},
	{name: "routing-yaml", kind: fileBlock, file: "routing.yaml"},
	{name: "routing-apply", want: []string{"routing rules: version 1 (2 rules)\n", `"version": 1`,
		`"error": "invalid_rules"`, "a cycle of fallbacks: a -> a", `"accepted":1`}},
	{name: "routing-lead", retry: true, want: []string{`"status": "routed"`, `"partner": "dealer-rj"`, `"rule": "national"`}},
	{name: "routing-accept", retry: true, want: []string{`"accepted":1`, `"status": "accepted"`}},
	{name: "openapi", want: []string{"openapi: 3.1.0", `{"openapi":"3.1.0"`}},
	{name: "clickhouse-start", inRepo: true, want: []string{"rolodex on 127.0.0.1:", "is at version"}},
	{name: "dev-clickhouse", kind: serveBlock},
	{name: "post-for-reports", want: []string{`"accepted":1`}},
	// One event: one row in each report, its counts aligned right.
	{name: "reports", retry: true, want: []string{"(1 row)\n", "(1 row)\n", "events  profiles\n", "     1         1\n"}},
	{name: "clickhouse-stop", inRepo: true},
	// Partner fan-out: a webhook subscription to rolodex webhooks listen
	// and a Kafka one, one event published to both.
	{name: "fanout-subscribe", want: []string{`"name": "car-chosen"`, "\"webhook\": {\n    \"url\": \"http://127.0.0.1:", `/hooks"`, `"kafka": true`}},
	{name: "fanout-listen", kind: terminalBlock, ready: "rolodex webhooks listen: on http://"},
	{name: "fanout-publish", want: []string{`"accepted":1`}, watch: "fanout-listen", watchWant: []string{
		// One line: the webhook id (subscription id and event id), the body.
		`.chose-1 {"event_id":"chose-1","kind":"topic_event","profile":{"identifiers":{"email":["lia@example.com"]},"traits":{"name":"Lia"}},"profile_id":"p_`,
		`"properties":{"model":"SUV"},"publisher":"demo","tenant":"demo","time":"`, `"topic":"car-chosen","type":"car.chosen"}` + "\n",
	}},
	{name: "fanout-kafka", retry: true, want: []string{"key=p_", ",rolodex_kind=topic_event,", ",rolodex_topic=car-chosen,", `"event_id":"chose-1"`}},
}

// readmeBlock is a marked code block of the README.
type readmeBlock struct{ name, body string }

var (
	readmeMarker = regexp.MustCompile("(?m)^<!-- readme-test:")
	readmeMarked = regexp.MustCompile("(?ms)^<!-- readme-test: ([a-z0-9-]+) -->\n```[a-z]*\n(.*?)\n```\n")
)

func readmeBlocks(t *testing.T, path string) []readmeBlock {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []readmeBlock
	for _, m := range readmeMarked.FindAllStringSubmatch(string(b), -1) {
		out = append(out, readmeBlock{name: m[1], body: m[2]})
	}
	if n := len(readmeMarker.FindAllString(string(b), -1)); n != len(out) {
		t.Fatalf("README.md has %d readme-test markers but %d of them are right before a code block", n, len(out))
	}
	return out
}

func TestREADME(t *testing.T) {
	repo, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	blocks := readmeBlocks(t, filepath.Join(repo, "README.md"))
	var names, stepNames []string
	for _, b := range blocks {
		names = append(names, b.name)
	}
	for _, s := range readmeSteps {
		stepNames = append(stepNames, s.name)
	}
	if strings.Join(names, " ") != strings.Join(stepNames, " ") {
		t.Fatalf("README.md's marked blocks are\n  %s\nbut the test's steps are\n  %s", strings.Join(names, " "), strings.Join(stepNames, " "))
	}

	w := newReadmeWorld(t, repo)
	for i, s := range readmeSteps {
		body := w.substitute(blocks[i].body)
		t.Logf("step %s:\n%s", s.name, body)
		switch s.kind {
		case fileBlock:
			if err := os.WriteFile(filepath.Join(w.work, s.file), []byte(body+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		case runBlock:
			w.runStep(s, body)
			if s.watch != "" {
				job := w.jobs[s.watch]
				if job == nil {
					t.Fatalf("%s watches %s, which is not a terminal block before it", s.name, s.watch)
				}
				w.waitOutput(job, s.watchWant)
				delete(w.jobs, s.watch)
				if code := w.interrupt(job); code != 0 {
					t.Fatalf("%s: exit %d after Ctrl-C; stderr:\n%s", job.name, code, readFile(job.errPath))
				}
			}
		case serveBlock:
			w.stopServer()
			w.server = w.background(s, body)
			w.waitHealthy(w.server)
		case terminalBlock:
			job := w.background(s, body)
			w.jobs[s.name] = job
			w.waitReady(job, s.ready)
		case followBlock:
			job := w.background(s, body)
			w.waitOutput(job, s.want)
			if code := w.interrupt(job); code != 0 {
				t.Fatalf("%s: exit %d after Ctrl-C; stderr:\n%s", s.name, code, readFile(job.errPath))
			}
		}
	}
	for name := range w.jobs {
		t.Fatalf("the terminal block %s is watched by no step after it", name)
	}
	w.stopServer()
}

// readmeWorld is the user's machine: a shell, a working directory, free
// ports.
type readmeWorld struct {
	t          *testing.T
	repo, work string
	httpAddr   string
	kafkaAddr  string
	shell      *exec.Cmd
	stdin      io.WriteCloser
	lines      chan string
	hookAddr   string
	server     *readmeJob
	jobs       map[string]*readmeJob // the terminal blocks running
	seq        int
}

// readmeJob is a block running in the background.
type readmeJob struct {
	name             string
	pid              int
	outPath, errPath string
}

func newReadmeWorld(t *testing.T, repo string) *readmeWorld {
	work := t.TempDir()
	ports := freeAddrs(t, repo, 3)
	w := &readmeWorld{t: t, repo: repo, work: work, httpAddr: ports[0], kafkaAddr: ports[1], hookAddr: ports[2],
		jobs: map[string]*readmeJob{}, lines: make(chan string, 16)}
	for _, d := range []string{"bin", "shim", "steps"} {
		if err := os.MkdirAll(filepath.Join(work, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	shim := fmt.Sprintf(readmeShim, filepath.Join(work, "bin", "rolodex"), w.kafkaAddr, w.httpAddr, w.httpAddr, w.kafkaAddr, w.hookAddr)
	if err := os.WriteFile(filepath.Join(work, "shim", "rolodex"), []byte(shim), 0o755); err != nil {
		t.Fatal(err)
	}
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "ROLODEX_") && !strings.HasPrefix(kv, "GOBIN=") && !strings.HasPrefix(kv, "PATH=") {
			env = append(env, kv)
		}
	}
	env = append(env, "GOBIN="+filepath.Join(work, "bin"),
		"PATH="+filepath.Join(work, "shim")+":"+filepath.Join(work, "bin")+":"+os.Getenv("PATH"))

	// One bash for the whole session, fed block by block on stdin. Job
	// control (set -m) puts each background block in a process group of its
	// own, as in a terminal, so that Ctrl-C (SIGINT to the group) reaches
	// the command itself. A failing command is written down by the ERR
	// trap; pipefail makes a failing stage fail its pipeline.
	w.shell = exec.Command("bash", "--noprofile", "--norc", "-s")
	w.shell.Dir = work
	w.shell.Env = env
	shellErr, err := os.Create(filepath.Join(work, "steps", "shell.err"))
	if err != nil {
		t.Fatal(err)
	}
	w.shell.Stderr = shellErr
	if w.stdin, err = w.shell.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := w.shell.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := w.shell.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			w.lines <- sc.Text()
		}
		close(w.lines)
	}()
	t.Cleanup(w.close)
	w.send("set -m -o pipefail\ntrap 'echo \"$BASH_COMMAND (exit $?)\" >>\"$FAILED\"' ERR\n")
	return w
}

// readmeShim is the rolodex the blocks run: it adds dev mode's ports to
// the commands that would use their defaults (127.0.0.1:9092 and :8080),
// and the receiver's to webhooks listen (127.0.0.1:8765).
const readmeShim = `#!/bin/sh
real=%q
case "$1 $2" in
"dev "*) exec "$real" "$@" --broker-addr %s --http-addr %s ;;
"profile get" | "profile lookup" | "message get" | "lead get" | "routing "* | "tag "* | "blacklist "* | "consent "* | "rules "* | "topics "* | "subscriptions "*) exec "$real" "$@" --api http://%s ;;
"deadletters tail" | "import csv") exec "$real" "$@" --brokers %s ;;
"webhooks listen") exec "$real" "$@" --addr %s ;;
esac
exec "$real" "$@"
`

// freeAddrs returns n distinct 127.0.0.1 addresses nothing listens on,
// for servers the test starts later (dev mode, the webhook receiver), from
// scripts/free-ports: drawn below the kernel's ephemeral range, so that no
// other process's connection can take one before the server binds it (a
// port from binding port 0 can be taken as an outgoing connection's source
// port meanwhile; a run of this test failed with "address already in use").
func freeAddrs(t *testing.T, repo string, n int) []string {
	t.Helper()
	out, err := exec.Command(filepath.Join(repo, "scripts", "free-ports"), strconv.Itoa(n)).Output()
	if err != nil {
		t.Fatalf("scripts/free-ports: %v", err)
	}
	var addrs []string
	for _, p := range strings.Fields(string(out)) {
		addrs = append(addrs, "127.0.0.1:"+p)
	}
	if len(addrs) != n {
		t.Fatalf("scripts/free-ports %d printed %q", n, out)
	}
	return addrs
}

// substitute puts the test's ports and directories into a block.
func (w *readmeWorld) substitute(body string) string {
	return strings.NewReplacer(
		"127.0.0.1:8080", w.httpAddr,
		"127.0.0.1:9092", w.kafkaAddr,
		"127.0.0.1:8765", w.hookAddr,
		"/tmp/ch", filepath.Join(w.work, "ch"),
	).Replace(body)
}

// send writes shell input.
func (w *readmeWorld) send(s string) {
	if _, err := io.WriteString(w.stdin, s); err != nil {
		w.t.Fatalf("shell: %v", err)
	}
}

// expect reads the shell's next line, which must start with prefix, and
// returns the rest.
func (w *readmeWorld) expect(prefix string, timeout time.Duration) string {
	w.t.Helper()
	select {
	case l, ok := <-w.lines:
		if !ok {
			w.t.Fatalf("the shell exited; its stderr:\n%s", readFile(filepath.Join(w.work, "steps", "shell.err")))
		}
		if !strings.HasPrefix(l, prefix) {
			w.t.Fatalf("shell printed %q, want a line starting with %q", l, prefix)
		}
		return strings.TrimPrefix(l, prefix)
	case <-time.After(timeout):
		w.t.Fatalf("the shell did not finish within %s", timeout)
	}
	return ""
}

func (w *readmeWorld) paths(name string) (out, errPath, failed string) {
	w.seq++
	base := filepath.Join(w.work, "steps", fmt.Sprintf("%02d-%s", w.seq, name))
	return base + ".out", base + ".err", base + ".failed"
}

func (w *readmeWorld) dir(s readmeStep) string {
	if s.inRepo {
		return w.repo
	}
	return w.work
}

// runStep runs a runBlock, again and again for a retry step until it
// passes or two minutes are over.
func (w *readmeWorld) runStep(s readmeStep, body string) {
	w.t.Helper()
	timeout := 2 * time.Minute
	if s.name == "install" {
		timeout = 10 * time.Minute // go install may compile everything
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		out, errPath, failed := w.paths(s.name)
		w.send(fmt.Sprintf("FAILED=%q; cd %q\n{\n%s\n} >%q 2>%q </dev/null\necho '##done'\n", failed, w.dir(s), body, out, errPath))
		w.expect("##done", timeout)
		stdout, stderr, fails := readFile(out), readFile(errPath), readFile(failed)
		missing := missingOutput(stdout, s.want)
		if fails == "" && missing == "" {
			if s.check != nil {
				s.check(w.t, w, stdout)
			}
			return
		}
		if !s.retry || time.Now().After(deadline) {
			w.t.Fatalf("%s: failed commands:\n%s\nmissing from stdout: %s\nstdout:\n%s\nstderr:\n%s", s.name, fails, missing, stdout, stderr)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// missingOutput returns the wanted strings stdout lacks (as often as
// they are listed), quoted, or "".
func missingOutput(stdout string, want []string) string {
	need := map[string]int{}
	for _, s := range want {
		need[s]++
	}
	var missing []string
	for _, s := range want {
		if need[s] > 0 && strings.Count(stdout, s) < need[s] {
			missing = append(missing, strconv.Quote(s))
			need[s] = 0
		}
	}
	return strings.Join(missing, ", ")
}

// background starts a block in the background.
func (w *readmeWorld) background(s readmeStep, body string) *readmeJob {
	w.t.Helper()
	out, errPath, failed := w.paths(s.name)
	w.send(fmt.Sprintf("FAILED=%q; cd %q\n{\n%s\n} >%q 2>%q </dev/null &\necho \"##bg $!\"\n", failed, w.dir(s), body, out, errPath))
	pid, err := strconv.Atoi(w.expect("##bg ", 30*time.Second))
	if err != nil {
		w.t.Fatal(err)
	}
	return &readmeJob{name: s.name, pid: pid, outPath: out, errPath: errPath}
}

// interrupt sends Ctrl-C (SIGINT to the job's process group) and returns
// the job's exit code.
func (w *readmeWorld) interrupt(j *readmeJob) int {
	w.t.Helper()
	w.send(fmt.Sprintf("kill -INT -- -%d; wait %d; echo \"##exit $?\"\n", j.pid, j.pid))
	code, err := strconv.Atoi(w.expect("##exit ", 90*time.Second))
	if err != nil {
		w.t.Fatal(err)
	}
	return code
}

func (w *readmeWorld) stopServer() {
	w.t.Helper()
	if w.server == nil {
		return
	}
	j := w.server
	w.server = nil
	if code := w.interrupt(j); code != 0 {
		w.t.Fatalf("%s: exit %d after Ctrl-C; stderr:\n%s", j.name, code, readFile(j.errPath))
	}
}

// alive reports whether the job's process group still has a process.
func alive(j *readmeJob) bool { return syscall.Kill(-j.pid, 0) == nil }

// waitHealthy waits until dev mode answers /healthz with 200.
func (w *readmeWorld) waitHealthy(j *readmeJob) {
	w.t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		res, err := http.Get("http://" + w.httpAddr + "/healthz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			w.t.Fatalf("%s: /healthz did not answer 200 within 2 minutes (%v); stderr:\n%s", j.name, err, readFile(j.errPath))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// waitReady waits until the job's stdout or stderr shows ready.
func (w *readmeWorld) waitReady(j *readmeJob, ready string) {
	w.t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for !strings.Contains(readFile(j.outPath)+readFile(j.errPath), ready) {
		if time.Now().After(deadline) || !alive(j) {
			w.t.Fatalf("%s: did not print %q (running: %v); stdout:\n%s\nstderr:\n%s",
				j.name, ready, alive(j), readFile(j.outPath), readFile(j.errPath))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitOutput waits until the job's stdout shows want.
func (w *readmeWorld) waitOutput(j *readmeJob, want []string) {
	w.t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		missing := missingOutput(readFile(j.outPath), want)
		if missing == "" {
			return
		}
		if time.Now().After(deadline) || !alive(j) {
			w.t.Fatalf("%s: stdout lacks %s after two minutes (running: %v); stdout:\n%s\nstderr:\n%s",
				j.name, missing, alive(j), readFile(j.outPath), readFile(j.errPath))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// close ends whatever a failed test left running: background blocks, the
// ClickHouse server, the shell.
func (w *readmeWorld) close() {
	if w.server != nil && alive(w.server) {
		syscall.Kill(-w.server.pid, syscall.SIGKILL)
	}
	for _, j := range w.jobs {
		if alive(j) {
			syscall.Kill(-j.pid, syscall.SIGKILL)
		}
	}
	if _, err := os.Stat(filepath.Join(w.work, "ch", "pid")); err == nil {
		stop := exec.Command(filepath.Join(w.repo, "scripts", "clickhouse"), "stop", filepath.Join(w.work, "ch"))
		if out, err := stop.CombinedOutput(); err != nil {
			w.t.Logf("scripts/clickhouse stop: %v\n%s", err, out)
		}
	}
	w.stdin.Close()
	done := make(chan struct{})
	go func() { w.shell.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		w.shell.Process.Kill()
	}
}

func readFile(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

// checkEveryHelp runs "COMMAND -h" of every command "rolodex help" lists,
// with the installed binary: each prints its usage and exits 0.
func checkEveryHelp(t *testing.T, w *readmeWorld, help string) {
	t.Helper()
	word := regexp.MustCompile(`^[a-z][a-z-]*$`)
	n := 0
	for _, line := range strings.Split(help, "\n") {
		rest, ok := strings.CutPrefix(line, "  rolodex ")
		if !ok {
			continue
		}
		var name []string
		for _, f := range strings.Fields(rest) {
			if !word.MatchString(f) {
				break
			}
			name = append(name, f)
		}
		cmd := exec.Command(filepath.Join(w.work, "bin", "rolodex"), append(name, "-h")...)
		out, err := cmd.Output()
		ok = strings.HasPrefix(string(out), "Usage: rolodex "+strings.Join(name, " "))
		if strings.Join(name, " ") == "help" { // the top-level help
			ok = strings.Contains(string(out), "Usage:\n  rolodex dev")
		}
		if err != nil || !ok {
			t.Errorf("rolodex %s -h: %v; stdout:\n%s", strings.Join(name, " "), err, out)
		}
		n++
	}
	if n < 10 {
		t.Fatalf("rolodex help lists %d commands:\n%s", n, help)
	}
}
