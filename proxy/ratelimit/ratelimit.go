package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// SubWindows is how many sub-windows a window is divided into. The limiter remembers
// SubWindows+1 counters per key; a counted call ages out between window and
// window*(SubWindows+1)/SubWindows after it was made.
const SubWindows = 16

// MinWindow is the shortest window accepted.
const MinWindow = time.Millisecond

// ErrInvalidLimit is returned (wrapped, naming the field) for a max below 1 or a window
// below MinWindow. Callers should treat it as a policy error and fail closed.
var ErrInvalidLimit = errors.New("ratelimit: invalid limit")

// Result is the outcome of one Allow.
type Result struct {
	// Allowed reports whether the call was admitted (and counted).
	Allowed bool
	// Limit is the max the call was checked against.
	Limit int
	// Remaining is how many more calls would be admitted right now.
	Remaining int
	// Reset is how long until every call counted so far has aged out, i.e. until the
	// full quota is back (0 when nothing is counted). It feeds RateLimit-Reset.
	Reset time.Duration
	// RetryAfter is how long until one slot frees; 0 when Allowed. It feeds Retry-After.
	RetryAfter time.Duration
}

// Limiter counts calls per key. Implementations never block on other callers.
type Limiter interface {
	// Allow counts one call against key when fewer than max calls were admitted in the
	// last window, and reports the outcome either way.
	Allow(ctx context.Context, key string, max int, window time.Duration) (Result, error)
	// Refund gives back the most recently counted call for key (refund_on_error). It is
	// a no-op when nothing is counted or the key was counted under another window.
	Refund(ctx context.Context, key string, window time.Duration) error
}

func validate(max int, window time.Duration) error {
	var errs []error
	if max < 1 {
		errs = append(errs, fmt.Errorf("%w: rate_limit.max must be at least 1, got %d", ErrInvalidLimit, max))
	}
	if window < MinWindow {
		errs = append(errs, fmt.Errorf("%w: rate_limit.window must be at least %s, got %s", ErrInvalidLimit, MinWindow, window))
	}
	return errors.Join(errs...)
}

// subWidth is the sub-window width for window, in the clock's unit (nanoseconds for
// Memory, microseconds for Redis).
func subWidth(window int64) int64 {
	w := window / SubWindows
	if w < 1 {
		w = 1
	}
	return w
}
