package views

import (
	"context"
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

// What recoveredOnce rests on, on a real goka view (kfake over TCP): once
// View.Run has recovered every partition it catches up, and each partition
// passes through PartitionConnecting for a round trip to Kafka (here made
// slow: every offset request after the recovery's two per partition waits
// 100 ms); goka's Recovered is false meanwhile, and reads from the local
// copy work.
func TestViewReadsWhileCatchingUp(t *testing.T) {
	const partitions = 4
	table := string(goka.GroupTable(schemas.GroupIdentity))
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(partitions, table))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var requests atomic.Int32
	c.ControlKey(int16(kmsg.ListOffsets), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		// Recovery of an empty partition asks for its oldest and newest
		// offsets; catching up starts once every partition recovered.
		if requests.Add(1) > 2*partitions {
			c.SleepControl(func() { time.Sleep(100 * time.Millisecond) })
		}
		return nil, nil, false
	})
	v, err := NewView(c.ListenAddrs(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- v.Run(ctx) }()
	for requests.Load() <= 2*partitions || v.v.Recovered() {
		select {
		case err := <-done:
			t.Fatalf("view stopped: %v", err)
		case <-ctx.Done():
			t.Fatalf("no catching up after a minute (%d offset requests)", requests.Load())
		case <-time.After(time.Millisecond):
		}
	}
	if _, err := v.Node("p_x"); err != nil {
		t.Fatalf("read while catching up: %v", err)
	}
	if v.v.Recovered() {
		t.Fatal("caught up before the read: the test did not test")
	}
	for !v.Ready() {
		select {
		case <-ctx.Done():
			t.Fatal("not ready after a minute")
		case <-time.After(10 * time.Millisecond):
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if v.Ready() {
		t.Fatal("ready after the view stopped")
	}
}
