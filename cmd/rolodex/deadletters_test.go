package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rolodex/rolodex/internal/kafkaclient"
	"github.com/rolodex/rolodex/schemas"
)

// startDeadLetterBroker starts a kfake broker (over TCP) whose dead-letter
// topic has partitions partitions, and returns its address and a producer.
func startDeadLetterBroker(t *testing.T, partitions int32) (string, *kgo.Client) {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(partitions, schemas.TopicDeadLetter))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	addr := c.ListenAddrs()[0]
	cl, err := kafkaclient.NewClient(kafkaclient.Config{Brokers: []string{addr}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return addr, cl
}

// produceDeadLetters writes each dead letter, keyed by its partner, as the
// connectors do.
func produceDeadLetters(t *testing.T, cl *kgo.Client, dls ...*schemas.DeadLetter) {
	t.Helper()
	for _, d := range dls {
		v, err := schemas.EncodeDeadLetter(d)
		if err != nil {
			t.Fatal(err)
		}
		produceRaw(t, cl, d.Partner, v)
	}
}

func produceRaw(t *testing.T, cl *kgo.Client, key string, value []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r := &kgo.Record{Topic: schemas.TopicDeadLetter, Key: []byte(key), Value: value}
	if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

var (
	dlTime = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	dlHTTP = &schemas.DeadLetter{Time: dlTime, Partner: "demo", Tenant: "demo", Reason: "no_valid_identifier",
		Message: "no identifier left:\temail \"null\" is blocked", SourceKind: schemas.SourceHTTP, RequestID: "req-1",
		Payload: []byte("{\"id\":\"e-1\",\n\"identifiers\":{\"email\":\"null\"}}")}
	dlKafka = &schemas.DeadLetter{Time: dlTime.Add(time.Second), Partner: "acme", Tenant: "acme", Reason: "invalid_json",
		Message: "a record must be one JSON event object", SourceKind: schemas.SourceKafka, Topic: "rolodex.ingest.acme", Partition: 2, Offset: 41,
		Payload: []byte{0xff, 0x00, 0x01}}
	dlCSV = &schemas.DeadLetter{Time: dlTime.Add(2 * time.Second), Partner: "demo", Tenant: "demo", Reason: "invalid_time",
		Message: "time: not RFC 3339", SourceKind: schemas.SourceCSV, File: "contacts.csv", Row: 7,
		Payload: []byte(strings.Repeat("x", 100))}
)

func TestDeadLettersTail(t *testing.T) {
	addr, cl := startDeadLetterBroker(t, 1)
	produceDeadLetters(t, cl, dlHTTP, dlKafka, dlCSV)

	t.Run("table", func(t *testing.T) {
		var out, errb bytes.Buffer
		if err := run(context.Background(), []string{"deadletters", "tail", "--brokers", addr}, &out, &errb); err != nil {
			t.Fatalf("%v\n%s", err, errb.String())
		}
		want := "" +
			"time                      partner  tenant  source  reason               from                       message                                      payload\n" +
			"----                      -------  ------  ------  ------               ----                       -------                                      -------\n" +
			"2026-11-22T10:00:00.000Z  demo     demo    http    no_valid_identifier  request req-1              no identifier left: email \"null\" is blocked  {\"id\":\"e-1\", \"identifiers\":{\"email\":\"null\"}}\n" +
			"2026-11-22T10:00:01.000Z  acme     acme    kafka   invalid_json         rolodex.ingest.acme[2]@41  a record must be one JSON event object       (3 bytes, not text)\n" +
			"2026-11-22T10:00:02.000Z  demo     demo    csv     invalid_time         contacts.csv:7             time: not RFC 3339                           " + strings.Repeat("x", 59) + "…\n" +
			"(3 dead letters)\n"
		if out.String() != want {
			t.Fatalf("got\n%s\nwant\n%s", out.String(), want)
		}
	})

	t.Run("json, one partner", func(t *testing.T) {
		var out, errb bytes.Buffer
		if err := run(context.Background(), []string{"deadletters", "tail", "--brokers", addr, "--format", "json", "--partner", "demo"}, &out, &errb); err != nil {
			t.Fatalf("%v\n%s", err, errb.String())
		}
		lines := strings.Split(strings.TrimSpace(out.String()), "\n")
		if len(lines) != 2 {
			t.Fatalf("want the 2 dead letters of demo, got:\n%s", out.String())
		}
		var first, second map[string]any
		if err := json.Unmarshal([]byte(lines[0]), &first); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal([]byte(lines[1]), &second); err != nil {
			t.Fatal(err)
		}
		wantFirst := map[string]any{"time": "2026-11-22T10:00:00Z", "partner": "demo", "tenant": "demo", "reason": "no_valid_identifier",
			"message": dlHTTP.Message, "source_kind": "http", "request_id": "req-1", "payload": string(dlHTTP.Payload)}
		if !equalJSON(first, wantFirst) {
			t.Fatalf("first line = %v\nwant %v", first, wantFirst)
		}
		if second["source_kind"] != "csv" || second["file"] != "contacts.csv" || second["row"] != 7.0 || second["partition"] != nil {
			t.Fatalf("second line = %v", second)
		}
	})

	t.Run("json, binary payload", func(t *testing.T) {
		var out bytes.Buffer
		if err := run(context.Background(), []string{"deadletters", "tail", "--brokers", addr, "--format=json", "--partner=acme"}, &out, &bytes.Buffer{}); err != nil {
			t.Fatal(err)
		}
		var got map[string]any
		if err := json.Unmarshal(out.Bytes(), &got); err != nil {
			t.Fatalf("%v: %s", err, out.String())
		}
		if got["payload_base64"] != "/wAB" || got["payload"] != nil || got["partition"] != 2.0 || got["offset"] != 41.0 || got["topic"] != "rolodex.ingest.acme" {
			t.Fatalf("got %v", got)
		}
	})

	t.Run("unknown partner", func(t *testing.T) {
		var out bytes.Buffer
		if err := run(context.Background(), []string{"deadletters", "tail", "--brokers", addr, "--partner", "nobody"}, &out, &bytes.Buffer{}); err != nil {
			t.Fatal(err)
		}
		if !strings.HasSuffix(out.String(), "\n(0 dead letters)\n") {
			t.Fatalf("got\n%s", out.String())
		}
	})

	t.Run("usage", func(t *testing.T) {
		for _, args := range [][]string{{"--format", "xml"}, {"extra"}} {
			err := run(context.Background(), append([]string{"deadletters", "tail", "--brokers", addr}, args...), &bytes.Buffer{}, &bytes.Buffer{})
			if exitCode(err) != 2 {
				t.Errorf("%v: err = %v, want a usage error", args, err)
			}
		}
	})
}

func equalJSON(a, b map[string]any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return bytes.Equal(x, y)
}

// Without --follow the command stops at what every partition held when it
// started, also for empty partitions and a topic that does not exist.
func TestDeadLettersTailEnds(t *testing.T) {
	addr, cl := startDeadLetterBroker(t, 4)
	var out bytes.Buffer
	if err := run(context.Background(), []string{"deadletters", "tail", "--brokers", addr}, &out, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	if out.String() != "time  partner  tenant  source  reason  from  message  payload\n----  -------  ------  ------  ------  ----  -------  -------\n(0 dead letters)\n" {
		t.Fatalf("empty topic:\n%s", out.String())
	}
	// Keys spread the records over the partitions; some stay empty.
	var dls []*schemas.DeadLetter
	for _, p := range []string{"a", "b", "c", "d", "e", "f", "g"} {
		d := *dlHTTP
		d.Partner = p
		dls = append(dls, &d)
	}
	produceDeadLetters(t, cl, dls...)
	out.Reset()
	if err := run(context.Background(), []string{"deadletters", "tail", "--brokers", addr, "--format", "json"}, &out, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(out.String(), "\n"); n != len(dls) {
		t.Fatalf("%d lines, want %d:\n%s", n, len(dls), out.String())
	}

	// A broker without the topic: nothing to print.
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	out.Reset()
	if err := run(context.Background(), []string{"deadletters", "tail", "--brokers", c.ListenAddrs()[0], "--format", "json"}, &out, &bytes.Buffer{}); err != nil || out.Len() != 0 {
		t.Fatalf("no topic: %v, %q", err, out.String())
	}
}

// A record that is not a dead letter is reported on stderr and makes the
// command fail after it printed the others.
func TestDeadLettersTailUndecodable(t *testing.T) {
	addr, cl := startDeadLetterBroker(t, 1)
	produceDeadLetters(t, cl, dlHTTP)
	produceRaw(t, cl, "demo", []byte("not avro"))
	produceDeadLetters(t, cl, dlCSV)
	var out, errb bytes.Buffer
	err := run(context.Background(), []string{"deadletters", "tail", "--brokers", addr, "--format", "json"}, &out, &errb)
	if err == nil || !strings.Contains(err.Error(), "1 records could not be decoded") {
		t.Fatalf("err = %v", err)
	}
	if strings.Count(out.String(), "\n") != 2 || !strings.Contains(errb.String(), "partition 0 offset 1") {
		t.Fatalf("stdout:\n%s\nstderr:\n%s", out.String(), errb.String())
	}
}

// syncBuffer is a bytes.Buffer safe for one writer and one reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// With --follow the command prints what is there, then what arrives, until
// its context ends (Ctrl-C); then it exits without an error.
func TestDeadLettersTailFollow(t *testing.T) {
	addr, cl := startDeadLetterBroker(t, 2)
	produceDeadLetters(t, cl, dlHTTP)
	for _, format := range []string{"table", "json"} {
		t.Run(format, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var out syncBuffer
			done := make(chan error, 1)
			go func() {
				done <- run(ctx, []string{"deadletters", "tail", "--follow", "--partner", "acme", "--brokers", addr, "--format", format}, &out, &bytes.Buffer{})
			}()
			// The dead letter of another partner is not printed; acme's
			// are, as they arrive.
			d := *dlKafka
			d.Message = "arrived while following with " + format
			produceDeadLetters(t, cl, &d)
			waitFor(t, &out, d.Message)
			d.Message = "arrived later with " + format
			produceDeadLetters(t, cl, &d)
			waitFor(t, &out, d.Message)
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("after Ctrl-C: %v", err)
				}
			case <-time.After(30 * time.Second):
				t.Fatal("did not stop within 30s of its context ending")
			}
			if strings.Contains(out.String(), "demo") || strings.Contains(out.String(), "dead letters)") {
				t.Fatalf("printed another partner's dead letter or a count:\n%s", out.String())
			}
		})
	}
}

// waitFor polls out until it contains want, for up to 30 seconds.
func waitFor(t *testing.T, out *syncBuffer, want string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(out.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q within 30s; printed:\n%s", want, out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A processor's undecodable input names its record like a Kafka one does.
func TestDeadLetterFromProcessor(t *testing.T) {
	d := &schemas.DeadLetter{Reason: schemas.ReasonUndecodable, SourceKind: schemas.SourceProcessor, Topic: "rolodex.events", Partition: 3, Offset: 9}
	if got, want := deadLetterFrom(d), "rolodex.events[3]@9"; got != want {
		t.Fatalf("from = %q, want %q", got, want)
	}
}
