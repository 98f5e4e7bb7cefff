package console

import (
	"context"
	"errors"
	"time"
)

// store keeps the console's sessions and the OIDC sign-ins in flight. Keys are SHA-256
// hashes (of the session cookie's value, of the OIDC state): a store never holds a
// value that would sign anyone in. The memory store serves one process; the PostgreSQL
// store is shared by replicas, so a person signed in through one is signed in on all,
// and a provider's redirect may land on any.
//
// Every method may fail on a shared store that cannot be reached; the console then
// answers 503 console_store_unavailable, never "unauthenticated". Besides that,
// createSession and putLogin refuse what would pass a cap (the errors below): a full
// table never makes room by ending someone else's session or sign-in.
type store interface {
	// createSession stores s under key. Past storeLimits.maxPerSubject live sessions of
	// s's subject (sub and org), that subject's least recently used ones end; with
	// maxSessions live sessions (of anyone) it returns errSessionsFull and changes
	// nothing.
	createSession(ctx context.Context, key [32]byte, s *session) error
	// getSession returns a copy of the live session under key, or nil when there is
	// none or it has expired (an expired one is deleted). touch marks it used now.
	getSession(ctx context.Context, key [32]byte, touch bool) (*session, error)
	deleteSession(ctx context.Context, key [32]byte) error
	// putLogin stores a sign-in in flight under key (the hash of its state), or returns
	// errAddressLoginsFull when p.addr has maxLoginsPerAddr live ones,
	// errNetworkLoginsFull when p.network has maxLoginsPerNet live ones, or
	// errLoginsFull when maxLogins are live.
	putLogin(ctx context.Context, key [32]byte, p *pendingLogin) error
	// takeLogin removes and returns the live sign-in under key: of concurrent takers,
	// on any replica, one gets it.
	takeLogin(ctx context.Context, key [32]byte) (*pendingLogin, error)
	close() error
}

// storeLimits bound what a store holds (Config's keys of the same names).
type storeLimits struct {
	idle             time.Duration
	maxSessions      int // live sessions; must be positive
	maxPerSubject    int // live sessions of one sub and org; 0: no cap
	maxLogins        int // live sign-ins in flight; must be positive
	maxLoginsPerAddr int // live sign-ins in flight started from one address; 0: no cap
	maxLoginsPerNet  int // live sign-ins in flight started from one network; 0: no cap
}

func limitsOf(cfg Config) storeLimits {
	return storeLimits{idle: cfg.IdleTimeout, maxSessions: cfg.MaxSessions, maxPerSubject: cfg.MaxSessionsPerSubject,
		maxLogins: cfg.MaxPendingLogins, maxLoginsPerAddr: cfg.MaxPendingLoginsPerAddress,
		maxLoginsPerNet: cfg.MaxPendingLoginsPerNetwork}
}

// The caps' refusals. None is an outage: the console answers 429 with its own code.
var (
	errSessionsFull      = errors.New("console: the session table is full of live sessions")
	errLoginsFull        = errors.New("console: the table of sign-ins in flight is full")
	errAddressLoginsFull = errors.New("console: this address has too many sign-ins in flight")
	errNetworkLoginsFull = errors.New("console: this address's network has too many sign-ins in flight")
)

// storeTimeout bounds one store operation, so a request does not hang on a shared store
// that stopped answering.
const storeTimeout = 5 * time.Second

var (
	_ store = (*memoryStore)(nil)
	_ store = (*pgStore)(nil)
)
