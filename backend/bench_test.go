package backend

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/portcullis/portcullis/audit/sqldb/sqldbtest"
)

func benchServer(b *testing.B, pg bool) (*httptest.Server, string) {
	cfg := Config{DataDir: b.TempDir(), KEK: randKey(b), MaxPerProvider: 1 << 30}
	if pg {
		cfg.DatabaseURL = sqldbtest.PostgresURL(b)
	}
	srv, err := New(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	key, err := newServiceKey(context.Background(), srv.store, "acme", "bench")
	if err != nil {
		b.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	b.Cleanup(func() { ts.Close(); _ = srv.Close() })
	return ts, key
}

func benchDo(b *testing.B, c *http.Client, method, url, key string, body []byte) {
	req, _ := http.NewRequest(method, url, bytes.NewReader(body))
	req.Header.Set("x-portkey-api-key", key)
	req.Header.Set("Content-Type", "application/json")
	res, err := c.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if res.StatusCode != 200 {
		b.Fatalf("%s %s: %d", method, url, res.StatusCode)
	}
}

// BenchmarkCreate: POST /v1/integrations over a real loopback listener, SQLite, with
// two sealed secrets per record.
func BenchmarkCreate(b *testing.B) { benchCreate(b, false) }

// BenchmarkCreatePostgres is BenchmarkCreate on PostgreSQL (PORTCULLIS_TEST_POSTGRES).
func BenchmarkCreatePostgres(b *testing.B) { benchCreate(b, true) }

func benchCreate(b *testing.B, pg bool) {
	ts, key := benchServer(b, pg)
	var n atomic.Int64
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		c := ts.Client()
		for pb.Next() {
			i := n.Add(1)
			body := fmt.Appendf(nil, `{"name":"bench %d","ai_provider_id":"aws-bedrock","key":"sk-bench-0123456789abcdef%d","configurations":{"aws_region":"us-east-1","aws_secret_access_key":"secret-%d"}}`, i, i, i)
			benchDo(b, c, "POST", ts.URL+"/v1/integrations", key, body)
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "creates/s")
}

// BenchmarkGet: GET /v1/integrations/{slug} (masked read) over 200 stored records.
func BenchmarkGet(b *testing.B) { benchGet(b, false) }

// BenchmarkGetPostgres is BenchmarkGet on PostgreSQL (PORTCULLIS_TEST_POSTGRES).
func BenchmarkGetPostgres(b *testing.B) { benchGet(b, true) }

func benchGet(b *testing.B, pg bool) {
	ts, key := benchServer(b, pg)
	c := ts.Client()
	const records = 200
	for i := range records {
		benchDo(b, c, "POST", ts.URL+"/v1/integrations", key,
			fmt.Appendf(nil, `{"name":"g%d","ai_provider_id":"openai","key":"sk-bench-0123456789abcdef"}`, i))
	}
	var n atomic.Int64
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		c := ts.Client()
		for pb.Next() {
			i := n.Add(1) % records
			benchDo(b, c, "GET", fmt.Sprintf("%s/v1/integrations/g%d", ts.URL, i), key, nil)
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "gets/s")
}
