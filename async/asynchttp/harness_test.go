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
	"testing"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/sipasync/sipasync/async"
	"github.com/sipasync/sipasync/async/asynchttp"
	"github.com/sipasync/sipasync/internal/siptest"
	"github.com/sipasync/sipasync/routes"
	"github.com/sipasync/sipasync/transaction"
	"github.com/sipasync/sipasync/workergroups"
)

// TestMain fails the run if a test leaves a goroutine behind (a request
// goroutine, a keep-alive connection's loops).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreCurrent())
}

var discard = siptest.Discard

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
	ctx, cancel := context.WithTimeout(context.Background(), siptest.WaitFor)
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
	return routes.NewContext(routes.ContextOptions{Ctx: h.ctx, Proxy: h.fe, Kind: kind, Name: name,
		Tx: tx, Logger: discard})
}

// request enters a new transaction (a real server transaction over a
// recording wire) and returns the Context of its request_route run.
func (h *harness) request(method string) (*transaction.Tx, *routes.Context, *siptest.Wire) {
	h.t.Helper()
	w := &siptest.Wire{}
	req := siptest.Request(h.t, method)
	tx, err := h.tbl.Add(req, siptest.ServerTx(h.t, req, w))
	require.NoError(h.t, err)
	return tx, h.ctxOf(tx, routes.KindRequest, ""), w
}

// next returns the next route run.
func (h *harness) next() run {
	h.t.Helper()
	select {
	case r := <-h.r.runs:
		return r
	case <-time.After(siptest.WaitFor):
		h.t.Fatalf("no route ran within %s", siptest.WaitFor)
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
