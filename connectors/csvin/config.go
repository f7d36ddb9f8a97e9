package csvin

import (
	"errors"
	"fmt"
	"io"
	"runtime"
	"unicode/utf8"

	"github.com/rolodex/rolodex/intake"
)

// Defaults of Config.
const (
	// DefaultEventType is the type of every imported row when the mapping
	// has no type column.
	DefaultEventType = "contact.imported"
	// RejectsSuffix is appended to the input path to name the rejects file.
	RejectsSuffix = ".rejects.csv"
	// DefaultMaxInFlight bounds the records produced and not yet
	// acknowledged by Kafka.
	DefaultMaxInFlight = 10000
	// DefaultMaxRowBytes bounds the bytes of one row. A larger row (usually a
	// quote left open, which swallows the rest of the file) stops the import
	// instead of being held in memory.
	DefaultMaxRowBytes = 1 << 20
)

// Config of one CSV import.
type Config struct {
	// File is the path of the CSV file. Its first row is the header.
	// Required.
	File string
	// Mapping says which column feeds which field of the event; build it
	// with ParseMapping. Required.
	Mapping *Mapping
	// DefaultType is the event type of rows without one (no type column, or
	// an empty type cell). Default DefaultEventType.
	DefaultType string
	// Rejects is the path of the rejects file: every rejected row with its
	// original columns plus row, reason and message. It is written even when
	// nothing is rejected (header only), so that a stale file never outlives
	// a clean run. Default File + RejectsSuffix.
	Rejects string
	// Comma is the field delimiter. Default ','.
	Comma rune
	// MaxInFlight bounds the records (events and dead letters) produced and
	// not yet acknowledged, so memory stays constant however large the file.
	// Default DefaultMaxInFlight.
	MaxInFlight int
	// MaxRowBytes bounds one row in bytes. Default DefaultMaxRowBytes.
	MaxRowBytes int
	// Workers validate and encode rows in parallel; rows still reach Kafka
	// in file order. Default runtime.GOMAXPROCS(0).
	Workers int
	// Progress, when set, is written every byte read from File, as it is
	// read; a progressbar.ProgressBar is such a writer. Write errors are
	// ignored.
	Progress io.Writer
}

func (c *Config) setDefaults() {
	if c.DefaultType == "" {
		c.DefaultType = DefaultEventType
	}
	if c.Rejects == "" && c.File != "" {
		c.Rejects = c.File + RejectsSuffix
	}
	if c.Comma == 0 {
		c.Comma = ','
	}
	if c.MaxInFlight == 0 {
		c.MaxInFlight = DefaultMaxInFlight
	}
	if c.MaxRowBytes == 0 {
		c.MaxRowBytes = DefaultMaxRowBytes
	}
	if c.Workers == 0 {
		c.Workers = runtime.GOMAXPROCS(0)
	}
}

// Validate reports a config that cannot work. It expects the defaults to be
// filled in (New does that).
func (c *Config) Validate() error {
	switch {
	case c.File == "":
		return errors.New("csvin: no file given")
	case c.Mapping == nil:
		return errors.New("csvin: no mapping given")
	case c.Rejects == "":
		return errors.New("csvin: no rejects file given")
	case c.Rejects == c.File:
		return errors.New("csvin: the rejects file must not be the input file")
	case c.MaxInFlight < 1:
		return fmt.Errorf("csvin: MaxInFlight must be positive, got %d", c.MaxInFlight)
	case c.MaxRowBytes < 1:
		return fmt.Errorf("csvin: MaxRowBytes must be positive, got %d", c.MaxRowBytes)
	case c.Workers < 1:
		return fmt.Errorf("csvin: Workers must be positive, got %d", c.Workers)
	}
	if !validDelim(c.Comma) {
		return fmt.Errorf("csvin: delimiter %q cannot separate CSV fields", c.Comma)
	}
	if err := checkTypeName(c.DefaultType); err != nil {
		return fmt.Errorf("csvin: default type: %w", err)
	}
	return nil
}

// validDelim mirrors encoding/csv's rule for Reader.Comma.
func validDelim(r rune) bool {
	return r != 0 && r != '"' && r != '\r' && r != '\n' && utf8.ValidRune(r) && r != utf8.RuneError
}

// checkTypeName checks an event type the way intake.Validator does, so that
// a bad default type fails once, up front, instead of on every row.
func checkTypeName(s string) error {
	if !intake.ValidTypeName(s) {
		return fmt.Errorf("type %q must be 1-%d letters, digits, '.', '_', '-' or ':'", s, intake.MaxTypeLen)
	}
	return nil
}
