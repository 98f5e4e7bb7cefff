package approvals

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/portcullis/portcullis/audit/redact"
	"github.com/portcullis/portcullis/audit/sqldb/sqldbtest"
	"github.com/portcullis/portcullis/policies/principal"
)

// The approval hash is over the redacted arguments, so it depends on the redaction
// key: two replicas with different keys give one request carrying a secret two hashes
// (two approvals, and a retry on the other replica is asked for a new one); with the
// same key they agree. Arguments without a secret hash alike either way.
func TestApprovalHashOfASecretDependsOnTheRedactionKey(t *testing.T) {
	caller := principal.Caller{Sub: "op-1", Org: "acme"}
	hash := func(key string, args map[string]any) string {
		t.Helper()
		raw, err := json.Marshal(redact.New([]byte(key)).Value(args))
		if err != nil {
			t.Fatal(err)
		}
		h, err := CanonicalHash(caller, "update_integration", "rest PUT /v1/integrations/prod integrations query:", raw, "rev-1")
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	keyA, keyB := "replica-a-key-0123456789abcdef", "replica-b-key-0123456789abcdef"
	secret := map[string]any{"name": "prod", "ai_provider_id": "openai", "key": "sk-new-0123456789abcdefghij"}
	plain := map[string]any{"name": "prod", "ai_provider_id": "openai"}
	if hash(keyA, secret) == hash(keyB, secret) {
		t.Fatal("a call carrying a secret hashes alike under two redaction keys; the finding assumed it does not")
	}
	// Two redactors built from one key (two replicas sharing it) agree.
	if first, second := hash(keyA, secret), hash(keyA, secret); first != second {
		t.Fatal("one key, one request: two hashes")
	}
	if hash(keyA, plain) != hash(keyB, plain) {
		t.Fatal("a call without a secret depends on the redaction key")
	}
}

// Replicas sharing approvals on PostgreSQL must redact alike: the first to start
// records its redaction key id, one with another key id refuses to start (naming both
// ids and how to fix it), one with the same id starts, and after the row is cleared (a
// rotation, every replica stopped) the next key is recorded.
func TestReplicasWithAnotherRedactionKeyRefuseToStart(t *testing.T) {
	ctx := context.Background()
	url := sqldbtest.PostgresURL(t)
	open := func(id string) (*Service, error) {
		return Open(ctx, Config{DatabaseURL: url, RedactionKeyID: id}, nil)
	}
	const idA, idB = "0123456789abcdef", "fedcba9876543210"
	// Replicas starting together with one key all start.
	var wg sync.WaitGroup
	errs := make([]error, 4)
	svcs := make([]*Service, 4)
	for i := range svcs {
		wg.Add(1)
		go func() { defer wg.Done(); svcs[i], errs[i] = open(idA) }()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("replica %d with the shared key: %v", i, err)
		}
		defer svcs[i].Close()
	}
	_, err := open(idB)
	var mismatch *FleetKeyMismatchError
	if !errors.As(err, &mismatch) || mismatch.ID != idB || mismatch.Have != idA {
		t.Fatalf("a replica with another key: %v, want a FleetKeyMismatchError %s vs %s", err, idB, idA)
	}
	for _, want := range []string{"audit HMAC key differs", idA, idB, "PORTCULLIS_AUDIT_HMAC_KEY", "audit-hmac.key"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the refusal %q does not say %q", err, want)
		}
	}
	// The replicas already running carry on.
	mustRequest(t, svcs[0], request(t, principal.Caller{Sub: "agent-7", Org: "acme"}, `{"a":1}`))
	// A service that names no key (a tool, not a replica) is not checked.
	s, err := Open(ctx, Config{DatabaseURL: url}, nil)
	if err != nil {
		t.Fatalf("no key id: %v", err)
	}
	s.Close()

	// A rotation: every replica stopped, the row cleared, the new key is recorded.
	for _, s := range svcs {
		s.Close()
	}
	db, err := sql.Open("pgx", url)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`DELETE FROM approvals_fleet_keys WHERE name = 'audit_hmac'`); err != nil {
		t.Fatal(err)
	}
	sB, err := open(idB)
	if err != nil {
		t.Fatalf("the new key after the row was cleared: %v", err)
	}
	sB.Close()
	if _, err := open(idA); !errors.As(err, &mismatch) {
		t.Fatalf("the old key after the rotation: %v", err)
	}
}

// On SQLite (one node) there is no fleet to agree with: the key id is not checked.
func TestRedactionKeyIDOnSQLiteIsNotChecked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "approvals.db")
	for _, id := range []string{"0123456789abcdef", "fedcba9876543210"} {
		s, err := Open(context.Background(), Config{DBPath: path, RedactionKeyID: id}, nil)
		if err != nil {
			t.Fatalf("%s: %v", id, err)
		}
		s.Close()
	}
}

// syncBuffer is a log sink read while the service writes to it.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// Finding: the fleet key id was checked only at start, so with A running, the row
// cleared and C started with another key, A kept releasing calls under hashes C would
// not compute. Now a running replica re-checks: once the recorded id is another, it
// logs an ERROR naming both ids, reports it (FleetKeyMismatch, the metric) and refuses
// to create or consume approvals (ErrFleetKeyMismatch) until the ids agree again; with
// the row gone, it records its own id again.
func TestRunningReplicaRefusesApprovalsWhileTheFleetKeyIDIsAnother(t *testing.T) {
	ctx := context.Background()
	url := sqldbtest.PostgresURL(t)
	const idA, idC, interval = "0123456789abcdef", "fedcba9876543210", 50 * time.Millisecond
	logs := &syncBuffer{}
	a, err := Open(ctx, Config{DatabaseURL: url, RedactionKeyID: idA, FleetKeyInterval: interval},
		slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	db, err := sql.Open("pgx", url)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	agent, approver := principal.Caller{Sub: "agent-7", Org: "acme"}, principal.Caller{Sub: "sam", Org: "acme", Roles: []string{DefaultApproverRole}}
	approved := mustRequest(t, a, request(t, agent, `{"a":1}`))
	if _, err := a.Approve(ctx, approved.ID, approver, ""); err != nil {
		t.Fatal(err)
	}
	gauge := func() float64 {
		t.Helper()
		reg := prometheus.NewRegistry()
		reg.MustRegister(a.Collectors()...)
		mfs, err := reg.Gather()
		if err != nil || len(mfs) != 1 {
			t.Fatalf("gathering the service's metrics: %v %v", mfs, err)
		}
		return mfs[0].GetMetric()[0].GetGauge().GetValue()
	}
	within := func(what string, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(40 * interval); !ok(); time.Sleep(interval / 5) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within %s", what, 40*interval)
			}
		}
	}
	if gauge() != 0 || a.FleetKeyMismatch() != nil {
		t.Fatal("a mismatch reported with one key in the fleet")
	}

	// The row cleared, C starts with another key and records it; A notices.
	if _, err := db.Exec(`DELETE FROM approvals_fleet_keys WHERE name = 'audit_hmac'`); err != nil {
		t.Fatal(err)
	}
	c, err := Open(ctx, Config{DatabaseURL: url, RedactionKeyID: idC, FleetKeyInterval: time.Hour}, nil)
	if err != nil {
		t.Fatalf("C with another key after the row was cleared: %v", err)
	}
	within("A refuses to file approvals", func() bool {
		_, _, err := a.Request(ctx, request(t, agent, `{"a":2}`))
		return errors.Is(err, ErrFleetKeyMismatch)
	})
	if _, ok, err := a.Consume(ctx, approved.Hash); !errors.Is(err, ErrFleetKeyMismatch) || ok {
		t.Fatalf("A consumed an approval under a key the fleet no longer uses: %v %v", ok, err)
	}
	if mm := a.FleetKeyMismatch(); mm == nil || mm.ID != idA || mm.Have != idC {
		t.Errorf("FleetKeyMismatch: %+v, want %s vs %s", mm, idA, idC)
	}
	if gauge() != 1 {
		t.Error("the metric does not report the mismatch")
	}
	if l := logs.String(); !strings.Contains(l, "level=ERROR") || !strings.Contains(l, idA) || !strings.Contains(l, idC) {
		t.Errorf("no ERROR naming both key ids: %s", l)
	}
	c.Close()

	// The row restored to the fleet's (A's) key: A serves again, and the approval it
	// kept is still there to use.
	if _, err := db.Exec(`UPDATE approvals_fleet_keys SET key_id = $1 WHERE name = 'audit_hmac'`, idA); err != nil {
		t.Fatal(err)
	}
	within("A serves again", func() bool { return a.FleetKeyMismatch() == nil })
	if got, ok, err := a.Consume(ctx, approved.Hash); err != nil || !ok || got.ID != approved.ID {
		t.Fatalf("the approved call after the ids agree again: %+v %v %v", got, ok, err)
	}
	mustRequest(t, a, request(t, agent, `{"a":3}`))
	if gauge() != 0 {
		t.Error("the metric still reports a mismatch")
	}

	// The row cleared with no other replica starting: A records its own id again, so a
	// replica with another key is refused at start.
	if _, err := db.Exec(`DELETE FROM approvals_fleet_keys WHERE name = 'audit_hmac'`); err != nil {
		t.Fatal(err)
	}
	within("A records its id again", func() bool {
		var have string
		return db.QueryRow(`SELECT key_id FROM approvals_fleet_keys WHERE name = 'audit_hmac'`).Scan(&have) == nil && have == idA
	})
	var mismatch *FleetKeyMismatchError
	if _, err := Open(ctx, Config{DatabaseURL: url, RedactionKeyID: idC}, nil); !errors.As(err, &mismatch) {
		t.Fatalf("another key after A recorded its own again: %v", err)
	}
	if mm := a.FleetKeyMismatch(); mm != nil {
		t.Errorf("A reports a mismatch after recording its own id: %+v", mm)
	}
}
