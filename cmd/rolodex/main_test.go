package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rolodex/rolodex/internal/partners"
)

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
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := loadConfig(write(tt.name+".yaml", tt.body))
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
		{[]string{"run", "nothing"}, 2, "unknown component"},
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
	for _, component := range []string{"ingest", "processors", "api"} {
		t.Run(component, func(t *testing.T) {
			var out, errb bytes.Buffer
			args := []string{"run", component, "--brokers", brokers, "--http-addr", "127.0.0.1:0"}
			if component != "ingest" {
				args = append(args, "--state-dir", t.TempDir())
			}
			// Bounded, so that a command that does start ends the test.
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			err := run(ctx, args, &out, &errb)
			if err == nil {
				t.Fatal("started without --config, on the built-in demo credential")
			}
			for _, want := range []string{"--config is required", "demo-key", `"rolodex dev" only`} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not say %q", err, want)
				}
			}
			if exitCode(err) != 2 {
				t.Errorf("exit code %d, want 2", exitCode(err))
			}
		})
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
	if got := builtin.publicKeys(); len(got) != 1 || got[0] != `demo (key "demo-key")` {
		t.Fatalf("built-in configuration: public keys %v, want the demo partner's", got)
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
	for _, want := range []string{"Partner: demo  tenant: demo  bearer key: demo-key", `Dev mode only: the demo credential is public (demo (key "demo-key"))`} {
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
