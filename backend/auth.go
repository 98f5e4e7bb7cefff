package backend

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/portcullis/portcullis/backend/store"
)

// Header names.
const (
	IdentityHeader = "X-Portcullis-Identity"
	APIKeyHeader   = "X-Portkey-Api-Key"
)

// maxAssertionLifetime refuses assertions minted to live longer than the proxy ever
// mints them (60 s), so a leaked signing path cannot produce long-lived tokens.
const maxAssertionLifetime = 5 * time.Minute

// Caller is who a request acts for.
type Caller struct {
	Sub       string
	Org       string
	Workspace string
	Roles     []string
	Via       string // "identity" | "service_key"
	RequestID string
}

func (c *Caller) scope() store.Scope { return store.Scope{Org: c.Org, Workspace: c.Workspace} }

type callerKey struct{}

func withCaller(ctx context.Context, c *Caller) context.Context {
	return context.WithValue(ctx, callerKey{}, c)
}

func callerFrom(ctx context.Context) *Caller {
	c, _ := ctx.Value(callerKey{}).(*Caller)
	return c
}

type identityClaims struct {
	Org   string   `json:"org"`
	WS    string   `json:"ws"`
	Roles []string `json:"roles"`
	RID   string   `json:"rid"`
	DID   string   `json:"did"`
	jwt.RegisteredClaims
}

// verifier checks the proxy's assertion with exactly one key and one algorithm.
type verifier struct {
	parser *jwt.Parser
	key    any
}

func newVerifier(ic IdentityConfig) *verifier {
	var method string
	var key any
	switch {
	case ic.Secret != nil:
		method, key = jwt.SigningMethodHS256.Alg(), ic.Secret
	case ic.PublicKey != nil:
		method, key = jwt.SigningMethodEdDSA.Alg(), ic.PublicKey
	default:
		return nil
	}
	return &verifier{
		key: key,
		parser: jwt.NewParser(
			jwt.WithValidMethods([]string{method}),
			jwt.WithIssuer("portcullis"),
			jwt.WithAudience(ic.Audience),
			jwt.WithExpirationRequired(),
			jwt.WithIssuedAt(),
			jwt.WithLeeway(5*time.Second),
		),
	}
}

func (v *verifier) verify(tok string) (*Caller, error) {
	var cl identityClaims
	if _, err := v.parser.ParseWithClaims(tok, &cl, func(*jwt.Token) (any, error) { return v.key, nil }); err != nil {
		return nil, fmt.Errorf("backend: identity assertion: %w", err)
	}
	switch {
	case cl.Subject == "":
		return nil, errors.New("backend: identity assertion: sub is required")
	case cl.Org == "":
		return nil, errors.New("backend: identity assertion: org is required")
	case cl.IssuedAt == nil:
		return nil, errors.New("backend: identity assertion: iat is required")
	case cl.ExpiresAt.Sub(cl.IssuedAt.Time) > maxAssertionLifetime:
		return nil, errors.New("backend: identity assertion: lifetime exceeds 5m")
	}
	return &Caller{Sub: cl.Subject, Org: cl.Org, Workspace: cl.WS, Roles: cl.Roles, Via: "identity", RequestID: cl.RID}, nil
}

// authenticate reads the caller from the request headers. The identity assertion wins
// when present (behind the proxy); otherwise a service key is required. Authorization
// is never read: the proxy strips it and it is not ours to trust.
func (s *Server) authenticate(ctx context.Context, h http.Header) (*Caller, error) {
	if tok := h.Get(IdentityHeader); tok != "" {
		if s.verifier == nil {
			return nil, errors.New("identity assertions are not configured on this backend")
		}
		return s.verifier.verify(tok)
	}
	if k := h.Get(APIKeyHeader); k != "" {
		if len(k) > 256 {
			return nil, errors.New("invalid service key")
		}
		hash := hashServiceKey(k)
		if c, ok := s.keyCache.get(string(hash)); ok {
			return c, nil
		}
		sk, err := s.store.ServiceKeyByHash(ctx, hash)
		if errors.Is(err, store.ErrNotFound) {
			return nil, errors.New("invalid service key")
		}
		if err != nil {
			return nil, err
		}
		c := &Caller{Sub: "service-key:" + sk.ID, Org: sk.Org, Via: "service_key"}
		s.keyCache.put(string(hash), c)
		return &Caller{Sub: c.Sub, Org: c.Org, Via: c.Via}, nil
	}
	return nil, errors.New("missing credentials: send x-portkey-api-key or the proxy's X-Portcullis-Identity")
}

// keyCache remembers verified service keys (by hash) for a short time so a busy client
// does not cost a database lookup per request. Bounded: it empties when full.
type keyCache struct {
	mu  sync.Mutex
	m   map[string]keyCacheEntry
	ttl time.Duration
	max int
}

type keyCacheEntry struct {
	c   Caller
	exp time.Time
}

func newKeyCache() *keyCache {
	return &keyCache{m: map[string]keyCacheEntry{}, ttl: 30 * time.Second, max: 10000}
}

func (k *keyCache) get(h string) (*Caller, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	e, ok := k.m[h]
	if !ok || time.Now().After(e.exp) {
		return nil, false
	}
	c := e.c
	return &c, true
}

func (k *keyCache) put(h string, c *Caller) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if len(k.m) >= k.max {
		clear(k.m)
	}
	k.m[h] = keyCacheEntry{c: *c, exp: time.Now().Add(k.ttl)}
}
