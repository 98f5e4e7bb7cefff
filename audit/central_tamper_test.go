package audit

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"
)

// closedLog writes n rows into a new log (a checkpoint every `every` rows; 0: the
// default) and closes it.
func closedLog(t *testing.T, n, every int) Config {
	t.Helper()
	cfg := testConfig(t)
	if every > 0 {
		cfg.CheckpointEvery = every
	}
	appendClosed(t, cfg, n)
	return cfg
}

// appendClosed opens cfg's log, appends n rows and closes it again.
func appendClosed(t *testing.T, cfg Config, n int) {
	t.Helper()
	l := openTest(t, cfg)
	appendN(t, l, n)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
}

// shipOnce ships what cfg's log holds with a new shipper.
func shipOnce(t *testing.T, c *Central, cfg Config) *Shipper {
	t.Helper()
	s := newShipperTest(t, c, cfg.Path, 1000)
	if _, err := s.Ship(context.Background()); err != nil {
		t.Fatal(err)
	}
	return s
}

// centralExecAll runs statements with every user trigger of the central tables off,
// as someone with write access to PostgreSQL would.
func centralExecAll(t *testing.T, c *Central, stmts ...string) {
	t.Helper()
	tables := []string{"audit_central_events", "audit_central_checkpoints", "audit_central_logs"}
	var all []string
	for _, tb := range tables {
		all = append(all, "ALTER TABLE "+tb+" DISABLE TRIGGER USER")
	}
	all = append(all, stmts...)
	for _, tg := range centralTriggers {
		all = append(all, "ALTER TABLE audit_central_"+strings.Split(strings.TrimPrefix(tg, "audit_central_"), "_")[0]+" ENABLE ALWAYS TRIGGER "+tg)
	}
	for _, s := range all {
		if _, err := c.db.Exec(s); err != nil {
			t.Fatalf("%q: %v", s, err)
		}
	}
}

// Rows inserted under a log id no shipper registered are served by Query and Export,
// so verify must check them: they have no signed checkpoint and the log is unknown.
func TestCentralVerifyFailsOnRowsUnderALogIDNoShipperRegistered(t *testing.T) {
	c := openCentralTest(t, centralURL(t))
	a, b := twoReplicas(t, 30)
	shipOnce(t, c, a)
	shipOnce(t, c, b)
	forged := strings.Repeat("f", 32)
	// A plain INSERT: the triggers refuse UPDATE, DELETE and TRUNCATE, not this.
	if _, err := c.db.Exec(`INSERT INTO audit_central_events (` + centralRowColumns + `) SELECT '` + forged + `', ` + rowColumns +
		` FROM audit_central_events WHERE log_id = '` + logIDOf(t, a.Path) + `' AND seq = 1`); err != nil {
		t.Fatal(err)
	}
	rep, err := c.Verify(context.Background(), []ed25519.PublicKey{pubKey(t, a), pubKey(t, b)})
	if err != nil {
		t.Fatal(err)
	}
	problems := strings.Join(rep.Problems, "\n")
	if rep.OK || !strings.Contains(problems, "log "+forged+": no shipper registered this log id") {
		t.Fatalf("rows under an unregistered log id verified: OK=%v %q", rep.OK, rep.Problems)
	}
	if len(rep.Logs) != 3 {
		t.Fatalf("verify checked %d logs, want the two replicas' and the forged one", len(rep.Logs))
	}
}

// TRUNCATE fires no row trigger: statement triggers refuse it. Rows and checkpoints
// removed anyway (triggers off) are a fault for the shipper, which had them
// acknowledged, and for the witness check, not rows to copy again in silence.
func TestRowsRemovedCentrallyAreAFaultNotCopiedAgain(t *testing.T) {
	c := openCentralTest(t, centralURL(t))
	cfg := closedLog(t, 50, 10)
	shipOnce(t, c, cfg).Close(context.Background())
	id := logIDOf(t, cfg.Path)
	for _, tb := range []string{"audit_central_events", "audit_central_checkpoints", "audit_central_logs"} {
		if _, err := c.db.Exec("TRUNCATE " + tb); err == nil || !strings.Contains(err.Error(), "append-only") {
			t.Fatalf("TRUNCATE %s: %v; want it refused", tb, err)
		}
	}
	centralExecAll(t, c,
		fmt.Sprintf(`DELETE FROM audit_central_events WHERE log_id = '%s' AND seq > 20`, id),
		fmt.Sprintf(`DELETE FROM audit_central_checkpoints WHERE log_id = '%s' AND seq > 20`, id))

	// A restarted shipper (the mark beside the database survives restarts).
	s := newShipperTest(t, c, cfg.Path, 1000)
	if _, err := s.Ship(context.Background()); !errors.Is(err, ErrCentralFault) || !strings.Contains(err.Error(), "but it had acknowledged rows to seq 50") {
		t.Fatalf("ship after central rows were removed: %v", err)
	}
	if n, _ := centralCount(t, c, id); n != 20 {
		t.Fatalf("the shipper copied the removed rows again: %d central rows", n)
	}
	rep, err := VerifyAgainstCentral(context.Background(), cfg.Path, pubKey(t, cfg), c)
	if err != nil {
		t.Fatal(err)
	}
	if rep.OK || !strings.Contains(strings.Join(rep.Problems, "\n"), "had acknowledged rows to seq 50") {
		t.Fatalf("--central-witness after central rows were removed: OK=%v %q", rep.OK, rep.Problems)
	}
}

// A checkpoint's signature covers its head, not its id: a copy under a higher id
// verifies alone, and the shipper would resume after it and ship no checkpoint again.
// Both verify and the shipper call it a fault.
func TestACheckpointCopiedUnderAnotherIDIsAFault(t *testing.T) {
	c := openCentralTest(t, centralURL(t))
	cfg := closedLog(t, 50, 10)
	s := shipOnce(t, c, cfg)
	id := logIDOf(t, cfg.Path)
	if _, err := c.db.Exec(`INSERT INTO audit_central_checkpoints (log_id, ` + centralCheckpointColumns + `)
		SELECT log_id, 1000000000, kind, seq, head_hash, ts, key_id, signature, signed_log_id FROM audit_central_checkpoints
		WHERE log_id = '` + id + `' ORDER BY id DESC LIMIT 1`); err != nil {
		t.Fatal(err)
	}
	rep, err := c.Verify(context.Background(), []ed25519.PublicKey{pubKey(t, cfg)})
	if err != nil {
		t.Fatal(err)
	}
	if rep.OK || !strings.Contains(strings.Join(rep.Problems, "\n"), "checkpoint id 1000000000 is a copy of checkpoint id") {
		t.Fatalf("a copied checkpoint verified: OK=%v %q", rep.OK, rep.Problems)
	}
	appendClosed(t, cfg, 20)
	if _, err := s.Ship(context.Background()); !errors.Is(err, ErrCentralFault) || !strings.Contains(err.Error(), "id 1000000000, which this database never wrote") {
		t.Fatalf("ship past a copied checkpoint: %v", err)
	}
}

// A row inserted centrally past this log's head is a fault, and it does not count as
// shipped: the lag (and so readiness) still sees the rows that are not there.
func TestAForgedRowPastTheHeadLeavesTheLagVisible(t *testing.T) {
	c := openCentralTest(t, centralURL(t))
	cfg := closedLog(t, 20, 0)
	s := shipOnce(t, c, cfg)
	id := logIDOf(t, cfg.Path)
	if _, err := c.db.Exec(`INSERT INTO audit_central_events (` + centralRowColumns + `) SELECT log_id, 1000000, ts, kind, request_id,
		decision_id, caller_sub, caller_org, caller_workspace, caller_roles, caller_session, client_addr, surface, tool, method, path,
		args, decision, reason, policy_revision, approval_id, approver, status, error_class, latency_us, prev_hash, hash
		FROM audit_central_events WHERE log_id = '` + id + `' AND seq = 20`); err != nil {
		t.Fatal(err)
	}
	appendClosed(t, cfg, 5)
	if _, err := s.Ship(context.Background()); !errors.Is(err, ErrCentralFault) {
		t.Fatalf("ship past a forged row: %v", err)
	}
	if rows, _ := s.Lag(); rows != 5 || s.Status().ShippedSeq != 20 {
		t.Fatalf("after a forged head: lag %d rows, shipped seq %d; want 5 and 20", rows, s.Status().ShippedSeq)
	}
}

// One INSERT into the central store (a checkpoint id this replica never wrote) faults
// the shipper. That must not take the replica out of the load balancer once the lag
// passes MaxLag: any holder of the central credentials could otherwise empty the whole
// fleet's readiness. The fault stays in the status for someone to look at.
func TestAShippingFaultLeavesTheReplicaReadyPastTheLagBound(t *testing.T) {
	c := openCentralTest(t, centralURL(t))
	cfg := testConfig(t)
	cfg.CheckpointEvery = 10
	l := openTest(t, cfg)
	appendN(t, l, 20)
	waitStoredTest(t, l)
	ctx := context.Background()
	s, err := NewShipper(ctx, c, ShipperConfig{Path: cfg.Path, Log: l, MaxLag: time.Millisecond}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	if _, err := s.Ship(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.db.Exec(`INSERT INTO audit_central_checkpoints (log_id, `+centralCheckpointColumns+`)
		VALUES ($1, 1000000, 'periodic', 1, '\x00', 0, 'x', '\x01', '')`, logIDOf(t, cfg.Path)); err != nil {
		t.Fatal(err)
	}
	appendN(t, l, 5)
	waitStoredTest(t, l)
	if _, err := s.Ship(ctx); !errors.Is(err, ErrCentralFault) {
		t.Fatalf("ship past a planted checkpoint: %v", err)
	}
	time.Sleep(5 * time.Millisecond)
	if rows, age := s.Lag(); rows != 5 || age < time.Millisecond {
		t.Fatalf("lag %d rows, %s: want 5 rows past the 1ms bound", rows, age)
	}
	if err := s.Ready(); err != nil {
		t.Fatalf("a fault took the replica out of readiness: %v", err)
	}
	if st := s.Status(); st.Fault == "" {
		t.Fatal("the fault is not in the status")
	}
}

// The append-only triggers fire ALWAYS: session_replication_role = replica, which skips
// ordinary triggers without disabling them, does not lift them; and verify warns when
// they are back to ordinary, or their function was replaced to let edits through.
func TestCentralGuardsHoldUnderReplicationRoleAndVerifyWarnsWhenLifted(t *testing.T) {
	c := openCentralTest(t, centralURL(t))
	cfg := closedLog(t, 12, 0)
	shipOnce(t, c, cfg)
	id := logIDOf(t, cfg.Path)
	ctx := context.Background()
	conn, err := c.db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, `SET session_replication_role = replica`); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{`DELETE FROM audit_central_events WHERE log_id = '` + id + `' AND seq > 10`,
		`TRUNCATE audit_central_checkpoints`, `DELETE FROM audit_central_logs`} {
		if _, err := conn.ExecContext(ctx, q); err == nil || !strings.Contains(err.Error(), "append-only") {
			t.Fatalf("%s under session_replication_role = replica: %v; want it refused", q, err)
		}
	}
	if _, err := conn.ExecContext(ctx, `SET session_replication_role = origin`); err != nil {
		t.Fatal(err)
	}
	keys := []ed25519.PublicKey{pubKey(t, cfg)}
	if rep, err := c.Verify(ctx, keys); err != nil || !rep.OK || len(rep.Logs) != 1 || len(rep.Logs[0].Warnings) != 0 {
		t.Fatalf("verify of an untouched store: %+v %v", rep, err)
	}
	warned := func(want string) {
		t.Helper()
		rep, err := c.Verify(ctx, keys)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(strings.Join(rep.Logs[0].Warnings, "\n"), want) {
			t.Fatalf("warnings %q lack %q", rep.Logs[0].Warnings, want)
		}
	}
	if _, err := c.db.Exec(`ALTER TABLE audit_central_events ENABLE TRIGGER audit_central_events_append_only`); err != nil {
		t.Fatal(err)
	}
	warned("not ENABLE ALWAYS")
	if _, err := c.db.Exec(`ALTER TABLE audit_central_events ENABLE ALWAYS TRIGGER audit_central_events_append_only`); err != nil {
		t.Fatal(err)
	}
	if _, err := c.db.Exec(`CREATE OR REPLACE FUNCTION audit_central_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN RETURN OLD; END $$`); err != nil {
		t.Fatal(err)
	}
	warned("trigger function was replaced")
}

// Replicas can ship as a role that may only read and insert (and only read the
// migrations' record, which a version planted there would turn against every replica's
// start): the central tables' owner runs the migrations once (the first start, or migrate); a shipper's role then
// opens the store (no DDL at the newest version), ships under an advisory lock, and
// can neither delete rows nor lift the triggers, whatever the triggers say.
func TestAShipperNeedsOnlySelectAndInsertAndCannotLiftTheGuards(t *testing.T) {
	u := centralURL(t)
	owner := openCentralTest(t, u)
	parsed, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	schema := parsed.Query().Get("search_path")
	role := "pc_ship_" + strings.TrimPrefix(schema, "pc_test_")
	for _, q := range []string{`CREATE ROLE ` + role + ` LOGIN`, `GRANT USAGE ON SCHEMA ` + schema + ` TO ` + role,
		`GRANT SELECT, INSERT ON audit_central_logs, audit_central_events, audit_central_checkpoints TO ` + role,
		`GRANT SELECT ON schema_migrations TO ` + role} {
		if _, err := owner.db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	t.Cleanup(func() {
		owner.db.Exec(`DROP OWNED BY ` + role)
		owner.db.Exec(`DROP ROLE ` + role)
	})
	parsed.User = url.User(role)
	c := openCentralTest(t, parsed.String())

	cfg := closedLog(t, 30, 0)
	shipOnce(t, c, cfg)
	rep, err := owner.Verify(context.Background(), []ed25519.PublicKey{pubKey(t, cfg)})
	if err != nil || !rep.OK || rep.Logs[0].Rows != 30 {
		t.Fatalf("verify after shipping as %s: %+v %v", role, rep, err)
	}
	for _, q := range []string{`DELETE FROM audit_central_events`, `ALTER TABLE audit_central_events DISABLE TRIGGER USER`,
		`INSERT INTO schema_migrations VALUES ('audit_central', 99, 'x')`,
		`TRUNCATE audit_central_checkpoints`, `CREATE OR REPLACE FUNCTION audit_central_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN OLD; END $$`} {
		if _, err := c.db.Exec(q); err == nil || !(strings.Contains(err.Error(), "permission denied") || strings.Contains(err.Error(), "must be owner")) {
			t.Fatalf("%s as the shipping role: %v; want it refused by privilege", q, err)
		}
	}
}

// The shipping lock is waited for only briefly: a session holding it longer (any login
// can take an advisory lock) makes the pass fail within seconds, naming the lock,
// instead of stalling it.
func TestAShippingLockHeldElsewhereFailsThePassWithinSecondsAndSaysSo(t *testing.T) {
	c := openCentralTest(t, centralURL(t))
	cfg := closedLog(t, 5, 0)
	id := logIDOf(t, cfg.Path)
	ctx := context.Background()
	holder, err := c.db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close()
	if _, err := holder.ExecContext(ctx, `SELECT pg_advisory_lock(hashtext('portcullis:ship:' || $1))`, id); err != nil {
		t.Fatal(err)
	}
	s := newShipperTest(t, c, cfg.Path, 1000)
	start := time.Now()
	if _, err := s.Ship(ctx); err == nil || !strings.Contains(err.Error(), "has held its shipping lock") || time.Since(start) > 10*time.Second {
		t.Fatalf("ship while another session holds the lock: %v after %s", err, time.Since(start))
	}
	if _, err := holder.ExecContext(ctx, `SELECT pg_advisory_unlock(hashtext('portcullis:ship:' || $1))`, id); err != nil {
		t.Fatal(err)
	}
	if n, err := s.Ship(ctx); err != nil || n != 5 {
		t.Fatalf("ship after the lock was let go: %d %v", n, err)
	}
}
