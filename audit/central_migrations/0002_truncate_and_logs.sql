-- TRUNCATE fires no row trigger: statement triggers refuse it on every central table,
-- and the registry of logs is append-only like the rows and checkpoints.
DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = 'audit_central_events_no_truncate'
                 AND tgrelid = 'audit_central_events'::regclass) THEN
    CREATE TRIGGER audit_central_events_no_truncate BEFORE TRUNCATE ON audit_central_events
      FOR EACH STATEMENT EXECUTE FUNCTION audit_central_append_only();
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = 'audit_central_checkpoints_no_truncate'
                 AND tgrelid = 'audit_central_checkpoints'::regclass) THEN
    CREATE TRIGGER audit_central_checkpoints_no_truncate BEFORE TRUNCATE ON audit_central_checkpoints
      FOR EACH STATEMENT EXECUTE FUNCTION audit_central_append_only();
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = 'audit_central_logs_append_only'
                 AND tgrelid = 'audit_central_logs'::regclass) THEN
    CREATE TRIGGER audit_central_logs_append_only BEFORE UPDATE OR DELETE ON audit_central_logs
      FOR EACH ROW EXECUTE FUNCTION audit_central_append_only();
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = 'audit_central_logs_no_truncate'
                 AND tgrelid = 'audit_central_logs'::regclass) THEN
    CREATE TRIGGER audit_central_logs_no_truncate BEFORE TRUNCATE ON audit_central_logs
      FOR EACH STATEMENT EXECUTE FUNCTION audit_central_append_only();
  END IF;
END $$;
