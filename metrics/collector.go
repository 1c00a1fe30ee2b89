// Package metrics holds the metrics that are nobody's package of their
// own: Traffic, hooked into the proxy and the transaction table for what
// needs a label per message (method, status code, park kind and reason) or
// a histogram (park duration, resume lateness), and Runtime. Each package
// exposes its own counters with a Collector method (sipproxy, transaction,
// async, timerwheel, workergroups, eventbus, evi, rabbitmq, devicestate),
// all under the namespace "sipasync" with one subsystem per package.
package metrics

import (
	"runtime"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sipasync/sipasync/internal/promkit"
)

// Namespace is the prefix of every sipasync metric.
const Namespace = promkit.Namespace

var mGoroutines = promkit.Gauge("runtime", "goroutines", "Goroutines of the process.")

// Runtime returns a collector of the process's goroutine count.
func Runtime() prometheus.Collector {
	return promkit.NewCollector([]promkit.Metric{mGoroutines}, func(e promkit.Emitter) {
		promkit.Emit(e, mGoroutines, runtime.NumGoroutine())
	})
}
