package audit

import (
	"context"
	"os"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"
)

func benchAppend(b *testing.B, sync_ string) {
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
