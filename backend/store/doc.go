// Package store persists integrations, their sealed secrets, model and workspace
// settings, and service keys. SQLite (modernc, pure Go) is the default: WAL, busy
// timeout, foreign keys, secure_delete, immediate write transactions. PostgreSQL (pgx)
// serves several replicas, with per-org advisory locks in place of SQLite's single
// writer. Both schemas are embedded and migrated at open. Every read and write of an
// integration takes a Scope, so no query can reach another org's rows.
package store
