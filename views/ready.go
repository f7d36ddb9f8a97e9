package views

import (
	"context"
	"sync/atomic"

	"github.com/lovoo/goka"
)

// recoveredOnce is the readiness of a goka view: ready from the moment
// every partition has recovered (caught up with the table) once, until
// the view is told to stop.
//
// goka's View.Recovered alone flickers: once every partition recovered,
// View.Run starts catching up, and each partition passes through
// PartitionConnecting again (a round trip to Kafka for its offsets, longer
// under load) before it is running; a reconnect after an error does the
// same. The local copy is whole all the while, and goka serves reads from
// it in that state (View.Get needs the view past Initializing,
// PartitionTable.readyToRead a partition at Connecting or later), so the
// API keeps answering from it: a 503 "still loading" after the view once
// loaded would send clients away from a view that has every record it had
// a moment before (TestStatusCommands failed on it under CI load).
//
// At the end, goka's Run closes the partitions' stores before it sets the
// view Idle, and reads fail in between: run marks the view stopped before
// goka sees its context cancelled.
type recoveredOnce struct {
	recovered func() bool           // goka: every partition is running
	state     func() goka.ViewState // goka: Idle before Run and after it ended
	once      atomic.Bool
	stopped   atomic.Bool
}

func newRecoveredOnce(v *goka.View) *recoveredOnce {
	return &recoveredOnce{recovered: v.Recovered, state: v.CurrentState}
}

// ready reports whether the view recovered once and is not stopping.
func (r *recoveredOnce) ready() bool {
	if r.stopped.Load() {
		return false
	}
	if !r.once.Load() {
		if !r.recovered() {
			return false
		}
		r.once.Store(true)
	}
	return r.state() >= goka.ViewStateConnecting
}

// run calls goka's Run (run) with a context that ends only after the view
// is marked stopped: when ctx ends, or when run returns.
func (r *recoveredOnce) run(ctx context.Context, run func(context.Context) error) error {
	inner, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	stop := context.AfterFunc(ctx, func() {
		r.stopped.Store(true)
		cancel()
	})
	defer stop()
	defer r.stopped.Store(true)
	return run(inner)
}
