package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"database/sql"
	"encoding/base64"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/audit"
	"github.com/portcullis/portcullis/policies/principal"
)

func runAuditCmd(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := runAudit(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

// auditFixture writes 40 rows (10 of them two hours old) into a fresh data dir; the
// log's JSON output (with its checkpoints) goes to serve.log there.
func auditFixture(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	cfg := audit.Config{CheckpointEvery: 10}
	cfg.SetDefaults(dir)
	logf, err := os.Create(filepath.Join(dir, "serve.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	l, err := audit.Open(context.Background(), cfg, slog.New(slog.NewJSONHandler(logf, nil)))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for i := 0; i < 40; i++ {
		ev := &audit.Event{Kind: audit.KindDecision, RequestID: fmt.Sprintf("req-%d", i),
			Caller: audit.Caller{Caller: principal.Caller{Sub: "agent-1", Org: "acme"}}, Surface: "rest",
			Tool: []string{"create_integration", "list_integrations"}[i%2], Decision: "allow",
			Time: now}
		if i < 10 {
			ev.Time = now.Add(-2 * time.Hour)
		}
		if err := l.Append(context.Background(), ev); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestAuditVerifyCmd(t *testing.T) {
	dir := auditFixture(t)
	t.Setenv("PORTCULLIS_DATA_DIR", dir)
	code, out, errOut := runAuditCmd(t, "verify")
	if code != 0 || !strings.Contains(out, "OK: 40 rows") {
		t.Fatalf("verify: code %d out %q err %q", code, out, errOut)
	}
	if !regexp.MustCompile(`, log [0-9a-f]{32}\n`).MatchString(out) {
		t.Fatalf("verify does not print the log id: %q", out)
	}
	if !strings.Contains(out, "note: without --witness") {
		t.Fatalf("plain verify does not say what only the witness catches: %q", out)
	}
	key, err := audit.LoadSigningKey(filepath.Join(dir, "audit-signing.key"))
	if err != nil {
		t.Fatal(err)
	}
	pub := base64.StdEncoding.EncodeToString(key.Public().(ed25519.PublicKey))
	if code, out, _ := runAuditCmd(t, "verify", "--pubkey", pub, "--db", filepath.Join(dir, "audit.db")); code != 0 {
		t.Fatalf("verify --pubkey: %d %s", code, out)
	}
	otherPub, _, _ := ed25519.GenerateKey(nil)
	if code, out, _ := runAuditCmd(t, "verify", "--pubkey", base64.StdEncoding.EncodeToString(otherPub)); code != 1 || !strings.Contains(out, "FAILED") {
		t.Fatalf("verify with a foreign key: %d %s", code, out)
	}
	// Tamper with row 17: verify names it and exits 1.
	db, err := sql.Open("sqlite", filepath.Join(dir, "audit.db"))
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{`DROP TRIGGER audit_events_no_update`,
		`UPDATE audit_events SET decision = 'deny' WHERE seq = 17`} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()
	code, out, _ = runAuditCmd(t, "verify")
	if code != 1 || !strings.Contains(out, "row seq 17") || !strings.Contains(out, "append-only triggers are missing") {
		t.Fatalf("tampered verify: code %d out %q", code, out)
	}
	if code, _, errOut := runAuditCmd(t, "verify", "--db", filepath.Join(dir, "missing.db")); code != 1 || !strings.Contains(errOut, "missing.db") {
		t.Fatalf("missing db: %d %q", code, errOut)
	}
}

// --witness checks the chain against the checkpoints in serve's log: cutting off the
// newest rows with their checkpoints passes a plain verify and fails this one.
func TestAuditVerifyWitnessCmd(t *testing.T) {
	dir := auditFixture(t)
	t.Setenv("PORTCULLIS_DATA_DIR", dir)
	logPath := filepath.Join(dir, "serve.log")
	if code, out, errOut := runAuditCmd(t, "verify", "--witness", logPath); code != 0 ||
		!strings.Contains(out, "logged checkpoints checked") || !strings.Contains(out, "OK: 40 rows") || strings.Contains(out, "note: without --witness") {
		t.Fatalf("verify --witness on an intact log: %d %q %q", code, out, errOut)
	}
	db, err := sql.Open("sqlite", filepath.Join(dir, "audit.db"))
	if err != nil {
		t.Fatal(err)
	}
	// A careful editor trims the lookup index too (verify catches an index left
	// claiming the removed rows).
	for _, q := range []string{`DROP TRIGGER audit_events_no_delete`, `DROP TRIGGER audit_checkpoints_no_delete`,
		`DELETE FROM audit_events WHERE seq > 25`, `DELETE FROM audit_checkpoints WHERE seq > 25`,
		`DELETE FROM audit_lookup WHERE seq > 25`, `UPDATE audit_meta SET value = '25' WHERE key = 'lookup_through' AND CAST(value AS INTEGER) > 25`,
		`CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events BEGIN SELECT RAISE(ABORT, 'x'); END`,
		`CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints BEGIN SELECT RAISE(ABORT, 'x'); END`} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()
	if code, out, _ := runAuditCmd(t, "verify"); code != 0 {
		t.Fatalf("plain verify of the cut-off log (expected to pass; that is what the witness is for): %d %q", code, out)
	}
	code, out, _ := runAuditCmd(t, "verify", "--witness", logPath)
	if code != 1 || !strings.Contains(out, "the chain ends at seq 25 (rows removed)") {
		t.Fatalf("verify --witness on a cut-off log: %d %q", code, out)
	}
	empty := filepath.Join(dir, "other.log")
	os.WriteFile(empty, []byte(`{"msg":"hello"}`+"\n"), 0o600)
	if code, _, errOut := runAuditCmd(t, "verify", "--witness", empty); code != 1 || !strings.Contains(errOut, "no audit checkpoint entries") {
		t.Fatalf("a witness with no checkpoints: %d %q", code, errOut)
	}
}

func TestAuditExportCmd(t *testing.T) {
	dir := auditFixture(t)
	t.Setenv("PORTCULLIS_DATA_DIR", dir)
	code, out, errOut := runAuditCmd(t, "export", "--format", "jsonl", "--tool", "create_integration",
		"--since", time.Now().Add(-time.Hour).Format(time.RFC3339))
	if code != 0 {
		t.Fatalf("export: %d %s", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 15 {
		t.Fatalf("got %d lines, want 15", len(lines))
	}
	var ev audit.Event
	if err := json.Unmarshal([]byte(lines[0]), &ev); err != nil || ev.Seq != 11 || ev.Tool != "create_integration" || ev.Hash == "" {
		t.Fatalf("first line %s: %v", lines[0], err)
	}
	outFile := filepath.Join(t.TempDir(), "export.csv")
	if code, _, errOut := runAuditCmd(t, "export", "--format", "csv", "--out", outFile); code != 0 {
		t.Fatalf("csv export: %s", errOut)
	}
	f, _ := os.Open(outFile)
	recs, err := csv.NewReader(f).ReadAll()
	f.Close()
	if err != nil || len(recs) != 41 {
		t.Fatalf("csv: %d records %v", len(recs), err)
	}
	if code, _, errOut := runAuditCmd(t, "export", "--format", "csv", "--out", outFile); code != 1 || !strings.Contains(errOut, "exists") {
		t.Fatalf("overwrote export: %d %s", code, errOut)
	}
	// --out - is stdout, not a file named "-".
	t.Chdir(t.TempDir())
	if code, out, errOut := runAuditCmd(t, "export", "--out", "-"); code != 0 || strings.Count(out, "\n") != 40 {
		t.Fatalf("--out -: %d, %d lines, %s", code, strings.Count(out, "\n"), errOut)
	}
	if _, err := os.Stat("-"); err == nil {
		t.Fatal(`--out - wrote a file named "-"`)
	}
	code, _, errOut = runAuditCmd(t, "export", "--format", "xml", "--since", "yesterday")
	if code != 2 || !strings.Contains(errOut, "--format") || !strings.Contains(errOut, "--since") {
		t.Fatalf("bad flags: %d %q", code, errOut)
	}
}

func TestAuditTailCmd(t *testing.T) {
	dir := auditFixture(t)
	code, out, errOut := runAuditCmd(t, "tail", "--data-dir", dir, "-n", "3", "--json")
	if code != 0 {
		t.Fatalf("tail: %s", errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.Contains(lines[0], `"seq":38`) || !strings.Contains(lines[2], `"seq":40`) {
		t.Fatalf("tail -n 3 --json: %q", out)
	}
	// Without --json: a header and the same three rows in columns.
	code, out, errOut = runAuditCmd(t, "tail", "--data-dir", dir, "-n", "3")
	lines = strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 4 || lines[0] != audit.TextHeader || !strings.Contains(lines[1], " allow") || strings.Contains(out, "{") {
		t.Fatalf("tail -n 3: exit %d %q %s", code, out, errOut)
	}
	// --follow picks up a row appended while it runs, and stops with ctx.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	var buf syncBuffer
	done := make(chan int)
	go func() {
		done <- runAudit(ctx, []string{"tail", "--data-dir", dir, "-n", "0", "--follow", "--json", "--interval", "50ms"}, &buf, &buf)
	}()
	cfg := audit.Config{}
	cfg.SetDefaults(dir)
	l, err := audit.Open(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Append(context.Background(), &audit.Event{Kind: audit.KindOutcome, RequestID: "followed"}); err != nil {
		t.Fatal(err)
	}
	l.Close()
	for !strings.Contains(buf.String(), "followed") {
		select {
		case <-ctx.Done():
			t.Fatalf("follow did not print the new row: %q", buf.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("tail --follow exit %d", code)
	}
}

func TestAuditPruneCmd(t *testing.T) {
	dir := auditFixture(t)
	t.Setenv("PORTCULLIS_DATA_DIR", dir)
	archive := filepath.Join(t.TempDir(), "old.jsonl")
	code, _, errOut := runAuditCmd(t, "prune")
	if code != 2 || !strings.Contains(errOut, "--before") || !strings.Contains(errOut, "--archive") {
		t.Fatalf("missing flags: %d %q", code, errOut)
	}
	code, out, errOut := runAuditCmd(t, "prune", "--before", time.Now().Add(-time.Hour).Format(time.RFC3339), "--archive", archive)
	if code != 0 || !strings.Contains(out, "pruned 10 rows through seq 10") {
		t.Fatalf("prune: %d %q %q", code, out, errOut)
	}
	if !strings.Contains(errOut, "audit prune anchor") {
		t.Fatalf("anchor not logged: %q", errOut)
	}
	if code, out, _ := runAuditCmd(t, "verify", "--archive", archive); code != 0 || !strings.Contains(out, "10 rows") {
		t.Fatalf("verify archive: %d %q", code, out)
	}
	if code, out, _ := runAuditCmd(t, "verify"); code != 0 || !strings.Contains(out, "OK: 30 rows") || !strings.Contains(out, "pruned through seq 10") {
		t.Fatalf("verify after prune: %d %q", code, out)
	}
}

func TestAuditUsage(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		code int
	}{
		{"none", nil, 2}, {"unknown", []string{"rewrite"}, 2}, {"help", []string{"help"}, 0},
		{"bad flag", []string{"verify", "--nope"}, 2}, {"extra arg", []string{"tail", "x"}, 2},
		{"negative n", []string{"tail", "-n", "-1"}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if code, _, _ := runAuditCmd(t, tc.args...); code != tc.code {
				t.Fatalf("exit %d, want %d", code, tc.code)
			}
		})
	}
}

// export refuses a filter that can match nothing by construction, as the admin API does,
// instead of exporting nothing with exit 0.
func TestAuditExportRejectsImpossibleFilters(t *testing.T) {
	dir := auditFixture(t)
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"--until", "2020-01-01T00:00:00Z", "--since", "2021-01-01T00:00:00Z"}, []string{"--until: must be after --since"}},
		{[]string{"--until", "2021-01-01T00:00:00Z", "--since", "2021-01-01T00:00:00Z"}, []string{"--until: must be after --since"}},
		{[]string{"--decision", "maybe"}, []string{`--decision: want one of allow, deny, rate_limited`, `got "maybe"`}},
	} {
		code, out, errOut := runAuditCmd(t, append([]string{"export", "--data-dir", dir}, tc.args...)...)
		if code != 2 || out != "" {
			t.Errorf("%v: exit %d, stdout %q", tc.args, code, out)
		}
		for _, w := range tc.want {
			if !strings.Contains(errOut, w) {
				t.Errorf("%v: error does not say %s: %s", tc.args, w, errOut)
			}
		}
	}
	code, out, errOut := runAuditCmd(t, "export", "--data-dir", dir, "--decision", "allow",
		"--since", "2021-01-01T00:00:00Z", "--until", time.Now().Add(time.Hour).Format(time.RFC3339))
	if code != 0 || strings.Count(out, "\n") != 40 {
		t.Fatalf("a valid filter: exit %d, %d rows, %s", code, strings.Count(out, "\n"), errOut)
	}
}

// Each subcommand's usage shows every flag it takes, with its default; a refused
// decision lists the values export accepts.
func TestAuditUsageText(t *testing.T) {
	for _, sub := range []string{"verify", "export", "tail", "prune"} {
		_, _, help := runAuditCmd(t, sub, "-h")
		if !strings.Contains(help, "Usage: portcullis audit "+sub) || !strings.Contains(help, "--data-dir DIR") || !strings.Contains(help, "--db FILE") {
			t.Errorf("audit %s -h does not show its usage line, --data-dir and --db:\n%s", sub, help)
		}
	}
	if _, _, help := runAuditCmd(t, "export", "-h"); !strings.Contains(help, "--format FORMAT") || !strings.Contains(help, `jsonl or csv (default "jsonl")`) {
		t.Errorf("export -h does not show --format and its default:\n%s", help)
	}
	// An unknown decision is refused with every value export accepts.
	_, _, bad := runAuditCmd(t, "export", "--decision", "maybe")
	for _, d := range audit.Decisions {
		if !strings.Contains(bad, d) {
			t.Errorf("the refusal of an unknown decision does not list %s: %q", d, bad)
		}
	}
	code, _, errOut := runAuditCmd(t, "export", "-h")
	if code != 0 || !strings.Contains(errOut, "Usage:") {
		t.Fatalf("export -h: exit %d %q", code, errOut)
	}
}

// `audit export -h` lists every --decision value the filters accept, not a sample.
func TestAuditHelpListsEveryDecision(t *testing.T) {
	_, out, errOut := runAuditCmd(t, "export", "-h")
	help := out + errOut
	for _, d := range audit.Decisions {
		if !regexp.MustCompile(`[ ,]` + regexp.QuoteMeta(d) + `(,|\n)`).MatchString(help) {
			t.Errorf("audit help does not list decision %q:\n%s", d, help)
		}
	}
}
