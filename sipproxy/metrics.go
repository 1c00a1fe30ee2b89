package sipproxy

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sipasync/sipasync/internal/promkit"
)

// The proxy's metrics: subsystem "sipproxy".
var (
	mRelays        = promkit.Counter("sipproxy", "relays_total", "Requests relayed downstream.")
	mRelayRejected = promkit.Counter("sipproxy", "relay_rejected_total", "Relays refused past --max-relays (answered 503).")
	mRouteErrors   = promkit.Counter("sipproxy", "route_errors_total", "Programming errors routes returned (logged at ERROR), by kind: unknown_route, bad_delay, ms_timer_off, route_kind, no_engine, no_transaction, unknown_group, nil_handler, other.", "kind")
	mDropped       = promkit.Counter("sipproxy", "dropped_total", "Requests dropped on purpose (route Drop, stray ACKs).")
	mNoReply       = promkit.Counter("sipproxy", "no_reply_total", "Routes that returned without acting (answered 500).")
	mPanics        = promkit.Counter("sipproxy", "panics_total", "Route handlers that panicked (recovered, answered 500).")
	mRejected      = promkit.Counter("sipproxy", "rejected_total", "New requests answered 503 because the proxy drains or the table is full.")
	mUnmatched     = promkit.Counter("sipproxy", "unmatched_cancels_total", "CANCELs matching no transaction (answered 481).")
	mStray         = promkit.Counter("sipproxy", "stray_responses_total", "Responses matching no client transaction.")
	mStrayFwd      = promkit.Counter("sipproxy", "stray_forwarded_total", "Stray 2xx to INVITE sent on statelessly (retransmissions after the transactions ended).")
	mACKWaits      = promkit.Counter("sipproxy", "ack_waits_total", "In-dialog requests held until their dialog's ACK was routed, by outcome (acked, timeout).", "outcome")
	mActiveRelays  = promkit.Gauge("sipproxy", "active_relays", "Relayed transactions waiting for a final response.")
	mDraining      = promkit.Gauge("sipproxy", "draining", "1 while the proxy refuses new transactions (lame duck or shutdown).")
	mInRefused     = promkit.Counter("sipproxy", "refused_total", "Messages refused before routing, by reason: malformed (400 and the like), too_large (513), overload (503 from overload control).", "reason")
	mInUnanswered  = promkit.Counter("sipproxy", "refused_unanswered_total", "Refused messages that got no answer (no request line or Via to answer to, or the send failed), by reason.", "reason")
	mInShedACKs    = promkit.Counter("sipproxy", "overload_acks_total", "ACKs for overload 503s, absorbed on UDP.")
	mOvRunnable    = promkit.Gauge("sipproxy", "overload_runnable", "Goroutines waiting to run, averaged: what overload control watches.")
	mUDPQueued     = promkit.Gauge("sipproxy", "udp_queue_bytes", "Bytes waiting in a UDP listener's kernel receive queue.", "socket")
	mUDPDropped    = promkit.Counter("sipproxy", "udp_dropped_total", "Datagrams the kernel dropped on a UDP listener's full receive queue (--udp-buffer).", "socket")
	mOvDelay       = promkit.Gauge("sipproxy", "overload_delay_seconds", "Least queueing delay of a UDP datagram in overload control's last window.")
	mOvHeap        = promkit.Gauge("sipproxy", "overload_heap_bytes", "Live heap after the last GC as overload control last read it (0 unless --overload-heap-mib is set).")
	mOvShedding    = promkit.Gauge("sipproxy", "overload_shedding", "Share of new requests answered 503 by overload control now (0 to 1).")
)

// Collector returns a Prometheus collector over the proxy's counters, read
// at scrape time: relays, refusals, route errors, input and overload
// control, the kernel's UDP queues.
func (p *Proxy) Collector() prometheus.Collector {
	return promkit.NewCollector([]promkit.Metric{mRelays, mRelayRejected, mRouteErrors, mDropped, mNoReply, mPanics,
		mRejected, mUnmatched, mStray, mStrayFwd, mACKWaits, mActiveRelays, mDraining, mInRefused, mInUnanswered,
		mInShedACKs, mOvRunnable, mUDPQueued, mUDPDropped, mOvDelay, mOvHeap, mOvShedding}, p.collect)
}

func (p *Proxy) collect(e promkit.Emitter) {
	s := p.Stats()
	promkit.Emit(e, mRelays, s.Relays)
	promkit.Emit(e, mRelayRejected, s.RelayRejected)
	for i, kind := range RouteErrorKinds {
		promkit.Emit(e, mRouteErrors, s.RouteErrors[i], kind)
	}
	promkit.Emit(e, mDropped, s.Dropped)
	promkit.Emit(e, mNoReply, s.NoReply)
	promkit.Emit(e, mPanics, s.Panics)
	promkit.Emit(e, mRejected, s.Rejected503)
	promkit.Emit(e, mUnmatched, s.Unmatched)
	promkit.Emit(e, mStray, s.StrayResponses)
	promkit.Emit(e, mStrayFwd, s.StrayForwarded)
	promkit.Emit(e, mACKWaits, s.ACKWaits-s.ACKWaitTimeouts, "acked")
	promkit.Emit(e, mACKWaits, s.ACKWaitTimeouts, "timeout")
	promkit.Emit(e, mActiveRelays, s.ActiveRelays)
	promkit.Emit(e, mDraining, promkit.Bool(p.Draining()))
	in := p.InputStats()
	promkit.Emit(e, mInRefused, in.Malformed, "malformed")
	promkit.Emit(e, mInRefused, in.TooLarge, "too_large")
	promkit.Emit(e, mInRefused, in.Shed, "overload")
	promkit.Emit(e, mInUnanswered, in.MalformedDropped, "malformed")
	promkit.Emit(e, mInUnanswered, in.TooLargeDropped, "too_large")
	promkit.Emit(e, mInUnanswered, in.ShedDropped, "overload")
	promkit.Emit(e, mInShedACKs, in.ShedACKs)
	for _, u := range p.UDPStats() {
		promkit.Emit(e, mUDPQueued, u.Queued, u.Socket)
		promkit.Emit(e, mUDPDropped, u.Dropped, u.Socket)
	}
	o := p.OverloadStats()
	promkit.Emit(e, mOvRunnable, o.Runnable)
	promkit.Emit(e, mOvDelay, o.Delay.Seconds())
	promkit.Emit(e, mOvHeap, o.Heap)
	promkit.Emit(e, mOvShedding, o.Shedding)
}
