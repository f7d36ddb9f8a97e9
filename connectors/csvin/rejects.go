package csvin

import (
	"bufio"
	"encoding/csv"
	"fmt"
	"os"
	"strconv"

	"github.com/rolodex/rolodex/intake"
)

// Columns the rejects file adds after the input's own.
const (
	ColumnRow     = "row"
	ColumnReason  = "reason"
	ColumnMessage = "message"
)

// rejectsWriter writes the rejects file: the input's header plus row,
// reason and message, then one line per rejected row, in the input's
// delimiter so that the fixed file can be imported with the same flags.
type rejectsWriter struct {
	path  string
	f     *os.File
	w     *csv.Writer
	width int
	rec   []string
}

func createRejects(path string, header []string, comma rune) (*rejectsWriter, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("csvin: rejects file: %w", err)
	}
	w := csv.NewWriter(bufio.NewWriterSize(f, 64<<10))
	w.Comma = comma
	rw := &rejectsWriter{path: path, f: f, w: w, width: len(header), rec: make([]string, 0, len(header)+3)}
	if err := w.Write(append(append(rw.rec[:0], header...), ColumnRow, ColumnReason, ColumnMessage)); err != nil {
		f.Close()
		return nil, fmt.Errorf("csvin: rejects file %s: %w", path, err)
	}
	return rw, nil
}

// write adds one rejected row. fields are padded or left empty to the
// header's width; nil fields leave every input column empty.
func (rw *rejectsWriter) write(fields []string, row int64, rej *intake.Rejection) error {
	rec := append(rw.rec[:0], fields[:min(len(fields), rw.width)]...)
	for len(rec) < rw.width {
		rec = append(rec, "")
	}
	rec = append(rec, strconv.FormatInt(row, 10), rej.Reason, rej.Message)
	rw.rec = rec
	if err := rw.w.Write(rec); err != nil {
		return fmt.Errorf("csvin: rejects file %s: %w", rw.path, err)
	}
	return nil
}

func (rw *rejectsWriter) close() error {
	rw.w.Flush()
	err := rw.w.Error()
	if cerr := rw.f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("csvin: rejects file %s: %w", rw.path, err)
	}
	return nil
}
