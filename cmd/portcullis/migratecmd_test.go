package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/audit"
	"github.com/portcullis/portcullis/audit/sqldb/sqldbtest"
	"github.com/portcullis/portcullis/policies/principal"
	"github.com/portcullis/portcullis/proxy/approvals"
)

func runMigrateCmd(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), append([]string{"migrate"}, args...), &out, &errb)
	return code, out.String(), errb.String()
}

// singleNodeInstall is a data dir a single-node serve (SQLite) wrote and then stopped:
// allowed and denied calls, and three held deletes: one approved, one denied, one
// left pending.
type singleNodeInstall struct {
	dir                        string
	approved, denied, pending  string // approval ids
	agent, op, sec, auditor    string // tokens
	logID                      string
	rows, lastSeq, checkpoints int64
	pub                        ed25519.PublicKey
}

func singleNode(t *testing.T) *singleNodeInstall {
	t.Helper()
	n := &singleNodeInstall{dir: t.TempDir()}
	url, _, stop := startServeStoppable(t, overrides{dataDir: n.dir}, func(cfg *Config) {
		cfg.Approval.WaitBudget = 300 * time.Millisecond // a held delete answers 202 while pending
	})
	n.agent = mintToken(t, n.dir, "--sub", "agent-1", "--org", "acme", "--roles", "agent")
	n.op = mintToken(t, n.dir, "--sub", "olga", "--org", "acme", "--roles", "operator")
	n.sec = mintToken(t, n.dir, "--sub", "sam", "--org", "acme", "--roles", "security,approver")
	n.auditor = mintToken(t, n.dir, "--sub", "aud", "--org", "acme", "--roles", "auditor")
	var ids []string
	for i := 1; i <= 3; i++ {
		slug := fmt.Sprintf("gone-%d", i)
		if resp, body := postJSON(t, url+"/v1/integrations", n.agent, `{"name":"`+slug+`","ai_provider_id":"openai","key":"sk-gone-0123456789"}`); resp.StatusCode != 200 {
			t.Fatalf("create %s: %d %s", slug, resp.StatusCode, body)
		}
		if resp, body := doJSON(t, "DELETE", url+"/v1/integrations/"+slug, n.agent, ""); resp.StatusCode != 403 {
			t.Fatalf("an agent's delete: %d %s; want 403 (denied by policy)", resp.StatusCode, body)
		}
		resp, body := doJSON(t, "DELETE", url+"/v1/integrations/"+slug, n.op, "")
		var held struct {
			ApprovalID string `json:"approval_id"`
		}
		if resp.StatusCode != 202 || json.Unmarshal(body, &held) != nil || held.ApprovalID == "" {
			t.Fatalf("an operator's delete: %d %s; want 202 with an approval id", resp.StatusCode, body)
		}
		ids = append(ids, held.ApprovalID)
	}
	n.approved, n.denied, n.pending = ids[0], ids[1], ids[2]
	if resp, body := postJSON(t, url+"/admin/v1/approvals/"+n.approved+"/approve", n.sec, `{"comment":"ok"}`); resp.StatusCode != 200 {
		t.Fatalf("approve: %d %s", resp.StatusCode, body)
	}
	if resp, body := postJSON(t, url+"/admin/v1/approvals/"+n.denied+"/deny", n.sec, `{"comment":"keep it"}`); resp.StatusCode != 200 {
		t.Fatalf("deny: %d %s", resp.StatusCode, body)
	}
	stop()
	n.verifyLocal(t)
	return n
}

// verifyLocal records what the local chain holds, as `audit verify` sees it.
func (n *singleNodeInstall) verifyLocal(t *testing.T) {
	t.Helper()
	key, err := audit.LoadSigningKey(filepath.Join(n.dir, "audit-signing.key"))
	if err != nil {
		t.Fatal(err)
	}
	n.pub = key.Public().(ed25519.PublicKey)
	rep, err := audit.Verify(context.Background(), filepath.Join(n.dir, "audit.db"), n.pub)
	if err != nil || !rep.OK || rep.Journaled != 0 || rep.Rows < 10 {
		t.Fatalf("the single node's trail: %+v %v", rep, err)
	}
	n.logID, n.rows, n.lastSeq, n.checkpoints = rep.LogID, rep.Rows, rep.LastSeq, int64(rep.Checkpoints)
}

// withPassword puts a password into a PostgreSQL URL (the test server trusts local
// connections, so it is never checked: it is there to be kept out of the output).
func withPassword(t *testing.T, raw, pw string) string {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword(u.User.Username(), pw)
	return u.String()
}

func pgCount(t *testing.T, pg, query string, args ...any) int64 {
	t.Helper()
	db, err := sql.Open("pgx", pg)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int64
	if err := db.QueryRow(query, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

// The operator's path: set audit.central_url and approvals.database_url in the config,
// stop serve, run `portcullis migrate --config`. The chain arrives under its own log id
// and verifies centrally; every approval arrives with its status; a second run copies
// nothing; serve started on that config reads the migrated trail through the admin
// API, lists the pending approval and lets an approver decide it, and its shipper
// carries on from the migrated head.
func TestMigrateMovesASingleNodeIntoPostgresWithTheChainVerified(t *testing.T) {
	pg := sqldbtest.PostgresURL(t)
	n := singleNode(t)
	target := withPassword(t, pg, "s3cret-pw")
	cfgPath := filepath.Join(t.TempDir(), "portcullis.yaml")
	cfgYAML := fmt.Sprintf("data_dir: %q\naudit:\n  central_url: %q\n  central_interval: 50ms\napprovals:\n  database_url: %q\n", n.dir, target, target)
	if err := os.WriteFile(cfgPath, []byte(cfgYAML), 0o600); err != nil {
		t.Fatal(err)
	}

	code, out, errOut := runMigrateCmd(t, "--config", cfgPath)
	if code != 0 {
		t.Fatalf("migrate: exit %d\n%s%s", code, out, errOut)
	}
	t.Logf("migrate:\n%s", out)
	for _, want := range []string{
		fmt.Sprintf("audit: local log %s verified: %d rows (seq 1-%d), %d checkpoints\n", n.logID, n.rows, n.lastSeq, n.checkpoints),
		fmt.Sprintf("audit: copied %d rows and %d checkpoints to postgres://***@127.0.0.1:5432/test\n", n.rows, n.checkpoints),
		fmt.Sprintf("audit: log %s: %d rows (seq 1-%d), %d checkpoints in the central store, verified\n", n.logID, n.rows, n.lastSeq, n.checkpoints),
		"approvals: copied 3 (denied 1, expired 2) to postgres://***@127.0.0.1:5432/test; already there: none\n",
		"approvals: 2 in flight (pending or approved, not yet used) were stored expired",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("migrate output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out+errOut, "s3cret-pw") || strings.Contains(out+errOut, "search_path") {
		t.Fatalf("migrate printed the URL's password or parameters:\n%s%s", out, errOut)
	}
	pub := base64.StdEncoding.EncodeToString(n.pub)
	if c, vout, verr := runAuditCmd(t, "verify", "--central", pg, "--pubkey", pub); c != 0 ||
		!strings.Contains(vout, fmt.Sprintf("log %s: OK, %d rows (seq 1-%d)", n.logID, n.rows, n.lastSeq)) {
		t.Fatalf("audit verify --central after migrate: %d\n%s%s", c, vout, verr)
	}

	// Again: nothing copied, everything found identical, still verified.
	code, out, errOut = runMigrateCmd(t, "--config", cfgPath)
	if code != 0 || !strings.Contains(out, "audit: copied 0 rows and 0 checkpoints") ||
		!strings.Contains(out, fmt.Sprintf("audit: log %s: %d rows", n.logID, n.rows)) ||
		!strings.Contains(out, "approvals: copied none to postgres://***@127.0.0.1:5432/test; already there: 3 (denied 1, expired 2)") {
		t.Fatalf("second migrate: exit %d\n%s%s", code, out, errOut)
	}
	if got := pgCount(t, pg, `SELECT count(*) FROM audit_central_events WHERE log_id = $1`, n.logID); got != n.rows {
		t.Fatalf("central rows after two migrations: %d, want %d", got, n.rows)
	}
	if got := pgCount(t, pg, `SELECT count(*) FROM audit_central_checkpoints WHERE log_id = $1`, n.logID); got != n.checkpoints {
		t.Fatalf("central checkpoints after two migrations: %d, want %d", got, n.checkpoints)
	}
	if got := pgCount(t, pg, `SELECT count(*) FROM approvals`); got != 3 {
		t.Fatalf("approvals in PostgreSQL after two migrations: %d, want 3", got)
	}

	// serve on the same data dir, now with both URLs: it reads PostgreSQL.
	url, _ := startServeIn(t, overrides{configPath: cfgPath}, func(cfg *Config) {
		cfg.Approval.WaitBudget = 300 * time.Millisecond // a held delete answers 202 while pending
	})
	type approval struct {
		ID, Status, Comment string
		DecidedBy           string `json:"decided_by"`
	}
	var list struct {
		Data []approval `json:"data"`
	}
	if err := json.Unmarshal([]byte(restGet(t, url+"/admin/v1/approvals?status=all", n.sec)), &list); err != nil {
		t.Fatal(err)
	}
	byID := map[string]approval{}
	for _, a := range list.Data {
		byID[a.ID] = a
	}
	// In flight before the move (approved but not used, and pending): stored expired,
	// with their history; the denial stays a denial.
	if a := byID[n.approved]; a.Status != "expired" || a.DecidedBy != "sam" || a.Comment != "ok" {
		t.Errorf("the approved, unused approval after migrate: %+v", a)
	}
	if a := byID[n.denied]; a.Status != "denied" || a.DecidedBy != "sam" || a.Comment != "keep it" {
		t.Errorf("the denied approval after migrate: %+v", a)
	}
	if a := byID[n.pending]; a.Status != "expired" {
		t.Fatalf("the pending approval after migrate: %+v (listed: %+v)", a, list.Data)
	}
	// The caller's identical call asks again, and an approver decides it through the
	// migrated node, in PostgreSQL.
	resp, held := doJSON(t, "DELETE", url+"/v1/integrations/gone-3", n.op, "")
	var again struct {
		ApprovalID string `json:"approval_id"`
	}
	if resp.StatusCode != 202 || json.Unmarshal(held, &again) != nil || again.ApprovalID == "" || again.ApprovalID == n.pending {
		t.Fatalf("the pending delete asked again after the move: %d %s", resp.StatusCode, held)
	}
	if resp, body := postJSON(t, url+"/admin/v1/approvals/"+again.ApprovalID+"/approve", n.sec, `{"comment":"after the move"}`); resp.StatusCode != 200 {
		t.Fatalf("approving after the move: %d %s", resp.StatusCode, body)
	}
	if got := pgCount(t, pg, `SELECT count(*) FROM approvals WHERE id = $1 AND status = 'approved' AND comment = 'after the move'`, again.ApprovalID); got != 1 {
		t.Fatalf("the decision made after the move is not in PostgreSQL")
	}

	// The admin audit API reads the central store: the denials made before the move
	// are there, under the migrated log id.
	code2, body := getJSON(t, url+"/admin/v1/audit?decision=deny&tool=delete_integration&limit=100", n.auditor)
	if code2 != 200 {
		t.Fatalf("admin audit: %d %v", code2, body)
	}
	denials := 0
	for _, e := range body["data"].([]any) {
		ev := e.(map[string]any)
		if ev["log_id"] == n.logID && ev["caller"].(map[string]any)["sub"] == "agent-1" {
			denials++
		}
	}
	if denials != 3 {
		t.Fatalf("admin audit API lists %d of the 3 pre-migration denials under log %s: %v", denials, n.logID, body)
	}
	// The restarted node ships on from the migrated head, with no fault.
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, rb := getJSON(t, url+"/readyz", "")
		st, _ := rb["audit_central"].(map[string]any)
		if st != nil && st["fault"] == nil && st["log_id"] == n.logID && st["lag_rows"] == float64(0) && st["shipped_seq"].(float64) > float64(n.lastSeq) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve did not ship on from the migrated head: %v", rb)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// approvalsFixture writes approvals.db in dir with one pending approval, as serve would.
func approvalsFixture(t *testing.T, dir string) string {
	t.Helper()
	st, err := approvals.OpenSQLite(context.Background(), filepath.Join(dir, "approvals.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	now := time.Now()
	a := &approvals.Approval{ID: "appr-1", Status: approvals.StatusPending, Hash: strings.Repeat("ab", 32),
		Caller: principal.Caller{Sub: "olga", Org: "acme", Roles: []string{"operator"}}, Tool: "delete_integration", Surface: "rest",
		Arguments: json.RawMessage(`{"slug":"x"}`), Approvers: []string{"role:security"}, CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
	if _, _, err := st.Create(context.Background(), a, now); err != nil {
		t.Fatal(err)
	}
	return a.ID
}

func pgTableExists(t *testing.T, pg, table string) bool {
	t.Helper()
	return pgCount(t, pg, `SELECT count(*) FROM (SELECT to_regclass($1) AS r) x WHERE r IS NOT NULL`, table) == 1
}

// A local chain with an edited row is refused, naming the row, before anything is
// copied: PostgreSQL is not even given the tables, and the approvals stay behind too.
func TestMigrateRefusesATamperedLocalChainBeforeCopyingAnything(t *testing.T) {
	pg := sqldbtest.PostgresURL(t)
	dir := auditFixture(t)
	approvalsFixture(t, dir)
	db, err := sql.Open("sqlite", filepath.Join(dir, "audit.db"))
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{`DROP TRIGGER audit_events_no_update`, `UPDATE audit_events SET decision = 'deny' WHERE seq = 17`} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()
	code, out, errOut := runMigrateCmd(t, "--data-dir", dir, "--audit-to", pg, "--approvals-to", pg)
	if code != 1 || !strings.Contains(errOut, "row seq 17") || !strings.Contains(errOut, "nothing was copied") {
		t.Fatalf("migrate of a tampered chain: exit %d\n%s%s", code, out, errOut)
	}
	for _, table := range []string{"audit_central_events", "audit_central_checkpoints", "approvals"} {
		if pgTableExists(t, pg, table) {
			t.Errorf("migrate refused the chain but created %s in PostgreSQL", table)
		}
	}
}

// A central copy that differs from the local chain (here the newest row's hash,
// edited in PostgreSQL) is a fault: reported, naming the log and the seq, and the
// central row is left as it is.
func TestMigrateReportsACentralCopyThatDiffersAndOverwritesNothing(t *testing.T) {
	pg := sqldbtest.PostgresURL(t)
	dir := auditFixture(t)
	if code, out, errOut := runMigrateCmd(t, "--data-dir", dir, "--audit-to", pg); code != 0 ||
		!strings.Contains(out, "audit: copied 40 rows") || !strings.Contains(out, "approvals: skipped") {
		t.Fatalf("first migrate: exit %d\n%s%s", code, out, errOut)
	}
	db, err := sql.Open("pgx", pg)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, q := range []string{`ALTER TABLE audit_central_events DISABLE TRIGGER audit_central_events_append_only`,
		`UPDATE audit_central_events SET hash = '\x00' WHERE seq = 40`} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	code, out, errOut := runMigrateCmd(t, "--data-dir", dir, "--audit-to", pg)
	if code != 1 || !strings.Contains(errOut, "disagrees with the local log") || !strings.Contains(errOut, "row seq 40") {
		t.Fatalf("migrate onto a differing central copy: exit %d\n%s%s", code, out, errOut)
	}
	if got := pgCount(t, pg, `SELECT count(*) FROM audit_central_events WHERE seq = 40 AND hash = '\x00'`); got != 1 {
		t.Fatal("the differing central row was overwritten")
	}
}

// While serve runs on the data dir, migrate refuses (serve's writer lock), says why,
// and connects to nothing (the target here does not exist; its password is not printed).
func TestMigrateRefusesWhileServeRunsOnTheDataDir(t *testing.T) {
	_, dir, _ := startServe(t)
	code, out, errOut := runMigrateCmd(t, "--data-dir", dir, "--audit-to", "postgres://u:hunter2-pw@127.0.0.1:1/none", "--approvals-to", "postgres://u:hunter2-pw@127.0.0.1:1/none")
	if code != 1 || !strings.Contains(errOut, "serve is running on "+dir) || !strings.Contains(errOut, "stop it, then run migrate") {
		t.Fatalf("migrate beside serve: exit %d\n%s%s", code, out, errOut)
	}
	if strings.Contains(out+errOut, "hunter2") {
		t.Fatalf("migrate printed a password:\n%s%s", out, errOut)
	}
}

// With no target configured or given there is nothing to do: a usage error, as is a
// target that is not a PostgreSQL URL.
func TestMigrateWithoutAPostgresTargetIsAUsageError(t *testing.T) {
	t.Setenv("PORTCULLIS_AUDIT_CENTRAL_URL", "")
	t.Setenv("PORTCULLIS_APPROVALS_DATABASE_URL", "")
	dir := t.TempDir()
	if code, _, errOut := runMigrateCmd(t, "--data-dir", dir); code != 2 || !strings.Contains(errOut, "nothing to migrate to") {
		t.Fatalf("migrate with no target: exit %d %s", code, errOut)
	}
	if code, _, errOut := runMigrateCmd(t, "--data-dir", dir, "--approvals-to", "mysql://db/x"); code != 2 || !strings.Contains(errOut, "--approvals-to: want a postgres://") {
		t.Fatalf("migrate to a non-PostgreSQL URL: exit %d %s", code, errOut)
	}
	if code, _, errOut := runMigrateCmd(t, "--data-dir", filepath.Join(dir, "absent"), "--audit-to", "postgres://127.0.0.1:1/x"); code != 1 || !strings.Contains(errOut, "not a directory") {
		t.Fatalf("migrate of a missing data dir: exit %d %s", code, errOut)
	}
}

// An approvals.db is a file: an approval edited in it (a pending one marked approved by
// a real approver, another given ten years to live) must not reach the fleet's store,
// where it would release calls on every replica. Decided approvals must be vouched for
// by the verified audit trail, and every approval must hold together; otherwise migrate
// copies no approval at all and names each one refused.
func TestMigrateRefusesApprovalsTheAuditTrailDoesNotVouchFor(t *testing.T) {
	pg := sqldbtest.PostgresURL(t)
	n := singleNode(t)
	db, err := sql.Open("sqlite", filepath.Join(n.dir, "approvals.db"))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UnixMilli()
	for _, q := range []string{
		fmt.Sprintf(`UPDATE approvals SET status = 'approved', decided_by = 'sam', comment = 'ok', decided_at = %d WHERE id = '%s'`, now, n.pending),
		fmt.Sprintf(`UPDATE approvals SET expires_at = %d WHERE id = '%s'`, now+10*365*24*3600*1000, n.approved),
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()
	code, out, errOut := runMigrateCmd(t, "--data-dir", n.dir, "--approvals-to", pg)
	if code != 1 {
		t.Fatalf("migrate of edited approvals: exit %d\n%s%s", code, out, errOut)
	}
	for _, want := range []string{
		"approval " + n.pending + ": approved by sam, but the audit trail records no such approval",
		"approval " + n.approved + ": lives ",
		"nothing was copied",
	} {
		if !strings.Contains(errOut, want) {
			t.Errorf("migrate's refusal lacks %q:\n%s", want, errOut)
		}
	}
	if c := pgCount(t, pg, `SELECT count(*) FROM approvals`); c != 0 {
		t.Fatalf("%d approvals reached PostgreSQL", c)
	}
}

// An approval edited in approvals.db to cover another request (the hash and arguments
// of a delete security denied, under the id of one it approved) must not release that
// call after the move: approvals in flight are stored expired, so the denied delete
// stays denied.
func TestMigrateNeverCarriesALiveApprovalAcross(t *testing.T) {
	pg := sqldbtest.PostgresURL(t)
	n := singleNode(t)
	db, err := sql.Open("sqlite", filepath.Join(n.dir, "approvals.db"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`UPDATE approvals SET hash = (SELECT hash FROM approvals WHERE id = ?), arguments = (SELECT arguments FROM approvals WHERE id = ?)
		WHERE id = ?`, n.denied, n.denied, n.approved); err != nil {
		t.Fatal(err)
	}
	db.Close()
	cfgPath := filepath.Join(t.TempDir(), "portcullis.yaml")
	if err := os.WriteFile(cfgPath, []byte(fmt.Sprintf("data_dir: %q\napprovals:\n  database_url: %q\n", n.dir, pg)), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, out, errOut := runMigrateCmd(t, "--config", cfgPath); code != 0 {
		t.Fatalf("migrate: exit %d\n%s%s", code, out, errOut)
	}
	if got := pgCount(t, pg, `SELECT count(*) FROM approvals WHERE status IN ('pending', 'approved')`); got != 0 {
		t.Fatalf("%d live approvals reached PostgreSQL", got)
	}
	url, _ := startServeIn(t, overrides{configPath: cfgPath}, func(cfg *Config) {
		cfg.Approval.WaitBudget = 300 * time.Millisecond
	})
	if resp, body := doJSON(t, "DELETE", url+"/v1/integrations/gone-2", n.op, ""); resp.StatusCode != 403 || !strings.Contains(string(body), "approval_denied") {
		t.Fatalf("the delete security denied, after the move: %d %s; want the denial (403 approval_denied), never the delete", resp.StatusCode, body)
	}
}
