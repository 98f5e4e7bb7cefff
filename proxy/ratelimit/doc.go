// Package ratelimit counts calls against policy rate limits ("at most max calls per
// window per key") and answers at once whether one more call is admitted. It never
// blocks: a rejected call gets the time after which a retry can succeed.
//
// # Algorithm: sliding window of sub-window counters, strict
//
// Each key keeps SubWindows+1 counters, one per sub-window of width window/SubWindows
// (16 sub-windows, so 17 counters). A call at time t, in sub-window n, is admitted when
// the calls counted in sub-windows n-16..n number fewer than max. Those 17 sub-windows
// cover every interval of length window that ends at t, so the guarantee is strict:
// no interval of length window, wherever it starts, ever contains more than max
// admitted calls. (Proof: take the last call admitted in such an interval, at t in
// sub-window m; the interval starts after t-window, hence in sub-window m-16 or later;
// every earlier call in the interval was therefore among the fewer than max calls
// counted when that last call was admitted.)
//
// The price of the strict bound is that a counted call is forgotten between one
// window and one window plus a sub-window (6.25 %) after it was made, so a caller that
// spends its whole quota at once waits at most window*17/16 for the next call rather
// than exactly window. We chose that over the usual alternatives because each of them
// breaks the promise users read in "max 10 per 60 s":
//   - a fixed-window counter admits up to 2*max across a window boundary;
//   - the weighted two-window approximation assumes calls were spread evenly over the
//     previous window and admits more than max when they were not;
//   - GCRA (token bucket) with burst=max refills one call every window/max, so it admits
//     up to 2*max-1 in one window; with burst=1 it is strict but forbids any burst;
//   - an exact sliding log stores max timestamps per key, which is not bounded memory
//     for large max and 100k+ keys.
//
// Memory keeps a small fixed record per key (about 170 bytes with map overhead, plus the
// key string) in a sharded map with a per-shard LRU list. It holds at most MaxKeys keys,
// drops keys whose counters have all aged out as it goes, and evicts the least recently
// used key when a shard is full. Evicting a key whose counters are still live forgets its
// count; Stats reports how often that happened, so MaxKeys can be sized above the number
// of keys active within one window.
//
// Redis runs the same algorithm in one Lua script per call (one round trip), on Redis
// server time, so every replica sharing the Redis enforces one limit.
package ratelimit
