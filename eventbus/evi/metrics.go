package evi

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sipasync/sipasync/internal/promkit"
)

// The event interface's metrics: subsystem "events".
var (
	mRaised   = promkit.Counter("events", "raised_total", "Events raised (published on the bus).")
	mRefused  = promkit.Counter("events", "refused_total", "Raises refused, by reason.", "reason")
	mSent     = promkit.Counter("events", "sent_total", "Events a transport subscriber sent.", "event", "socket")
	mFailed   = promkit.Counter("events", "failed_total", "Events a transport subscriber failed to send.", "event", "socket")
	mSubQueue = promkit.Gauge("events", "queue_depth", "Events queued for a transport subscriber.", "event", "socket")
	mSubDrops = promkit.Counter("events", "dropped_total", "Events dropped by a transport subscriber's full queue.", "event", "socket")
)

// Collector returns a Prometheus collector over the raises and every
// transport subscriber, read at scrape time.
func (e *Events) Collector() prometheus.Collector {
	return promkit.NewCollector([]promkit.Metric{mRaised, mRefused, mSent, mFailed, mSubQueue, mSubDrops},
		func(em promkit.Emitter) {
			s := e.Stats()
			promkit.Emit(em, mRaised, s.Raised)
			promkit.Emit(em, mRefused, s.TooLarge, "too_large")
			promkit.Emit(em, mRefused, s.Unknown, "unknown_event")
			promkit.Emit(em, mRefused, s.Invalid, "invalid")
			for _, sub := range e.Subscribers() {
				promkit.Emit(em, mSent, sub.Sent, sub.Event, sub.Socket)
				promkit.Emit(em, mFailed, sub.Failed, sub.Event, sub.Socket)
				promkit.Emit(em, mSubQueue, sub.Queue.Depth, sub.Event, sub.Socket)
				promkit.Emit(em, mSubDrops, sub.Queue.Dropped, sub.Event, sub.Socket)
			}
		})
}
