package main

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"strings"

	"github.com/portcullis/portcullis/audit"
	"github.com/portcullis/portcullis/audit/redact"
	"github.com/portcullis/portcullis/proxy/approvals"
)

const migrateAbout = `Move a single-node install into PostgreSQL, before running it as replicas:
  - the audit trail (<data-dir>/audit.db): its chain is verified first (a broken chain
    is refused, naming the row, before anything is copied); then every row and signed
    checkpoint is copied into the central store under the log's own id, by the same
    code that ships a replica's rows, and that copy is verified with the same key;
  - the approvals (<data-dir>/approvals.db): every approval, with its decider, comment,
    times, request hash and expiry; each must hold together and each decided one must
    be in the verified audit trail. Those still in flight (pending, or approved and not
    yet used) are stored expired: their callers ask again.
The targets default to the config's audit.central_url and approvals.database_url, so
after setting them in the config file run 'portcullis migrate --config FILE', then
start serve with that file. A part with no target is skipped.

serve must be stopped: migrate takes the audit log's writer lock (<data-dir>/audit.db.lock)
and refuses while serve holds it. Running it again copies nothing new and verifies again.
A copy in PostgreSQL that differs from the local one is a fault, reported and never
overwritten. URLs are printed without their credentials.

Exit status: 0 copied and verified; 1 a check or a copy failed; 2 usage errors.`

func runMigrate(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := commandFlags("migrate", "[flags]", migrateAbout, stderr)
	var cfgPath, dataDir, auditTo, approvalsTo, pubB64 string
	fs.StringVar(&cfgPath, "config", os.Getenv("PORTCULLIS_CONFIG"), "the YAML config `FILE` serve runs with (env PORTCULLIS_CONFIG): the data dir, the paths and the targets")
	fs.StringVar(&dataDir, "data-dir", "", "`DIR` holding audit.db and approvals.db (default ./data; env PORTCULLIS_DATA_DIR)")
	fs.StringVar(&auditTo, "audit-to", "", "copy the audit trail to this postgres:// `URL` (default audit.central_url; env PORTCULLIS_AUDIT_CENTRAL_URL)")
	fs.StringVar(&approvalsTo, "approvals-to", "", "copy the approvals to this postgres:// `URL` (default approvals.database_url; env PORTCULLIS_APPROVALS_DATABASE_URL)")
	fs.StringVar(&pubB64, "pubkey", "", "verify the local chain and its central copy with this checkpoint public key, `BASE64` of 32 bytes (default the public half of the audit signing key)")
	if code, ok := parseFlagsOnly(fs, args); !ok {
		return code
	}
	cfg, err := loadConfig(overrides{configPath: cfgPath, dataDir: dataDir})
	if err != nil {
		fmt.Fprintf(stderr, "portcullis migrate: invalid configuration:\n%v\n", err)
		return 2
	}
	if auditTo == "" {
		auditTo = cfg.Audit.CentralURL
	}
	if approvalsTo == "" {
		approvalsTo = cfg.Approval.DatabaseURL
	}
	var usage []string
	for _, t := range []struct{ flag, url string }{{"--audit-to", auditTo}, {"--approvals-to", approvalsTo}} {
		if u, err := url.Parse(t.url); t.url != "" && (err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql")) {
			usage = append(usage, t.flag+": want a postgres:// or postgresql:// URL")
		}
	}
	if auditTo == "" && approvalsTo == "" {
		usage = append(usage, "nothing to migrate to: set audit.central_url and approvals.database_url in the config (or their environment variables), or pass --audit-to and --approvals-to")
	}
	if len(usage) > 0 {
		fmt.Fprintf(stderr, "portcullis migrate: %s\n", strings.Join(usage, "; "))
		return 2
	}
	m := &migration{cfg: cfg, auditTo: auditTo, approvalsTo: approvalsTo, pubB64: pubB64, out: stdout}
	if err := m.run(ctx); err != nil {
		fmt.Fprintf(stderr, "portcullis migrate: %v\n", err)
		return 1
	}
	return 0
}

// migration is one run of `portcullis migrate`: local checks first, then the copies.
type migration struct {
	cfg                  *Config
	auditTo, approvalsTo string
	pubB64               string
	out                  io.Writer

	pub      ed25519.PublicKey
	local    audit.Report // the local chain, verified
	hasAudit bool         // audit.db exists
	hasAppr  bool         // approvals.db exists
}

func (m *migration) run(ctx context.Context) error {
	if st, err := os.Stat(m.cfg.DataDir); err != nil || !st.IsDir() {
		return fmt.Errorf("data dir %s: not a directory (give --data-dir, or data_dir in the config)", m.cfg.DataDir)
	}
	// serve holds this lock while it runs; holding it keeps serve from starting meanwhile.
	lock, err := audit.LockWriter(m.cfg.Audit.Path)
	if errors.Is(err, audit.ErrLocked) {
		return fmt.Errorf("serve is running on %s (it holds %s.lock): stop it, then run migrate", m.cfg.DataDir, m.cfg.Audit.Path)
	}
	if err != nil {
		return err
	}
	defer lock.Close()
	fmt.Fprintf(m.out, "data dir %s: no serve is running; serve cannot start until migrate ends\n", m.cfg.DataDir)
	m.hasAudit, m.hasAppr = exists(m.cfg.Audit.Path), exists(m.cfg.Approval.DBPath)

	// Everything local is checked before anything is copied.
	if m.auditTo != "" && m.hasAudit {
		if err := m.verifyLocal(ctx); err != nil {
			return err
		}
	}
	if m.auditTo != "" {
		if err := m.copyAudit(ctx); err != nil {
			return err
		}
	} else {
		fmt.Fprintln(m.out, "audit: skipped (no audit.central_url or --audit-to)")
	}
	if m.approvalsTo != "" {
		if err := m.copyApprovals(ctx); err != nil {
			return err
		}
	} else {
		fmt.Fprintln(m.out, "approvals: skipped (no approvals.database_url or --approvals-to)")
	}
	fmt.Fprintln(m.out, "done: start serve with audit.central_url and approvals.database_url set (the same data dir keeps this node's audit log)")
	return nil
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return !errors.Is(err, fs.ErrNotExist)
}

// verifyLocal checks the local chain with the checkpoint key; a fault or rows only the
// journal holds stop the migration before anything is copied.
func (m *migration) verifyLocal(ctx context.Context) error {
	pub, err := auditPublicKey(m.cfg.Audit.SigningKeyPath, m.pubB64)
	if err != nil {
		return fmt.Errorf("audit: the checkpoint key (--pubkey, or the signing key): %w", err)
	}
	m.pub = pub
	rep, err := audit.Verify(ctx, m.cfg.Audit.Path, pub)
	if err != nil {
		return fmt.Errorf("audit: verifying %s: %w", m.cfg.Audit.Path, err)
	}
	if !rep.OK {
		return fmt.Errorf("audit: %s does not verify; nothing was copied: %s", m.cfg.Audit.Path, strings.Join(rep.Problems, "; "))
	}
	if rep.Journaled > 0 {
		return fmt.Errorf("audit: %d rows (seq %d-%d) are only in the journal %s (serve did not stop cleanly); nothing was copied: start serve on this data dir and stop it (it stores them), then run migrate again",
			rep.Journaled, rep.LastSeq-rep.Journaled+1, rep.LastSeq, m.cfg.Audit.Path+audit.JournalSuffix)
	}
	m.local = rep
	fmt.Fprintf(m.out, "audit: local log %s verified: %d rows (seq %d-%d), %d checkpoints\n", rep.LogID, rep.Rows, rep.FirstSeq, rep.LastSeq, rep.Checkpoints)
	return nil
}

// copyAudit ships the local log to the central store until it has caught up, then
// verifies the central copy of that log with the same key.
func (m *migration) copyAudit(ctx context.Context) error {
	target := redact.URL(m.auditTo)
	if !m.hasAudit {
		fmt.Fprintf(m.out, "audit: no audit log at %s; nothing to copy\n", m.cfg.Audit.Path)
		return nil
	}
	central, err := audit.OpenCentral(ctx, m.auditTo)
	if err != nil {
		return fmt.Errorf("audit: the central store %s: %w", target, err)
	}
	defer central.Close()
	sh, err := audit.NewShipper(ctx, central, audit.ShipperConfig{Path: m.cfg.Audit.Path}, nil)
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	got, err := sh.CatchUp(ctx)
	_ = sh.Close(ctx)
	if err != nil {
		if errors.Is(err, audit.ErrCentralFault) {
			return fmt.Errorf("audit: the central store %s disagrees with the local log; nothing there was overwritten: %w", target, err)
		}
		return fmt.Errorf("audit: copying to %s (copied %d rows so far; run migrate again to resume): %w", target, got.Rows, err)
	}
	fmt.Fprintf(m.out, "audit: copied %d rows and %d checkpoints to %s\n", got.Rows, got.Checkpoints, target)
	rep, err := central.VerifyLog(ctx, m.local.LogID, []ed25519.PublicKey{m.pub})
	if err != nil {
		return fmt.Errorf("audit: verifying log %s in %s: %w", m.local.LogID, target, err)
	}
	for _, w := range rep.Warnings {
		fmt.Fprintf(m.out, "audit: warning: log %s: %s\n", rep.LogID, w)
	}
	switch {
	case !rep.OK:
		return fmt.Errorf("audit: log %s in %s does not verify: %s", rep.LogID, target, strings.Join(rep.Problems, "; "))
	case rep.Rows != m.local.Rows || rep.LastSeq != m.local.LastSeq:
		return fmt.Errorf("audit: log %s in %s holds %d rows to seq %d, the local log %d rows to seq %d",
			rep.LogID, target, rep.Rows, rep.LastSeq, m.local.Rows, m.local.LastSeq)
	}
	fmt.Fprintf(m.out, "audit: log %s: %d rows (seq %d-%d), %d checkpoints in the central store, verified\n",
		rep.LogID, rep.Rows, rep.FirstSeq, rep.LastSeq, rep.Checkpoints)
	return nil
}

// copyApprovals copies every approval of approvals.db into the PostgreSQL store.
func (m *migration) copyApprovals(ctx context.Context) error {
	target := redact.URL(m.approvalsTo)
	if !m.hasAppr {
		fmt.Fprintf(m.out, "approvals: no approvals database at %s; nothing to copy\n", m.cfg.Approval.DBPath)
		return nil
	}
	src, err := approvals.OpenSQLite(ctx, m.cfg.Approval.DBPath, nil)
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := approvals.OpenPostgres(ctx, m.approvalsTo, nil)
	if err != nil {
		return fmt.Errorf("approvals: %s: %w", target, err)
	}
	defer dst.Close()
	vouch, closeVouch, err := m.approvalWitness(ctx)
	if err != nil {
		return err
	}
	defer closeVouch()
	rep, err := approvals.Copy(ctx, dst, src, approvals.CopyOptions{MaxTTL: m.cfg.Approval.MaxTTL, Vouch: vouch, RetireLive: true})
	if err != nil {
		return fmt.Errorf("approvals: copying to %s: %w", target, err)
	}
	fmt.Fprintf(m.out, "approvals: copied %s to %s; already there: %s\n", statusCounts(rep.Copied), target, statusCounts(rep.Present))
	if rep.Retired > 0 {
		fmt.Fprintf(m.out, "approvals: %d in flight (pending or approved, not yet used) were stored expired: their callers' next identical call asks for approval again\n", rep.Retired)
	}
	return nil
}

// approvalWitness returns the check every decided approval must pass to be copied: its
// decision is in this node's audit trail, which verifies. An approvals.db is a file; an
// approval copied into PostgreSQL releases calls on every replica, so one edited in (a
// status set to approved, a decider or an expiry changed) must not get there. The
// trail's approval rows are signed into its chain: approved and denied approvals need
// the row of that decision by that approver, a used one also the decision row of the
// call that spent it. Pending and expired approvals release nothing and pass.
func (m *migration) approvalWitness(ctx context.Context) (func(*approvals.Approval) error, func(), error) {
	if !m.hasAudit {
		return nil, nil, fmt.Errorf("approvals: no audit log at %s to check the approvals' decisions against; nothing was copied", m.cfg.Audit.Path)
	}
	if m.pub == nil { // the audit part was skipped: the trail is verified here
		if err := m.verifyLocal(ctx); err != nil {
			return nil, nil, err
		}
	}
	rd, err := audit.OpenReader(ctx, m.cfg.Audit.Path)
	if err != nil {
		return nil, nil, err
	}
	vouch := func(a *approvals.Approval) error {
		if a.Status != approvals.StatusApproved && a.Status != approvals.StatusDenied && a.Status != approvals.StatusUsed {
			return nil
		}
		page, err := rd.Query(ctx, audit.Filter{ApprovalID: a.ID, Limit: 1000})
		if err != nil {
			return err
		}
		var granted, denied, spent bool
		for _, ev := range page.Events {
			switch {
			case ev.Kind == audit.KindApproval && ev.Decision == audit.DecisionApprovalGranted && ev.Approver == a.DecidedBy:
				granted = true
			case ev.Kind == audit.KindApproval && ev.Decision == audit.DecisionApprovalDenied && ev.Approver == a.DecidedBy:
				denied = true
			case ev.Kind == audit.KindDecision && ev.Decision == audit.DecisionApprovalGranted:
				spent = true
			}
		}
		switch {
		case a.Status == approvals.StatusDenied && !denied:
			return fmt.Errorf("denied by %s, but the audit trail records no such denial", a.DecidedBy)
		case a.Status != approvals.StatusDenied && !granted:
			return fmt.Errorf("%s by %s, but the audit trail records no such approval", a.Status, a.DecidedBy)
		case a.Status == approvals.StatusUsed && !spent:
			return errors.New("used, but the audit trail records no call that spent it")
		}
		return nil
	}
	return vouch, func() { _ = rd.Close() }, nil
}

// statusCounts is "N (pending 1, approved 2)" in the statuses' life order, or "none".
func statusCounts(c map[approvals.Status]int) string {
	total := 0
	var parts []string
	for _, s := range []approvals.Status{approvals.StatusPending, approvals.StatusApproved, approvals.StatusDenied, approvals.StatusExpired, approvals.StatusUsed} {
		if c[s] > 0 {
			total += c[s]
			parts = append(parts, fmt.Sprintf("%s %d", s, c[s]))
		}
	}
	if total == 0 {
		return "none"
	}
	return fmt.Sprintf("%d (%s)", total, strings.Join(parts, ", "))
}
