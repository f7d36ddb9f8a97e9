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
// until the context ends; then run returns nil, whatever the component
// returned while it stopped.
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
		// As goka's processor returns when stopped during its start.
		return errors.New("error waiting for start up tables: context closed while waiting for startup tables to become ready")
	}
	err := s.run(ctx, component, func() (func(context.Context) error, error) { builds++; return component, nil })
	if err != nil {
		t.Fatalf("run = %v, want nil: an error while stopping is part of the stop", err)
	}
	if runs != 4 || builds != 3 || testutil.ToFloat64(s.restarts) != 3 {
		t.Fatalf("%d runs, %d builds, %v restarts counted; want 4, 3, 3", runs, builds, testutil.ToFloat64(s.restarts))
	}
}

// A build that fails (Kafka away while goka asks for its topics) counts
// as a failed run and is tried again after the pause, until one works.
func TestSupervisorRetriesFailedBuild(t *testing.T) {
	s := testSupervisor(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	builds, ran := 0, false
	err := s.run(ctx, func(context.Context) error { return errors.New("failed") },
		func() (func(context.Context) error, error) {
			if builds++; builds < 3 {
				return nil, errors.New("dial tcp: connection refused")
			}
			return func(ctx context.Context) error { ran = true; cancel(); <-ctx.Done(); return ctx.Err() }, nil
		})
	if err != nil || !ran || builds != 3 || testutil.ToFloat64(s.restarts) != 3 {
		t.Fatalf("run = %v, ran %v, %d builds, %v restarts; want nil, a run, 3 builds and 3 restarts", err, ran, builds, testutil.ToFloat64(s.restarts))
	}
}
