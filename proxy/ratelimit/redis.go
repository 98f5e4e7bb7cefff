package ratelimit

import (
	"context"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

// Redis is the Limiter shared by several replicas. Each key is one Redis hash whose
// fields are absolute sub-window indices (plus "w", the window the counts belong to);
// the script reads the clock with TIME so replicas with skewed clocks still agree.
type Redis struct {
	client redis.UniversalClient
	prefix string
	allow  bool // OnStoreError == OnStoreErrorAllow

	denied, admitted atomic.Uint64 // checks Redis could not answer, by what was done
}

var _ Limiter = (*Redis)(nil)

// What a Redis limiter does when Redis cannot answer (rate_limit.on_store_error).
const (
	// OnStoreErrorDeny returns the error: the proxy refuses the call (503
	// rate_limiter_unavailable), as for any policy it cannot enforce. The default.
	OnStoreErrorDeny = "deny"
	// OnStoreErrorAllow admits the call uncounted: availability over the limit while
	// Redis is down. Every such call is counted in the store-error metric.
	OnStoreErrorAllow = "allow"
)

// RedisOptions configures NewRedisWithOptions.
type RedisOptions struct {
	// Prefix is put before every key.
	Prefix string
	// OnStoreError is OnStoreErrorDeny (default) or OnStoreErrorAllow.
	OnStoreError string
}

// NewRedis returns a Limiter that keeps its counters in Redis under prefix+key and
// denies while Redis cannot answer.
func NewRedis(client redis.UniversalClient, prefix string) *Redis {
	r, _ := NewRedisWithOptions(client, RedisOptions{Prefix: prefix})
	return r
}

// NewRedisWithOptions is NewRedis with the outage policy; it refuses an unknown
// OnStoreError.
func NewRedisWithOptions(client redis.UniversalClient, o RedisOptions) (*Redis, error) {
	switch o.OnStoreError {
	case "", OnStoreErrorDeny, OnStoreErrorAllow:
	default:
		return nil, fmt.Errorf("ratelimit: rate_limit.on_store_error: must be %q or %q, got %q", OnStoreErrorDeny, OnStoreErrorAllow, o.OnStoreError)
	}
	return &Redis{client: client, prefix: o.Prefix, allow: o.OnStoreError == OnStoreErrorAllow}, nil
}

// Collectors returns the limiter's metrics for registration:
// portcullis_ratelimit_store_errors_total{action="deny"|"allow"}.
func (r *Redis) Collectors() []prometheus.Collector {
	c := func(action string, v *atomic.Uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name:        "portcullis_ratelimit_store_errors_total",
			Help:        "Rate-limit checks Redis could not answer, by what the limiter did (rate_limit.on_store_error).",
			ConstLabels: prometheus.Labels{"action": action},
		}, func() float64 { return float64(v.Load()) })
	}
	return []prometheus.Collector{c(OnStoreErrorDeny, &r.denied), c(OnStoreErrorAllow, &r.admitted)}
}

// StoreErrors returns how many checks Redis could not answer: denied and admitted.
func (r *Redis) StoreErrors() (denied, admitted uint64) { return r.denied.Load(), r.admitted.Load() }

// The script is the Memory algorithm on microseconds. ARGV: max, window_us, k, mode
// ("allow" or "refund"). Returns {allowed, counted, retry_after_us, reset_us}.
// Integers stay below 2^53, so Lua's doubles hold them exactly; string.format('%d')
// avoids the exponent notation tostring would use for large indices.
var script = redis.NewScript(`
local key = KEYS[1]
local max = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local k = tonumber(ARGV[3])
local mode = ARGV[4]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local width = math.floor(window / k)
if width < 1 then width = 1 end
local n = math.floor(now / width)

local data = redis.call('HGETALL', key)
local w = nil
local buckets = {}
local total = 0
local stale = {}
for i = 1, #data, 2 do
  local f = data[i]
  local v = tonumber(data[i + 1])
  if f == 'w' then
    w = v
  else
    local j = tonumber(f)
    if j < n - k then
      stale[#stale + 1] = f
    else
      buckets[#buckets + 1] = {j, v}
      total = total + v
    end
  end
end

if w ~= window then
  -- A refund under another window has nothing of its own to give back.
  if mode == 'refund' then return {0, 0, 0, 0} end
  if #data > 0 then redis.call('DEL', key) end
  buckets = {}
  total = 0
elseif #stale > 0 then
  redis.call('HDEL', key, unpack(stale))
end
table.sort(buckets, function(a, b) return a[1] < b[1] end)

if mode == 'refund' then
  for i = #buckets, 1, -1 do
    if buckets[i][2] > 0 then
      local f = string.format('%d', buckets[i][1])
      if buckets[i][2] == 1 then redis.call('HDEL', key, f) else redis.call('HINCRBY', key, f, -1) end
      return {1, total - 1, 0, 0}
    end
  end
  return {0, total, 0, 0}
end

local allowed = 0
if total < max then
  allowed = 1
  total = total + 1
  redis.call('HINCRBY', key, string.format('%d', n), 1)
  redis.call('HSET', key, 'w', string.format('%d', window))
  redis.call('PEXPIRE', key, math.floor((k + 1) * width / 1000) + 1000)
  if #buckets == 0 or buckets[#buckets][1] ~= n then
    buckets[#buckets + 1] = {n, 0}
  end
  buckets[#buckets][2] = buckets[#buckets][2] + 1
end

local retry = 0
if allowed == 0 then
  local remaining = total
  for i = 1, #buckets do
    remaining = remaining - buckets[i][2]
    if remaining < max then
      retry = (buckets[i][1] + k + 1) * width - now
      break
    end
  end
end
local reset = 0
if #buckets > 0 then reset = (buckets[#buckets][1] + k + 1) * width - now end
return {allowed, total, retry, reset}
`)

// Allow implements Limiter.
func (r *Redis) Allow(ctx context.Context, key string, max int, window time.Duration) (Result, error) {
	if err := validate(max, window); err != nil {
		return Result{}, err
	}
	vals, err := r.run(ctx, key, max, window, "allow")
	if err != nil {
		if ctx.Err() != nil {
			return Result{}, err // the caller gave up: not Redis's outage
		}
		if r.allow {
			r.admitted.Add(1)
			// Admitted uncounted: Remaining is unknown, so claim none are left.
			return Result{Allowed: true, Limit: max}, nil
		}
		r.denied.Add(1)
		return Result{}, err
	}
	res := Result{
		Allowed:    vals[0] == 1,
		Limit:      max,
		Remaining:  maxInt(max-int(vals[1]), 0),
		RetryAfter: time.Duration(vals[2]) * time.Microsecond,
		Reset:      time.Duration(vals[3]) * time.Microsecond,
	}
	return res, nil
}

// Refund implements Limiter.
func (r *Redis) Refund(ctx context.Context, key string, window time.Duration) error {
	if window < MinWindow {
		return nil
	}
	_, err := r.run(ctx, key, 1, window, "refund")
	return err
}

func (r *Redis) run(ctx context.Context, key string, max int, window time.Duration, mode string) ([4]int64, error) {
	var out [4]int64
	raw, err := script.Run(ctx, r.client, []string{r.prefix + key},
		strconv.Itoa(max), strconv.FormatInt(window.Microseconds(), 10), strconv.Itoa(SubWindows), mode).Int64Slice()
	if err != nil {
		// The key may carry caller identifiers; the error names only the operation.
		return out, fmt.Errorf("ratelimit: redis %s: %w", mode, err)
	}
	if len(raw) != 4 {
		return out, fmt.Errorf("ratelimit: redis %s: script returned %d values, want 4", mode, len(raw))
	}
	copy(out[:], raw)
	return out, nil
}

func maxInt(a, b int) int {
	if a > b {
		return a
	}
	return b
}
