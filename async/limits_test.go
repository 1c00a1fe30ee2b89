package async_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/stretchr/testify/require"

	"github.com/sipasync/sipasync/async"
	"github.com/sipasync/sipasync/internal/siptest"
	"github.com/sipasync/sipasync/routes"
	"github.com/sipasync/sipasync/transaction"
	"github.com/sipasync/sipasync/workergroups"
)

// parkFunc is one parking call of the module with its delay.
type parkFunc func(c *routes.Context, d time.Duration) error

func nop(*routes.Context) error { return nil }

var secondForms = map[string]parkFunc{
	"Route":      func(c *routes.Context, d time.Duration) error { return async.Route(c, "R", d) },
	"RouteValue": func(c *routes.Context, d time.Duration) error { return async.RouteValue(c, "R", d, 7) },
	"Sleep":      func(c *routes.Context, d time.Duration) error { return async.Sleep(c, d, nop) },
}

var msForms = map[string]parkFunc{
	"MsRoute":      func(c *routes.Context, d time.Duration) error { return async.MsRoute(c, "R", d) },
	"MsRouteValue": func(c *routes.Context, d time.Duration) error { return async.MsRouteValue(c, "R", d, 7) },
	"MsSleep":      func(c *routes.Context, d time.Duration) error { return async.MsSleep(c, d, nop) },
}

// checkLimits parks with every good delay and refuses every bad one with
// want, parking nothing.
func checkLimits(t *testing.T, o opts, forms map[string]parkFunc, good, bad []time.Duration, want error) {
	for name, park := range forms {
		t.Run(name, func(t *testing.T) {
			h := newHarness(t, o)
			h.route("R", replyOK)
			for _, d := range bad {
				tx, c, w := h.request("MESSAGE")
				err := park(c, d)
				require.ErrorIs(t, err, want, "%s(%s)", name, d)
				h.requireNotParked(tx, c, fmt.Sprintf("%s(%s)", name, d))
				require.Empty(t, w.Codes(), "%s(%s): nothing is sent; the caller still owns the transaction", name, d)
				require.Zero(t, h.e.Stats().Parks, "%s(%s)", name, d)
			}
			for i, d := range good {
				tx, c, _ := h.request("MESSAGE")
				require.NoError(t, park(c, d), "%s(%s)", name, d)
				requireParked(t, tx, c, fmt.Sprintf("%s(%s)", name, d))
				require.Equal(t, i+1, h.tbl.Stats().Parked)
				require.Equal(t, i+1, h.e.Stats().WheelPending, "one wheel entry per park")
			}
			require.Equal(t, uint64(len(good)), h.e.Stats().Parks)
		})
	}
}

func TestSecondFormsLimits(t *testing.T) {
	good := []time.Duration{time.Second, 2 * time.Second, 99 * time.Second, 100 * time.Second}
	bad := []time.Duration{0, -time.Second, time.Millisecond, 999 * time.Millisecond, 1500 * time.Millisecond,
		100*time.Second + time.Millisecond, 101 * time.Second, time.Hour}
	checkLimits(t, opts{}, secondForms, good, bad, async.ErrDelay)
}

func TestSecondFormsWorkWithMsTimerOff(t *testing.T) {
	checkLimits(t, opts{msOff: true}, secondForms,
		[]time.Duration{time.Second, 100 * time.Second}, []time.Duration{0, 1500 * time.Millisecond, 101 * time.Second}, async.ErrDelay)
}

func TestMsFormsLimits(t *testing.T) {
	good := []time.Duration{time.Millisecond, 2 * time.Millisecond, 250 * time.Millisecond, time.Second,
		29999 * time.Millisecond, 30000 * time.Millisecond}
	bad := []time.Duration{0, -time.Millisecond, time.Microsecond, 999 * time.Microsecond,
		1500 * time.Microsecond, 250*time.Millisecond + time.Nanosecond, 30001 * time.Millisecond, time.Minute}
	checkLimits(t, opts{}, msForms, good, bad, async.ErrDelay)
}

func TestMsFormsNeedMsTimer(t *testing.T) {
	// With the ms timer off every ms form fails, whatever the delay.
	checkLimits(t, opts{msOff: true}, msForms, nil,
		[]time.Duration{time.Millisecond, 250 * time.Millisecond, 30000 * time.Millisecond, 0, 30001 * time.Millisecond},
		async.ErrMsTimerOff)
}

func TestDelayNotShorterThanSuspendTimeout(t *testing.T) {
	h := newHarness(t, opts{suspendTimeout: 5 * time.Second})
	h.route("R", replyOK)
	for _, p := range []parkFunc{secondForms["Route"], msForms["MsRoute"], secondForms["Sleep"], msForms["MsSleep"]} {
		tx, c, _ := h.request("MESSAGE")
		require.ErrorIs(t, p(c, 5*time.Second), async.ErrTooLong)
		h.requireNotParked(tx, c, "a timed park as long as the suspend timeout")
	}
	tx, c, _ := h.request("MESSAGE")
	require.NoError(t, async.Route(c, "R", 4*time.Second))
	requireParked(t, tx, c, "4s < 5s")
	tx, c, _ = h.request("MESSAGE")
	require.NoError(t, async.MsRoute(c, "R", 4999*time.Millisecond))
	requireParked(t, tx, c, "4999ms < 5s")
}

// everyParking lists the calls that park, each with valid arguments for a
// harness that has route[R] and group abc.
func everyParking() map[string]func(c *routes.Context) error {
	return map[string]func(c *routes.Context) error{
		"Route":               func(c *routes.Context) error { return async.Route(c, "R", time.Second) },
		"RouteValue":          func(c *routes.Context) error { return async.RouteValue(c, "R", time.Second, 1) },
		"MsRoute":             func(c *routes.Context) error { return async.MsRoute(c, "R", 250*time.Millisecond) },
		"MsRouteValue":        func(c *routes.Context) error { return async.MsRouteValue(c, "R", time.Millisecond, 1) },
		"Sleep":               func(c *routes.Context) error { return async.Sleep(c, time.Second, nop) },
		"MsSleep":             func(c *routes.Context) error { return async.MsSleep(c, time.Millisecond, nop) },
		"TaskRoute":           func(c *routes.Context) error { return async.TaskRoute(c, "R") },
		"TaskGroupRoute":      func(c *routes.Context) error { return async.TaskGroupRoute(c, "R", "abc") },
		"TaskGroupRouteValue": func(c *routes.Context) error { return async.TaskGroupRouteValue(c, "R", "abc", 1) },
		"Suspend": func(c *routes.Context) error {
			_, err := async.Suspend(c, "R", nil)
			return err
		},
	}
}

// everyDataCall lists the calls that park nothing.
func everyDataCall() map[string]func(c *routes.Context) error {
	return map[string]func(c *routes.Context) error{
		"TaskData":      func(c *routes.Context) error { return async.TaskData(c, "R", "d") },
		"TaskGroupData": func(c *routes.Context) error { return async.TaskGroupData(c, "R", "abc", "d") },
		"TKVEmit":       func(c *routes.Context) error { return async.TKVEmit(c, 1, "k", "v") },
	}
}

// stdHarness has route[R] (answers 200) and a blocking group abc.
func stdHarness(t *testing.T, o opts) *harness {
	o.groups = append(o.groups, "name=abc;workers=2;nonblock=0;usleep=0")
	h := newHarness(t, o)
	h.route("R", replyOK)
	return h
}

func TestUnknownRouteComputedAtRunTime(t *testing.T) {
	h := stdHarness(t, opts{})
	require.NoError(t, h.routes.Route("RESUME1", routes.HandlerFunc(replyOK)))
	name := func(n int) string { return fmt.Sprintf("RESUME%d", n) }

	calls := map[string]func(c *routes.Context, route string) error{
		"Route":               func(c *routes.Context, r string) error { return async.Route(c, r, time.Second) },
		"RouteValue":          func(c *routes.Context, r string) error { return async.RouteValue(c, r, time.Second, 1) },
		"MsRoute":             func(c *routes.Context, r string) error { return async.MsRoute(c, r, time.Millisecond) },
		"MsRouteValue":        func(c *routes.Context, r string) error { return async.MsRouteValue(c, r, time.Millisecond, 1) },
		"TaskRoute":           func(c *routes.Context, r string) error { return async.TaskRoute(c, r) },
		"TaskGroupRoute":      func(c *routes.Context, r string) error { return async.TaskGroupRoute(c, r, "abc") },
		"TaskGroupRouteValue": func(c *routes.Context, r string) error { return async.TaskGroupRouteValue(c, r, "abc", 1) },
		"Suspend": func(c *routes.Context, r string) error {
			_, err := async.Suspend(c, r, nil)
			return err
		},
	}
	for fn, call := range calls {
		for _, r := range []string{name(2), "", "resume1"} {
			tx, c, _ := h.request("MESSAGE")
			err := call(c, r)
			require.ErrorIs(t, err, routes.ErrUnknownRoute, "%s(%q)", fn, r)
			h.requireNotParked(tx, c, fmt.Sprintf("%s(%q)", fn, r))
		}
	}
	for fn, call := range map[string]func(c *routes.Context, route string) error{
		"TaskData":      func(c *routes.Context, r string) error { return async.TaskData(c, r, "d") },
		"TaskGroupData": func(c *routes.Context, r string) error { return async.TaskGroupData(c, r, "abc", "d") },
	} {
		tx, c, _ := h.request("MESSAGE")
		require.ErrorIs(t, call(c, name(2)), routes.ErrUnknownRoute, fn)
		h.requireNotParked(tx, c, fn)
	}
	require.Zero(t, h.e.Stats().DataTasks)
	require.Zero(t, h.e.Stats().Parks)
	h.noRun()

	// The same computation naming a route that exists parks.
	for fn, call := range calls {
		tx, c, _ := h.request("MESSAGE")
		require.NoError(t, call(c, name(1)), fn)
		require.Equal(t, routes.OutcomeParked, c.Outcome(), fn)
		_ = tx
	}
}

func TestUnknownGroup(t *testing.T) {
	h := stdHarness(t, opts{})
	for fn, call := range map[string]func(c *routes.Context) error{
		"TaskGroupRoute":      func(c *routes.Context) error { return async.TaskGroupRoute(c, "R", "nope") },
		"TaskGroupRouteValue": func(c *routes.Context) error { return async.TaskGroupRouteValue(c, "R", "ABC", 1) },
		"TaskGroupData":       func(c *routes.Context) error { return async.TaskGroupData(c, "R", "nope", "d") },
	} {
		tx, c, _ := h.request("MESSAGE")
		require.ErrorIs(t, call(c), workergroups.ErrUnknownGroup, fn)
		h.requireNotParked(tx, c, fn)
	}
	require.Zero(t, h.e.Stats().DataTasks)
	h.noRun()
}

func TestNoEngine(t *testing.T) {
	h := stdHarness(t, opts{})
	// No routes.Proxy at all; one that carries no async engine (a Host
	// with nothing attached); one that is not a Host.
	type plain struct{ routes.Proxy }
	for name, eng := range map[string]routes.Proxy{"nil": nil, "nothing attached": &fakeEngine{routes: h.routes},
		"not a host": plain{h.fe}} {
		calls := everyParking()
		for k, v := range everyDataCall() {
			calls[k] = v
		}
		for fn, call := range calls {
			tx, _ := h.newTx("MESSAGE")
			c := routes.NewContext(routes.ContextOptions{Proxy: eng, Kind: routes.KindRequest, Tx: tx, Logger: discard})
			require.ErrorIs(t, call(c), async.ErrNoEngine, "%s: %s", name, fn)
			h.requireNotParked(tx, c, fn)
		}
		_, err := async.EngineOf(routes.NewContext(routes.ContextOptions{Proxy: eng}))
		require.ErrorIs(t, err, async.ErrNoEngine, name)
	}
	e, err := async.EngineOf(h.ctxOf(nil, routes.KindEvent, "x"))
	require.NoError(t, err)
	require.Same(t, h.e, e)
	h.noRun()
}

func TestNoTransaction(t *testing.T) {
	h := stdHarness(t, opts{})
	// A tx without a sipgo server transaction (synthetic), a route with
	// no transaction at all, and an ACK.
	bare, err := h.tbl.Add(siptest.Request(t, "MESSAGE"), nil)
	require.NoError(t, err)
	ack, _ := h.newTx("ACK")
	cases := map[string]func() (*transaction.Tx, *routes.Context){
		"no server tx": func() (*transaction.Tx, *routes.Context) {
			return bare, h.ctxOf(bare, routes.KindRequest, "")
		},
		"no tx": func() (*transaction.Tx, *routes.Context) {
			return nil, routes.NewContext(routes.ContextOptions{Ctx: h.ctx, Proxy: h.fe, Kind: routes.KindRequest,
				Request: siptest.Request(t, "MESSAGE"), Logger: discard})
		},
		"ACK": func() (*transaction.Tx, *routes.Context) {
			return ack, h.ctxOf(ack, routes.KindRequest, "")
		},
	}
	for cname, mk := range cases {
		for fn, call := range everyParking() {
			tx, c := mk()
			require.ErrorIs(t, call(c), async.ErrNoTx, "%s: %s", cname, fn)
			h.requireNotParked(tx, c, cname+": "+fn)
		}
	}
	h.noRun()
}

func TestParkingRouteKinds(t *testing.T) {
	h := stdHarness(t, opts{})
	ctxWith := func(tx *transaction.Tx, kind routes.Kind, res *sip.Response) *routes.Context {
		return routes.NewContext(routes.ContextOptions{Ctx: h.ctx, Proxy: h.fe, Kind: kind, Name: "X",
			Tx: tx, Response: res, Logger: discard})
	}
	// Refused: an event route; a failure or reply route with no final
	// response of 300 or more to hold (a provisional or a 2xx goes on).
	refused := []struct {
		kind routes.Kind
		code int // 0: no response
	}{{routes.KindEvent, 0}, {routes.KindFailure, 0}, {routes.KindReply, 0}, {routes.KindReply, 180}, {routes.KindReply, 200}}
	for _, r := range refused {
		for fn, call := range everyParking() {
			tx, _ := h.newTx("MESSAGE")
			var res *sip.Response
			if r.code != 0 {
				res = sip.NewResponseFromRequest(tx.Request(), r.code, "X", nil)
			}
			c := ctxWith(tx, r.kind, res)
			err := call(c)
			require.ErrorIs(t, err, async.ErrRouteKind, "%s from %s on %d", fn, r.kind, r.code)
			h.requireNotParked(tx, c, fmt.Sprintf("%s from %s on %d", fn, r.kind, r.code))
		}
	}
	h.noRun()
	allowed := []struct {
		kind routes.Kind
		code int
	}{{routes.KindRequest, 0}, {routes.KindNamed, 0}, {routes.KindFailure, 486}, {routes.KindReply, 503}}
	for _, a := range allowed {
		for fn, call := range everyParking() {
			tx, _ := h.newTx("MESSAGE")
			var res *sip.Response
			if a.code != 0 {
				res = sip.NewResponseFromRequest(tx.Request(), a.code, "X", nil)
			}
			c := ctxWith(tx, a.kind, res)
			require.NoError(t, call(c), "%s from %s", fn, a.kind)
			require.Equal(t, routes.OutcomeParked, c.Outcome(), "%s from %s", fn, a.kind)
			require.Same(t, res, tx.Suspension().Response, "%s from %s holds the response", fn, a.kind)
		}
	}
}

func TestDataCallsFromAnyRoute(t *testing.T) {
	h := stdHarness(t, opts{})
	require.NoError(t, h.routes.Event(async.TKVEventRoute, routes.HandlerFunc(nop)))
	kinds := []routes.Kind{routes.KindRequest, routes.KindNamed, routes.KindFailure, routes.KindReply, routes.KindEvent}
	want := 0
	for _, kind := range kinds {
		for fn, call := range everyDataCall() {
			tx, _ := h.newTx("MESSAGE")
			c := h.ctxOf(tx, kind, "X")
			require.NoError(t, call(c), "%s from %s", fn, kind)
			h.requireNotParked(tx, c, fmt.Sprintf("%s from %s", fn, kind))
			want++
			// And from a route with no transaction (a data task, an event).
			c = routes.NewContext(routes.ContextOptions{Ctx: h.ctx, Proxy: h.fe, Kind: kind, Name: "X", Logger: discard})
			require.NoError(t, call(c), "%s from %s without a transaction", fn, kind)
			want++
		}
	}
	for range want {
		r := h.next()
		require.True(t, r.detached)
	}
}

func TestSleepNeedsContinuation(t *testing.T) {
	h := stdHarness(t, opts{})
	tx, c, _ := h.request("MESSAGE")
	require.ErrorIs(t, async.Sleep(c, time.Second, nil), routes.ErrNilHandler)
	h.requireNotParked(tx, c, "Sleep(nil)")
	require.ErrorIs(t, async.MsSleep(c, time.Millisecond, nil), routes.ErrNilHandler)
	h.requireNotParked(tx, c, "MsSleep(nil)")
}

func TestTooManyParked(t *testing.T) {
	h := stdHarness(t, opts{maxParked: 2})
	for range 2 {
		_, c, _ := h.request("MESSAGE")
		require.NoError(t, async.MsRoute(c, "R", time.Second))
	}
	for fn, call := range everyParking() {
		tx, c, _ := h.request("MESSAGE")
		err := call(c)
		require.ErrorIs(t, err, transaction.ErrTooMany, fn)
		require.NotEqual(t, routes.OutcomeParked, c.Outcome(), fn)
		require.Equal(t, transaction.Live, tx.State(), fn)
		require.Equal(t, 2, h.tbl.Stats().Parked, fn)
		require.Equal(t, 2, h.e.Stats().WheelPending, fn)
	}
}

func TestNewValidates(t *testing.T) {
	mk := func() (async.Config, func()) {
		g, err := workergroups.New(workergroups.WithLogger(discard))
		require.NoError(t, err)
		return async.Config{Table: transaction.New(transaction.Options{}), Routes: routes.NewTable(),
				Runner: &runner{}, Groups: g, Logger: discard}, func() {
				_, _ = g.Stop(context.Background())
			}
	}
	for name, mut := range map[string]func(*async.Config){
		"no table":      func(c *async.Config) { c.Table = nil },
		"no routes":     func(c *async.Config) { c.Routes = nil },
		"no runner":     func(c *async.Config) { c.Runner = nil },
		"no groups":     func(c *async.Config) { c.Groups = nil },
		"ms timer <0":   func(c *async.Config) { c.MsTimer = -time.Millisecond },
		"ms timer <1ms": func(c *async.Config) { c.MsTimer = 500 * time.Microsecond },
		"ms timer >1s":  func(c *async.Config) { c.MsTimer = 2 * time.Second },
		"tkv group":     func(c *async.Config) { c.TKVGroup = "nope" },
	} {
		cfg, stop := mk()
		mut(&cfg)
		_, err := async.New(cfg)
		require.Error(t, err, name)
		stop()
	}
	cfg, stop := mk()
	defer stop()
	_, err := async.New(cfg)
	require.NoError(t, err)
	_, err = async.New(cfg)
	require.True(t, errors.Is(err, workergroups.ErrDuplicateGroup), "a second engine on the same groups: %v", err)
}
