package metrics

import (
	"testing"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/emiago/sipgo/sip"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sipasync/sipasync/transaction"
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
