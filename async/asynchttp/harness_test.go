package asynchttp_test

// The harness, after async's own (async/harness_test.go), cut to what these
// tests need: the real async engine over a real transaction table and route
// table with a mock clock, a fake Runner that runs routes the way the proxy
// does, and real sipgo server transactions over a recording connection
// (reliable transport, so sipgo arms no retransmission timers). The park
// timeouts follow the mock clock (advance); the HTTP side is real: httptest
// servers on loopback.

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/sipasync/sipasync/async"
	"github.com/sipasync/sipasync/async/asynchttp"
	"github.com/sipasync/sipasync/routes"
	"github.com/sipasync/sipasync/transaction"
	"github.com/sipasync/sipasync/workergroups"
)

// TestMain fails the run if a test leaves a goroutine behind (a request
// goroutine, a keep-alive connection's loops).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreCurrent())
}

var discard = slog.New(slog.DiscardHandler)

// waitFor bounds every wait on another goroutine: a guard against a hang,
// never a timing assertion.
const waitFor = 10 * time.Second

// eventually polls cond until it holds or waitFor passes.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for: %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// ---- the wire ----------------------------------------------------------

// wire is a sip.Connection that records the responses a server
// transaction sends.
type wire struct {
	mu   sync.Mutex
	sent []*sip.Response
}

var _ sip.Connection = (*wire)(nil)

func (w *wire) LocalAddr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5060}
}

func (w *wire) WriteMsg(m sip.Message) error {
	if res, ok := m.(*sip.Response); ok {
		w.mu.Lock()
		w.sent = append(w.sent, res)
		w.mu.Unlock()
	}
	return nil
}

func (w *wire) Ref(int) int            { return 1 }
func (w *wire) TryClose() (int, error) { return 0, nil }
func (w *wire) Close() error           { return nil }

// codes lists the status codes sent for the original request (the 200 to
// a CANCEL left out).
func (w *wire) codes() []int {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := []int{}
	for _, r := range w.sent {
		if cs := r.CSeq(); cs != nil && cs.MethodName == sip.CANCEL {
			continue
		}
		out = append(out, r.StatusCode)
	}
	return out
}

// ---- requests and server transactions ----------------------------------

var callSeq atomic.Int64

// parseReq builds a request over TCP with a fresh branch and Call-ID.
func parseReq(t testing.TB, method string) *sip.Request {
	t.Helper()
	n := callSeq.Add(1)
	raw := fmt.Sprintf("%[1]s sip:bob@example.com SIP/2.0\r\n"+
		"Via: SIP/2.0/TCP 10.0.0.1:5060;branch=z9hG4bK-%[1]s-%[2]d\r\n"+
		"Max-Forwards: 70\r\n"+
		"From: <sip:alice@example.com>;tag=a%[2]d\r\n"+
		"To: <sip:bob@example.com>\r\n"+
		"Call-ID: call-%[2]d@10.0.0.1\r\n"+
		"CSeq: 1 %[1]s\r\n"+
		"Content-Length: 0\r\n\r\n", method, n)
	msg, err := sip.NewParser().ParseSIP([]byte(raw))
	require.NoError(t, err, "parse %s", method)
	req := msg.(*sip.Request)
	req.SetTransport("TCP")
	req.SetSource("10.0.0.1:5060")
	return req
}

// cancelOf builds the CANCEL of an INVITE (same branch, CSeq method CANCEL).
func cancelOf(t testing.TB, inv *sip.Request) *sip.Request {
	t.Helper()
	raw := "CANCEL sip:bob@example.com SIP/2.0\r\n" +
		"Via: " + inv.Via().Value() + "\r\n" +
		"Max-Forwards: 70\r\n" +
		"From: " + inv.From().Value() + "\r\n" +
		"To: <sip:bob@example.com>\r\n" +
		"Call-ID: " + inv.CallID().Value() + "\r\n" +
		"CSeq: 1 CANCEL\r\n" +
		"Content-Length: 0\r\n\r\n"
	msg, err := sip.NewParser().ParseSIP([]byte(raw))
	require.NoError(t, err, "parse CANCEL")
	req := msg.(*sip.Request)
	req.SetTransport("TCP")
	return req
}

// ---- the fake proxy ----------------------------------------------------

// run is one route run the fake Runner carried out.
type run struct {
	name   string
	tx     *transaction.Tx
	reason transaction.Reason
	result *asynchttp.Result // ResultOf in the route
	ok     bool              // ResultOf's ok
}

// runner is the fake Runner: it runs routes as the proxy does (a Context
// carrying the engine) and answers what the route left unanswered.
type runner struct {
	h    *harness
	runs chan run
}

func (r *runner) RunRoute(tx *transaction.Tx, kind routes.Kind, name string, res *sip.Response) {
	r.runTx(tx, kind, name, nil, res)
}

func (r *runner) RunHandler(tx *transaction.Tx, kind routes.Kind, name string, h routes.Handler, res *sip.Response) {
	r.runTx(tx, kind, name, h, res)
}

func (r *runner) runTx(tx *transaction.Tx, kind routes.Kind, name string, h routes.Handler, res *sip.Response) {
	c := r.h.ctxOf(tx, kind, name)
	rec := run{name: name, tx: tx, reason: c.ResumeReason()}
	rec.result, rec.ok = asynchttp.ResultOf(c)
	var err error
	if h == nil {
		h, err = r.h.routes.Lookup(kind, name)
	}
	if err == nil {
		err = h.ServeSIP(c)
	}
	if c.Outcome() != routes.OutcomeParked && c.Outcome() != routes.OutcomeRelayed {
		if !tx.FinalSent() && !tx.Canceled() {
			code, reason := routes.StatusOf(err)
			_ = tx.Reply(code, reason, nil)
		}
		r.h.tbl.Finish(tx)
	}
	r.runs <- rec
}

func (r *runner) RunDetached(routes.Kind, string, *sip.Request, any) error { return nil }

// fakeEngine carries out a Context's actions on the transaction.
type fakeEngine struct {
	routes *routes.Table
	eng    any
}

func (f *fakeEngine) SetAsync(e any) error { f.eng = e; return nil }
func (f *fakeEngine) Async() any           { return f.eng }

func (f *fakeEngine) Reply(c *routes.Context, code int, reason string, body []byte, hdrs ...sip.Header) error {
	return c.Tx().Reply(code, reason, body, hdrs...)
}

func (f *fakeEngine) Relay(*routes.Context, string) error { return nil }
func (f *fakeEngine) Routes() *routes.Table               { return f.routes }

// ---- the harness -------------------------------------------------------

type harness struct {
	t      testing.TB
	mock   *clock.Mock
	tbl    *transaction.Table
	routes *routes.Table
	groups *workergroups.Groups
	e      *async.Engine
	r      *runner
	fe     *fakeEngine
	ctx    context.Context // carries the engine
	cancel context.CancelFunc
}

func newHarness(t testing.TB) *harness {
	t.Helper()
	h := &harness{t: t, mock: clock.NewMock(), routes: routes.NewTable()}
	h.tbl = transaction.New(transaction.Options{Clock: h.mock})
	var err error
	h.groups, err = workergroups.New(workergroups.WithLogger(discard))
	require.NoError(t, err)
	h.fe = &fakeEngine{routes: h.routes}
	h.r = &runner{h: h, runs: make(chan run, 4096)}
	h.e, err = async.New(async.Config{Table: h.tbl, Routes: h.routes, Runner: h.r, Groups: h.groups,
		MsTimer: 10 * time.Millisecond, Clock: h.mock, Logger: discard})
	require.NoError(t, err)
	require.NoError(t, h.fe.SetAsync(h.e))
	h.ctx, h.cancel = context.WithCancel(context.Background())
	t.Cleanup(h.close)
	return h
}

// close stops the engine (answering what is parked) and the worker groups.
func (h *harness) close() {
	h.cancel()
	h.e.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if _, err := h.groups.Stop(ctx); err != nil {
		h.t.Errorf("worker groups did not stop: %v", err)
	}
}

// route registers route[name].
func (h *harness) route(name string, f routes.HandlerFunc) {
	h.t.Helper()
	require.NoError(h.t, h.routes.Route(name, f))
}

// advance moves the mock clock by d and runs the wheel up to the new time.
func (h *harness) advance(d time.Duration) int {
	h.mock.Add(d)
	return h.e.Wheel().Advance(h.mock.Now())
}

// ctxOf returns the Context of a run of kind[name] on tx, under the engine.
func (h *harness) ctxOf(tx *transaction.Tx, kind routes.Kind, name string) *routes.Context {
	return routes.NewContext(routes.ContextOptions{Ctx: h.ctx, Engine: h.fe, Kind: kind, Name: name,
		Tx: tx, Logger: discard})
}

// request enters a new transaction (a real server transaction over a
// recording wire) and returns the Context of its request_route run.
func (h *harness) request(method string) (*transaction.Tx, *routes.Context, *wire) {
	h.t.Helper()
	w := &wire{}
	req := parseReq(h.t, method)
	key, err := sip.ServerTxKeyMake(req)
	require.NoError(h.t, err)
	stx := sip.NewServerTx(key, req, w, discard)
	require.NoError(h.t, stx.Init())
	h.t.Cleanup(stx.Terminate)
	tx, err := h.tbl.Add(req, stx)
	require.NoError(h.t, err)
	return tx, h.ctxOf(tx, routes.KindRequest, ""), w
}

// next returns the next route run.
func (h *harness) next() run {
	h.t.Helper()
	select {
	case r := <-h.r.runs:
		return r
	case <-time.After(waitFor):
		h.t.Fatalf("no route ran within %s", waitFor)
		return run{}
	}
}

// noRun fails if a route ran and was not yet taken.
func (h *harness) noRun() {
	h.t.Helper()
	select {
	case r := <-h.r.runs:
		h.t.Fatalf("unexpected run of route[%s] (reason %s)", r.name, r.reason)
	default:
	}
}

// requireNotParked checks that a refused Do left the transaction live and
// owned by the caller.
func (h *harness) requireNotParked(tx *transaction.Tx, c *routes.Context, msg string) {
	h.t.Helper()
	require.NotEqual(h.t, routes.OutcomeParked, c.Outcome(), "%s: the Context must not be marked parked", msg)
	require.Equal(h.t, transaction.Live, tx.State(), "%s: the transaction stays live", msg)
	require.Zero(h.t, h.tbl.Stats().Parked, "%s: nothing parked in the table", msg)
}

// replyOK is a route that answers 200.
func replyOK(c *routes.Context) error { return c.Reply(200, "OK") }
