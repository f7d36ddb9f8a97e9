package csvin

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"sync"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rolodex/rolodex/intake"
	"github.com/rolodex/rolodex/normalize"
)

// batchRows is how many rows travel together through the pipeline.
const batchRows = 256

// batch is a run of consecutive rows. The reader fills it, one worker
// converts it, and the sequencer hands its records to Kafka in file order.
type batch struct {
	first  int64 // row number of rows[0]
	rows   []rowIn
	fields []string // the cells of every row, back to back
	raw    []byte   // the bytes of every row as in the file, back to back
	out    []rowOut
	err    error // a read error after these rows: the import stops there
	done   chan struct{}
}

type rowIn struct {
	fieldsFrom, fieldsTo int
	rawFrom, rawTo       int
	// hasFields is false for a row that is not valid CSV and whose cells do
	// not fit the header.
	hasFields bool
	parseErr  *csv.ParseError
}

type rowOut struct {
	rec     *kgo.Record
	rej     *intake.Rejection
	dropped []*normalize.Error
}

var batchPool = sync.Pool{New: func() any { return new(batch) }}

func newBatch(first int64) *batch {
	b := batchPool.Get().(*batch)
	b.first, b.err, b.done = first, nil, make(chan struct{})
	b.rows, b.fields, b.raw = b.rows[:0], b.fields[:0], b.raw[:0]
	return b
}

func (b *batch) free() {
	clear(b.out) // drop the records
	clear(b.fields)
	batchPool.Put(b)
}

func (b *batch) cells(i int) []string { r := b.rows[i]; return b.fields[r.fieldsFrom:r.fieldsTo] }
func (b *batch) line(i int) []byte    { r := b.rows[i]; return b.raw[r.rawFrom:r.rawTo] }

// pipeline runs the reader, the workers and the sequencer until the file
// ends or the import stops, and returns why it stopped early, or nil.
func (r *run) pipeline(cr *csv.Reader, rr *rowReader, bind *binding, res *Result) error {
	cfg := &r.im.cfg
	stop := make(chan struct{})
	work := make(chan *batch, cfg.Workers)
	ordered := make(chan *batch, 2*cfg.Workers)
	var wg sync.WaitGroup
	wg.Go(func() { r.read(cr, rr, bind.width, work, ordered, stop) })
	base := filepath.Base(cfg.File)
	for range cfg.Workers {
		conv := newConverter(bind, cfg.DefaultType, r.im.partner.Name, base)
		wg.Go(func() {
			for b := range work {
				r.convertBatch(conv, b)
			}
		})
	}
	err := r.sequence(ordered, res)
	close(stop)
	wg.Wait()
	return err
}

// read parses rows into batches and sends each to the workers and, in
// order, to the sequencer.
func (r *run) read(cr *csv.Reader, rr *rowReader, width int, work, ordered chan<- *batch, stop <-chan struct{}) {
	defer close(ordered)
	defer close(work)
	row := int64(1)
	rr.release(cr.InputOffset(), row)
	for end := false; !end; {
		b := newBatch(row)
		for len(b.rows) < batchRows {
			from := cr.InputOffset()
			rec, err := cr.Read()
			if errors.Is(err, io.EOF) {
				end = true
				break
			}
			var pe *csv.ParseError
			if err != nil && !errors.As(err, &pe) {
				if tl := (*RowTooLargeError)(nil); !errors.As(err, &tl) {
					err = fmt.Errorf("read row %d: %w", row, err)
				}
				b.err, end = err, true
				break
			}
			in := rowIn{parseErr: pe, fieldsFrom: len(b.fields), rawFrom: len(b.raw)}
			// Only a wrong field count is documented to return the cells.
			if pe == nil || (errors.Is(err, csv.ErrFieldCount) && len(rec) <= width) {
				b.fields = append(b.fields, rec...)
				in.hasFields = true
			}
			b.raw = append(b.raw, rr.bytes(from, cr.InputOffset())...)
			in.fieldsTo, in.rawTo = len(b.fields), len(b.raw)
			b.rows = append(b.rows, in)
			row++
			rr.release(cr.InputOffset(), row)
		}
		if len(b.rows) == 0 && b.err == nil {
			return
		}
		select {
		case work <- b:
		case <-stop:
			return
		}
		select {
		case ordered <- b:
		case <-stop:
			return
		}
	}
}

// convertBatch turns each row of b into its event record or its rejection.
func (r *run) convertBatch(conv *converter, b *batch) {
	b.out = append(b.out[:0], make([]rowOut, len(b.rows))...)
	for i := range b.rows {
		b.out[i] = r.convertRow(conv, b, i)
	}
	close(b.done)
}

func (r *run) convertRow(conv *converter, b *batch, i int) rowOut {
	if pe := b.rows[i].parseErr; pe != nil {
		line := b.line(i)
		if len(line) > maxRawInMessage {
			line = line[:maxRawInMessage]
		}
		return rowOut{rej: &intake.Rejection{Reason: ReasonInvalidCSV, Message: fmt.Sprintf("%v; the row as read: %q", pe, line)}}
	}
	raw, rej := conv.convert(b.cells(i))
	if rej != nil {
		return rowOut{rej: rej}
	}
	ev, dropped, rej := r.im.validator.Validate(r.im.partner, raw, r.received)
	if rej != nil {
		return rowOut{rej: rej}
	}
	rec, err := intake.EventRecord(ev)
	if err != nil {
		return rowOut{rej: &intake.Rejection{Reason: ReasonEncodeFailed, Message: err.Error()}}
	}
	return rowOut{rec: rec, dropped: dropped}
}

// sequence takes the batches in file order and produces every row's event,
// or writes its rejection. It returns why it stopped early, or nil.
func (r *run) sequence(ordered <-chan *batch, res *Result) error {
	m, p := r.im.metrics, r.im.partner
	for b := range ordered {
		select {
		case <-b.done:
		case <-r.ctx.Done():
			return r.ctx.Err()
		}
		for i, out := range b.out {
			if err := r.ctx.Err(); err != nil {
				return err
			}
			if r.nFailed.Load() > 0 {
				return errProduceFailed
			}
			row := b.first + int64(i)
			if out.rej != nil {
				var fields []string
				if b.rows[i].hasFields {
					fields = b.cells(i)
				}
				if err := r.reject(row, fields, b.line(i), out.rej); err != nil {
					return err
				}
				res.Rejected++
			} else {
				for _, d := range out.dropped {
					m.Dropped.WithLabelValues(p.Name, d.Reason).Inc()
				}
				res.Dropped += int64(len(out.dropped))
				if !r.produce(out.rec, r.onEvent) {
					return r.ctx.Err()
				}
			}
			res.Rows = row
		}
		if b.err != nil {
			return b.err
		}
		b.free()
	}
	return nil
}
