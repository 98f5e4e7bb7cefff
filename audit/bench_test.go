package audit

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"
)

func benchAppend(b *testing.B, sync_ string) { benchAppendWith(b, sync_, nil) }

// benchAppendWith is benchAppend with started run after the log opens (a shipper).
func benchAppendWith(b *testing.B, sync_ string, started func(*Log)) {
	cfg := testConfig(b)
	cfg.Synchronous = sync_
	if v := os.Getenv("AUDIT_BENCH_LINGER"); v != "" {
		cfg.Linger, _ = time.ParseDuration(v)
	}
	par := 64
	if v := os.Getenv("AUDIT_BENCH_PAR"); v != "" {
		par, _ = strconv.Atoi(v)
	}
	cfg.CheckpointEvery = 10000
	if v := os.Getenv("AUDIT_BENCH_CHECKPOINT_INTERVAL"); v != "" {
		cfg.CheckpointInterval, _ = time.ParseDuration(v)
	}
	l := openTest(b, cfg)
	if started != nil {
		started(l)
	}
	b.SetParallelism(par)
	var mu sync.Mutex
	var lat []time.Duration
	ctx := context.Background()
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		local := make([]time.Duration, 0, 1024)
		i := 0
		for pb.Next() {
			ev := sampleEvent(i)
			i++
			t0 := time.Now()
			if err := l.Append(ctx, ev); err != nil {
				b.Error(err)
				return
			}
			local = append(local, time.Since(t0))
		}
		mu.Lock()
		lat = append(lat, local...)
		mu.Unlock()
	})
	// Rows count once SQLite holds them: the ingester's backlog is part of the cost.
	waitAllStored(b, l)
	el := time.Since(start)
	b.StopTimer()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	if len(lat) > 0 {
		b.ReportMetric(float64(len(lat))/el.Seconds(), "rows/s")
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
	}
	if n := l.batches.Load(); n > 0 {
		b.ReportMetric(float64(l.appended.Load())/float64(n), "rows/batch")
	}
}

func BenchmarkAppendNormal(b *testing.B) { benchAppend(b, "NORMAL") }
func BenchmarkAppendFull(b *testing.B)   { benchAppend(b, "FULL") }

// BenchmarkAppendSerial is one caller at a time: the latency a lone request pays.
func BenchmarkAppendSerial(b *testing.B) {
	cfg := testConfig(b)
	cfg.CheckpointEvery = 10000
	l := openTest(b, cfg)
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := l.Append(ctx, sampleEvent(i)); err != nil {
			b.Fatal(err)
		}
	}
	waitAllStored(b, l)
}

// waitAllStored waits until SQLite holds every row the log has acknowledged.
func waitAllStored(b *testing.B, l *Log) {
	deadline := time.Now().Add(time.Minute)
	for l.ingested.Load() < l.journaled.Load() {
		if err := l.storeFailure(); err != nil || time.Now().After(deadline) {
			b.Fatalf("rows not stored: %v", err)
		}
		l.kickIngester()
		time.Sleep(100 * time.Microsecond)
	}
}

// benchCheckpoint is a signed checkpoint as the ingester writes it.
func benchCheckpoint(b *testing.B) checkpoint {
	_, key, err := ed25519.GenerateKey(nil)
	if err != nil {
		b.Fatal(err)
	}
	return signCheckpoint(key, "0123456789abcdef0123456789abcdef", CheckpointPeriodic, 123456, make([]byte, 32), time.Now())
}

// BenchmarkWitnessFileLine is the witness file's cost per checkpoint: one line encoded
// and written (fsyncs are once per interval, measured apart).
func BenchmarkWitnessFileLine(b *testing.B) {
	w, _, err := openWitnessFile(filepath.Join(b.TempDir(), "witness.log"), time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	defer w.close()
	c := benchCheckpoint(b)
	now := time.Now()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := w.checkpoint(now, &c); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkWitnessLogLine is the same line through slog's JSON handler to a file, as
// serve's log gets it.
func BenchmarkWitnessLogLine(b *testing.B) {
	f, err := os.Create(filepath.Join(b.TempDir(), "serve.log"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	log := slog.New(slog.NewJSONHandler(f, nil))
	c := benchCheckpoint(b)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		log.Info("audit checkpoint", "kind", c.Kind, "seq", c.Seq,
			"head_hash", hex.EncodeToString(c.Head), "ts", c.TS, "key_id", c.KeyID, "log_id", c.LogID,
			"signature", base64.StdEncoding.EncodeToString(c.Signature))
	}
}

// BenchmarkCheckpoint is a whole timed checkpoint of an idle log: sign, commit (with
// its fsync), witness file and log lines.
func BenchmarkCheckpoint(b *testing.B) {
	cfg := testConfig(b)
	l := openTest(b, cfg)
	if err := l.Append(context.Background(), sampleEvent(0)); err != nil {
		b.Fatal(err)
	}
	waitAllStored(b, l)
	time.Sleep(10 * time.Millisecond) // the first row's checkpoint is written
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		// The ingester is idle (no rows, hour-long ticker): this goroutine stands in for it.
		if err := l.writeCheckpoint(context.Background(), CheckpointPeriodic); err != nil {
			b.Fatal(err)
		}
	}
}
