package eventbus

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sipasync/sipasync/internal/promkit"
)

// The bus's metrics: subsystem "eventbus", one series per subscription.
var (
	mDepth     = promkit.Gauge("eventbus", "queue_depth", "Messages queued or being dispatched, per subscription.", "topic", "subscription")
	mCapacity  = promkit.Gauge("eventbus", "queue_capacity", "Queue capacity per subscription.", "topic", "subscription")
	mHigh      = promkit.Gauge("eventbus", "queue_high_water", "Greatest queue depth seen, per subscription.", "topic", "subscription")
	mDelivered = promkit.Counter("eventbus", "delivered_total", "Messages handled, per subscription.", "topic", "subscription")
	mDropped   = promkit.Counter("eventbus", "dropped_total", "Messages dropped by a full queue, per subscription.", "topic", "subscription")
	mPanics    = promkit.Counter("eventbus", "panics_total", "Handler panics, per subscription.", "topic", "subscription")
)

// Collector returns a Prometheus collector over every live
// subscription's queue and counters, read at scrape time. Two
// subscriptions of one topic with one name are reported once (the first).
func (b *Bus) Collector() prometheus.Collector {
	return promkit.NewCollector([]promkit.Metric{mDepth, mCapacity, mHigh, mDelivered, mDropped, mPanics},
		func(e promkit.Emitter) {
			seen := map[[2]string]bool{}
			for _, s := range b.Stats() {
				k := [2]string{s.Topic, s.Name}
				if seen[k] {
					continue
				}
				seen[k] = true
				promkit.Emit(e, mDepth, s.Depth, s.Topic, s.Name)
				promkit.Emit(e, mCapacity, s.Capacity, s.Topic, s.Name)
				promkit.Emit(e, mHigh, s.HighWater, s.Topic, s.Name)
				promkit.Emit(e, mDelivered, s.Delivered, s.Topic, s.Name)
				promkit.Emit(e, mDropped, s.Dropped, s.Topic, s.Name)
				promkit.Emit(e, mPanics, s.Panics, s.Topic, s.Name)
			}
		})
}
