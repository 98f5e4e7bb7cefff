package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/portcullis/portcullis/audit"
	"github.com/portcullis/portcullis/audit/sqldb/sqldbtest"
)

// TestTwoServeProcessesActAsOne runs the deployment the replica docs describe, as real
// processes: one integrations backend, and two `portcullis serve` processes in front of
// it on different ports over one PostgreSQL (approvals, central audit trail) and one
// Redis (limits), reached round robin. A limit, an approval and a retry each land on
// different replicas; replica A is killed under load and restarted; then the central
// trail verifies, and a row tampered with in PostgreSQL is named by log and seq.
func TestTwoServeProcessesActAsOne(t *testing.T) {
	redisAddr := os.Getenv("PORTCULLIS_TEST_REDIS")
	if redisAddr == "" {
		t.Skip("PORTCULLIS_TEST_REDIS is unset (host:port of a Redis server); .ci/run sets it")
	}
	pg := sqldbtest.PostgresURL(t)
	root := t.TempDir()
	backendDir, dirA, dirB := filepath.Join(root, "backend"), filepath.Join(root, "a"), filepath.Join(root, "b")

	// What a fleet shares: the secret the replicas sign identity assertions to the
	// backend with, the key its tokens are verified against (here the dev key), and the
	// redaction key (replicas sharing approvals refuse to start under different ones).
	backendURL := startFleetBackend(t, backendDir, dirA, dirB)
	hmacKey := make([]byte, 32)
	if _, err := rand.Read(hmacKey); err != nil {
		t.Fatal(err)
	}
	fleetEnv := []string{audit.HMACKeyEnv + "=" + base64.StdEncoding.EncodeToString(hmacKey)}

	cfgPath := filepath.Join(root, "portcullis.yaml")
	cfg := fmt.Sprintf(`policy:
  timeout: 2s
approvals:
  database_url: %q
  wait_budget: 5s
  poll_interval: 1m   # only the notification releases a held call quickly
audit:
  central_url: %q
  central_interval: 50ms
rate_limit:
  redis_url: "redis://%s/0"
`, pg, pg, redisAddr)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	startReplicaProcess := func(name, dir, addr string) *process {
		p := startProcess(t, name, fleetEnv, "serve", "--config", cfgPath, "--data-dir", dir, "--listen", addr,
			"--mcp-upstream", backendURL+"/mcp", "--rest-upstream", backendURL)
		p.waitUp(t, "http://"+addr+"/healthz")
		return p
	}
	addrA, addrB := freeAddr(t), freeAddr(t)
	urlA, urlB := "http://"+addrA, "http://"+addrB
	procA := startReplicaProcess("replica A", dirA, addrA)
	startReplicaProcess("replica B", dirB, addrB)
	replicas := [2]string{urlA, urlB}

	run := strconv.FormatInt(time.Now().UnixNano(), 36) // Redis is shared with other tests
	agent := mintToken(t, dirA, "--sub", "agent-"+run, "--org", "acme", "--roles", "agent")
	op := mintToken(t, dirA, "--sub", "olga-"+run, "--org", "acme", "--roles", "operator")
	sec := mintToken(t, dirA, "--sub", "sam-"+run, "--org", "acme", "--roles", "security,approver")

	// A limit: the example policy's 10 creates a minute, round robin over both.
	counts := map[int]int{}
	for i := 0; i < 14; i++ {
		resp, body := postJSON(t, replicas[i%2]+"/v1/integrations", agent,
			fmt.Sprintf(`{"name":"limited-%d","ai_provider_id":"openai","key":"sk-limit-0123456789abcdef"}`, i))
		counts[resp.StatusCode]++
		if resp.StatusCode != 200 && resp.StatusCode != 429 {
			t.Fatalf("create %d on replica %d: %d %s", i, i%2, resp.StatusCode, body)
		}
	}
	if counts[200] != 10 || counts[429] != 4 {
		t.Fatalf("10/min across two replicas: %d allowed, %d limited; want 10 and 4", counts[200], counts[429])
	}

	// An approval: a delete held on A is approved through B and A forwards it.
	pending := func(through string) string {
		t.Helper()
		for i := 0; i < 200; i++ {
			var list struct {
				Data []struct {
					ID   string `json:"id"`
					Tool string `json:"tool"`
				} `json:"data"`
			}
			if err := json.Unmarshal([]byte(restGet(t, through+"/admin/v1/approvals?status=pending", sec)), &list); err != nil {
				t.Fatal(err)
			}
			for _, a := range list.Data {
				if a.Tool == "delete_integration" {
					return a.ID
				}
			}
			time.Sleep(25 * time.Millisecond)
		}
		t.Fatalf("no pending delete is listed through %s", through)
		return ""
	}
	del := func(url, slug string) (int, string) {
		req, _ := http.NewRequest("DELETE", url+"/v1/integrations/"+slug, nil)
		req.Header.Set("Authorization", "Bearer "+op)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	approve := func(through, id string) {
		t.Helper()
		var out, errb bytes.Buffer
		if code := runApprovals(context.Background(), []string{"approve", id, "--url", through, "--token", sec, "--comment", "ok"}, &out, &errb); code != 0 {
			t.Fatalf("approve %s through %s: %d %s", id, through, code, errb.String())
		}
	}
	type result struct {
		status int
		body   string
	}
	held := make(chan result, 1)
	go func() { s, b := del(urlA, "limited-0"); held <- result{s, b} }()
	approve(urlB, pending(urlB))
	if r := <-held; r.status != 200 || !strings.Contains(r.body, `"deleted":true`) {
		t.Fatalf("delete held on A, approved through B: %d %s", r.status, r.body)
	}

	// A retry: A's wait budget runs out (202); once approved, the same call retried
	// through B is forwarded, and retried again on either replica it is not.
	status, body := del(urlA, "limited-2")
	if status != 202 || !strings.Contains(body, `"approval_id"`) {
		t.Fatalf("delete on A past its wait budget: %d %s; want 202 with the approval id", status, body)
	}
	var accepted struct {
		ApprovalID string `json:"approval_id"`
	}
	if err := json.Unmarshal([]byte(body), &accepted); err != nil {
		t.Fatal(err)
	}
	approve(urlA, accepted.ApprovalID)
	if status, body := del(urlB, "limited-2"); status != 200 || !strings.Contains(body, `"deleted":true`) {
		t.Fatalf("retry through B after approval: %d %s", status, body)
	}
	again := make(chan result, 2)
	for _, u := range replicas {
		go func(u string) { s, b := del(u, "limited-2"); again <- result{s, b} }(u)
	}
	for range replicas {
		if r := <-again; r.status != 202 {
			t.Fatalf("a retry after the approval was spent: %d %s; want 202 (a new approval), not a second forward", r.status, r.body)
		}
	}

	// Replica A is killed under load (SIGKILL, mid-request) and restarted on its data
	// dir; every call either replica acknowledged has its decision row centrally.
	type ack struct{ replica, requestID string }
	acks := make(chan ack, 1<<16)
	var killed atomic.Bool
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			client := &http.Client{Timeout: 5 * time.Second}
			for i := g; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				req, _ := http.NewRequest("GET", replicas[i%2]+"/v1/integrations", nil)
				req.Header.Set("Authorization", "Bearer "+agent)
				resp, err := client.Do(req)
				if err != nil {
					if i%2 == 1 || !killed.Load() {
						t.Errorf("call on replica %d: %v", i%2, err)
						return
					}
					time.Sleep(5 * time.Millisecond)
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == 200 {
					acks <- ack{"AB"[i%2 : i%2+1], resp.Header.Get("X-Request-Id")}
				} else if !killed.Load() {
					t.Errorf("call on replica %d: %d", i%2, resp.StatusCode)
					return
				}
			}
		}(g)
	}
	acked := map[string]string{} // request id -> replica
	for len(acked) < 600 {
		select {
		case a := <-acks:
			acked[a.requestID] = a.replica
		case <-time.After(20 * time.Second):
			t.Fatalf("load stalled at %d acknowledged calls", len(acked))
		}
	}
	killed.Store(true)
	if err := procA.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-procA.done
	time.Sleep(300 * time.Millisecond) // B alone carries the load
	close(stop)
	wg.Wait()
	close(acks)
	for a := range acks {
		acked[a.requestID] = a.replica
	}
	startReplicaProcess("replica A (restarted)", dirA, addrA)

	logIDs := map[string]string{} // replica -> log id
	for name, u := range map[string]string{"A": urlA, "B": urlB} {
		deadline := time.Now().Add(20 * time.Second)
		for {
			code, st := getJSON(t, u+"/readyz", "")
			c, _ := st["audit_central"].(map[string]any)
			if code == 200 && c != nil && c["lag_rows"] == float64(0) {
				logIDs[name] = c["log_id"].(string)
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("replica %s did not catch up shipping: %d %v", name, code, st)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	db, err := sql.Open("pgx", pg)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query(`SELECT request_id, log_id FROM audit_central_events WHERE kind = 'decision' AND tool = 'list_integrations'`)
	if err != nil {
		t.Fatal(err)
	}
	central := map[string][]string{} // request id -> log ids of its decision rows
	for rows.Next() {
		var rid, lid string
		if err := rows.Scan(&rid, &lid); err != nil {
			t.Fatal(err)
		}
		central[rid] = append(central[rid], lid)
	}
	rows.Close()
	perReplica := map[string]int{}
	for rid, replica := range acked {
		perReplica[replica]++
		if got := central[rid]; len(got) != 1 || got[0] != logIDs[replica] {
			t.Fatalf("acknowledged call %s on replica %s: central decision rows under logs %v; want exactly one, under %s", rid, replica, got, logIDs[replica])
		}
	}
	if perReplica["A"] < 100 || perReplica["B"] < 100 {
		t.Fatalf("acknowledged calls per replica: %v; the load did not reach both", perReplica)
	}
	var forwards, granted int
	if err := db.QueryRow(`SELECT count(*) FILTER (WHERE kind = 'outcome' AND status = 200),
		count(*) FILTER (WHERE kind = 'decision' AND decision = 'approval_granted' AND approval_id = $1) FROM audit_central_events
		WHERE tool = 'delete_integration' AND path LIKE '%/limited-2'`, accepted.ApprovalID).Scan(&forwards, &granted); err != nil {
		t.Fatal(err)
	}
	if forwards != 1 || granted != 1 {
		t.Fatalf("the approved delete of limited-2: %d forwarded outcomes, %d decision rows spending approval %s in the central trail; want 1 and 1",
			forwards, granted, accepted.ApprovalID)
	}
	t.Logf("acknowledged calls: %v; killed A, restarted, all in the central store", perReplica)

	// The central trail verifies; then a row of A's is changed in PostgreSQL.
	var keys []string
	for _, d := range []string{dirA, dirB} {
		k, err := audit.LoadSigningKey(filepath.Join(d, "audit-signing.key"))
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, base64.StdEncoding.EncodeToString(k.Public().(ed25519.PublicKey)))
	}
	var out string
	for i := 0; ; i++ {
		var code int
		code, out, _ = runAuditCmd(t, "verify", "--central", pg, "--pubkey", strings.Join(keys, ","))
		if code == 0 {
			break
		}
		if i == 100 { // rows can reach PostgreSQL a moment before the checkpoint that signs them
			t.Fatalf("audit verify --central: %d\n%s", code, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, id := range logIDs {
		if !strings.Contains(out, "log "+id+": OK") {
			t.Fatalf("verify does not name log %s:\n%s", id, out)
		}
	}
	for _, q := range []string{`ALTER TABLE audit_central_events DISABLE TRIGGER audit_central_events_append_only`,
		`UPDATE audit_central_events SET status = 204 WHERE log_id = '` + logIDs["A"] + `' AND seq = 40`} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	code, out, _ := runAuditCmd(t, "verify", "--central", pg, "--pubkey", strings.Join(keys, ","))
	if code != 1 || !strings.Contains(out, "log "+logIDs["A"]+": row seq 40: hash does not match") || !strings.Contains(out, "log "+logIDs["B"]+": OK") {
		t.Fatalf("verify after a row of A's was changed: %d\n%s", code, out)
	}
}
