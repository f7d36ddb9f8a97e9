package fanout

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rolodex/rolodex/internal/childtest"
	"github.com/rolodex/rolodex/internal/gokaconfig"
	"github.com/rolodex/rolodex/internal/kafkaclient"
	"github.com/rolodex/rolodex/internal/kafkatest"
	"github.com/rolodex/rolodex/reference"
	"github.com/rolodex/rolodex/schemas"
)

// Child processes run the fan-out group until they are killed.
const envChild = "ROLODEX_TEST_FANOUT"

func TestMain(m *testing.M) {
	childtest.Main(m, envChild, func(ctx context.Context, brokers []string, dir string) error {
		p, err := New(Config{Brokers: brokers, StorageDir: dir})
		if err != nil {
			return err
		}
		return p.Run(ctx)
	})
}

type kafkaEnv struct {
	t       *testing.T
	brokers []string
	prod    *kgo.Client
	parts   int32
}

func newKafkaEnv(t *testing.T, parts int32) *kafkaEnv {
	t.Helper()
	brokers := kafkatest.Cluster(t, parts, schemas.TopicEvents)
	if err := EnsureTopics(context.Background(), kafkatest.Client(t, brokers), 1); err != nil {
		t.Fatal(err)
	}
	// Profile records by the sarama-compatible hash (as identity writes
	// them), directory records to the partition they name.
	prod, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ProducerLinger(0),
		kgo.RecordPartitioner(kgo.BasicConsistentPartitioner(func(topic string) func(*kgo.Record, int) int {
			hash := kafkaclient.Partitioner().ForTopic(topic)
			return func(r *kgo.Record, n int) int {
				if strings.HasPrefix(string(r.Key), schemas.DirectoryKeyPrefix) {
					return int(r.Partition)
				}
				return hash.Partition(r, n)
			}
		})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(prod.Close)
	return &kafkaEnv{t: t, brokers: brokers, prod: prod, parts: parts}
}

// records are the input records of one logical message: a directory
// change goes to every partition under its directory key (as the
// broadcast step writes it), anything else to its profile's partition.
func (k *kafkaEnv) records(m propMsg) []*kgo.Record {
	b, err := json.Marshal(&m.ref.Input)
	if err != nil {
		k.t.Fatal(err)
	}
	ts := time.UnixMilli(m.ref.At)
	if m.key != dirKey {
		return []*kgo.Record{{Topic: schemas.TopicFanoutInput, Key: []byte(m.key), Value: b, Timestamp: ts}}
	}
	var out []*kgo.Record
	for p := range k.parts {
		out = append(out, &kgo.Record{Topic: schemas.TopicFanoutInput, Partition: p, Key: []byte(schemas.DirectoryKey(p, k.parts)), Value: b, Timestamp: ts})
	}
	return out
}

// runUnderKills runs the group in a child process on a new storage
// directory and writes seq in kills+1 chunks; after each of the first
// kills chunks it SIGKILLs the child once rolodex.fanout.deliveries holds
// target(from, to, before) records (the chunk is seq[from:to], before the
// records delivered when it was written) and starts it again on the same
// directory. It returns the child running after the last chunk.
func (k *kafkaEnv) runUnderKills(seq []propMsg, kills int, target func(from, to, before int) int) *childtest.Child {
	t := k.t
	t.Helper()
	dir := filepath.Join(t.TempDir(), "fanout")
	ch := childtest.Start(t, envChild, k.brokers, dir, 0)
	ch.WaitJoined(t, schemas.GroupFanout)
	produced := 0
	produce := func(upto int) {
		var recs []*kgo.Record
		for ; produced < min(upto, len(seq)); produced++ {
			recs = append(recs, k.records(seq[produced])...)
		}
		if err := k.prod.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	chunk := len(seq) / (kills + 1)
	for i := 1; i <= kills; i++ {
		from := produced
		before, _ := k.delivered()
		produce(i * chunk)
		want := target(from, produced, before)
		for wait := time.Now().Add(time.Minute); ; time.Sleep(time.Millisecond) {
			if n, _ := k.delivered(); n >= want {
				break
			}
			if time.Now().After(wait) {
				t.Fatalf("fewer than %d records within a minute:\n%s", want, ch.Logs())
			}
		}
		_ = ch.Cmd.Process.Kill()
		<-ch.Exited
		n, _ := k.delivered()
		t.Logf("killed after %d of %d messages, %d records delivered", produced, len(seq), n)
		ch = childtest.Start(t, envChild, k.brokers, dir, i)
		ch.WaitJoined(t, schemas.GroupFanout)
	}
	produce(len(seq))
	return ch
}

// readAll reads every record of topic.
func (k *kafkaEnv) readAll(topic string) []*kgo.Record {
	k.t.Helper()
	return kafkatest.ReadAll(k.t, k.brokers, topic)
}

// delivered reads rolodex.fanout.deliveries: how many records, and each
// webhook id's record (a webhook id written again must be the same
// record, keyed by subscription and profile).
func (k *kafkaEnv) delivered() (int, map[string]schemas.FanoutDelivery) {
	k.t.Helper()
	set := map[string]schemas.FanoutDelivery{}
	recs := k.readAll(schemas.TopicFanoutDeliveries)
	for _, r := range recs {
		var d schemas.FanoutDelivery
		if err := json.Unmarshal(r.Value, &d); err != nil {
			k.t.Fatalf("undecodable delivery %s: %v", r.Value, err)
		}
		if string(r.Key) != d.DeliveryKey() {
			k.t.Fatalf("delivery keyed %s: %+v", r.Key, d)
		}
		if old, ok := set[d.WebhookID]; ok && (old.Body != d.Body || old.Subscription != d.Subscription) {
			k.t.Fatalf("webhook id %s written with two records:\n%+v\n%+v", d.WebhookID, old, d)
		}
		set[d.WebhookID] = d
	}
	return len(recs), set
}

// The fan-out group on Kafka (kfake over TCP) in a child process killed
// with SIGKILL mid-stream and restarted (once with -short; three times
// without, for each of three seeds): a random sequence of directory
// changes, topic events (some again, some of a publisher that does not
// own the topic), status changes and subscription replays over six
// profiles on three partitions. The records on rolodex.fanout.deliveries,
// deduped by webhook id, equal the reference's (none lost, none extra; a
// webhook id written again by a replay is the same record).
//
// Seeds 12 and 13 are streams where, before the group cleared its local
// copy after a crash (gokaconfig.KeepStorageIfClean), a replayed topic
// event was decided with a directory from after it (a later access-list
// change or disabled subscription the killed run had stored locally but
// Kafka never got): 2 of 15 seeds lost deliveries with three kills.
func TestFanoutOnKafkaUnderKills(t *testing.T) {
	if testing.Short() {
		fanoutUnderKills(t, 16, 400, 1)
		return
	}
	for _, seed := range []int64{16, 12, 13} {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) { fanoutUnderKills(t, seed, 900, 3) })
	}
}

func fanoutUnderKills(t *testing.T, seed int64, n, kills int) {
	k := newKafkaEnv(t, 3)
	rnd := rand.New(rand.NewSource(seed))
	seq := genFanout(rnd, n, false)
	ref := reference.NewFanout()
	upTo := make([]int, len(seq)+1) // reference records of the first i messages
	for i, m := range seq {
		ref.Handle(m.ref)
		upTo[i+1] = len(ref.Deliveries)
	}
	want := map[string]reference.FanoutDelivered{}
	for _, d := range ref.Deliveries {
		if old, ok := want[d.WebhookID]; ok && old != d {
			t.Fatalf("the reference sent webhook id %s twice, differently", d.WebhookID)
		}
		want[d.WebhookID] = d
	}

	// Mid-stream: once some of the chunk's records are out, while the
	// rest is being handled and offsets are not all committed.
	ch := k.runUnderKills(seq, kills, func(from, to, _ int) int {
		return upTo[from] + 1 + rnd.Intn(max(1, (upTo[to]-upTo[from])/2))
	})

	deadline := time.Now().Add(3 * time.Minute)
	for {
		records, got := k.delivered()
		var missing, extra, differ []string
		for id, w := range want {
			g, ok := got[id]
			switch {
			case !ok:
				missing = append(missing, id)
			case g.Kind != w.Kind || g.Subscription != w.Subscription || g.Partner != w.Partner || g.Tenant != w.Tenant ||
				g.Topic != w.Topic || g.ProfileID != w.Profile || g.Body != w.Body:
				differ = append(differ, fmt.Sprintf("%s:\n got %+v\nwant %+v", id, g, w))
			}
		}
		for id := range got {
			if _, ok := want[id]; !ok {
				extra = append(extra, id)
			}
		}
		if len(missing)+len(extra)+len(differ) == 0 {
			kinds := map[string]int{}
			for _, d := range got {
				kinds[d.Kind]++
			}
			t.Logf("%d messages, %d records for %d webhook ids (%v)", len(seq), records, len(got), kinds)
			if kinds[schemas.KindTopicEvent] == 0 || kinds[schemas.KindConsentRevoked] == 0 {
				t.Fatalf("the stream delivered no topic event or no revocation: it proves little (%v)", kinds)
			}
			return
		}
		if len(extra)+len(differ) > 0 || time.Now().After(deadline) {
			sort.Strings(missing)
			sort.Strings(extra)
			t.Fatalf("%d webhook ids, want %d; missing %v\nextra %v\ndiffering %v\nlog:\n%s", len(got), len(want), missing, extra, differ, ch.Logs())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// The replay window: EnsureTopics creates rolodex.fanout.input with the
// default retention, SetReplayRetention sets the configured one (also on a
// topic the identity stage created first) and refuses one not positive.
func TestReplayRetention(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, schemas.TopicEvents))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cl, err := kafkaclient.NewClient(kafkaclient.Config{Brokers: c.ListenAddrs()})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx := context.Background()
	retention := func() string {
		t.Helper()
		rcs, err := kadm.NewClient(cl).DescribeTopicConfigs(ctx, schemas.TopicFanoutInput)
		if err != nil {
			t.Fatal(err)
		}
		rc, err := rcs.On(schemas.TopicFanoutInput, nil)
		if err != nil || rc.Err != nil {
			t.Fatal(err, rc.Err)
		}
		for _, c := range rc.Configs {
			if c.Key == "retention.ms" {
				return c.MaybeValue()
			}
		}
		return ""
	}
	if err := EnsureTopics(ctx, cl, 1); err != nil {
		t.Fatal(err)
	}
	if got := retention(); got != "604800000" {
		t.Fatalf("retention.ms %q after EnsureTopics, want 7 days", got)
	}
	if err := SetReplayRetention(ctx, cl, 48*time.Hour); err != nil {
		t.Fatal(err)
	}
	if got := retention(); got != "172800000" {
		t.Fatalf("retention.ms %q, want 2 days", got)
	}
	if err := SetReplayRetention(ctx, cl, 0); err == nil || !strings.Contains(err.Error(), "not positive") {
		t.Fatalf("a zero retention: %v", err)
	}
}

// rolodex.fanout.deliveries takes records up to 16 MiB (a delivery with a
// large body): the broker refusing one would stop the group for good.
func TestDeliveriesTopicTakesLargeRecords(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, schemas.TopicEvents))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cl, err := kafkaclient.NewClient(kafkaclient.Config{Brokers: c.ListenAddrs()}, kgo.ProducerBatchMaxBytes(gokaconfig.MaxMessageBytes))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx := context.Background()
	if err := EnsureTopics(ctx, cl, 1); err != nil {
		t.Fatal(err)
	}
	rcs, err := kadm.NewClient(cl).DescribeTopicConfigs(ctx, schemas.TopicFanoutDeliveries)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := rcs.On(schemas.TopicFanoutDeliveries, nil)
	if err != nil || rc.Err != nil {
		t.Fatal(err, rc.Err)
	}
	got := ""
	for _, c := range rc.Configs {
		if c.Key == "max.message.bytes" {
			got = c.MaybeValue()
		}
	}
	if got != "16777216" {
		t.Errorf("max.message.bytes of %s = %q, want 16777216", schemas.TopicFanoutDeliveries, got)
	}
	big := make([]byte, 3<<20)
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: schemas.TopicFanoutDeliveries, Value: big}).FirstErr(); err != nil {
		t.Errorf("a 3 MiB delivery: %v", err)
	}
}

// Merges on Kafka under kills: the group in a child process SIGKILLed
// mid-stream and restarted, on a random sequence with merges (the
// identity root's absorbed record; the handovers and moves are the
// group's own records on its input, which Kafka interleaves as it will)
// and a directory fixed after its first records. Where the records go
// depends on that interleaving, so the check is the property merges
// exist for, read off rolodex.fanout.deliveries in order per key
// (<subscription>/<profile id>): for every profile id a live subscription
// received topic events under, if the facts its person ends with revoke
// or deny a purpose it received them under, a consent_revoked of that
// purpose under that id comes after the last of them; if the person ends
// blacklisted, a cancel under that id comes after the last topic event.
func TestFanoutMergesOnKafkaUnderKills(t *testing.T) {
	n, kills := 700, 2
	if testing.Short() {
		n, kills = 400, 1
	}
	k := newKafkaEnv(t, 3)
	rnd := rand.New(rand.NewSource(7))
	// A directory fixed from the start: every topic read by every partner
	// of its tenant, every subscription active.
	var seq []propMsg
	for _, tp := range propTopics {
		tp.Allowed = propPartners[tp.Tenant]
		seq = append(seq, propMsg{key: dirKey, ref: reference.FanoutMessage{At: t0, Input: schemas.FanoutInput{Topic: &schemas.TopicRecord{Topic: tp, Version: 1}}}})
	}
	for _, sb := range propSubs {
		sb.Status = schemas.SubscriptionActive
		if !sb.Kafka {
			sb.Webhook = &schemas.SubscriptionHook{URL: "https://" + sb.Partner + ".example/hook"}
		}
		seq = append(seq, propMsg{key: dirKey, ref: reference.FanoutMessage{At: t0, Input: schemas.FanoutInput{Subscription: &schemas.SubscriptionRecord{Subscription: sb, Version: 1}}}})
	}
	first := len(seq)
	for _, m := range genFanout(rnd, n, true) {
		if m.key != dirKey {
			seq = append(seq, m)
		}
	}
	// The facts each key ends with, and who merged into whom.
	final := map[string]*schemas.FanoutProfile{}
	into := map[string]string{}
	for _, m := range seq {
		in := m.ref.Input
		switch {
		case in.Status != nil:
			final[m.key] = in.Status.Profile
		case in.Event != nil && in.Event.Profile != nil:
			final[m.key] = in.Event.Profile
		case in.Absorbed != nil:
			into[in.Absorbed.From] = m.key
		}
	}
	root := func(p string) string {
		for into[p] != "" {
			p = into[p]
		}
		return p
	}
	subs := map[string]*schemas.SubscriptionRecord{}
	for _, m := range seq[:first] {
		if s := m.ref.Input.Subscription; s != nil {
			subs[s.Subscription.ID] = s
		}
	}

	ch := k.runUnderKills(seq, kills, func(_, _, before int) int { return before + 6 })

	// Settled: the group's committed offsets reach the end of its input
	// (its own records included), and the deliveries stop growing.
	type rec struct {
		d       schemas.FanoutDelivery
		purpose string
	}
	var byKey map[string][]rec
	read := func() int {
		byKey = map[string][]rec{}
		recs := k.readAll(schemas.TopicFanoutDeliveries)
		for _, r := range recs {
			var d schemas.FanoutDelivery
			if err := json.Unmarshal(r.Value, &d); err != nil {
				t.Fatal(err)
			}
			var body struct {
				Purpose string `json:"purpose"`
				Consent struct {
					Purpose string `json:"purpose"`
				} `json:"consent"`
			}
			if d.Body != "" {
				if err := json.Unmarshal([]byte(d.Body), &body); err != nil {
					t.Fatal(err)
				}
			}
			byKey[d.DeliveryKey()] = append(byKey[d.DeliveryKey()], rec{d, body.Purpose + body.Consent.Purpose})
		}
		return len(recs)
	}
	last, stable := -1, 0
	for deadline := time.Now().Add(2 * time.Minute); stable < 15; time.Sleep(200 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the deliveries did not settle:\n%s", ch.Logs())
		}
		if n := read(); n == last {
			stable++
		} else {
			last, stable = n, 0
		}
	}

	var problems []string
	aliasRevoked, aliasCancels, revoked := 0, 0, 0
	for key, rs := range byKey {
		sub, id, _ := strings.Cut(key, "/")
		if s := subs[sub]; s == nil || s.Subscription.Status != schemas.SubscriptionActive {
			continue
		}
		f := final[root(id)]
		if f == nil {
			continue
		}
		lastEvent := map[string]int{} // purpose ("" for any) → index of the last topic event
		for i, r := range rs {
			switch r.d.Kind {
			case schemas.KindTopicEvent:
				lastEvent[""] = i
				if r.purpose != "" {
					lastEvent[r.purpose] = i
				}
			case schemas.KindConsentRevoked:
				revoked++
				if id != root(id) {
					aliasRevoked++
				}
			case schemas.KindBlacklisted:
				if id != root(id) {
					aliasCancels++
				}
			}
		}
		after := func(kind, purpose string, from int) bool {
			for _, r := range rs[from+1:] {
				if r.d.Kind == kind && (purpose == "" || r.purpose == purpose) {
					return true
				}
			}
			return false
		}
		for p, i := range lastEvent {
			if c, ok := f.Consent[p]; p != "" && ok && (c.Status == schemas.ConsentRevoked || c.Status == schemas.ConsentDenied) &&
				!after(schemas.KindConsentRevoked, p, i) {
				problems = append(problems, fmt.Sprintf("%s: %s of %s (person %s) ends %s; no revocation after its last record", key, p, id, root(id), c.Status))
			}
		}
		if i, ok := lastEvent[""]; ok && f.Blacklisted && !after(schemas.KindBlacklisted, "", i) {
			problems = append(problems, fmt.Sprintf("%s: %s (person %s) ends blacklisted; no cancel after its last topic event", key, id, root(id)))
		}
	}
	sort.Strings(problems)
	if len(problems) > 0 {
		t.Fatalf("%d problems:\n%s", len(problems), strings.Join(problems, "\n"))
	}
	t.Logf("%d messages, %d merges, %d delivery keys; revocations %d (%d under a merged-away id), cancels under a merged-away id %d",
		len(seq), len(into), len(byKey), revoked, aliasRevoked, aliasCancels)
	if len(into) == 0 || aliasRevoked == 0 || aliasCancels == 0 {
		t.Fatal("the stream merged nothing, or nothing was revoked or cancelled under a merged-away id: it proves little")
	}
}
