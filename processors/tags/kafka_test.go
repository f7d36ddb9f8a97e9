package tags

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rolodex/rolodex/internal/childtest"
	"github.com/rolodex/rolodex/internal/kafkaclient"
	"github.com/rolodex/rolodex/internal/kafkatest"
	"github.com/rolodex/rolodex/reference"
	"github.com/rolodex/rolodex/schemas"
)

// Child processes run the tag processor until they are killed.
const envChild = "ROLODEX_TEST_TAGS"

func TestMain(m *testing.M) {
	childtest.Main(m, envChild, func(ctx context.Context, brokers []string, dir string) error {
		p, err := New(Config{Brokers: brokers, StorageDir: dir})
		if err != nil {
			return err
		}
		return p.Run(ctx)
	})
}

// readAll reads every record of topic.
func readAll(t *testing.T, brokers []string, topic string) []*kgo.Record {
	t.Helper()
	return kafkatest.ReadAll(t, brokers, topic)
}

// The tag processor on Kafka (kfake over TCP), killed (SIGKILL) at random
// moments mid-stream and restarted (three times; once with -short),
// writes exactly the reference model's records: none missing, none that
// the snapshots do not call for (a record written twice by a replay is the
// same record).
func TestTagsOnKafkaUnderKills(t *testing.T) {
	// -short (the unit tier): fewer ids and one kill; the full tier: three.
	ids, kills := 60, 3
	if testing.Short() {
		ids, kills = 15, 1
	}
	const partitions = 3
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(partitions, schemas.TopicProfiles))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	brokers := c.ListenAddrs()
	cl, err := kafkaclient.NewClient(kafkaclient.Config{Brokers: brokers})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx := context.Background()
	if err := EnsureTopics(ctx, cl, 1); err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewSource(42))
	var stream []*schemas.Profile
	for k := 0; k < ids; k++ {
		stream = append(stream, randomSnapshots(r, fmt.Sprintf("p_%03d", k), 5+r.Intn(25))...)
	}
	// Shuffle across ids, keeping each id's snapshots in order.
	order := map[string][]*schemas.Profile{}
	for _, p := range stream {
		order[p.ID] = append(order[p.ID], p)
	}
	stream = stream[:0]
	for len(order) > 0 {
		keys := schemas.SortedKeys(order)
		k := keys[r.Intn(len(keys))]
		stream = append(stream, order[k][0])
		if order[k] = order[k][1:]; len(order[k]) == 0 {
			delete(order, k)
		}
	}
	prod, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.RecordPartitioner(kafkaclient.Partitioner()), kgo.ProducerLinger(0))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	produced := 0
	produce := func(n int) {
		for _, p := range stream[produced:min(produced+n, len(stream))] {
			v, _ := json.Marshal(p)
			if err := prod.ProduceSync(ctx, &kgo.Record{Topic: schemas.TopicProfiles, Key: []byte(p.ID), Value: v}).FirstErr(); err != nil {
				t.Fatal(err)
			}
			produced++
		}
	}
	dir := filepath.Join(t.TempDir(), "tags")
	child := childtest.Start(t, envChild, brokers, dir, 0)
	child.WaitJoined(t, schemas.GroupTags)
	chunk := len(stream) / (kills + 1)
	for i := 1; i <= kills; i++ {
		produce(chunk)
		time.Sleep(time.Duration(r.Intn(300)) * time.Millisecond)
		_ = child.Cmd.Process.Kill()
		<-child.Exited
		t.Logf("killed after %d of %d snapshots", produced, len(stream))
		child = childtest.Start(t, envChild, brokers, dir, i)
		child.WaitJoined(t, schemas.GroupTags)
	}
	produce(len(stream))

	// The reference, from the snapshots as the topic holds them.
	perKey := map[string][]*schemas.Profile{}
	perKeyTS := map[string][]int64{}
	for _, rec := range readAll(t, brokers, schemas.TopicProfiles) {
		var p schemas.Profile
		if err := json.Unmarshal(rec.Value, &p); err != nil {
			t.Fatal(err)
		}
		perKey[p.ID] = append(perKey[p.ID], &p)
		perKeyTS[p.ID] = append(perKeyTS[p.ID], rec.Timestamp.UnixMilli())
	}
	want := map[string]bool{}
	for k, ps := range perKey {
		for _, ch := range reference.TagChanges(k, ps, perKeyTS[k]) {
			want[changeKey(ch)] = true
		}
	}
	var got map[string]bool
	deadline := time.Now().Add(3 * time.Minute)
	for {
		got = map[string]bool{}
		for _, rec := range readAll(t, brokers, schemas.TopicProfileTags) {
			var ch schemas.TagChange
			if err := json.Unmarshal(rec.Value, &ch); err != nil {
				t.Fatal(err)
			}
			if string(rec.Key) != ch.Profile {
				t.Fatalf("record keyed %s for profile %s", rec.Key, ch.Profile)
			}
			got[changeKey(ch)] = true
		}
		if len(got) >= len(want) || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	missing, extra := diffSets(want, got)
	if len(missing)+len(extra) > 0 {
		b, _ := os.ReadFile(child.Log)
		t.Fatalf("%d records expected, %d written: missing %v\nextra %v\nlog:\n%s", len(want), len(got), missing, extra, b)
	}
	t.Logf("%d snapshots, %d distinct records", len(stream), len(want))
}
