package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/audit/sqldb/sqldbtest"
)

// startReplica runs serve on dataDir (its own audit trail and bundled backend) and
// returns its URL once it answers.
func startReplica(t *testing.T, dataDir string) string {
	t.Helper()
	url, _ := startServeIn(t, overrides{dataDir: dataDir}, func(cfg *Config) {
		cfg.Approval.PollInterval = time.Minute // only the notification can release a call quickly
	})
	return url
}

// startReplicaPair runs two replicas with their own data dirs that trust the same (dev)
// token key, as a fleet shares its JWKS; tokens minted with dirA's key work on both.
func startReplicaPair(t *testing.T) (urlA, urlB, dirA string) {
	t.Helper()
	dirA, dirB := filepath.Join(t.TempDir(), "a"), filepath.Join(t.TempDir(), "b")
	urlA = startReplica(t, dirA)
	key, err := os.ReadFile(filepath.Join(dirA, "dev-signing-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dirB, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dirB, "dev-signing-key.pem"), key, 0o600); err != nil {
		t.Fatal(err)
	}
	return urlA, startReplica(t, dirB), dirA
}

// Two replicas over one PostgreSQL (approvals.database_url, here from its environment
// variable): a delete held on replica A is listed and approved through replica B, and
// A forwards it at once.
func TestApprovalThroughOneReplicaReleasesTheCallHeldOnAnother(t *testing.T) {
	t.Setenv("PORTCULLIS_APPROVALS_DATABASE_URL", sqldbtest.PostgresURL(t))
	urlA, urlB, dirA := startReplicaPair(t)

	agent := mintToken(t, dirA, "--sub", "agent-1", "--org", "acme", "--roles", "agent")
	op := mintToken(t, dirA, "--sub", "olga", "--org", "acme", "--roles", "operator")
	sec := mintToken(t, dirA, "--sub", "sam", "--org", "acme", "--roles", "security,approver")
	if resp, body := postJSON(t, urlA+"/v1/integrations", agent, `{"name":"doomed","ai_provider_id":"openai","key":"sk-doomed-0123456789"}`); resp.StatusCode != 200 {
		t.Fatalf("create on A: %d %s", resp.StatusCode, body)
	}
	type result struct {
		status int
		body   string
	}
	held := make(chan result, 1)
	go func() {
		req, _ := http.NewRequest("DELETE", urlA+"/v1/integrations/doomed", nil)
		req.Header.Set("Authorization", "Bearer "+op)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			held <- result{0, err.Error()}
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		held <- result{resp.StatusCode, string(b)}
	}()

	var id string
	for i := 0; i < 100 && id == ""; i++ {
		var list struct {
			Approvals []struct {
				ID   string `json:"id"`
				Tool string `json:"tool"`
			} `json:"data"`
		}
		if err := json.Unmarshal([]byte(restGet(t, urlB+"/admin/v1/approvals?status=pending", sec)), &list); err != nil {
			t.Fatal(err)
		}
		for _, a := range list.Approvals {
			if a.Tool == "delete_integration" {
				id = a.ID
			}
		}
		time.Sleep(30 * time.Millisecond)
	}
	if id == "" {
		t.Fatal("the call held on A is not listed through B")
	}
	var out, errb bytes.Buffer
	start := time.Now()
	if code := runApprovals(context.Background(), []string{"approve", id, "--url", urlB, "--token", sec, "--comment", "ok"}, &out, &errb); code != 0 {
		t.Fatalf("approve through B: %d %s", code, errb.String())
	}
	select {
	case r := <-held:
		if r.status != 200 || !strings.Contains(r.body, `"deleted":true`) {
			t.Fatalf("held delete on A: %d %s", r.status, r.body)
		}
		t.Logf("released on A %v after the approval on B", time.Since(start))
	case <-time.After(10 * time.Second):
		t.Fatal("the approval made through B did not release the call held on A")
	}
}

// Two replicas over one Redis (rate_limit.redis_url) enforce one limit: the example
// policy's 10 creates a minute hold across both, whichever replica each call reaches.
func TestRateLimitHoldsAcrossReplicas(t *testing.T) {
	addr := os.Getenv("PORTCULLIS_TEST_REDIS")
	if addr == "" {
		t.Skip("PORTCULLIS_TEST_REDIS is unset (host:port of a Redis server); .ci/run sets it")
	}
	t.Setenv("PORTCULLIS_REDIS_URL", "redis://"+addr+"/0")
	urlA, urlB, dirA := startReplicaPair(t)
	// A subject of this run's own: Redis is shared with other tests.
	sub := "agent-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	agent := mintToken(t, dirA, "--sub", sub, "--org", "acme", "--roles", "agent")
	counts := map[int]int{}
	for i := 0; i < 14; i++ {
		url := urlA
		if i%2 == 1 {
			url = urlB
		}
		resp, body := postJSON(t, url+"/v1/integrations", agent,
			`{"name":"limited `+strconv.Itoa(i)+`","ai_provider_id":"openai","key":"sk-limit-0123456789abcdef"}`)
		counts[resp.StatusCode]++
		if resp.StatusCode != 200 && resp.StatusCode != 429 {
			t.Fatalf("create %d: %d %s", i, resp.StatusCode, body)
		}
	}
	if counts[200] != 10 || counts[429] != 4 {
		t.Fatalf("across two replicas: %d allowed, %d limited; want 10 and 4", counts[200], counts[429])
	}
}
