package identity

// The local LevelDB copy of the identity table, kept across crashes
// (docs/identity.md, "Local storage after a crash").
//
// goka writes a table value to the local store first and to the table
// topic after, so with goka's LevelDB storage a SIGKILL can leave values
// the topic never received, which goka's recovery (from the stored offset
// to the end of the topic) never corrects. This store writes to LevelDB
// only values the topic acknowledged:
//
//   - Set keeps the value in memory (reads see it at once) and in a FIFO
//     of the partition's writes, in the order goka emits them.
//   - The processor's producer reports every acknowledged table write
//     (tableAcks), in emit order, so in offset order; the store counts the
//     acknowledged head of the FIFO.
//   - Now and then (every flushEntries acknowledged writes, and at Close)
//     the store writes the acknowledged head to LevelDB in one batch,
//     together with the offset A of its last write.
//
// So LevelDB always holds the fold of the table partition up to offset A
// (a batch is atomic, and a process crash keeps every completed LevelDB
// write), and goka's recovery from A+1 to the end of the topic makes the
// copy equal to the topic: nothing in it is ahead of the topic, whatever
// moment the crash came at. Writes that were never acknowledged are lost
// with the process, as they are lost on the topic.
//
// It also writes what a recovery loads in batches (goka's LevelDB storage
// writes each record and then each offset with a journal write of its
// own).

import (
	"errors"
	"fmt"
	"hash"
	"os"
	"path/filepath"
	"strconv"
	"sync"

	"github.com/IBM/sarama"
	"github.com/lovoo/goka"
	"github.com/lovoo/goka/storage"
	"github.com/syndtr/goleveldb/leveldb"
	"github.com/syndtr/goleveldb/leveldb/opt"
)

const (
	// offsetKey is where goka's LevelDB storage keeps the table offset
	// (storage.offsetKey); the store keeps it in the same place, so
	// storage written by either is read by the other.
	offsetKey = "__offset"
	// journalKey marks a LevelDB written by this store, which never holds
	// a value the topic did not acknowledge, so it is kept after a crash.
	// Node ids never start with 0xff.
	journalKey = "\xffacked-only"
	// recoveryBatch is how many bytes of recovered records are written
	// to LevelDB at once.
	recoveryBatch = 4 << 20
	// flushEntries is how many acknowledged writes the store keeps in
	// memory before it writes them to LevelDB.
	flushEntries = 512
	// recentValues is how many values written to LevelDB the store keeps
	// in memory too (per partition, about as many again before it drops
	// them): a node is often read again soon after it was written. 2,048
	// keeps the processor under 500 MiB at 1,000,000 profiles (4,096:
	// 502 MiB; docs/benchmarks.md).
	recentValues = 2048
)

// tableAcks routes the producer's acknowledgements of table writes to the
// store of their partition. One per processor.
type tableAcks struct {
	table  string
	mu     sync.Mutex
	stores map[int32]*store
	// dropped counts the writes never acknowledged that stores dropped
	// (at Close, or after a failed write).
	dropped int
}

func newTableAcks(table string) *tableAcks {
	return &tableAcks{table: table, stores: map[int32]*store{}}
}

// producer wraps pb so that every acknowledged write to the table topic
// reaches its partition's store. pb must complete promises in emit order
// (gokaconfig.Ordered), so acknowledgements arrive in offset order.
func (t *tableAcks) producer(pb goka.ProducerBuilder) goka.ProducerBuilder {
	return func(brokers []string, clientID string, hasher func() hash.Hash32) (goka.Producer, error) {
		p, err := pb(brokers, clientID, hasher)
		if err != nil {
			return nil, err
		}
		return &ackProducer{Producer: p, acks: t}, nil
	}
}

func (t *tableAcks) acked(partition int32, key string, offset int64, err error) {
	t.mu.Lock()
	s := t.stores[partition]
	t.mu.Unlock()
	if s != nil {
		s.acked(key, offset, err)
	}
}

// builder builds the journaled store of each partition in dir. trusted:
// the whole directory is known to equal the topic (a clean shutdown), so
// a LevelDB without the journal mark is kept too; otherwise one without it
// (written by other code, whose crash state is unknown) is cleared.
func (t *tableAcks) builder(dir string, opts *opt.Options, trusted bool) storage.Builder {
	return func(topic string, partition int32) (storage.Storage, error) {
		fp := filepath.Join(dir, fmt.Sprintf("%s.%d", topic, partition))
		db, err := openJournaled(fp, opts, trusted)
		if err != nil {
			return nil, err
		}
		inner, err := storage.New(db)
		if err != nil {
			db.Close()
			return nil, err
		}
		s := &store{Storage: inner, db: db, mem: map[string]*memValue{}, recent: map[string][]byte{}, written: map[string]struct{}{}}
		if topic == t.table {
			s.acks, s.partition = t, partition
		}
		return s, nil
	}
}

func openJournaled(fp string, opts *opt.Options, trusted bool) (*leveldb.DB, error) {
	db, err := leveldb.OpenFile(fp, opts)
	if err != nil && !trusted {
		// Not ours, or not whole: rebuilt from the topic.
		if err := os.RemoveAll(fp); err != nil {
			return nil, fmt.Errorf("identity: clear storage: %w", err)
		}
		db, err = leveldb.OpenFile(fp, opts)
	}
	if err != nil {
		return nil, fmt.Errorf("identity: open leveldb: %w", err)
	}
	switch has, err := db.Has([]byte(journalKey), nil); {
	case err != nil:
		db.Close()
		return nil, fmt.Errorf("identity: open leveldb: %w", err)
	case has:
		return db, nil
	}
	if !trusted && !emptyDB(db) {
		db.Close()
		if err := os.RemoveAll(fp); err != nil {
			return nil, fmt.Errorf("identity: clear storage: %w", err)
		}
		if db, err = leveldb.OpenFile(fp, opts); err != nil {
			return nil, fmt.Errorf("identity: open leveldb: %w", err)
		}
	}
	if err := db.Put([]byte(journalKey), []byte("1"), nil); err != nil {
		db.Close()
		return nil, fmt.Errorf("identity: open leveldb: %w", err)
	}
	return db, nil
}

func emptyDB(db *leveldb.DB) bool {
	it := db.NewIterator(nil, nil)
	defer it.Release()
	return !it.First()
}

type ackProducer struct {
	goka.Producer
	acks *tableAcks
}

func (p *ackProducer) Emit(topic, key string, value []byte) *goka.Promise {
	return p.EmitWithHeaders(topic, key, value, nil)
}

func (p *ackProducer) EmitWithHeaders(topic, key string, value []byte, headers goka.Headers) *goka.Promise {
	pr := p.Producer.EmitWithHeaders(topic, key, value, headers)
	if topic == p.acks.table {
		pr.ThenWithMessage(func(msg *sarama.ProducerMessage, err error) {
			if msg != nil {
				p.acks.acked(msg.Partition, key, msg.Offset, err)
			}
		})
	}
	return pr
}

// store is one partition's LevelDB copy of the table. Reads of keys not
// in memory and iterators are goka's LevelDB storage's.
type store struct {
	storage.Storage // reads, iterators, Close of the db
	db              *leveldb.DB
	acks            *tableAcks // nil: not the table (no acknowledgements)
	partition       int32

	mu          sync.Mutex
	recovered   bool
	batch       leveldb.Batch // recovered records not written yet
	offset      int64         // the offset LevelDB holds the table up to
	offsetKnown bool
	// Processing: every write not yet in LevelDB, in emit order; the
	// first nacked of them are acknowledged, the last at ackedOffset.
	fifo        []pendingWrite
	nacked      int
	ackedOffset int64
	mem         map[string]*memValue // the latest value of each key in fifo
	// recent and older hold values as LevelDB has them (written by
	// flush), for reads: two generations, older dropped whole when
	// recent reaches recentValues.
	recent, older map[string][]byte
	// broken: an acknowledgement failed or did not match; nothing after
	// the acknowledged head is written to LevelDB any more.
	broken  error
	wb      leveldb.Batch
	written map[string]struct{}
}

type pendingWrite struct {
	key   string
	value []byte // nil: a deletion
}

type memValue struct {
	value []byte // nil: deleted
	n     int    // entries of the key in fifo
}

var _ storage.Storage = (*store)(nil)

// Open reads the offset LevelDB holds the table up to.
func (s *store) Open() error {
	if err := s.Storage.Open(); err != nil {
		return err
	}
	v, err := s.db.Get([]byte(offsetKey), nil)
	if errors.Is(err, leveldb.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("identity: read offset: %w", err)
	}
	o, err := strconv.ParseInt(string(v), 10, 64)
	if err != nil {
		return fmt.Errorf("identity: decode offset %q: %w", v, err)
	}
	s.mu.Lock()
	s.offset, s.offsetKnown = o, true
	s.mu.Unlock()
	return nil
}

func (s *store) Get(key string) ([]byte, error) {
	s.mu.Lock()
	if m, ok := s.mem[key]; ok {
		s.mu.Unlock()
		return m.value, nil // never changed in place
	}
	if v, ok := s.recent[key]; ok {
		s.mu.Unlock()
		return v, nil
	}
	if v, ok := s.older[key]; ok {
		s.mu.Unlock()
		return v, nil
	}
	err := s.flushRecovered()
	s.mu.Unlock()
	if err != nil {
		return nil, err
	}
	v, err := s.db.Get([]byte(key), nil)
	if errors.Is(err, leveldb.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("identity: get %s: %w", key, err)
	}
	return v, nil
}

func (s *store) Has(key string) (bool, error) {
	v, err := s.Get(key)
	return v != nil, err
}

func (s *store) Set(key string, value []byte) error {
	if value == nil {
		value = []byte{}
	}
	return s.write(key, value)
}

func (s *store) Delete(key string) error { return s.write(key, nil) }

func (s *store) write(key string, value []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.recovered {
		if value == nil {
			s.batch.Delete([]byte(key))
		} else {
			s.batch.Put([]byte(key), value)
		}
		if len(s.batch.Dump()) >= recoveryBatch {
			return s.flushRecovered()
		}
		return nil
	}
	if s.acks == nil {
		// Not the table: no acknowledgements come (goka's processors
		// have no other storage that writes; be plain about it).
		if value == nil {
			return s.db.Delete([]byte(key), nil)
		}
		return s.db.Put([]byte(key), value, nil)
	}
	s.fifo = append(s.fifo, pendingWrite{key, value})
	m := s.mem[key]
	if m == nil {
		m = &memValue{}
		s.mem[key] = m
	}
	m.value = value
	m.n++
	if s.nacked >= flushEntries {
		return s.flush()
	}
	return nil
}

// flush writes the acknowledged head of the FIFO to LevelDB with its
// offset. Called with s.mu held.
func (s *store) flush() error {
	if s.nacked == 0 {
		return nil
	}
	b := &s.wb
	b.Reset()
	// Each key's last acknowledged write only, newest first.
	clear(s.written)
	for i := s.nacked - 1; i >= 0; i-- {
		w := &s.fifo[i]
		if _, ok := s.written[w.key]; ok {
			continue
		}
		s.written[w.key] = struct{}{}
		if w.value == nil {
			b.Delete([]byte(w.key))
		} else {
			b.Put([]byte(w.key), w.value)
		}
	}
	b.Put([]byte(offsetKey), []byte(strconv.FormatInt(s.ackedOffset, 10)))
	if err := s.db.Write(b, nil); err != nil {
		return fmt.Errorf("identity: write acknowledged values: %w", err)
	}
	for i := range s.fifo[:s.nacked] {
		w := &s.fifo[i]
		m := s.mem[w.key]
		if m.n--; m.n == 0 {
			delete(s.mem, w.key)
		}
		if len(s.recent) >= recentValues {
			s.older, s.recent = s.recent, make(map[string][]byte, recentValues)
		}
		if w.value == nil {
			delete(s.recent, w.key)
			delete(s.older, w.key)
		} else {
			s.recent[w.key] = w.value
		}
		s.fifo[i] = pendingWrite{}
	}
	s.fifo = append(s.fifo[:0], s.fifo[s.nacked:]...)
	s.nacked = 0
	s.offset, s.offsetKnown = s.ackedOffset, true
	return nil
}

// flushRecovered writes the recovered records not written yet, with the
// offset they reach. Called with s.mu held.
func (s *store) flushRecovered() error {
	if s.batch.Len() == 0 {
		return nil
	}
	if s.offsetKnown {
		s.batch.Put([]byte(offsetKey), []byte(strconv.FormatInt(s.offset, 10)))
	}
	if err := s.db.Write(&s.batch, nil); err != nil {
		return fmt.Errorf("identity: write recovered records: %w", err)
	}
	s.batch.Reset()
	return nil
}

// SetOffset is goka's: while recovering, the offset of the record just
// loaded. After that goka calls it for every acknowledged table write,
// which the store learns from tableAcks instead (with the key, and for
// offset 0 too, which goka leaves out).
func (s *store) SetOffset(offset int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.recovered {
		s.offset, s.offsetKnown = offset, true
	}
	return nil
}

func (s *store) GetOffset(def int64) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.offsetKnown {
		return s.offset, nil
	}
	return def, nil
}

func (s *store) MarkRecovered() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.flushRecovered(); err != nil {
		return err
	}
	s.recovered = true
	if s.acks != nil {
		s.acks.mu.Lock()
		s.acks.stores[s.partition] = s
		s.acks.mu.Unlock()
	}
	return nil
}

// acked records that the next write in the FIFO reached the topic at
// offset, or failed.
func (s *store) acked(key string, offset int64, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.broken != nil:
	case err != nil:
		s.broken = err
	case s.nacked >= len(s.fifo) || s.fifo[s.nacked].key != key:
		s.broken = fmt.Errorf("identity: table write of %s acknowledged out of order", key)
	default:
		s.nacked++
		s.ackedOffset = offset
	}
}

// Close writes the acknowledged writes and closes the db. Writes never
// acknowledged are dropped: the topic does not have them either, and the
// messages that made them were not committed.
func (s *store) Close() error {
	if s.acks != nil {
		s.acks.mu.Lock()
		if s.acks.stores[s.partition] == s {
			delete(s.acks.stores, s.partition)
		}
		s.acks.mu.Unlock()
	}
	s.mu.Lock()
	err := s.flushRecovered()
	if err == nil {
		err = s.flush()
	}
	if n := len(s.fifo); n > 0 && s.acks != nil {
		s.acks.mu.Lock()
		s.acks.dropped += n
		s.acks.mu.Unlock()
	}
	s.fifo, s.mem, s.recent, s.older = nil, map[string]*memValue{}, map[string][]byte{}, nil
	s.mu.Unlock()
	return errors.Join(err, s.Storage.Close())
}
