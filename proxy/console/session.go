package console

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"sync"
	"time"

	"github.com/portcullis/portcullis/policies/principal"
)

// cookieName is the session cookie. It is scoped to /console, Secure, HttpOnly and
// SameSite=Strict; its value is a random 256-bit id the server keeps only as a hash.
const cookieName = "portcullis_console"

// session is a signed-in person. The store keys it by the SHA-256 of the cookie value,
// so the table never holds a usable credential.
type session struct {
	caller   principal.Caller
	method   string // "token" or "oidc"
	csrf     string
	created  time.Time
	lastSeen time.Time
	expires  time.Time // absolute: sign-in + AbsoluteTimeout, or the token's exp if sooner
}

// memoryStore is the store of one process: sessions and sign-ins in maps.
type memoryStore struct {
	sessions *sessionStore
	logins   *loginStore
}

func newMemoryStore(idle time.Duration, max int, now func() time.Time) *memoryStore {
	return &memoryStore{sessions: newSessionStore(idle, max, now), logins: &loginStore{byState: map[[32]byte]*pendingLogin{}, now: now}}
}

func (m *memoryStore) createSession(_ context.Context, key [32]byte, s *session) error {
	m.sessions.create(key, s)
	return nil
}

func (m *memoryStore) getSession(_ context.Context, key [32]byte, touch bool) (*session, error) {
	return m.sessions.get(key, touch), nil
}

func (m *memoryStore) deleteSession(_ context.Context, key [32]byte) error {
	m.sessions.delete(key)
	return nil
}

func (m *memoryStore) putLogin(_ context.Context, key [32]byte, p *pendingLogin) error {
	m.logins.put(key, p)
	return nil
}

func (m *memoryStore) takeLogin(_ context.Context, key [32]byte) (*pendingLogin, error) {
	return m.logins.take(key), nil
}

func (m *memoryStore) close() error { return nil }

type sessionStore struct {
	mu   sync.Mutex
	byID map[[32]byte]*session
	idle time.Duration
	max  int
	now  func() time.Time
}

func newSessionStore(idle time.Duration, max int, now func() time.Time) *sessionStore {
	return &sessionStore{byID: map[[32]byte]*session{}, idle: idle, max: max, now: now}
}

func randomToken() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// hashKey is the key a store files a cookie value or a state under.
func hashKey(v string) [32]byte { return sha256.Sum256([]byte(v)) }

// create stores s under key, the hash of the cookie value that names it.
func (st *sessionStore) create(key [32]byte, s *session) {
	cp := *s
	st.mu.Lock()
	defer st.mu.Unlock()
	if len(st.byID) >= st.max {
		st.evictLocked(st.now())
	}
	st.byID[key] = &cp
}

// evictLocked drops expired sessions and, if the table is still full, the least
// recently used one.
func (st *sessionStore) evictLocked(now time.Time) {
	var oldestKey [32]byte
	var oldest *session
	for k, s := range st.byID {
		if st.dead(s, now) {
			delete(st.byID, k)
			continue
		}
		if oldest == nil || s.lastSeen.Before(oldest.lastSeen) {
			oldestKey, oldest = k, s
		}
	}
	if len(st.byID) >= st.max && oldest != nil {
		delete(st.byID, oldestKey)
	}
}

func (st *sessionStore) dead(s *session, now time.Time) bool {
	return sessionDead(s, now, st.idle)
}

// sessionDead reports whether s has passed its absolute expiry or been idle too long.
func sessionDead(s *session, now time.Time, idle time.Duration) bool {
	return !now.Before(s.expires) || now.Sub(s.lastSeen) >= idle
}

// get returns the live session under key and, when touch, marks it used (a page's
// background refresh does not: it is not the person acting). An expired one is
// deleted and not returned.
func (st *sessionStore) get(k [32]byte, touch bool) *session {
	now := st.now()
	st.mu.Lock()
	defer st.mu.Unlock()
	s := st.byID[k]
	if s == nil {
		return nil
	}
	if st.dead(s, now) {
		delete(st.byID, k)
		return nil
	}
	if touch {
		s.lastSeen = now
	}
	cp := *s
	return &cp
}

func (st *sessionStore) delete(k [32]byte) {
	st.mu.Lock()
	delete(st.byID, k)
	st.mu.Unlock()
}

// callerOf is the part of a caller a session keeps: no other claims.
func callerOf(c principal.Caller) principal.Caller {
	return principal.Caller{Sub: c.Sub, Org: c.Org, Workspace: c.Workspace, Roles: c.Roles, Session: c.Session}
}

// csrfOK compares a presented CSRF token with the session's in constant time.
func (s *session) csrfOK(presented string) bool {
	return presented != "" && subtle.ConstantTimeCompare([]byte(presented), []byte(s.csrf)) == 1
}

// pendingLogin is an OIDC sign-in in flight: the PKCE verifier and nonce, bound to the
// browser that started it by the hash of a short-lived cookie.
type pendingLogin struct {
	verifier, nonce string
	binding         [32]byte
	returnTo        string
	expires         time.Time
}

type loginStore struct {
	mu      sync.Mutex
	byState map[[32]byte]*pendingLogin
	now     func() time.Time
}

const (
	loginTTL        = 10 * time.Minute
	maxPendingLogin = 10000
)

func (ls *loginStore) put(state [32]byte, p *pendingLogin) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	now := ls.now()
	if len(ls.byState) >= maxPendingLogin {
		for k, v := range ls.byState {
			if now.After(v.expires) {
				delete(ls.byState, k)
			}
		}
		if len(ls.byState) >= maxPendingLogin {
			for k := range ls.byState { // still full: drop one at random
				delete(ls.byState, k)
				break
			}
		}
	}
	ls.byState[state] = p
}

// take removes and returns the login for state, if it is live.
func (ls *loginStore) take(state [32]byte) *pendingLogin {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	p := ls.byState[state]
	delete(ls.byState, state)
	if p == nil || ls.now().After(p.expires) {
		return nil
	}
	return p
}
