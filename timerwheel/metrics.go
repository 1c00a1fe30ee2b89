package timerwheel

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sipasync/sipasync/internal/promkit"
)

// The wheel's metrics: subsystem "timerwheel".
var (
	mPending    = promkit.Gauge("timerwheel", "pending", "Timers pending on the wheel.")
	mFired      = promkit.Counter("timerwheel", "fired_total", "Timers fired.")
	mCancelled  = promkit.Counter("timerwheel", "cancelled_total", "Timers cancelled before firing.")
	mLateTicks  = promkit.Counter("timerwheel", "late_ticks_total", "Ticks processed late (an advance covering n ticks adds n-1).")
	mOverflowed = promkit.Counter("timerwheel", "overflowed_total", "Timers beyond the wheel's range (kept in the overflow list).")
)

// Collector returns a Prometheus collector over the wheel's counters,
// read at scrape time. One wheel per registry: the series have no label.
func (w *Wheel[T]) Collector() prometheus.Collector {
	return promkit.NewCollector([]promkit.Metric{mPending, mFired, mCancelled, mLateTicks, mOverflowed},
		func(e promkit.Emitter) {
			s := w.Stats()
			promkit.Emit(e, mPending, s.Pending)
			promkit.Emit(e, mFired, s.Fired)
			promkit.Emit(e, mCancelled, s.Cancelled)
			promkit.Emit(e, mLateTicks, s.LateTicks)
			promkit.Emit(e, mOverflowed, s.Overflowed)
		})
}
