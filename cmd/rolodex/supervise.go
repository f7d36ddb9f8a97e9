package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// supervisor runs a component again after it fails, as a service manager
// would restart the process: after a pause that starts at first and
// doubles up to most, back to first after a run that lasted calm.
type supervisor struct {
	name              string
	first, most, calm time.Duration
	restarts          prometheus.Counter
	logger            *slog.Logger
}

// newSupervisor returns a supervisor for the component called name, with
// its restarts counted as rolodex_<name>_restarts_total on reg.
func newSupervisor(name string, reg prometheus.Registerer, logger *slog.Logger) *supervisor {
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "rolodex_" + name + "_restarts_total",
		Help: "Times the " + name + " component failed and was built and started again."})
	reg.MustRegister(c)
	return &supervisor{name: name, first: time.Second, most: 30 * time.Second, calm: time.Minute, restarts: c, logger: logger}
}

// run runs what build returns until ctx ends, building and running it
// again whenever it returns before that, and returns nil once ctx ends. The first build happens before
// run is called, so that a bad configuration stops the start, and is
// passed in as first. A later build that fails counts as a failed run and
// is tried again after the pause: building a goka processor asks Kafka
// about its topics, and a component that fails because a broker went
// away is rebuilt while it may still be away (the system tier's broker
// failure).
func (s *supervisor) run(ctx context.Context, first func(context.Context) error, build func() (func(context.Context) error, error)) error {
	pause, next := s.first, first
	for {
		began := time.Now()
		err := next(ctx)
		if ctx.Err() != nil {
			// Asked to stop. What a component returns while it stops is
			// part of stopping (goka's "context closed while waiting for
			// startup tables" when stopped during its start, unwrapped):
			// logged, not returned, so a stop during a start is a clean
			// stop.
			if err != nil && !errors.Is(err, context.Canceled) {
				s.logger.Warn(s.name+" returned an error while it stopped", "err", err)
			}
			return nil
		}
		if err == nil {
			err = errors.New("it stopped by itself")
		}
		if time.Since(began) >= s.calm {
			pause = s.first
		}
		s.restarts.Inc()
		s.logger.Error(s.name+" failed; starting it again", "err", err, "after", pause)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(pause):
		}
		pause = min(2*pause, s.most)
		if next, err = build(); err != nil {
			berr := err
			next = func(context.Context) error { return fmt.Errorf("build: %w", berr) }
		}
	}
}

// recovery is rolodex_recovery_seconds{component}: how long the latest
// start of each processor component took until every goka processor of it
// was ready (its table partitions recovered from their topics, its
// partitions claimed). After a crash it is the recovery time an operator
// waits through (docs/operations.md).
type recovery struct{ g *prometheus.GaugeVec }

func newRecovery(reg prometheus.Registerer) *recovery {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "rolodex_recovery_seconds",
		Help: "Seconds the latest start of a processor component took until it was ready to process (tables recovered, partitions claimed)."},
		[]string{"component"})
	if err := reg.Register(g); err != nil {
		var are prometheus.AlreadyRegisteredError
		if !errors.As(err, &are) {
			panic(err)
		}
		g = are.ExistingCollector.(*prometheus.GaugeVec)
	}
	return &recovery{g: g}
}

// timed returns run, which also sets the component's recovery time once
// every processor in procs is ready.
func (r *recovery) timed(component string, run func(context.Context) error, procs ...interface {
	WaitForReadyContext(context.Context) error
}) func(context.Context) error {
	return func(ctx context.Context) error {
		began := time.Now()
		go func() {
			for _, p := range procs {
				if p.WaitForReadyContext(ctx) != nil {
					return
				}
			}
			r.g.WithLabelValues(component).Set(time.Since(began).Seconds())
		}()
		return run(ctx)
	}
}
