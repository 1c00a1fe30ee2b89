// Package metrics exposes sipasync's counters to Prometheus. Everything is
// registered on a registry the caller passes in (no global state), under the
// namespace "sipasync" with one subsystem per package (sipproxy, transaction,
// async, timerwheel, workergroups, eventbus, events, transport, devicestate,
// runtime) and labels rather than dynamic names.
//
// Two kinds of collectors: Collector reads the packages' existing Stats() at
// scrape time, so the request path pays nothing for it; Traffic is hooked
// into the proxy and the transaction table for what needs a label per
// message (method, status code, park kind and reason) or a histogram (park
// duration, resume lateness).
package metrics

import (
	"runtime"
	"slices"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sipasync/sipasync/async"
	"github.com/sipasync/sipasync/devicestate"
	"github.com/sipasync/sipasync/eventbus"
	"github.com/sipasync/sipasync/eventbus/evi"
	"github.com/sipasync/sipasync/eventbus/rabbitmq"
	"github.com/sipasync/sipasync/sipproxy"
	"github.com/sipasync/sipasync/timerwheel"
	"github.com/sipasync/sipasync/transaction"
	"github.com/sipasync/sipasync/workergroups"
)

// Namespace is the prefix of every sipasync metric.
const Namespace = "sipasync"

// GroupStats are one worker group's counters with its name.
type GroupStats struct {
	Name string
	workergroups.Stats
}

// Sources are the Stats functions a Collector reads at scrape time. A nil
// field is skipped. Each function must be safe to call from the scraping
// goroutine at any time.
type Sources struct {
	Proxy        func() sipproxy.Stats
	Transactions func() transaction.Stats
	Async        func() async.Stats
	Wheel        func() timerwheel.Stats
	Groups       func() []GroupStats
	Bus          func() []eventbus.Stats
	Events       func() evi.Stats
	Subscribers  func() []evi.SubscriberStats
	// Transports lists the rabbitmq transports' counters; more than one
	// factory may add theirs (see Collector.AddTransports).
	Transports  []func() []rabbitmq.Stats
	DeviceState func() devicestate.Stats
	// Draining reports whether the proxy refuses new transactions.
	Draining func() bool
	// Input counts the messages refused before routing; Overload is
	// overload control's state.
	Input    func() sipproxy.InputStats
	Overload func() sipproxy.OverloadStats
	// UDP is the kernel's view of the UDP listeners (queue, drops).
	UDP func() []sipproxy.UDPSocketStats
}

// GroupsOf adapts a workergroups.Groups to Sources.Groups.
func GroupsOf(gs *workergroups.Groups) func() []GroupStats {
	return func() []GroupStats {
		list := gs.List()
		out := make([]GroupStats, len(list))
		for i, g := range list {
			out[i] = GroupStats{Name: g.Name(), Stats: g.Stats()}
		}
		return out
	}
}

// Collector is a prometheus.Collector over Sources.
type Collector struct {
	mu  sync.Mutex
	src Sources
}

// AddTransports adds a rabbitmq factory's stats (e.g. Factory.Stats) to
// what is collected; a program that registers the transport calls it.
func (c *Collector) AddTransports(f func() []rabbitmq.Stats) {
	c.mu.Lock()
	c.src.Transports = append(c.src.Transports, f)
	c.mu.Unlock()
}

// NewCollector returns a collector reading src; register it with
// reg.MustRegister or Register.
func NewCollector(src Sources) *Collector { return &Collector{src: src} }

// Register makes a Collector over src and registers it on reg.
func Register(reg prometheus.Registerer, src Sources) (*Collector, error) {
	c := NewCollector(src)
	if err := reg.Register(c); err != nil {
		return nil, err
	}
	return c, nil
}

type metric struct {
	desc *prometheus.Desc
	typ  prometheus.ValueType
}

func counter(sub, name, help string, labels ...string) metric {
	return metric{prometheus.NewDesc(prometheus.BuildFQName(Namespace, sub, name), help, labels, nil), prometheus.CounterValue}
}

func gauge(sub, name, help string, labels ...string) metric {
	return metric{prometheus.NewDesc(prometheus.BuildFQName(Namespace, sub, name), help, labels, nil), prometheus.GaugeValue}
}

var (
	mProxyRelays        = counter("sipproxy", "relays_total", "Requests relayed downstream.")
	mProxyRelayRejected = counter("sipproxy", "relay_rejected_total", "Relays refused past --max-relays (answered 503).")
	mProxyRouteErrors   = counter("sipproxy", "route_errors_total", "Programming errors routes returned (logged at ERROR), by kind: unknown_route, bad_delay, ms_timer_off, route_kind, no_engine, no_transaction, unknown_group, nil_handler, other.", "kind")
	mProxyDropped       = counter("sipproxy", "dropped_total", "Requests dropped on purpose (route Drop, stray ACKs).")
	mProxyNoReply       = counter("sipproxy", "no_reply_total", "Routes that returned without acting (answered 500).")
	mProxyPanics        = counter("sipproxy", "panics_total", "Route handlers that panicked (recovered, answered 500).")
	mProxyRejected      = counter("sipproxy", "rejected_total", "New requests answered 503 because the proxy drains or the table is full.")
	mProxyUnmatched     = counter("sipproxy", "unmatched_cancels_total", "CANCELs matching no transaction (answered 481).")
	mProxyStray         = counter("sipproxy", "stray_responses_total", "Responses matching no client transaction.")
	mProxyStrayFwd      = counter("sipproxy", "stray_forwarded_total", "Stray 2xx to INVITE sent on statelessly (retransmissions after the transactions ended).")
	mProxyACKWaits      = counter("sipproxy", "ack_waits_total", "In-dialog requests held until their dialog's ACK was routed, by outcome (acked, timeout).", "outcome")
	mProxyActiveRelays  = gauge("sipproxy", "active_relays", "Relayed transactions waiting for a final response.")
	mProxyDraining      = gauge("sipproxy", "draining", "1 while the proxy refuses new transactions (lame duck or shutdown).")
	mInRefused          = counter("sipproxy", "refused_total", "Messages refused before routing, by reason: malformed (400 and the like), too_large (513), overload (503 from overload control).", "reason")
	mInUnanswered       = counter("sipproxy", "refused_unanswered_total", "Refused messages that got no answer (no request line or Via to answer to, or the send failed), by reason.", "reason")
	mInShedACKs         = counter("sipproxy", "overload_acks_total", "ACKs for overload 503s, absorbed on UDP.")
	mOverloadRunnable   = gauge("sipproxy", "overload_runnable", "Goroutines waiting to run, averaged: what overload control watches.")
	mUDPQueued          = gauge("sipproxy", "udp_queue_bytes", "Bytes waiting in a UDP listener's kernel receive queue.", "socket")
	mUDPDropped         = counter("sipproxy", "udp_dropped_total", "Datagrams the kernel dropped on a UDP listener's full receive queue (--udp-buffer).", "socket")
	mOverloadDelay      = gauge("sipproxy", "overload_delay_seconds", "Least queueing delay of a UDP datagram in overload control's last window.")
	mOverloadHeap       = gauge("sipproxy", "overload_heap_bytes", "Live heap after the last GC as overload control last read it (0 unless --overload-heap-mib is set).")
	mOverloadShedding   = gauge("sipproxy", "overload_shedding", "Share of new requests answered 503 by overload control now (0 to 1).")

	mTxLive     = gauge("transaction", "live", "Transactions in the table (live and parked).")
	mTxParked   = gauge("transaction", "parked", "Transactions parked now.")
	mTxCreated  = counter("transaction", "created_total", "Transactions entered in the table.")
	mTxExpired  = counter("transaction", "expired_total", "Parks answered at their suspend deadline (408/500).")
	mTxCanceled = counter("transaction", "canceled_total", "Transactions ended by a CANCEL.")
	mTxStale    = counter("transaction", "stale_refused_total", "Resumes refused: stale token (slot reused).")
	mTxEnded    = counter("transaction", "ended_refused_total", "Resumes refused: transaction already ended.")
	mTxRejected = counter("transaction", "rejected_total", "Adds or parks refused past a bound (table full, --max-parked).")
	mTxLate     = counter("transaction", "late_cancels_total", "CANCELs that raced a final response inside sipgo.")

	mAsyncRefused    = counter("async", "resume_refused_total", "Resumes refused, by reason: canceled, timed_out, already_resumed (a token is single-use), ended, unknown_token, unknown_route, other.", "reason")
	mAsyncTimeoutRte = counter("async", "timeout_routes_total", "Park timeouts that ran the park's timeout route.")
	mAsyncRejected   = counter("async", "resume_rejected_total", "Resumes, due or external, that the module workers could not take (answered 503 with Retry-After).")
	mAsyncData       = counter("async", "data_tasks_total", "Data tasks run (async.TaskData).")
	mAsyncDataRej    = counter("async", "data_rejected_total", "Data tasks refused by a full group.")
	mAsyncTKV        = counter("async", "tkv_total", "tkv records emitted.")
	mAsyncTKVRej     = counter("async", "tkv_rejected_total", "tkv records refused by a full group.")
	mWheelPending    = gauge("timerwheel", "pending", "Timers pending on the wheel.")
	mWheelFired      = counter("timerwheel", "fired_total", "Timers fired.")
	mWheelCancelled  = counter("timerwheel", "cancelled_total", "Timers cancelled before firing.")
	mWheelLateTicks  = counter("timerwheel", "late_ticks_total", "Ticks processed late (an advance covering n ticks adds n-1).")
	mWheelOverflowed = counter("timerwheel", "overflowed_total", "Timers beyond the wheel's range (kept in the overflow list).")

	mGroupWorkers   = gauge("workergroups", "workers", "Worker goroutines alive.", "group")
	mGroupBusy      = gauge("workergroups", "busy", "Workers running a task now.", "group")
	mGroupQueued    = gauge("workergroups", "queued", "Tasks accepted and not started yet.", "group")
	mGroupWaiting   = gauge("workergroups", "waiting", "Submitters blocked on a full queue.", "group")
	mGroupCompleted = counter("workergroups", "completed_total", "Tasks that returned.", "group")
	mGroupRejected  = counter("workergroups", "rejected_total", "Tasks refused (full non-blocking queue, stopped).", "group")
	mGroupPanicked  = counter("workergroups", "panicked_total", "Tasks that panicked (recovered).", "group")
	mGroupUndone    = counter("workergroups", "undone_total", "Tasks dropped by a stop whose deadline passed.", "group")

	mBusDepth     = gauge("eventbus", "queue_depth", "Messages queued or being dispatched, per subscription.", "topic", "subscription")
	mBusCapacity  = gauge("eventbus", "queue_capacity", "Queue capacity per subscription.", "topic", "subscription")
	mBusHigh      = gauge("eventbus", "queue_high_water", "Greatest queue depth seen, per subscription.", "topic", "subscription")
	mBusDelivered = counter("eventbus", "delivered_total", "Messages handled, per subscription.", "topic", "subscription")
	mBusDropped   = counter("eventbus", "dropped_total", "Messages dropped by a full queue, per subscription.", "topic", "subscription")
	mBusPanics    = counter("eventbus", "panics_total", "Handler panics, per subscription.", "topic", "subscription")

	mEvRaised    = counter("events", "raised_total", "Events raised (published on the bus).")
	mEvRefused   = counter("events", "refused_total", "Raises refused, by reason.", "reason")
	mEvSent      = counter("events", "sent_total", "Events a transport subscriber sent.", "event", "socket")
	mEvFailed    = counter("events", "failed_total", "Events a transport subscriber failed to send.", "event", "socket")
	mEvSubQueue  = gauge("events", "queue_depth", "Events queued for a transport subscriber.", "event", "socket")
	mEvSubDrops  = counter("events", "dropped_total", "Events dropped by a transport subscriber's full queue.", "event", "socket")
	mTrPublished = counter("transport", "published_total", "AMQP publishes (republishing included).", "socket")
	mTrConfirmed = counter("transport", "confirmed_total", "Messages the broker confirmed.", "socket")
	mTrDropped   = counter("transport", "dropped_total", "Async events lost (buffer full, nacked, left at close).", "socket")
	mTrReconnect = counter("transport", "reconnects_total", "Connections made after the first.", "socket")
	mTrBuffered  = gauge("transport", "buffered", "Events held: waiting or unconfirmed.", "socket")
	mTrConnected = gauge("transport", "connected", "1 while connected to the broker.", "socket")

	mDevChanges   = counter("devicestate", "changes_total", "Device and mailbox state changes published on the bus.")
	mDevDevices   = gauge("devicestate", "devices", "Devices known.")
	mDevCalls     = gauge("devicestate", "calls", "Calls tracked on this node.")
	mDevPeers     = gauge("devicestate", "peers_alive", "Other nodes alive.")
	mDevConnected = gauge("devicestate", "connected", "1 while connected to the cluster (in-process: 0).")
	mDevPubErrs   = counter("devicestate", "publish_errors_total", "Cluster writes that failed (retried).")

	mGoroutines = gauge("runtime", "goroutines", "Goroutines of the process.")
)

var allMetrics = []metric{mProxyRelays, mProxyRelayRejected, mProxyRouteErrors, mProxyDropped, mProxyNoReply, mProxyPanics,
	mProxyRejected, mProxyUnmatched, mProxyStray, mProxyStrayFwd, mProxyACKWaits, mProxyActiveRelays, mProxyDraining,
	mInRefused, mInUnanswered, mInShedACKs, mOverloadRunnable, mOverloadDelay, mOverloadHeap, mOverloadShedding, mUDPQueued, mUDPDropped,
	mTxLive, mTxParked, mTxCreated, mTxExpired, mTxCanceled, mTxStale, mTxEnded, mTxRejected, mTxLate,
	mAsyncRefused, mAsyncTimeoutRte, mAsyncRejected, mAsyncData, mAsyncDataRej, mAsyncTKV, mAsyncTKVRej,
	mWheelPending, mWheelFired, mWheelCancelled, mWheelLateTicks, mWheelOverflowed,
	mGroupWorkers, mGroupBusy, mGroupQueued, mGroupWaiting, mGroupCompleted, mGroupRejected, mGroupPanicked, mGroupUndone,
	mBusDepth, mBusCapacity, mBusHigh, mBusDelivered, mBusDropped, mBusPanics,
	mEvRaised, mEvRefused, mEvSent, mEvFailed, mEvSubQueue, mEvSubDrops,
	mTrPublished, mTrConfirmed, mTrDropped, mTrReconnect, mTrBuffered, mTrConnected,
	mDevChanges, mDevDevices, mDevCalls, mDevPeers, mDevConnected, mDevPubErrs, mGoroutines}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, m := range allMetrics {
		ch <- m.desc
	}
}

func emit[N int | int64 | uint64 | float64](ch chan<- prometheus.Metric, m metric, v N, labels ...string) {
	ch <- prometheus.MustNewConstMetric(m.desc, m.typ, float64(v), labels...)
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	s := c.src
	s.Transports = slices.Clone(s.Transports)
	c.mu.Unlock()
	if s.Proxy != nil {
		p := s.Proxy()
		emit(ch, mProxyRelays, p.Relays)
		emit(ch, mProxyRelayRejected, p.RelayRejected)
		for i, kind := range sipproxy.RouteErrorKinds {
			emit(ch, mProxyRouteErrors, p.RouteErrors[i], kind)
		}
		emit(ch, mProxyDropped, p.Dropped)
		emit(ch, mProxyNoReply, p.NoReply)
		emit(ch, mProxyPanics, p.Panics)
		emit(ch, mProxyRejected, p.Rejected503)
		emit(ch, mProxyUnmatched, p.Unmatched)
		emit(ch, mProxyStray, p.StrayResponses)
		emit(ch, mProxyStrayFwd, p.StrayForwarded)
		emit(ch, mProxyACKWaits, p.ACKWaits-p.ACKWaitTimeouts, "acked")
		emit(ch, mProxyACKWaits, p.ACKWaitTimeouts, "timeout")
		emit(ch, mProxyActiveRelays, p.ActiveRelays)
	}
	if s.Draining != nil {
		emit(ch, mProxyDraining, b2i(s.Draining()))
	}
	if s.Input != nil {
		in := s.Input()
		emit(ch, mInRefused, in.Malformed, "malformed")
		emit(ch, mInRefused, in.TooLarge, "too_large")
		emit(ch, mInRefused, in.Shed, "overload")
		emit(ch, mInUnanswered, in.MalformedDropped, "malformed")
		emit(ch, mInUnanswered, in.TooLargeDropped, "too_large")
		emit(ch, mInUnanswered, in.ShedDropped, "overload")
		emit(ch, mInShedACKs, in.ShedACKs)
	}
	if s.UDP != nil {
		for _, u := range s.UDP() {
			emit(ch, mUDPQueued, u.Queued, u.Socket)
			emit(ch, mUDPDropped, u.Dropped, u.Socket)
		}
	}
	if s.Overload != nil {
		o := s.Overload()
		emit(ch, mOverloadRunnable, o.Runnable)
		emit(ch, mOverloadDelay, o.Delay.Seconds())
		emit(ch, mOverloadHeap, float64(o.Heap))
		emit(ch, mOverloadShedding, o.Shedding)
	}
	if s.Transactions != nil {
		t := s.Transactions()
		emit(ch, mTxLive, t.Live)
		emit(ch, mTxParked, t.Parked)
		emit(ch, mTxCreated, t.Created)
		emit(ch, mTxExpired, t.Expired)
		emit(ch, mTxCanceled, t.Canceled)
		emit(ch, mTxStale, t.StaleRefused)
		emit(ch, mTxEnded, t.EndedRefused)
		emit(ch, mTxRejected, t.Rejected)
		emit(ch, mTxLate, t.LateCancels)
	}
	if s.Async != nil {
		a := s.Async()
		for i, reason := range async.RefusalReasons {
			emit(ch, mAsyncRefused, a.Refused[i], reason)
		}
		emit(ch, mAsyncTimeoutRte, a.TimeoutRoutes)
		emit(ch, mAsyncRejected, a.ResumeRejected)
		emit(ch, mAsyncData, a.DataTasks)
		emit(ch, mAsyncDataRej, a.DataRejected)
		emit(ch, mAsyncTKV, a.TKV)
		emit(ch, mAsyncTKVRej, a.TKVRejected)
	}
	if s.Wheel != nil {
		w := s.Wheel()
		emit(ch, mWheelPending, w.Pending)
		emit(ch, mWheelFired, w.Fired)
		emit(ch, mWheelCancelled, w.Cancelled)
		emit(ch, mWheelLateTicks, w.LateTicks)
		emit(ch, mWheelOverflowed, w.Overflowed)
	}
	if s.Groups != nil {
		for _, g := range s.Groups() {
			emit(ch, mGroupWorkers, g.Workers, g.Name)
			emit(ch, mGroupBusy, g.Busy, g.Name)
			emit(ch, mGroupQueued, g.Queued, g.Name)
			emit(ch, mGroupWaiting, g.Waiting, g.Name)
			emit(ch, mGroupCompleted, g.Completed, g.Name)
			emit(ch, mGroupRejected, g.Rejected, g.Name)
			emit(ch, mGroupPanicked, g.Panicked, g.Name)
			emit(ch, mGroupUndone, g.Undone, g.Name)
		}
	}
	if s.Bus != nil {
		seen := map[[2]string]bool{}
		for _, b := range s.Bus() {
			k := [2]string{b.Topic, b.Name}
			if seen[k] { // two subscriptions with one name: report the first
				continue
			}
			seen[k] = true
			emit(ch, mBusDepth, b.Depth, b.Topic, b.Name)
			emit(ch, mBusCapacity, b.Capacity, b.Topic, b.Name)
			emit(ch, mBusHigh, b.HighWater, b.Topic, b.Name)
			emit(ch, mBusDelivered, b.Delivered, b.Topic, b.Name)
			emit(ch, mBusDropped, b.Dropped, b.Topic, b.Name)
			emit(ch, mBusPanics, b.Panics, b.Topic, b.Name)
		}
	}
	if s.Events != nil {
		e := s.Events()
		emit(ch, mEvRaised, e.Raised)
		emit(ch, mEvRefused, e.TooLarge, "too_large")
		emit(ch, mEvRefused, e.Unknown, "unknown_event")
		emit(ch, mEvRefused, e.Invalid, "invalid")
	}
	if s.Subscribers != nil {
		for _, sub := range s.Subscribers() {
			emit(ch, mEvSent, sub.Sent, sub.Event, sub.Socket)
			emit(ch, mEvFailed, sub.Failed, sub.Event, sub.Socket)
			emit(ch, mEvSubQueue, sub.Queue.Depth, sub.Event, sub.Socket)
			emit(ch, mEvSubDrops, sub.Queue.Dropped, sub.Event, sub.Socket)
		}
	}
	seenSock := map[string]bool{}
	for _, f := range s.Transports {
		for _, t := range f() {
			if seenSock[t.Socket] {
				continue
			}
			seenSock[t.Socket] = true
			emit(ch, mTrPublished, t.Published, t.Socket)
			emit(ch, mTrConfirmed, t.Confirmed, t.Socket)
			emit(ch, mTrDropped, t.Dropped, t.Socket)
			emit(ch, mTrReconnect, t.Reconnects, t.Socket)
			emit(ch, mTrBuffered, t.Buffered, t.Socket)
			emit(ch, mTrConnected, b2i(t.Connected), t.Socket)
		}
	}
	if s.DeviceState != nil {
		d := s.DeviceState()
		emit(ch, mDevChanges, d.Changes)
		emit(ch, mDevDevices, d.Devices)
		emit(ch, mDevCalls, d.Calls)
		emit(ch, mDevPeers, d.PeersAlive)
		emit(ch, mDevConnected, b2i(d.Connected))
		emit(ch, mDevPubErrs, d.PublishErrors)
	}
	emit(ch, mGoroutines, runtime.NumGoroutine())
}
