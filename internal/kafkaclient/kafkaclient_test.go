package kafkaclient

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Goka runs on sarama: a key must land on the partition sarama's default
// hash partitioner picks, or a processor's table would miss it.
func TestPartitionerAgreesWithSarama(t *testing.T) {
	for _, parts := range []int32{1, 2, 3, 8, 13, 64} {
		t.Run(fmt.Sprint(parts), func(t *testing.T) {
			sp := sarama.NewHashPartitioner("rolodex.events")
			kp := Partitioner().ForTopic("rolodex.events")
			for i := 0; i < 2000; i++ {
				key := fmt.Sprintf("tenant-%d/email:user%d@example.com", i%7, i)
				want, err := sp.Partition(&sarama.ProducerMessage{Key: sarama.StringEncoder(key)}, parts)
				if err != nil {
					t.Fatal(err)
				}
				got := kp.Partition(&kgo.Record{Key: []byte(key)}, int(parts))
				if int32(got) != want {
					t.Fatalf("key %q: franz-go partition %d, sarama %d", key, got, want)
				}
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tt := range []struct {
		brokers []string
		ok      bool
	}{{nil, false}, {[]string{"localhost"}, false}, {[]string{"localhost:9092"}, true}} {
		if err := (&Config{Brokers: tt.brokers}).Validate(); (err == nil) != tt.ok {
			t.Errorf("Validate(%v) = %v, want ok=%v", tt.brokers, err, tt.ok)
		}
	}
	if got := ParseBrokers(" a:1, b:2,,"); len(got) != 2 || got[1] != "b:2" {
		t.Errorf("ParseBrokers = %v", got)
	}
}

// Every group client gets SessionTimeout unless its options set another
// session: franz-go's own default is 45 s.
func TestGroupSession(t *testing.T) {
	for _, tt := range []struct {
		name          string
		opts          []kgo.Opt
		session, beat time.Duration
	}{
		{"default", nil, 6 * time.Second, 2 * time.Second},
		{"GroupSession(0)", GroupSession(0), 6 * time.Second, 2 * time.Second},
		{"override 2s", GroupSession(2 * time.Second), 2 * time.Second, 2 * time.Second / 3},
		{"override 30s", GroupSession(30 * time.Second), 30 * time.Second, 3 * time.Second},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cl, err := NewClient(Config{Brokers: []string{"127.0.0.1:1"}},
				append([]kgo.Opt{kgo.ConsumerGroup("g"), kgo.ConsumeTopics("t")}, tt.opts...)...)
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Close()
			if got := cl.OptValue(kgo.SessionTimeout); got != tt.session {
				t.Errorf("session timeout %v, want %v", got, tt.session)
			}
			if got := cl.OptValue(kgo.HeartbeatInterval); got != tt.beat {
				t.Errorf("heartbeat interval %v, want %v", got, tt.beat)
			}
		})
	}
}

// cuttable dials normally until cut, then closes every connection it made
// and refuses new ones: to the brokers the client is gone, as if its
// process had been SIGKILLed (no LeaveGroup, no more heartbeats).
type cuttable struct {
	mu    sync.Mutex
	cut   bool
	conns []net.Conn
}

func (c *cuttable) dial(ctx context.Context, network, host string) (net.Conn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cut {
		return nil, errors.New("cut")
	}
	conn, err := (&net.Dialer{}).DialContext(ctx, network, host)
	if err == nil {
		c.conns = append(c.conns, conn)
	}
	return conn, err
}

func (c *cuttable) kill() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cut = true
	for _, conn := range c.conns {
		conn.Close()
	}
}

// owner tracks the partitions a group member owns.
type owner struct {
	mu    sync.Mutex
	parts map[int32]bool
}

func (o *owner) opts() []kgo.Opt {
	set := func(v bool) func(context.Context, *kgo.Client, map[string][]int32) {
		return func(_ context.Context, _ *kgo.Client, ps map[string][]int32) {
			o.mu.Lock()
			defer o.mu.Unlock()
			for _, p := range ps["t"] {
				if v {
					o.parts[p] = true
				} else {
					delete(o.parts, p)
				}
			}
		}
	}
	return []kgo.Opt{kgo.ConsumerGroup("g"), kgo.ConsumeTopics("t"),
		kgo.OnPartitionsAssigned(set(true)), kgo.OnPartitionsRevoked(set(false)), kgo.OnPartitionsLost(set(false))}
}

func (o *owner) count() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.parts)
}

// A group member that vanishes without leaving (SIGKILL) hands its
// partitions to the others within its session: with the default session
// the survivor owns all of them well within 45 s (franz-go's default).
// The brokers' smallest allowed session is kfake's and Apache Kafka's
// default, 6 s: kfake would refuse a shorter one.
func TestKilledMemberPartitionsMove(t *testing.T) {
	const partitions = 4
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(partitions, "t"))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	cfg := Config{Brokers: cluster.ListenAddrs()}

	var cut cuttable
	killedCtx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a, b := &owner{parts: map[int32]bool{}}, &owner{parts: map[int32]bool{}}
	ca, err := NewClient(cfg, append(a.opts(), kgo.Dialer(cut.dial), kgo.WithContext(killedCtx))...)
	if err != nil {
		t.Fatal(err)
	}
	defer ca.Close()
	waitFor(t, 20*time.Second, "the first member owns every partition", func() bool { return a.count() == partitions })
	cb, err := NewClient(cfg, b.opts()...)
	if err != nil {
		t.Fatal(err)
	}
	defer cb.Close()
	waitFor(t, 20*time.Second, "both members own partitions", func() bool {
		return a.count() > 0 && b.count() > 0 && a.count()+b.count() == partitions
	})

	cut.kill()
	killed := time.Now()
	// Well under franz-go's 45 s, generous over 6 s plus a rebalance.
	waitFor(t, 25*time.Second, "the survivor owns every partition", func() bool { return b.count() == partitions })
	took := time.Since(killed)
	t.Logf("the survivor owned every partition %.1f s after the kill", took.Seconds())
	if took < SessionTimeout-HeartbeatInterval {
		t.Errorf("partitions moved after %v, before the killed member's session could end: did it leave the group?", took)
	}
	cancel() // the killed client's Close returns without trying to leave
}

func waitFor(t *testing.T, limit time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, limit)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// $ROLODEX_KAFKA_SESSION_TIMEOUT replaces the default session of every
// group (an override in a config still wins); a bad value is refused by
// NewClient with the variable named.
func TestSessionFromEnvironment(t *testing.T) {
	t.Setenv(EnvSessionTimeout, "15s")
	cl, err := NewClient(Config{Brokers: []string{"127.0.0.1:1"}}, kgo.ConsumerGroup("g"), kgo.ConsumeTopics("t"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if got, beat := cl.OptValue(kgo.SessionTimeout), cl.OptValue(kgo.HeartbeatInterval); got != 15*time.Second || beat != 3*time.Second {
		t.Errorf("session %v, heartbeat %v; want 15s, 3s", got, beat)
	}
	def, err := NewClient(Config{Brokers: []string{"127.0.0.1:1"}}, append([]kgo.Opt{kgo.ConsumerGroup("g"), kgo.ConsumeTopics("t")}, GroupSession(0)...)...)
	if err != nil {
		t.Fatal(err)
	}
	defer def.Close()
	if got := def.OptValue(kgo.SessionTimeout); got != 15*time.Second {
		t.Errorf("GroupSession(0) gave %v, want the environment's 15s", got)
	}
	over, err := NewClient(Config{Brokers: []string{"127.0.0.1:1"}}, append([]kgo.Opt{kgo.ConsumerGroup("g"), kgo.ConsumeTopics("t")}, GroupSession(2*time.Second)...)...)
	if err != nil {
		t.Fatal(err)
	}
	defer over.Close()
	if got := over.OptValue(kgo.SessionTimeout); got != 2*time.Second {
		t.Errorf("an override of 2s gave %v", got)
	}
	for _, bad := range []string{"6", "500ms", "1h", "soon"} {
		t.Setenv(EnvSessionTimeout, bad)
		if _, err := NewClient(Config{Brokers: []string{"127.0.0.1:1"}}); err == nil || !strings.Contains(err.Error(), EnvSessionTimeout) {
			t.Errorf("%s=%q: NewClient error %v, want one naming the variable", EnvSessionTimeout, bad, err)
		}
	}
}
