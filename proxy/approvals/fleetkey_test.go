package approvals

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"

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
