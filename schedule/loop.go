package schedule

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/lovoo/goka"
	"github.com/prometheus/client_golang/prometheus"
)

// Loop runs a goka group's scheduler beside its processor: every Tick it
// writes a tick for each due wake (Emit), and after each rebalance (and
// whenever Before asks) it has the group visit every key of the
// partitions it owns, so that the wakes a crash or a rebalance lost are
// registered again. Visits run beside the ticks, so ticks keep coming
// while an instance with many keys visits them. The tag stage and routing
// use it.
type Loop struct {
	Sched *Scheduler
	// Proc is the group's processor, with a visitor named Visit.
	Proc  *goka.Processor
	Visit string
	// Tick is how often the loop looks for due wakes; Now is the clock.
	Tick time.Duration
	Now  func() time.Time
	// Emit writes the tick of w, keyed like w.Key.
	Emit func(w Wake) (*goka.Promise, error)
	// Before, when set, runs first at every tick; true asks for a visit
	// (the tag stage: its rules changed).
	Before func() bool
	// Ticks counts the ticks written, TickErrors those Kafka did not
	// take (scheduled again); Scheduled is the scheduler's size.
	Ticks, TickErrors prometheus.Counter
	Scheduled         prometheus.Gauge
	Logger            *slog.Logger
	// Name starts the log lines ("tag stage"); Stalled says what waits
	// while ticks fail.
	Name, Stalled string

	visit      atomic.Bool
	tickLogged atomic.Int64
}

// Rebalanced asks for a visit: call it from goka's rebalance callback
// (and once before Run, for the first assignment).
func (l *Loop) Rebalanced() { l.visit.Store(true) }

// RunWith runs the group's processor (run, goka's Processor.Run) and the
// loop until ctx is done or the processor fails. At the end the loop stops
// first, letting a visit in progress finish, and only then the processor:
// goka's VisitAll (v1.1.14, VisitAllWithStats), when its context ends or
// the processor stops while visits are in flight, returns and reads its
// visit counter while those visits still add to it, a data race the race
// detector reports. Visits are short (they walk the local copy of the
// table), so the stop waits little.
func (l *Loop) RunWith(ctx context.Context, run func(context.Context) error) error {
	procCtx, stopProc := context.WithCancel(context.WithoutCancel(ctx))
	defer stopProc()
	loopCtx, stopLoop := context.WithCancel(ctx)
	defer stopLoop()
	procErr := make(chan error, 1)
	go func() {
		err := run(procCtx)
		stopLoop() // a processor that failed or stopped stops the loop
		procErr <- err
	}()
	_ = l.Run(loopCtx)
	stopProc()
	return <-procErr
}

// Run runs the loop until ctx is done.
func (l *Loop) Run(ctx context.Context) error {
	if err := l.Proc.WaitForReadyContext(ctx); err != nil {
		return nil // stopping
	}
	visit := make(chan struct{}, 1)
	visited := make(chan struct{})
	go func() {
		defer close(visited)
		l.visitor(ctx, visit)
	}()
	defer func() { <-visited }()
	tk := time.NewTicker(l.Tick)
	defer tk.Stop()
	for {
		if l.Before != nil && l.Before() {
			l.visit.Store(true)
		}
		if l.visit.Swap(false) {
			select {
			case visit <- struct{}{}:
			default: // a visit is already due
			}
		}
		l.emitDue(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-tk.C:
		}
	}
}

// visitor visits every key of the instance's partitions each time visit
// is signalled, until ctx is done.
func (l *Loop) visitor(ctx context.Context, visit <-chan struct{}) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-visit:
		}
		// goka calls the rebalance callback before it creates the new
		// partitions: wait until they run, or the visit would miss them.
		if err := l.Proc.WaitForReadyContext(ctx); err != nil {
			return // stopping
		}
		// Not cancelled by ctx: RunWith stops the processor only after
		// this visit finished (see there).
		if err := l.Proc.VisitAll(context.WithoutCancel(ctx), l.Visit, nil); err != nil {
			if ctx.Err() != nil {
				return
			}
			l.Logger.Warn(l.Name+": visit interrupted; trying again", "err", err)
			l.visit.Store(true)
		}
	}
}

// emitDue writes a tick for every due wake. A tick that Kafka does not
// take is scheduled again.
func (l *Loop) emitDue(ctx context.Context) {
	now := l.Now().UnixMilli()
	for ctx.Err() == nil {
		due := l.Sched.Pop(now, 1000)
		if len(due) == 0 {
			break
		}
		for _, w := range due {
			w := w
			pr, err := l.Emit(w)
			if err != nil {
				l.tickFailed(w, err)
				continue
			}
			pr.Then(func(err error) {
				if err != nil {
					l.tickFailed(w, err)
					return
				}
				l.Ticks.Inc()
			})
		}
	}
	l.Scheduled.Set(float64(l.Sched.Len()))
}

// tickFailed schedules a tick Kafka did not take again, counts it, and
// logs at most one failure a minute.
func (l *Loop) tickFailed(w Wake, err error) {
	l.Sched.Set(w.Key, w.At)
	l.TickErrors.Inc()
	now := time.Now().UnixNano()
	if last := l.tickLogged.Load(); now-last >= int64(time.Minute) && l.tickLogged.CompareAndSwap(last, now) {
		l.Logger.Error(l.Name+": a tick was not written; it is scheduled again ("+l.Stalled+" while this lasts)", "err", err)
	}
}
