package console

import (
	"context"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portcullis/portcullis/audit/sqldb/sqldbtest"
	"github.com/portcullis/portcullis/policies/principal"
	"github.com/portcullis/portcullis/proxy/ratelimit"
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
// PORTCULLIS_TEST_POSTGRES and skips without it), with max live sessions, no cap per
// subject and the default sign-in caps. Every open on the memory driver returns the one
// store: a single process has one.
func forEachStore(t *testing.T, idle time.Duration, max int, f func(t *testing.T, clock *testClock, d storeDriver)) {
	forEachStoreWith(t, storeLimits{idle: idle, maxSessions: max, maxLogins: DefaultMaxPendingLogins}, f)
}

// forEachStoreWith is forEachStore with the limits given.
func forEachStoreWith(t *testing.T, lim storeLimits, f func(t *testing.T, clock *testClock, d storeDriver)) {
	t.Run("memory", func(t *testing.T) {
		clock := newTestClock()
		m := newMemoryStore(lim, clock.now)
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
				s, err := openPostgres(context.Background(), url, lim, clock.now, slog.New(slog.DiscardHandler))
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
	return newTestSessionIn(clock, sub, "acme", life)
}

func newTestSessionIn(clock *testClock, sub, org string, life time.Duration) *session {
	now := clock.now()
	return &session{caller: principal.Caller{Sub: sub, Org: org, Workspace: "ws-1", Roles: []string{"approver", "auditor"}, Session: "sid-1"},
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

// A full table refuses a new sign-in with errSessionsFull and ends nobody's session: a
// caller who can sign in as often as they like cannot sign anyone else out. A subject at
// its own cap still signs in, ending its own oldest session. Expired sessions make room.
func TestStoreFullTableRefusesNewSignInAndKeepsEveryonesSessions(t *testing.T) {
	forEachStoreWith(t, storeLimits{idle: time.Hour, maxSessions: 3, maxPerSubject: 2, maxLogins: 100}, func(t *testing.T, clock *testClock, d storeDriver) {
		a, b := d.open(t), d.open(t)
		var ids []string
		for i, who := range []string{"sam", "bob", "bob"} {
			id, _ := mustCreateSession(t, []store{a, b}[i%2], clock, who, 2*time.Hour)
			ids = append(ids, id)
			clock.advance(10 * time.Second)
		}
		for i := 0; i < 5; i++ {
			id := randomToken()
			err := []store{a, b}[i%2].createSession(context.Background(), hashKey(id), newTestSessionIn(clock, "evil", "evil", 2*time.Hour))
			if !errors.Is(err, errSessionsFull) {
				t.Fatalf("sign-in %d into a full table: %v, want errSessionsFull", i, err)
			}
			if live(t, a, id, false) {
				t.Fatalf("the refused sign-in %d was stored", i)
			}
		}
		for i, id := range ids {
			if !live(t, b, id, false) {
				t.Errorf("session %d ended: a refused sign-in must end nobody's session", i)
			}
		}
		// bob is at his cap of 2: his sign-in ends his own oldest session, not sam's.
		clock.advance(10 * time.Second)
		bob3, _ := mustCreateSession(t, b, clock, "bob", 2*time.Hour)
		for i, want := range []bool{true, false, true} {
			if got := live(t, a, ids[i], false); got != want {
				t.Errorf("session %d live = %v, want %v (bob's third sign-in ends bob's oldest)", i, got, want)
			}
		}
		if !live(t, a, bob3, false) {
			t.Error("bob's sign-in at his own cap was not stored")
		}
		// Expired sessions make room before a sign-in is refused.
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

// Past max_sessions_per_subject a subject's sign-in ends that subject's own least
// recently used session: never another subject's, nor the same sub's in another org.
func TestStoreSubjectCapEndsOnlyTheSubjectsOwnOldestSession(t *testing.T) {
	forEachStoreWith(t, storeLimits{idle: time.Hour, maxSessions: 100, maxPerSubject: 3, maxLogins: 100}, func(t *testing.T, clock *testClock, d storeDriver) {
		a, b := d.open(t), d.open(t)
		ctx := context.Background()
		create := func(st store, sub, org string) string {
			t.Helper()
			id := randomToken()
			if err := st.createSession(ctx, hashKey(id), newTestSessionIn(clock, sub, org, 2*time.Hour)); err != nil {
				t.Fatal(err)
			}
			clock.advance(time.Second)
			return id
		}
		// The oldest sessions of all: sam in acme, a namesake of the attacker in acme, and
		// the attacker's sub signed in by OIDC (a person the token issuer's sub collides with).
		sam, namesake := create(a, "sam", "acme"), create(b, "evil", "acme")
		person := randomToken()
		viaOIDC := newTestSessionIn(clock, "evil", "evil", 2*time.Hour)
		viaOIDC.method = "oidc"
		if err := a.createSession(ctx, hashKey(person), viaOIDC); err != nil {
			t.Fatal(err)
		}
		clock.advance(time.Second)
		evil := []string{create(a, "evil", "evil"), create(b, "evil", "evil"), create(a, "evil", "evil")}
		clock.advance(maxTouchInterval) // PostgreSQL writes a use this much after the last
		if !live(t, b, evil[0], true) { // evil[0] used: evil[1] is now evil's least recently used
			t.Fatal("evil[0] ended early")
		}
		clock.advance(time.Second)
		evil = append(evil, create(b, "evil", "evil"))
		for i, want := range []bool{true, false, true, true} {
			if got := live(t, a, evil[i], false); got != want {
				t.Errorf("evil[%d] live = %v, want %v (the fourth sign-in ends evil's least recently used, evil[1])", i, got, want)
			}
		}
		// A flood of sign-ins: evil keeps 3 sessions, everyone else keeps theirs.
		var last []string
		for i := 0; i < 50; i++ {
			last = append(last, create([]store{a, b}[i%2], "evil", "evil"))
		}
		for i, id := range last {
			if got, want := live(t, a, id, false), i >= len(last)-3; got != want {
				t.Errorf("after the flood, evil's sign-in %d live = %v, want %v", i, got, want)
			}
		}
		for name, id := range map[string]string{"sam@acme": sam, "evil@acme": namesake, "evil@evil by OIDC": person} {
			if !live(t, b, id, false) {
				t.Errorf("%s was signed out by another subject's sign-ins", name)
			}
		}
	})
}

// Sign-ins in flight past a cap are refused: per address (errAddressLoginsFull) and in
// all (errLoginsFull). None in flight is dropped to make room, and expired ones do not
// count.
func TestStoreLoginCapsRefuseNewSignInsAndKeepThoseInFlight(t *testing.T) {
	forEachStoreWith(t, storeLimits{idle: time.Hour, maxSessions: 100, maxLogins: 5, maxLoginsPerAddr: 3}, func(t *testing.T, clock *testClock, d storeDriver) {
		ctx := context.Background()
		replicas := []store{d.open(t), d.open(t)}
		put := func(i int, addr string) ([32]byte, error) {
			k := hashKey(randomToken())
			return k, replicas[i%2].putLogin(ctx, k, &pendingLogin{verifier: "v", nonce: "n", addr: addr, expires: clock.now().Add(loginTTL)})
		}
		var kept [][32]byte
		for i := 0; i < 3; i++ {
			k, err := put(i, "192.0.2.7")
			if err != nil {
				t.Fatal(err)
			}
			kept = append(kept, k)
		}
		for i := 0; i < 5; i++ {
			if _, err := put(i, "192.0.2.7"); !errors.Is(err, errAddressLoginsFull) {
				t.Fatalf("sign-in %d past the address's cap: %v, want errAddressLoginsFull", i, err)
			}
		}
		for i := 0; i < 2; i++ {
			k, err := put(i, "2001:db8:1:2::/64")
			if err != nil {
				t.Fatalf("another address's sign-in %d: %v", i, err)
			}
			kept = append(kept, k)
		}
		for i := 0; i < 5; i++ {
			if _, err := put(i, fmt.Sprintf("198.51.100.%d", i)); !errors.Is(err, errLoginsFull) {
				t.Fatalf("sign-in %d into a full table: %v, want errLoginsFull", i, err)
			}
		}
		for i, k := range kept[:4] {
			if p, err := replicas[(i+1)%2].takeLogin(ctx, k); err != nil || p == nil {
				t.Fatalf("sign-in %d in flight was dropped: %+v %v", i, p, err)
			}
		}
		// Taken ones free their places; expired ones stop counting.
		if _, err := put(0, "192.0.2.7"); err != nil {
			t.Fatalf("a sign-in after the address's were taken: %v", err)
		}
		clock.advance(loginTTL + time.Second)
		for i := 0; i < 3; i++ {
			if _, err := put(i, "192.0.2.7"); err != nil {
				t.Fatalf("sign-in %d after the others expired: %v", i, err)
			}
		}
	})
}

// Sign-ins in flight past the cap per network are refused (errNetworkLoginsFull): 51
// addresses of one IPv4 /24, 4 each (the per-address cap), start 200 between them; an
// address of another network still signs in, and so for the /64s of one IPv6 /48. None
// in flight is dropped, and taken or expired ones stop counting.
func TestStoreLoginNetworkCapRefusesOneNetworkAndKeepsOthers(t *testing.T) {
	const perAddr, perNet = 4, 200
	forEachStoreWith(t, storeLimits{idle: time.Hour, maxSessions: 100, maxLogins: DefaultMaxPendingLogins, maxLoginsPerAddr: perAddr, maxLoginsPerNet: perNet},
		func(t *testing.T, clock *testClock, d storeDriver) {
			ctx := context.Background()
			replicas := []store{d.open(t), d.open(t)}
			put := func(i int, ip string) ([32]byte, error) {
				k, a := hashKey(randomToken()), net.ParseIP(ip)
				return k, replicas[i%2].putLogin(ctx, k, &pendingLogin{verifier: "v", nonce: "n",
					addr: ratelimit.AddrKey(a), network: ratelimit.PrefixKey(a), expires: clock.now().Add(loginTTL)})
			}
			flood := func(what string, ipOf func(a int) string) (kept [][32]byte) {
				refused := 0
				for a := 1; a <= 51; a++ {
					for i := 0; i < perAddr; i++ {
						switch k, err := put(a+i, ipOf(a)); {
						case err == nil:
							kept = append(kept, k)
						case errors.Is(err, errNetworkLoginsFull):
							refused++
						default:
							t.Fatalf("%s: address %d's sign-in %d: %v, want nil or errNetworkLoginsFull", what, a, i, err)
						}
					}
				}
				if len(kept) != perNet || refused != 51*perAddr-perNet {
					t.Fatalf("%s: 51 addresses started %d sign-ins and were refused %d times; want the network's cap, %d", what, len(kept), refused, perNet)
				}
				return kept
			}
			v4 := flood("one IPv4 /24", func(a int) string { return fmt.Sprintf("192.0.2.%d", a) })
			if _, err := put(0, "192.0.3.1"); err != nil {
				t.Fatalf("an address of another /24: %v", err)
			}
			// One IPv6 /48: its /64s are addresses of one network.
			v6 := flood("one IPv6 /48", func(a int) string { return fmt.Sprintf("2001:db8:1:%x::7", a) })
			if _, err := put(0, "2001:db8:2::7"); err != nil {
				t.Fatalf("an address of another /48: %v", err)
			}
			for i, k := range append(v4[:3], v6[:3]...) {
				if p, err := replicas[(i+1)%2].takeLogin(ctx, k); err != nil || p == nil {
					t.Fatalf("sign-in %d in flight was dropped: %+v %v", i, p, err)
				}
			}
			// Taken ones free their places; expired ones stop counting.
			if _, err := put(0, "192.0.2.250"); err != nil {
				t.Fatalf("a sign-in from the /24 after some were taken: %v", err)
			}
			if _, err := put(0, "2001:db8:1:ffff::1"); err != nil {
				t.Fatalf("a sign-in from the /48 after some were taken: %v", err)
			}
			clock.advance(loginTTL + time.Second)
			flood("the /24 after its sign-ins expired", func(a int) string { return fmt.Sprintf("192.0.2.%d", a) })
		})
}

// Concurrent sign-ins and OIDC sign-ins on two handles, with sweeps and takes between
// them, at small caps: no error but the caps' own refusals (on PostgreSQL: no deadlock,
// SQLSTATE 40P01), and the caps hold.
func TestStoreConcurrentSignInsFailOnlyWithFull(t *testing.T) {
	const workers, puts, maxLogins, maxSessions = 8, 200, 40, 30
	forEachStoreWith(t, storeLimits{idle: time.Hour, maxSessions: maxSessions, maxPerSubject: 3, maxLogins: maxLogins, maxLoginsPerAddr: 10},
		func(t *testing.T, clock *testClock, d storeDriver) {
			ctx := context.Background()
			replicas := []store{d.open(t), d.open(t)}
			var full, ok atomic.Int64
			var wg sync.WaitGroup
			stop := make(chan struct{})
			if pg, isPG := replicas[0].(*pgStore); isPG {
				wg.Add(1)
				go func() { // a replica's sweep, running through it all
					defer wg.Done()
					for {
						select {
						case <-stop:
							return
						default:
						}
						if _, err := pg.sweep(ctx); err != nil {
							t.Errorf("sweep: %v", err)
							return
						}
					}
				}()
			}
			var workersWG sync.WaitGroup
			for w := 0; w < workers; w++ {
				workersWG.Add(1)
				go func(w int) {
					defer workersWG.Done()
					var mine [][32]byte
					for i := 0; i < puts; i++ {
						st := replicas[(w+i)%2]
						k := hashKey(randomToken())
						p := &pendingLogin{verifier: "v", nonce: "n", addr: fmt.Sprintf("192.0.2.%d", (w*puts+i)%7),
							expires: clock.now().Add(time.Duration(1+i%5) * time.Second)}
						switch err := st.putLogin(ctx, k, p); {
						case err == nil:
							ok.Add(1)
							mine = append(mine, k)
						case errors.Is(err, errLoginsFull), errors.Is(err, errAddressLoginsFull):
							full.Add(1)
						default:
							t.Errorf("worker %d put %d: %v", w, i, err)
							return
						}
						if i%3 == 0 && len(mine) > 0 {
							if _, err := replicas[(w+i+1)%2].takeLogin(ctx, mine[0]); err != nil {
								t.Errorf("worker %d take: %v", w, err)
								return
							}
							mine = mine[1:]
						}
						if i%4 == 0 {
							s := newTestSessionIn(clock, fmt.Sprintf("p%d", (w*puts+i)%13), "acme", time.Duration(2+i%3)*time.Second)
							if err := st.createSession(ctx, hashKey(randomToken()), s); err != nil && !errors.Is(err, errSessionsFull) {
								t.Errorf("worker %d sign-in %d: %v", w, i, err)
								return
							}
						}
						if i%50 == 0 {
							clock.advance(time.Second)
						}
					}
				}(w)
			}
			workersWG.Wait()
			close(stop)
			wg.Wait()
			if ok.Load() == 0 || full.Load() == 0 {
				t.Fatalf("%d stored, %d refused as full: want both (the caps must be reached)", ok.Load(), full.Load())
			}
			if pg, isPG := replicas[0].(*pgStore); isPG {
				nowMs, idleMs := pg.cutoffs()
				var logins, sessions, perSubject int
				if err := pg.db.QueryRow(`SELECT (SELECT count(*) FROM console_logins WHERE expires_at >= $1),
					(SELECT count(*) FROM console_sessions WHERE NOT `+deadCond+`),
					(SELECT coalesce(max(n), 0) FROM (SELECT count(*) AS n FROM console_sessions WHERE NOT `+deadCond+` GROUP BY caller_org, caller_sub) s)`,
					nowMs, idleMs).Scan(&logins, &sessions, &perSubject); err != nil {
					t.Fatal(err)
				}
				if logins > maxLogins || sessions > maxSessions || perSubject > 3 {
					t.Errorf("live sign-ins %d (cap %d), sessions %d (cap %d), most of one subject %d (cap 3)", logins, maxLogins, sessions, maxSessions, perSubject)
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
	st, err := openPostgres(context.Background(), url, storeLimits{idle: time.Hour, maxSessions: 100, maxLogins: 100}, clock.now, slog.New(slog.DiscardHandler))
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
	st, err := openPostgres(context.Background(), url, storeLimits{idle: time.Hour, maxSessions: 10000, maxLogins: 10000}, clock.now, slog.New(slog.DiscardHandler))
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
