package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func testSupervisor(t *testing.T) *supervisor {
	s := newSupervisor("thing", prometheus.NewRegistry(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	s.first, s.most = time.Millisecond, 4*time.Millisecond
	return s
}

// A component that fails is built and run again, each restart counted,
// until the context ends; then run returns what the component returned.
func TestSupervisorRestarts(t *testing.T) {
	s := testSupervisor(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	runs, builds := 0, 0
	component := func(ctx context.Context) error {
		if runs++; runs < 4 {
			return errors.New("a write Kafka refused")
		}
		cancel()
		<-ctx.Done()
		return ctx.Err()
	}
	err := s.run(ctx, component, func() (func(context.Context) error, error) { builds++; return component, nil })
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("run = %v, want the component's context.Canceled", err)
	}
	if runs != 4 || builds != 3 || testutil.ToFloat64(s.restarts) != 3 {
		t.Fatalf("%d runs, %d builds, %v restarts counted; want 4, 3, 3", runs, builds, testutil.ToFloat64(s.restarts))
	}
}

// A build that fails ends run with its error: a restart does not fix it.
func TestSupervisorBuildFails(t *testing.T) {
	s := testSupervisor(t)
	bad := errors.New("storage directory not writable")
	err := s.run(context.Background(), func(context.Context) error { return errors.New("failed") },
		func() (func(context.Context) error, error) { return nil, bad })
	if !errors.Is(err, bad) {
		t.Fatalf("run = %v, want the build's error", err)
	}
}
