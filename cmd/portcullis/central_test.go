package main

import (
	"context"
	"crypto/ed25519"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/audit"
	"github.com/portcullis/portcullis/audit/sqldb/sqldbtest"
)

// testCentralURL is a fresh PostgreSQL schema per test; it skips the test when
// PORTCULLIS_TEST_POSTGRES is unset.
func testCentralURL(t *testing.T) string { return sqldbtest.PostgresURL(t) }

func getJSON(t *testing.T, u, token string) (int, map[string]any) {
	t.Helper()
	resp, b := doJSON(t, "GET", u, token, "")
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	return resp.StatusCode, m
}

// Two serve replicas (two data dirs, two log ids, two signing keys) ship to one
// PostgreSQL: each replica's /readyz reports its shipping, the admin audit API of
// either replica reads both logs, `audit verify --central` passes, and a row edited
// in PostgreSQL is named by log id and seq.
func TestTwoServeReplicasShipOneCentralTrailThatVerifies(t *testing.T) {
	cu := testCentralURL(t)
	cfgPath := filepath.Join(t.TempDir(), "portcullis.yaml")
	if err := os.WriteFile(cfgPath, []byte("audit:\n  central_url: "+cu+"\n  central_interval: 50ms\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	type replica struct {
		url, dir, agent, auditor, logID string
		pub                             ed25519.PublicKey
	}
	var reps [2]*replica
	for i := range reps {
		u, dir, _ := startServeWith(t, overrides{configPath: cfgPath})
		r := &replica{url: u, dir: dir,
			agent:   mintToken(t, dir, "--sub", fmt.Sprintf("agent-%d", i), "--org", "acme", "--roles", "agent"),
			auditor: mintToken(t, dir, "--sub", "aud", "--org", "acme", "--roles", "auditor")}
		key, err := audit.LoadSigningKey(filepath.Join(dir, "audit-signing.key"))
		if err != nil {
			t.Fatal(err)
		}
		r.pub = key.Public().(ed25519.PublicKey)
		reps[i] = r
	}
	// Round robin: 20 calls, 10 on each replica.
	for i := 0; i < 20; i++ {
		r := reps[i%2]
		if code, _ := getJSON(t, r.url+"/v1/integrations", r.agent); code >= 500 {
			t.Fatalf("call %d on replica %d: %d", i, i%2, code)
		}
	}
	for i, r := range reps {
		deadline := time.Now().Add(10 * time.Second)
		for {
			code, body := getJSON(t, r.url+"/readyz", "")
			st, _ := body["audit_central"].(map[string]any)
			if code == 200 && st != nil && st["lag_rows"] == float64(0) && st["shipped_seq"].(float64) >= 10 {
				r.logID = st["log_id"].(string)
				if body["status"] != "ready" {
					t.Fatalf("replica %d caught up but /readyz says %v", i, body)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("replica %d did not ship its rows: /readyz %d %v", i, code, body)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	if reps[0].logID == reps[1].logID || len(reps[0].logID) != 32 {
		t.Fatalf("log ids %q and %q: want two distinct ids", reps[0].logID, reps[1].logID)
	}

	// The admin API of replica 0 reads the central store: replica 1's rows are there.
	code, body := getJSON(t, reps[0].url+"/admin/v1/audit?limit=1000&tool=list_integrations", reps[0].auditor)
	if code != 200 {
		t.Fatalf("admin audit: %d %v", code, body)
	}
	perLog := map[string]int{}
	for _, e := range body["data"].([]any) {
		ev := e.(map[string]any)
		if ev["kind"] == "decision" {
			perLog[ev["log_id"].(string)]++
		}
	}
	if perLog[reps[0].logID] != 10 || perLog[reps[1].logID] != 10 {
		t.Fatalf("decision rows per log through replica 0's admin API: %v; want 10 of each replica", perLog)
	}

	keys := base64.StdEncoding.EncodeToString(reps[0].pub) + "," + base64.StdEncoding.EncodeToString(reps[1].pub)
	// Rows can reach PostgreSQL a moment before the checkpoint that signs them.
	var out string
	for i := 0; ; i++ {
		var c int
		c, out, _ = runAuditCmd(t, "verify", "--central", cu, "--pubkey", keys)
		if c == 0 {
			break
		}
		if i == 50 {
			t.Fatalf("audit verify --central: %d\n%s", c, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, r := range reps {
		if !strings.Contains(out, "log "+r.logID+": OK") {
			t.Fatalf("verify output does not name log %s:\n%s", r.logID, out)
		}
	}
	c, exported, errOut := runAuditCmd(t, "export", "--central", cu, "--tool", "list_integrations")
	if c != 0 {
		t.Fatalf("export --central: %d %s", c, errOut)
	}
	exportedPerLog := map[string]int{}
	for _, line := range strings.Split(strings.TrimSpace(exported), "\n") {
		var ev audit.Event
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("export line %q: %v", line, err)
		}
		if ev.Kind == audit.KindDecision {
			exportedPerLog[ev.LogID]++
		}
	}
	if exportedPerLog[reps[0].logID] != 10 || exportedPerLog[reps[1].logID] != 10 {
		t.Fatalf("export --central: decision rows per log %v; want 10 of each replica", exportedPerLog)
	}

	// Tamper with replica 1's row 3 in PostgreSQL.
	db, err := sql.Open("pgx", cu)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, q := range []string{`ALTER TABLE audit_central_events DISABLE TRIGGER audit_central_events_append_only`,
		`UPDATE audit_central_events SET caller_sub = 'someone-else' WHERE log_id = '` + reps[1].logID + `' AND seq = 3`} {
		if _, err := db.ExecContext(context.Background(), q); err != nil {
			t.Fatal(err)
		}
	}
	c, out, _ = runAuditCmd(t, "verify", "--central", cu, "--pubkey", keys)
	if c != 1 || !strings.Contains(out, "log "+reps[1].logID+": row seq 3: hash does not match") {
		t.Fatalf("tampered central verify: %d\n%s", c, out)
	}
	if !strings.Contains(out, "warning: log "+reps[1].logID+": the central tables' append-only triggers are missing, disabled or not ENABLE ALWAYS") {
		t.Fatalf("disabled trigger not reported:\n%s", out)
	}
}

func TestAuditVerifyCentralWitnessCmdCatchesErasedRows(t *testing.T) {
	cu := testCentralURL(t)
	dir := auditFixture(t) // 40 rows, closed (a close checkpoint at 40)
	ctx := context.Background()
	c, err := audit.OpenCentral(ctx, cu)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := audit.NewShipper(ctx, c, audit.ShipperConfig{Path: filepath.Join(dir, "audit.db")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := s.Ship(ctx); err != nil || n != 40 {
		t.Fatalf("ship: %d %v", n, err)
	}
	s.Close(ctx)
	t.Setenv("PORTCULLIS_DATA_DIR", dir)
	if code, out, errOut := runAuditCmd(t, "verify", "--central-witness", cu); code != 0 || !strings.Contains(out, "OK: 40 rows") {
		t.Fatalf("verify --central-witness: %d %q %q", code, out, errOut)
	}
	// The newest rows and their checkpoints are cut off locally.
	db, err := sql.Open("sqlite", filepath.Join(dir, "audit.db"))
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{`DROP TRIGGER audit_events_no_delete`, `DROP TRIGGER audit_checkpoints_no_delete`,
		`DELETE FROM audit_events WHERE seq > 30`, `DELETE FROM audit_checkpoints WHERE seq > 30`,
		`DELETE FROM audit_lookup WHERE seq > 30`, `UPDATE audit_meta SET value = '30' WHERE key = 'lookup_through'`,
		`CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events BEGIN SELECT RAISE(ABORT, 'x'); END`,
		`CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints BEGIN SELECT RAISE(ABORT, 'x'); END`} {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	db.Close()
	if code, out, _ := runAuditCmd(t, "verify"); code != 0 {
		t.Fatalf("the cut should pass a plain verify (that is why the witness exists): %d %s", code, out)
	}
	code, out, _ := runAuditCmd(t, "verify", "--central-witness", cu)
	if code != 1 || !strings.Contains(out, "in the central store: the chain ends at seq 30 (rows removed)") ||
		!strings.Contains(out, "rows seq 31-40 of log") {
		t.Fatalf("verify --central-witness after the cut: %d\n%s", code, out)
	}
	if code, _, errOut := runAuditCmd(t, "verify", "--central", cu, "--witness", "x.log"); code != 2 || !strings.Contains(errOut, "--central verifies the central store") {
		t.Fatalf("--central with --witness: %d %s", code, errOut)
	}
}

// With PostgreSQL unreachable, calls are served (the hot path never waits on it), and
// /readyz answers 200 "degraded" with the lag until the oldest unshipped row is older
// than audit.central_max_lag, then 503 with the lag.
func TestServeWithCentralStoreDownServesCallsAndTurnsUnreadyOnlyPastMaxLag(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	cfgPath := filepath.Join(t.TempDir(), "portcullis.yaml")
	yml := "audit:\n  central_url: postgres://portcullis:hunter2@" + closed + "/audit?connect_timeout=1&sslmode=disable\n" +
		"  central_interval: 50ms\n  central_max_lag: 2s\n"
	if err := os.WriteFile(cfgPath, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	u, dir, logs := startServeWith(t, overrides{configPath: cfgPath})
	agent := mintToken(t, dir, "--sub", "agent-1", "--org", "acme", "--roles", "agent")
	start := time.Now()
	for i := 0; i < 5; i++ {
		if code, body := getJSON(t, u+"/v1/integrations", agent); code != 200 {
			t.Fatalf("call %d with the central store down: %d %v", i, code, body)
		}
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Fatalf("5 calls took %s with the central store down: the hot path waits on it", el)
	}
	var body map[string]any
	var code int
	for i := 0; i < 40; i++ {
		code, body = getJSON(t, u+"/readyz", "")
		if st, _ := body["audit_central"].(map[string]any); st != nil && st["last_error"] != nil && st["lag_rows"].(float64) >= 5 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	st, _ := body["audit_central"].(map[string]any)
	if code != 200 || body["status"] != "degraded" || st == nil || st["lag_rows"].(float64) < 5 {
		t.Fatalf("/readyz within the lag bound: %d %v", code, body)
	}
	for time.Since(start) < 2500*time.Millisecond {
		time.Sleep(100 * time.Millisecond)
	}
	code, body = getJSON(t, u+"/readyz", "")
	if st, _ := body["audit_central"].(map[string]any); code != 503 || body["status"] != "unavailable" || st == nil || st["lag_seconds"].(float64) < 2 {
		t.Fatalf("/readyz past audit.central_max_lag: %d %v", code, body)
	}
	if strings.Contains(logs.String(), "hunter2") || strings.Contains(fmt.Sprint(body), "hunter2") {
		t.Fatal("the central store's password reached the log or /readyz")
	}
	// /readyz answers anyone: the error's text (the store's host and user) is for the log.
	if b := fmt.Sprint(body); strings.Contains(b, closed) || strings.Contains(b, "portcullis@") || strings.Contains(b, "user=") {
		t.Fatalf("/readyz names the central store's address or user: %v", body)
	}
	if st, _ := body["audit_central"].(map[string]any); st["last_error"] != "shipping to the central store failed (see the log)" {
		t.Fatalf("/readyz last_error: %v", st["last_error"])
	}
}

func TestHealthCommandExitsZeroOnlyWhenReady(t *testing.T) {
	u, _, _ := startServe(t)
	var out, errb strings.Builder
	if code := run(context.Background(), []string{"health", "--url", u + "/readyz"}, &out, &errb); code != 0 || !strings.HasPrefix(out.String(), `200 {"`) {
		t.Fatalf("health of a ready server: %d %q %q", code, out.String(), errb.String())
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	out.Reset()
	errb.Reset()
	if code := run(context.Background(), []string{"health", "--url", "http://" + closed + "/readyz", "--timeout", "1s"}, &out, &errb); code != 1 {
		t.Fatalf("health of nothing listening: %d %q", code, errb.String())
	}
}

// The deployment example's config file loads as the compose file gives it.
func TestDeployExampleConfigLoads(t *testing.T) {
	t.Setenv("PORTCULLIS_JWT_HS256_SECRET", "a-shared-secret-of-enough-length-0123456789")
	t.Setenv("PORTCULLIS_AUDIT_CENTRAL_URL", "postgres://portcullis:portcullis@postgres:5432/portcullis?sslmode=disable")
	t.Setenv("PORTCULLIS_REDIS_URL", "redis://redis:6379/0")
	cfg, err := loadConfig(overrides{configPath: "../../docs/deploy/portcullis.yaml", dataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Backend.DatabaseURL == "" || cfg.Audit.CentralURL == "" || cfg.Limits.OnStoreError != "deny" || cfg.Audit.CentralMaxLag != 5*time.Minute {
		t.Fatalf("deploy config: backend %q central %q on_store_error %q", cfg.Backend.DatabaseURL, cfg.Audit.CentralURL, cfg.Limits.OnStoreError)
	}
}
