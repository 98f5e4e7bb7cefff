package approvals

import (
	"encoding/json"
	"testing"

	"github.com/portcullis/portcullis/audit/redact"
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
	if hash(keyA, secret) != hash(keyA, secret) {
		t.Fatal("one key, one request: two hashes")
	}
	if hash(keyA, plain) != hash(keyB, plain) {
		t.Fatal("a call without a secret depends on the redaction key")
	}
}
