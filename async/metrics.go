package async

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sipasync/sipasync/internal/promkit"
)

// The engine's metrics: subsystem "async".
var (
	mRefused    = promkit.Counter("async", "resume_refused_total", "Resumes refused, by reason: canceled, timed_out, already_resumed (a token is single-use), ended, unknown_token, unknown_route, other.", "reason")
	mTimeoutRte = promkit.Counter("async", "timeout_routes_total", "Park timeouts that ran the park's timeout route.")
	mRejected   = promkit.Counter("async", "resume_rejected_total", "Resumes, due or external, that the module workers could not take (answered 503 with Retry-After).")
	mData       = promkit.Counter("async", "data_tasks_total", "Data tasks run (async.TaskData).")
	mDataRej    = promkit.Counter("async", "data_rejected_total", "Data tasks refused by a full group.")
	mTKV        = promkit.Counter("async", "tkv_total", "tkv records emitted.")
	mTKVRej     = promkit.Counter("async", "tkv_rejected_total", "tkv records refused by a full group.")
)

// Collector returns a Prometheus collector over the engine's counters,
// read at scrape time. Its wheel has its own (Wheel().Collector()).
func (e *Engine) Collector() prometheus.Collector {
	return promkit.NewCollector([]promkit.Metric{mRefused, mTimeoutRte, mRejected, mData, mDataRej, mTKV, mTKVRej},
		func(em promkit.Emitter) {
			s := e.Stats()
			for i, reason := range RefusalReasons {
				promkit.Emit(em, mRefused, s.Refused[i], reason)
			}
			promkit.Emit(em, mTimeoutRte, s.TimeoutRoutes)
			promkit.Emit(em, mRejected, s.ResumeRejected)
			promkit.Emit(em, mData, s.DataTasks)
			promkit.Emit(em, mDataRej, s.DataRejected)
			promkit.Emit(em, mTKV, s.TKV)
			promkit.Emit(em, mTKVRej, s.TKVRejected)
		})
}
