-- The central audit store (audit.central_url): see audit/central.go.
CREATE TABLE IF NOT EXISTS audit_central_logs (
  log_id     TEXT PRIMARY KEY,
  first_seen TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS audit_central_events (
  log_id           TEXT NOT NULL,
  seq              BIGINT NOT NULL,
  ts               BIGINT NOT NULL,
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
  status           BIGINT NOT NULL DEFAULT 0,
  error_class      TEXT NOT NULL DEFAULT '',
  latency_us       BIGINT NOT NULL DEFAULT 0,
  prev_hash        BYTEA NOT NULL,
  hash             BYTEA NOT NULL,
  PRIMARY KEY (log_id, seq)
);
CREATE INDEX IF NOT EXISTS audit_central_events_ts ON audit_central_events (ts, log_id, seq);
CREATE INDEX IF NOT EXISTS audit_central_events_org_ts ON audit_central_events (caller_org, ts);
CREATE INDEX IF NOT EXISTS audit_central_events_sub ON audit_central_events (caller_sub) WHERE caller_sub <> '';
CREATE INDEX IF NOT EXISTS audit_central_events_request ON audit_central_events (request_id) WHERE request_id <> '';
CREATE INDEX IF NOT EXISTS audit_central_events_approval ON audit_central_events (approval_id) WHERE approval_id <> '';
CREATE TABLE IF NOT EXISTS audit_central_checkpoints (
  log_id        TEXT NOT NULL,
  id            BIGINT NOT NULL,
  kind          TEXT NOT NULL,
  seq           BIGINT NOT NULL,
  head_hash     BYTEA NOT NULL,
  ts            BIGINT NOT NULL,
  key_id        TEXT NOT NULL,
  signature     BYTEA NOT NULL,
  signed_log_id TEXT NOT NULL DEFAULT '',
  PRIMARY KEY (log_id, id)
);
CREATE OR REPLACE FUNCTION audit_central_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION '% is append-only', TG_TABLE_NAME; END $$;
-- Created once: a trigger someone disabled stays disabled, for Verify to report.
DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = 'audit_central_events_append_only'
                 AND tgrelid = 'audit_central_events'::regclass) THEN
    CREATE TRIGGER audit_central_events_append_only BEFORE UPDATE OR DELETE ON audit_central_events
      FOR EACH ROW EXECUTE FUNCTION audit_central_append_only();
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = 'audit_central_checkpoints_append_only'
                 AND tgrelid = 'audit_central_checkpoints'::regclass) THEN
    CREATE TRIGGER audit_central_checkpoints_append_only BEFORE UPDATE OR DELETE ON audit_central_checkpoints
      FOR EACH ROW EXECUTE FUNCTION audit_central_append_only();
  END IF;
END $$;
