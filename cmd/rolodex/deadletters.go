package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rolodex/rolodex/internal/kafkaclient"
	"github.com/rolodex/rolodex/schemas"
)

// deadLetterFormats are what --format of "deadletters tail" takes.
var deadLetterFormats = []string{"table", "json"}

// cmdDeadLettersTail is "rolodex deadletters tail": print the records of
// rolodex.deadletter, decoded. It reads without a consumer group (it
// commits nothing). Without --follow it prints what the topic holds when
// it starts and exits; with --follow it keeps printing until ctx is done.
func cmdDeadLettersTail(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("deadletters tail", stdout, stderr)
	brokers := fs.String("brokers", "127.0.0.1:9092", "Kafka seed brokers, host:port,...; the default is where \"rolodex dev\" listens")
	follow := fs.Bool("follow", false, "keep printing dead letters as they arrive, until interrupted (Ctrl-C)")
	partner := fs.String("partner", "", "only the dead letters of this partner")
	format := fs.String("format", "table", "output format: table, or json (one object per line)")
	pos, err := fs.parseInterleaved(args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageError{fmt.Sprintf("deadletters tail: unexpected argument %q", pos[0])}
	}
	var out deadLetterWriter
	switch *format {
	case "table":
		out = newDeadLetterTable(stdout, *follow)
	case "json":
		out = &deadLetterJSON{enc: json.NewEncoder(stdout)}
	default:
		return usageError{fmt.Sprintf("deadletters tail: unknown format %q (known: %s)", *format, strings.Join(deadLetterFormats, ", "))}
	}
	kbrokers := kafkaclient.ParseBrokers(*brokers)
	cl, err := kafkaclient.NewClient(kafkaclient.Config{Brokers: kbrokers, ClientID: "rolodex-deadletters"},
		kgo.ConsumeTopics(schemas.TopicDeadLetter),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		return usageError{"deadletters tail: " + err.Error()}
	}
	defer cl.Close()

	// Without --follow, read up to the end offsets of now.
	var until map[int32]int64
	if !*follow {
		if until, err = deadLetterEnds(ctx, cl); err != nil {
			return fmt.Errorf("deadletters tail: %w (is Kafka reachable at %s?)", err, strings.Join(kbrokers, ","))
		}
	}
	var undecodable int
	for *follow || len(until) > 0 {
		fetches := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			break
		}
		var ferr error
		fetches.EachError(func(topic string, p int32, err error) {
			ferr = errors.Join(ferr, fmt.Errorf("deadletters tail: read %s partition %d: %w", topic, p, err))
		})
		if ferr != nil {
			return ferr
		}
		var werr error
		fetches.EachRecord(func(r *kgo.Record) {
			if !*follow {
				end, ok := until[r.Partition]
				if !ok || r.Offset >= end {
					return
				}
				if r.Offset+1 >= end {
					delete(until, r.Partition)
				}
			}
			d, err := schemas.DecodeDeadLetter(r.Value)
			if err != nil {
				undecodable++
				fmt.Fprintf(stderr, "deadletters tail: partition %d offset %d: %v\n", r.Partition, r.Offset, err)
				return
			}
			if *partner != "" && d.Partner != *partner {
				return
			}
			if err := out.write(d); err != nil && werr == nil {
				werr = err
			}
		})
		if werr == nil {
			werr = out.flush()
		}
		if werr != nil {
			return fmt.Errorf("deadletters tail: %w", werr)
		}
	}
	if err := out.close(); err != nil {
		return fmt.Errorf("deadletters tail: %w", err)
	}
	if ctx.Err() != nil && !*follow {
		return ctx.Err()
	}
	if undecodable > 0 && !*follow {
		return fmt.Errorf("deadletters tail: %d records could not be decoded as dead letters", undecodable)
	}
	return nil
}

// deadLetterEnds returns, for each partition of the dead-letter topic that
// holds records, the offset after its last one. A missing topic holds none.
func deadLetterEnds(ctx context.Context, cl *kgo.Client) (map[int32]int64, error) {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	adm := kadm.NewClient(cl)
	starts, err := adm.ListStartOffsets(ctx, schemas.TopicDeadLetter)
	if err != nil {
		return nil, fmt.Errorf("list offsets of %s: %w", schemas.TopicDeadLetter, err)
	}
	ends, err := adm.ListEndOffsets(ctx, schemas.TopicDeadLetter)
	if err != nil {
		return nil, fmt.Errorf("list offsets of %s: %w", schemas.TopicDeadLetter, err)
	}
	out := map[int32]int64{}
	var lerr error
	ends.Each(func(o kadm.ListedOffset) {
		switch {
		case errors.Is(o.Err, kerr.UnknownTopicOrPartition):
		case o.Err != nil:
			lerr = errors.Join(lerr, fmt.Errorf("list offsets of %s partition %d: %w", o.Topic, o.Partition, o.Err))
		default:
			if s, ok := starts.Lookup(o.Topic, o.Partition); ok && s.Err == nil && s.Offset < o.Offset {
				out[o.Partition] = o.Offset
			}
		}
	})
	return out, lerr
}

// deadLetterWriter prints dead letters in one format.
type deadLetterWriter interface {
	write(d *schemas.DeadLetter) error
	// flush ends a batch of writes.
	flush() error
	// close ends the output.
	close() error
}

// deadLetterTable prints an aligned table; with follow, the rows of each
// batch are aligned among themselves.
type deadLetterTable struct {
	w      io.Writer
	tw     *tabwriter.Writer
	follow bool
	header bool
	// n counts the rows, pending those not flushed yet.
	n, pending int
}

func newDeadLetterTable(w io.Writer, follow bool) *deadLetterTable {
	return &deadLetterTable{w: w, tw: tabwriter.NewWriter(w, 0, 0, 2, ' ', 0), follow: follow}
}

var deadLetterColumns = []string{"time", "partner", "tenant", "source", "reason", "from", "message", "payload"}

func (t *deadLetterTable) row(cells ...string) error {
	_, err := io.WriteString(t.tw, strings.Join(cells, "\t")+"\n")
	return err
}

func (t *deadLetterTable) writeHeader() error {
	if t.header {
		return nil
	}
	t.header = true
	dashes := make([]string, len(deadLetterColumns))
	for i, c := range deadLetterColumns {
		dashes[i] = strings.Repeat("-", len(c))
	}
	if err := t.row(deadLetterColumns...); err != nil {
		return err
	}
	return t.row(dashes...)
}

func (t *deadLetterTable) write(d *schemas.DeadLetter) error {
	if err := t.writeHeader(); err != nil {
		return err
	}
	t.n++
	t.pending++
	return t.row(d.Time.UTC().Format("2006-01-02T15:04:05.000Z"), cell(d.Partner), cell(d.Tenant), cell(d.SourceKind),
		cell(d.Reason), cell(deadLetterFrom(d)), cell(d.Message), payloadCell(d.Payload, 60))
}

func (t *deadLetterTable) flush() error {
	if !t.follow && t.pending < 1000 {
		return nil // one alignment for up to 1000 rows
	}
	t.pending = 0
	return t.tw.Flush()
}

func (t *deadLetterTable) close() error {
	if t.follow {
		return t.tw.Flush()
	}
	if err := t.writeHeader(); err != nil {
		return err
	}
	if err := t.tw.Flush(); err != nil {
		return err
	}
	unit := "dead letters"
	if t.n == 1 {
		unit = "dead letter"
	}
	_, err := fmt.Fprintf(t.w, "(%d %s)\n", t.n, unit)
	return err
}

// deadLetterFrom says where a dead letter was received: the HTTP request,
// the Kafka record (also for a processor's undecodable input) or the CSV
// row.
func deadLetterFrom(d *schemas.DeadLetter) string {
	switch d.SourceKind {
	case schemas.SourceHTTP:
		return "request " + d.RequestID
	case schemas.SourceKafka, schemas.SourceProcessor:
		return fmt.Sprintf("%s[%d]@%d", d.Topic, d.Partition, d.Offset)
	case schemas.SourceCSV:
		return d.File + ":" + strconv.FormatInt(d.Row, 10)
	}
	return ""
}

// cell makes s fit in one table cell: no tabs or line breaks, "-" when
// empty.
func cell(s string) string {
	if s == "" {
		return "-"
	}
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
}

// payloadCell shows a payload as text cut to max runes, or its size when
// it is not text.
func payloadCell(p []byte, max int) string {
	if !isText(p) {
		return fmt.Sprintf("(%d bytes, not text)", len(p))
	}
	s := cell(string(p))
	if utf8.RuneCountInString(s) > max {
		s = string([]rune(s)[:max-1]) + "…"
	}
	return s
}

// isText reports whether p is UTF-8 without control characters other than
// whitespace.
func isText(p []byte) bool {
	if !utf8.Valid(p) {
		return false
	}
	for _, r := range string(p) {
		if unicode.IsControl(r) && !unicode.IsSpace(r) {
			return false
		}
	}
	return true
}

// deadLetterJSON prints one JSON object per line.
type deadLetterJSON struct{ enc *json.Encoder }

// deadLetterLine is the JSON form of a dead letter. The payload is a
// string when it is text, base64 (payload_base64) otherwise.
type deadLetterLine struct {
	Time          time.Time `json:"time"`
	Partner       string    `json:"partner"`
	Tenant        string    `json:"tenant"`
	Reason        string    `json:"reason"`
	Message       string    `json:"message"`
	SourceKind    string    `json:"source_kind"`
	RequestID     string    `json:"request_id,omitempty"`
	Topic         string    `json:"topic,omitempty"`
	Partition     *int32    `json:"partition,omitempty"`
	Offset        *int64    `json:"offset,omitempty"`
	File          string    `json:"file,omitempty"`
	Row           int64     `json:"row,omitempty"`
	Payload       *string   `json:"payload,omitempty"`
	PayloadBase64 []byte    `json:"payload_base64,omitempty"`
}

func (j *deadLetterJSON) write(d *schemas.DeadLetter) error {
	l := deadLetterLine{Time: d.Time.UTC(), Partner: d.Partner, Tenant: d.Tenant, Reason: d.Reason, Message: d.Message,
		SourceKind: d.SourceKind, RequestID: d.RequestID, Topic: d.Topic, File: d.File, Row: d.Row}
	if d.SourceKind == schemas.SourceKafka || d.SourceKind == schemas.SourceProcessor {
		l.Partition, l.Offset = &d.Partition, &d.Offset
	}
	if isText(d.Payload) {
		s := string(d.Payload)
		l.Payload = &s
	} else {
		l.PayloadBase64 = d.Payload
	}
	return j.enc.Encode(l)
}

func (j *deadLetterJSON) flush() error { return nil }
func (j *deadLetterJSON) close() error { return nil }
