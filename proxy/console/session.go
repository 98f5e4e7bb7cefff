package console

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"sort"
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

func newMemoryStore(l storeLimits, now func() time.Time) *memoryStore {
	return &memoryStore{sessions: newSessionStore(l, now),
		logins: &loginStore{byState: map[[32]byte]*pendingLogin{}, byAddr: map[string]int{}, byNet: map[string]int{},
			max: l.maxLogins, perAddr: l.maxLoginsPerAddr, perNet: l.maxLoginsPerNet, now: now}}
}

func (m *memoryStore) createSession(_ context.Context, key [32]byte, s *session) error {
	return m.sessions.create(key, s)
}

func (m *memoryStore) getSession(_ context.Context, key [32]byte, touch bool) (*session, error) {
	return m.sessions.get(key, touch), nil
}

func (m *memoryStore) deleteSession(_ context.Context, key [32]byte) error {
	m.sessions.delete(key)
	return nil
}

func (m *memoryStore) putLogin(_ context.Context, key [32]byte, p *pendingLogin) error {
	return m.logins.put(key, p)
}

func (m *memoryStore) takeLogin(_ context.Context, key [32]byte) (*pendingLogin, error) {
	return m.logins.take(key), nil
}

func (m *memoryStore) close() error { return nil }

// subjectKey names one person: the per-subject cap counts sessions by sub and org, and
// by how they signed in, so a token whose sub happens to equal a person's OIDC subject
// (two issuers, one namespace) cannot end that person's sessions.
type subjectKey struct{ sub, org, method string }

func subjectOf(s *session) subjectKey { return subjectKey{s.caller.Sub, s.caller.Org, s.method} }

type sessionStore struct {
	mu         sync.Mutex
	byID       map[[32]byte]*session
	bySubject  map[subjectKey]map[[32]byte]struct{}
	idle       time.Duration
	max        int
	perSubject int
	now        func() time.Time
}

func newSessionStore(l storeLimits, now func() time.Time) *sessionStore {
	return &sessionStore{byID: map[[32]byte]*session{}, bySubject: map[subjectKey]map[[32]byte]struct{}{},
		idle: l.idle, max: l.maxSessions, perSubject: l.maxPerSubject, now: now}
}

func randomToken() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// hashKey is the key a store files a cookie value or a state under.
func hashKey(v string) [32]byte { return sha256.Sum256([]byte(v)) }

// create stores s under key, the hash of the cookie value that names it. Past the
// per-subject cap the subject's own least recently used sessions end; with the table
// full of live sessions the sign-in is refused (errSessionsFull), and nobody else's
// session ends.
func (st *sessionStore) create(key [32]byte, s *session) error {
	cp := *s
	now := st.now()
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.byID[key] != nil {
		st.removeLocked(key)
	}
	subj := subjectOf(&cp)
	if own := st.bySubject[subj]; st.perSubject > 0 && len(own) >= st.perSubject {
		keys := make([][32]byte, 0, len(own))
		for k := range own {
			if st.dead(st.byID[k], now) {
				st.removeLocked(k)
				continue
			}
			keys = append(keys, k)
		}
		if n := len(keys) - st.perSubject + 1; n > 0 {
			sort.Slice(keys, func(i, j int) bool { return st.byID[keys[i]].lastSeen.Before(st.byID[keys[j]].lastSeen) })
			for _, k := range keys[:n] {
				st.removeLocked(k)
			}
		}
	}
	if len(st.byID) >= st.max {
		for k, x := range st.byID {
			if st.dead(x, now) {
				st.removeLocked(k)
			}
		}
		if len(st.byID) >= st.max {
			return errSessionsFull
		}
	}
	st.byID[key] = &cp
	own := st.bySubject[subj]
	if own == nil {
		own = map[[32]byte]struct{}{}
		st.bySubject[subj] = own
	}
	own[key] = struct{}{}
	return nil
}

// removeLocked deletes the session under k from both maps.
func (st *sessionStore) removeLocked(k [32]byte) {
	s := st.byID[k]
	if s == nil {
		return
	}
	delete(st.byID, k)
	subj := subjectOf(s)
	if own := st.bySubject[subj]; own != nil {
		delete(own, k)
		if len(own) == 0 {
			delete(st.bySubject, subj)
		}
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
		st.removeLocked(k)
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
	st.removeLocked(k)
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
// browser that started it by the hash of a short-lived cookie. addr is the key of the
// client address that started it (ratelimit.AddrKey), for the per-address cap, and
// network the key of its network (ratelimit.PrefixKey), for the per-network cap.
type pendingLogin struct {
	verifier, nonce string
	binding         [32]byte
	returnTo        string
	addr            string
	network         string
	expires         time.Time
}

type loginStore struct {
	mu      sync.Mutex
	byState map[[32]byte]*pendingLogin
	byAddr  map[string]int // sign-ins held per address, expired ones included until swept
	byNet   map[string]int // sign-ins held per network, expired ones included until swept
	max     int
	perAddr int // 0: no per-address cap
	perNet  int // 0: no per-network cap
	now     func() time.Time
}

// loginTTL is how long an OIDC sign-in may take: the round trip through the provider
// takes seconds, or a minute or two with a password and a second factor to type. It
// is also how long a flood's sign-ins hold their places in the caps.
const loginTTL = 5 * time.Minute

// put stores a sign-in in flight, unless its address already has perAddr live ones
// (errAddressLoginsFull), its network perNet (errNetworkLoginsFull), or the table holds
// max (errLoginsFull): a sign-in in flight is never dropped to make room.
func (ls *loginStore) put(state [32]byte, p *pendingLogin) error {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	atAddrCap := func() bool { return ls.perAddr > 0 && ls.byAddr[p.addr] >= ls.perAddr }
	atNetCap := func() bool { return ls.perNet > 0 && ls.byNet[p.network] >= ls.perNet }
	if len(ls.byState) >= ls.max || atAddrCap() || atNetCap() {
		now := ls.now()
		for k, v := range ls.byState {
			if now.After(v.expires) {
				ls.removeLocked(k)
			}
		}
	}
	if atAddrCap() {
		return errAddressLoginsFull
	}
	if atNetCap() {
		return errNetworkLoginsFull
	}
	if len(ls.byState) >= ls.max {
		return errLoginsFull
	}
	ls.removeLocked(state)
	cp := *p
	ls.byState[state] = &cp
	ls.byAddr[cp.addr]++
	ls.byNet[cp.network]++
	return nil
}

func (ls *loginStore) removeLocked(state [32]byte) {
	p := ls.byState[state]
	if p == nil {
		return
	}
	delete(ls.byState, state)
	if ls.byAddr[p.addr]--; ls.byAddr[p.addr] <= 0 {
		delete(ls.byAddr, p.addr)
	}
	if ls.byNet[p.network]--; ls.byNet[p.network] <= 0 {
		delete(ls.byNet, p.network)
	}
}

// take removes and returns the login for state, if it is live.
func (ls *loginStore) take(state [32]byte) *pendingLogin {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	p := ls.byState[state]
	ls.removeLocked(state)
	if p == nil || ls.now().After(p.expires) {
		return nil
	}
	return p
}
