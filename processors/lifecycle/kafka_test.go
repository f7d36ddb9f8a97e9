package lifecycle

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lovoo/goka"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rolodex/rolodex/internal/childtest"
	"github.com/rolodex/rolodex/internal/kafkaclient"
	"github.com/rolodex/rolodex/internal/kafkatest"
	"github.com/rolodex/rolodex/reference"
	"github.com/rolodex/rolodex/schemas"
)

// Child processes run the three groups until they are killed.
const envChild = "ROLODEX_TEST_LIFECYCLE"

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

// expectedVerdicts is a plain model of the recipients group's verdicts
// (docs/lifecycle.md): a send is refused when its address had, before the
// send's time, a hard bounce or the last of DefaultSoftBounceLimit soft
// bounces in a row (a delivery, open or click of the address breaks the
// row), counting every distinct event id; a hard bounce of the send's own
// message does not refuse its message.sent (it does its resent).
func expectedVerdicts(evs []*schemas.Event) map[string]bool {
	type mark struct {
		id   string
		t    int64
		soft bool
	}
	type inval struct {
		t   int64
		msg string // a hard bounce's message
	}
	hard := map[string][]inval{}
	rows := map[string][]mark{}
	type send struct {
		addr, id, msg string
		t             int64
		resent        bool
	}
	var sends []send
	seen := map[string]bool{}
	for _, ev := range evs {
		if seen[ev.ID] {
			continue
		}
		seen[ev.ID] = true
		m, err := schemas.MessageEventOf(ev)
		if err != nil {
			continue
		}
		typ, _ := schemas.AddressType(m.Channel)
		addr := ""
		for _, id := range ev.Identifiers {
			if id.Type == typ {
				addr = ev.Tenant + "/" + id.String()
				break
			}
		}
		if addr == "" {
			continue
		}
		switch m.State {
		case schemas.MessageSent, schemas.MessageResent:
			sends = append(sends, send{addr, ev.ID, m.MessageID, m.Time, m.State == schemas.MessageResent})
		case schemas.MessageBounced:
			if m.Bounce == "hard" {
				hard[addr] = append(hard[addr], inval{m.Time, m.MessageID})
			} else {
				rows[addr] = append(rows[addr], mark{ev.ID, m.Time, true})
			}
		case schemas.MessageDelivered, schemas.MessageOpened, schemas.MessageClicked:
			rows[addr] = append(rows[addr], mark{ev.ID, m.Time, false})
		}
	}
	for addr, ms := range rows {
		sort.Slice(ms, func(i, j int) bool { return ms[i].t < ms[j].t || (ms[i].t == ms[j].t && ms[i].id < ms[j].id) })
		n := 0
		for _, m := range ms {
			if !m.soft {
				n = 0
				continue
			}
			if n++; n == DefaultSoftBounceLimit {
				hard[addr] = append(hard[addr], inval{t: m.t})
				n = 0
			}
		}
	}
	out := map[string]bool{}
	for _, s := range sends {
		for _, h := range hard[s.addr] {
			if h.t < s.t && (s.resent || h.msg != s.msg) {
				out[s.id] = true
			}
		}
	}
	return out
}

// The three groups on Kafka (kfake over TCP): message histories produced
// to rolodex.events as ingest writes them (Avro, keyed by Event.Key()),
// shuffled, duplicated, with provider retries, with the child process
// killed (SIGKILL) mid-stream and restarted (three times; once with
// -short). Every message's state, bounce, channel, recipient, history and
// refusals in the lifecycle table equal the reference model's fold of the
// set of events with the model's verdicts; the refusals standing in the
// dead letters (the latest record per event) are the reference's; a hard
// bounce wrote identifier.invalidated to rolodex.events; a later send to
// that address is refused with invalid_recipient.
func TestLifecycleOnKafkaUnderKills(t *testing.T) {
	msgs, kills := 60, 3
	if testing.Short() {
		msgs, kills = 15, 1
	}
	const partitions = 3
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(partitions, schemas.TopicEvents, schemas.TopicDeadLetter))
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

	r := rand.New(rand.NewSource(14))
	var all []*schemas.Event // the set, provider retries included
	var stream []*schemas.Event
	for m := 0; m < msgs; m++ {
		for _, ev := range walk(r, "t1", fmt.Sprintf("m%02d", m), 1000+int64(r.Intn(5)), &history{invalid: map[string]bool{}}) {
			schemas.SortIdentifiers(ev.Identifiers)
			ev.ReceivedAt = ev.Time
			all = append(all, ev)
			stream = append(stream, ev)
			switch r.Intn(6) {
			case 0: // the same event again
				stream = append(stream, ev)
			case 1: // the provider retries under another event id
				if ev.Properties["provider_event_id"] != "" {
					dup := *ev
					dup.ID = ev.ID + "-retry"
					dup.Time = ev.Time.Add(time.Duration(r.Intn(5)-2) * time.Millisecond)
					all = append(all, &dup)
					stream = append(stream, &dup)
				}
			}
		}
	}
	// The chain: a hard bounce of ana@, then a send of another message to
	// her.
	ana := []schemas.Identifier{{Type: schemas.IDEmail, Value: "ana@example.com"}}
	chain := func(id, msg string, st schemas.MessageState, at int64, extra ...string) *schemas.Event {
		props := map[string]string{"message_id": strconv.Quote(msg)}
		for i := 0; i+1 < len(extra); i += 2 {
			props[extra[i]] = strconv.Quote(extra[i+1])
		}
		return &schemas.Event{Tenant: "t1", ID: id, Type: schemas.MessageEventType(st), Time: time.UnixMilli(at), Source: "test",
			Partner: "p", Identifiers: ana, Properties: props, ReceivedAt: time.UnixMilli(at)}
	}
	chainEvents := []*schemas.Event{
		chain("c-1", "welcome", schemas.MessageSent, 5000),
		chain("c-2", "welcome", schemas.MessageBounced, 5001, "bounce", "hard"),
		chain("c-3", "news", schemas.MessageSent, 6000),
	}
	all = append(all, chainEvents...)
	// Arrivals: reordered within a few records.
	pos := make([]float64, len(stream))
	for i := range pos {
		pos[i] = float64(i) + r.Float64()*8
	}
	idx := make([]int, len(stream))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return pos[idx[a]] < pos[idx[b]] })
	shuffled := make([]*schemas.Event, 0, len(stream)+len(chainEvents))
	for _, j := range idx {
		shuffled = append(shuffled, stream[j])
	}
	stream = append(shuffled[:len(shuffled)/2:len(shuffled)/2], append(chainEvents[:2:2], shuffled[len(shuffled)/2:]...)...)

	prod, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.RecordPartitioner(kafkaclient.Partitioner()), kgo.ProducerLinger(0))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	produced := 0
	produceEvent := func(ev *schemas.Event) {
		t.Helper()
		v, err := schemas.EncodeEvent(ev)
		if err != nil {
			t.Fatal(err)
		}
		if err := prod.ProduceSync(ctx, &kgo.Record{Topic: schemas.TopicEvents, Key: []byte(ev.Key()), Value: v}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	produce := func(n int) {
		for _, ev := range stream[produced:min(produced+n, len(stream))] {
			produceEvent(ev)
			produced++
		}
	}
	dir := filepath.Join(t.TempDir(), "lifecycle")
	ch := childtest.Start(t, envChild, brokers, dir, 0)
	ch.WaitJoined(t, schemas.GroupMessagesRouter, schemas.GroupRecipients, schemas.GroupLifecycle)
	chunk := len(stream) / (kills + 1)
	for i := 1; i <= kills; i++ {
		produce(chunk)
		time.Sleep(time.Duration(r.Intn(300)) * time.Millisecond)
		_ = ch.Cmd.Process.Kill()
		<-ch.Exited
		t.Logf("killed after %d of %d events", produced, len(stream))
		ch = childtest.Start(t, envChild, brokers, dir, i)
		ch.WaitJoined(t, schemas.GroupMessagesRouter, schemas.GroupRecipients, schemas.GroupLifecycle)
	}
	produce(len(stream))

	// The hard bounce reaches rolodex.events as identifier.invalidated;
	// only then is the later send produced (as a brand would, after).
	invID := DerivedID("c-2", schemas.ReasonHardBounce)
	var inv *schemas.Event
	deadline := time.Now().Add(2 * time.Minute)
	for inv == nil && time.Now().Before(deadline) {
		for _, rec := range readAll(t, brokers, schemas.TopicEvents) {
			ev, err := schemas.DecodeEvent(rec.Value)
			if err != nil {
				t.Fatal(err)
			}
			if ev.ID == invID {
				inv = ev
				if string(rec.Key) != ev.Key() {
					t.Fatalf("invalidation keyed %s, want %s", rec.Key, ev.Key())
				}
			}
		}
		if inv == nil {
			time.Sleep(200 * time.Millisecond)
		}
	}
	if inv == nil || inv.Type != schemas.EventIdentifierInvalidated || schemas.StringProperty(inv, "reason") != schemas.ReasonHardBounce ||
		schemas.StringProperty(inv, "value") != "ana@example.com" || inv.Time.UnixMilli() != 5001 {
		b, _ := os.ReadFile(ch.Log)
		t.Fatalf("identifier.invalidated of the hard bounce: %+v\nlog:\n%s", inv, b)
	}
	produceEvent(chainEvents[2])

	want := reference.Messages(all, expectedVerdicts(all))
	if !expectedVerdicts(all)["c-3"] {
		t.Fatal("the model does not refuse the send after the hard bounce")
	}
	var got map[string]*State
	deadline = time.Now().Add(3 * time.Minute)
	for {
		got = map[string]*State{}
		for _, rec := range readAll(t, brokers, string(goka.GroupTable(schemas.GroupLifecycle))) {
			var s State
			if err := json.Unmarshal(rec.Value, &s); err != nil {
				t.Fatal(err)
			}
			got[string(rec.Key)] = &s
		}
		if diff := diffMessages(want, got); diff == "" {
			break
		} else if time.Now().After(deadline) {
			b, _ := os.ReadFile(ch.Log)
			t.Fatalf("the lifecycle table differs from the reference: %s\nlog:\n%s", diff, b)
		}
		time.Sleep(300 * time.Millisecond)
	}
	if rf := got["t1/news"].Refused["c-3"]; rf.Reason != schemas.ReasonInvalidRecipient {
		t.Fatalf("the send after the hard bounce: %+v", got["t1/news"])
	}

	// The dead letters: per event, the latest record is its standing.
	wantRefused := map[string]string{}
	reasons := map[string]int{}
	for k, o := range want {
		for id, rf := range o.Refused {
			from := string(rf.From)
			if from == "" {
				from = "none"
			}
			wantRefused[id] = fmt.Sprintf("%s|message %q: event %q asks for %s in state %s: %s", rf.Reason, strings.TrimPrefix(k, "t1/"), id, rf.Asked, from, rf.Reason)
			reasons[rf.Reason]++
		}
	}
	var standing map[string]string
	deadline = time.Now().Add(time.Minute)
	for {
		standing = map[string]string{}
		for _, rec := range readAll(t, brokers, schemas.TopicDeadLetter) {
			d, err := schemas.DecodeDeadLetter(rec.Value)
			if err != nil {
				t.Fatal(err)
			}
			var ev schemas.MessageEvent
			if err := json.Unmarshal(d.Payload, &ev); err != nil {
				t.Fatalf("dead letter %+v: payload: %v", d, err)
			}
			if d.Topic != schemas.TopicMessageEvents || d.SourceKind != schemas.SourceKafka {
				t.Fatalf("dead letter %+v", d)
			}
			if d.Reason == schemas.ReasonRefusalWithdrawn {
				delete(standing, ev.ID)
			} else {
				standing[ev.ID] = d.Reason + "|" + d.Message
			}
		}
		if reflect.DeepEqual(standing, wantRefused) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("standing refusals in the dead letters:\n%v\nwant\n%v", standing, wantRefused)
		}
		time.Sleep(300 * time.Millisecond)
	}
	t.Logf("%d events produced, %d messages, refusals by reason %v", len(stream)+1, len(want), reasons)
	if reasons[schemas.ReasonInvalidTransition] == 0 {
		t.Fatal("no invalid transition happened: the test proves little")
	}
}

// diffMessages says how got differs from want ("" if not at all).
func diffMessages(want map[string]reference.MessageOutcome, got map[string]*State) string {
	if len(got) != len(want) {
		return fmt.Sprintf("%d messages, want %d", len(got), len(want))
	}
	for k, w := range want {
		g, ok := got[k]
		if !ok {
			return fmt.Sprintf("message %s missing", k)
		}
		o := reference.MessageOutcome{State: g.State, Bounce: g.Bounce, Channel: g.Channel, Recipient: g.Recipient, History: g.History, Refused: g.Refused}
		if !reflect.DeepEqual(o, w) {
			return fmt.Sprintf("message %s:\n got %+v\nwant %+v", k, o, w)
		}
	}
	return ""
}
