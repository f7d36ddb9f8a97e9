package normalize

import (
	"hash/maphash"
	"strings"
	"sync"
)

// phoneCache remembers the result of normalising a phone or WhatsApp value
// (the E.164 form or the *Error), keyed by the type and the value as given.
// A Normalizer's results never change, so a remembered result is the result.
//
// It is bounded: the entries live in phoneCacheShards shards, each holding
// two generations of at most genSize entries. New entries go into the
// current generation; when it is full the previous one is dropped and the
// current one becomes the previous one. A hit in the previous generation
// moves the entry to the current one, so values seen often stay. At most
// 2 × phoneCacheShards × genSize entries are held; dropping a generation
// costs no more than the map it frees.
type phoneCache struct {
	seed    maphash.Seed
	genSize int
	shards  [phoneCacheShards]phoneCacheShard
}

const (
	phoneCacheShards = 32
	// maxCachedValueLen: longer values (padded with white space, say) are
	// not remembered, which bounds the memory an entry holds.
	maxCachedValueLen = 64
)

type phoneKey struct {
	whatsapp bool
	raw      string
}

type phoneResult struct {
	e164 string
	err  *Error // Value is not set; see result
}

type phoneCacheShard struct {
	mu       sync.Mutex
	cur, old map[phoneKey]phoneResult
	_        [64]byte // keep shards' locks off each other's cache lines
}

// newPhoneCache returns a cache of about size entries, or nil for size <= 0.
func newPhoneCache(size int) *phoneCache {
	if size <= 0 {
		return nil
	}
	c := &phoneCache{seed: maphash.MakeSeed(), genSize: max(1, size/(2*phoneCacheShards))}
	for i := range c.shards {
		c.shards[i].cur = make(map[phoneKey]phoneResult)
	}
	return c
}

func (c *phoneCache) shard(k phoneKey) *phoneCacheShard {
	return &c.shards[maphash.String(c.seed, k.raw)%phoneCacheShards]
}

func (c *phoneCache) get(k phoneKey) (phoneResult, bool) {
	s := c.shard(k)
	s.mu.Lock()
	r, ok := s.cur[k]
	if !ok {
		if r, ok = s.old[k]; ok {
			delete(s.old, k)
			s.putLocked(c.genSize, k, r)
		}
	}
	s.mu.Unlock()
	return r, ok
}

func (c *phoneCache) put(k phoneKey, r phoneResult) {
	// The value may point into a larger buffer (a request body): keep a
	// copy of its bytes only.
	k.raw = strings.Clone(k.raw)
	s := c.shard(k)
	s.mu.Lock()
	s.putLocked(c.genSize, k, r)
	s.mu.Unlock()
}

func (s *phoneCacheShard) putLocked(genSize int, k phoneKey, r phoneResult) {
	if len(s.cur) >= genSize {
		s.old = s.cur
		s.cur = make(map[phoneKey]phoneResult, genSize)
	}
	s.cur[k] = r
}

// len returns the number of entries held (for tests).
func (c *phoneCache) len() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		n += len(s.cur) + len(s.old)
		s.mu.Unlock()
	}
	return n
}
