package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
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
