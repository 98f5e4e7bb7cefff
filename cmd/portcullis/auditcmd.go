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

var auditUsage = groupUsage("audit", [][2]string{
	{"verify", "check the chain: sequence, links, hashes, checkpoint signatures (and a witness log)"},
	{"export", "write rows as JSON lines or CSV, filtered"},
	{"tail", "show the newest rows, and follow new ones"},
	{"prune", "archive, verify, sign, then delete rows older than a time"},
}, "Every audit command reads the database directly and may run while serve appends.\ndocs/audit.md explains the trail and its tamper model.")

var auditAbout = map[string][2]string{
	"verify": {"[flags]", `Check the audit trail: sequence, links, hashes and checkpoint signatures, and the
journal's rows as the chain's continuation. Names the first bad row; exits 1 on any fault.

Prefer --pubkey from a copy kept away from the data dir: whoever can rewrite the
database may be able to read a key file beside it. --witness also checks the chain
against the checkpoints serve wrote to <data-dir>/witness.log (or to its JSON log): each must
verify and the chain must still hold the row it signed, which catches the newest rows
cut off together with their checkpoints. The signing key may also come from
PORTCULLIS_AUDIT_SIGNING_KEY.

--central URL (postgres://, default env PORTCULLIS_AUDIT_CENTRAL_URL) verifies the
central store every replica ships to (audit.central_url) instead: every log's chain and
checkpoints, naming the log id and seq of any fault; --pubkey then takes one key per
signing key in the fleet, comma-separated. --central-witness URL checks this database
against the copy shipped there: rows shipped and then erased or rewritten locally are
faults.`},
	"export": {"[flags]", `Write audit rows, oldest first, as JSON lines (exact values) or CSV (cells that
would start a spreadsheet formula get a leading '). Includes rows still in the journal.
--out never overwrites a file, and removes its partial file if the export fails.
--central URL exports every log of the central store (audit.central_url) instead, log
by log, each row naming its log_id.
--until must be after --since; --decision is one of the values the gateway records:
` + wrapList(audit.Decisions, "  ", 90)},
	"tail": {"[flags]", `Show the newest rows, one a line in columns (time, caller, tool, decision, reason),
or as JSON lines with --json; --follow keeps printing new ones. Rows written by another
process may show a few milliseconds late.`},
	"prune": {"--before TIME --archive FILE [flags]", `Archive the rows older than --before to a new file, verify the archive, sign a prune
checkpoint, then delete the rows. 'audit verify --archive FILE' checks an archive later.`},
}

// runAudit verifies, exports, tails and prunes the audit trail. It reads the
// database directly and can run while a server appends.
func runAudit(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, auditUsage)
		return 2
	}
	sub, rest := args[0], args[1:]
	switch sub {
	case "verify":
		return auditVerify(ctx, rest, stdout, stderr)
	case "export":
		return auditExport(ctx, rest, stdout, stderr)
	case "tail":
		return auditTail(ctx, rest, stdout, stderr)
	case "prune":
		return auditPrune(ctx, rest, stdout, stderr)
	case "help", "-h", "--help", "-help":
		fmt.Fprint(stdout, auditUsage)
		return 0
	}
	fmt.Fprintf(stderr, "portcullis audit: unknown subcommand %q\n\n%s", sub, auditUsage)
	return 2
}

// auditCmd is what the audit subcommands share: their flag set, with --data-dir and --db
// (and --central for those that can read the central store), and the paths serve uses
// for the data dir.
type auditCmd struct {
	sub                      string
	fs                       *flag.FlagSet
	dataDir, dbPath, keyPath string
	centralURL               string
	stderr                   io.Writer
}

func newAuditCmd(sub string, central bool, stderr io.Writer) *auditCmd {
	a := &auditCmd{sub: sub, fs: commandFlags("audit "+sub, auditAbout[sub][0], auditAbout[sub][1], stderr), dataDir: auditDataDir(), stderr: stderr}
	a.fs.StringVar(&a.dataDir, "data-dir", a.dataDir, "`DIR` holding the audit database and keys (env PORTCULLIS_DATA_DIR)")
	a.fs.StringVar(&a.dbPath, "db", "", "audit database `FILE` (default <data-dir>/audit.db)")
	if central {
		// The environment is read after parsing, not as the flag's default: -h prints
		// defaults, and the URL may hold a password.
		a.fs.StringVar(&a.centralURL, "central", "",
			"read the central store at this postgres:// `URL` instead of the local database (env PORTCULLIS_AUDIT_CENTRAL_URL)")
	}
	return a
}

// parse reads the flags, refuses stray arguments and fills the default paths; ok is
// false when the command must exit with code.
func (a *auditCmd) parse(rest []string) (code int, ok bool) {
	if code, ok := parseFlags(a.fs, rest); !ok {
		return code, false
	}
	if a.fs.NArg() > 0 {
		fmt.Fprintf(a.stderr, "portcullis audit %s: unexpected argument %q\n", a.sub, a.fs.Arg(0))
		return 2, false
	}
	if a.fs.Lookup("central") != nil {
		given := false
		a.fs.Visit(func(v *flag.Flag) { given = given || v.Name == "central" })
		if !given {
			a.centralURL = os.Getenv("PORTCULLIS_AUDIT_CENTRAL_URL")
		}
	}
	// The paths serve uses for this data dir: one place gives them (audit.Config).
	defaults := audit.Config{Path: a.dbPath, SigningKeyPath: a.keyPath}
	defaults.SetDefaults(a.dataDir)
	a.dbPath, a.keyPath = defaults.Path, defaults.SigningKeyPath
	return 0, true
}

func (a *auditCmd) fail(err error) int {
	fmt.Fprintf(a.stderr, "portcullis audit %s: %v\n", a.sub, err)
	return 1
}

func auditVerify(ctx context.Context, rest []string, stdout, stderr io.Writer) int {
	a := newAuditCmd("verify", true, stderr)
	var pubB64, archive, witnessPath, centralWitness string
	a.fs.StringVar(&centralWitness, "central-witness", "", "postgres:// `URL` of the central store: check the local database against the rows and checkpoints shipped there")
	a.fs.StringVar(&a.keyPath, "key", "", "Ed25519 signing key `FILE`; its public key is used (default <data-dir>/audit-signing.key)")
	a.fs.StringVar(&pubB64, "pubkey", "", "checkpoint public key, `BASE64` of 32 bytes (instead of --key)")
	a.fs.StringVar(&archive, "archive", "", "verify this prune archive `FILE` instead of the database")
	a.fs.StringVar(&witnessPath, "witness", "", "serve's witness log `FILE` (<data-dir>/witness.log) or JSON log: also check the chain against the checkpoints it recorded")
	if code, ok := a.parse(rest); !ok {
		return code
	}
	centralURL, dbPath, keyPath, fail := a.centralURL, a.dbPath, a.keyPath, a.fail
	if centralURL != "" {
		if archive != "" || witnessPath != "" || centralWitness != "" {
			fmt.Fprintln(stderr, "portcullis audit verify: --central verifies the central store; --archive, --witness and --central-witness check a local database (unset PORTCULLIS_AUDIT_CENTRAL_URL or pass --central '')")
			return 2
		}
		return verifyCentral(ctx, centralURL, keyPath, pubB64, stdout, stderr)
	}
	pub, err := auditPublicKey(keyPath, pubB64)
	if err != nil {
		return fail(err)
	}
	if centralWitness != "" {
		if archive != "" || witnessPath != "" {
			return fail(fmt.Errorf("--central-witness: give it alone (not with --archive or --witness)"))
		}
		c, err := audit.OpenCentral(ctx, centralWitness)
		if err != nil {
			return fail(fmt.Errorf("--central-witness: %w", err))
		}
		defer c.Close()
		rep, err := audit.VerifyAgainstCentral(ctx, dbPath, pub, c)
		if err != nil {
			return fail(err)
		}
		fmt.Fprintf(stdout, "central witness: checked against the rows and checkpoints of log %s in the central store\n", rep.LogID)
		return printReport(stdout, rep)
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
			"the newest one left cut off or rewritten, go unseen; check against the witness serve writes with --witness "+
			filepath.Join(filepath.Dir(dbPath), "witness.log"))
	}
	return printReport(stdout, rep)
}

// printReport prints a verify report's warnings and verdict; it returns the exit code.
func printReport(stdout io.Writer, rep audit.Report) int {
	for _, w := range rep.Warnings {
		fmt.Fprintf(stdout, "warning: %s\n", w)
	}
	fmt.Fprintln(stdout, rep.String())
	if !rep.OK {
		return 1
	}
	return 0
}

func auditExport(ctx context.Context, rest []string, stdout, stderr io.Writer) int {
	a := newAuditCmd("export", true, stderr)
	var format, out, since, until string
	var f audit.Filter
	a.fs.StringVar(&format, "format", "jsonl", "`FORMAT`: jsonl or csv")
	a.fs.StringVar(&since, "since", "", "only rows at or after this RFC 3339 `TIME`")
	a.fs.StringVar(&until, "until", "", "only rows before this RFC 3339 `TIME`")
	a.fs.StringVar(&f.Tool, "tool", "", "only this tool")
	a.fs.StringVar(&f.Sub, "sub", "", "only this caller subject")
	a.fs.StringVar(&f.Org, "org", "", "only this org")
	a.fs.StringVar(&f.Decision, "decision", "", "only this `DECISION` (the values are listed above)")
	a.fs.StringVar(&f.ApprovalID, "approval-id", "", "only rows of this approval")
	a.fs.StringVar(&f.Approver, "approver", "", "only rows of approvals this subject decided")
	a.fs.StringVar(&f.RequestID, "request-id", "", "only rows of this request")
	a.fs.StringVar(&out, "out", "", "write to this new `FILE` instead of stdout (- is stdout)")
	if code, ok := a.parse(rest); !ok {
		return code
	}
	centralURL, dbPath, fail := a.centralURL, a.dbPath, a.fail
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
	var exporter interface {
		Export(ctx context.Context, w io.Writer, format string, f audit.Filter) error
	}
	if centralURL != "" {
		c, err := audit.OpenCentral(ctx, centralURL)
		if err != nil {
			return fail(fmt.Errorf("--central: %w", err))
		}
		defer c.Close()
		exporter = c
	} else {
		rd, err := audit.OpenReader(ctx, dbPath)
		if err != nil {
			return fail(err)
		}
		defer rd.Close()
		exporter = rd
	}
	w := stdout
	var file *os.File
	if out != "" && out != "-" {
		// Never overwrite: an export may be evidence.
		var err error
		if file, err = os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600); err != nil {
			return fail(err)
		}
		w = file
	}
	err := exporter.Export(ctx, w, format, f)
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
}

func auditTail(ctx context.Context, rest []string, stdout, stderr io.Writer) int {
	a := newAuditCmd("tail", false, stderr)
	var n int
	var follow, asJSON bool
	var interval time.Duration
	a.fs.IntVar(&n, "n", 20, "rows to show")
	a.fs.BoolVar(&follow, "follow", false, "keep printing new rows")
	a.fs.BoolVar(&asJSON, "json", false, "print JSON lines (every field) instead of columns")
	a.fs.DurationVar(&interval, "interval", time.Second, "poll interval with --follow (50ms-10s)")
	if code, ok := a.parse(rest); !ok {
		return code
	}
	dbPath, fail := a.dbPath, a.fail
	if n < 0 {
		fmt.Fprintln(stderr, "portcullis audit tail: -n: must not be negative")
		return 2
	}
	rd, err := audit.OpenReader(ctx, dbPath)
	if err != nil {
		return fail(err)
	}
	defer rd.Close()
	format := "text"
	if asJSON {
		format = "jsonl"
	}
	if err := rd.Tail(ctx, stdout, format, n, follow, interval); err != nil {
		return fail(err)
	}
	return 0
}

func auditPrune(ctx context.Context, rest []string, stdout, stderr io.Writer) int {
	a := newAuditCmd("prune", false, stderr)
	var before, archive string
	a.fs.StringVar(&before, "before", "", "archive and delete rows older than this RFC 3339 `TIME` (required)")
	a.fs.StringVar(&archive, "archive", "", "new archive `FILE` to write (required)")
	a.fs.StringVar(&a.keyPath, "key", "", "Ed25519 signing key `FILE` (default <data-dir>/audit-signing.key)")
	if code, ok := a.parse(rest); !ok {
		return code
	}
	dbPath, keyPath, fail := a.dbPath, a.keyPath, a.fail
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
	if res.Unshipped > 0 {
		fmt.Fprintf(stdout, "kept %d rows older than %s: the central store has not acknowledged them yet (%s)\n",
			res.Unshipped, t.Format(time.RFC3339), dbPath+audit.ShipMarkSuffix)
	}
	if res.Rows == 0 {
		if res.Unshipped == 0 {
			fmt.Fprintln(stdout, "nothing to prune: no rows older than", t.Format(time.RFC3339))
		}
		return 0
	}
	fmt.Fprintf(stdout, "pruned %d rows through seq %d; archive %s verified\n", res.Rows, res.ThroughSeq, res.Archive)
	return 0
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

// verifyCentral checks every log in the central store. Keys: --pubkey (one or more,
// comma-separated, one per signing key in the fleet) or the public half of --key.
func verifyCentral(ctx context.Context, url, keyPath, pubB64 string, stdout, stderr io.Writer) int {
	fail := func(err error) int {
		fmt.Fprintf(stderr, "portcullis audit verify: %v\n", err)
		return 1
	}
	var keys []ed25519.PublicKey
	if pubB64 != "" {
		for i, p := range strings.Split(pubB64, ",") {
			k, err := audit.PublicKey(strings.TrimSpace(p))
			if err != nil {
				return fail(fmt.Errorf("--pubkey: key %d of the list: %w", i+1, err))
			}
			keys = append(keys, k)
		}
	} else {
		k, err := auditPublicKey(keyPath, "")
		if err != nil {
			return fail(err)
		}
		keys = append(keys, k)
	}
	c, err := audit.OpenCentral(ctx, url)
	if err != nil {
		return fail(fmt.Errorf("--central: %w", err))
	}
	defer c.Close()
	rep, err := c.Verify(ctx, keys)
	if err != nil {
		return fail(err)
	}
	for _, l := range rep.Logs {
		state := "OK"
		if !l.OK {
			state = "FAILED"
		}
		fmt.Fprintf(stdout, "log %s: %s, %d rows (seq %d-%d), %d checkpoints\n", l.LogID, state, l.Rows, l.FirstSeq, l.LastSeq, l.Checkpoints)
		for _, w := range l.Warnings {
			fmt.Fprintf(stdout, "warning: log %s: %s\n", l.LogID, w)
		}
	}
	fmt.Fprintln(stdout, rep.String())
	if !rep.OK {
		return 1
	}
	return 0
}
