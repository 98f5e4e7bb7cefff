package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/audit"
	"github.com/portcullis/portcullis/audit/sqldb/sqldbtest"
)

// TestReplicasShareTheRedactionKey: an approval hash is over the redacted arguments,
// so replicas sharing approvals must redact with one key. Given the same
// PORTCULLIS_AUDIT_HMAC_KEY, an update carrying a new key held on replica A and approved
// is forwarded when retried, same body, through replica B (and only once). A replica
// that would redact otherwise (its own generated audit-hmac.key, as the recipe before
// this one left it) refuses to start, naming both key ids; a malformed
// PORTCULLIS_AUDIT_HMAC_KEY stops serve naming the variable, never its value.
func TestReplicasShareTheRedactionKey(t *testing.T) {
	pg := sqldbtest.PostgresURL(t)
	root := t.TempDir()
	backendDir := filepath.Join(root, "backend")
	dirA, dirB, dirC, dirD := filepath.Join(root, "a"), filepath.Join(root, "b"), filepath.Join(root, "c"), filepath.Join(root, "d")

	backendURL := startFleetBackend(t, backendDir, dirA, dirB, dirC, dirD)
	hkey := make([]byte, 32)
	if _, err := rand.Read(hkey); err != nil {
		t.Fatal(err)
	}

	// Updates need approval; everything else is allowed.
	policyPath := filepath.Join(root, "policy.rego")
	if err := os.WriteFile(policyPath, []byte(`package portcullis

default decision := {"action": "allow", "reason": "ok"}

decision := {"action": "require_approval", "reason": "updates need security's approval", "approval": {"approvers": ["role:security"], "ttl": "900s"}} if input.tool == "update_integration"
`), 0o600); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(root, "portcullis.yaml")
	if err := os.WriteFile(cfgPath, []byte(fmt.Sprintf(`policy:
  timeout: 2s
approvals:
  database_url: %q
  wait_budget: 1s
`, pg)), 0o600); err != nil {
		t.Fatal(err)
	}
	args := func(dir, addr string) []string {
		return []string{"serve", "--config", cfgPath, "--policy", policyPath, "--data-dir", dir, "--listen", addr,
			"--mcp-upstream", backendURL + "/mcp", "--rest-upstream", backendURL}
	}
	shared := []string{audit.HMACKeyEnv + "=" + base64.StdEncoding.EncodeToString(hkey)}
	addrA, addrB := freeAddr(t), freeAddr(t)
	urlA, urlB := "http://"+addrA, "http://"+addrB
	startProcess(t, "replica A", shared, args(dirA, addrA)...).waitUp(t, urlA+"/healthz")
	startProcess(t, "replica B", shared, args(dirB, addrB)...).waitUp(t, urlB+"/healthz")
	for _, d := range []string{dirA, dirB} {
		if _, err := os.Stat(filepath.Join(d, "audit-hmac.key")); !os.IsNotExist(err) {
			t.Fatalf("%s/audit-hmac.key exists (%v) although %s gives the key", d, err, audit.HMACKeyEnv)
		}
	}

	run := strconv.FormatInt(time.Now().UnixNano(), 36)
	op := mintToken(t, dirA, "--sub", "olga-"+run, "--org", "acme", "--roles", "operator")
	sec := mintToken(t, dirA, "--sub", "sam-"+run, "--org", "acme", "--roles", "security,approver")
	name := "prod-" + run
	if resp, body := postJSON(t, urlA+"/v1/integrations", op,
		fmt.Sprintf(`{"name":%q,"ai_provider_id":"openai","key":"sk-old-0123456789abcdefghij"}`, name)); resp.StatusCode != 200 {
		t.Fatalf("create: %d %s", resp.StatusCode, body)
	}

	// The update carries a new key: held on A past its wait budget (202), approved.
	const newKey = "sk-new-0123456789abcdefghij"
	update := fmt.Sprintf(`{"name":%q,"key":%q}`, name, newKey)
	resp, body := doJSON(t, "PUT", urlA+"/v1/integrations/"+name, op, update)
	if resp.StatusCode != 202 || !strings.Contains(string(body), `"approval_id"`) {
		t.Fatalf("update on A past its wait budget: %d %s; want 202 with the approval id", resp.StatusCode, body)
	}
	var accepted struct {
		ApprovalID string `json:"approval_id"`
	}
	if err := json.Unmarshal(body, &accepted); err != nil {
		t.Fatal(err)
	}
	held := restGet(t, urlB+"/admin/v1/approvals/"+accepted.ApprovalID, sec)
	if strings.Contains(held, newKey) || !strings.Contains(held, "hmac-sha256:") {
		t.Fatalf("the held update's arguments are not redacted: %s", held)
	}
	var out, errb bytes.Buffer
	if code := runApprovals(context.Background(), []string{"approve", accepted.ApprovalID, "--url", urlA, "--token", sec, "--comment", "ok"}, &out, &errb); code != 0 {
		t.Fatalf("approve: %d %s", code, errb.String())
	}
	// The same body retried through B has the same hash there: it is forwarded.
	if resp, body := doJSON(t, "PUT", urlB+"/v1/integrations/"+name, op, update); resp.StatusCode != 200 {
		t.Fatalf("the approved update retried through B: %d %s; want 200 (forwarded under A's approval)", resp.StatusCode, body)
	}
	// Once: retried again through either replica, it asks for a new approval.
	for _, u := range []string{urlA, urlB} {
		if resp, body := doJSON(t, "PUT", u+"/v1/integrations/"+name, op, update); resp.StatusCode != 202 {
			t.Fatalf("the update retried after its approval was spent, through %s: %d %s; want 202", u, resp.StatusCode, body)
		}
	}

	// Replica C has no PORTCULLIS_AUDIT_HMAC_KEY: it generates its own key, and refuses
	// to start against the fleet's approvals.
	c := startProcess(t, "replica C", []string{audit.HMACKeyEnv + "="}, args(dirC, freeAddr(t))...)
	cOut := waitExit(t, c)
	wantID, err := os.ReadFile(filepath.Join(dirC, "audit-hmac.key"))
	if err != nil {
		t.Fatalf("replica C generated no key file: %v", err)
	}
	ownKey, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(wantID)))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"audit HMAC key differs from the one the other replicas use",
		audit.HMACKeyID(ownKey) + " vs " + audit.HMACKeyID(hkey), audit.HMACKeyEnv} {
		if !strings.Contains(cOut, want) {
			t.Errorf("replica C's refusal does not say %q:\n%s", want, tail(cOut, 2048))
		}
	}

	// Replica D's PORTCULLIS_AUDIT_HMAC_KEY is malformed: serve stops naming it.
	const bad = "c2hvcnQta2V5" // base64 of 9 bytes
	d := startProcess(t, "replica D", []string{audit.HMACKeyEnv + "=" + bad}, args(dirD, freeAddr(t))...)
	dOut := waitExit(t, d)
	if !strings.Contains(dOut, audit.HMACKeyEnv) || strings.Contains(dOut, bad) {
		t.Fatalf("replica D with a malformed key: want an error naming %s without its value:\n%s", audit.HMACKeyEnv, tail(dOut, 2048))
	}
	for _, o := range []string{cOut, dOut} {
		if strings.Contains(o, base64.StdEncoding.EncodeToString(hkey)) {
			t.Fatal("a refusal holds the fleet's key")
		}
	}
}

// waitExit waits up to 20 s for p to exit by itself, fails the test if it does not or
// exits 0, and returns its output.
func waitExit(t *testing.T, p *process) string {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		t.Fatalf("%s still runs; want it to refuse to start:\n%s", p.name, tail(p.out.String(), 4096))
	}
	if p.cmd.ProcessState.Success() {
		t.Fatalf("%s exited 0; want a refusal:\n%s", p.name, tail(p.out.String(), 4096))
	}
	return p.out.String()
}
