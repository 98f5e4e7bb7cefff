package console

import (
	"context"
	"database/sql"
	"encoding/hex"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portcullis/portcullis/audit/sqldb/sqldbtest"
	"github.com/portcullis/portcullis/policies/principal"
)

// testClock is the stores' clock, moved by the test and read from any goroutine.
type testClock struct{ ms atomic.Int64 }

func newTestClock() *testClock {
	c := &testClock{}
	c.ms.Store(time.UnixMilli(1_800_000_000_000).UnixMilli())
	return c
}

func (c *testClock) now() time.Time          { return time.UnixMilli(c.ms.Load()) }
func (c *testClock) advance(d time.Duration) { c.ms.Add(d.Milliseconds()) }

// storeDriver opens handles on one store, as replicas sharing it would hold, and dumps
// everything the store holds as text.
type storeDriver struct {
	open func(t *testing.T) store
	dump func(t *testing.T) string
}

// forEachStore runs f against the memory store and the PostgreSQL store (which needs
// PORTCULLIS_TEST_POSTGRES and skips without it). Every open on the memory driver
// returns the one store: a single process has one.
func forEachStore(t *testing.T, idle time.Duration, max int, f func(t *testing.T, clock *testClock, d storeDriver)) {
	t.Run("memory", func(t *testing.T) {
		clock := newTestClock()
		m := newMemoryStore(idle, max, clock.now)
		f(t, clock, storeDriver{
			open: func(*testing.T) store { return m },
			dump: func(*testing.T) string {
				var b strings.Builder
				m.sessions.mu.Lock()
				for k, s := range m.sessions.byID {
					fmt.Fprintf(&b, "%x %+v\n", k, *s)
				}
				m.sessions.mu.Unlock()
				m.logins.mu.Lock()
				for k, p := range m.logins.byState {
					fmt.Fprintf(&b, "%x %+v\n", k, *p)
				}
				m.logins.mu.Unlock()
				return b.String()
			},
		})
	})
	t.Run("postgres", func(t *testing.T) {
		url := sqldbtest.PostgresURL(t)
		clock := newTestClock()
		f(t, clock, storeDriver{
			open: func(t *testing.T) store {
				s, err := openPostgres(context.Background(), url, idle, max, clock.now, slog.New(slog.DiscardHandler))
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { s.close() })
				return s
			},
			dump: func(t *testing.T) string { return dumpTables(t, url) },
		})
	})
}

// dumpTables is every row of the console's tables as PostgreSQL prints them
// (bytea as \x hex).
func dumpTables(t *testing.T, url string) string {
	t.Helper()
	db, err := sql.Open("pgx", url)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var out string
	if err := db.QueryRow(`SELECT coalesce((SELECT string_agg(s::text, E'\n') FROM console_sessions s), '') || E'\n' ||
		coalesce((SELECT string_agg(l::text, E'\n') FROM console_logins l), '')`).Scan(&out); err != nil {
		t.Fatal(err)
	}
	return out
}

func newTestSession(clock *testClock, sub string, life time.Duration) *session {
	now := clock.now()
	return &session{caller: principal.Caller{Sub: sub, Org: "acme", Workspace: "ws-1", Roles: []string{"approver", "auditor"}, Session: "sid-1"},
		method: "token", csrf: randomToken(), created: now, lastSeen: now, expires: now.Add(life)}
}

func mustCreateSession(t *testing.T, st store, clock *testClock, sub string, life time.Duration) (string, *session) {
	t.Helper()
	id, s := randomToken(), newTestSession(clock, sub, life)
	if err := st.createSession(context.Background(), hashKey(id), s); err != nil {
		t.Fatal(err)
	}
	return id, s
}

func live(t *testing.T, st store, id string, touch bool) bool {
	t.Helper()
	s, err := st.getSession(context.Background(), hashKey(id), touch)
	if err != nil {
		t.Fatal(err)
	}
	return s != nil
}

func TestStoreSessionEndsAfterIdleTimeoutUnlessThePersonActs(t *testing.T) {
	forEachStore(t, time.Minute, 100, func(t *testing.T, clock *testClock, d storeDriver) {
		a, b := d.open(t), d.open(t)
		id, want := mustCreateSession(t, a, clock, "alice", time.Hour)
		got, err := b.getSession(context.Background(), hashKey(id), true)
		if err != nil || got == nil || got.caller.Sub != "alice" || got.caller.Org != "acme" || got.caller.Workspace != "ws-1" ||
			strings.Join(got.caller.Roles, ",") != "approver,auditor" || got.caller.Session != "sid-1" || got.method != "token" ||
			got.csrf != want.csrf || !got.expires.Equal(want.expires) || !got.created.Equal(want.created) {
			t.Fatalf("the session read through another handle: %+v %v; stored %+v", got, err, want)
		}
		for i := 0; i < 3; i++ { // used every 50s, alternately through each handle: alive
			clock.advance(50 * time.Second)
			if !live(t, []store{a, b}[i%2], id, true) {
				t.Fatalf("used every 50s, the session ended at step %d", i)
			}
		}
		// Background refreshes do not count as use.
		clock.advance(30 * time.Second)
		if !live(t, a, id, false) {
			t.Fatal("a background read 30s after use found no session")
		}
		clock.advance(31 * time.Second) // 61s after the last use
		if live(t, b, id, false) || live(t, a, id, true) {
			t.Fatal("the session outlived its idle timeout")
		}
	})
}

func TestStoreSessionEndsAtItsAbsoluteExpiryHoweverUsed(t *testing.T) {
	forEachStore(t, time.Minute, 100, func(t *testing.T, clock *testClock, d storeDriver) {
		a, b := d.open(t), d.open(t)
		id, _ := mustCreateSession(t, a, clock, "alice", 3*time.Minute)
		for i := 0; i < 3; i++ {
			clock.advance(55 * time.Second)
			if !live(t, b, id, true) {
				t.Fatalf("the session ended early, at %ds", 55*(i+1))
			}
		}
		clock.advance(15 * time.Second) // 3m10s after sign-in, 15s after the last use
		if live(t, a, id, true) || live(t, b, id, true) {
			t.Fatal("the session outlived its absolute expiry")
		}
	})
}

func TestStoreDeletedSessionIsGoneForEveryHandle(t *testing.T) {
	forEachStore(t, time.Minute, 100, func(t *testing.T, clock *testClock, d storeDriver) {
		a, b := d.open(t), d.open(t)
		id, _ := mustCreateSession(t, a, clock, "alice", time.Hour)
		other, _ := mustCreateSession(t, a, clock, "bob", time.Hour)
		if err := b.deleteSession(context.Background(), hashKey(id)); err != nil {
			t.Fatal(err)
		}
		if live(t, a, id, true) {
			t.Fatal("a session deleted through one handle lives on through another")
		}
		if !live(t, a, other, true) {
			t.Fatal("deleting one session ended another")
		}
		if err := b.deleteSession(context.Background(), hashKey(id)); err != nil {
			t.Fatalf("deleting an absent session: %v", err)
		}
	})
}

func TestStoreMaxSessionsEndsTheLeastRecentlyUsed(t *testing.T) {
	forEachStore(t, time.Hour, 3, func(t *testing.T, clock *testClock, d storeDriver) {
		a, b := d.open(t), d.open(t)
		ids := make([]string, 0, 4)
		for i := 0; i < 3; i++ {
			id, _ := mustCreateSession(t, []store{a, b}[i%2], clock, fmt.Sprintf("p%d", i), 2*time.Hour)
			ids = append(ids, id)
			clock.advance(10 * time.Second)
		}
		if !live(t, b, ids[0], true) { // p0 used: p1 is now the least recently used
			t.Fatal("p0 ended early")
		}
		clock.advance(10 * time.Second)
		id, _ := mustCreateSession(t, a, clock, "p3", 2*time.Hour)
		ids = append(ids, id)
		for i, want := range []bool{true, false, true, true} {
			if got := live(t, b, ids[i], false); got != want {
				t.Errorf("p%d live = %v, want %v (the full table must end p1, the least recently used)", i, got, want)
			}
		}
		// Expired sessions make room before a live one is ended.
		clock.advance(2*time.Hour + time.Second)
		var fresh []string
		for i := 0; i < 3; i++ {
			id, _ := mustCreateSession(t, a, clock, fmt.Sprintf("q%d", i), 2*time.Hour)
			fresh = append(fresh, id)
		}
		for i, id := range fresh {
			if !live(t, b, id, false) {
				t.Errorf("q%d ended though the full table held only expired sessions", i)
			}
		}
	})
}

func TestStorePendingLoginIsTakenOnceAcrossReplicas(t *testing.T) {
	forEachStore(t, time.Minute, 100, func(t *testing.T, clock *testClock, d storeDriver) {
		ctx := context.Background()
		replicas := []store{d.open(t), d.open(t)}
		state := randomToken()
		want := &pendingLogin{verifier: "verifier-" + randomToken(), nonce: randomToken(), binding: hashKey("binding"),
			returnTo: "/console/audit", expires: clock.now().Add(loginTTL)}
		if err := replicas[0].putLogin(ctx, hashKey(state), want); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		var wins atomic.Int32
		for i := 0; i < 20; i++ {
			wg.Add(1)
			go func(st store) {
				defer wg.Done()
				p, err := st.takeLogin(ctx, hashKey(state))
				if err != nil {
					t.Error(err)
					return
				}
				if p != nil {
					wins.Add(1)
					if p.verifier != want.verifier || p.nonce != want.nonce || p.binding != want.binding || p.returnTo != want.returnTo ||
						!p.expires.Equal(want.expires) {
						t.Errorf("taken %+v, put %+v", p, want)
					}
				}
			}(replicas[i%2])
		}
		wg.Wait()
		if n := wins.Load(); n != 1 {
			t.Fatalf("%d of 20 concurrent takes on two replicas got the sign-in, want exactly 1", n)
		}
		// An expired sign-in is not handed out.
		late := randomToken()
		p := *want
		if err := replicas[1].putLogin(ctx, hashKey(late), &p); err != nil {
			t.Fatal(err)
		}
		clock.advance(loginTTL + time.Second)
		if got, err := replicas[0].takeLogin(ctx, hashKey(late)); got != nil || err != nil {
			t.Fatalf("an expired sign-in was taken: %+v %v", got, err)
		}
	})
}

func TestStoreHoldsOnlyTheHashOfTheCookieAndState(t *testing.T) {
	forEachStore(t, time.Minute, 100, func(t *testing.T, clock *testClock, d storeDriver) {
		st := d.open(t)
		id, _ := mustCreateSession(t, st, clock, "alice", time.Hour)
		state, binding := randomToken(), randomToken()
		if err := st.putLogin(context.Background(), hashKey(state), &pendingLogin{verifier: "v", nonce: "n",
			binding: hashKey(binding), returnTo: "/console/", expires: clock.now().Add(loginTTL)}); err != nil {
			t.Fatal(err)
		}
		dump := d.dump(t)
		k, s := hashKey(id), hashKey(state)
		for _, want := range []string{hex.EncodeToString(k[:]), hex.EncodeToString(s[:])} {
			if !strings.Contains(dump, want) {
				t.Errorf("the store does not hold the hash %s:\n%s", want, dump)
			}
		}
		for name, secret := range map[string]string{"cookie value": id, "state": state, "login cookie": binding} {
			if strings.Contains(dump, secret) {
				t.Errorf("the store holds the %s in clear:\n%s", name, dump)
			}
		}
	})
}

// The PostgreSQL store writes a session's last use only when it is a few seconds old,
// not on every request.
func TestPostgresStoreWritesLastUseAtMostEveryFewSeconds(t *testing.T) {
	url := sqldbtest.PostgresURL(t)
	clock := newTestClock()
	st, err := openPostgres(context.Background(), url, time.Hour, 100, clock.now, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer st.close()
	id, s := mustCreateSession(t, st, clock, "alice", 2*time.Hour)
	stored := func() int64 {
		var ms int64
		k := hashKey(id)
		if err := st.db.QueryRow(`SELECT last_seen FROM console_sessions WHERE key = $1`, k[:]).Scan(&ms); err != nil {
			t.Fatal(err)
		}
		return ms
	}
	clock.advance(maxTouchInterval - time.Second)
	live(t, st, id, true)
	if got := stored(); got != s.lastSeen.UnixMilli() {
		t.Fatalf("a use %s after the last was written (last_seen %d -> %d)", maxTouchInterval-time.Second, s.lastSeen.UnixMilli(), got)
	}
	clock.advance(time.Second)
	live(t, st, id, true)
	if got := stored(); got != clock.now().UnixMilli() {
		t.Fatalf("a use %s after the last was not written: last_seen %d, want %d", maxTouchInterval, got, clock.now().UnixMilli())
	}
}

func TestPostgresStoreSweepRemovesOnlyExpiredRows(t *testing.T) {
	url := sqldbtest.PostgresURL(t)
	clock := newTestClock()
	st, err := openPostgres(context.Background(), url, time.Hour, 10000, clock.now, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer st.close()
	keep, _ := mustCreateSession(t, st, clock, "fresh", 2*time.Hour)
	for i := 0; i < 5; i++ {
		mustCreateSession(t, st, clock, "short", 5*time.Minute)
		if err := st.putLogin(context.Background(), hashKey(randomToken()), &pendingLogin{expires: clock.now().Add(loginTTL)}); err != nil {
			t.Fatal(err)
		}
	}
	clock.advance(loginTTL + time.Second)
	n, err := st.sweep(context.Background())
	if err != nil || n != 10 {
		t.Fatalf("sweep removed %d rows (%v), want the 5 expired sessions and 5 expired sign-ins", n, err)
	}
	var rows int
	if err := st.db.QueryRow(`SELECT (SELECT count(*) FROM console_sessions) + (SELECT count(*) FROM console_logins)`).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if rows != 1 || !live(t, st, keep, false) {
		t.Fatalf("%d rows left after the sweep, want only the live session", rows)
	}
}
