package audit

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"
)

const archiveFormat = "portcullis-audit-archive-v1"

// archiveHeader is the first line of an archive; archiveCheckpoint the last. Rows
// in between are stored columns exactly (hashes base64), so the chain can be
// recomputed from the file alone.
type archiveHeader struct {
	Format     string `json:"format"`
	FromSeq    int64  `json:"from_seq"`
	ThroughSeq int64  `json:"through_seq"`
	PrevHash   []byte `json:"prev_hash"`
}

type archiveCheckpoint struct {
	Checkpoint struct {
		Kind      string `json:"kind"`
		Seq       int64  `json:"seq"`
		Head      []byte `json:"head_hash"`
		TS        int64  `json:"ts"`
		KeyID     string `json:"key_id"`
		Signature []byte `json:"signature"`
		LogID     string `json:"log_id,omitempty"` // absent in archives written before logs had ids
	} `json:"checkpoint"`
}

// PruneResult says what Prune removed.
type PruneResult struct {
	ThroughSeq int64  // rows up to and including this seq were archived and deleted
	Rows       int64  // how many
	Archive    string // the verified archive file
	// Unshipped counts rows older than the cut-off kept because the central store has
	// not acknowledged them yet (audit.db.shipped): pruned, they could never reach it.
	Unshipped int64
}

// Prune moves rows older than before into a new archive file and deletes them, in
// this order, stopping at the first failure: verify the database; write the
// archive (JSON lines, fsynced, never overwriting); read it back and verify its
// chain and its signed prune checkpoint; then, in one transaction, check the rows
// are unchanged, store the same checkpoint as the prune anchor, drop the delete
// trigger, delete, and re-create the trigger. Rows are pruned by seq: up to the
// last row before the first one at or after before.
func Prune(ctx context.Context, dbPath string, key ed25519.PrivateKey, before time.Time, archivePath string, logger *slog.Logger) (PruneResult, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	pub := key.Public().(ed25519.PublicKey)
	rep, err := Verify(ctx, dbPath, pub)
	if err != nil {
		return PruneResult{}, err
	}
	if !rep.OK {
		return PruneResult{}, fmt.Errorf("audit: prune refused: database does not verify: %s", rep.String())
	}
	if _, err := os.Stat(archivePath); err == nil {
		return PruneResult{}, fmt.Errorf("audit: prune refused: archive %s already exists", archivePath)
	}
	db, err := openDB(dbPath, false, "FULL", 0)
	if err != nil {
		return PruneResult{}, err
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	// A database no server of this version has opened yet gains its log id here, so
	// that the anchor names the log it belongs to.
	if err := migrate(ctx, db); err != nil {
		return PruneResult{}, err
	}
	logID, err := readLogID(ctx, db)
	if err != nil {
		return PruneResult{}, err
	}

	var through sql.NullInt64
	if err := db.QueryRowContext(ctx, `SELECT MIN(seq) - 1 FROM audit_events WHERE ts >= ?`, before.UnixNano()).Scan(&through); err != nil {
		return PruneResult{}, fmt.Errorf("audit: prune: %w", err)
	}
	if !through.Valid { // every row is older than the cut-off
		if err := db.QueryRowContext(ctx, `SELECT MAX(seq) FROM audit_events`).Scan(&through); err != nil {
			return PruneResult{}, fmt.Errorf("audit: prune: %w", err)
		}
	}
	from := rep.PrunedThrough + 1
	if !through.Valid || through.Int64 < from {
		return PruneResult{}, nil // nothing older than the cut-off
	}
	n := through.Int64
	// A log shipped to a central store keeps what it has not acknowledged.
	var unshipped int64
	if _, err := os.Stat(dbPath + ShipMarkSuffix); err == nil {
		if shipped, _ := newShipMark(dbPath, logID).load(); shipped < n {
			unshipped, n = n-max(shipped, from-1), max(shipped, from-1)
		}
	}
	if n < from {
		return PruneResult{Unshipped: unshipped}, nil
	}

	cp, err := writeArchive(ctx, db, archivePath, key, logID, from, n)
	if err != nil {
		return PruneResult{}, err
	}
	if _, err := VerifyArchive(archivePath, pub); err != nil {
		return PruneResult{}, fmt.Errorf("audit: prune refused: archive does not verify: %w", err)
	}

	if err := deleteThrough(ctx, db, cp, from); err != nil {
		return PruneResult{}, err
	}
	logger.Info("audit prune anchor", "seq", cp.Seq, "head_hash", fmt.Sprintf("%x", cp.Head),
		"key_id", cp.KeyID, "log_id", cp.LogID, "signature", fmt.Sprintf("%x", cp.Signature), "archive", archivePath,
		"rows", n-from+1)
	after, err := Verify(ctx, dbPath, pub)
	if err != nil {
		return PruneResult{}, err
	}
	if !after.OK {
		return PruneResult{}, fmt.Errorf("audit: prune: chain does not verify after pruning: %s", after.String())
	}
	return PruneResult{ThroughSeq: n, Rows: n - from + 1, Archive: archivePath, Unshipped: unshipped}, nil
}

func writeArchive(ctx context.Context, db *sql.DB, path string, key ed25519.PrivateKey, logID string, from, through int64) (checkpoint, error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".audit-archive-*")
	if err != nil {
		return checkpoint{}, fmt.Errorf("audit: creating archive: %w", err)
	}
	defer os.Remove(tmp.Name()) // no-op once renamed
	defer tmp.Close()
	bw := bufio.NewWriterSize(tmp, 256*1024)
	enc := json.NewEncoder(bw)

	rows, err := db.QueryContext(ctx, `SELECT `+rowColumns+` FROM audit_events WHERE seq >= ? AND seq <= ? ORDER BY seq`, from, through)
	if err != nil {
		return checkpoint{}, fmt.Errorf("audit: archiving: %w", err)
	}
	defer rows.Close()
	var r row
	var head []byte
	first := true
	for rows.Next() {
		if err := rows.Scan(r.scanDest()...); err != nil {
			return checkpoint{}, fmt.Errorf("audit: archiving: %w", err)
		}
		if first {
			if err := enc.Encode(archiveHeader{Format: archiveFormat, FromSeq: from, ThroughSeq: through, PrevHash: r.PrevHash}); err != nil {
				return checkpoint{}, fmt.Errorf("audit: writing archive: %w", err)
			}
			first = false
		}
		if err := enc.Encode(&r); err != nil {
			return checkpoint{}, fmt.Errorf("audit: writing archive: %w", err)
		}
		head = bytes.Clone(r.Hash)
	}
	if err := rows.Err(); err != nil {
		return checkpoint{}, fmt.Errorf("audit: archiving: %w", err)
	}
	if first {
		return checkpoint{}, fmt.Errorf("audit: archiving: no rows between seq %d and %d", from, through)
	}
	cp := signCheckpoint(key, logID, CheckpointPrune, through, head, time.Now())
	var ac archiveCheckpoint
	ac.Checkpoint.Kind, ac.Checkpoint.Seq, ac.Checkpoint.Head = cp.Kind, cp.Seq, cp.Head
	ac.Checkpoint.TS, ac.Checkpoint.KeyID, ac.Checkpoint.Signature = cp.TS, cp.KeyID, cp.Signature
	ac.Checkpoint.LogID = cp.LogID
	if err := enc.Encode(&ac); err != nil {
		return checkpoint{}, fmt.Errorf("audit: writing archive: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return checkpoint{}, fmt.Errorf("audit: writing archive: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		return checkpoint{}, fmt.Errorf("audit: syncing archive: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return checkpoint{}, fmt.Errorf("audit: closing archive: %w", err)
	}
	// Link, not rename: it fails if the archive appeared meanwhile.
	if err := os.Link(tmp.Name(), path); err != nil {
		return checkpoint{}, fmt.Errorf("audit: placing archive %s: %w", path, err)
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		d.Sync()
		d.Close()
	}
	return cp, nil
}

// ArchiveReport describes a verified archive.
type ArchiveReport struct {
	FromSeq, ThroughSeq int64
	Rows                int64
	KeyID               string
	LogID               string // the log the rows were pruned from ("" for archives written before logs had ids)
}

// VerifyArchive recomputes the chain in an archive written by Prune and checks
// its closing prune checkpoint against pub.
func VerifyArchive(path string, pub ed25519.PublicKey) (ArchiveReport, error) {
	f, err := os.Open(path)
	if err != nil {
		return ArchiveReport{}, fmt.Errorf("audit: opening archive: %w", err)
	}
	defer f.Close()
	return verifyArchive(f, pub)
}

func verifyArchive(rd io.Reader, pub ed25519.PublicKey) (ArchiveReport, error) {
	dec := json.NewDecoder(bufio.NewReaderSize(rd, 256*1024))
	dec.DisallowUnknownFields()
	var hdr archiveHeader
	if err := dec.Decode(&hdr); err != nil || hdr.Format != archiveFormat {
		return ArchiveReport{}, errors.New("audit: archive: bad or missing header line")
	}
	rep := ArchiveReport{FromSeq: hdr.FromSeq, ThroughSeq: hdr.ThroughSeq}
	hs := newHasher()
	prev, expect := hdr.PrevHash, hdr.FromSeq
	for seq := hdr.FromSeq; seq <= hdr.ThroughSeq; seq++ {
		var r row
		if err := dec.Decode(&r); err != nil {
			return rep, fmt.Errorf("audit: archive: reading row seq %d: %w", seq, err)
		}
		if why := checkRow(hs, &r, expect, prev); why != "" {
			return rep, fmt.Errorf("audit: archive: row seq %d: %s", expect, why)
		}
		prev, expect = r.Hash, r.Seq+1
		rep.Rows++
	}
	var ac archiveCheckpoint
	if err := dec.Decode(&ac); err != nil {
		return rep, fmt.Errorf("audit: archive: reading closing checkpoint: %w", err)
	}
	c := checkpoint{Kind: ac.Checkpoint.Kind, Seq: ac.Checkpoint.Seq, Head: ac.Checkpoint.Head,
		TS: ac.Checkpoint.TS, KeyID: ac.Checkpoint.KeyID, Signature: ac.Checkpoint.Signature,
		LogID: ac.Checkpoint.LogID}
	if c.Kind != CheckpointPrune || c.Seq != hdr.ThroughSeq || !bytes.Equal(c.Head, prev) {
		return rep, errors.New("audit: archive: closing checkpoint does not cover the archived rows")
	}
	if why := c.verifySig(pub); why != "" {
		return rep, fmt.Errorf("audit: archive: closing checkpoint: %s", why)
	}
	if dec.More() {
		return rep, errors.New("audit: archive: data after the closing checkpoint")
	}
	rep.KeyID, rep.LogID = c.KeyID, c.LogID
	return rep, nil
}

// deleteThrough stores the anchor and deletes rows [from, cp.Seq] in one
// transaction, after checking nothing changed since the archive was written.
func deleteThrough(ctx context.Context, db *sql.DB, cp checkpoint, from int64) error {
	tx, err := db.BeginTx(ctx, nil) // BEGIN IMMEDIATE (DSN): no writer slips in between
	if err != nil {
		return fmt.Errorf("audit: prune: begin: %w", err)
	}
	defer tx.Rollback()
	var h []byte
	var first int64
	if err := tx.QueryRowContext(ctx, `SELECT hash FROM audit_events WHERE seq = ?`, cp.Seq).Scan(&h); err != nil {
		return fmt.Errorf("audit: prune: re-reading seq %d: %w", cp.Seq, err)
	}
	if err := tx.QueryRowContext(ctx, `SELECT MIN(seq) FROM audit_events`).Scan(&first); err != nil {
		return fmt.Errorf("audit: prune: %w", err)
	}
	if !bytes.Equal(h, cp.Head) || first != from {
		return errors.New("audit: prune refused: rows changed while archiving")
	}
	steps := []struct {
		sql  string
		args []any
	}{
		{insertCheckpointSQL, cp.insertArgs()},
		{`DROP TRIGGER audit_events_no_delete`, nil},
		{`DELETE FROM audit_events WHERE seq <= ?`, []any{cp.Seq}},
		{`DELETE FROM audit_lookup WHERE seq <= ?`, []any{cp.Seq}},
		{noDeleteTrigger, nil},
	}
	for _, s := range steps {
		if _, err := tx.ExecContext(ctx, s.sql, s.args...); err != nil {
			return fmt.Errorf("audit: prune: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("audit: prune: commit: %w", err)
	}
	return nil
}
