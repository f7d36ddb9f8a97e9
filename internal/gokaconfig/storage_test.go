package gokaconfig

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/hashicorp/go-multierror"
)

// The local copies survive only a run that left the marker; a run that
// did not (a crash) leaves a directory that the next start clears.
func TestKeepStorageIfClean(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "group")
	table := filepath.Join(dir, "rolodex-fanout-table.0")
	if err := os.MkdirAll(table, 0o755); err != nil {
		t.Fatal(err)
	}

	// A crash: no marker. The copy is cleared.
	kept, err := KeepStorageIfClean(dir)
	if err != nil || kept {
		t.Fatalf("no marker: kept=%v err=%v, want the copy cleared", kept, err)
	}
	if _, err := os.Stat(table); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the copy of a crashed run is still there (%v)", err)
	}

	// A clean shutdown: the marker is left, and the next start keeps the
	// copy and takes the marker away (a crash during that run must not
	// find it).
	if err := os.MkdirAll(table, 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var o Ordered
	if err := MarkCleanShutdown(ctx, dir, &o, multierror.Append(nil, context.Canceled)); !errors.Is(err, context.Canceled) {
		t.Fatalf("MarkCleanShutdown changed the run's error: %v", err)
	}
	kept, err = KeepStorageIfClean(dir)
	if err != nil || !kept {
		t.Fatalf("after a clean shutdown: kept=%v err=%v", kept, err)
	}
	if _, err := os.Stat(table); err != nil {
		t.Fatalf("the copy of a clean shutdown was removed: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, CleanShutdownMarker)); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("the marker is still there for the run that kept the copy")
	}

	// No marker after a run that failed, or that ctx did not stop.
	failed := errors.New("broker gone")
	if err := MarkCleanShutdown(ctx, dir, &o, failed); err != failed {
		t.Fatalf("MarkCleanShutdown changed the run's error: %v", err)
	}
	if err := MarkCleanShutdown(context.Background(), dir, &o, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, CleanShutdownMarker)); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("a marker after a run that failed or was not cancelled")
	}
}
