package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rolodex/rolodex/internal/kafkaclient"
	"github.com/rolodex/rolodex/partners"
	"github.com/rolodex/rolodex/processors/fanout"
	"github.com/rolodex/rolodex/processors/lifecycle"
)

// asMain makes the test binary run main() instead of the tests: the tests
// start it as a child to see what the real binary prints and exits with.
const asMain = "ROLODEX_TEST_AS_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(asMain) == "1" {
		main()
	}
	os.Exit(m.Run())
}

// runMain runs "rolodex args..." as a child process and returns what it
// printed and its exit code.
func runMain(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), asMain+"=1")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		t.Fatalf("rolodex %s: %v", strings.Join(args, " "), err)
	}
	return out.String(), errb.String(), code
}

func TestDefaultConfig(t *testing.T) {
	cfg, err := loadConfig("")
	if err != nil {
		t.Fatal(err)
	}
	reg, err := cfg.registry()
	if err != nil {
		t.Fatal(err)
	}
	p, ok := reg.ByKey("demo-key")
	if !ok || p.Name != "demo" || p.Tenant != "demo" {
		t.Fatalf("demo partner = %+v", p)
	}
	// The demo key has every scope (dev mode only).
	if pr, err := reg.Authenticate("Bearer demo-key"); err != nil || !slices.Equal(pr.Scopes, partners.AllScopes) {
		t.Fatalf("demo key: scopes %v, %v; want %v", pr.Scopes, err, partners.AllScopes)
	}
	if _, err := cfg.normalizer(); err != nil {
		t.Fatal(err)
	}
	m := cfg.Mappings["crm-lead"]
	if m == nil {
		t.Fatal("no crm-lead mapping")
	}
	ev, err := m.Apply([]byte(`{"lead":{"id":"L-1","contact":{"email":"a@b.co"}}}`))
	if err != nil || ev.ID != "L-1" || ev.Type != "lead.created" || ev.Identifiers["email"][0] != "a@b.co" {
		t.Fatalf("crm-lead mapped to %+v, %v", ev, err)
	}
	if cfg.HTTP.WriteTimeout.Seconds() != 10 || cfg.Topics.Partitions != 8 {
		t.Fatalf("http/topics defaults = %+v %+v", cfg.HTTP, cfg.Topics)
	}
	// The file's lifecycle keys are docs/lifecycle.md's defaults.
	if got, want := cfg.Lifecycle.Recipients(), lifecycle.DefaultRecipientsConfig(); !reflect.DeepEqual(got, want) {
		t.Fatalf("lifecycle = %+v, want %+v", got, want)
	}
	// The file's replay window is the built-in default; absent, too.
	if cfg.replayRetention() != fanout.DefaultReplayRetention || (&fileConfig{}).replayRetention() != fanout.DefaultReplayRetention {
		t.Fatalf("replay retention %s, want %s", cfg.replayRetention(), fanout.DefaultReplayRetention)
	}
}

// An absent lifecycle key keeps its default; a purpose set replaces its
// channel's, "" revokes nothing; a limit of 0 is kept (never).
func TestLifecycleConfig(t *testing.T) {
	cfg, err := loadConfig(writeTemp(t, "lifecycle: {soft_bounce_limit: 0, purposes: {sms: \"\", email: newsletter}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	got := cfg.Lifecycle.Recipients()
	want := lifecycle.RecipientsConfig{SoftBounceLimit: 0, Purposes: map[string]string{
		"email": "newsletter", "sms": "", "whatsapp": "whatsapp_marketing", "messenger": "messenger_marketing"}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("lifecycle = %+v, want %+v", got, want)
	}
	empty, err := loadConfig(writeTemp(t, "topics: {partitions: 2}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := empty.Lifecycle.Recipients(); !reflect.DeepEqual(got, lifecycle.DefaultRecipientsConfig()) {
		t.Fatalf("no lifecycle section: %+v", got)
	}
}

func writeTemp(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestConfigErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct{ name, body, want string }{
		{"unknown key", "partnerz: []\n", "partnerz"},
		{"bad yaml", "partners: [\n", "config"},
		{"negative partitions", "topics: {partitions: -1}\n", "partitions"},
		{"unknown scope", "partners: [{name: a, tenant: t, keys: [{key: s3cret-key-1, scopes: [profile:write]}]}]\n",
			`unknown scope "profile:write" (valid: events:write, profiles:read, profiles:write, admin, topics:write)`},
		{"scoped key without scopes", "partners: [{name: a, tenant: t, keys: [{key: s3cret-key-1}]}]\n", "has no scopes"},
		{"negative soft bounce limit", "lifecycle: {soft_bounce_limit: -1}\n", "lifecycle: soft_bounce_limit -1"},
		{"negative replay retention", "fanout: {replay_retention: -1h}\n", "fanout: replay_retention -1h0m0s is negative"},
		{"purpose of an unknown channel", "lifecycle: {purposes: {fax: fax_marketing}}\n", `unknown channel "fax"`},
		{"purpose not a name", "lifecycle: {purposes: {email: \"e mail\"}}\n", `"e mail" is not a consent purpose`},
		{"unknown lifecycle key", "lifecycle: {soft_bounces: 2}\n", "soft_bounces"},
		{"delivery mapping source", "partners: [{name: d, tenant: t, keys: [s3cret-key-1], delivery: {webhook: {url: 'https://crm.example/l', " +
			"secret: whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw}, mapping: {nome: contact.name}}}]\n",
			`partner d: delivery: mapping: nome: "contact.name": unknown source root "contact"`},
		{"delivery without secret", "partners: [{name: d, tenant: t, keys: [s3cret-key-1], delivery: {webhook: {url: 'https://crm.example/l'}}}]\n",
			"partner d: delivery: webhook.secret is required"},
		{"negative fan-out timeout", "fanout: {delivery: {timeout: -1s}}\n", "fanout: delivery: timeout: -1s is negative"},
		{"negative fan-out retry delay", "fanout: {delivery: {retry_schedule: [0s, -5s]}}\n", "fanout: delivery: retry_schedule: -5s is negative"},
		{"unknown fan-out key", "fanout: {delivery: {timeut: 1s}}\n", "timeut"},
		{"default tag not a name", "tags: {default: [\"no spaces\"]}\n", `tags.default: "no spaces" is not a tag name`},
		{"tag in two exclusive groups", "tags: {groups: [{name: a, tags: [x], exclusive: true}, {name: b, tags: [x], exclusive: true}]}\n",
			`tags.groups: tag "x" is in two exclusive groups, "a" and "b"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := loadServerConfig(write(tt.name+".yaml", tt.body))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tt.want)
			}
		})
	}
	if _, err := loadConfig(filepath.Join(dir, "missing.yaml")); err == nil {
		t.Fatal("missing file accepted")
	}
}

func TestCommandLine(t *testing.T) {
	tests := []struct {
		args []string
		code int
		want string
	}{
		{nil, 2, "no command"},
		{[]string{"frobnicate"}, 2, "unknown command"},
		{[]string{"run"}, 2, "which one"},
		{[]string{"run", "nothing"}, 2, "unknown subcommand"},
		{[]string{"profile", "get"}, 2, "usage: rolodex profile get ID"},
		{[]string{"version", "extra"}, 2, "unexpected argument"},
		{[]string{"run", "ingest"}, 2, "--brokers is required"},
		{[]string{"dev", "extra"}, 2, "unexpected argument"},
		{[]string{"dev", "--config", "/nonexistent.yaml", "--brokers", "127.0.0.1:1"}, 1, "nonexistent"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var out, errb bytes.Buffer
			err := run(context.Background(), tt.args, &out, &errb)
			if err == nil || exitCode(err) != tt.code || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v (exit %d), want exit %d mentioning %q", err, exitCode(err), tt.code, tt.want)
			}
		})
	}
	var out bytes.Buffer
	if err := run(context.Background(), []string{"help"}, &out, &out); err != nil || !strings.Contains(out.String(), "rolodex dev") {
		t.Fatalf("help: %v %q", err, out.String())
	}
}

// runInProcess runs "rolodex args..." in this process and returns what it
// printed and the exit code main would exit with.
func runInProcess(args ...string) (stdout, stderr string, code int) {
	var out, errb bytes.Buffer
	err := run(context.Background(), args, &out, &errb)
	return out.String(), errb.String(), exitCode(err)
}

// Every command's -h (and "help COMMAND") prints its usage, with its
// synopsis, to stdout and exits 0.
func TestCommandHelp(t *testing.T) {
	for _, c := range commands() {
		t.Run(c.name, func(t *testing.T) {
			synopsis := strings.TrimSpace("Usage: rolodex " + c.name + " " + c.args)
			calls := [][]string{
				append(strings.Fields(c.name), "-h"),
				append(strings.Fields(c.name), "--help"),
				{"help", c.name},
			}
			if c.name == "help" { // its help is the top-level help
				synopsis, calls = "Usage:\n  rolodex dev", [][]string{{"help", "-h"}, {"help", "help"}}
			}
			for _, args := range calls {
				out, errOut, code := runInProcess(args...)
				if code != 0 || errOut != "" || !strings.Contains(out, synopsis) {
					t.Fatalf("rolodex %s: exit %d, stderr %q, stdout:\n%s\nwant exit 0 and stdout with %q",
						strings.Join(args, " "), code, errOut, out, synopsis)
				}
			}
		})
	}
	// A group of commands lists its members.
	out, _, code := runInProcess("run", "-h")
	if code != 0 || !strings.Contains(out, "rolodex run ingest") || !strings.Contains(out, "rolodex run sink") {
		t.Fatalf("run -h: exit %d\n%s", code, out)
	}
	// A bad flag is a usage error: exit 2, the usage on stderr.
	out, errOut, code := runInProcess("profile", "get", "--nope")
	if code != 2 || out != "" || !strings.Contains(errOut, "flag provided but not defined: -nope") || !strings.Contains(errOut, "Usage: rolodex profile get ID") {
		t.Fatalf("profile get --nope: exit %d, stdout %q, stderr:\n%s", code, out, errOut)
	}
}

// The top-level help lists every command of the dispatch table.
func TestHelpListsEveryCommand(t *testing.T) {
	lists := func(args []string, help string) {
		t.Helper()
		for _, c := range commands() {
			if !strings.Contains(help, "\n  "+strings.TrimSpace("rolodex "+c.name+" "+c.args)+"\n") {
				t.Errorf("rolodex %v does not list %q:\n%s", args, c.name, help)
			}
		}
	}
	for _, args := range [][]string{{"help"}, {"-h"}, {"--help"}} {
		out, errOut, code := runInProcess(args...)
		if code != 0 || errOut != "" {
			t.Fatalf("rolodex %v: exit %d, stderr %q", args, code, errOut)
		}
		lists(args, out)
	}
	// No command at all: the same help, on stderr, exit 2.
	out, errOut, code := runInProcess()
	if code != 2 || out != "" {
		t.Fatalf("no command: exit %d, stdout %q", code, out)
	}
	lists(nil, errOut)
}

// The binary exits with the code exitCode gives: 0 after -h.
func TestMainExitCode(t *testing.T) {
	tests := []struct {
		args   []string
		code   int
		stdout string
	}{
		{[]string{"dev", "-h"}, 0, "Usage: rolodex dev [flags]"},
		{[]string{"help"}, 0, "rolodex bench identity"},
		{[]string{"frobnicate"}, 2, ""},
		{[]string{"report", "activity", "--nope"}, 2, ""},
		{[]string{"bench", "identity", "--workload", "nope"}, 2, ""},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			out, errOut, code := runMain(t, tt.args...)
			if code != tt.code || !strings.Contains(out, tt.stdout) {
				t.Fatalf("exit %d, want %d; stdout:\n%s\nstderr:\n%s", code, tt.code, out, errOut)
			}
		})
	}
}

func TestVersion(t *testing.T) {
	out, errOut, code := runInProcess("version")
	if code != 0 || errOut != "" || !strings.HasPrefix(out, "rolodex ") ||
		!strings.Contains(out, "go:       "+runtime.Version()+" "+runtime.GOOS+"/"+runtime.GOARCH+"\n") {
		t.Fatalf("version: exit %d, stderr %q, stdout:\n%s", code, errOut, out)
	}
	tests := []struct {
		name string
		bi   debug.BuildInfo
		want string
	}{
		{"release", debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v1.2.3"}, Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "0123abcd"}, {Key: "vcs.time", Value: "2026-11-23T10:00:00Z"}, {Key: "vcs.modified", Value: "false"},
		}}, "rolodex v1.2.3\n  revision: 0123abcd (2026-11-23T10:00:00Z)\n  go:       go1.26.8 "},
		{"dirty checkout", debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v0.0.0-20261123100000-0123abcd+dirty"}, Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "0123abcd"}, {Key: "vcs.modified", Value: "true"},
		}}, "rolodex v0.0.0-20261123100000-0123abcd+dirty\n  revision: 0123abcd, with uncommitted changes\n"},
		{"no VCS", debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}}, "rolodex (devel)\n  revision: unknown ("},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := versionText(&tt.bi); !strings.HasPrefix(got, tt.want) {
				t.Fatalf("got\n%s\nwant it to start with\n%s", got, tt.want)
			}
		})
	}
}

// dev checks its config before it starts the embedded broker: with the
// broker's address taken, a bad config is reported, not the address.
func TestDevBadConfigFailsBeforeBroker(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	dir := t.TempDir()
	tests := []struct{ name, body, want string }{
		{"unknown key", "partnerz: []\n", "partnerz"},
		{"short key", "partners: [{name: p, tenant: t, keys: [short]}]\n", "at least 8 characters"},
		{"no partners", "default_region: BR\n", "no partners"},
		{"bad signing secret", "partners: [{name: p, tenant: t, keys: [key-12345], signing_secret: whsec_not*base64}]\n", "signing_secret is not base64"},
		{"bad mapping", "partners: [{name: p, tenant: t, keys: [key-12345]}]\nmappings: {m: {type: lead}}\n", "mapping"},
		{"missing file", "", "missing.yaml"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, "missing.yaml")
			if tt.body != "" {
				path = filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "-")+".yaml")
				if err := os.WriteFile(path, []byte(tt.body), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			var out, errb bytes.Buffer
			err := run(context.Background(), []string{"dev", "--config", path, "--broker-addr", taken.Addr().String(), "--http-addr", "127.0.0.1:0"}, &out, &errb)
			if err == nil || !strings.Contains(err.Error(), tt.want) || strings.Contains(errb.String(), "broker started") {
				t.Fatalf("err = %v, want one mentioning %q before the broker starts; log:\n%s", err, tt.want, errb.String())
			}
		})
	}
}

// A bad $ROLODEX_KAFKA_SESSION_TIMEOUT stops every command before anything
// starts (dev would start its broker, run would connect), naming the
// variable; version and help still answer.
func TestBadSessionEnvironmentFailsBeforeStart(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	t.Setenv(kafkaclient.EnvSessionTimeout, "200ms")
	for _, args := range [][]string{
		{"dev", "--broker-addr", taken.Addr().String(), "--http-addr", "127.0.0.1:0"},
		{"run", "ingest", "--brokers", taken.Addr().String()},
		{"deadletters", "tail", "--brokers", taken.Addr().String()},
	} {
		var out, errb bytes.Buffer
		err := run(context.Background(), args, &out, &errb)
		if err == nil || !strings.Contains(err.Error(), kafkaclient.EnvSessionTimeout) || strings.Contains(errb.String(), "broker started") {
			t.Errorf("%v: err = %v, want one naming %s before anything starts; log:\n%s", args, err, kafkaclient.EnvSessionTimeout, errb.String())
		}
	}
	for _, args := range [][]string{{"version"}, {"help"}} {
		var out, errb bytes.Buffer
		if err := run(context.Background(), args, &out, &errb); err != nil {
			t.Errorf("%v: %v", args, err)
		}
	}
}

// A command interrupted while it starts stops cleanly; a real failure, or
// any error without the signal, stays an error.
func TestStoppedBySignal(t *testing.T) {
	cause := errors.New("terminated signal received")
	ctx, cancel := context.WithCancelCause(context.Background())
	if stoppedBySignal(ctx, fmt.Errorf("migrate: %w", context.Canceled)) {
		t.Error("a cancellation before any signal counted as a stop")
	}
	cancel(cause)
	for _, err := range []error{
		fmt.Errorf("sink: migrate: create database x: %w", cause),
		fmt.Errorf("connect: %w", context.Canceled),
	} {
		if !stoppedBySignal(ctx, err) {
			t.Errorf("%v: not counted as stopped by the signal", err)
		}
	}
	for _, err := range []error{nil, errors.New("sink: commit: broker gone")} {
		if stoppedBySignal(ctx, err) {
			t.Errorf("%v: counted as stopped by the signal", err)
		}
	}
}

// Every "rolodex run" component that reads partners refuses to start on the
// built-in configuration: its demo key is public. It stops before it touches
// Kafka or listens.
func TestRunRefusesBuiltinDemoCredential(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	brokers := strings.Join(cluster.ListenAddrs(), ",")
	// A config file of one's own that still gives a partner the demo key
	// is refused as well.
	reused := filepath.Join(t.TempDir(), "reused.yaml")
	if err := os.WriteFile(reused, []byte("partners:\n  - {name: crm, tenant: acme, keys: [s3cret-crm-key, demo-key]}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, component := range []string{"ingest", "processors", "api"} {
		for _, config := range []string{"", reused} {
			t.Run(component+"/config="+filepath.Base(config), func(t *testing.T) {
				var out, errb bytes.Buffer
				args := []string{"run", component, "--brokers", brokers, "--http-addr", "127.0.0.1:0"}
				if component != "ingest" {
					args = append(args, "--state-dir", t.TempDir())
				}
				want, code := []string{"--config is required", "demo-key", `"rolodex dev" only`}, 2
				if config != "" {
					args = append(args, "--config", config)
					want, code = []string{`crm (key "demo-key")`, "public key", `"rolodex dev" only`}, 1
				}
				// Bounded, so that a command that does start ends the test.
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				defer cancel()
				err := run(ctx, args, &out, &errb)
				if err == nil {
					t.Fatal("started on the built-in demo credential")
				}
				for _, w := range want {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not say %q", err, w)
					}
				}
				if exitCode(err) != code {
					t.Errorf("exit code %d, want %d", exitCode(err), code)
				}
			})
		}
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(cluster.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	topics, err := kadm.NewClient(cl).ListTopics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(topics) != 0 {
		t.Fatalf("a refused command created topics: %v", topics.Names())
	}
}

func TestPublicKeys(t *testing.T) {
	builtin, err := loadConfig("")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{`demo (key "demo-key")`, `dealer-sp (key "dealer-sp-key")`, `dealer-rj (key "dealer-rj-key")`}
	if got := builtin.publicKeys(); !slices.Equal(got, want) {
		t.Fatalf("built-in configuration: public keys %v, want the demo partner's and the demo dealers' %v", got, want)
	}
	own := &fileConfig{Partners: []partners.Partner{{Name: "crm", Tenant: "acme", Keys: []string{"s3cret-crm-key"}}}}
	if got := own.publicKeys(); len(got) != 0 {
		t.Fatalf("own keys reported public: %v", got)
	}
	copied := &fileConfig{Partners: []partners.Partner{{Name: "crm", Tenant: "acme", Keys: []string{"s3cret-crm-key", "demo-key"}}}}
	if got := copied.publicKeys(); len(got) != 1 || got[0] != `crm (key "demo-key")` {
		t.Fatalf("a config reusing demo-key: public keys %v", got)
	}
}

// signalWriter is a concurrency-safe buffer that closes found once what it
// holds contains want.
type signalWriter struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	want  string
	found chan struct{}
}

func (w *signalWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n, err := w.buf.Write(p)
	if w.found != nil && strings.Contains(w.buf.String(), w.want) {
		close(w.found)
		w.found = nil
	}
	return n, err
}

func (w *signalWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// Dev mode keeps the built-in demo partner, says so, and accepts events
// sent with its key.
func TestDevServesDemoCredential(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	found := make(chan struct{})
	stdout := &signalWriter{want: "\nTry:", found: found}
	var stderr signalWriter
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"dev", "--broker-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"}, stdout, &stderr)
	}()
	select {
	case <-found:
	case err := <-done:
		t.Fatalf("dev stopped before it was up: %v\n%s\n%s", err, stdout, stderr.String())
	case <-time.After(2 * time.Minute):
		t.Fatalf("dev not up after 2 minutes:\n%s\n%s", stdout, stderr.String())
	}
	out := stdout.String()
	for _, want := range []string{"Partner: demo  tenant: demo  bearer key: demo-key", `Dev mode only: the demo credentials are public (demo (key "demo-key"), dealer-sp (key "dealer-sp-key"), dealer-rj (key "dealer-rj-key"))`} {
		if !strings.Contains(out, want) {
			t.Errorf("dev output does not say %q:\n%s", want, out)
		}
	}
	_, rest, _ := strings.Cut(out, "HTTP:    http://")
	addr, _, _ := strings.Cut(rest, " ")
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+"/v1/events",
		strings.NewReader(`{"id":"e-1","type":"page.viewed","identifiers":{"email":"ana@example.com"}}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer demo-key")
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusAccepted {
		t.Fatalf("POST with demo-key: %d %s", res.StatusCode, body)
	}
	if strings.Contains(stderr.String(), "public demo key") {
		t.Errorf("dev mode warned about its own demo key:\n%s", stderr.String())
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("dev: %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("dev did not stop within a minute of its context ending")
	}
}
