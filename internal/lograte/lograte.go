// Package lograte limits how often a log line is written: at most once per
// interval per key, so that a flood of bad input, a broken route under
// load or an unreachable broker is loud without flooding the log. It is the
// one limiter every sipasync package uses.
package lograte

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/benbjohnson/clock"
)

// Limiter allows one line per key per interval. It is safe for concurrent
// use, and takes no lock once a key has been seen.
type Limiter struct {
	clock clock.Clock
	every int64 // ns
	keys  sync.Map
}

type entry struct {
	last    atomic.Int64 // unix ns + 1 of the last allowed line; 0: none yet
	skipped atomic.Uint64
}

// New returns a limiter of one line per key per every, on clk (nil: the
// real clock).
func New(clk clock.Clock, every time.Duration) *Limiter {
	if clk == nil {
		clk = clock.New()
	}
	return &Limiter{clock: clk, every: int64(every)}
}

// Allow reports whether a line of key may be written now and, when it
// may, how many were held back since the last one.
func (l *Limiter) Allow(key string) (ok bool, skipped uint64) {
	v, found := l.keys.Load(key)
	if !found {
		v, _ = l.keys.LoadOrStore(key, new(entry))
	}
	e := v.(*entry)
	now := l.clock.Now().UnixNano() + 1
	last := e.last.Load()
	if (last != 0 && now-last < l.every) || !e.last.CompareAndSwap(last, now) {
		e.skipped.Add(1)
		return false, 0
	}
	return true, e.skipped.Swap(0)
}
