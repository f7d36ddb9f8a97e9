package views

import (
	"sync/atomic"

	"github.com/lovoo/goka"
)

// recoveredOnce is the readiness of a goka view: ready from the moment
// every partition has recovered (caught up with the table) once, until
// the view stops.
//
// goka's View.Recovered alone flickers: once every partition recovered,
// View.Run starts catching up, and each partition passes through
// PartitionConnecting again (a round trip to Kafka for its offsets, longer
// under load) before it is running; a reconnect after an error does the
// same. The local copy is whole all the while, and goka serves reads from
// it in that state (PartitionTable.readyToRead), so the API keeps
// answering from it: a 503 "still loading" after the view once loaded
// would send clients away from a view that has every record it had a
// moment before (TestStatusCommands failed on it under CI load).
type recoveredOnce struct {
	recovered func() bool           // goka: every partition is running
	state     func() goka.ViewState // goka: Idle before Run and after it ended
	once      atomic.Bool
}

func newRecoveredOnce(v *goka.View) *recoveredOnce {
	return &recoveredOnce{recovered: v.Recovered, state: v.CurrentState}
}

// ready reports whether the view recovered once and has not stopped.
func (r *recoveredOnce) ready() bool {
	if !r.once.Load() {
		if !r.recovered() {
			return false
		}
		r.once.Store(true)
	}
	return r.state() != goka.ViewStateIdle
}
