package gokaconfig

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/hashicorp/go-multierror"
)

// CleanShutdownMarker, in a goka group's storage directory, says that the
// last run ended with every write acknowledged, so that the local LevelDB
// copies equal the table topic up to their stored offsets.
const CleanShutdownMarker = "CLEAN-SHUTDOWN"

// KeepStorageIfClean keeps the local table copies in dir only when the last
// run left CleanShutdownMarker (and removes it: a crash during this run must
// not find it); otherwise it clears dir, and goka recovers every partition
// it owns from the table topic in full.
//
// goka writes a table value to its local storage before Kafka acknowledged
// it. After a crash the local copy can therefore hold values the topic never
// got, beside values of other keys that the recovery takes back to what the
// topic holds: a mix of two moments. A group whose messages read another
// key's value (the fan-out group's directory) would then decide a replayed
// message with state from after it. The topic alone is a prefix of the
// processing, in order, which the replay from the committed offsets
// continues exactly.
func KeepStorageIfClean(dir string) (kept bool, err error) {
	switch err := os.Remove(filepath.Join(dir, CleanShutdownMarker)); {
	case err == nil:
		if err := SyncDir(dir); err != nil {
			return false, fmt.Errorf("storage: %w", err)
		}
		slog.Info("storage: the local table copy is kept (the last run ended cleanly)", "dir", dir)
		return true, nil
	case errors.Is(err, fs.ErrNotExist):
		if err := os.RemoveAll(dir); err != nil {
			return false, fmt.Errorf("clear storage: %w", err)
		}
		slog.Info("storage: no clean-shutdown marker (a first start, or the last run crashed): the local table copy is rebuilt from the table topic", "dir", dir)
		return false, nil
	default:
		return false, fmt.Errorf("storage: %w", err)
	}
}

// MarkCleanShutdown leaves CleanShutdownMarker in dir, durably, when run
// (a goka processor's Run) ended only because ctx was cancelled and every
// emit of o was acknowledged; err is run's error, returned (or the
// marker's).
func MarkCleanShutdown(ctx context.Context, dir string, o *Ordered, err error) error {
	if ctx.Err() == nil || !CanceledOnly(err) || !o.Idle() || o.Failed() {
		return err
	}
	if werr := WriteFileDurably(dir, CleanShutdownMarker); werr != nil && err == nil {
		err = fmt.Errorf("mark clean shutdown: %w", werr)
	}
	return err
}

// CanceledOnly reports whether err is nil or only context cancellations.
func CanceledOnly(err error) bool {
	if err == nil {
		return true
	}
	var me *multierror.Error
	if errors.As(err, &me) {
		for _, e := range me.Errors {
			if !CanceledOnly(e) {
				return false
			}
		}
		return true
	}
	return errors.Is(err, context.Canceled)
}

// WriteFileDurably creates the empty file name in dir (and dir, which an
// instance that never owned a partition does not have yet), synced with
// its directory.
func WriteFileDurably(dir, name string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := os.Create(filepath.Join(dir, name))
	if err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return SyncDir(dir)
}

// SyncDir syncs directory dir (its entries: a file created or removed).
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
