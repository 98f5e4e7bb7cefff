package audit

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// pruneFixture writes 100 old rows and 50 recent ones and closes the log.
func pruneFixture(t *testing.T) (Config, time.Time) {
	t.Helper()
	cfg := testConfig(t)
	cfg.CheckpointEvery = 30
	l, err := Open(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for i := 0; i < 150; i++ {
		ev := sampleEvent(i)
		ev.Time = now.Add(-2 * time.Hour)
		if i >= 100 {
			ev.Time = now
		}
		if err := l.Append(context.Background(), ev); err != nil {
			t.Fatal(err)
		}
	}
	l.Close()
	return cfg, now.Add(-time.Hour)
}

func TestPruneArchivesVerifiesAndKeepsChain(t *testing.T) {
	cfg, cutoff := pruneFixture(t)
	ctx := context.Background()
	key, err := LoadSigningKey(cfg.SigningKeyPath)
	if err != nil {
		t.Fatal(err)
	}
	archive := filepath.Join(t.TempDir(), "archive-1.jsonl")
	res, err := Prune(ctx, cfg.Path, key, cutoff, archive, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.ThroughSeq != 100 || res.Rows != 100 {
		t.Fatalf("pruned %+v, want through 100", res)
	}
	pub := pubKey(t, cfg)
	ar, err := VerifyArchive(archive, pub)
	if err != nil || ar.Rows != 100 || ar.FromSeq != 1 || ar.ThroughSeq != 100 {
		t.Fatalf("archive: %+v %v", ar, err)
	}
	rep, err := Verify(ctx, cfg.Path, pub)
	if err != nil || !rep.OK || rep.Rows != 50 || rep.FirstSeq != 101 || rep.PrunedThrough != 100 {
		t.Fatalf("after prune: %+v %v", rep, err)
	}
	// The delete trigger is back.
	if len(rep.Warnings) != 0 {
		t.Fatalf("warnings: %v", rep.Warnings)
	}
	// The writer carries on from the surviving chain, and a second prune of
	// everything leaves an empty table that still verifies and resumes.
	l := openTest(t, cfg)
	appendN(t, l, 5)
	l.Close()
	archive2 := filepath.Join(t.TempDir(), "archive-2.jsonl")
	res, err = Prune(ctx, cfg.Path, key, time.Now().Add(time.Hour), archive2, nil)
	if err != nil || res.ThroughSeq != 155 || res.Rows != 55 {
		t.Fatalf("second prune: %+v %v", res, err)
	}
	l = openTest(t, cfg)
	ev := sampleEvent(1)
	if err := l.Append(ctx, ev); err != nil || ev.Seq != 156 {
		t.Fatalf("append after full prune: seq %d %v", ev.Seq, err)
	}
	l.Close()
	rep, err = Verify(ctx, cfg.Path, pub)
	if err != nil || !rep.OK || rep.Rows != 1 || rep.PrunedThrough != 155 {
		t.Fatalf("after second prune: %+v %v", rep, err)
	}
	// Nothing older than the cut-off: a no-op, and no archive appears.
	archive3 := filepath.Join(t.TempDir(), "archive-3.jsonl")
	if res, err := Prune(ctx, cfg.Path, key, time.Now().Add(-24*time.Hour), archive3, nil); err != nil || res.Rows != 0 {
		t.Fatalf("no-op prune: %+v %v", res, err)
	}
	if _, err := os.Stat(archive3); err == nil {
		t.Fatal("no-op prune wrote an archive")
	}
}

func TestPruneRefuses(t *testing.T) {
	ctx := context.Background()
	t.Run("tampered database", func(t *testing.T) {
		cfg, cutoff := pruneFixture(t)
		tamper(t, cfg.Path, `UPDATE audit_events SET reason = 'x' WHERE seq = 10`)
		key, _ := LoadSigningKey(cfg.SigningKeyPath)
		archive := filepath.Join(t.TempDir(), "a.jsonl")
		if _, err := Prune(ctx, cfg.Path, key, cutoff, archive, nil); err == nil || !strings.Contains(err.Error(), "seq 10") {
			t.Fatalf("want refusal naming seq 10, got %v", err)
		}
		if _, err := os.Stat(archive); err == nil {
			t.Fatal("archive written despite refusal")
		}
		var n int64
		rd, _ := OpenReader(ctx, cfg.Path)
		rd.db.QueryRow(`SELECT count(*) FROM audit_events`).Scan(&n)
		rd.Close()
		if n != 150 {
			t.Fatalf("rows deleted despite refusal: %d left", n)
		}
	})
	t.Run("archive exists", func(t *testing.T) {
		cfg, cutoff := pruneFixture(t)
		key, _ := LoadSigningKey(cfg.SigningKeyPath)
		archive := filepath.Join(t.TempDir(), "a.jsonl")
		os.WriteFile(archive, []byte("keep me"), 0o600)
		if _, err := Prune(ctx, cfg.Path, key, cutoff, archive, nil); err == nil || !strings.Contains(err.Error(), "already exists") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("wrong key", func(t *testing.T) {
		cfg, cutoff := pruneFixture(t)
		other := testConfig(t)
		l := openTest(t, other) // generates another key
		l.Close()
		key, _ := LoadSigningKey(other.SigningKeyPath)
		if _, err := Prune(ctx, cfg.Path, key, cutoff, filepath.Join(t.TempDir(), "a.jsonl"), nil); err == nil {
			t.Fatal("pruned with a key that does not verify the chain")
		}
	})
}

func TestPruneAnchorTampering(t *testing.T) {
	ctx := context.Background()
	cfg, cutoff := pruneFixture(t)
	key, _ := LoadSigningKey(cfg.SigningKeyPath)
	archive := filepath.Join(t.TempDir(), "a.jsonl")
	if _, err := Prune(ctx, cfg.Path, key, cutoff, archive, nil); err != nil {
		t.Fatal(err)
	}
	pub := pubKey(t, cfg)
	t.Run("archive edited", func(t *testing.T) {
		b, _ := os.ReadFile(archive)
		edited := bytes.Replace(b, []byte(`"req-42"`), []byte(`"req-43"`), 1)
		p := filepath.Join(t.TempDir(), "edited.jsonl")
		os.WriteFile(p, edited, 0o600)
		if _, err := VerifyArchive(p, pub); err == nil || !strings.Contains(err.Error(), "seq 43") {
			t.Fatalf("edited archive: %v", err)
		}
	})
	t.Run("anchor deleted", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "audit.db")
		copyDB(t, cfg.Path, p)
		tamper(t, p, `DELETE FROM audit_checkpoints WHERE kind = 'prune'`)
		rep, err := Verify(ctx, p, pub)
		if err != nil || rep.OK || rep.BadSeq != 1 {
			t.Fatalf("anchor deletion not caught: %+v %v", rep, err)
		}
	})
	t.Run("more rows deleted past the anchor", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "audit.db")
		copyDB(t, cfg.Path, p)
		tamper(t, p, `DELETE FROM audit_events WHERE seq <= 110`)
		rep, err := Verify(ctx, p, pub)
		if err != nil || rep.OK || rep.BadSeq != 101 {
			t.Fatalf("extra deletion not caught: %+v %v", rep, err)
		}
	})
}

// A log shipped to a central store keeps, whatever their age, the rows the store has
// not acknowledged (audit.db.shipped): pruned, they could never reach it.
func TestPruneKeepsRowsTheCentralStoreHasNotAcknowledged(t *testing.T) {
	cfg, cutoff := pruneFixture(t)
	ctx := context.Background()
	key, err := LoadSigningKey(cfg.SigningKeyPath)
	if err != nil {
		t.Fatal(err)
	}
	newShipMark(cfg.Path, logIDOf(t, cfg.Path)).save(60, 0)
	res, err := Prune(ctx, cfg.Path, key, cutoff, filepath.Join(t.TempDir(), "archive.jsonl"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.ThroughSeq != 60 || res.Rows != 60 || res.Unshipped != 40 {
		t.Fatalf("pruned %+v; want through seq 60, 60 rows, 40 kept unshipped", res)
	}
}

// A log whose shipper started but never reached the central store (down since day one)
// has a mark at seq 0: prune keeps every row.
func TestPruneKeepsEveryRowOfALogWhoseShipperNeverReachedTheCentralStore(t *testing.T) {
	cfg, cutoff := pruneFixture(t)
	c := openCentralTest(t, centralURL(t))
	s, err := NewShipper(context.Background(), c, ShipperConfig{Path: cfg.Path}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.rd.Close(); err != nil { // never ships
		t.Fatal(err)
	}
	key, err := LoadSigningKey(cfg.SigningKeyPath)
	if err != nil {
		t.Fatal(err)
	}
	res, err := Prune(context.Background(), cfg.Path, key, cutoff, filepath.Join(t.TempDir(), "archive.jsonl"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Rows != 0 || res.Unshipped != 100 {
		t.Fatalf("pruned %+v; want nothing pruned, 100 rows kept unshipped", res)
	}
}
