package async_test

// The harness: an Engine over a real transaction table, a real route table,
// real worker groups and a mock clock, with a fake Runner standing in for the
// proxy. Transactions that park get a real sipgo server transaction over a
// recording connection (reliable transport, so sipgo arms no retransmission
// timers). Time is driven by hand: advance moves the mock clock and runs the
// engine's wheel up to it, so every check is deterministic.

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/sipasync/sipasync/async"
	"github.com/sipasync/sipasync/internal/siptest"
	"github.com/sipasync/sipasync/routes"
	"github.com/sipasync/sipasync/transaction"
	"github.com/sipasync/sipasync/workergroups"
)

// TestMain fails the run if any test leaves a goroutine behind. Goroutines
// that exist before the tests (ants' package-level default pool) are not
// ours.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreCurrent())
}

var discard = siptest.Discard

// ---- the fake proxy ----------------------------------------------------

// run is one route run the fake Runner carried out.
type run struct {
	kind     routes.Kind
	name     string
	tx       *transaction.Tx
	reason   transaction.Reason // as the route saw it on entry
	value    any
	data     any
	req      *sip.Request
	detached bool
	handler  bool          // RunHandler (a Sleep continuation) rather than RunRoute
	res      *sip.Response // the held response the run was given
	outcome  routes.Outcome
	err      error
}

// runner is the fake Runner: it runs routes as the proxy does (a Context
// carrying the engine, so that a resumed route can park again) and applies
// the proxy's finishing rules in short: parked or relayed → left alone,
// otherwise answered (500 if nothing was sent) and finished.
type runner struct {
	h    *harness
	runs chan run // nil: runs are only counted
	n    atomic.Int64

	mu     sync.Mutex
	byName map[string]int
}

func (r *runner) RunRoute(tx *transaction.Tx, kind routes.Kind, name string, res *sip.Response) {
	r.runTx(tx, kind, name, nil, res)
}

func (r *runner) RunHandler(tx *transaction.Tx, kind routes.Kind, name string, h routes.Handler, res *sip.Response) {
	r.runTx(tx, kind, name, h, res)
}

func (r *runner) runTx(tx *transaction.Tx, kind routes.Kind, name string, h routes.Handler, res *sip.Response) {
	reason, value := tx.ResumeReason()
	c := routes.NewContext(routes.ContextOptions{Ctx: r.h.ctx, Proxy: r.h.fe, Kind: kind, Name: name,
		Tx: tx, Response: res, Logger: discard})
	rec := run{kind: kind, name: name, tx: tx, reason: reason, value: value, req: tx.Request(), handler: h != nil, res: res}
	var err error
	if h == nil {
		h, err = r.h.routes.Lookup(kind, name)
	}
	if err == nil {
		err = h.ServeSIP(c)
	}
	rec.outcome, rec.err = c.Outcome(), err
	switch c.Outcome() {
	case routes.OutcomeParked, routes.OutcomeRelayed:
	default:
		if tx.ServerTx() != nil && !tx.Request().IsAck() && !tx.FinalSent() && !tx.Canceled() {
			_ = tx.Reply(500, "Server Internal Error - No Reply", nil)
		}
		r.h.tbl.Finish(tx)
	}
	r.record(rec)
}

func (r *runner) RunDetached(kind routes.Kind, name string, req *sip.Request, data any) error {
	h, err := r.h.routes.Lookup(kind, name)
	if err != nil {
		return err
	}
	c := routes.NewContext(routes.ContextOptions{Ctx: r.h.ctx, Proxy: r.h.fe, Kind: kind, Name: name,
		Request: req, Logger: discard, Data: data})
	err = h.ServeSIP(c)
	r.record(run{kind: kind, name: name, data: data, req: req, detached: true, outcome: c.Outcome(), err: err})
	return err
}

func (r *runner) record(rec run) {
	r.n.Add(1)
	if r.runs == nil {
		return
	}
	r.mu.Lock()
	r.byName[rec.name]++
	r.mu.Unlock()
	r.runs <- rec
}

// count returns how many runs of name were recorded.
func (r *runner) count(name string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.byName[name]
}

// fakeEngine carries out a Context's actions on the transaction; like the
// proxy, it is the async.Host route Contexts find the engine through.
type fakeEngine struct {
	routes  *routes.Table
	relayed atomic.Int64
	eng     any
}

func (f *fakeEngine) SetAsync(e any) error { f.eng = e; return nil }
func (f *fakeEngine) Async() any           { return f.eng }

func (f *fakeEngine) Reply(c *routes.Context, code int, reason string, body []byte, hdrs ...sip.Header) error {
	return c.Tx().Reply(code, reason, body, hdrs...)
}

func (f *fakeEngine) Relay(*routes.Context, string) error {
	f.relayed.Add(1)
	return nil
}

func (f *fakeEngine) Routes() *routes.Table { return f.routes }

// ---- the harness -------------------------------------------------------

type opts struct {
	msTimer        time.Duration // 0: 10ms
	msOff          bool          // the ms timer off (MsTimer 0)
	suspendTimeout time.Duration // 0: the table's default (120s)
	maxParked      int
	maxRemembered  int             // transaction.Options.MaxRemembered
	moduleWorkers  int             // 0: the engine's default
	groups         []string        // Kamailio group specs added before the engine
	queues         map[string]int  // queue bound of a group in groups
	tkvGroup       string          // Config.TKVGroup
	onTKV          func(async.TKV) // Config.OnTKV
	countOnly      bool            // the runner only counts runs
}

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

	closeOnce sync.Once
}

func newHarness(t testing.TB, o opts) *harness {
	t.Helper()
	h := &harness{t: t, mock: clock.NewMock(), routes: routes.NewTable()}
	h.tbl = transaction.New(transaction.Options{Clock: h.mock, SuspendTimeout: o.suspendTimeout, MaxParked: o.maxParked,
		MaxRemembered: o.maxRemembered})
	var err error
	h.groups, err = workergroups.New(workergroups.WithLogger(discard))
	require.NoError(t, err)
	for _, s := range o.groups {
		spec, err := workergroups.ParseSpec(s)
		require.NoError(t, err, s)
		spec.Queue = o.queues[spec.Name]
		_, err = h.groups.Add(spec)
		require.NoError(t, err, s)
	}
	h.fe = &fakeEngine{routes: h.routes}
	h.r = &runner{h: h, byName: map[string]int{}}
	if !o.countOnly {
		h.r.runs = make(chan run, 1024)
	}
	ms := o.msTimer
	if ms == 0 {
		ms = 10 * time.Millisecond
	}
	if o.msOff {
		ms = 0
	}
	h.e, err = async.New(async.Config{Table: h.tbl, Routes: h.routes, Runner: h.r, Groups: h.groups,
		MsTimer: ms, ModuleWorkers: o.moduleWorkers, TKVGroup: o.tkvGroup, OnTKV: o.onTKV,
		Clock: h.mock, Logger: discard})
	require.NoError(t, err)
	require.NoError(t, h.fe.SetAsync(h.e))
	h.ctx, h.cancel = context.WithCancel(context.Background())
	t.Cleanup(h.close)
	return h
}

// close stops the engine (answering what is parked) and the groups, and
// waits for their workers.
func (h *harness) close() {
	h.closeOnce.Do(func() {
		h.cancel()
		h.e.Stop()
		ctx, cancel := context.WithTimeout(context.Background(), siptest.WaitFor)
		defer cancel()
		if _, err := h.groups.Stop(ctx); err != nil {
			h.t.Errorf("worker groups did not stop: %v", err)
		}
	})
}

// route registers route[name].
func (h *harness) route(name string, f routes.HandlerFunc) {
	h.t.Helper()
	require.NoError(h.t, h.routes.Route(name, f))
}

// replyOK is a route that answers 200.
func replyOK(c *routes.Context) error { return c.Reply(200, "OK") }

// advance moves the mock clock by d and runs the wheel up to the new time;
// it returns how many items the wheel dispatched.
func (h *harness) advance(d time.Duration) int {
	h.mock.Add(d)
	return h.e.Wheel().Advance(h.mock.Now())
}

// advanceGuarded is advance for tests whose routes block: it fails the test
// rather than hang if the wheel runs a route on its own goroutine.
func (h *harness) advanceGuarded(d time.Duration) int {
	h.t.Helper()
	done := make(chan int, 1)
	go func() { done <- h.advance(d) }()
	select {
	case n := <-done:
		return n
	case <-time.After(siptest.WaitFor):
		h.t.Fatal("Advance blocked: the wheel ran a route on its own goroutine")
		return 0
	}
}

// newTx enters a new transaction with a real server transaction over a
// recording wire.
func (h *harness) newTx(method string) (*transaction.Tx, *siptest.Wire) {
	h.t.Helper()
	w := &siptest.Wire{}
	req := siptest.Request(h.t, method)
	stx := siptest.ServerTx(h.t, req, w)
	h.t.Cleanup(stx.Terminate)
	tx, err := h.tbl.Add(req, stx)
	require.NoError(h.t, err)
	return tx, w
}

// ctxOf returns the Context of a run of kind[name] on tx, under the engine.
func (h *harness) ctxOf(tx *transaction.Tx, kind routes.Kind, name string) *routes.Context {
	return routes.NewContext(routes.ContextOptions{Ctx: h.ctx, Proxy: h.fe, Kind: kind, Name: name,
		Tx: tx, Logger: discard})
}

// request enters a new transaction and returns the Context of its
// request_route run.
func (h *harness) request(method string) (*transaction.Tx, *routes.Context, *siptest.Wire) {
	h.t.Helper()
	tx, w := h.newTx(method)
	return tx, h.ctxOf(tx, routes.KindRequest, ""), w
}

// next returns the next recorded run.
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

// noRun fails if a run was recorded and not yet taken.
func (h *harness) noRun() {
	h.t.Helper()
	select {
	case r := <-h.r.runs:
		h.t.Fatalf("unexpected run of %s[%s] (reason %s)", r.kind, r.name, r.reason)
	default:
	}
}

// requireNotParked checks that a failed call left the transaction live and
// owned by the caller.
func (h *harness) requireNotParked(tx *transaction.Tx, c *routes.Context, msg string) {
	h.t.Helper()
	require.NotEqual(h.t, routes.OutcomeParked, c.Outcome(), "%s: the Context must not be marked parked", msg)
	if tx != nil {
		require.Equal(h.t, transaction.Live, tx.State(), "%s: the transaction stays live", msg)
	}
	require.Equal(h.t, 0, h.tbl.Stats().Parked, "%s: nothing parked in the table", msg)
	require.Equal(h.t, 0, h.e.Stats().WheelPending, "%s: nothing armed on the wheel", msg)
}

// requireParked checks that a call parked the transaction.
func requireParked(t testing.TB, tx *transaction.Tx, c *routes.Context, msg string) {
	t.Helper()
	require.Equal(t, routes.OutcomeParked, c.Outcome(), "%s: the Context is marked parked", msg)
	require.Equal(t, transaction.Suspended, tx.State(), "%s: the transaction is suspended", msg)
}

// busy fills a group: it blocks its workers on g and waits until they run.
func busy(t testing.TB, grp *workergroups.Group, g *siptest.Gate) {
	t.Helper()
	n := grp.Spec().Workers
	for range n {
		require.NoError(t, grp.Submit(g.Wait))
	}
	siptest.Eventually(t, "the group's workers are busy", func() bool { return grp.Stats().Busy == n })
}

// group looks a group up.
func (h *harness) group(name string) *workergroups.Group {
	h.t.Helper()
	g, err := h.groups.Lookup(name)
	require.NoError(h.t, err)
	return g
}
