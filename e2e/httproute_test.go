package e2e

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sipasync/sipasync/internal/sipptest"
)

// examples/httproute on the wire: every initial INVITE parked on an HTTP
// lookup served from this test process, SIPp on both sides.

// lookupService is the HTTP lookup service: its answer depends on the
// R-URI user it is asked about.
type lookupService struct {
	srv      *httptest.Server
	redirect atomic.Value // string: the target of user "redir"

	mu    sync.Mutex
	seen  map[string]int // lookups by user
	froms map[string]int // lookups by from

	held    atomic.Int64 // requests waiting for release now
	release chan struct{}
	once    sync.Once
}

func newLookupService(t *testing.T) *lookupService {
	t.Helper()
	s := &lookupService{seen: map[string]int{}, froms: map[string]int{}, release: make(chan struct{})}
	s.redirect.Store("")
	s.srv = httptest.NewServer(s) // 127.0.0.1
	t.Cleanup(s.srv.Close)
	t.Cleanup(s.open) // before the server closes: no handler left holding
	return s
}

func (s *lookupService) url() string { return s.srv.URL + "/route" }

// open releases the held requests, and answers later ones at once.
func (s *lookupService) open() { s.once.Do(func() { close(s.release) }) }

func (s *lookupService) count(user string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.seen[user]
}

func (s *lookupService) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	user, from := r.URL.Query().Get("user"), r.URL.Query().Get("from")
	s.mu.Lock()
	s.seen[user]++
	s.froms[from]++
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	answer := func(body string) { _, _ = io.WriteString(w, body) }
	switch user {
	case "fast", "nobody":
		answer(`{"action":"relay"}`)
	case "busy":
		answer(`{"action":"reply","code":486,"reason":"Busy Here"}`)
	case "redir":
		answer(`{"action":"redirect","target":"` + s.redirect.Load().(string) + `"}`)
	case "slow":
		// Beyond --lookup-timeout: the proxy gives up and cancels.
		select {
		case <-r.Context().Done():
		case <-time.After(30 * time.Second):
		}
	case "broken":
		http.Error(w, `{"error":"database down"}`, http.StatusInternalServerError)
	case "junk":
		answer(`{"action":`)
	case "weird":
		answer(`{"action":"dance"}`)
	case "held", "loadbusy", "loadrelay":
		s.held.Add(1)
		select {
		case <-s.release:
		case <-r.Context().Done():
		case <-time.After(3 * time.Minute): // a guard, never reached in a passing run
		}
		s.held.Add(-1)
		if user == "loadrelay" {
			answer(`{"action":"relay"}`)
			return
		}
		answer(`{"action":"reply","code":486,"reason":"Busy Here"}`)
	default:
		http.NotFound(w, r)
	}
}

// uasFor starts a SIPp UAS that lives for timeout and registers it as user.
func uasFor(t *testing.T, p *proxy, user string, timeout time.Duration) *sipptest.Process {
	t.Helper()
	u := sipptest.StartT(t, sipptest.Options{Scenario: scenario("uas_call.xml"), Timeout: timeout,
		ExtraArgs: []string{"-buff_size", strconv.Itoa(4 << 20)}})
	reg := run(t, p, sipptest.Options{Scenario: scenario("register.xml"), Service: user, MaxCalls: 1,
		Keys: map[string]string{"contact_port": strconv.Itoa(u.Port())}})
	sipptest.RequireSuccess(t, reg, 1)
	return u
}

// expect runs calls INVITEs to user that must all get code.
func expect(t *testing.T, p *proxy, user string, code, calls int) {
	t.Helper()
	res := run(t, p, sipptest.Options{Scenario: scenario("uac_expect.xml"), Service: user, MaxCalls: calls, Rate: 20,
		Keys: map[string]string{"code": strconv.Itoa(code)}})
	sipptest.RequireSuccess(t, res, calls)
}

func TestHTTPRouteDecisions(t *testing.T) {
	svc := newLookupService(t)
	// 2 s rather than the 500 ms default: on a loaded machine a fast lookup
	// must never pass for a slow one.
	p := startProxy(t, "httproute", "--lookup-url", svc.url(), "--lookup-timeout", "2s")
	u := uasFor(t, p, "fast", 60*time.Second)
	svc.redirect.Store("sip:fast@127.0.0.1:" + strconv.Itoa(u.Port()))

	t.Run("relay", func(t *testing.T) {
		// 200 from the registered UAS, then ACK and BYE in the dialog:
		// in-dialog requests take the default route, never a lookup.
		res := run(t, p, sipptest.Options{Scenario: scenario("uac_call.xml"), Service: "fast", MaxCalls: 5, Rate: 10})
		sipptest.RequireSuccess(t, res, 5)
		assert.Equal(t, 5, svc.count("fast"), "one lookup per initial INVITE")
		svc.mu.Lock()
		assert.Equal(t, 5, svc.froms["sipp"], "from is the From user")
		svc.mu.Unlock()
	})
	t.Run("relay to an unregistered user", func(t *testing.T) {
		expect(t, p, "nobody", 404, 2) // the default route's lookup finds no binding
	})
	t.Run("reply", func(t *testing.T) { expect(t, p, "busy", 486, 3) })
	t.Run("redirect", func(t *testing.T) {
		res := run(t, p, sipptest.Options{Scenario: scenario("uac_call.xml"), Service: "redir", MaxCalls: 3, Rate: 10})
		sipptest.RequireSuccess(t, res, 3)
	})
	t.Run("slow is 504", func(t *testing.T) { expect(t, p, "slow", 504, 2) })
	t.Run("HTTP 500 is 502", func(t *testing.T) { expect(t, p, "broken", 502, 2) })
	t.Run("malformed JSON is 500", func(t *testing.T) { expect(t, p, "junk", 500, 1) })
	t.Run("unknown action is 500", func(t *testing.T) { expect(t, p, "weird", 500, 1) })
	t.Run("non-INVITE takes the default route", func(t *testing.T) {
		res := run(t, p, sipptest.Options{Scenario: scenario("uac_options.xml"), Service: "nobody", MaxCalls: 2,
			Keys: map[string]string{"code": "404"}})
		sipptest.RequireSuccess(t, res, 2)
		assert.Equal(t, 2, svc.count("nobody"), "only the two INVITEs above were looked up")
	})

	m := scrape(t, adminAddr(t, p))
	assert.Equal(t, 2.0, m[`sipasync_asynchttp_errors_total{kind="timeout"}`], "the slow lookups")
	assert.Equal(t, 2.0, m[`sipasync_asynchttp_responses_total{class="5xx"}`], "the broken lookups")
	assert.Equal(t, 0.0, m[`sipasync_asynchttp_errors_total{kind="busy"}`])
	assert.Equal(t, 1024.0, m[`sipasync_asynchttp_max_in_flight`])
	assert.Equal(t, 0.0, m[`sipasync_asynchttp_in_flight`])
	assert.Equal(t, 19.0, m[`sipasync_asynchttp_request_duration_seconds_count`], "one per INVITE looked up")
}

func TestHTTPRouteOverTheBoundIs503(t *testing.T) {
	// One lookup may wait; it is held, so the next INVITE finds the bound
	// reached: 503. Released, the first gets its answer.
	svc := newLookupService(t)
	p := startProxy(t, "httproute", "--lookup-url", svc.url(), "--lookup-timeout", "30s", "--lookup-max-in-flight", "1")
	t.Cleanup(svc.open) // before the proxy stops
	first, err := sipptest.Start(ctxT(t, 60*time.Second), sipptest.Options{Scenario: scenario("uac_expect.xml"),
		Target: p.addr, Service: "held", MaxCalls: 1, Timeout: 50 * time.Second, Keys: map[string]string{"code": "486"}})
	require.NoError(t, err)
	waitUntil(t, "the first lookup is held", 30*time.Second, func() bool { return svc.held.Load() == 1 })
	expect(t, p, "busy", 503, 2)
	assert.Zero(t, svc.count("busy"), "a refused INVITE is never looked up")
	svc.open()
	res, err := first.Wait()
	require.NoError(t, err)
	sipptest.RequireSuccess(t, res, 1)
	assert.Equal(t, 2.0, scrape(t, adminAddr(t, p))[`sipasync_asynchttp_errors_total{kind="busy"}`])
}

func TestHTTPRouteBadLookupURLIsAStartupError(t *testing.T) {
	for _, args := range [][]string{
		{"--lookup-url", "ftp://127.0.0.1/route"},
		{"--lookup-url", "http://[::1"},
		{}, // required
	} {
		out, code := runExit(t, "httproute", append([]string{"--listen", "udp:127.0.0.1:0", "--admin", "127.0.0.1:0"}, args...)...)
		assert.Equal(t, 2, code, "%v: %s", args, out)
		assert.Equal(t, 1, strings.Count(strings.TrimSpace(out), "\n")+1, "%v: one line: %s", args, out)
		assert.Contains(t, out, "--lookup-url", "%v", args)
	}
}

// waitUntil polls cond, failing the test after guard (a guard against a
// hang, never a timing assertion).
func waitUntil(t *testing.T, what string, guard time.Duration, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(guard); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for: %s", guard, what)
		}
	}
}

func TestHTTPRouteTwoThousandCallsThousandWaiting(t *testing.T) {
	if testing.Short() {
		t.Skip("load test")
	}
	// 2,000 calls, half relayed to a UAS and half answered 486 by their
	// lookup. SIPp keeps at most 500 calls open per client (-l), so with
	// every lookup held the proxy has exactly 1,000 INVITEs parked on
	// HTTP; then the service answers them all, and the rest at once.
	const (
		perClient   = 1000
		openEach    = 500
		waiting     = 2 * openEach
		maxInFlight = 1024 // the --lookup-max-in-flight default
		maxConns    = 64   // the --lookup-max-conns-per-host default
	)
	svc := newLookupService(t)
	p := startProxy(t, "httproute", "--lookup-url", svc.url(), "--lookup-timeout", "100s")
	t.Cleanup(svc.open) // before the proxy stops
	uasFor(t, p, "loadrelay", 240*time.Second)
	admin := adminAddr(t, p)
	idle := scrape(t, admin)[`go_goroutines`]

	// SIPp's socket buffers at 4 MiB, as in the other load tests: the
	// release sends 1,000 answers and relays at once, and under the whole
	// -race suite SIPp can stall long enough for 64 KiB to overflow.
	buf := []string{"-buff_size", strconv.Itoa(4 << 20)}
	ctx := ctxT(t, 5*time.Minute)
	relay, err := sipptest.Start(ctx, sipptest.Options{Scenario: scenario("uac_call.xml"), Target: p.addr,
		Service: "loadrelay", MaxCalls: perClient, Rate: 250, CallLimit: openEach, Timeout: 200 * time.Second, ExtraArgs: buf})
	require.NoError(t, err)
	busy, err := sipptest.Start(ctx, sipptest.Options{Scenario: scenario("uac_expect.xml"), Target: p.addr,
		Service: "loadbusy", MaxCalls: perClient, Rate: 250, CallLimit: openEach, Timeout: 200 * time.Second, ExtraArgs: buf,
		Keys: map[string]string{"code": "486"}})
	require.NoError(t, err)

	inFlight := func(m map[string]float64) float64 { return m[`sipasync_asynchttp_in_flight`] }
	var peak float64
	waitUntil(t, "1,000 INVITEs parked on their lookups", 150*time.Second, func() bool {
		m := scrape(t, admin)
		peak = max(peak, m[`go_goroutines`])
		return inFlight(m) >= waiting
	})
	// While they wait: a few more reads of the goroutine count.
	for range 5 {
		m := scrape(t, admin)
		require.Equal(t, float64(waiting), inFlight(m), "SIPp keeps 1,000 calls open: no more, no fewer parked")
		require.Equal(t, float64(waiting), m[`sipasync_transaction_parked`])
		peak = max(peak, m[`go_goroutines`])
		time.Sleep(200 * time.Millisecond)
	}
	// The budget: the in-flight limit (one goroutine per lookup in flight)
	// plus a constant: the proxy's own goroutines when idle (listeners,
	// wheel, workers, admin), measured above;
	// net/http's per connection, at most 3 × MaxConnsPerHost (a read loop
	// and a write loop per keep-alive connection, and a dial while one is
	// opened); and 64 for what comes and goes (sipgo's goroutine per
	// datagram being handled, the admin connection of this scrape, worker
	// pool goroutines). A second goroutine per waiting lookup (1,000 more)
	// cannot fit.
	budget := maxInFlight + idle + 3*maxConns + 64
	t.Logf("%d lookups waiting: go_goroutines %.0f (idle %.0f, budget %.0f)", waiting, peak, idle, budget)
	require.Less(t, peak, budget, "goroutines while %d lookups wait", waiting)
	// HTTP/1.1, one request per connection: the service sees as many
	// requests as the proxy has connections; the rest queue in the proxy.
	waitUntil(t, "a held lookup on every connection", 60*time.Second, func() bool { return svc.held.Load() == maxConns })

	svc.open()
	relayRes, err := relay.Wait()
	require.NoError(t, err)
	busyRes, err := busy.Wait()
	require.NoError(t, err)
	sipptest.RequireSuccess(t, relayRes, perClient)
	sipptest.RequireSuccess(t, busyRes, perClient)
	assert.Equal(t, perClient, svc.count("loadrelay"), "one lookup per call")
	assert.Equal(t, perClient, svc.count("loadbusy"), "one lookup per call")

	waitUntil(t, "nothing in flight", 30*time.Second, func() bool { return inFlight(scrape(t, admin)) == 0 })
	m := scrape(t, admin)
	assert.Equal(t, 0.0, m[`sipasync_asynchttp_errors_total{kind="busy"}`])
	assert.Equal(t, 0.0, m[`sipasync_asynchttp_errors_total{kind="late"}`])
	assert.Equal(t, float64(2*perClient), m[`sipasync_asynchttp_requests_total{outcome="answered"}`])
}
