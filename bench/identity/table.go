package identity

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/lovoo/goka"
	"github.com/syndtr/goleveldb/leveldb"
	"github.com/syndtr/goleveldb/leveldb/opt"
	"github.com/syndtr/goleveldb/leveldb/util"

	"github.com/rolodex/rolodex/schemas"
)

// Table describes the identity table as the processor left it in its
// LevelDB storage.
type Table struct {
	// Nodes is the number of nodes (identifiers), Roots the number of
	// profiles.
	Nodes, Roots int
	// ValueBytes is the total size of the JSON node values; RootBytes that
	// of the roots alone.
	ValueBytes, RootBytes int64
	// MaxValueBytes is the largest node value.
	MaxValueBytes int
	// DiskBytes is the size of the storage directory when the processor
	// stopped; CompactedBytes after a full compaction of every partition.
	DiskBytes, CompactedBytes int64
}

// offsetKey is where goka's LevelDB storage keeps the table offset
// (github.com/lovoo/goka/storage): not a node.
const offsetKey = "__offset"

// TableTopic is the identity group's table topic, the name of its storage
// directories.
var TableTopic = string(goka.GroupTable(schemas.GroupIdentity))

// partitionDir is the LevelDB directory of one table partition, as goka's
// storage.DefaultBuilder names it.
func partitionDir(dir string, p int32) string {
	return filepath.Join(dir, fmt.Sprintf("%s.%d", TableTopic, p))
}

// inspectTable measures the storage the stopped processor left in dir,
// compacts each partition, and calls fn (if not nil) for every node.
func inspectTable(dir string, partitions int32, fn func(key string, n *schemas.Node)) (Table, error) {
	var t Table
	var err error
	if t.DiskBytes, err = dirSize(dir); err != nil {
		return t, fmt.Errorf("benchidentity: size of %s: %w", dir, err)
	}
	codec := schemas.JSONCodec[schemas.Node]{}
	for p := range partitions {
		pdir := partitionDir(dir, p)
		if _, err := os.Stat(pdir); errors.Is(err, fs.ErrNotExist) {
			continue // no key of this partition
		}
		db, err := leveldb.OpenFile(pdir, &opt.Options{ErrorIfMissing: true})
		if err != nil {
			return t, fmt.Errorf("benchidentity: open %s: %w", pdir, err)
		}
		err = db.CompactRange(util.Range{})
		if err == nil {
			err = scanDB(db, codec, &t, fn)
		}
		if cerr := db.Close(); err == nil && cerr != nil {
			err = cerr
		}
		if err != nil {
			return t, fmt.Errorf("benchidentity: table partition %d: %w", p, err)
		}
	}
	if t.CompactedBytes, err = dirSize(dir); err != nil {
		return t, fmt.Errorf("benchidentity: size of %s: %w", dir, err)
	}
	return t, nil
}

func scanDB(db *leveldb.DB, codec schemas.JSONCodec[schemas.Node], t *Table, fn func(string, *schemas.Node)) error {
	it := db.NewIterator(nil, nil)
	defer it.Release()
	for it.Next() {
		key := string(it.Key())
		if key == offsetKey || strings.HasPrefix(key, "\xff") {
			continue // goka's offset, the identity store's journal
		}
		v, err := codec.Decode(it.Value())
		if err != nil {
			return fmt.Errorf("node %s: %w", key, err)
		}
		n := v.(*schemas.Node)
		size := len(it.Value())
		t.Nodes++
		t.ValueBytes += int64(size)
		t.MaxValueBytes = max(t.MaxValueBytes, size)
		if n.IsRoot() {
			t.Roots++
			t.RootBytes += int64(size)
		}
		if fn != nil {
			fn(key, n)
		}
	}
	return it.Error()
}
