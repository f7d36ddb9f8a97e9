package processortest

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/rolodex/rolodex/internal/gokaconfig"
	"github.com/rolodex/rolodex/internal/kafkatest"
)

// Storage is a goka stage whose groups keep their tables in local LevelDB
// copies, for CheckStorage.
type Storage struct {
	// Dirs: each table group's own storage directory.
	Dirs []string
	// New builds the stage on its storage (its New) and returns its Run.
	New func(t *testing.T) func(context.Context) error
	// Write writes input records (new ones for each round) and waits
	// until every table topic holds their values, so that each group has
	// written its local copy.
	Write func(t *testing.T, round int)
	// Crash runs the stage in a child process on the same storage, calls
	// Write(t, 1) and kills the child with SIGKILL.
	Crash func(t *testing.T)
}

// CheckStorage checks the rule of a stage's local table copies
// (gokaconfig.KeepStorageIfClean in New, gokaconfig.MarkCleanShutdown in
// Run) on its real New and Run: a run killed with SIGKILL leaves no
// marker, and the next New clears each group's directory, so that goka
// rebuilds the copies from the table topics; a run that ended because its
// context was cancelled leaves gokaconfig.CleanShutdownMarker in each
// directory, and the next New keeps the copies and takes the marker away
// (a start after that one, with no clean shutdown between, clears them).
func CheckStorage(t *testing.T, s Storage) {
	t.Helper()
	if len(s.Dirs) == 0 {
		t.Fatal("no storage directories")
	}

	// A run killed with SIGKILL: no marker, copies written. The next
	// start clears them.
	s.Crash(t)
	for _, dir := range s.Dirs {
		if hasMarker(t, dir) {
			t.Fatalf("%s: a marker after a run killed with SIGKILL", dir)
		}
		if len(copies(t, dir)) == 0 {
			t.Fatalf("%s: no local copy after the killed run wrote its tables", dir)
		}
	}
	s.New(t)
	for _, dir := range s.Dirs {
		if got := copies(t, dir); len(got) > 0 {
			t.Errorf("%s: after a crash the next start kept %v, want the directory cleared", dir, got)
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	// A run that ends by cancel: the marker, beside the copies.
	ctx, cancel := context.WithCancel(context.Background())
	run := s.New(t)
	done := make(chan error, 1)
	go func() { done <- run(ctx) }()
	s.Write(t, 2)
	cancel()
	select {
	case err := <-done:
		if !gokaconfig.CanceledOnly(err) {
			t.Fatalf("the run ended by cancel returned %v", err)
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("the run did not stop within 2 minutes of its cancel")
	}
	kept := map[string][]string{}
	for _, dir := range s.Dirs {
		if !hasMarker(t, dir) {
			t.Fatalf("%s: no %s after a run that ended by cancel", dir, gokaconfig.CleanShutdownMarker)
		}
		if kept[dir] = copies(t, dir); len(kept[dir]) == 0 {
			t.Fatalf("%s: no local copy after the run wrote its tables", dir)
		}
	}
	// The next start keeps the copies and takes the marker away.
	s.New(t)
	for _, dir := range s.Dirs {
		if got := copies(t, dir); !slices.Equal(got, kept[dir]) {
			t.Errorf("%s: after a clean shutdown the next start left %v, want the copies %v kept", dir, got, kept[dir])
		}
		if hasMarker(t, dir) {
			t.Errorf("%s: the marker survived the start that used it", dir)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	// That start did not end cleanly (it never ran): the one after it
	// clears the copies.
	s.New(t)
	for _, dir := range s.Dirs {
		if got := copies(t, dir); len(got) > 0 {
			t.Errorf("%s: a start after one that did not end cleanly kept %v", dir, got)
		}
	}
}

// hasMarker reports whether dir holds the clean-shutdown marker.
func hasMarker(t *testing.T, dir string) bool {
	t.Helper()
	_, err := os.Stat(filepath.Join(dir, gokaconfig.CleanShutdownMarker))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	return err == nil
}

// copies lists dir's entries but the marker (goka's LevelDB directories,
// one per table partition), sorted; none when dir does not exist.
func copies(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range es {
		if e.Name() != gokaconfig.CleanShutdownMarker {
			out = append(out, e.Name())
		}
	}
	return out
}

// WaitKeys waits (a minute at most) until topic holds a record under each
// of keys.
func WaitKeys(t *testing.T, brokers []string, topic string, keys ...string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		seen := map[string]bool{}
		for _, r := range kafkatest.ReadAll(t, brokers, topic) {
			seen[string(r.Key)] = true
		}
		missing := slices.DeleteFunc(slices.Clone(keys), func(k string) bool { return seen[k] })
		if len(missing) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: no record of %v within a minute", topic, missing)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
