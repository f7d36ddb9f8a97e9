package views

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/lovoo/goka"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rolodex/rolodex/internal/kafkaclient"
	"github.com/rolodex/rolodex/schemas"
)

// View.Scan reads the goka view of the identity table (on kfake, over TCP)
// in node id order across partitions, from after a key, and stops when
// asked.
func TestViewScan(t *testing.T) {
	table := string(goka.GroupTable(schemas.GroupIdentity))
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(4, table))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cl, err := kafkaclient.NewClient(kafkaclient.Config{Brokers: c.ListenAddrs()})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var keys []string
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for i := 0; i < 40; i++ {
		idf := id("user_id", fmt.Sprintf("u-%d", i))
		key := schemas.NodeID("t1", idf)
		val, err := schemas.JSONCodec[schemas.Node]{}.Encode(&schemas.Node{Tenant: "t1", Identifier: idf})
		if err != nil {
			t.Fatal(err)
		}
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: table, Key: []byte(key), Value: val}).FirstErr(); err != nil {
			t.Fatal(err)
		}
		keys = append(keys, key)
	}
	v, done := runView(ctx, t, c.ListenAddrs())
	scan := func(after string, max int) []string {
		var out []string
		if err := v.Scan(after, func(k string, n *schemas.Node) bool {
			if n.Tenant != "t1" || schemas.NodeID("t1", n.Identifier) != k {
				t.Errorf("node %s = %+v", k, n)
			}
			out = append(out, k)
			return len(out) < max
		}); err != nil {
			t.Fatal(err)
		}
		return out
	}
	sorted := schemas.SortedKeys(func() map[string]bool {
		m := map[string]bool{}
		for _, k := range keys {
			m[k] = true
		}
		return m
	}())
	if got := scan("", 1000); fmt.Sprint(got) != fmt.Sprint(sorted) {
		t.Fatalf("scan = %v\nwant %v", got, sorted)
	}
	if got := scan(sorted[9], 5); fmt.Sprint(got) != fmt.Sprint(sorted[10:15]) {
		t.Fatalf("scan after the 10th, 5 = %v\nwant %v", got, sorted[10:15])
	}
	if got := scan(sorted[39], 5); len(got) != 0 {
		t.Fatalf("scan after the last = %v", got)
	}
	cancel()
	<-done
}

// runView opens a view of the identity table on brokers, runs it until
// ctx ends (its error on done) and returns once it is ready.
func runView(ctx context.Context, t *testing.T, brokers []string) (v *View, done <-chan error) {
	t.Helper()
	v, err := NewView(brokers, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ran := make(chan error, 1)
	go func() { ran <- v.Run(ctx) }()
	for !v.Ready() {
		select {
		case err := <-ran:
			t.Fatalf("view stopped: %v", err)
		case <-ctx.Done():
			t.Fatal("view not ready after a minute")
		case <-time.After(10 * time.Millisecond):
		}
	}
	return v, ran
}
