package audit

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Two logs given the same signing key (replicas sharing
// PORTCULLIS_AUDIT_SIGNING_KEY). A checkpoint signed for one must not vouch for
// the other: every checkpoint names its log, and verify holds it to that name.
func TestCheckpointsFromAnotherLogSharingTheKeyAreRefused(t *testing.T) {
	ctx := context.Background()
	cfgA, cfgB := testConfig(t), testConfig(t)
	cfgA.CheckpointEvery, cfgB.CheckpointEvery = 10, 10
	cfgB.SigningKeyPath = cfgA.SigningKeyPath
	var logs bytes.Buffer
	a, err := Open(ctx, cfgA, slog.New(slog.NewJSONHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, a, 30)
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	b := openTest(t, cfgB)
	appendN(t, b, 200)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	key, err := LoadSigningKey(cfgA.SigningKeyPath)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Prune(ctx, cfgB.Path, key, time.Now().Add(time.Hour), filepath.Join(t.TempDir(), "b.jsonl"), nil); err != nil {
		t.Fatal(err)
	}
	pub := pubKey(t, cfgA)
	witness, err := ReadWitness(bytes.NewReader(logs.Bytes()))
	if err != nil || len(witness) < 3 {
		t.Fatalf("witness: %d checkpoints, %v", len(witness), err)
	}
	repA, err := VerifyWitnessed(ctx, cfgA.Path, pub, witness)
	if err != nil || !repA.OK || len(repA.LogID) != 32 {
		t.Fatalf("log A against its witness: %+v %v", repA, err)
	}
	repB, err := Verify(ctx, cfgB.Path, pub)
	if err != nil || !repB.OK || repB.PrunedThrough != 200 || repB.LogID == repA.LogID || repB.LogID == "" {
		t.Fatalf("log B after pruning: %+v %v", repB, err)
	}
	for _, w := range witness {
		if w.LogID != repA.LogID {
			t.Fatalf("witnessed checkpoint names log %q, want %q", w.LogID, repA.LogID)
		}
	}
	anchor := readAnchor(t, cfgB.Path)

	// The attack: A's rows and checkpoints removed, B's prune anchor (seq 200,
	// above every row A ever had) put in. Without log ids this is "a log pruned
	// through seq 200" and verifies, even against A's witness, whose checkpoints
	// all fall below the anchor.
	forge := func(t *testing.T, extra ...string) string {
		p := filepath.Join(t.TempDir(), "audit.db")
		copyDB(t, cfgA.Path, p)
		tamper(t, p, append([]string{`DELETE FROM audit_events`, `DELETE FROM audit_lookup`, `DELETE FROM audit_checkpoints`,
			fmt.Sprintf(`INSERT INTO audit_checkpoints (kind, seq, head_hash, ts, key_id, signature, log_id) VALUES ('%s', %d, x'%x', %d, '%s', x'%x', '%s')`,
				anchor.Kind, anchor.Seq, anchor.Head, anchor.TS, anchor.KeyID, anchor.Signature, anchor.LogID)}, extra...)...)
		return p
	}
	t.Run("foreign anchor", func(t *testing.T) {
		rep, err := Verify(ctx, forge(t), pub)
		if err != nil || rep.OK || !strings.Contains(strings.Join(rep.Problems, ";"), "signed for log "+repB.LogID+", not this log") {
			t.Fatalf("foreign anchor not refused: %+v %v", rep, err)
		}
	})
	t.Run("foreign anchor and log id", func(t *testing.T) {
		// The attacker also renames A to B: the database alone is now B's pruned
		// log, and only the witness can tell.
		p := forge(t, fmt.Sprintf(`UPDATE audit_meta SET value = '%s' WHERE key = 'log_id'`, repB.LogID))
		if rep, err := Verify(ctx, p, pub); err != nil || !rep.OK {
			t.Fatalf("the renamed database alone should look whole (that is why witnesses exist): %+v %v", rep, err)
		}
		rep, err := VerifyWitnessed(ctx, p, pub, witness)
		if err != nil || rep.OK || !strings.Contains(strings.Join(rep.Problems, ";"), "signed for log "+repA.LogID+", but this database is log") {
			t.Fatalf("renamed database against A's witness: %+v %v", rep, err)
		}
	})
	t.Run("log id edited", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "audit.db")
		copyDB(t, cfgA.Path, p)
		tamper(t, p, `UPDATE audit_meta SET value = 'ffffffffffffffffffffffffffffffff' WHERE key = 'log_id'`)
		if rep, err := Verify(ctx, p, pub); err != nil || rep.OK || rep.BadCheckpoint == 0 {
			t.Fatalf("edited log id: %+v %v", rep, err)
		}
	})
}

func readAnchor(t *testing.T, path string) checkpoint {
	t.Helper()
	db, err := openDB(path, true, "NORMAL", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	a, err := latestAnchor(context.Background(), db)
	if err != nil || a == nil || a.LogID == "" {
		t.Fatalf("prune anchor: %+v %v", a, err)
	}
	return *a
}

// A database written before checkpoints named their log still verifies, with a
// warning; opening it gives it an id, and its new checkpoints carry it. A checkpoint
// naming no log that was signed after that is one copied in from elsewhere.
func TestLogWithoutIDIsUpgraded(t *testing.T) {
	ctx := context.Background()
	cfg := testConfig(t)
	l := openTest(t, cfg)
	appendN(t, l, 20)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	key, err := LoadSigningKey(cfg.SigningKeyPath)
	if err != nil {
		t.Fatal(err)
	}
	head := readHead(t, cfg.Path, 20)
	old := signCheckpoint(key, "", CheckpointClose, 20, head, time.Now().Add(-time.Hour))
	// What an earlier version left: no log_id column, no id in audit_meta,
	// checkpoints signed under the v1 domain, and no schema_migrations.
	tamper(t, cfg.Path, `DELETE FROM audit_checkpoints`, `DELETE FROM audit_meta WHERE key = 'log_id'`,
		`ALTER TABLE audit_checkpoints DROP COLUMN log_id`, `DROP TABLE schema_migrations`,
		fmt.Sprintf(`INSERT INTO audit_checkpoints (kind, seq, head_hash, ts, key_id, signature) VALUES ('%s', %d, x'%x', %d, '%s', x'%x')`,
			old.Kind, old.Seq, old.Head, old.TS, old.KeyID, old.Signature))
	pub := pubKey(t, cfg)
	rep, err := Verify(ctx, cfg.Path, pub)
	if err != nil || !rep.OK || rep.LogID != "" || !strings.Contains(strings.Join(rep.Warnings, ";"), "1 checkpoints predate per-log ids") {
		t.Fatalf("pre-id database: %+v %v", rep, err)
	}

	l = openTest(t, cfg)
	appendN(t, l, 5)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	rep, err = Verify(ctx, cfg.Path, pub)
	if err != nil || !rep.OK || len(rep.LogID) != 32 || rep.LastSeq != 25 {
		t.Fatalf("upgraded database: %+v %v", rep, err)
	}
	// A v1 checkpoint signed now (after the log began naming itself) is refused.
	late := signCheckpoint(key, "", CheckpointPeriodic, 20, head, time.Now())
	tamper(t, cfg.Path, fmt.Sprintf(`INSERT INTO audit_checkpoints (kind, seq, head_hash, ts, key_id, signature) VALUES ('%s', %d, x'%x', %d, '%s', x'%x')`,
		late.Kind, late.Seq, late.Head, late.TS, late.KeyID, late.Signature))
	rep, err = Verify(ctx, cfg.Path, pub)
	if err != nil || rep.OK || !strings.Contains(strings.Join(rep.Problems, ";"), "names no log but was signed after") {
		t.Fatalf("late unnamed checkpoint: %+v %v", rep, err)
	}
}

func readHead(t *testing.T, path string, seq int64) []byte {
	t.Helper()
	db, err := openDB(path, true, "NORMAL", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var h []byte
	if err := db.QueryRow(`SELECT hash FROM audit_events WHERE seq = ?`, seq).Scan(&h); err != nil {
		t.Fatal(err)
	}
	return h
}
