package rabbitmq

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sipasync/sipasync/internal/promkit"
)

// The transport's metrics: subsystem "transport", one series per socket.
var (
	mPublished = promkit.Counter("transport", "published_total", "AMQP publishes (republishing included).", "socket")
	mConfirmed = promkit.Counter("transport", "confirmed_total", "Messages the broker confirmed.", "socket")
	mDropped   = promkit.Counter("transport", "dropped_total", "Async events lost (buffer full, nacked, left at close).", "socket")
	mReconnect = promkit.Counter("transport", "reconnects_total", "Connections made after the first.", "socket")
	mBuffered  = promkit.Gauge("transport", "buffered", "Events held: waiting or unconfirmed.", "socket")
	mConnected = promkit.Gauge("transport", "connected", "1 while connected to the broker.", "socket")
)

// Collector returns a Prometheus collector over the factory's transports
// (one series per socket, passwords redacted), read at scrape time.
func (f *Factory) Collector() prometheus.Collector {
	return promkit.NewCollector([]promkit.Metric{mPublished, mConfirmed, mDropped, mReconnect, mBuffered, mConnected},
		func(e promkit.Emitter) {
			seen := map[string]bool{}
			for _, t := range f.Stats() {
				if seen[t.Socket] {
					continue
				}
				seen[t.Socket] = true
				promkit.Emit(e, mPublished, t.Published, t.Socket)
				promkit.Emit(e, mConfirmed, t.Confirmed, t.Socket)
				promkit.Emit(e, mDropped, t.Dropped, t.Socket)
				promkit.Emit(e, mReconnect, t.Reconnects, t.Socket)
				promkit.Emit(e, mBuffered, t.Buffered, t.Socket)
				promkit.Emit(e, mConnected, promkit.Bool(t.Connected), t.Socket)
			}
		})
}
