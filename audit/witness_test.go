package audit

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"testing"
)

func readWitnessFile(t *testing.T, path string) []Witnessed {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w, err := ReadWitness(f)
	if err != nil {
		t.Fatalf("ReadWitness %s: %v", path, err)
	}
	return w
}

func storedSignatures(t *testing.T, dbPath string) []string {
	t.Helper()
	db, err := sql.Open("sqlite", dbPath)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query(`SELECT signature FROM audit_checkpoints ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var sig []byte
		if err := rows.Scan(&sig); err != nil {
			t.Fatal(err)
		}
		out = append(out, string(sig))
	}
	return out
}

func witnessSignatures(w []Witnessed) []string {
	var out []string
	for _, c := range w {
		out = append(out, string(c.Signature))
	}
	return out
}

// The log writes every checkpoint to its witness file itself (0600), in the order it
// stored them, as the same lines it gives its logger; verify reads the file as it reads
// a log, and a later run appends to it.
func TestWitnessFileRecordsEveryCheckpoint(t *testing.T) {
	cfg := testConfig(t)
	cfg.CheckpointEvery = 10
	var logs syncBuf
	l, err := Open(context.Background(), cfg, slog.New(slog.NewJSONHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, l, 35)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(cfg.WitnessPath)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("witness file mode %v, want 0600", st.Mode().Perm())
	}
	file := readWitnessFile(t, cfg.WitnessPath)
	stored := storedSignatures(t, cfg.Path)
	if got := witnessSignatures(file); len(stored) < 4 || strings.Join(got, "|") != strings.Join(stored, "|") {
		t.Fatalf("witness file holds %d checkpoints, the database %d: they must be the same, in order", len(got), len(stored))
	}
	fromLog, err := ReadWitness(strings.NewReader(logs.String()))
	if err != nil || strings.Join(witnessSignatures(fromLog), "|") != strings.Join(stored, "|") {
		t.Fatalf("the log's checkpoint lines differ from the database's: %d lines, %v", len(fromLog), err)
	}
	// Each line is a JSON object with slog's time/level/msg, so the file reads as a log.
	raw, _ := os.ReadFile(cfg.WitnessPath)
	lines := strings.Split(strings.TrimSuffix(string(raw), "\n"), "\n")
	for _, ln := range lines {
		var e map[string]any
		if err := json.Unmarshal([]byte(ln), &e); err != nil || e["level"] != "INFO" || e["time"] == nil {
			t.Fatalf("witness line is not a log entry: %q (%v)", ln, err)
		}
	}
	if !strings.Contains(lines[0], `"msg":"audit: log open"`) || !strings.Contains(lines[0], `"log_id":"`) {
		t.Fatalf("first line does not name the log: %s", lines[0])
	}
	pub := pubKey(t, cfg)
	if rep, err := VerifyWitnessed(context.Background(), cfg.Path, pub, file); err != nil || !rep.OK {
		t.Fatalf("intact log against its witness file: %+v %v", rep, err)
	}

	// A second run appends; nothing is lost.
	l = openTest(t, cfg)
	appendN(t, l, 5)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	again := readWitnessFile(t, cfg.WitnessPath)
	if len(again) <= len(file) || strings.Join(witnessSignatures(again[:len(file)]), "|") != strings.Join(witnessSignatures(file), "|") {
		t.Fatalf("reopening rewrote the witness file: %d checkpoints before, %d after", len(file), len(again))
	}

	// Cutting the newest rows off with their checkpoints passes a check of the database
	// alone, not one against the file.
	tamper(t, cfg.Path, `DELETE FROM audit_events WHERE seq > 25`, `DELETE FROM audit_checkpoints WHERE seq > 25`,
		`DELETE FROM audit_lookup WHERE seq > 25`, `UPDATE audit_meta SET value = '25' WHERE key = 'lookup_through'`)
	if rep, err := Verify(context.Background(), cfg.Path, pub); err != nil || !rep.OK {
		t.Fatalf("the database alone should still look whole: %+v %v", rep, err)
	}
	rep, err := VerifyWitnessed(context.Background(), cfg.Path, pub, again)
	if err != nil || rep.OK || !strings.Contains(strings.Join(rep.Problems, ";"), "the chain ends at seq 25 (rows removed)") {
		t.Fatalf("cut tail against the witness file: %+v %v", rep, err)
	}
}

// A witness file created wider by someone else is narrowed to 0600 when the log opens it.
func TestWitnessFileModeIsNarrowed(t *testing.T) {
	cfg := testConfig(t)
	if err := os.WriteFile(cfg.WitnessPath, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(cfg.WitnessPath, 0o644); err != nil { // past the umask
		t.Fatal(err)
	}
	l := openTest(t, cfg)
	appendN(t, l, 1)
	l.Close()
	if st, err := os.Stat(cfg.WitnessPath); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("witness file mode after open: %v %v, want 0600", st.Mode().Perm(), err)
	}
}

// A last line cut short (a crash mid-write) neither makes the file unreadable nor
// swallows the next line: verify skips it, and the next start drops it before appending.
func TestWitnessFileTornLastLine(t *testing.T) {
	cfg := testConfig(t)
	l := openTest(t, cfg)
	appendN(t, l, 3)
	l.Close()
	before := readWitnessFile(t, cfg.WitnessPath)
	full, _ := os.ReadFile(cfg.WitnessPath)
	last := full[bytes.LastIndexByte(full[:len(full)-1], '\n')+1:]
	f, err := os.OpenFile(cfg.WitnessPath, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write(last[:len(last)/2]) // half a checkpoint line, no newline
	f.Close()
	if got := readWitnessFile(t, cfg.WitnessPath); len(got) != len(before) {
		t.Fatalf("torn last line: read %d checkpoints, want the %d whole ones", len(got), len(before))
	}
	// A complete last line that is not a whole checkpoint is not a torn write: still an error.
	if _, err := ReadWitness(strings.NewReader(`{"msg":"audit checkpoint","kind":"periodic","seq":3}`)); err == nil {
		t.Fatal("an unterminated but complete partial entry was skipped")
	}

	var logs syncBuf
	l2, err := Open(context.Background(), cfg, slog.New(slog.NewJSONHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, l2, 3)
	l2.Close()
	if !strings.Contains(logs.String(), "incomplete line") {
		t.Fatalf("dropping the torn line was not logged:\n%s", logs.String())
	}
	after := readWitnessFile(t, cfg.WitnessPath)
	if len(after) <= len(before) {
		t.Fatalf("no checkpoint after the torn line: %d before, %d after", len(before), len(after))
	}
	raw, _ := os.ReadFile(cfg.WitnessPath)
	for i, ln := range bytes.Split(bytes.TrimSuffix(raw, []byte("\n")), []byte("\n")) {
		if !json.Valid(ln) {
			t.Fatalf("line %d is not JSON (the torn fragment ran into the next line): %s", i+1, ln)
		}
	}
	if rep, err := VerifyWitnessed(context.Background(), cfg.Path, pubKey(t, cfg), after); err != nil || !rep.OK {
		t.Fatalf("verify after a torn witness line: %+v %v", rep, err)
	}
}

// Past its size limit the witness file is rotated to .1; the current file starts with
// a checkpoint, and alone still catches a cut tail (its newest checkpoint pins every
// row before it).
func TestWitnessFileRotates(t *testing.T) {
	cfg := testConfig(t)
	cfg.CheckpointEvery = 5
	l := openTest(t, cfg)
	l.wfile.maxBytes = 2000 // about five lines; set before any row reaches the ingester
	appendN(t, l, 100)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{cfg.WitnessPath, cfg.WitnessPath + ".1"} {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatalf("after rotation: %v", err)
		}
		if st.Mode().Perm() != 0o600 || st.Size() > 2000 {
			t.Fatalf("%s: mode %v size %d, want 0600 and at most 2000 bytes", p, st.Mode().Perm(), st.Size())
		}
	}
	raw, _ := os.ReadFile(cfg.WitnessPath)
	if !bytes.HasPrefix(raw, []byte(`{"time":`)) || !bytes.Contains(raw[:bytes.IndexByte(raw, '\n')], []byte(`"msg":"audit checkpoint"`)) {
		t.Fatalf("rotated file does not start with a checkpoint: %.200s", raw)
	}
	cur := readWitnessFile(t, cfg.WitnessPath)
	newest := cur[len(cur)-1].Seq
	pub := pubKey(t, cfg)
	if rep, err := VerifyWitnessed(context.Background(), cfg.Path, pub, cur); err != nil || !rep.OK {
		t.Fatalf("verify against the rotated file: %+v %v", rep, err)
	}
	cut := newest - 3
	q := func(s string) string { return strings.ReplaceAll(s, "N", strconv.FormatInt(cut, 10)) }
	tamper(t, cfg.Path, q(`DELETE FROM audit_events WHERE seq > N`), q(`DELETE FROM audit_checkpoints WHERE seq > N`),
		q(`DELETE FROM audit_lookup WHERE seq > N`), q(`UPDATE audit_meta SET value = 'N' WHERE key = 'lookup_through'`))
	rep, err := VerifyWitnessed(context.Background(), cfg.Path, pub, cur)
	if err != nil || rep.OK || !strings.Contains(strings.Join(rep.Problems, ";"), "rows removed") {
		t.Fatalf("cut tail against the rotated file: %+v %v", rep, err)
	}
}
