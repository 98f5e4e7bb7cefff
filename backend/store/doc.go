// Package store persists integrations, their sealed secrets, model and workspace
// settings, and service keys. SQLite (modernc, pure Go) is the default: WAL, busy
// timeout, foreign keys, secure_delete, immediate write transactions. PostgreSQL (pgx)
// serves several replicas, with per-org advisory locks in place of SQLite's single
// writer. Both are opened through audit/sqldb (the SQLite file is 0600), and each
// dialect's numbered migrations (migrations/<dialect>/) run at open, tracked in
// schema_migrations under the component "backend". Every read and write of an
// integration takes a Scope, so no query can reach another org's rows.
package store
