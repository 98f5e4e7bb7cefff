package main

import (
	"context"
	"crypto/ed25519"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/portcullis/portcullis/audit"
)

var auditUsage = `Usage:
  portcullis audit verify [--data-dir DIR] [--db PATH] [--key PATH | --pubkey BASE64]
                          [--archive FILE | --witness LOGFILE]
  portcullis audit export [--data-dir DIR] [--db PATH] [--format jsonl|csv] [--out FILE]
                          [--since RFC3339] [--until RFC3339] [--tool T] [--sub S] [--org O] [--decision D]
                          [--approval-id ID] [--approver SUB] [--request-id ID]
  portcullis audit tail   [--data-dir DIR] [--db PATH] [-n 20] [--follow] [--interval 1s]
  portcullis audit prune  --before RFC3339 --archive FILE [--data-dir DIR] [--db PATH] [--key PATH]

Defaults: --data-dir ./data (env PORTCULLIS_DATA_DIR), --db <data-dir>/audit.db,
--key <data-dir>/audit-signing.key, --format jsonl. The signing key may also come from
PORTCULLIS_AUDIT_SIGNING_KEY. export's --until must be after --since; --decision is one of
the values the gateway records:
` + wrapList(audit.Decisions, "  ", 90) + `
verify checks with the public key; prefer --pubkey from a copy kept away from the data dir,
since whoever can rewrite the database may be able to read a key file beside it.
--witness checks the chain also against the checkpoints serve wrote to its JSON log: each
must verify and the chain must still hold the row it signed (catches newest rows cut off
together with their checkpoints).
verify exits 1 on any fault.
`

// runAudit verifies, exports, tails and prunes the audit trail. It reads the
// database directly and can run while a server appends.
func runAudit(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, auditUsage)
		return 2
	}
	sub, rest := args[0], args[1:]
	fs := flag.NewFlagSet("audit "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, auditUsage); fs.PrintDefaults() }
	dataDir := auditDataDir()
	var (
		dbPath, keyPath, pubB64, archive, format, out string
		since, until, before, witnessPath             string
		f                                             audit.Filter
		n                                             int
		follow                                        bool
		interval                                      time.Duration
	)
	fs.StringVar(&dataDir, "data-dir", dataDir, "data directory (env PORTCULLIS_DATA_DIR)")
	fs.StringVar(&dbPath, "db", "", "audit database (default <data-dir>/audit.db)")
	switch sub {
	case "verify":
		fs.StringVar(&keyPath, "key", "", "Ed25519 signing key file; its public key is used (default <data-dir>/audit-signing.key)")
		fs.StringVar(&pubB64, "pubkey", "", "checkpoint public key, base64 of 32 bytes (instead of --key)")
		fs.StringVar(&archive, "archive", "", "verify this prune archive instead of the database")
		fs.StringVar(&witnessPath, "witness", "", "serve's JSON log: also check the chain against the checkpoints it recorded")
	case "export":
		fs.StringVar(&format, "format", "jsonl", "jsonl or csv")
		fs.StringVar(&since, "since", "", "only rows at or after this RFC 3339 time")
		fs.StringVar(&until, "until", "", "only rows before this RFC 3339 time")
		fs.StringVar(&f.Tool, "tool", "", "only this tool")
		fs.StringVar(&f.Sub, "sub", "", "only this caller subject")
		fs.StringVar(&f.Org, "org", "", "only this org")
		fs.StringVar(&f.Decision, "decision", "", "only this decision: "+auditDecisionList)
		fs.StringVar(&f.ApprovalID, "approval-id", "", "only rows of this approval")
		fs.StringVar(&f.Approver, "approver", "", "only rows of approvals this subject decided")
		fs.StringVar(&f.RequestID, "request-id", "", "only rows of this request")
		fs.StringVar(&out, "out", "", "write to this new file instead of stdout (- is stdout)")
	case "tail":
		fs.IntVar(&n, "n", 20, "rows to show")
		fs.BoolVar(&follow, "follow", false, "keep printing new rows")
		fs.DurationVar(&interval, "interval", time.Second, "poll interval with --follow (50ms-10s)")
	case "prune":
		fs.StringVar(&before, "before", "", "archive and delete rows older than this RFC 3339 time (required)")
		fs.StringVar(&archive, "archive", "", "new archive file to write (required)")
		fs.StringVar(&keyPath, "key", "", "Ed25519 signing key file (default <data-dir>/audit-signing.key)")
	case "help", "-h", "--help":
		fmt.Fprint(stdout, auditUsage)
		return 0
	default:
		fmt.Fprintf(stderr, "portcullis audit: unknown subcommand %q\n\n%s", sub, auditUsage)
		return 2
	}
	if code, ok := parseFlags(fs, rest); !ok {
		return code
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "portcullis audit %s: unexpected argument %q\n", sub, fs.Arg(0))
		return 2
	}
	if dbPath == "" {
		dbPath = filepath.Join(dataDir, "audit.db")
	}
	if keyPath == "" {
		keyPath = filepath.Join(dataDir, "audit-signing.key")
	}
	fail := func(err error) int {
		fmt.Fprintf(stderr, "portcullis audit %s: %v\n", sub, err)
		return 1
	}
	switch sub {
	case "verify":
		pub, err := auditPublicKey(keyPath, pubB64)
		if err != nil {
			return fail(err)
		}
		if archive != "" && witnessPath != "" {
			return fail(fmt.Errorf("--archive and --witness: give one (a witness is checked against the database)"))
		}
		if archive != "" {
			ar, err := audit.VerifyArchive(archive, pub)
			if err != nil {
				return fail(err)
			}
			fmt.Fprintf(stdout, "OK: archive %s holds %d rows (seq %d-%d) under a valid prune checkpoint (key %s)\n",
				archive, ar.Rows, ar.FromSeq, ar.ThroughSeq, ar.KeyID)
			return 0
		}
		var witness []audit.Witnessed
		if witnessPath != "" {
			f, err := os.Open(witnessPath)
			if err != nil {
				return fail(fmt.Errorf("--witness: %w", err))
			}
			witness, err = audit.ReadWitness(f)
			f.Close()
			if err != nil {
				return fail(fmt.Errorf("--witness %s: %w", witnessPath, err))
			}
			if len(witness) == 0 {
				return fail(fmt.Errorf("--witness %s: no audit checkpoint entries in it (is it serve's log?)", witnessPath))
			}
		}
		rep, err := audit.VerifyWitnessed(ctx, dbPath, pub, witness)
		if err != nil {
			return fail(err)
		}
		if len(witness) > 0 {
			fmt.Fprintf(stdout, "witness: %d logged checkpoints checked\n", len(witness))
		} else {
			fmt.Fprintln(stdout, "note: without --witness, checkpoints deleted from the database file, with the rows after "+
				"the newest one left cut off or rewritten, go unseen; check against serve's log with --witness LOGFILE")
		}
		for _, w := range rep.Warnings {
			fmt.Fprintf(stdout, "warning: %s\n", w)
		}
		fmt.Fprintln(stdout, rep.String())
		if !rep.OK {
			return 1
		}
		return 0
	case "export":
		var errs []error
		for _, tv := range []struct {
			name string
			val  string
			dst  *time.Time
		}{{"since", since, &f.Since}, {"until", until, &f.Until}} {
			if tv.val == "" {
				continue
			}
			t, err := time.Parse(time.RFC3339Nano, tv.val)
			if err != nil {
				errs = append(errs, fmt.Errorf("--%s: want an RFC 3339 time like 2026-01-02T15:04:05Z, got %q", tv.name, tv.val))
			}
			*tv.dst = t
		}
		// The same checks as the admin API's filter (audit.ParseFilter), so an impossible
		// filter is an error rather than an empty export.
		if !f.Since.IsZero() && !f.Until.IsZero() && !f.Until.After(f.Since) {
			errs = append(errs, errors.New(`--until: must be after --since`))
		}
		if f.Decision != "" && !slices.Contains(audit.Decisions, f.Decision) {
			errs = append(errs, fmt.Errorf("--decision: want one of %s, got %q", auditDecisionList, f.Decision))
		}
		if format != "jsonl" && format != "csv" {
			errs = append(errs, fmt.Errorf("--format: want jsonl or csv, got %q", format))
		}
		if err := errors.Join(errs...); err != nil {
			fmt.Fprintf(stderr, "portcullis audit export: %v\n", err)
			return 2
		}
		rd, err := audit.OpenReader(ctx, dbPath)
		if err != nil {
			return fail(err)
		}
		defer rd.Close()
		w := stdout
		var file *os.File
		if out != "" && out != "-" {
			// Never overwrite: an export may be evidence.
			if file, err = os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600); err != nil {
				return fail(err)
			}
			w = file
		}
		err = rd.Export(ctx, w, format, f)
		if file != nil {
			if serr := file.Sync(); err == nil {
				err = serr
			}
			if cerr := file.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				// A partial export must not pass for a whole one.
				if rerr := os.Remove(out); rerr == nil {
					err = fmt.Errorf("%w (the partial %s was removed)", err, out)
				}
			}
		}
		if err != nil {
			return fail(err)
		}
		return 0
	case "tail":
		if n < 0 {
			fmt.Fprintln(stderr, "portcullis audit tail: -n: must not be negative")
			return 2
		}
		rd, err := audit.OpenReader(ctx, dbPath)
		if err != nil {
			return fail(err)
		}
		defer rd.Close()
		if err := rd.Tail(ctx, stdout, n, follow, interval); err != nil {
			return fail(err)
		}
		return 0
	case "prune":
		var errs []error
		t, err := time.Parse(time.RFC3339Nano, before)
		if err != nil {
			errs = append(errs, fmt.Errorf("--before: required, an RFC 3339 time like 2026-01-02T15:04:05Z"))
		}
		if archive == "" {
			errs = append(errs, errors.New("--archive: required, the archive file to create"))
		}
		if err := errors.Join(errs...); err != nil {
			fmt.Fprintf(stderr, "portcullis audit prune: %v\n", err)
			return 2
		}
		key, err := audit.LoadSigningKey(keyPath)
		if err != nil {
			return fail(err)
		}
		log := slog.New(slog.NewJSONHandler(stderr, nil))
		res, err := audit.Prune(ctx, dbPath, key, t, archive, log)
		if err != nil {
			return fail(err)
		}
		if res.Rows == 0 {
			fmt.Fprintln(stdout, "nothing to prune: no rows older than", t.Format(time.RFC3339))
			return 0
		}
		fmt.Fprintf(stdout, "pruned %d rows through seq %d; archive %s verified\n", res.Rows, res.ThroughSeq, res.Archive)
		return 0
	}
	return 2
}

var auditDecisionList = strings.Join(audit.Decisions, ", ")

// wrapList joins items with ", " into lines of at most width columns, each indented.
func wrapList(items []string, indent string, width int) string {
	var b strings.Builder
	line := indent
	for i, it := range items {
		if i < len(items)-1 {
			it += ","
		}
		if len(line) > len(indent) && len(line)+1+len(it) > width {
			b.WriteString(line + "\n")
			line = indent
		}
		if len(line) > len(indent) {
			line += " "
		}
		line += it
	}
	return b.String() + line
}

func auditDataDir() string {
	if d := os.Getenv("PORTCULLIS_DATA_DIR"); d != "" {
		return d
	}
	return "./data"
}

func auditPublicKey(keyPath, pubB64 string) (ed25519.PublicKey, error) {
	if pubB64 != "" {
		return audit.PublicKey(pubB64)
	}
	k, err := audit.LoadSigningKey(keyPath)
	if err != nil {
		return nil, err
	}
	return k.Public().(ed25519.PublicKey), nil
}
