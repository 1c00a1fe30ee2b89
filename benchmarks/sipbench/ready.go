package sipbench

import (
	"bytes"
	"context"
	"errors"
	"os"
	"time"
)

// Errors of WaitReady.
var (
	ErrExited   = errors.New("exited before it started")
	ErrNotReady = errors.New("did not start in time")
)

// WaitReady polls ready every poll until it reports true (nil), done
// closes first (ErrExited: the process is gone), within passes
// (ErrNotReady) or ctx ends (its error).
func WaitReady(ctx context.Context, done <-chan struct{}, within, poll time.Duration, ready func() bool) error {
	deadline := time.NewTimer(within)
	defer deadline.Stop()
	tick := time.NewTicker(poll)
	defer tick.Stop()
	for {
		select {
		case <-done:
			return ErrExited
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline.C:
			return ErrNotReady
		case <-tick.C:
			if ready() {
				return nil
			}
		}
	}
}

// Logged returns a readiness check for WaitReady: the file at path
// contains marker (sipasync logs "sipasync started").
func Logged(path, marker string) func() bool {
	return func() bool {
		b, _ := os.ReadFile(path)
		return bytes.Contains(b, []byte(marker))
	}
}

// TailFile returns the last n bytes of the file at path ("" if unreadable).
func TailFile(path string, n int64) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	if int64(len(b)) > n {
		b = b[int64(len(b))-n:]
	}
	return string(b)
}
