package asynchttp_test

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/sipasync/sipasync/async"
	"github.com/sipasync/sipasync/async/asynchttp"
	"github.com/sipasync/sipasync/internal/siptest"
	"github.com/sipasync/sipasync/routes"
	"github.com/sipasync/sipasync/transaction"
)

// newClient builds a client closed at the end of the test.
func newClient(t testing.TB, o asynchttp.Options) *asynchttp.Client {
	t.Helper()
	if o.Logger == nil {
		o.Logger = discard
	}
	cl, err := asynchttp.New(o)
	require.NoError(t, err)
	t.Cleanup(cl.Close)
	return cl
}

// newServer starts an HTTP server on loopback, closed at the end of the
// test.
func newServer(t testing.TB, h http.HandlerFunc) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

func get(t testing.TB, url string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	require.NoError(t, err)
	return req
}

// holder is an HTTP handler that holds every request until released (or
// until the request's own context ends) and counts what it saw.
type holder struct {
	arrived  chan struct{} // one per request that reached the handler
	release  chan struct{}
	once     sync.Once
	aborted  atomic.Int64 // requests whose context ended while held
	answered atomic.Int64
}

func newHolder(t testing.TB) *holder {
	h := &holder{arrived: make(chan struct{}, 4096), release: make(chan struct{})}
	t.Cleanup(h.open)
	return h
}

func (h *holder) open() { h.once.Do(func() { close(h.release) }) }

func (h *holder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.arrived <- struct{}{}
	select {
	case <-h.release:
		h.answered.Add(1)
		_, _ = io.WriteString(w, `{"late":true}`)
	case <-r.Context().Done():
		h.aborted.Add(1)
	}
}

// waitArrived waits until n requests reached the handler.
func (h *holder) waitArrived(t testing.TB, n int) {
	t.Helper()
	for range n {
		select {
		case <-h.arrived:
		case <-time.After(siptest.WaitFor):
			t.Fatalf("fewer than %d requests reached the server within %s", n, siptest.WaitFor)
		}
	}
}

func TestFastAnswerResumesRoute(t *testing.T) {
	h := newHarness(t)
	h.route("LOOKUP", replyOK)
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		assert.Equal(t, "bob", r.URL.Query().Get("user"))
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Decision", "relay")
		_, _ = io.WriteString(w, `{"action":"relay"}`)
	})
	cl := newClient(t, asynchttp.Options{})

	tx, c, w := h.request("INVITE")
	require.NoError(t, cl.Do(c, get(t, srv.URL+"/route?user=bob"), "LOOKUP", 5*time.Second))
	require.Equal(t, routes.OutcomeParked, c.Outcome(), "Do parks the transaction")

	r := h.next()
	require.Equal(t, "LOOKUP", r.name)
	require.Same(t, tx, r.tx)
	require.Equal(t, transaction.ReasonExternal, r.reason, "the answer resumes the park from outside")
	require.True(t, r.ok, "ResultOf finds the result")
	require.NoError(t, r.result.Err)
	require.False(t, r.result.Timeout)
	require.Equal(t, http.StatusOK, r.result.Status)
	require.Equal(t, `{"action":"relay"}`, string(r.result.Body))
	require.Equal(t, "relay", r.result.Header.Get("X-Decision"))
	require.Positive(t, r.result.Duration)
	require.Equal(t, []int{100, 200}, w.Codes(), "100 Trying at the park, then the route's answer")

	siptest.Eventually(t, "the request's goroutine ends", func() bool { return cl.Stats().Resumed == 1 })
	s := cl.Stats()
	require.Zero(t, s.InFlight)
	require.Equal(t, uint64(1), s.Requests)
	require.Equal(t, uint64(1), s.Answered)
	require.Equal(t, uint64(1), s.Classes[2])
	require.Zero(t, s.Late)
	require.Zero(t, h.e.Stats().WheelPending, "the park's timeout was disarmed")
}

func TestNon2xxIsAResultNotAnError(t *testing.T) {
	h := newHarness(t)
	h.route("LOOKUP", replyOK)
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "boom", http.StatusInternalServerError)
	})
	cl := newClient(t, asynchttp.Options{})
	_, c, _ := h.request("MESSAGE")
	require.NoError(t, cl.Do(c, get(t, srv.URL), "LOOKUP", time.Second))
	r := h.next()
	require.NoError(t, r.result.Err)
	require.Equal(t, 500, r.result.Status)
	require.Equal(t, "boom\n", string(r.result.Body))
	siptest.Eventually(t, "counted", func() bool { return cl.Stats().Classes[5] == 1 })
}

func TestTimeoutRoutePassesAndLateAnswerIsCounted(t *testing.T) {
	// The server is slower than the park's timeout. The request's own
	// deadline (real time) is long, so it is the park's timeout on the
	// mock clock that ends the wait: the route runs as the timeout route
	// and ResultOf says ErrTimeout. The request, abandoned, comes back
	// after the park ended: late.
	const timeout = 60 * time.Second
	h := newHarness(t)
	h.route("LOOKUP", func(c *routes.Context) error { return c.Reply(504, "Server Time-out") })
	slow := newHolder(t)
	srv := newServer(t, slow.ServeHTTP)
	cl := newClient(t, asynchttp.Options{})

	tx, c, w := h.request("INVITE")
	require.NoError(t, cl.Do(c, get(t, srv.URL), "LOOKUP", timeout))
	slow.waitArrived(t, 1)
	h.advance(timeout - 10*time.Millisecond)
	h.noRun()
	require.Equal(t, transaction.Suspended, tx.State(), "parked until the timeout")

	h.advance(20 * time.Millisecond)
	r := h.next()
	require.Equal(t, "LOOKUP", r.name, "the timeout route is the route given to Do")
	require.Equal(t, transaction.ReasonTimeout, r.reason)
	require.True(t, r.ok)
	require.ErrorIs(t, r.result.Err, asynchttp.ErrTimeout)
	require.True(t, r.result.Timeout)
	require.Equal(t, []int{100, 504}, w.Codes())

	siptest.Eventually(t, "the abandoned request is counted late", func() bool { return cl.Stats().Late == 1 })
	siptest.Eventually(t, "the server sees its request abandoned", func() bool { return slow.aborted.Load() == 1 })
	s := cl.Stats()
	require.Zero(t, s.InFlight)
	require.Equal(t, uint64(1), s.Timeouts, "abandoned at the park's timeout: a timeout")
	require.Zero(t, s.Resumed)
	h.noRun()
}

func TestRequestDeadlineResumesWithTimeout(t *testing.T) {
	// The mock clock never moves, so the park cannot time out: the
	// request's own deadline (real time) passes first and resumes the
	// route with the timeout result.
	h := newHarness(t)
	h.route("LOOKUP", replyOK)
	slow := newHolder(t)
	srv := newServer(t, slow.ServeHTTP)
	cl := newClient(t, asynchttp.Options{})
	_, c, _ := h.request("MESSAGE")
	require.NoError(t, cl.Do(c, get(t, srv.URL), "LOOKUP", 50*time.Millisecond))
	r := h.next()
	require.Equal(t, transaction.ReasonExternal, r.reason)
	require.ErrorIs(t, r.result.Err, asynchttp.ErrTimeout)
	require.True(t, r.result.Timeout)
	require.GreaterOrEqual(t, r.result.Duration, 50*time.Millisecond)
	siptest.Eventually(t, "counted", func() bool { s := cl.Stats(); return s.Timeouts == 1 && s.Resumed == 1 })
	require.Zero(t, cl.Stats().Late)
}

func TestConnectionErrorSetsErr(t *testing.T) {
	// A loopback port nobody listens on: connection refused.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	url := "http://" + ln.Addr().String() + "/"
	require.NoError(t, ln.Close())

	h := newHarness(t)
	h.route("LOOKUP", replyOK)
	cl := newClient(t, asynchttp.Options{})
	_, c, _ := h.request("INVITE")
	require.NoError(t, cl.Do(c, get(t, url), "LOOKUP", 5*time.Second))
	r := h.next()
	require.True(t, r.ok)
	require.ErrorIs(t, r.result.Err, asynchttp.ErrTransport)
	require.False(t, r.result.Timeout)
	require.Zero(t, r.result.Status)
	var opErr *net.OpError
	require.ErrorAs(t, r.result.Err, &opErr, "the cause is wrapped")
	siptest.Eventually(t, "counted", func() bool { return cl.Stats().TransportErrors == 1 })
}

func TestBodyCap(t *testing.T) {
	const limit = 16
	for _, tc := range []struct {
		name    string
		body    string
		chunked bool // no Content-Length: the cap is found while reading
		tooBig  bool
	}{
		{"at the cap", strings.Repeat("a", limit), false, false},
		{"over, Content-Length", strings.Repeat("a", limit+1), false, true},
		{"over, chunked", strings.Repeat("a", 10*limit), true, true},
		{"at the cap, chunked", strings.Repeat("a", limit), true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.route("LOOKUP", replyOK)
			srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
				if tc.chunked {
					w.WriteHeader(http.StatusOK)
					w.(http.Flusher).Flush()
				}
				_, _ = io.WriteString(w, tc.body)
			})
			cl := newClient(t, asynchttp.Options{MaxBody: limit})
			_, c, _ := h.request("MESSAGE")
			require.NoError(t, cl.Do(c, get(t, srv.URL), "LOOKUP", 5*time.Second))
			r := h.next()
			require.Equal(t, 200, r.result.Status)
			if !tc.tooBig {
				require.NoError(t, r.result.Err)
				require.Equal(t, tc.body, string(r.result.Body))
				return
			}
			require.ErrorIs(t, r.result.Err, asynchttp.ErrBodyTooLarge)
			require.Nil(t, r.result.Body, "a body over the cap is dropped, not truncated")
			siptest.Eventually(t, "counted", func() bool { return cl.Stats().BodyTooLarge == 1 })
		})
	}
}

func TestOverMaxInFlightIsBusyAndParksNothing(t *testing.T) {
	h := newHarness(t)
	h.route("LOOKUP", replyOK)
	hold := newHolder(t)
	srv := newServer(t, hold.ServeHTTP)
	cl := newClient(t, asynchttp.Options{MaxInFlight: 2})

	for range 2 {
		_, c, _ := h.request("INVITE")
		require.NoError(t, cl.Do(c, get(t, srv.URL), "LOOKUP", 5*time.Second))
	}
	hold.waitArrived(t, 2)
	require.Equal(t, 2, cl.Stats().InFlight)

	tx, c, w := h.request("INVITE")
	err := cl.Do(c, get(t, srv.URL), "LOOKUP", 5*time.Second)
	require.ErrorIs(t, err, asynchttp.ErrBusy)
	require.Equal(t, transaction.Live, tx.State(), "nothing parked: the caller still owns it")
	require.NotEqual(t, routes.OutcomeParked, c.Outcome())
	require.Empty(t, w.Codes(), "not even a 100 Trying: nothing was parked")
	require.Equal(t, 2, h.tbl.Stats().Parked)
	require.Equal(t, uint64(1), cl.Stats().Busy)
	require.Equal(t, uint64(2), cl.Stats().Requests)

	hold.open()
	h.next()
	h.next()
	siptest.Eventually(t, "the slots are free again", func() bool { return cl.Stats().InFlight == 0 })
	// With the slots back, the refused call can ask again.
	require.NoError(t, cl.Do(c, get(t, srv.URL), "LOOKUP", 5*time.Second))
	require.Same(t, tx, h.next().tx)
}

func TestSequentialRequestsReuseOneConnection(t *testing.T) {
	h := newHarness(t)
	h.route("LOOKUP", replyOK)
	var conns atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, `{"action":"relay"}`)
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	cl := newClient(t, asynchttp.Options{})

	const n = 20
	for i := range n {
		_, c, _ := h.request("INVITE")
		require.NoError(t, cl.Do(c, get(t, srv.URL), "LOOKUP", 5*time.Second))
		r := h.next()
		require.NoError(t, r.result.Err, "request %d", i)
		// The next request goes once this one has given its connection
		// back (after reading the body to its end).
		siptest.Eventually(t, "the request ends", func() bool { return cl.Stats().Resumed == uint64(i+1) })
	}
	require.Equal(t, int64(1), conns.Load(), "%d sequential requests over one keep-alive connection", n)
}

func TestCancelWhileWaitingAbortsTheRequest(t *testing.T) {
	h := newHarness(t)
	h.route("LOOKUP", replyOK)
	hold := newHolder(t)
	srv := newServer(t, hold.ServeHTTP)
	cl := newClient(t, asynchttp.Options{})

	tx, c, w := h.request("INVITE")
	require.NoError(t, cl.Do(c, get(t, srv.URL), "LOOKUP", 60*time.Second))
	hold.waitArrived(t, 1)

	require.NoError(t, tx.ServerTx().Receive(siptest.CancelOf(t, tx.Request())))
	siptest.Eventually(t, "the server sees the request canceled", func() bool { return hold.aborted.Load() == 1 })
	siptest.Eventually(t, "the request's goroutine ends", func() bool { return cl.Stats().Late == 1 })
	s := cl.Stats()
	require.Equal(t, uint64(1), s.Canceled)
	require.Zero(t, s.InFlight)
	require.Zero(t, s.Resumed)
	require.Equal(t, transaction.Done, tx.State())
	require.Equal(t, []int{100, 487}, w.Codes(), "nothing but the 487 goes out")
	h.noRun()
	require.Zero(t, hold.answered.Load())
}

func TestParkAnsweredAtShutdownAbortsTheRequest(t *testing.T) {
	// The engine's Stop answers what is parked (503): the request has
	// nobody left to answer and is abandoned.
	h := newHarness(t)
	h.route("LOOKUP", replyOK)
	hold := newHolder(t)
	srv := newServer(t, hold.ServeHTTP)
	cl := newClient(t, asynchttp.Options{})
	_, c, w := h.request("INVITE")
	require.NoError(t, cl.Do(c, get(t, srv.URL), "LOOKUP", 60*time.Second))
	hold.waitArrived(t, 1)
	require.Equal(t, 1, h.e.Stop())
	siptest.Eventually(t, "the request is abandoned", func() bool { return cl.Stats().Late == 1 })
	require.Equal(t, uint64(1), cl.Stats().Canceled)
	require.Equal(t, []int{100, 503}, w.Codes())
}

func TestCloseCancelsAndLeavesNoGoroutine(t *testing.T) {
	before := goleak.IgnoreCurrent()
	h := newHarness(t)
	h.route("LOOKUP", replyOK)
	hold := newHolder(t)
	srv := httptest.NewServer(hold)
	cl, err := asynchttp.New(asynchttp.Options{Logger: discard, MaxConnsPerHost: 4})
	require.NoError(t, err)

	const n = 10
	for range n {
		_, c, _ := h.request("MESSAGE")
		require.NoError(t, cl.Do(c, get(t, srv.URL), "LOOKUP", 60*time.Second))
	}
	hold.waitArrived(t, 4) // the connection bound: the others wait in the transport
	cl.Close()
	require.Zero(t, cl.Stats().InFlight, "Close waits for every request")
	for range n {
		r := h.next()
		require.ErrorIs(t, r.result.Err, asynchttp.ErrClosed, "the routes run with ErrClosed")
	}
	require.Equal(t, uint64(n), cl.Stats().Closed)
	cl.Close() // twice: harmless

	_, c, _ := h.request("MESSAGE")
	require.ErrorIs(t, cl.Do(c, get(t, srv.URL), "LOOKUP", time.Second), asynchttp.ErrClosed)
	srv.Close()
	h.close()
	goleak.VerifyNone(t, before)
}

func TestGoroutinesBoundedByInFlight(t *testing.T) {
	// n requests held: the goroutines grow by one per request plus
	// net/http's per connection (client read and write loops, a dial in
	// progress; the server's connection goroutines, in this process too),
	// never by two per request.
	const n, conns = 200, 4
	h := newHarness(t)
	h.route("LOOKUP", replyOK)
	hold := newHolder(t)
	srv := newServer(t, hold.ServeHTTP)
	cl := newClient(t, asynchttp.Options{MaxInFlight: n, MaxConnsPerHost: conns})
	base := runtime.NumGoroutine()
	for range n {
		_, c, _ := h.request("MESSAGE")
		require.NoError(t, cl.Do(c, get(t, srv.URL), "LOOKUP", 60*time.Second))
	}
	hold.waitArrived(t, conns)
	got := runtime.NumGoroutine()
	// 3 per client connection, 2 per server connection, and 8 for
	// sipgo's and the test's own coming and going.
	limit := base + n + 3*conns + 2*conns + 8
	require.LessOrEqual(t, got, limit, "%d requests held: %d goroutines, %d before", n, got, base)
	t.Logf("%d requests in flight: goroutines %d -> %d", n, base, got)
	hold.open()
	for range n {
		h.next()
	}
}

func TestBadCallsNeverPanicAndParkNothing(t *testing.T) {
	h := newHarness(t)
	h.route("LOOKUP", replyOK)
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {})
	cl := newClient(t, asynchttp.Options{})
	good := get(t, srv.URL)

	var nilClient *asynchttp.Client
	_, c0, _ := h.request("INVITE")
	require.ErrorIs(t, nilClient.Do(c0, good, "LOOKUP", time.Second), asynchttp.ErrInvalid)
	require.ErrorIs(t, new(asynchttp.Client).Do(c0, good, "LOOKUP", time.Second), asynchttp.ErrInvalid, "a Client not made by New")
	new(asynchttp.Client).Close()
	nilClient.Close()
	h.requireNotParked(c0.Tx(), c0, "no client")
	require.ErrorIs(t, cl.Do(nil, good, "LOOKUP", time.Second), asynchttp.ErrInvalid)

	for _, tc := range []struct {
		name    string
		req     *http.Request
		route   string
		timeout time.Duration
		ctx     func(*routes.Context) *routes.Context
		want    error
	}{
		{"nil request", nil, "LOOKUP", time.Second, nil, asynchttp.ErrInvalid},
		{"no URL", &http.Request{Method: http.MethodGet}, "LOOKUP", time.Second, nil, asynchttp.ErrInvalid},
		{"unknown route", good, "NOPE", time.Second, nil, routes.ErrUnknownRoute},
		{"negative timeout", good, "LOOKUP", -time.Second, nil, asynchttp.ErrInvalid},
		{"timeout under 1ms", good, "LOOKUP", 500 * time.Microsecond, nil, asynchttp.ErrInvalid},
		{"timeout over the suspend timeout", good, "LOOKUP", time.Hour, nil, async.ErrDelay},
		{"no route engine", good, "LOOKUP", time.Second, func(c *routes.Context) *routes.Context {
			return routes.NewContext(routes.ContextOptions{Ctx: h.ctx, Tx: c.Tx(), Logger: discard})
		}, asynchttp.ErrInvalid},
		{"no async engine", good, "LOOKUP", time.Second, func(c *routes.Context) *routes.Context {
			// a routes.Proxy with no async engine attached
			return routes.NewContext(routes.ContextOptions{Proxy: &fakeEngine{routes: h.routes}, Tx: c.Tx(), Logger: discard})
		}, async.ErrNoEngine},
		{"no transaction", good, "LOOKUP", time.Second, func(c *routes.Context) *routes.Context {
			return routes.NewContext(routes.ContextOptions{Ctx: h.ctx, Proxy: h.fe, Request: c.Request(), Logger: discard})
		}, async.ErrNoTx},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tx, c, _ := h.request("INVITE")
			if tc.ctx != nil {
				c = tc.ctx(c)
			}
			err := cl.Do(c, tc.req, tc.route, tc.timeout)
			require.ErrorIs(t, err, tc.want)
			h.requireNotParked(tx, c, tc.name)
			require.Zero(t, cl.Stats().InFlight, "no slot kept")
		})
	}
	t.Run("ACK", func(t *testing.T) {
		tx, c, _ := h.request("ACK")
		require.Error(t, cl.Do(c, good, "LOOKUP", time.Second), "an ACK cannot be parked")
		h.requireNotParked(tx, c, "ACK")
		require.Zero(t, cl.Stats().InFlight)
	})
	require.Zero(t, cl.Stats().Requests)
	h.noRun()
}

func TestBadOptions(t *testing.T) {
	for _, o := range []asynchttp.Options{
		{MaxInFlight: -1}, {MaxConnsPerHost: -1}, {MaxBody: -1}, {Timeout: -time.Second}, {Timeout: time.Microsecond},
	} {
		_, err := asynchttp.New(o)
		require.ErrorIs(t, err, asynchttp.ErrOptions, "%+v", o)
	}
	cl := newClient(t, asynchttp.Options{})
	s := cl.Stats()
	require.Equal(t, asynchttp.DefaultMaxInFlight, s.MaxInFlight)
}

func TestResultOfOutsideAResume(t *testing.T) {
	h := newHarness(t)
	_, c, _ := h.request("INVITE")
	r, ok := asynchttp.ResultOf(c)
	require.False(t, ok)
	require.Nil(t, r)
	r, ok = asynchttp.ResultOf(nil)
	require.False(t, ok)
	require.Nil(t, r)
}

func TestMetrics(t *testing.T) {
	h := newHarness(t)
	h.route("LOOKUP", replyOK)
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("fail") != "" {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	})
	cl := newClient(t, asynchttp.Options{MaxInFlight: 7})
	reg := prometheus.NewRegistry()
	require.NoError(t, reg.Register(cl))

	for _, q := range []string{"", "?fail=1"} {
		_, c, _ := h.request("MESSAGE")
		require.NoError(t, cl.Do(c, get(t, srv.URL+q), "LOOKUP", 5*time.Second))
		h.next()
	}
	siptest.Eventually(t, "both resumed", func() bool { return cl.Stats().Resumed == 2 })

	problems, err := testutil.GatherAndLint(reg)
	require.NoError(t, err)
	require.Empty(t, problems)
	expected := `
# HELP sipasync_asynchttp_max_in_flight The bound on requests in flight (MaxInFlight); over it Do answers busy.
# TYPE sipasync_asynchttp_max_in_flight gauge
sipasync_asynchttp_max_in_flight 7
# HELP sipasync_asynchttp_in_flight HTTP requests in flight: parked transactions waiting for their answer.
# TYPE sipasync_asynchttp_in_flight gauge
sipasync_asynchttp_in_flight 0
`
	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(expected),
		"sipasync_asynchttp_max_in_flight", "sipasync_asynchttp_in_flight"))
	mfs, err := reg.Gather()
	require.NoError(t, err)
	values := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			key := mf.GetName()
			for _, l := range m.GetLabel() {
				key += "{" + l.GetName() + "=" + l.GetValue() + "}"
			}
			switch {
			case m.Counter != nil:
				values[key] = m.Counter.GetValue()
			case m.Histogram != nil:
				values[key+"_count"] = float64(m.Histogram.GetSampleCount())
			}
		}
	}
	assert.Equal(t, 2.0, values["sipasync_asynchttp_requests_total{outcome=answered}"])
	assert.Equal(t, 1.0, values["sipasync_asynchttp_responses_total{class=2xx}"])
	assert.Equal(t, 1.0, values["sipasync_asynchttp_responses_total{class=5xx}"])
	assert.Equal(t, 0.0, values["sipasync_asynchttp_errors_total{kind=busy}"])
	assert.Contains(t, values, "sipasync_asynchttp_errors_total{kind=late}")
	assert.Equal(t, 2.0, values["sipasync_asynchttp_request_duration_seconds_count"])
}

func TestRouteCanAskAgainFromItsResume(t *testing.T) {
	// A resumed route may call Do again (a second lookup): the slot of
	// the first request is free by then, even with MaxInFlight 1.
	h := newHarness(t)
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, r.URL.Query().Get("n"))
	})
	var cl *asynchttp.Client
	bodies := make(chan string, 2) // in the order the route runs
	h.route("LOOKUP", func(c *routes.Context) error {
		r, _ := asynchttp.ResultOf(c)
		bodies <- string(r.Body)
		if string(r.Body) == "1" {
			req, _ := http.NewRequest(http.MethodGet, srv.URL+"?n=2", nil)
			return cl.Do(c, req, "LOOKUP", 5*time.Second) // an error: the runner answers 500
		}
		return replyOK(c)
	})
	cl = newClient(t, asynchttp.Options{MaxInFlight: 1})
	_, c, w := h.request("INVITE")
	require.NoError(t, cl.Do(c, get(t, srv.URL+"?n=1"), "LOOKUP", 5*time.Second))
	h.next()
	h.next()
	require.Equal(t, "1", <-bodies)
	require.Equal(t, "2", <-bodies)
	require.Equal(t, []int{100, 200}, w.Codes(), "the second lookup's route answered; the first parked again")
}

// BenchmarkDoToRoute measures the time from Do to the resumed route, over
// a loopback HTTP server that answers at once.
func BenchmarkDoToRoute(b *testing.B) {
	h := newHarness(b)
	h.route("LOOKUP", replyOK)
	srv := newServer(b, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, `{"action":"relay"}`)
	})
	cl := newClient(b, asynchttp.Options{})
	b.ReportAllocs()
	for b.Loop() {
		_, c, _ := h.request("MESSAGE")
		if err := cl.Do(c, get(b, srv.URL), "LOOKUP", 5*time.Second); err != nil {
			b.Fatal(err)
		}
		if r := h.next(); r.result == nil || r.result.Err != nil {
			b.Fatalf("result %+v", r.result)
		}
	}
}
