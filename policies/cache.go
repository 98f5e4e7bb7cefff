package policies

import (
	"encoding/binary"
	"encoding/json"
	"hash/maphash"
	"math"
	"slices"
	"sync"

	"github.com/open-policy-agent/opa/v1/ast"
)

// DefaultCacheSize is how many decisions an Engine remembers per policy revision.
const DefaultCacheSize = 10000

// A decision is a pure function of the input when the policy calls no non-deterministic
// built-in (time.now_ns, rand.intn, http.send, uuid.rfc4122, ...): the same input under
// the same revision always gets the same decision. Such decisions are cached, keyed by
// the exact canonical encoding of every input part the policy can read (not a hash of
// it, so two inputs can never share an entry). A reload starts a new, empty cache. A
// policy with a non-deterministic built-in is evaluated every time.

// deterministic reports whether no module references a non-deterministic built-in. It errs
// toward false: any reference whose name matches one disables caching.
func deterministic(mods map[string]*ast.Module) bool {
	nondet := map[string]bool{}
	for name, b := range ast.BuiltinMap {
		if b.Nondeterministic {
			nondet[name] = true
		}
	}
	ok := true
	for _, m := range mods {
		ast.WalkRefs(m, func(r ast.Ref) bool {
			if nondet[r.String()] {
				ok = false
			}
			return !ok
		})
	}
	return ok
}

type decisionCache struct {
	seed   maphash.Seed
	shards [32]cacheShard
	limit  int // per shard
}

type cacheShard struct {
	mu sync.RWMutex
	m  map[string]Decision
}

func newDecisionCache(size int) *decisionCache {
	c := &decisionCache{seed: maphash.MakeSeed()}
	c.limit = max(size/len(c.shards), 1)
	for i := range c.shards {
		c.shards[i].m = make(map[string]Decision)
	}
	return c
}

func (c *decisionCache) shard(key []byte) *cacheShard {
	return &c.shards[maphash.Bytes(c.seed, key)%uint64(len(c.shards))]
}

func (c *decisionCache) get(key []byte) (Decision, bool) {
	s := c.shard(key)
	s.mu.RLock()
	d, ok := s.m[string(key)] // no allocation: the compiler elides the conversion
	s.mu.RUnlock()
	return d, ok
}

func (c *decisionCache) put(key []byte, d Decision) {
	s := c.shard(key)
	s.mu.Lock()
	if len(s.m) >= c.limit {
		for k := range s.m { // map iteration starts at a random entry: random eviction
			delete(s.m, k)
			break
		}
	}
	s.m[string(key)] = d
	s.mu.Unlock()
}

var keyBufs = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// appendKey appends an unambiguous encoding of the input parts the policy reads. ok is
// false for values it cannot encode exactly; such inputs are not cached.
func appendKey(b []byte, in *Input, use inputUse) ([]byte, bool) {
	for _, s := range [...]string{in.Surface, in.Tool, in.Mode, in.HTTP.Method, in.HTTP.Path, in.Upstream,
		in.Caller.Sub, in.Caller.Org, in.Caller.Workspace, in.Caller.Session, in.ToolInfo.Category, in.ToolInfo.Risk} {
		b = appendStr(b, s)
	}
	b = binary.AppendUvarint(b, uint64(len(in.Caller.Roles)))
	for _, r := range in.Caller.Roles {
		b = appendStr(b, r)
	}
	ok := true
	if use.arguments {
		b, ok = appendValue(b, in.Arguments, 0)
	}
	if ok && use.claims {
		b, ok = appendValue(b, in.Caller.Claims, 0)
	}
	if ok && use.annotations {
		b, ok = appendValue(b, in.ToolInfo.Annotations, 0)
	}
	if ok && use.resource {
		// Presence is part of the key: an unresolved call and a resolved one with no
		// fields must not share a decision.
		if in.Resource == nil {
			b = append(b, 'A')
		} else {
			b, ok = appendValue(append(b, 'P'), in.Resource, 0)
		}
	}
	return b, ok
}

func appendStr(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendValue(b []byte, v any, depth int) ([]byte, bool) {
	if depth > maxInputDepth {
		return b, false
	}
	switch x := v.(type) {
	case nil:
		return append(b, 'z'), true
	case bool:
		if x {
			return append(b, 'T'), true
		}
		return append(b, 'F'), true
	case string:
		return appendStr(append(b, 's'), x), true
	case json.Number:
		return appendStr(append(b, 'n'), string(x)), true
	case float64:
		return binary.BigEndian.AppendUint64(append(b, 'f'), math.Float64bits(x)), true
	case map[string]any:
		b = binary.AppendUvarint(append(b, 'm'), uint64(len(x)))
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		ok := true
		for _, k := range keys {
			b = appendStr(b, k)
			if b, ok = appendValue(b, x[k], depth+1); !ok {
				return b, false
			}
		}
		return b, true
	case []any:
		b = binary.AppendUvarint(append(b, 'a'), uint64(len(x)))
		ok := true
		for _, e := range x {
			if b, ok = appendValue(b, e, depth+1); !ok {
				return b, false
			}
		}
		return b, true
	case []string:
		b = binary.AppendUvarint(append(b, 'a'), uint64(len(x)))
		for _, e := range x {
			b = appendStr(append(b, 's'), e)
		}
		return b, true
	}
	return b, false
}
