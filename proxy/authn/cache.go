package authn

import (
	"crypto/sha256"
	"encoding/binary"
	"sync"
	"unsafe"
)

const cacheShards = 32

// tokenCache maps SHA-256(token) to a verified Identity until the token's exp. Keys are
// hashes, so the cache never holds bearer tokens. Memory is bounded: each shard holds at
// most its share of the configured size and, when full, drops an expired entry or else an
// arbitrary one (Go map iteration order is randomised), which costs O(1) and needs no
// LRU bookkeeping on the hit path.
type tokenCache struct {
	shards   [cacheShards]cacheShard
	perShard int
}

type cacheShard struct {
	mu sync.RWMutex
	m  map[[32]byte]*cacheEntry
	_  [40]byte // keep shards on separate cache lines
}

type cacheEntry struct {
	id      *Identity
	expUnix int64 // nanoseconds; entry is served only while now < exp
}

func newTokenCache(size int) *tokenCache {
	if size <= 0 {
		return nil
	}
	per := (size + cacheShards - 1) / cacheShards
	c := &tokenCache{perShard: per}
	for i := range c.shards {
		c.shards[i].m = make(map[[32]byte]*cacheEntry)
	}
	return c
}

// hashToken hashes without copying the string: sha256.Sum256 only reads its input, and
// the copy []byte(token) would be the one allocation on the hit path.
func hashToken(token string) [32]byte {
	return sha256.Sum256(unsafe.Slice(unsafe.StringData(token), len(token)))
}

func (c *tokenCache) shard(k *[32]byte) *cacheShard {
	return &c.shards[binary.LittleEndian.Uint32(k[:4])%cacheShards]
}

func (c *tokenCache) get(k [32]byte, nowUnix int64) *Identity {
	s := c.shard(&k)
	s.mu.RLock()
	e := s.m[k]
	s.mu.RUnlock()
	if e == nil {
		return nil
	}
	if nowUnix >= e.expUnix {
		s.mu.Lock()
		if s.m[k] == e {
			delete(s.m, k)
		}
		s.mu.Unlock()
		return nil
	}
	return e.id
}

func (c *tokenCache) put(k [32]byte, id *Identity, expUnix, nowUnix int64) {
	s := c.shard(&k)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.m[k]; !ok && len(s.m) >= c.perShard {
		// Prefer dropping expired entries; look at a few, then evict whatever is at hand.
		var victim [32]byte
		found, n := false, 0
		for key, e := range s.m {
			if !found {
				victim, found = key, true
			}
			if e.expUnix <= nowUnix {
				victim = key
				break
			}
			if n++; n >= 8 {
				break
			}
		}
		delete(s.m, victim)
	}
	s.m[k] = &cacheEntry{id: id, expUnix: expUnix}
}

func (c *tokenCache) len() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.RLock()
		n += len(s.m)
		s.mu.RUnlock()
	}
	return n
}
