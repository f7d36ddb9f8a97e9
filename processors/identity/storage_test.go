package identity

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/hashicorp/go-multierror"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/rolodex/rolodex/schemas"
)

// The local storage survives a start only after a clean shutdown, and
// only once: a crash in the run that kept it must not find the marker.
func TestStorageKeptOnlyAfterCleanShutdown(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "storage")
	junk := filepath.Join(dir, "rolodex-identity-table.0", "000001.log")
	write := func(marker bool) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(junk), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(junk, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
		if marker {
			if err := writeMarker(dir); err != nil {
				t.Fatal(err)
			}
		}
	}
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, schemas.TopicEvents))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cfg := ProcessorConfig{Brokers: c.ListenAddrs(), StorageDir: dir}

	write(false) // as a crash leaves it
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if p.KeptStorage() {
		t.Error("kept the storage of a run that did not shut down cleanly")
	}
	if _, err := os.Stat(junk); !os.IsNotExist(err) {
		t.Errorf("storage of an unclean run not cleared: %v", err)
	}

	write(true) // as a clean shutdown leaves it
	p, err = New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !p.KeptStorage() {
		t.Error("cleared the storage of a clean shutdown")
	}
	if _, err := os.Stat(junk); err != nil {
		t.Errorf("storage of a clean shutdown lost: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, cleanMarker)); !os.IsNotExist(err) {
		t.Errorf("the marker survived the start that used it: %v", err)
	}

	// The next start without a new marker (this run crashed) clears it.
	p, err = New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if p.KeptStorage() {
		t.Error("kept the storage twice on one marker")
	}
}

func TestCanceledOnly(t *testing.T) {
	for _, tt := range []struct {
		err  error
		want bool
	}{
		{nil, true},
		{context.Canceled, true},
		{fmt.Errorf("stopping: %w", context.Canceled), true},
		{multierror.Append(nil, context.Canceled, fmt.Errorf("x: %w", context.Canceled)), true},
		{errors.New("producer failed"), false},
		{multierror.Append(nil, context.Canceled, errors.New("producer failed")), false},
		{fmt.Errorf("run: %w", multierror.Append(nil, errors.New("storage"))), false},
	} {
		if got := canceledOnly(tt.err); got != tt.want {
			t.Errorf("canceledOnly(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}
