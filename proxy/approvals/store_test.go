package approvals

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/portcullis/portcullis/audit/sqldb/sqldbtest"
	"github.com/portcullis/portcullis/policies/principal"
)

// forEachDriver runs f against every Store driver. open returns a new handle on
// one database each time it is called, as replicas sharing it would hold; the
// PostgreSQL run needs PORTCULLIS_TEST_POSTGRES and skips without it.
func forEachDriver(t *testing.T, f func(t *testing.T, open func(t *testing.T) Store)) {
	t.Run("sqlite", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "approvals.db")
		f(t, func(t *testing.T) Store {
			st, err := OpenSQLite(context.Background(), path, nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { st.Close() })
			return st
		})
	})
	t.Run("postgres", func(t *testing.T) {
		url := sqldbtest.PostgresURL(t)
		f(t, func(t *testing.T) Store {
			st, err := OpenPostgres(context.Background(), url, nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { st.Close() })
			return st
		})
	})
}

var storeEpoch = time.UnixMilli(1_800_000_000_000).UTC()

func newApproval(hash, org string, created time.Time) *Approval {
	return &Approval{ID: uuid.NewString(), Status: StatusPending, Hash: hash,
		Caller: principal.Caller{Sub: "agent-7", Org: org, Workspace: "ws-1", Session: "s", Roles: []string{"agent"}},
		Tool:   "delete_integration", Surface: "mcp", Arguments: json.RawMessage(`{"slug":"prod"}`),
		Reason: "r", PolicyRevision: "rev", Approvers: []string{"role:security"},
		CreatedAt: created, ExpiresAt: created.Add(time.Minute)}
}

func hashOf(i int) string { return fmt.Sprintf("%064x", i) }

func mustCreate(t *testing.T, st Store, a *Approval, now time.Time) {
	t.Helper()
	existing, _, err := st.Create(context.Background(), a, now)
	if err != nil || existing != nil {
		t.Fatalf("Create: existing %v, %v", existing, err)
	}
}

func TestStoreKeepsOneLiveApprovalPerRequest(t *testing.T) {
	forEachDriver(t, func(t *testing.T, open func(*testing.T) Store) {
		ctx, st := context.Background(), open(t)
		a := newApproval(hashOf(1), "acme", storeEpoch)
		mustCreate(t, st, a, storeEpoch)
		got, err := st.Get(ctx, a.ID)
		if err != nil || got.Hash != a.Hash || string(got.Arguments) != `{"slug":"prod"}` || got.Caller.Roles[0] != "agent" ||
			got.Approvers[0] != "role:security" || !got.ExpiresAt.Equal(a.ExpiresAt) || got.Status != StatusPending {
			t.Fatalf("stored approval: %+v %v", got, err)
		}
		// The same request again, pending or denied: the first approval answers.
		if existing, _, err := st.Create(ctx, newApproval(hashOf(1), "acme", storeEpoch), storeEpoch); err != nil || existing == nil || existing.ID != a.ID {
			t.Fatalf("second Create while pending: %+v %v", existing, err)
		}
		if ok, err := st.Decide(ctx, a.ID, StatusDenied, "carol", "no", storeEpoch); !ok || err != nil {
			t.Fatalf("Decide: %v %v", ok, err)
		}
		if existing, _, _ := st.Create(ctx, newApproval(hashOf(1), "acme", storeEpoch), storeEpoch); existing == nil || existing.Status != StatusDenied {
			t.Fatalf("a denial must stand for the identical request: %+v", existing)
		}
		// Past its expiry the denial no longer answers, and a new request is filed.
		later := storeEpoch.Add(2 * time.Minute)
		b := newApproval(hashOf(1), "acme", later)
		mustCreate(t, st, b, later)
		if _, err := st.Get(ctx, uuid.NewString()); !errors.Is(err, ErrNotFound) {
			t.Fatalf("unknown id: %v", err)
		}
	})
}

func TestStoreConcurrentIdenticalRequestsFileOneApproval(t *testing.T) {
	forEachDriver(t, func(t *testing.T, open func(*testing.T) Store) {
		replicas := []Store{open(t), open(t)}
		var mu sync.Mutex
		created, ids := 0, map[string]bool{}
		var wg sync.WaitGroup
		for i := 0; i < 20; i++ {
			wg.Add(1)
			go func(st Store) {
				defer wg.Done()
				a := newApproval(hashOf(2), "acme", storeEpoch)
				existing, _, err := st.Create(context.Background(), a, storeEpoch)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				defer mu.Unlock()
				if existing == nil {
					created++
					ids[a.ID] = true
				} else {
					ids[existing.ID] = true
				}
			}(replicas[i%2])
		}
		wg.Wait()
		if created != 1 || len(ids) != 1 {
			t.Fatalf("%d approvals filed, %d ids seen; want one of each", created, len(ids))
		}
	})
}

func TestStoreConsumeIsSingleUseAcrossReplicas(t *testing.T) {
	forEachDriver(t, func(t *testing.T, open func(*testing.T) Store) {
		ctx := context.Background()
		replicas := []Store{open(t), open(t)}
		a := newApproval(hashOf(3), "acme", storeEpoch)
		mustCreate(t, replicas[0], a, storeEpoch)
		if got, err := replicas[1].Consume(ctx, a.Hash, storeEpoch); got != nil || err != nil {
			t.Fatalf("a pending approval was consumed: %+v %v", got, err)
		}
		if ok, err := replicas[1].Decide(ctx, a.ID, StatusApproved, "carol", "", storeEpoch); !ok || err != nil {
			t.Fatal(ok, err)
		}
		consume := func() int {
			var wins sync.WaitGroup
			var mu sync.Mutex
			n := 0
			for i := 0; i < 40; i++ {
				wins.Add(1)
				go func(st Store) {
					defer wins.Done()
					got, err := st.Consume(ctx, a.Hash, storeEpoch)
					if err != nil {
						t.Error(err)
						return
					}
					if got != nil {
						if got.ID != a.ID || got.Status != StatusUsed || got.UsedAt == nil {
							t.Errorf("consumed %+v", got)
						}
						mu.Lock()
						n++
						mu.Unlock()
					}
				}(replicas[i%2])
			}
			wins.Wait()
			return n
		}
		if n := consume(); n != 1 {
			t.Fatalf("%d of 40 concurrent retries on two replicas consumed the approval, want 1", n)
		}
		// Released (the call could not be recorded), it is usable once more.
		if ok, err := replicas[0].Release(ctx, a.ID, storeEpoch); !ok || err != nil {
			t.Fatalf("Release: %v %v", ok, err)
		}
		if n := consume(); n != 1 {
			t.Fatalf("after Release %d consumed, want 1", n)
		}
		if ok, _ := replicas[0].Release(ctx, a.ID, a.ExpiresAt); ok {
			t.Fatal("an expired approval was released")
		}
	})
}

func TestStoreDecisionsOnlyLeavePendingOnce(t *testing.T) {
	forEachDriver(t, func(t *testing.T, open func(*testing.T) Store) {
		ctx := context.Background()
		replicas := []Store{open(t), open(t)}
		a := newApproval(hashOf(4), "acme", storeEpoch)
		mustCreate(t, replicas[0], a, storeEpoch)
		results := make(chan bool, 2)
		for i, to := range []Status{StatusApproved, StatusDenied} {
			go func(st Store, to Status) {
				ok, err := st.Decide(ctx, a.ID, to, "carol", "c", storeEpoch)
				if err != nil {
					t.Error(err)
				}
				results <- ok
			}(replicas[i], to)
		}
		if first, second := <-results, <-results; first == second {
			t.Fatalf("two concurrent decisions: %v and %v, want exactly one to hold", first, second)
		}
		if ok, _ := replicas[0].Expire(ctx, a.ID, StatusPending); ok {
			t.Fatal("a decided approval was expired as pending")
		}
		got, _ := replicas[1].Get(ctx, a.ID)
		if got.DecidedBy != "carol" || got.Comment != "c" || got.DecidedAt == nil || !got.DecidedAt.Equal(storeEpoch) {
			t.Fatalf("decision fields: %+v", got)
		}
	})
}

func TestStoreExpiryIsReportedByOneReplica(t *testing.T) {
	forEachDriver(t, func(t *testing.T, open func(*testing.T) Store) {
		replicas := []Store{open(t), open(t)}
		want := map[string]bool{}
		for i := 0; i < 30; i++ {
			a := newApproval(hashOf(100+i), "acme", storeEpoch)
			mustCreate(t, replicas[0], a, storeEpoch)
			want[a.ID] = true
		}
		var mu sync.Mutex
		seen := map[string]int{}
		var wg sync.WaitGroup
		for i := 0; i < 4; i++ {
			wg.Add(1)
			go func(st Store) {
				defer wg.Done()
				ids, err := st.ExpireDue(context.Background(), storeEpoch.Add(time.Hour))
				if err != nil {
					t.Error(err)
				}
				mu.Lock()
				for _, id := range ids {
					seen[id]++
				}
				mu.Unlock()
			}(replicas[i%2])
		}
		wg.Wait()
		for id := range want {
			if seen[id] != 1 {
				t.Errorf("approval %s reported expired %d times, want once", id, seen[id])
			}
		}
	})
}

func TestStoreListsOneOrgNewestFirst(t *testing.T) {
	forEachDriver(t, func(t *testing.T, open func(*testing.T) Store) {
		ctx, st := context.Background(), open(t)
		var order []string
		for i := 0; i < 5; i++ {
			// Same millisecond: insertion order breaks the tie.
			a := newApproval(hashOf(200+i), "acme", storeEpoch)
			mustCreate(t, st, a, storeEpoch)
			order = append([]string{a.ID}, order...)
		}
		mustCreate(t, st, newApproval(hashOf(300), "globex", storeEpoch), storeEpoch)
		list, err := st.List(ctx, "acme", "", 100)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, a := range list {
			got = append(got, a.ID)
		}
		if fmt.Sprint(got) != fmt.Sprint(order) {
			t.Fatalf("List order %v, want %v", got, order)
		}
		if ok, _ := st.Decide(ctx, order[0], StatusApproved, "carol", "", storeEpoch); !ok {
			t.Fatal("decide")
		}
		approved, _ := st.List(ctx, "acme", StatusApproved, 100)
		limited, _ := st.List(ctx, "acme", "", 2)
		if len(approved) != 1 || approved[0].ID != order[0] || len(limited) != 2 {
			t.Fatalf("status filter %d rows, limit 2 gave %d", len(approved), len(limited))
		}
	})
}

func TestStoreNotPendingPicksTheDecidedOutOfMany(t *testing.T) {
	forEachDriver(t, func(t *testing.T, open func(*testing.T) Store) {
		ctx, st := context.Background(), open(t)
		var ids []string
		for i := 0; i < notPendingChunk+100; i++ {
			a := newApproval(hashOf(1000+i), "acme", storeEpoch)
			mustCreate(t, st, a, storeEpoch)
			ids = append(ids, a.ID)
		}
		// One in each chunk of the query, decided or expired.
		if ok, _ := st.Decide(ctx, ids[3], StatusDenied, "carol", "no", storeEpoch); !ok {
			t.Fatal("decide")
		}
		if ok, _ := st.Expire(ctx, ids[notPendingChunk+50], StatusPending); !ok {
			t.Fatal("expire")
		}
		got, err := st.NotPending(ctx, append(ids, "no-such-id"))
		if err != nil {
			t.Fatal(err)
		}
		sort.Strings(got)
		want := []string{ids[3], ids[notPendingChunk+50]}
		sort.Strings(want)
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("NotPending = %v, want %v", got, want)
		}
	})
}

// droppingStore is a shared store whose notifications never arrive.
type droppingStore struct{ Store }

func (droppingStore) Watch(ctx context.Context, _ func(string)) error {
	<-ctx.Done()
	return nil
}

func newReplica(t *testing.T, st Store, poll time.Duration) *Service {
	t.Helper()
	cfg := Config{DBPath: "unused", PollInterval: poll}
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	s := New(st, cfg, slog.New(slog.DiscardHandler), nil)
	t.Cleanup(func() { s.Close() })
	return s
}

// A call held on one replica, its notification lost: the poll still releases it.
func TestLostNotificationOnlyDelaysTheRelease(t *testing.T) {
	forEachDriver(t, func(t *testing.T, open func(*testing.T) Store) {
		ctx := context.Background()
		a, b := newReplica(t, droppingStore{open(t)}, 50*time.Millisecond), newReplica(t, open(t), time.Minute)
		ap := mustRequest(t, a, request(t, agent, `{"n":1}`))
		done := make(chan *Approval, 1)
		go func() {
			got, err := a.Wait(ctx, ap.ID)
			if err != nil {
				t.Error(err)
			}
			done <- got
		}()
		time.Sleep(100 * time.Millisecond)
		if _, err := b.Approve(ctx, ap.ID, alice, ""); err != nil {
			t.Fatal(err)
		}
		select {
		case got := <-done:
			if got == nil || got.Status != StatusApproved {
				t.Fatalf("released as %+v", got)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("the held call was not released by the poll")
		}
	})
}

// On PostgreSQL an approval granted through replica B wakes the call held on
// replica A at once: A's poll is a minute, so only the notification can do it.
func TestApprovalOnOneReplicaWakesTheCallHeldOnAnother(t *testing.T) {
	url := sqldbtest.PostgresURL(t)
	open := func() Store {
		st, err := OpenPostgres(context.Background(), url, nil)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	ctx := context.Background()
	a, b := newReplica(t, open(), time.Minute), newReplica(t, open(), time.Minute)
	var durations []time.Duration
	for i := 0; i < 3; i++ {
		ap := mustRequest(t, a, request(t, agent, fmt.Sprintf(`{"n":%d}`, i)))
		done := make(chan *Approval, 1)
		go func() {
			got, _ := a.Wait(ctx, ap.ID)
			done <- got
		}()
		time.Sleep(300 * time.Millisecond) // A is waiting, and listening
		start := time.Now()
		if _, err := b.Approve(ctx, ap.ID, alice, ""); err != nil {
			t.Fatal(err)
		}
		select {
		case got := <-done:
			if got.Status != StatusApproved {
				t.Fatalf("woken as %s", got.Status)
			}
			durations = append(durations, time.Since(start))
		case <-time.After(10 * time.Second):
			t.Fatal("the approval made on B did not wake the call held on A")
		}
		// The retry, on either replica, is forwarded exactly once.
		if _, ok, _ := b.Consume(ctx, ap.Hash); !ok {
			t.Fatal("the retry through B found no approval")
		}
		if _, ok, _ := a.Consume(ctx, ap.Hash); ok {
			t.Fatal("the approval was used twice")
		}
	}
	sort.Slice(durations, func(i, j int) bool { return durations[i] < durations[j] })
	t.Logf("cross-replica wake-up: %v", durations)
}
