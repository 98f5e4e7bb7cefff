package audit

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"database/sql"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

// chainDB builds a closed audit database of n rows with checkpoints every cpEvery.
func chainDB(t testing.TB, n, cpEvery int) (Config, ed25519.PublicKey) {
	t.Helper()
	cfg := testConfig(t)
	cfg.CheckpointEvery = cpEvery
	l, err := Open(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, l, n)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return cfg, pubKey(t, cfg)
}

func TestVerify10kRows(t *testing.T) {
	cfg := testConfig(t)
	l := openTest(t, cfg)
	ctx := context.Background()
	done := make(chan error, 20)
	for g := 0; g < 20; g++ {
		go func() {
			for i := 0; i < 500; i++ {
				if err := l.Append(ctx, sampleEvent(i)); err != nil {
					done <- err
					return
				}
			}
			done <- nil
		}()
	}
	for g := 0; g < 20; g++ {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	l.Close()
	rep, err := Verify(ctx, cfg.Path, pubKey(t, cfg))
	if err != nil || !rep.OK || rep.Rows != 10000 || rep.LastSeq != 10000 || rep.Checkpoints < 10 {
		t.Fatalf("%+v %v", rep, err)
	}
	if !strings.HasPrefix(rep.String(), "OK: 10000 rows") {
		t.Fatalf("report string %q", rep.String())
	}
}

func TestVerifyDetectsTampering(t *testing.T) {
	// A second key stands in for an attacker who can write the database but not
	// read the signing key.
	_, attacker, _ := ed25519.GenerateKey(rand.Reader)
	tests := []struct {
		name          string
		tamper        func(t *testing.T, cfg Config)
		wantSeq       int64
		wantCP        bool // a checkpoint must be named
		wantInProblem string
	}{
		{"edited byte in reason", func(t *testing.T, cfg Config) {
			tamper(t, cfg.Path, `UPDATE audit_events SET reason = 'policy says sO' WHERE seq = 57`)
		}, 57, false, "hash does not match"},
		{"edited decision", func(t *testing.T, cfg Config) {
			tamper(t, cfg.Path, `UPDATE audit_events SET decision = 'allow' WHERE seq = 2`)
		}, 2, false, "row altered"},
		{"edited hash column", func(t *testing.T, cfg Config) {
			tamper(t, cfg.Path, `UPDATE audit_events SET hash = zeroblob(32) WHERE seq = 150`)
		}, 150, false, "hash"},
		{"deleted row", func(t *testing.T, cfg Config) {
			tamper(t, cfg.Path, `DELETE FROM audit_events WHERE seq = 88`)
		}, 88, false, "rows missing"},
		{"deleted first row", func(t *testing.T, cfg Config) {
			tamper(t, cfg.Path, `DELETE FROM audit_events WHERE seq = 1`)
		}, 1, false, "expected seq 1"},
		{"reordered rows", func(t *testing.T, cfg Config) {
			// Swap the contents of rows 30 and 31, keeping seq.
			cols := strings.Split(rowColumns, ", ")[1:]
			var sets []string
			for _, c := range cols {
				sets = append(sets, fmt.Sprintf("%s = (SELECT %s FROM audit_events WHERE seq = 62 - audit_events.seq)", c, c))
			}
			tamper(t, cfg.Path,
				`CREATE TABLE tmp AS SELECT * FROM audit_events WHERE seq IN (30, 31)`,
				`UPDATE audit_events SET `+strings.ReplaceAll(strings.Join(sets, ", "), "FROM audit_events WHERE seq = 62 - audit_events.seq", "FROM tmp WHERE tmp.seq = 61 - audit_events.seq")+` WHERE seq IN (30, 31)`,
				`DROP TABLE tmp`)
		}, 30, false, ""},
		{"truncated after checkpoint", func(t *testing.T, cfg Config) {
			tamper(t, cfg.Path, `DELETE FROM audit_events WHERE seq > 190`)
		}, 0, true, "rows removed"},
		{"chain recomputed without the key", func(t *testing.T, cfg Config) {
			recompute(t, cfg.Path, 40, nil)
		}, 0, true, "chain rewritten"},
		{"chain and checkpoints re-signed with another key", func(t *testing.T, cfg Config) {
			recompute(t, cfg.Path, 40, attacker)
		}, 0, true, "not the given key"},
		{"checkpoints deleted after recompute", func(t *testing.T, cfg Config) {
			recompute(t, cfg.Path, 1, nil)
			tamper(t, cfg.Path, `DELETE FROM audit_checkpoints`)
		}, 0, false, "no signed checkpoint"},
		{"forged checkpoint signature", func(t *testing.T, cfg Config) {
			tamper(t, cfg.Path, `UPDATE audit_checkpoints SET signature = zeroblob(64) WHERE id = 2`)
		}, 0, true, "signature does not verify"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, pub := chainDB(t, 200, 50)
			tc.tamper(t, cfg)
			rep, err := Verify(context.Background(), cfg.Path, pub)
			if err != nil {
				t.Fatal(err)
			}
			if rep.OK {
				t.Fatalf("tampering not detected: %+v", rep)
			}
			if tc.wantSeq != 0 && rep.BadSeq != tc.wantSeq {
				t.Errorf("bad seq %d, want %d (%v)", rep.BadSeq, tc.wantSeq, rep.Problems)
			}
			if tc.wantCP && rep.BadCheckpoint == 0 {
				t.Errorf("no checkpoint named: %v", rep.Problems)
			}
			if !strings.Contains(rep.String(), tc.wantInProblem) {
				t.Errorf("report %q does not say %q", rep.String(), tc.wantInProblem)
			}
		})
	}
}

// recompute rewrites every row from seq `from` on with a changed reason and a
// consistent chain; with key non-nil it also replaces the checkpoints, signed
// with that key.
func recompute(t *testing.T, path string, from int64, key ed25519.PrivateKey) {
	t.Helper()
	db, err := openDB(path, false, "NORMAL", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	rows, err := db.QueryContext(ctx, `SELECT `+rowColumns+` FROM audit_events ORDER BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	var all []row
	for rows.Next() {
		var r row
		if err := rows.Scan(r.scanDest()...); err != nil {
			t.Fatal(err)
		}
		all = append(all, r)
	}
	rows.Close()
	hs := newHasher()
	prev := make([]byte, 32)
	var stmts []string
	for i := range all {
		r := &all[i]
		if r.Seq >= from {
			r.Reason = "nothing to see"
			r.PrevHash = prev
			r.Hash = hs.rowHash(r)
			stmts = append(stmts, fmt.Sprintf(`UPDATE audit_events SET reason = 'nothing to see', prev_hash = x'%x', hash = x'%x' WHERE seq = %d`, r.PrevHash, r.Hash, r.Seq))
		}
		prev = r.Hash
	}
	if key != nil {
		logID, err := readLogID(ctx, db)
		if err != nil {
			t.Fatal(err)
		}
		stmts = append(stmts, `DELETE FROM audit_checkpoints`)
		for i := 49; i < len(all); i += 50 {
			c := signCheckpoint(key, logID, CheckpointPeriodic, all[i].Seq, all[i].Hash, testNow())
			stmts = append(stmts, fmt.Sprintf(`INSERT INTO audit_checkpoints (kind, seq, head_hash, ts, key_id, signature, log_id) VALUES ('%s', %d, x'%x', %d, '%s', x'%x', '%s')`,
				c.Kind, c.Seq, c.Head, c.TS, c.KeyID, c.Signature, c.LogID))
		}
	}
	db.Close()
	tamper(t, path, stmts...)
}

// FuzzVerifyOneByteChange: any one-byte change to any stored field of any row is
// caught by Verify, which names that row (or, for seq, the gap it leaves).
func FuzzVerifyOneByteChange(f *testing.F) {
	f.Add(uint8(3), uint8(5), uint16(0), uint8(1))
	f.Add(uint8(0), uint8(0), uint16(0), uint8(0x80))
	f.Add(uint8(9), uint8(25), uint16(31), uint8(0xff))
	f.Add(uint8(7), uint8(15), uint16(12), uint8(0x20))
	f.Add(uint8(1), uint8(1), uint16(7), uint8(0x01))
	cfg, pub := chainDB(f, 10, 4)
	cols := strings.Split(rowColumns, ", ")
	f.Fuzz(func(t *testing.T, rowIdx, colIdx uint8, pos uint16, flip uint8) {
		if flip == 0 {
			flip = 1
		}
		seq := int64(rowIdx%10) + 1
		col := cols[int(colIdx)%len(cols)]
		// Work on a copy so every input starts from the same chain.
		path := t.TempDir() + "/audit.db"
		copyDB(t, cfg.Path, path)
		db, err := openDB(path, false, "NORMAL", 0)
		if err != nil {
			t.Fatal(err)
		}
		var val any
		if err := db.QueryRow(`SELECT `+col+` FROM audit_events WHERE seq = ?`, seq).Scan(&val); err != nil {
			t.Fatal(err)
		}
		db.Close()
		var set string
		switch v := val.(type) {
		case int64:
			b := uint(pos%8) * 8
			nv := v ^ int64(uint64(flip)<<b)
			set = fmt.Sprintf("%d", nv)
			if col == "seq" {
				// A seq moved onto another row's seq is refused by the primary
				// key: use a free value instead, still one byte away when possible.
				set = fmt.Sprintf("(CASE WHEN EXISTS (SELECT 1 FROM audit_events WHERE seq = %d) THEN %d ELSE %d END)", nv, v+1000, nv)
			}
		case string, []byte:
			var b []byte
			if s, ok := v.(string); ok {
				b = []byte(s)
			} else {
				b = append([]byte(nil), v.([]byte)...)
			}
			if len(b) == 0 {
				b = []byte{flip} // an empty field gains one byte
			} else {
				b[int(pos)%len(b)] ^= flip
			}
			if _, ok := v.(string); ok {
				set = fmt.Sprintf("CAST(x'%x' AS TEXT)", b)
			} else {
				set = fmt.Sprintf("x'%x'", b)
			}
		default:
			t.Fatalf("unexpected type %T in %s", val, col)
		}
		tamper(t, path, fmt.Sprintf(`UPDATE audit_events SET %s = %s WHERE seq = %d`, col, set, seq))
		rep, err := Verify(context.Background(), path, pub)
		if err != nil {
			t.Fatal(err)
		}
		if rep.OK {
			t.Fatalf("change to %s of seq %d not detected", col, seq)
		}
		if rep.BadSeq == 0 && rep.BadCheckpoint == 0 {
			t.Fatalf("fault not named: %+v", rep)
		}
		if col != "seq" && rep.BadSeq != seq && rep.BadCheckpoint == 0 {
			t.Fatalf("named seq %d, changed seq %d: %v", rep.BadSeq, seq, rep.Problems)
		}
	})
}

// The checkpoints a server logs are a witness outside the database: cutting off the
// newest rows together with the checkpoints that cover them passes a check of the
// database alone (the rest of the chain is intact), and fails against the witness.
func TestVerifyWitnessCatchesTruncation(t *testing.T) {
	cfg := testConfig(t)
	cfg.CheckpointEvery = 10
	var logs bytes.Buffer
	l, err := Open(context.Background(), cfg, slog.New(slog.NewJSONHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, l, 30)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	witness, err := ReadWitness(bytes.NewReader(logs.Bytes()))
	if err != nil || len(witness) < 3 {
		t.Fatalf("witness: %d checkpoints, %v\n%s", len(witness), err, logs.String())
	}
	pub := pubKey(t, cfg)
	if rep, err := VerifyWitnessed(context.Background(), cfg.Path, pub, witness); err != nil || !rep.OK {
		t.Fatalf("intact log against its witness: %+v %v", rep, err)
	}

	// A careful editor trims the lookup index too (verify catches an index left claiming
	// the removed rows).
	tamper(t, cfg.Path, `DELETE FROM audit_events WHERE seq > 15`, `DELETE FROM audit_checkpoints WHERE seq > 15`,
		`DELETE FROM audit_lookup WHERE seq > 15`, `UPDATE audit_meta SET value = '15' WHERE key = 'lookup_through'`)
	if rep, err := Verify(context.Background(), cfg.Path, pub); err != nil || !rep.OK || rep.LastSeq != 15 {
		t.Fatalf("the database alone should still look whole (that is the point of a witness): %+v %v", rep, err)
	}
	rep, err := VerifyWitnessed(context.Background(), cfg.Path, pub, witness)
	if err != nil || rep.OK || !strings.Contains(strings.Join(rep.Problems, ";"), "seq 20) witnessed at line") ||
		!strings.Contains(strings.Join(rep.Problems, ";"), "the chain ends at seq 15 (rows removed)") {
		t.Fatalf("truncation against the witness: %+v %v", rep, err)
	}

	// A witness line with an altered head or signature is itself a fault.
	forged := bytes.Replace(logs.Bytes(), []byte(`"seq":10,`), []byte(`"seq":11,`), 1)
	fw, err := ReadWitness(bytes.NewReader(forged))
	if err != nil {
		t.Fatal(err)
	}
	rep, err = VerifyWitnessed(context.Background(), cfg.Path, pub, fw)
	if err != nil || rep.OK || !strings.Contains(strings.Join(rep.Problems, ";"), "seq 11) witnessed at line") ||
		!strings.Contains(strings.Join(rep.Problems, ";"), "signature does not verify") {
		t.Fatalf("forged witness line: %+v %v", rep, err)
	}
	// A line that claims to be a checkpoint but is not whole is an error, not skipped.
	if _, err := ReadWitness(strings.NewReader(`{"msg":"audit checkpoint","kind":"periodic","seq":3}` + "\n")); err == nil ||
		!strings.Contains(err.Error(), "line 1") {
		t.Fatalf("partial witness entry: %v", err)
	}
}

// Dropping the append-only triggers is itself a fault: only an edit of the file
// does it.
func TestVerifyMissingTriggersIsAFault(t *testing.T) {
	cfg := testConfig(t)
	l := openTest(t, cfg)
	appendN(t, l, 5)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", cfg.Path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`DROP TRIGGER audit_events_no_delete`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	rep, err := Verify(context.Background(), cfg.Path, pubKey(t, cfg))
	if err != nil || rep.OK || !strings.Contains(rep.String(), "append-only triggers are missing") {
		t.Fatalf("verify with a dropped trigger: %+v %v", rep, err)
	}
}
