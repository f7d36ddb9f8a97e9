package main

import (
	"bytes"
	"context"
	"net"
	"strings"
	"testing"
)

// closedAddr returns a host:port nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// The ClickHouse commands connect to $ROLODEX_CLICKHOUSE_ADDR unless
// --clickhouse says otherwise. Nothing listens on either address, so the
// error names the one they tried.
func TestClickHouseAddrFromEnv(t *testing.T) {
	fromEnv, fromFlag := closedAddr(t), closedAddr(t)
	t.Setenv(envClickHouseAddr, fromEnv)
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"report", "activity"}, fromEnv},
		{[]string{"clickhouse", "migrate"}, fromEnv},
		{[]string{"run", "sink", "--brokers", closedAddr(t), "--metrics-addr", "127.0.0.1:0"}, fromEnv},
		{[]string{"report", "activity", "--clickhouse", fromFlag}, fromFlag},
		{[]string{"clickhouse", "migrate", "--clickhouse", fromFlag}, fromFlag},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var out, errb bytes.Buffer
			err := run(context.Background(), tt.args, &out, &errb)
			if err == nil || exitCode(err) != 1 || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v (exit %d), want a connection error naming %s", err, exitCode(err), tt.want)
			}
		})
	}
	// Without the variable, run sink has no address at all.
	t.Setenv(envClickHouseAddr, "")
	err := run(context.Background(), []string{"run", "sink", "--brokers", closedAddr(t)}, &bytes.Buffer{}, &bytes.Buffer{})
	if exitCode(err) != 2 || !strings.Contains(err.Error(), envClickHouseAddr) {
		t.Fatalf("run sink without an address: %v (exit %d)", err, exitCode(err))
	}
}

// The sink's HTTP address: the flag, else the environment's when the
// native address is the environment's too (one server), else none.
func TestClickhouseHTTPAddr(t *testing.T) {
	t.Setenv(envClickHouseAddr, "127.0.0.1:9000")
	t.Setenv(envClickHouseHTTPAddr, "127.0.0.1:8123")
	for _, c := range []struct {
		addr, flag, want string
	}{
		{"127.0.0.1:9000", "", "127.0.0.1:8123"},
		{"127.0.0.1:9000", "ch:8123", "ch:8123"},
		{"127.0.0.1:9000", "off", ""},
		{"other:9000", "", ""},
		{"other:9000", "other:8123", "other:8123"},
	} {
		f := clickhouseFlags{addr: c.addr, http: c.flag, sink: true}
		if got := f.httpAddr(); got != c.want {
			t.Errorf("--clickhouse %s --clickhouse-http %q: %q, want %q", c.addr, c.flag, got, c.want)
		}
		if got := f.config().HTTPAddr; got != c.want {
			t.Errorf("--clickhouse %s --clickhouse-http %q: config HTTPAddr %q, want %q", c.addr, c.flag, got, c.want)
		}
	}
	// Commands that do not run the sink (report, clickhouse migrate,
	// export) ignore the HTTP address: a bad one must not fail them.
	t.Setenv(envClickHouseHTTPAddr, "not an address")
	f := clickhouseFlags{addr: "127.0.0.1:9000", database: "rolodex"}
	if got := f.config().HTTPAddr; got != "" {
		t.Errorf("a command without the sink: HTTPAddr %q, want none", got)
	}
	cfg := f.config()
	if err := cfg.Validate(); err != nil {
		t.Errorf("a command without the sink fails on $%s: %v", envClickHouseHTTPAddr, err)
	}
}

func TestDevClickhouseHTTPNeedsClickhouse(t *testing.T) {
	var out, errb strings.Builder
	err := run(context.Background(), []string{"dev", "--clickhouse-http", "127.0.0.1:8123"}, &out, &errb)
	if err == nil || !strings.Contains(err.Error(), "--clickhouse-http needs --clickhouse") {
		t.Fatalf("dev --clickhouse-http without --clickhouse: %v, want a usage error", err)
	}
}
