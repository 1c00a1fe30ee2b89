package transaction

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sipasync/sipasync/internal/promkit"
)

// The table's metrics: subsystem "transaction".
var (
	mLive     = promkit.Gauge("transaction", "live", "Transactions in the table (live and parked).")
	mParked   = promkit.Gauge("transaction", "parked", "Transactions parked now.")
	mCreated  = promkit.Counter("transaction", "created_total", "Transactions entered in the table.")
	mExpired  = promkit.Counter("transaction", "expired_total", "Parks answered at their suspend deadline (408/500).")
	mCanceled = promkit.Counter("transaction", "canceled_total", "Transactions ended by a CANCEL.")
	mStale    = promkit.Counter("transaction", "stale_refused_total", "Resumes refused: stale token (slot reused).")
	mEnded    = promkit.Counter("transaction", "ended_refused_total", "Resumes refused: transaction already ended.")
	mRejected = promkit.Counter("transaction", "rejected_total", "Adds or parks refused past a bound (table full, --max-parked).")
	mLate     = promkit.Counter("transaction", "late_cancels_total", "CANCELs that raced a final response inside sipgo.")
)

// Collector returns a Prometheus collector over the table's counters, read
// at scrape time.
func (t *Table) Collector() prometheus.Collector {
	return promkit.NewCollector([]promkit.Metric{mLive, mParked, mCreated, mExpired, mCanceled, mStale, mEnded, mRejected, mLate},
		func(e promkit.Emitter) {
			s := t.Stats()
			promkit.Emit(e, mLive, s.Live)
			promkit.Emit(e, mParked, s.Parked)
			promkit.Emit(e, mCreated, s.Created)
			promkit.Emit(e, mExpired, s.Expired)
			promkit.Emit(e, mCanceled, s.Canceled)
			promkit.Emit(e, mStale, s.StaleRefused)
			promkit.Emit(e, mEnded, s.EndedRefused)
			promkit.Emit(e, mRejected, s.Rejected)
			promkit.Emit(e, mLate, s.LateCancels)
		})
}
