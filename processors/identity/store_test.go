package identity

import (
	"fmt"
	"path/filepath"
	"testing"

	"github.com/syndtr/goleveldb/leveldb"
)

const storeTable = "rolodex-identity-table"

func openStore(t *testing.T, acks *tableAcks, dir string, trusted bool) *store {
	t.Helper()
	st, err := acks.builder(dir, StorageOptions(), trusted)(storeTable, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Open(); err != nil {
		t.Fatal(err)
	}
	return st.(*store)
}

func mustSet(t *testing.T, s *store, key, value string) {
	t.Helper()
	if _, err := s.Get(key); err != nil { // as goka's callback reads first
		t.Fatal(err)
	}
	if err := s.Set(key, []byte(value)); err != nil {
		t.Fatal(err)
	}
}

func wantValue(t *testing.T, s *store, key, want string) {
	t.Helper()
	v, err := s.Get(key)
	if err != nil {
		t.Fatal(err)
	}
	if want == "" && v != nil || want != "" && string(v) != want {
		t.Errorf("%s = %q, want %q", key, v, want)
	}
}

func wantOffset(t *testing.T, s *store, want int64) {
	t.Helper()
	if o, err := s.GetOffset(-3); err != nil || o != want {
		t.Errorf("offset %d (%v), want %d", o, err, want)
	}
}

func recoverStore(t *testing.T, s *store, records ...[2]string) {
	t.Helper()
	for i, kv := range records {
		if err := s.Set(kv[0], []byte(kv[1])); err != nil {
			t.Fatal(err)
		}
		if err := s.SetOffset(int64(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.MarkRecovered(); err != nil {
		t.Fatal(err)
	}
}

// The store writes to LevelDB only what the topic acknowledged, with the
// offset of the last acknowledged write: after a crash at any moment it
// holds the table partition up to that offset, and goka's recovery from
// the next offset makes it equal to the topic.
func TestStoreHoldsOnlyAcknowledgedWrites(t *testing.T) {
	dir := t.TempDir()
	acks := newTableAcks(storeTable)
	s := openStore(t, acks, dir, false)
	recoverStore(t, s, [2]string{"a", "a0"}, [2]string{"b", "b0"}) // the topic: a=a0 at 0, b=b0 at 1
	mustSet(t, s, "a", "a1")                                       // lands at 2
	mustSet(t, s, "b", "b1")                                       // lands at 3
	mustSet(t, s, "a", "a2")                                       // never lands
	mustSet(t, s, "c", "c1")                                       // never lands
	// Reads see every write at once.
	wantValue(t, s, "a", "a2")
	wantValue(t, s, "c", "c1")
	acks.acked(0, "a", 2, nil)
	acks.acked(0, "b", 3, nil)
	s.mu.Lock()
	err := s.flush() // as after flushEntries acknowledged writes
	s.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	wantValue(t, s, "a", "a2")
	// The crash: the files stay as they are.
	if err := s.db.Close(); err != nil {
		t.Fatal(err)
	}

	s = openStore(t, newTableAcks(storeTable), dir, false)
	wantValue(t, s, "a", "a1")
	wantValue(t, s, "b", "b1")
	wantValue(t, s, "c", "")
	wantOffset(t, s, 3)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// A crash before a flush: LevelDB still holds the partition up to the
	// last offset it wrote, and recovery loads the rest.
	acks = newTableAcks(storeTable)
	s = openStore(t, acks, dir, false)
	recoverStore(t, s)
	mustSet(t, s, "c", "c2")
	acks.acked(0, "c", 4, nil)
	if err := s.db.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, newTableAcks(storeTable), dir, false)
	wantValue(t, s, "c", "")
	wantOffset(t, s, 3)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// Past flushEntries acknowledged writes the store writes them; a clean
	// close writes the rest of the acknowledged ones and drops the others.
	acks = newTableAcks(storeTable)
	s = openStore(t, acks, dir, false)
	recoverStore(t, s)
	for i := range flushEntries + 1 {
		mustSet(t, s, "d", fmt.Sprint(i))
		acks.acked(0, "d", int64(4+i), nil)
	}
	if o, _ := s.readOffsetForTest(); o != int64(4+flushEntries-1) {
		t.Errorf("offset in LevelDB after %d acknowledged writes: %d, want %d", flushEntries+1, o, 4+flushEntries-1)
	}
	mustSet(t, s, "e", "e1") // never lands
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if acks.dropped != 1 {
		t.Errorf("dropped %d writes at close, want 1", acks.dropped)
	}
	s = openStore(t, newTableAcks(storeTable), dir, false)
	defer s.Close()
	wantValue(t, s, "d", fmt.Sprint(flushEntries))
	wantValue(t, s, "e", "")
	wantValue(t, s, "a", "a1")
	wantOffset(t, s, int64(4+flushEntries))
}

func (s *store) readOffsetForTest() (int64, error) {
	v, err := s.db.Get([]byte(offsetKey), nil)
	if err != nil {
		return 0, err
	}
	var o int64
	_, err = fmt.Sscan(string(v), &o)
	return o, err
}

// An acknowledgement that does not match the next write (or a failed one)
// stops the store from writing anything after the acknowledged head.
func TestStoreStopsAtABrokenAcknowledgement(t *testing.T) {
	dir := t.TempDir()
	acks := newTableAcks(storeTable)
	s := openStore(t, acks, dir, false)
	recoverStore(t, s)
	mustSet(t, s, "a", "a1")
	mustSet(t, s, "b", "b1")
	acks.acked(0, "a", 0, nil)
	acks.acked(0, "x", 1, nil) // not b's
	mustSet(t, s, "c", "c1")
	acks.acked(0, "c", 2, nil)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, newTableAcks(storeTable), dir, false)
	defer s.Close()
	wantValue(t, s, "a", "a1")
	wantValue(t, s, "b", "")
	wantValue(t, s, "c", "")
	wantOffset(t, s, 0)
}

// A LevelDB the store did not write (no journal mark) is cleared unless
// the directory is trusted (a clean shutdown).
func TestStoreClearsForeignStorage(t *testing.T) {
	for _, trusted := range []bool{false, true} {
		dir := t.TempDir()
		db, err := leveldb.OpenFile(filepath.Join(dir, storeTable+".0"), nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := db.Put([]byte("a"), []byte("foreign"), nil); err != nil {
			t.Fatal(err)
		}
		db.Close()
		s := openStore(t, newTableAcks(storeTable), dir, trusted)
		want := ""
		if trusted {
			want = "foreign"
		}
		wantValue(t, s, "a", want)
		s.Close()
	}
}
