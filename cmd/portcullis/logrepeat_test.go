package main

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

type logLine struct {
	Level      string `json:"level"`
	Msg        string `json:"msg"`
	Component  string `json:"component"`
	RequestID  string `json:"request_id"`
	Suppressed *int64 `json:"suppressed"`
}

func logLines(t *testing.T, b *syncBuffer) []logLine {
	t.Helper()
	var out []logLine
	for _, l := range strings.Split(strings.TrimSpace(b.String()), "\n") {
		if l == "" {
			continue
		}
		var ll logLine
		if err := json.Unmarshal([]byte(l), &ll); err != nil {
			t.Fatalf("%v: %s", err, l)
		}
		out = append(out, ll)
	}
	return out
}

// fakeClock is a settable clock for the limiter.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

func limitedLogger(t *testing.T, interval time.Duration) (*slog.Logger, *syncBuffer, *fakeClock, func()) {
	buf := &syncBuffer{}
	h, closeLog := newRepeatLimit(slog.NewJSONHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug}), interval)
	clk := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	h.st.now = clk.now
	t.Cleanup(closeLog)
	return slog.New(h), buf, clk, closeLog
}

// A flood of one ERROR line writes it once per interval; the next one written after the
// interval says how many were suppressed.
func TestRepeatedErrorsAreWrittenOncePerIntervalWithACount(t *testing.T) {
	log, buf, clk, _ := limitedLogger(t, time.Hour) // the ticker never fires: the clock is ours
	for i := range 10_000 {
		log.Error("audit write failed", "request_id", "r-"+strconv.Itoa(i), "err", "disk full")
	}
	if lines := logLines(t, buf); len(lines) != 1 || lines[0].Suppressed != nil || lines[0].RequestID != "r-0" {
		t.Fatalf("10000 identical errors wrote %d lines: %+v", len(lines), lines)
	}
	clk.add(time.Hour + time.Second)
	log.Error("audit write failed", "request_id", "r-next", "err", "disk full")
	lines := logLines(t, buf)
	if len(lines) != 2 || lines[1].Suppressed == nil || *lines[1].Suppressed != 9_999 {
		t.Fatalf("the line after the interval: %+v, want suppressed=9999", lines)
	}
	// That line opened a new interval: the count starts again.
	log.Error("audit write failed")
	clk.add(time.Hour + time.Second)
	log.Error("audit write failed")
	if lines := logLines(t, buf); len(lines) != 3 || *lines[2].Suppressed != 1 {
		t.Fatalf("second interval: %+v, want suppressed=1", lines)
	}
}

// Kinds are counted apart: another message, another level or another component has its
// own first line. INFO and DEBUG lines are never limited.
func TestRepeatLimitKeysOnLevelMessageAndComponent(t *testing.T) {
	log, buf, _, _ := limitedLogger(t, time.Hour)
	backend := log.With("component", "backend")
	for range 100 {
		log.Error("request failed")
		log.Warn("request failed")
		log.Error("audit write failed")
		backend.Error("request failed")
		log.Info("call refused")
		log.Debug("detail")
	}
	var counts = map[string]int{}
	for _, l := range logLines(t, buf) {
		counts[l.Level+" "+l.Msg+" "+l.Component]++
	}
	want := map[string]int{"ERROR request failed ": 1, "WARN request failed ": 1, "ERROR audit write failed ": 1,
		"ERROR request failed backend": 1, "INFO call refused ": 100, "DEBUG detail ": 100}
	for k, n := range want {
		if counts[k] != n {
			t.Errorf("%q written %d times, want %d (all: %v)", k, counts[k], n, counts)
		}
	}
}

// When no further line of a kind comes, a summary line says how many were suppressed
// once the interval is over; and close writes the counts still held.
func TestSuppressedCountIsSummarisedWithoutAFurtherLine(t *testing.T) {
	buf := &syncBuffer{}
	h, closeLog := newRepeatLimit(slog.NewJSONHandler(buf, nil), 50*time.Millisecond)
	defer closeLog()
	log := slog.New(h).With("component", "proxy")
	for range 500 {
		log.Error("audit write failed")
	}
	deadline := time.Now().Add(2 * time.Second)
	var lines []logLine
	for time.Now().Before(deadline) {
		if lines = logLines(t, buf); len(lines) == 2 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if len(lines) != 2 || lines[1].Suppressed == nil || *lines[1].Suppressed != 499 || lines[1].Msg != "audit write failed" ||
		lines[1].Level != "ERROR" || lines[1].Component != "proxy" {
		t.Fatalf("summary: %+v, want one ERROR line with suppressed=499 and the component", lines)
	}

	buf2 := &syncBuffer{}
	h2, close2 := newRepeatLimit(slog.NewJSONHandler(buf2, nil), time.Hour)
	for range 3 {
		slog.New(h2).Warn("upstream refused")
	}
	close2()
	if lines := logLines(t, buf2); len(lines) != 2 || lines[1].Suppressed == nil || *lines[1].Suppressed != 2 {
		t.Fatalf("close: %+v, want the first line and a summary with suppressed=2", lines)
	}
}

// serve's log is limited, its audit witness never is (verify --witness needs every
// checkpoint line), and a negative log_repeat_interval writes every line.
func TestServeLogIsLimitedAndTheWitnessIsNot(t *testing.T) {
	var b bytes.Buffer
	log, witness, closeLog := newLoggers(&b, "info", time.Hour)
	for range 50 {
		log.Error("audit write failed")
		witness.Warn("audit checkpoint")
	}
	closeLog()
	if n := strings.Count(b.String(), `"msg":"audit write failed"`); n != 2 { // first, and the summary
		t.Errorf("log: %d lines, want 2", n)
	}
	if n := strings.Count(b.String(), `"msg":"audit checkpoint"`); n != 50 {
		t.Errorf("witness: %d lines, want 50", n)
	}
	b.Reset()
	log, _, closeLog = newLoggers(&b, "info", -1)
	for range 50 {
		log.Error("audit write failed")
	}
	closeLog()
	if n := strings.Count(b.String(), `"msg":"audit write failed"`); n != 50 {
		t.Errorf("log_repeat_interval negative: %d lines, want 50", n)
	}
}
