package audit

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"log/slog"
	"time"
)

func (l *Log) checkpointLogged(kind string) {
	if err := l.writeCheckpoint(context.Background(), kind); err != nil {
		l.logger.Error("audit: checkpoint not written", "seq", l.iseq, "err", err)
	}
}

// writeCheckpoint signs the head of the rows in SQLite and stores it; it also goes
// to the witness file and the log, witnesses outside the database.
func (l *Log) writeCheckpoint(ctx context.Context, kind string) error {
	now := time.Now()
	c := signCheckpoint(l.key, l.logID, kind, l.iseq, l.ihead, now)
	if err := l.storeCheckpoint(ctx, &c); err != nil {
		return fmt.Errorf("audit: storing checkpoint at seq %d: %w", c.Seq, err)
	}
	l.lastCP, l.lastCPTime = c.Seq, now
	l.checkpoints.Add(1)
	// After the commit: a witness never names a checkpoint the database lost.
	if err := l.wfile.checkpoint(now, &c); err != nil {
		l.witnessFailed(err)
	}
	l.witness().Info("audit checkpoint", "kind", c.Kind, "seq", c.Seq,
		"head_hash", hex.EncodeToString(c.Head), "ts", c.TS, "key_id", c.KeyID, "log_id", c.LogID,
		"signature", base64.StdEncoding.EncodeToString(c.Signature))
	return nil
}

// witnessFailed counts a failed write to the witness file and logs it at most once a
// minute. The checkpoint stands (it is in the database and the log); the file misses
// a line, which only narrows what it can witness.
func (l *Log) witnessFailed(err error) {
	l.witnessErrors.Add(1)
	if time.Since(l.witnessWarned) > time.Minute {
		l.witnessWarned = time.Now()
		l.logger.Error("audit: witness file not written", "path", l.cfg.WitnessPath, "err", err)
	}
}

// witness is the logger for checkpoint lines: Config.Witness, else the log's logger.
func (l *Log) witness() *slog.Logger {
	if l.cfg.Witness != nil {
		return l.cfg.Witness
	}
	return l.logger
}

// storeCheckpoint stores c durably before it is logged. Under synchronous=NORMAL a
// commit reaches the WAL without an fsync, so an OS crash could lose a checkpoint the
// log already holds, and the witness would then report the rows it covers as removed.
// Its commit therefore runs at synchronous=FULL whatever the setting: one fsync of
// the WAL per checkpoint, which makes the rows before it durable too.
func (l *Log) storeCheckpoint(ctx context.Context, c *checkpoint) error {
	conn, err := l.wdb.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	if l.cfg.Synchronous != "FULL" {
		if _, err := conn.ExecContext(ctx, "PRAGMA synchronous=FULL"); err != nil {
			return err
		}
		defer func() {
			if _, err := conn.ExecContext(context.Background(), "PRAGMA synchronous="+l.cfg.Synchronous); err != nil {
				l.logger.Warn("audit: could not restore synchronous after a checkpoint; commits stay FULL", "err", err)
			}
		}()
	}
	if l.cfg.checkpointSyncHook != nil {
		var level int
		if err := conn.QueryRowContext(ctx, "PRAGMA synchronous").Scan(&level); err != nil {
			return err
		}
		l.cfg.checkpointSyncHook(level)
	}
	_, err = conn.ExecContext(ctx, insertCheckpointSQL, c.insertArgs()...)
	return err
}

// Checkpoint signing domains. v2 names the log (LogID), so that a checkpoint signed
// for one log is refused by another that shares the signing key; v1 checkpoints,
// written before logs had ids, still verify (see verifyTx).
const (
	checkpointDomainV1 = "portcullis-audit-checkpoint-v1"
	checkpointDomain   = "portcullis-audit-checkpoint-v2"
)

// checkpoint is one signed statement "the chain of log LogID up to seq has head
// hash Head".
type checkpoint struct {
	ID        int64
	Kind      string
	Seq       int64
	Head      []byte
	TS        int64
	KeyID     string
	Signature []byte
	LogID     string // "" only for checkpoints written before logs had ids
}

func (c *checkpoint) message() []byte {
	b := make([]byte, 0, 160)
	if c.LogID == "" {
		b = append(b, checkpointDomainV1...)
	} else {
		b = append(b, checkpointDomain...)
		b = appendStr(b, c.LogID)
	}
	b = appendStr(b, c.Kind)
	b = binary.BigEndian.AppendUint64(b, uint64(c.Seq))
	b = binary.BigEndian.AppendUint32(b, uint32(len(c.Head)))
	b = append(b, c.Head...)
	return binary.BigEndian.AppendUint64(b, uint64(c.TS))
}

func signCheckpoint(key ed25519.PrivateKey, logID, kind string, seq int64, head []byte, now time.Time) checkpoint {
	c := checkpoint{Kind: kind, Seq: seq, Head: head, TS: now.UnixNano(), LogID: logID,
		KeyID: KeyID(key.Public().(ed25519.PublicKey))}
	c.Signature = ed25519.Sign(key, c.message())
	return c
}

// verifySig checks the checkpoint against pub; the reason is empty when it holds.
func (c *checkpoint) verifySig(pub ed25519.PublicKey) string {
	if c.KeyID != KeyID(pub) {
		return fmt.Sprintf("signed by key %s, not the given key %s", c.KeyID, KeyID(pub))
	}
	if !ed25519.Verify(pub, c.message(), c.Signature) {
		return "signature does not verify"
	}
	return ""
}
