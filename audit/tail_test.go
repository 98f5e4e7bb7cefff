package audit

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// audit tail's human format: a header, then one line per row with time, caller, tool,
// decision and reason starting in the same columns on every line; an outcome row shows
// its status and latency; control characters a caller put in a tool name cannot break
// the line or reach the terminal.
func TestTailTextFormatIsAlignedColumnsOneLineEachRow(t *testing.T) {
	cfg := testConfig(t)
	l := openTest(t, cfg)
	ctx := context.Background()
	appendN(t, l, 3)
	hostile := sampleEvent(3)
	hostile.Tool = "http:GET /v1/x\x1b[2J\nfake row"
	hostile.Caller.Sub = "a-rather-long-agent-name-that-overflows"
	if err := l.Append(ctx, hostile); err != nil {
		t.Fatal(err)
	}
	out := sampleEvent(4)
	out.Kind, out.Decision, out.Reason, out.Status, out.LatencyMicros = KindOutcome, "outcome", "", 201, 1500
	if err := l.Append(ctx, out); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	rd, err := OpenReader(ctx, cfg.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	var buf bytes.Buffer
	if err := rd.Tail(ctx, &buf, "text", 4, false, 0); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != 5 {
		t.Fatalf("want a header and 4 rows (-n 4), got %d lines:\n%s", len(lines), buf.String())
	}
	if strings.ContainsRune(buf.String(), '\x1b') {
		t.Fatalf("an escape sequence reached the output:\n%q", buf.String())
	}
	header := lines[0]
	toolCol, decisionCol := strings.Index(header, "TOOL"), strings.Index(header, "DECISION")
	if !strings.HasPrefix(header, "TIME") || toolCol < 0 || decisionCol < 0 || !strings.HasSuffix(header, "REASON") {
		t.Fatalf("header %q", header)
	}
	// Rows 2 and 3 of the sample (seq 2, 3): ordinary callers, columns under the header.
	for _, line := range lines[1:3] {
		if !strings.HasPrefix(line[toolCol:], "list_integrations") && !strings.HasPrefix(line[toolCol:], "delete_integration") {
			t.Errorf("tool not under TOOL in %q", line)
		}
		if !strings.Contains(line, "agent-") || !strings.Contains(line, "@acme") || !strings.HasSuffix(line, "policy says so") {
			t.Errorf("row %q lacks caller@org or reason", line)
		}
	}
	if !strings.HasPrefix(lines[2][decisionCol:], "rate_limited") {
		t.Errorf("decision not under DECISION in %q", lines[2])
	}
	if !strings.Contains(lines[3], "http:GET /v1/x?[2J?fake row") || !strings.Contains(lines[3], "a-rather-long-agent-name-that-overflows@acme ") {
		t.Errorf("hostile row %q", lines[3])
	}
	if !strings.HasSuffix(lines[4], "outcome             status 201 in 1.5ms") {
		t.Errorf("outcome row %q", lines[4])
	}

	// --json: every field, one JSON object a line, no header.
	buf.Reset()
	if err := rd.Tail(ctx, &buf, "jsonl", 1, false, 0); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(buf.String(), `{"seq":5,`) || strings.Count(buf.String(), "\n") != 1 {
		t.Fatalf("jsonl tail: %s", buf.String())
	}
}
