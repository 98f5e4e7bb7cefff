// Package audit is Portcullis's tamper-evident audit trail.
//
// Every request that reaches a decision is recorded before the proxy acts on it:
// Log.Append returns only once the row is durable, and an error means "do not
// forward" (see ErrUnavailable). Outcome rows (status, error class, latency) follow
// through AppendAsync.
//
// # Journal and database
//
// A row becomes durable in the journal, a file next to the database
// (audit.db.journal). A single writer goroutine group-commits: the rows of many
// concurrent Appends are chained (seq, prev_hash, hash) and appended with one write,
// plus one fsync with synchronous=FULL, and then acknowledged. A second goroutine,
// the ingester, stores the journaled rows in the append-only SQLite table
// audit_events in large transactions (waiting up to 2 ms to gather them), signs the
// checkpoints and fills the lookup index; once SQLite holds every row of the
// journal, the journal is emptied. A SQLite commit costs about eleven system calls
// whatever its size, and a journal append one, so a call waits for one write,
// and SQLite's cost is paid in bulk, off the request path.
//
// The files follow the goroutines: commit.go holds what callers and the writer do
// (Append, AppendAsync, group commit, the journal append), ingest.go the ingester
// (storing journaled rows in SQLite), checkpoint.go the checkpoint message, its
// signing and storing, and the witness, lookup.go the lookup index, recover.go what
// Open does before either goroutine starts (the tail check and the journal replay),
// and chain.go the row hash. log.go holds the Log's lifecycle and its readers.
//
// Readers see the database: Query and Export in this process first wait until it
// holds every row journaled so far; Reader.Export (audit export) reads the journal
// too; another process's Query or Tail may see the newest rows a few milliseconds
// late. Verify checks the journal's rows too, as
// the continuation of the chain. Open stores any rows a previous run left in the
// journal (it was killed, or the database was full), after checking that they
// continue the chain; a damaged record followed by more records, or rows that do
// not continue the chain, make Open fail. An incomplete last record is a write cut
// short, never acknowledged, and is dropped.
//
// When SQLite refuses rows (max_size reached, disk full), the rows already
// acknowledged stay in the journal, and every later Append fails until the ingester
// succeeds again (it retries every second) or, after Close, until the next Open can
// store them.
//
// # Redaction (package audit/redact)
//
// Arguments reach the audit trail, policy input and logs only after Redactor.Value
// has replaced secrets with "hmac-sha256:<16 hex>", the first 8 bytes of
// HMAC-SHA256(key, secret). The HMAC key stays outside the database, so an auditor
// can see that the same secret was used twice without learning it. A value is a
// secret when its field name is secret-ish (IsSecretField) or when the value looks
// like a credential (sk-/sk_ tokens, AKIA/ASIA access key ids, PEM private keys,
// Slack xox?- tokens, GitHub tokens, JWTs, "Bearer ..." and passwords in URLs).
//
// # Hash chain
//
// Each row stores prev_hash (the previous row's hash; 32 zero bytes for seq 1 or
// the head hash of the newest prune anchor) and hash = SHA-256 of the canonical
// encoding of the row:
//
//	"portcullis-audit-row-v1"
//	u64(seq) u64(ts unix nanoseconds, two's complement)
//	str(kind) str(request_id) str(decision_id)
//	str(caller_sub) str(caller_org) str(caller_workspace) str(caller_roles)
//	str(caller_session) str(client_addr)
//	str(surface) str(tool) str(method) str(path) str(args)
//	str(decision) str(reason) str(policy_revision) str(approval_id) str(approver)
//	u64(status) str(error_class) u64(latency_us)
//	str(prev_hash)
//
// where u64 is 8 bytes big-endian and str(x) is u32 big-endian byte length followed
// by the bytes exactly as stored (caller_roles is the stored JSON array text, args
// the stored argument text). Every field is fixed-width or length-prefixed and in a
// fixed order, so two different rows never share an encoding.
//
// # Checkpoints
//
// The ingester signs a checkpoint every CheckpointEvery rows, every
// CheckpointInterval while rows arrive (after storing what the journal holds, so it
// covers every row acknowledged before the tick), on Open (covering any unsigned
// tail left by a crash, after re-verifying it) and on Close, always over rows SQLite
// holds. A checkpoint signs,
// with Ed25519,
//
//	"portcullis-audit-checkpoint-v2" str(log_id) str(kind) u64(seq) str(head_hash) u64(ts)
//
// where log_id names the log (a checkpoint of one log is refused by another that
// shares the key), kind is "periodic", "open", "close" or "prune", str is a 4-byte
// big-endian length and the bytes, and u64 is big-endian. Checkpoints without a log id
// (v1: the same message without str(log_id), under "portcullis-audit-checkpoint-v1")
// still verify. The private key lives in a
// file outside the database (or PORTCULLIS_AUDIT_SIGNING_KEY), so an attacker who
// can rewrite the database can recompute the chain but not the signatures. Once its
// commit is fsynced, each checkpoint is also appended to the witness file
// (Config.WitnessPath, witness.go) and written to the log: witnesses outside the
// database.
//
// # Verification and pruning
//
// Verify walks the chain in seq order and reports the first row whose sequence,
// link or hash is wrong, and the first checkpoint whose signature or head hash does
// not match. Rows written after the newest checkpoint are reported as an unsigned
// tail (a crash can leave one), not as a fault; a database with rows and no
// checkpoint at all is a fault. Truncating rows after the newest checkpoint cannot
// be detected from the database alone: compare with the witness file. What a witness
// cannot show is the rows after its newest checkpoint: after a crash, those
// acknowledged in the last CheckpointInterval (plus however far SQLite was behind the
// journal) can be removed before the restart undetected.
//
// Prune archives rows older than a cut-off to a JSON-lines file, verifies the file,
// and only then, in one transaction, records a signed "prune" checkpoint (the
// anchor: pruned up to seq N with head hash H) and deletes rows up to N with the
// delete trigger dropped and re-created inside that transaction. Verify starts from
// the newest anchor.
//
// PostgreSQL is not implemented: the store is SQLite only.
package audit
