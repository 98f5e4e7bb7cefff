package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

func testRedis(t *testing.T) (redis.UniversalClient, string) {
	t.Helper()
	addr := os.Getenv("PORTCULLIS_TEST_REDIS")
	if addr == "" {
		t.Skip("PORTCULLIS_TEST_REDIS not set (e.g. 127.0.0.1:6379); skipping Redis limiter tests")
	}
	client := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { client.Close() })
	if err := client.Ping(context.Background()).Err(); err != nil {
		t.Fatalf("redis at %s: %v", addr, err)
	}
	prefix := fmt.Sprintf("portcullis-test:%s:%d:", t.Name(), time.Now().UnixNano())
	t.Cleanup(func() {
		ctx := context.Background()
		iter := client.Scan(ctx, 0, prefix+"*", 100).Iterator()
		for iter.Next(ctx) {
			client.Del(ctx, iter.Val())
		}
	})
	return client, prefix
}

func TestRedisTwoReplicasShareOneLimit(t *testing.T) {
	client, prefix := testRedis(t)
	ctx := context.Background()
	a, b := NewRedis(client, prefix), NewRedis(client, prefix)
	var allowed atomic.Int64
	var wg sync.WaitGroup
	for i := 0; i < 40; i++ {
		wg.Add(1)
		lim := a
		if i%2 == 1 {
			lim = b
		}
		go func() {
			defer wg.Done()
			res, err := lim.Allow(ctx, "agent|s|tool", 10, time.Minute)
			if err != nil {
				t.Error(err)
				return
			}
			if res.Allowed {
				allowed.Add(1)
			}
		}()
	}
	wg.Wait()
	if allowed.Load() != 10 {
		t.Fatalf("two replicas admitted %d calls, want 10 in total", allowed.Load())
	}
	res, err := b.Allow(ctx, "agent|s|tool", 10, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if res.Allowed || res.Remaining != 0 || res.Limit != 10 {
		t.Fatalf("over the limit: %+v", res)
	}
	if res.RetryAfter <= 55*time.Second || res.RetryAfter > time.Minute+time.Minute/SubWindows {
		t.Fatalf("RetryAfter = %s, want about one window", res.RetryAfter)
	}
	if ttl := client.PTTL(ctx, prefix+"agent|s|tool").Val(); ttl <= 0 || ttl > 2*time.Minute {
		t.Fatalf("key TTL = %s, want it to expire on its own within ~1 window", ttl)
	}
	// Another key is independent.
	if res, _ := a.Allow(ctx, "other", 10, time.Minute); !res.Allowed || res.Remaining != 9 {
		t.Fatalf("other key: %+v", res)
	}
}

func TestRedisWindowSlidesAndRefund(t *testing.T) {
	client, prefix := testRedis(t)
	ctx := context.Background()
	l := NewRedis(client, prefix)
	const window = 320 * time.Millisecond // sub-window 20ms
	for i := 0; i < 2; i++ {
		if res, err := l.Allow(ctx, "k", 2, window); err != nil || !res.Allowed {
			t.Fatalf("call %d: %+v %v", i, res, err)
		}
	}
	res, _ := l.Allow(ctx, "k", 2, window)
	if res.Allowed {
		t.Fatal("third call admitted with max 2")
	}
	if err := l.Refund(ctx, "k", window); err != nil {
		t.Fatal(err)
	}
	if res, _ := l.Allow(ctx, "k", 2, window); !res.Allowed {
		t.Fatal("call after refund rejected")
	}
	res, _ = l.Allow(ctx, "k", 2, window)
	if res.Allowed {
		t.Fatal("refund gave back more than one call")
	}
	// Refund under another window leaves the count alone.
	l.Refund(ctx, "k", time.Hour)
	if res, _ := l.Allow(ctx, "k", 2, window); res.Allowed {
		t.Fatal("refund under another window freed a slot")
	}
	time.Sleep(res.RetryAfter + 5*time.Millisecond)
	if res, _ := l.Allow(ctx, "k", 2, window); !res.Allowed {
		t.Fatalf("rejected after RetryAfter: %+v", res)
	}
}

func TestRedisNeverExceedsMaxInAnyWindow(t *testing.T) {
	client, prefix := testRedis(t)
	ctx := context.Background()
	l := NewRedis(client, prefix)
	const max, window = 5, 160 * time.Millisecond
	// Redis admits a call at some instant of its own clock between our send and our
	// receive. Max+1 admissions prove the limit broken only when even the widest span
	// those instants can have (first send to last receive) is shorter than the window:
	// that holds however slow the round trips are on a loaded machine, and still
	// catches a limiter that lets a burst through (a fixed window at its boundary).
	type admission struct{ sent, recv int64 }
	var admitted []admission
	deadline := time.Now().Add(800 * time.Millisecond)
	for time.Now().Before(deadline) {
		sent := time.Now().UnixNano()
		res, err := l.Allow(ctx, "k", max, window)
		if err != nil {
			t.Fatal(err)
		}
		if res.Allowed {
			admitted = append(admitted, admission{sent, time.Now().UnixNano()})
		}
		time.Sleep(2 * time.Millisecond)
	}
	for i := 0; i+max < len(admitted); i++ {
		if span := admitted[i+max].recv - admitted[i].sent; span < int64(window) {
			t.Fatalf("admissions %d-%d (%d calls, max %d) all fell within %s, under the %s window", i, i+max, max+1, max, time.Duration(span), window)
		}
	}
	if len(admitted) < 4*max {
		t.Fatalf("admitted only %d over 5 windows", len(admitted))
	}
}

func TestRedisInvalidLimitAndErrors(t *testing.T) {
	client, prefix := testRedis(t)
	l := NewRedis(client, prefix)
	if _, err := l.Allow(context.Background(), "k", 0, time.Second); !errors.Is(err, ErrInvalidLimit) {
		t.Fatalf("max 0: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if res, err := l.Allow(ctx, "k", 1, time.Second); err == nil || res.Allowed {
		t.Fatalf("cancelled context: %+v %v, want an error and not allowed", res, err)
	}
}

func BenchmarkRedisAllow(b *testing.B) {
	addr := os.Getenv("PORTCULLIS_TEST_REDIS")
	if addr == "" {
		b.Skip("PORTCULLIS_TEST_REDIS not set")
	}
	client := redis.NewClient(&redis.Options{Addr: addr})
	defer client.Close()
	prefix := fmt.Sprintf("portcullis-bench:%d:", time.Now().UnixNano())
	l := NewRedis(client, prefix)
	ctx := context.Background()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, err := l.Allow(ctx, "k"+fmt.Sprint(i%1000), 1_000_000, time.Minute); err != nil {
				b.Error(err)
				return
			}
			i++
		}
	})
	b.StopTimer()
	iter := client.Scan(ctx, 0, prefix+"*", 1000).Iterator()
	for iter.Next(ctx) {
		client.Del(ctx, iter.Val())
	}
}

// closedRedis is a client for a port nothing listens on: every command fails fast.
func closedRedis(t *testing.T) redis.UniversalClient {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	c := redis.NewClient(&redis.Options{Addr: addr, DialTimeout: 200 * time.Millisecond, MaxRetries: -1, DialerRetries: 1})
	t.Cleanup(func() { c.Close() })
	return c
}

func TestRedisOutageDeniesByDefaultAndCountsEachError(t *testing.T) {
	lim := NewRedis(closedRedis(t), "p:")
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		res, err := lim.Allow(ctx, "agent|tool", 10, time.Minute)
		if err == nil || res.Allowed {
			t.Fatalf("Redis down, default policy: allowed=%v err=%v; want an error (the proxy refuses the call)", res.Allowed, err)
		}
		if strings.Contains(err.Error(), "agent|tool") {
			t.Fatalf("the error names the key (caller identifiers): %v", err)
		}
	}
	if denied, admitted := lim.StoreErrors(); denied != 3 || admitted != 0 {
		t.Fatalf("store errors: denied %d admitted %d, want 3 and 0", denied, admitted)
	}
	if got := storeErrorMetric(t, lim, OnStoreErrorDeny); got != 3 {
		t.Fatalf(`portcullis_ratelimit_store_errors_total{action="deny"} = %v, want 3`, got)
	}
}

func TestRedisOutageWithOnStoreErrorAllowAdmitsUncountedAndCountsEachError(t *testing.T) {
	lim, err := NewRedisWithOptions(closedRedis(t), RedisOptions{Prefix: "p:", OnStoreError: OnStoreErrorAllow})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for i := 0; i < 15; i++ { // past the limit of 10: nothing counts while Redis is down
		res, err := lim.Allow(ctx, "agent|tool", 10, time.Minute)
		if err != nil || !res.Allowed || res.Limit != 10 || res.Remaining != 0 {
			t.Fatalf("call %d with on_store_error allow: %+v %v", i, res, err)
		}
	}
	if denied, admitted := lim.StoreErrors(); denied != 0 || admitted != 15 {
		t.Fatalf("store errors: denied %d admitted %d, want 0 and 15", denied, admitted)
	}
	if got := storeErrorMetric(t, lim, OnStoreErrorAllow); got != 15 {
		t.Fatalf(`portcullis_ratelimit_store_errors_total{action="allow"} = %v, want 15`, got)
	}
	// A caller that gave up is not an outage: its call is neither admitted nor counted.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if res, err := lim.Allow(cctx, "agent|tool", 10, time.Minute); err == nil || res.Allowed {
		t.Fatalf("cancelled caller admitted: %+v %v", res, err)
	}
	if _, admitted := lim.StoreErrors(); admitted != 15 {
		t.Fatalf("a cancelled call counted as a store error: %d", admitted)
	}
	if _, err := NewRedisWithOptions(closedRedis(t), RedisOptions{OnStoreError: "open"}); err == nil ||
		!strings.Contains(err.Error(), "rate_limit.on_store_error") {
		t.Fatalf("unknown on_store_error accepted: %v", err)
	}
}

// storeErrorMetric reads portcullis_ratelimit_store_errors_total{action} as /metrics
// would expose it.
func storeErrorMetric(t *testing.T, lim *Redis, action string) float64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(lim.Collectors()...)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "portcullis_ratelimit_store_errors_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == "action" && lp.GetValue() == action {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("portcullis_ratelimit_store_errors_total{action=%q} not exposed", action)
	return 0
}
