package metrics

import (
	"strings"
	"testing"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/emiago/sipgo/sip"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

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

func request(method sip.RequestMethod) *sip.Request {
	return sip.NewRequest(method, sip.Uri{User: "bob", Host: "127.0.0.1"})
}

func TestTrafficCountsRequestsAndRepliesByLabel(t *testing.T) {
	reg := prometheus.NewRegistry()
	tr, err := NewTraffic(reg, nil)
	require.NoError(t, err)

	tr.Request(request(sip.INVITE))
	tr.Request(request(sip.INVITE))
	tr.Request(request("FOO")) // off the network: one "other" label, never a new one
	tr.Request(request("BAR"))
	tr.Response(request(sip.INVITE), 100)
	tr.Response(request(sip.INVITE), 404)
	tr.Response(request(sip.INVITE), 404)
	tr.Response(request(sip.REGISTER), 200)
	tr.Response(request(sip.REGISTER), 999) // out of range: "other"

	assert.Equal(t, 2.0, testutil.ToFloat64(tr.requests.WithLabelValues("INVITE")))
	assert.Equal(t, 2.0, testutil.ToFloat64(tr.requests.WithLabelValues("other")))
	assert.Equal(t, 2.0, testutil.ToFloat64(tr.responses.WithLabelValues("INVITE", "404")))
	assert.Equal(t, 1.0, testutil.ToFloat64(tr.responses.WithLabelValues("INVITE", "100")))
	assert.Equal(t, 1.0, testutil.ToFloat64(tr.responses.WithLabelValues("REGISTER", "200")))
	assert.Equal(t, 1.0, testutil.ToFloat64(tr.responses.WithLabelValues("REGISTER", "other")))
	n, err := testutil.GatherAndCount(reg, "sipasync_sipproxy_requests_total")
	require.NoError(t, err)
	assert.Equal(t, len(methods)+1, n, "one series per known method plus other, whatever arrives")
}

func TestTrafficParksResumesDurationAndLateness(t *testing.T) {
	reg := prometheus.NewRegistry()
	clk := clock.NewMock()
	clk.Set(time.Unix(1_700_000_000, 0))
	tr, err := NewTraffic(reg, clk)
	require.NoError(t, err)
	tbl := transaction.New(transaction.Options{Clock: clk, OnChange: tr.Transaction})

	// A 250 ms ms_route park resumed by its timer 30 ms late.
	tx, err := tbl.Add(request(sip.OPTIONS), nil)
	require.NoError(t, err)
	tok, err := tbl.Suspend(tx, transaction.Suspension{Route: "R", Kind: "ms_route", Due: clk.Now().Add(250 * time.Millisecond)})
	require.NoError(t, err)
	clk.Add(280 * time.Millisecond)
	_, err = tbl.Continue(tok, transaction.ReasonTimer, nil)
	require.NoError(t, err)
	tbl.Finish(tx)

	// A task park that reaches its deadline.
	tx2, err := tbl.Add(request(sip.OPTIONS), nil)
	require.NoError(t, err)
	tok2, err := tbl.Suspend(tx2, transaction.Suspension{Route: "R", Kind: "task", Timeout: time.Second})
	require.NoError(t, err)
	clk.Add(time.Second)
	require.True(t, tbl.Expire(tok2))

	assert.Equal(t, 1.0, testutil.ToFloat64(tr.parks.WithLabelValues("ms_route")))
	assert.Equal(t, 1.0, testutil.ToFloat64(tr.parks.WithLabelValues("task")))
	assert.Equal(t, 1.0, testutil.ToFloat64(tr.ends.WithLabelValues("ms_route", "timer")))
	assert.Equal(t, 1.0, testutil.ToFloat64(tr.ends.WithLabelValues("task", "timeout")))

	mfs, err := reg.Gather()
	require.NoError(t, err)
	late := histogram(t, mfs, "sipasync_async_resume_lateness_seconds", "")
	assert.Equal(t, uint64(1), late.GetSampleCount())
	assert.InDelta(t, 0.030, late.GetSampleSum(), 1e-9)
	dur := histogram(t, mfs, "sipasync_async_park_duration_seconds", "task")
	assert.Equal(t, uint64(1), dur.GetSampleCount())
	assert.InDelta(t, 1.0, dur.GetSampleSum(), 1e-9)
	dur = histogram(t, mfs, "sipasync_async_park_duration_seconds", "ms_route")
	assert.InDelta(t, 0.280, dur.GetSampleSum(), 1e-9)
}

func histogram(t *testing.T, mfs []*dto.MetricFamily, name, kind string) *dto.Histogram {
	t.Helper()
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if kind == "" || labelOf(m, "kind") == kind {
				return m.GetHistogram()
			}
		}
	}
	t.Fatalf("no %s{kind=%q}", name, kind)
	return nil
}

func labelOf(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

func TestTrafficRegistersOncePerRegistry(t *testing.T) {
	reg := prometheus.NewRegistry()
	_, err := NewTraffic(reg, nil)
	require.NoError(t, err)
	_, err = NewTraffic(reg, nil)
	var are prometheus.AlreadyRegisteredError
	require.ErrorAs(t, err, &are)
	// A fresh registry takes a second set: no global state.
	_, err = NewTraffic(prometheus.NewRegistry(), nil)
	require.NoError(t, err)
}

func TestCollectorReadsStatsAtScrapeTime(t *testing.T) {
	reg := prometheus.NewRegistry()
	var parked int
	src := Sources{
		Proxy: func() sipproxy.Stats {
			return sipproxy.Stats{Relays: 7, Rejected503: 2, ActiveRelays: 3, ACKWaits: 5, ACKWaitTimeouts: 1}
		},
		Transactions: func() transaction.Stats { return transaction.Stats{Live: 5, Parked: parked, Expired: 1} },
		Async:        func() async.Stats { return async.Stats{ResumeRejected: 4} },
		Wheel:        func() timerwheel.Stats { return timerwheel.Stats{Pending: 9, LateTicks: 6} },
		Groups: func() []GroupStats {
			return []GroupStats{{Name: "default", Stats: workergroups.Stats{Busy: 1, Queued: 2, Completed: 10, Rejected: 3, Panicked: 1}},
				{Name: "async:module", Stats: workergroups.Stats{Completed: 20}}}
		},
		Bus: func() []eventbus.Stats {
			return []eventbus.Stats{{Topic: "sipasync:all", Name: "statsd", Depth: 4, Dropped: 8}}
		},
		Events: func() evi.Stats { return evi.Stats{Raised: 12, TooLarge: 1} },
		Subscribers: func() []evi.SubscriberStats {
			return []evi.SubscriberStats{{Event: "E_X", Socket: "udp:127.0.0.1:9", Sent: 5}}
		},
		DeviceState: func() devicestate.Stats { return devicestate.Stats{Changes: 13, Devices: 2} },
		Draining:    func() bool { return true },
		Input: func() sipproxy.InputStats {
			return sipproxy.InputStats{Malformed: 4, MalformedDropped: 1, Shed: 9, ShedDropped: 2, ShedACKs: 7}
		},
		UDP: func() []sipproxy.UDPSocketStats {
			return []sipproxy.UDPSocketStats{{Socket: "udp:127.0.0.1:5060", Queued: 640, Dropped: 3}}
		},
		Overload: func() sipproxy.OverloadStats {
			return sipproxy.OverloadStats{Runnable: 312.5, Delay: 150 * time.Millisecond, Shedding: 0.25, Heap: 1 << 20}
		},
	}
	c, err := Register(reg, src)
	require.NoError(t, err)
	c.AddTransports(func() []rabbitmq.Stats {
		return []rabbitmq.Stats{{Socket: "rabbitmq:guest:***@127.0.0.1:5672/q", Published: 3, Confirmed: 2, Dropped: 1, Reconnects: 1, Connected: true}}
	})

	parked = 6
	want := `
# HELP sipasync_transaction_parked Transactions parked now.
# TYPE sipasync_transaction_parked gauge
sipasync_transaction_parked 6
# HELP sipasync_workergroups_completed_total Tasks that returned.
# TYPE sipasync_workergroups_completed_total counter
sipasync_workergroups_completed_total{group="async:module"} 20
sipasync_workergroups_completed_total{group="default"} 10
# HELP sipasync_eventbus_dropped_total Messages dropped by a full queue, per subscription.
# TYPE sipasync_eventbus_dropped_total counter
sipasync_eventbus_dropped_total{subscription="statsd",topic="sipasync:all"} 8
# HELP sipasync_transport_confirmed_total Messages the broker confirmed.
# TYPE sipasync_transport_confirmed_total counter
sipasync_transport_confirmed_total{socket="rabbitmq:guest:***@127.0.0.1:5672/q"} 2
# HELP sipasync_timerwheel_late_ticks_total Ticks processed late (an advance covering n ticks adds n-1).
# TYPE sipasync_timerwheel_late_ticks_total counter
sipasync_timerwheel_late_ticks_total 6
# HELP sipasync_devicestate_changes_total Device and mailbox state changes published on the bus.
# TYPE sipasync_devicestate_changes_total counter
sipasync_devicestate_changes_total 13
# HELP sipasync_sipproxy_draining 1 while the proxy refuses new transactions (lame duck or shutdown).
# TYPE sipasync_sipproxy_draining gauge
sipasync_sipproxy_draining 1
# HELP sipasync_sipproxy_ack_waits_total In-dialog requests held until their dialog's ACK was routed, by outcome (acked, timeout).
# TYPE sipasync_sipproxy_ack_waits_total counter
sipasync_sipproxy_ack_waits_total{outcome="acked"} 4
sipasync_sipproxy_ack_waits_total{outcome="timeout"} 1
# HELP sipasync_sipproxy_refused_total Messages refused before routing, by reason: malformed (400 and the like), too_large (513), overload (503 from overload control).
# TYPE sipasync_sipproxy_refused_total counter
sipasync_sipproxy_refused_total{reason="malformed"} 4
sipasync_sipproxy_refused_total{reason="overload"} 9
sipasync_sipproxy_refused_total{reason="too_large"} 0
# HELP sipasync_sipproxy_refused_unanswered_total Refused messages that got no answer (no request line or Via to answer to, or the send failed), by reason.
# TYPE sipasync_sipproxy_refused_unanswered_total counter
sipasync_sipproxy_refused_unanswered_total{reason="malformed"} 1
sipasync_sipproxy_refused_unanswered_total{reason="overload"} 2
sipasync_sipproxy_refused_unanswered_total{reason="too_large"} 0
# HELP sipasync_sipproxy_overload_acks_total ACKs for overload 503s, absorbed on UDP.
# TYPE sipasync_sipproxy_overload_acks_total counter
sipasync_sipproxy_overload_acks_total 7
# HELP sipasync_sipproxy_overload_shedding Share of new requests answered 503 by overload control now (0 to 1).
# TYPE sipasync_sipproxy_overload_shedding gauge
sipasync_sipproxy_overload_shedding 0.25
# HELP sipasync_sipproxy_udp_dropped_total Datagrams the kernel dropped on a UDP listener's full receive queue (--udp-buffer).
# TYPE sipasync_sipproxy_udp_dropped_total counter
sipasync_sipproxy_udp_dropped_total{socket="udp:127.0.0.1:5060"} 3
# HELP sipasync_sipproxy_udp_queue_bytes Bytes waiting in a UDP listener's kernel receive queue.
# TYPE sipasync_sipproxy_udp_queue_bytes gauge
sipasync_sipproxy_udp_queue_bytes{socket="udp:127.0.0.1:5060"} 640
# HELP sipasync_sipproxy_overload_delay_seconds Least queueing delay of a UDP datagram in overload control's last window.
# TYPE sipasync_sipproxy_overload_delay_seconds gauge
sipasync_sipproxy_overload_delay_seconds 0.15
# HELP sipasync_sipproxy_overload_heap_bytes Live heap after the last GC as overload control last read it (0 unless --overload-heap-mib is set).
# TYPE sipasync_sipproxy_overload_heap_bytes gauge
sipasync_sipproxy_overload_heap_bytes 1.048576e+06
# HELP sipasync_sipproxy_overload_runnable Goroutines waiting to run, averaged: what overload control watches.
# TYPE sipasync_sipproxy_overload_runnable gauge
sipasync_sipproxy_overload_runnable 312.5
`
	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(want),
		"sipasync_transaction_parked", "sipasync_workergroups_completed_total", "sipasync_eventbus_dropped_total",
		"sipasync_transport_confirmed_total", "sipasync_timerwheel_late_ticks_total",
		"sipasync_devicestate_changes_total", "sipasync_sipproxy_draining", "sipasync_sipproxy_refused_total", "sipasync_sipproxy_ack_waits_total",
		"sipasync_sipproxy_refused_unanswered_total", "sipasync_sipproxy_overload_acks_total",
		"sipasync_sipproxy_overload_shedding", "sipasync_sipproxy_overload_runnable", "sipasync_sipproxy_overload_delay_seconds", "sipasync_sipproxy_overload_heap_bytes",
		"sipasync_sipproxy_udp_dropped_total", "sipasync_sipproxy_udp_queue_bytes"))

	parked = 1 // read again at the next scrape
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() == "sipasync_transaction_parked" {
			assert.Equal(t, 1.0, mf.GetMetric()[0].GetGauge().GetValue())
		}
	}
	problems, err := testutil.GatherAndLint(reg)
	require.NoError(t, err)
	assert.Empty(t, problems)
}

func TestCollectorSkipsNilSources(t *testing.T) {
	reg := prometheus.NewRegistry()
	_, err := Register(reg, Sources{})
	require.NoError(t, err)
	n, err := testutil.GatherAndCount(reg)
	require.NoError(t, err)
	assert.Equal(t, 1, n, "only the goroutine gauge")
}
