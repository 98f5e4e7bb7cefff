-- Checkpoints name the log they vouch for (signing domain v2). Checkpoints written
-- before keep an empty log id and verify under v1 (see checkpoint.message).
ALTER TABLE audit_checkpoints ADD COLUMN log_id TEXT NOT NULL DEFAULT '';
