-- ENABLE ALWAYS: the append-only triggers fire also under session_replication_role =
-- replica, which skips ordinary triggers without disabling them.
ALTER TABLE audit_central_events ENABLE ALWAYS TRIGGER audit_central_events_append_only;
ALTER TABLE audit_central_events ENABLE ALWAYS TRIGGER audit_central_events_no_truncate;
ALTER TABLE audit_central_checkpoints ENABLE ALWAYS TRIGGER audit_central_checkpoints_append_only;
ALTER TABLE audit_central_checkpoints ENABLE ALWAYS TRIGGER audit_central_checkpoints_no_truncate;
ALTER TABLE audit_central_logs ENABLE ALWAYS TRIGGER audit_central_logs_append_only;
ALTER TABLE audit_central_logs ENABLE ALWAYS TRIGGER audit_central_logs_no_truncate;
