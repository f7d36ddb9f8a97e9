package csvin

import (
	"fmt"
	"io"
)

// RowTooLargeError stops an import at a row larger than Config.MaxRowBytes:
// almost always a quote left open, which makes the rest of the file one
// field.
type RowTooLargeError struct {
	Row   int64 // 1-based, header excluded
	Limit int
}

func (e *RowTooLargeError) Error() string {
	return fmt.Sprintf("row %d is larger than %d bytes (is a quote left open?)", e.Row, e.Limit)
}

// rowReader sits between the file and encoding/csv's buffer. It reports
// every byte read to the progress writer, and keeps the bytes of the row
// being parsed (plus the buffer's read-ahead) so that a rejected row can be
// dead-lettered exactly as it is in the file. A row growing past limit
// fails the read, so memory stays bounded on any input.
type rowReader struct {
	r        io.Reader
	progress io.Writer
	limit    int64
	maxRow   int

	buf      []byte // the bytes from offset base on
	base     int64
	rowStart int64 // offset where the row being parsed starts
	n        int64 // bytes read so far
	row      int64 // the row being parsed, for the error
}

// newRowReader limits rows to maxRow bytes; lookahead is the size of the
// buffer reading from it, which may be read past the row.
func newRowReader(r io.Reader, progress io.Writer, maxRow, lookahead int) *rowReader {
	return &rowReader{r: r, progress: progress, maxRow: maxRow, limit: int64(maxRow) + int64(lookahead)}
}

func (w *rowReader) Read(p []byte) (int, error) {
	if w.n-w.rowStart > w.limit {
		return 0, &RowTooLargeError{Row: w.row, Limit: w.maxRow}
	}
	n, err := w.r.Read(p)
	if n > 0 {
		w.buf = append(w.buf, p[:n]...)
		w.n += int64(n)
		if w.progress != nil {
			_, _ = w.progress.Write(p[:n])
		}
	}
	return n, err
}

// bytes returns the input in [from, to), trimmed of line ends. It is valid
// until the next release.
func (w *rowReader) bytes(from, to int64) []byte {
	from = max(from, w.base)
	to = min(to, w.base+int64(len(w.buf)))
	if from >= to {
		return nil
	}
	b := w.buf[from-w.base : to-w.base]
	for len(b) > 0 && (b[0] == '\n' || b[0] == '\r') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}

// release forgets the input before off, where row starts.
func (w *rowReader) release(off int64, row int64) {
	w.rowStart, w.row = off, row
	drop := int(off - w.base)
	if drop <= 0 {
		return
	}
	// Compact only once at least as much is dropped as kept, so copying
	// costs at most one copy of each input byte.
	if drop >= len(w.buf)-drop {
		w.buf = w.buf[:copy(w.buf, w.buf[drop:])]
		w.base = off
	}
}
