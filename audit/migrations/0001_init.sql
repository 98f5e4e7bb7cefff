-- The audit trail. Columns are NOT NULL with defaults so that a stored row has
-- exactly one encoding: no NULL-versus-empty ambiguity under the hash.
-- Every statement is IF NOT EXISTS: a database created before schema_migrations
-- is brought to this shape by running it again (see legacyVersion).
CREATE TABLE IF NOT EXISTS audit_meta (
  key   TEXT PRIMARY KEY,
  value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_events (
  seq              INTEGER PRIMARY KEY,
  ts               INTEGER NOT NULL,
  kind             TEXT NOT NULL,
  request_id       TEXT NOT NULL DEFAULT '',
  decision_id      TEXT NOT NULL DEFAULT '',
  caller_sub       TEXT NOT NULL DEFAULT '',
  caller_org       TEXT NOT NULL DEFAULT '',
  caller_workspace TEXT NOT NULL DEFAULT '',
  caller_roles     TEXT NOT NULL DEFAULT '[]',
  caller_session   TEXT NOT NULL DEFAULT '',
  client_addr      TEXT NOT NULL DEFAULT '',
  surface          TEXT NOT NULL DEFAULT '',
  tool             TEXT NOT NULL DEFAULT '',
  method           TEXT NOT NULL DEFAULT '',
  path             TEXT NOT NULL DEFAULT '',
  args             TEXT NOT NULL DEFAULT '',
  decision         TEXT NOT NULL DEFAULT '',
  reason           TEXT NOT NULL DEFAULT '',
  policy_revision  TEXT NOT NULL DEFAULT '',
  approval_id      TEXT NOT NULL DEFAULT '',
  approver         TEXT NOT NULL DEFAULT '',
  status           INTEGER NOT NULL DEFAULT 0,
  error_class      TEXT NOT NULL DEFAULT '',
  latency_us       INTEGER NOT NULL DEFAULT 0,
  prev_hash        BLOB NOT NULL,
  hash             BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_events_ts ON audit_events(ts);
-- Lookups by request id ("r:<id>") and caller ("s:<sub>"). Derived data outside the
-- chain, filled in bulk by the writer between commits (see Log.indexLookups): two
-- secondary indexes on audit_events cost a third of every commit.
CREATE TABLE IF NOT EXISTS audit_lookup (
  k   TEXT NOT NULL,
  seq INTEGER NOT NULL,
  PRIMARY KEY (k, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS audit_events_approval ON audit_events(approval_id) WHERE approval_id <> '';
CREATE TABLE IF NOT EXISTS audit_checkpoints (
  id        INTEGER PRIMARY KEY,
  kind      TEXT NOT NULL,
  seq       INTEGER NOT NULL,
  head_hash BLOB NOT NULL,
  ts        INTEGER NOT NULL,
  key_id    TEXT NOT NULL,
  signature BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_checkpoints_seq ON audit_checkpoints(seq);
CREATE TRIGGER IF NOT EXISTS audit_events_no_update BEFORE UPDATE ON audit_events
BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_events_no_delete BEFORE DELETE ON audit_events
BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints
BEGIN SELECT RAISE(ABORT, 'audit_checkpoints is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints
BEGIN SELECT RAISE(ABORT, 'audit_checkpoints is append-only'); END;
