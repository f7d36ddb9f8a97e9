package views

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lovoo/goka"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/rolodex/rolodex/schemas"
)

// A view that recovered once stays ready while its partitions reconnect
// (goka's Recovered goes false then), and stops being ready when it stops.
func TestRecoveredOnce(t *testing.T) {
	recovered, state := false, goka.ViewStateCatchUp
	r := &recoveredOnce{recovered: func() bool { return recovered }, state: func() goka.ViewState { return state }}
	if r.ready() {
		t.Fatal("ready before recovering")
	}
	recovered, state = true, goka.ViewStateRunning
	if !r.ready() {
		t.Fatal("not ready once recovered")
	}
	recovered, state = false, goka.ViewStateConnecting
	if !r.ready() {
		t.Fatal("not ready while reconnecting after it recovered")
	}
	state = goka.ViewStateIdle
	if r.ready() {
		t.Fatal("ready after the view stopped")
	}
}

// run marks the view stopped before goka's Run sees its context end (goka
// closes the stores before it sets the view Idle), and when Run returns by
// itself.
func TestRecoveredOnceRun(t *testing.T) {
	r := &recoveredOnce{recovered: func() bool { return true }, state: func() goka.ViewState { return goka.ViewStateRunning }}
	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- r.run(ctx, func(inner context.Context) error {
			close(started)
			<-inner.Done()
			if r.ready() {
				return errors.New("ready when goka's Run saw its context end")
			}
			return nil
		})
	}()
	<-started
	if !r.ready() {
		t.Fatal("not ready while running")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	r2 := &recoveredOnce{recovered: func() bool { return true }, state: func() goka.ViewState { return goka.ViewStateRunning }}
	if err := r2.run(context.Background(), func(context.Context) error { return errors.New("storage") }); err == nil || r2.ready() {
		t.Fatalf("a Run that ended by itself: err %v, ready %v", err, r2.ready())
	}
}

// On a real goka view (kfake over TCP): after the view loaded, a fetch
// fails, the partition's consumer reconnects, and goka's Recovered is false
// for the round trips that takes (made slow here: every offset request
// then waits 100 ms). Ready holds and reads work all along; the view stops
// being ready when it stops. (With goka's Recovered as the readiness, the
// API answered 503 "still loading" meanwhile; the same happens right after
// the first load, when the view starts catching up.)
func TestViewStaysReadyThroughReconnect(t *testing.T) {
	table := string(goka.GroupTable(schemas.GroupIdentity))
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(4, table))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var slow, slowed atomic.Bool
	c.ControlKey(int16(kmsg.ListOffsets), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		if slow.Load() {
			slowed.Store(true)
			c.SleepControl(func() { time.Sleep(100 * time.Millisecond) })
		}
		return nil, nil, false
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	v, done := runView(ctx, t, c.ListenAddrs())
	slow.Store(true)
	// One fetch of partition 0 fails: sarama hands the error to goka,
	// which reconnects the partition (its default backoff: at once).
	c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Fetch}, Topic: table, Partitions: []int32{0}})
	reconnected := false
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); time.Sleep(2 * time.Millisecond) {
		reconnected = reconnected || !v.v.Recovered()
		if !v.Ready() {
			t.Fatal("the view was ready, then not")
		}
		if _, err := v.Node("p_x"); err != nil {
			t.Fatalf("read while reconnecting: %v", err)
		}
	}
	if !slowed.Load() || !reconnected {
		t.Fatalf("no offset request after the fault (%v) or goka's Recovered never went false (%v): the test did not test", slowed.Load(), reconnected)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if v.Ready() {
		t.Fatal("ready after the view stopped")
	}
}
