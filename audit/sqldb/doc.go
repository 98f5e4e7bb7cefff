// Package sqldb is the one way Portcullis opens and migrates a database: the audit
// trail, approvals and the bundled backend's store all go through it.
//
// OpenSQLite opens a SQLite file (modernc.org/sqlite) with the project's settings:
// WAL, a busy timeout, foreign keys, synchronous as configured and immediate write
// transactions, from a DSN whose path is escaped (a '?', '#' or '%' in a data dir
// is a file name, not a URI parameter). The file is created mode 0600 before
// SQLite opens it, whatever the umask; SQLite gives its -wal and -shm files the
// database's mode, and files an older version left more open are narrowed to
// 0600. A directory it has to create is made 0700.
//
// OpenPostgres opens a PostgreSQL pool (pgx) and checks it answers.
//
// Migrations.Run applies the numbered files of an embedded folder (0001_init.sql,
// 0002_....sql) in order, each once, in one transaction, and records each in the
// table schema_migrations under the store's component name, so stores sharing a
// PostgreSQL database keep separate histories. Concurrent starters are serialised:
// SQLite's immediate transaction, PostgreSQL's advisory lock. A database that
// records a version newer than the binary knows is refused. A database created
// before this package tracked its schema another way is adopted through
// Migrations.Legacy, which reports the version the old tracking had reached.
//
// The package imports nothing of Portcullis, so every store may use it.
package sqldb
