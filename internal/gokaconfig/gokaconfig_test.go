package gokaconfig

import (
	"errors"
	"hash/fnv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lovoo/goka"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/rolodex/rolodex/internal/kafkaclient"
)

// A partition's leader that stops answering for a while (on Apache Kafka:
// a broker that died, until the controller fences it and a new leader
// takes over, about 10 s) delays a goka emit; it does not fail it. A
// failed emit stops the processor: `rolodex run processors` exited when a
// broker was killed (system.TestRolodexOnKafka).
func TestProducerRidesOutALeaderOutage(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "t"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const outage = 3 * time.Second
	var down atomic.Bool
	c.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		if down.Load() {
			return nil, errors.New("the leader is gone"), true // closes the connection
		}
		return nil, nil, false
	})
	p, err := goka.ProducerBuilderWithConfig(Sarama("test"))(c.ListenAddrs(), "test", fnv.New32a)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	emit := func(key string) error {
		done := make(chan error, 1)
		p.Emit("t", key, []byte("v")).Then(func(err error) { done <- err })
		return <-done
	}
	if err := emit("before"); err != nil {
		t.Fatalf("emit before the outage: %v", err)
	}
	down.Store(true)
	time.AfterFunc(outage, func() { down.Store(false) })
	began := time.Now()
	if err := emit("during"); err != nil {
		t.Fatalf("emit during an outage of %s failed after %s: %v", outage, time.Since(began).Round(time.Millisecond), err)
	}
	if took := time.Since(began); took < outage {
		t.Fatalf("emit during the outage succeeded after %s, before the leader came back (%s)", took, outage)
	}
}

// The goka groups' session is the brokers' minimum (6 s), not sarama's 10 s:
// a SIGKILLed instance's partitions wait that long for their new owner
// (scripts/measure-kill-restart). Below the minimum the brokers would refuse
// every JoinGroup.
func TestSessionTimeout(t *testing.T) {
	c := Sarama("test")
	if got := c.Consumer.Group.Session.Timeout; got != 6*time.Second {
		t.Fatalf("session timeout %v, want 6s", got)
	}
	if hb := c.Consumer.Group.Heartbeat.Interval; hb <= 0 || hb > c.Consumer.Group.Session.Timeout/3 {
		t.Fatalf("heartbeat interval %v for a %v session, want at most a third", hb, c.Consumer.Group.Session.Timeout)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
}

// The goka groups take the session of $ROLODEX_KAFKA_SESSION_TIMEOUT too
// (kafkaclient.Session), with a heartbeat of a third of it, at most 3 s.
func TestSessionTimeoutFromEnvironment(t *testing.T) {
	t.Setenv(kafkaclient.EnvSessionTimeout, "12s")
	c := Sarama("test")
	if got, hb := c.Consumer.Group.Session.Timeout, c.Consumer.Group.Heartbeat.Interval; got != 12*time.Second || hb != 3*time.Second {
		t.Fatalf("session %v, heartbeat %v; want 12s, 3s", got, hb)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
}
