package ratelimit

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Redis is the Limiter shared by several replicas. Each key is one Redis hash whose
// fields are absolute sub-window indices (plus "w", the window the counts belong to);
// the script reads the clock with TIME so replicas with skewed clocks still agree.
type Redis struct {
	client redis.UniversalClient
	prefix string
}

var _ Limiter = (*Redis)(nil)

// NewRedis returns a Limiter that keeps its counters in Redis under prefix+key.
func NewRedis(client redis.UniversalClient, prefix string) *Redis {
	return &Redis{client: client, prefix: prefix}
}

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
