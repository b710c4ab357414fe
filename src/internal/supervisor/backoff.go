package supervisor

import (
	"context"
	"time"
)

// backoff is the pause before the next start after failures consecutive
// failed runs: lo doubled failures times, at most hi.
func backoff(failures int, lo, hi time.Duration) time.Duration {
	d := lo
	for i := 0; i < failures && d < hi; i++ {
		d *= 2
	}
	return min(d, hi)
}

// sleep waits for d and reports true, or for ctx to end and reports false.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
