package workergroups

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sipasync/sipasync/internal/promkit"
)

// The groups' metrics: subsystem "workergroups", one series per group.
var (
	mWorkers   = promkit.Gauge("workergroups", "workers", "Worker goroutines alive.", "group")
	mBusy      = promkit.Gauge("workergroups", "busy", "Workers running a task now.", "group")
	mQueued    = promkit.Gauge("workergroups", "queued", "Tasks accepted and not started yet.", "group")
	mWaiting   = promkit.Gauge("workergroups", "waiting", "Submitters blocked on a full queue.", "group")
	mCompleted = promkit.Counter("workergroups", "completed_total", "Tasks that returned.", "group")
	mRejected  = promkit.Counter("workergroups", "rejected_total", "Tasks refused (full non-blocking queue, stopped).", "group")
	mPanicked  = promkit.Counter("workergroups", "panicked_total", "Tasks that panicked (recovered).", "group")
	mUndone    = promkit.Counter("workergroups", "undone_total", "Tasks dropped by a stop whose deadline passed.", "group")
)

// Collector returns a Prometheus collector over every group's counters,
// read at scrape time (groups added later are included).
func (gs *Groups) Collector() prometheus.Collector {
	return promkit.NewCollector([]promkit.Metric{mWorkers, mBusy, mQueued, mWaiting, mCompleted, mRejected, mPanicked, mUndone},
		func(e promkit.Emitter) {
			for _, g := range gs.List() {
				s, n := g.Stats(), g.Name()
				promkit.Emit(e, mWorkers, s.Workers, n)
				promkit.Emit(e, mBusy, s.Busy, n)
				promkit.Emit(e, mQueued, s.Queued, n)
				promkit.Emit(e, mWaiting, s.Waiting, n)
				promkit.Emit(e, mCompleted, s.Completed, n)
				promkit.Emit(e, mRejected, s.Rejected, n)
				promkit.Emit(e, mPanicked, s.Panicked, n)
				promkit.Emit(e, mUndone, s.Undone, n)
			}
		})
}
