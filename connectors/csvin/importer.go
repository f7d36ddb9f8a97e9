// Package csvin is the CSV bulk-import connector: it streams a CSV file row
// by row, maps each row to an event through a column mapping, validates and
// normalises it like every other ingest path, and produces accepted events
// to rolodex.events and rejected rows to rolodex.deadletter and a rejects
// file. An event counts as accepted only once Kafka acknowledged it.
//
// The lifecycle is New, then Run once. Memory stays constant however large
// the file: rows are read with a reused record and the records waiting for
// Kafka's acknowledgement are bounded by Config.MaxInFlight.
package csvin

import (
	"bufio"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rolodex/rolodex/intake"
	"github.com/rolodex/rolodex/partners"
	"github.com/rolodex/rolodex/schemas"
)

// Reasons csvin adds to those of package ingest.
const (
	// ReasonInvalidCSV rejects a row encoding/csv cannot read: a wrong
	// number of fields, a stray or unclosed quote.
	ReasonInvalidCSV = intake.ReasonInvalidCSV
	// ReasonEncodeFailed rejects a valid event that could not be encoded.
	ReasonEncodeFailed = intake.ReasonEncodeFailed
)

// Connector is the value of the "connector" metrics label.
const Connector = "csv"

const (
	readBufferSize = 64 << 10
	// maxPayload bounds the original bytes kept in a dead letter.
	maxPayload = 256 << 10
	// maxRawInMessage bounds the original text quoted in the rejects file's
	// message for a row that is not valid CSV.
	maxRawInMessage = 1 << 10
	// ackGrace is how long an interrupted import still waits for the
	// acknowledgements of what it produced.
	ackGrace = 10 * time.Second
	// checkTimeout bounds the check that Kafka is reachable.
	checkTimeout = 15 * time.Second
)

// Importer imports one CSV file.
type Importer struct {
	cfg       Config
	partner   *partners.Partner
	validator *intake.Validator
	cl        *kgo.Client
	metrics   *intake.Metrics
}

// New checks cfg and returns an importer attributing every row to partner p
// (and so to p's tenant). cl produces the records; it should come from
// kafkaclient.NewClient (acks=all, the shared partitioner) and stays owned
// by the caller. m may be nil.
func New(cfg Config, p *partners.Partner, v *intake.Validator, cl *kgo.Client, m *intake.Metrics) (*Importer, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if p == nil || v == nil || cl == nil {
		return nil, errors.New("csvin: a partner, a validator and a Kafka client are required")
	}
	if m == nil {
		m = intake.NewMetrics(nil)
	}
	return &Importer{cfg: cfg, partner: p, validator: v, cl: cl, metrics: m}, nil
}

// Result counts what an import did.
type Result struct {
	File    string
	Rejects string // the rejects file
	// Rows is the number of data rows read (header excluded), malformed
	// ones included.
	Rows int64
	// Accepted counts events Kafka acknowledged.
	Accepted int64
	// Rejected counts rows written to the rejects file and dead-lettered.
	Rejected int64
	// DeadLetters counts dead letters Kafka acknowledged.
	DeadLetters int64
	// NotAcknowledged counts rows whose record (event or dead letter) Kafka
	// did not acknowledge.
	NotAcknowledged int64
	// Dropped counts identifier values dropped from accepted rows because
	// they were invalid or blocked.
	Dropped int64
	// Bytes is how much of the file was read.
	Bytes   int64
	Elapsed time.Duration
}

// RowsPerSecond is the import rate.
func (r *Result) RowsPerSecond() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Rows) / r.Elapsed.Seconds()
}

// IncompleteError is returned when an import did not get every row it read
// acknowledged by Kafka, or stopped before the end of the file.
type IncompleteError struct {
	File string
	// Rows is the number of rows read; NotAcknowledged how many of them
	// Kafka did not acknowledge.
	Rows, NotAcknowledged int64
	// Stopped is set when the file was not read to the end.
	Stopped bool
	// Err is why: the first produce failure, the context's error, or a
	// read or write error.
	Err error
}

func (e *IncompleteError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "csvin: %s: ", e.File)
	if e.NotAcknowledged > 0 {
		fmt.Fprintf(&b, "%d of %d rows read were not acknowledged by Kafka", e.NotAcknowledged, e.Rows)
		if e.Stopped {
			b.WriteString(", and ")
		}
	}
	if e.Stopped {
		fmt.Fprintf(&b, "the import stopped after row %d", e.Rows)
	}
	if e.Err != nil {
		fmt.Fprintf(&b, ": %v", e.Err)
	}
	b.WriteString("; import the file again: rows already written keep their event ids and are deduplicated")
	return b.String()
}

func (e *IncompleteError) Unwrap() error { return e.Err }

// run is the state of one Run.
type run struct {
	im       *Importer
	ctx      context.Context
	received time.Time
	rejects  *rejectsWriter
	sem      chan struct{}
	wg       sync.WaitGroup
	accepted prometheus.Counter

	nAccepted, nDeadLetters, nFailed atomic.Int64
	mu                               sync.Mutex
	firstErr                         error
}

// Run imports the file. The header is read and matched against the mapping
// and Kafka is checked before any row is read; those errors return a nil
// Result. After that Run returns the Result even with an error, which is an
// *IncompleteError when rows were left unacknowledged or unread.
// Cancelling ctx stops the import.
func (im *Importer) Run(ctx context.Context) (*Result, error) {
	start := time.Now()
	cfg := &im.cfg
	f, err := os.Open(cfg.File)
	if err != nil {
		return nil, fmt.Errorf("csvin: %w", err)
	}
	defer f.Close()
	if err := checkNotSameFile(f, cfg.Rejects); err != nil {
		return nil, err
	}
	rr := newRowReader(f, cfg.Progress, cfg.MaxRowBytes, readBufferSize)
	cr := csv.NewReader(bufio.NewReaderSize(rr, readBufferSize))
	cr.Comma = cfg.Comma
	cr.ReuseRecord = true
	header, err := cr.Read()
	switch {
	case errors.Is(err, io.EOF):
		return nil, fmt.Errorf("csvin: %s is empty: its first row must be the header", cfg.File)
	case err != nil:
		return nil, fmt.Errorf("csvin: %s: header: %w", cfg.File, err)
	}
	header = slices.Clone(header)
	header[0] = strings.TrimPrefix(header[0], "\ufeff") // a UTF-8 byte order mark
	b, err := cfg.Mapping.bind(header)
	if err != nil {
		return nil, fmt.Errorf("csvin: %s: %w", cfg.File, err)
	}
	if err := im.checkKafka(ctx); err != nil {
		return nil, err
	}
	rejects, err := createRejects(cfg.Rejects, header, cfg.Comma)
	if err != nil {
		return nil, err
	}
	r := &run{
		im: im, ctx: ctx, received: start, rejects: rejects,
		sem:      make(chan struct{}, cfg.MaxInFlight),
		accepted: im.metrics.Accepted.WithLabelValues(im.partner.Name, Connector),
	}
	res := &Result{File: cfg.File, Rejects: cfg.Rejects}
	stopErr := r.pipeline(cr, rr, b, res)
	if err := rejects.close(); err != nil && stopErr == nil {
		stopErr = err
	}
	pending := r.wait()
	res.Accepted = r.nAccepted.Load()
	res.DeadLetters = r.nDeadLetters.Load()
	res.NotAcknowledged = r.nFailed.Load() + pending
	res.Bytes = rr.n
	res.Elapsed = time.Since(start)
	if stopErr == nil && res.NotAcknowledged == 0 {
		return res, nil
	}
	ie := &IncompleteError{File: cfg.File, Rows: res.Rows, NotAcknowledged: res.NotAcknowledged, Stopped: stopErr != nil, Err: stopErr}
	if ie.Err == nil || errors.Is(ie.Err, errProduceFailed) {
		ie.Err = r.firstError()
		if ie.Err == nil && pending > 0 {
			ie.Err = fmt.Errorf("no answer from Kafka for %d records within %s", pending, ackGrace)
		}
	}
	return res, ie
}

var errProduceFailed = errors.New("a record was not acknowledged")

// ErrNoKafka is returned by Run when Kafka does not answer before any row
// is read.
var ErrNoKafka = errors.New("csvin: Kafka did not answer")

// reject writes a rejected row to the rejects file and produces its dead
// letter. fields are the row's cells, nil when unknown.
func (r *run) reject(row int64, fields []string, raw []byte, rej *intake.Rejection) error {
	im := r.im
	p := im.partner
	if err := r.rejects.write(fields, row, rej); err != nil {
		return err
	}
	im.metrics.Rejected.WithLabelValues(p.Name, Connector, rej.Reason).Inc()
	if len(raw) > maxPayload {
		raw = raw[:maxPayload]
	}
	kr, err := intake.DeadLetterRecord(intake.NewDeadLetter(time.Now(), p.Name, p.Tenant, intake.FromCSV(im.cfg.File, row), rej, raw))
	if err != nil {
		return fmt.Errorf("row %d: %w", row, err)
	}
	reason := rej.Reason
	if !r.produce(kr, func(err error) { r.onDeadLetter(reason, err) }) {
		return r.ctx.Err()
	}
	return nil
}

// produce hands rec to the client once fewer than MaxInFlight records wait
// for their acknowledgement. It reports false when ctx ended first.
func (r *run) produce(rec *kgo.Record, done func(error)) bool {
	select {
	case r.sem <- struct{}{}:
	case <-r.ctx.Done():
		return false
	}
	r.wg.Add(1)
	r.im.cl.Produce(r.ctx, rec, func(_ *kgo.Record, err error) {
		// Promises run serially in the client: no blocking here.
		done(err)
		<-r.sem
		r.wg.Done()
	})
	return true
}

func (r *run) onEvent(err error) {
	if err != nil {
		r.fail(fmt.Errorf("%s: %w", schemas.TopicEvents, err))
		return
	}
	r.nAccepted.Add(1)
	r.accepted.Inc()
}

func (r *run) onDeadLetter(reason string, err error) {
	if err != nil {
		r.fail(fmt.Errorf("%s: %w", schemas.TopicDeadLetter, err))
		return
	}
	r.nDeadLetters.Add(1)
	r.im.metrics.DeadLetter.WithLabelValues(Connector, reason).Inc()
}

func (r *run) fail(err error) {
	r.nFailed.Add(1)
	r.mu.Lock()
	if r.firstErr == nil {
		r.firstErr = fmt.Errorf("%w: %w", intake.ErrUnavailable, err)
	}
	r.mu.Unlock()
}

func (r *run) firstError() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.firstErr
}

// wait flushes the client and waits for every acknowledgement. When ctx is
// done it waits at most ackGrace, and returns how many records are still
// without an answer.
func (r *run) wait() (pending int64) {
	done := make(chan struct{})
	go func() {
		r.wg.Wait()
		close(done)
	}()
	if err := r.im.cl.Flush(r.ctx); err == nil {
		<-done
		return 0
	}
	select {
	case <-done:
		return 0
	case <-time.After(ackGrace):
		return int64(len(r.sem))
	}
}

// checkKafka makes sure Kafka answers and both topics exist, so that a
// missing topic is one clear error rather than one per row.
func (im *Importer) checkKafka(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()
	topics, err := kadm.NewClient(im.cl).ListTopics(ctx, schemas.TopicEvents, schemas.TopicDeadLetter)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrNoKafka, err)
	}
	for _, t := range []string{schemas.TopicEvents, schemas.TopicDeadLetter} {
		if d, ok := topics[t]; !ok || d.Err != nil {
			return fmt.Errorf("csvin: topic %s is not in Kafka (run \"rolodex dev\" or \"rolodex run ingest\" once: they create it)", t)
		}
	}
	return nil
}

func checkNotSameFile(in *os.File, rejects string) error {
	a, err := in.Stat()
	if err != nil {
		return fmt.Errorf("csvin: %w", err)
	}
	if a.IsDir() {
		return fmt.Errorf("csvin: %s is a directory", in.Name())
	}
	if b, err := os.Stat(rejects); err == nil && os.SameFile(a, b) {
		return fmt.Errorf("csvin: the rejects file %s is the input file", rejects)
	}
	return nil
}
