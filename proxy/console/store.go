package console

import (
	"context"
	"time"
)

// store keeps the console's sessions and the OIDC sign-ins in flight. Keys are SHA-256
// hashes (of the session cookie's value, of the OIDC state): a store never holds a
// value that would sign anyone in. The memory store serves one process; the PostgreSQL
// store is shared by replicas, so a person signed in through one is signed in on all,
// and a provider's redirect may land on any.
//
// Every method may fail only on a shared store that cannot be reached; the console
// then answers 503 console_store_unavailable, never "unauthenticated".
type store interface {
	// createSession stores s under key. With the live sessions at the maximum, the
	// least recently used one ends first.
	createSession(ctx context.Context, key [32]byte, s *session) error
	// getSession returns a copy of the live session under key, or nil when there is
	// none or it has expired (an expired one is deleted). touch marks it used now.
	getSession(ctx context.Context, key [32]byte, touch bool) (*session, error)
	deleteSession(ctx context.Context, key [32]byte) error
	// putLogin stores a sign-in in flight under key (the hash of its state).
	putLogin(ctx context.Context, key [32]byte, p *pendingLogin) error
	// takeLogin removes and returns the live sign-in under key: of concurrent takers,
	// on any replica, one gets it.
	takeLogin(ctx context.Context, key [32]byte) (*pendingLogin, error)
	close() error
}

// storeTimeout bounds one store operation, so a request does not hang on a shared store
// that stopped answering.
const storeTimeout = 5 * time.Second

var (
	_ store = (*memoryStore)(nil)
	_ store = (*pgStore)(nil)
)
