package store

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/portcullis/portcullis/backend/crypto"
)

func open(t *testing.T) *Store {
	t.Helper()
	s, err := Open(context.Background(), filepath.Join(t.TempDir(), "b.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// drivers runs a test against SQLite and, when configured, PostgreSQL.
func drivers(t *testing.T, f func(t *testing.T, s *Store)) {
	t.Run("sqlite", func(t *testing.T) { f(t, open(t)) })
	t.Run("postgres", func(t *testing.T) { f(t, openPG(t)) })
}

func integ(org, name string) *Integration {
	now := time.Now()
	return &Integration{ID: uuid.NewString(), Org: org, Slug: name, Name: name,
		Provider: "openai", Status: "active", Configurations: map[string]any{}, CreatedAt: now, UpdatedAt: now}
}

func TestMigrateIsIdempotentAndPragmas(t *testing.T) {
	path := filepath.Join(t.TempDir(), "b.db")
	for range 2 {
		s, err := Open(context.Background(), path, nil)
		if err != nil {
			t.Fatal(err)
		}
		var v int
		var mode string
		var fk, busy int
		// The version is tracked in schema_migrations, as every store's is.
		_ = s.db.QueryRow("SELECT max(version) FROM schema_migrations WHERE component = 'backend'").Scan(&v)
		_ = s.db.QueryRow("PRAGMA journal_mode").Scan(&mode)
		_ = s.db.QueryRow("PRAGMA foreign_keys").Scan(&fk)
		_ = s.db.QueryRow("PRAGMA busy_timeout").Scan(&busy)
		if v != 1 || mode != "wal" || fk != 1 || busy != 5000 {
			t.Fatalf("version=%d mode=%s fk=%d busy=%d", v, mode, fk, busy)
		}
		s.Close()
	}
}

// The per-provider limit holds under concurrent creates: the count and the insert are
// one immediate transaction.
func TestConcurrentCreatesRespectLimit(t *testing.T) { drivers(t, testConcurrentCreates) }

func testConcurrentCreates(t *testing.T, s *Store) {
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok, limited := 0, 0
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := s.Create(context.Background(), integ("acme", fmt.Sprint("n", i)), nil, CreateOptions{MaxPerProvider: 5})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				ok++
			case errors.Is(err, ErrLimit):
				limited++
			default:
				t.Errorf("create: %v", err)
			}
		}()
	}
	wg.Wait()
	if ok != 5 || limited != 15 {
		t.Fatalf("ok=%d limited=%d, want 5 and 15", ok, limited)
	}
}

func TestDeleteCascadesSecrets(t *testing.T) { drivers(t, testDeleteCascades) }

func testDeleteCascades(t *testing.T, s *Store) {
	it := integ("acme", "a")
	sec := Secret{Field: "key", Envelope: crypto.Envelope{KeyID: "k", WrappedKey: []byte{1}, Ciphertext: []byte{2}}}
	if err := s.Create(context.Background(), it, []Secret{sec}, CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Delete(context.Background(), Scope{Org: "other"}, it.Slug); !errors.Is(err, ErrNotFound) {
		t.Fatalf("delete across orgs: %v", err)
	}
	if _, err := s.Delete(context.Background(), Scope{Org: "acme"}, it.Slug); err != nil {
		t.Fatal(err)
	}
	if secs, _ := s.Secrets(context.Background(), it.ID); len(secs) != 0 {
		t.Fatalf("secrets survived delete: %v", secs)
	}
}

func TestCRUDAndScopes(t *testing.T) { drivers(t, testCRUD) }

func testCRUD(t *testing.T, s *Store) {
	ctx := context.Background()
	a := integ("acme", "a")
	a.Configurations = map[string]any{"aws_region": "us-east-1", "masked_x": "****"}
	secs := []Secret{{Field: "key", Envelope: crypto.Envelope{KeyID: "k1", WrappedKey: []byte{1, 2}, Ciphertext: []byte{3, 4}}}}
	if err := s.Create(ctx, a, secs, CreateOptions{MaxPerProvider: 50}); err != nil {
		t.Fatal(err)
	}
	w := integ("acme", "w")
	w.WorkspaceID = "ws-1"
	if err := s.Create(ctx, w, nil, CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	dup := integ("acme", "a2")
	dup.Name = "a"
	if err := s.Create(ctx, dup, nil, CreateOptions{}); !errors.Is(err, ErrConflict) {
		t.Fatalf("duplicate name: %v", err)
	}
	auto := integ("acme", "a")
	auto.Name = "a-other"
	if err := s.Create(ctx, auto, nil, CreateOptions{AutoSlug: true}); err != nil || auto.Slug != "a-2" {
		t.Fatalf("auto slug = %q, %v", auto.Slug, err)
	}
	got, err := s.Get(ctx, Scope{Org: "acme"}, a.ID)
	if err != nil || got.Slug != "a" || got.Configurations["aws_region"] != "us-east-1" {
		t.Fatalf("get: %+v %v", got, err)
	}
	if _, err := s.Get(ctx, Scope{Org: "acme", Workspace: "ws-2"}, "w"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("other workspace sees ws-1 integration: %v", err)
	}
	if _, err := s.Get(ctx, Scope{Org: "globex"}, "a"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("other org: %v", err)
	}
	items, total, err := s.List(ctx, Scope{Org: "acme"}, ListFilter{Limit: 2})
	if err != nil || total != 3 || len(items) != 2 {
		t.Fatalf("list: %d %d %v", total, len(items), err)
	}
	up, err := s.Update(ctx, Scope{Org: "acme"}, "a", func(it *Integration) (Change, error) {
		it.Description = "d"
		return Change{DeletePrefix: []string{"key"}, Put: []Secret{{Field: "configurations.p", Envelope: crypto.Envelope{KeyID: "k1", WrappedKey: []byte{5}, Ciphertext: []byte{6}}}}}, nil
	})
	if err != nil || up.Description != "d" {
		t.Fatalf("update: %v", err)
	}
	ss, _ := s.Secrets(ctx, a.ID)
	if len(ss) != 1 || ss[0].Field != "configurations.p" {
		t.Fatalf("secrets after update: %+v", ss)
	}
	if err := s.PutModels(ctx, a.ID, nil, []Model{{Slug: "m1", Enabled: true}}, nil, time.Now()); err != nil {
		t.Fatal(err)
	}
	ms, n, err := s.Models(ctx, a.ID, 0, 10)
	if err != nil || n != 1 || !ms[0].Enabled {
		t.Fatalf("models: %+v %v", ms, err)
	}
	if err := s.PutWorkspaces(ctx, a.ID, "", map[string]any{"enabled": true}, false, []Workspace{{ID: "ws-1", Enabled: true, RateLimits: []any{"x"}}}, time.Now()); err != nil {
		t.Fatal(err)
	}
	if c, _ := s.WorkspaceCount(ctx, a.ID); c != 1 {
		t.Fatalf("workspace count %d", c)
	}
	rewrapped, err := s.RewrapAll(ctx, "k2", func(org, id string, sec Secret) (crypto.Envelope, error) {
		return crypto.Envelope{KeyID: "k2", WrappedKey: []byte{9}, Ciphertext: sec.Envelope.Ciphertext}, nil
	})
	if err != nil || rewrapped != 1 {
		t.Fatalf("rewrap: %d %v", rewrapped, err)
	}
	if err := s.CreateServiceKey(ctx, ServiceKey{ID: "sk1", Org: "acme", Name: "n", Prefix: "p", CreatedAt: time.Now()}, []byte{1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	if k, err := s.ServiceKeyByHash(ctx, []byte{1, 2, 3}); err != nil || k.Org != "acme" {
		t.Fatalf("service key: %+v %v", k, err)
	}
}

func TestBoundOverrideKeepsOtherWorkspacesGrants(t *testing.T) { drivers(t, testBoundOverride) }

// An override by a caller bound to a workspace is refused while another workspace holds a
// grant, and otherwise removes only the caller's own row; the unbound override still
// replaces everything. WorkspaceIDs lists every grant row, disabled ones included.
func testBoundOverride(t *testing.T, s *Store) {
	ctx := context.Background()
	it := integ("acme", "shared")
	if err := s.Create(ctx, it, nil, CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	put := func(bound string, override bool, ids ...string) error {
		var ws []Workspace
		for _, id := range ids {
			ws = append(ws, Workspace{ID: id, Enabled: id != "ws-3"})
		}
		return s.PutWorkspaces(ctx, it.ID, bound, nil, override, ws, time.Now())
	}
	ids := func() string {
		t.Helper()
		got, total, err := s.WorkspaceIDs(ctx, it.ID, 10)
		if err != nil || total != len(got) {
			t.Fatalf("workspace ids: %v %d %v", got, total, err)
		}
		return strings.Join(got, ",")
	}
	if err := put("", false, "ws-1", "ws-2", "ws-3"); err != nil {
		t.Fatal(err)
	}
	err := put("ws-1", true, "ws-1")
	var fe *FieldError
	if !errors.Is(err, ErrScope) || !errors.As(err, &fe) || fe.Field != "override_existing_workspace_access" {
		t.Fatalf("bound override over other grants: %v, want ErrScope naming the field", err)
	}
	if got := ids(); got != "ws-1,ws-2,ws-3" {
		t.Fatalf("grants after the refused override: %s", got)
	}
	if got, total, _ := s.WorkspaceIDs(ctx, it.ID, 2); len(got) != 2 || total != 3 {
		t.Fatalf("limited ids: %v of %d", got, total)
	}
	if err := put("", true, "ws-1"); err != nil {
		t.Fatal(err)
	}
	if got := ids(); got != "ws-1" {
		t.Fatalf("grants after the unbound override: %s", got)
	}
	if err := put("ws-1", true); err != nil {
		t.Fatalf("bound override of its own grant only: %v", err)
	}
	if got := ids(); got != "" {
		t.Fatalf("grants after ws-1 replaced its own with nothing: %s", got)
	}
}
