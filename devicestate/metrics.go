package devicestate

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sipasync/sipasync/internal/promkit"
)

// The node's metrics: subsystem "devicestate".
var (
	mChanges   = promkit.Counter("devicestate", "changes_total", "Device and mailbox state changes published on the bus.")
	mDevices   = promkit.Gauge("devicestate", "devices", "Devices known.")
	mCalls     = promkit.Gauge("devicestate", "calls", "Calls tracked on this node.")
	mPeers     = promkit.Gauge("devicestate", "peers_alive", "Other nodes alive.")
	mConnected = promkit.Gauge("devicestate", "connected", "1 while connected to the cluster (in-process: 0).")
	mPubErrs   = promkit.Counter("devicestate", "publish_errors_total", "Cluster writes that failed (retried).")
)

// Collector returns a Prometheus collector over the node's counters, read
// at scrape time.
func (n *Node) Collector() prometheus.Collector {
	return promkit.NewCollector([]promkit.Metric{mChanges, mDevices, mCalls, mPeers, mConnected, mPubErrs},
		func(e promkit.Emitter) {
			s := n.Stats()
			promkit.Emit(e, mChanges, s.Changes)
			promkit.Emit(e, mDevices, s.Devices)
			promkit.Emit(e, mCalls, s.Calls)
			promkit.Emit(e, mPeers, s.PeersAlive)
			promkit.Emit(e, mConnected, promkit.Bool(s.Connected))
			promkit.Emit(e, mPubErrs, s.PublishErrors)
		})
}
