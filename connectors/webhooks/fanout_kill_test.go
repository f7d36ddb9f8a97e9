package webhooks

import (
	"context"
	"fmt"
	"math/rand"
	"net/http"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/rolodex/rolodex/internal/childtest"
	"github.com/rolodex/rolodex/schemas"
)

// envFanoutChild is the prefix of the child that runs fan-out delivery
// until it is killed (TestFanoutDeliveryUnderKills).
const envFanoutChild = "ROLODEX_TEST_FANOUT_DELIVERY"

func runFanoutChild(ctx context.Context, brokers []string, _ string) error {
	sched := make([]time.Duration, 50)
	for i := range sched {
		sched[i] = 20 * time.Millisecond
	}
	f, err := NewFanout(FanoutConfig{Brokers: brokers, RetrySchedule: sched, Timeout: time.Second, Window: 20,
		SessionTimeout: 2 * time.Second})
	if err != nil {
		return err
	}
	return f.Run(ctx)
}

// flaky is a receiver that answers 500 to about a third of the requests,
// after a short delay, and records every request (its signature verified
// by newDealer's handler).
func flaky(seed int64) func(w http.ResponseWriter, r *http.Request) {
	var mu sync.Mutex
	rnd := rand.New(rand.NewSource(seed))
	return func(w http.ResponseWriter, _ *http.Request) {
		mu.Lock()
		fail, delay := rnd.Intn(3) == 0, time.Duration(rnd.Intn(5))*time.Millisecond
		mu.Unlock()
		time.Sleep(delay)
		if fail {
			w.WriteHeader(500)
			return
		}
		w.WriteHeader(200)
	}
}

// TestFanoutDeliveryUnderKills runs the delivery in a child process,
// SIGKILLs it mid-delivery (once with -short, twice without) and starts
// it again: the receivers' distinct webhook ids equal the records
// produced, each with its body.
func TestFanoutDeliveryUnderKills(t *testing.T) {
	kills, n := 2, 300
	if testing.Short() {
		kills, n = 1, 120
	}
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	k := newFanoutKafka(t, "bank", "insurer")
	k.putTopic("car-chosen", 1, false, "bank", "insurer")
	rcvA, rcvB := newDealer(t, flaky(seed)), newDealer(t, flaky(seed+1))
	k.putSub("s-a", "bank", "car-chosen", rcvA.srv.URL, schemas.SubscriptionActive, 1)
	k.putSub("s-b", "insurer", "car-chosen", rcvB.srv.URL, schemas.SubscriptionActive, 1)
	want := map[string]string{}
	for i := range n {
		sub, partner := "s-a", "bank"
		if i%2 == 1 {
			sub, partner = "s-b", "insurer"
		}
		d := delivery(sub, partner, "car-chosen", fmt.Sprintf("p-%d", i%17), fmt.Sprintf("e-%d", i), false, 0)
		k.deliver(d)
		want[d.WebhookID] = d.Body
	}
	distinct := func() map[string]string {
		got := map[string]string{}
		for _, d := range []*dealer{rcvA, rcvB} {
			for _, r := range d.received() {
				if old, ok := got[r.id]; ok && old != r.body {
					t.Errorf("webhook id %s sent with two bodies", r.id)
				}
				got[r.id] = r.body
			}
		}
		return got
	}
	dir := filepath.Join(t.TempDir(), "fanout-delivery")
	ch := childtest.Start(t, envFanoutChild, k.brokers, dir, 0)
	rnd := rand.New(rand.NewSource(seed))
	for i := 1; i <= kills; i++ {
		// Mid-delivery: once some more ids reached the receivers.
		target := len(distinct()) + 1 + rnd.Intn(max(1, (n-len(distinct()))/(kills+1)))
		waitFor(t, fmt.Sprintf("%d distinct ids", target), func() bool { return len(distinct()) >= target })
		_ = ch.Cmd.Process.Kill()
		<-ch.Exited
		t.Logf("killed with %d of %d ids received", len(distinct()), n)
		ch = childtest.Start(t, envFanoutChild, k.brokers, dir, i)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for len(distinct()) < n && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	got := distinct()
	for id, body := range want {
		if g, ok := got[id]; !ok {
			t.Errorf("webhook id %s never received", id)
		} else if g != body {
			t.Errorf("webhook id %s: body %s, want %s", id, g, body)
		}
	}
	for id := range got {
		if _, ok := want[id]; !ok {
			t.Errorf("webhook id %s received, never produced", id)
		}
	}
	if t.Failed() {
		t.Logf("child log:\n%s", ch.Logs())
	}
}
