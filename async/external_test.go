package async_test

// External resume: park timeouts into routes, t_continue into a route
// chosen at resume time, resumes that never wait, and parks on a held
// failure response. All on the mock clock.

import (
	"context"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/require"

	"github.com/sipasync/sipasync/async"
	"github.com/sipasync/sipasync/eventbus"
	"github.com/sipasync/sipasync/internal/siptest"
	"github.com/sipasync/sipasync/routes"
	"github.com/sipasync/sipasync/transaction"
)

func TestParkTimeoutRunsTimeoutRoute(t *testing.T) {
	h := newHarness(t, opts{})
	h.route("R", replyOK)
	h.route("TIMEOUT", func(c *routes.Context) error { return c.Reply(504, "Server Time-out") })
	tx, c, w := h.request("INVITE")
	tok, err := async.Suspend(c, "R", "lookup", async.Timeout(2*time.Second), async.TimeoutRoute("TIMEOUT"))
	require.NoError(t, err)
	require.Equal(t, 2*time.Second, tx.Suspension().Timeout)

	require.Zero(t, h.advance(2*time.Second-10*time.Millisecond), "not before the park's own timeout")
	h.noRun()
	require.Equal(t, 1, h.advance(10*time.Millisecond))
	r := h.next()
	require.Equal(t, "TIMEOUT", r.name)
	require.Equal(t, routes.KindNamed, r.kind)
	require.Equal(t, transaction.ReasonTimeout, r.reason)
	require.Equal(t, "lookup", r.value, "the park's value is there at the timeout")
	require.Equal(t, []int{100, 504}, w.Codes(), "the timeout route's answer, not the table's 408")

	err = h.e.Resume(tok, "the answer, too late")
	require.ErrorIs(t, err, transaction.ErrTimedOut, "a resume after the timeout is refused as timed out")
	h.noRun()
	st := h.e.Stats()
	require.Equal(t, uint64(1), st.TimeoutRoutes)
	require.Equal(t, uint64(1), st.RefusedFor("timed_out"))
	require.Zero(t, st.Expired, "a timeout route is not an expiry")
}

func TestParkTimeoutWithoutRouteAnswersAtItsTimeout(t *testing.T) {
	for method, want := range map[string][]int{"INVITE": {100, 408}, "MESSAGE": {500}} {
		t.Run(method, func(t *testing.T) {
			h := newHarness(t, opts{})
			h.route("R", replyOK)
			tx, c, w := h.request(method)
			tok, err := async.Suspend(c, "R", nil, async.Timeout(300*time.Millisecond))
			require.NoError(t, err)
			require.Equal(t, 1, h.advance(300*time.Millisecond), "due at 300 ms, not at the suspend timeout")
			siptest.Eventually(t, "the table answers", func() bool { return len(w.Codes()) == len(want) })
			require.Equal(t, transaction.Done, tx.State())
			require.Equal(t, want, w.Codes())
			require.ErrorIs(t, h.e.Resume(tok, nil), transaction.ErrTimedOut, "after the table's answer: timed out")
			h.noRun()
		})
	}
}

func TestTimeoutRouteMayParkAgain(t *testing.T) {
	h := newHarness(t, opts{})
	toks := make(chan transaction.Token, 1)
	h.route("R", replyOK)
	h.route("RETRY", func(c *routes.Context) error {
		tok, err := async.Suspend(c, "R", nil, async.Timeout(time.Second))
		toks <- tok
		return err
	})
	tx, c, w := h.request("MESSAGE")
	tok1, err := async.Suspend(c, "R", nil, async.Timeout(time.Second), async.TimeoutRoute("RETRY"))
	require.NoError(t, err)
	require.Equal(t, 1, h.advance(time.Second))
	require.Equal(t, "RETRY", h.next().name)
	tok2 := <-toks
	require.Equal(t, transaction.Suspended, tx.State())
	require.ErrorIs(t, h.e.Resume(tok1, nil), transaction.ErrTimedOut, "the first park timed out")
	require.NoError(t, h.e.Resume(tok2, nil), "the second park waits for its own token")
	require.Equal(t, "R", h.next().name)
	require.Equal(t, []int{200}, w.Codes())
}

func TestSuspendOptionsAreChecked(t *testing.T) {
	h := newHarness(t, opts{suspendTimeout: 10 * time.Second})
	h.route("R", replyOK)
	for name, opt := range map[string][]async.ParkOption{
		"timeout under 1ms":                {async.Timeout(time.Microsecond)},
		"timeout over the suspend timeout": {async.Timeout(11 * time.Second)},
		"negative timeout":                 {async.Timeout(-time.Second)},
	} {
		tx, c, _ := h.request("MESSAGE")
		_, err := async.Suspend(c, "R", nil, opt...)
		require.ErrorIs(t, err, async.ErrDelay, name)
		h.requireNotParked(tx, c, name)
	}
	tx, c, _ := h.request("MESSAGE")
	_, err := async.Suspend(c, "R", nil, async.TimeoutRoute("NOSUCH"))
	require.ErrorIs(t, err, routes.ErrUnknownRoute, "an unknown timeout route is refused at the park")
	h.requireNotParked(tx, c, "unknown timeout route")

	tx, c, _ = h.request("MESSAGE")
	_, err = async.Suspend(c, "R", nil, async.Timeout(10*time.Second))
	require.NoError(t, err, "the suspend timeout itself is allowed")
	require.Equal(t, 10*time.Second, tx.Suspension().Timeout)
}

func TestContinueIntoRouteChosenAtResume(t *testing.T) {
	h := newHarness(t, opts{})
	h.route("R", replyOK)
	h.route("OTHER", func(c *routes.Context) error { return c.Reply(302, "Moved Temporarily") })
	tx, c, w := h.request("MESSAGE")
	tok, err := async.Suspend(c, "R", nil)
	require.NoError(t, err)

	err = h.e.Continue(tok, "NOSUCH", "v")
	require.ErrorIs(t, err, routes.ErrUnknownRoute)
	require.Equal(t, transaction.Suspended, tx.State(), "an unknown route leaves the park untouched")
	require.Equal(t, uint64(1), h.e.Stats().RefusedFor("unknown_route"))
	h.noRun()

	require.NoError(t, h.e.Continue(tok, "OTHER", "v"))
	r := h.next()
	require.Equal(t, "OTHER", r.name, "t_continue runs the route named at resume time")
	require.Equal(t, transaction.ReasonExternal, r.reason)
	require.Equal(t, "v", r.value)
	require.Equal(t, []int{302}, w.Codes())
	require.ErrorIs(t, h.e.Continue(tok, "OTHER", nil), transaction.ErrAlreadyResumed)
}

func TestContinueReplacesASleepContinuation(t *testing.T) {
	h := newHarness(t, opts{})
	h.route("OTHER", replyOK)
	tx, c, _ := h.request("MESSAGE")
	require.NoError(t, async.Sleep(c, time.Second, func(c *routes.Context) error {
		return c.Reply(500, "the continuation must not run")
	}))
	require.NoError(t, h.e.Continue(tx.ParkToken(), "OTHER", nil))
	r := h.next()
	require.Equal(t, "OTHER", r.name)
	require.False(t, r.handler)
	require.Zero(t, h.advance(time.Second), "the sleep's timer is disarmed")
}

func TestResumeNeverWaitsForTheRoute(t *testing.T) {
	h := newHarness(t, opts{moduleWorkers: 1})
	g := siptest.NewGate(t)
	h.route("SLOW", func(c *routes.Context) error { g.Wait(); return c.Reply(200, "OK") })
	_, c, w := h.request("MESSAGE")
	tok, err := async.Suspend(c, "SLOW", nil)
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- h.e.Resume(tok, nil) }()
	select {
	case err := <-done:
		require.NoError(t, err, "queued")
	case <-time.After(siptest.WaitFor):
		t.Fatal("Resume waited for the route to run")
	}
	require.False(t, g.IsOpen(), "it returned while the route is still blocked")
	g.Open()
	require.Equal(t, "SLOW", h.next().name)
	require.Equal(t, []int{200}, w.Codes())
}

func TestResumeWithModuleQueueFullAnswers503(t *testing.T) {
	h := newHarness(t, opts{moduleWorkers: 1})
	h.route("R", replyOK)
	g := siptest.NewGate(t)
	mod := h.group(async.ModuleGroup)
	busy(t, mod, g)
	for mod.Submit(g.Wait) == nil { // fill the queue behind the busy worker
	}
	tx, c, w := h.request("MESSAGE")
	tok, err := async.Suspend(c, "R", nil)
	require.NoError(t, err)

	err = h.e.Resume(tok, nil)
	require.ErrorIs(t, err, async.ErrResumeFailed)
	require.ErrorIs(t, err, async.ErrResumeAnswered, "the caller is told the call was answered")
	require.Equal(t, transaction.Done, tx.State(), "not left parked until its deadline")
	require.Equal(t, []int{503}, w.Codes())
	require.Equal(t, "1", w.Last().GetHeader("Retry-After").Value())
	require.Equal(t, uint64(1), h.e.Stats().ResumeRejected)
	require.ErrorIs(t, h.e.Resume(tok, nil), transaction.ErrAlreadyResumed, "the park was taken")
	g.Open()
}

func TestResumeFromATaskWorker(t *testing.T) {
	h := newHarness(t, opts{groups: []string{"name=abc;workers=1;nonblock=0;usleep=0"}})
	h.route("B", replyOK)
	_, cB, wB := h.request("MESSAGE")
	tokB, err := async.Suspend(cB, "B", nil)
	require.NoError(t, err)
	done := make(chan error, 1)
	h.route("WAKE", func(c *routes.Context) error {
		done <- h.e.Resume(tokB, "woken by a data task")
		return nil
	})
	_, cA, _ := h.request("MESSAGE")
	require.NoError(t, async.TaskGroupData(cA, "WAKE", "abc", nil))
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(siptest.WaitFor):
		t.Fatal("Resume from a task worker never returned")
	}
	for r := h.next(); r.name != "B"; r = h.next() {
	}
	require.Equal(t, []int{200}, wB.Codes())
}

func TestFailureRouteParkHoldsTheResponse(t *testing.T) {
	h := newHarness(t, opts{})
	h.route("NEXT", func(c *routes.Context) error {
		if c.Response() == nil || c.Response().StatusCode != 486 {
			return routes.Error(500, "no held response", nil)
		}
		return c.Relay() // a new branch
	})
	tx, w := h.newTx("INVITE")
	res := sip.NewResponseFromRequest(tx.Request(), 486, "Busy Here", nil)
	c := routes.NewContext(routes.ContextOptions{Ctx: h.ctx, Proxy: h.fe, Kind: routes.KindFailure, Name: "MISSED",
		Tx: tx, Response: res, Logger: discard})
	tok, err := async.Suspend(c, "NEXT", nil)
	require.NoError(t, err)
	require.Empty(t, w.Codes(), "no 100 Trying: the relay already sent it")

	require.NoError(t, h.e.Resume(tok, nil))
	r := h.next()
	require.Equal(t, "NEXT", r.name)
	require.Same(t, res, r.res, "the resumed route sees the held response")
	require.Equal(t, routes.OutcomeRelayed, r.outcome)
	require.Equal(t, int64(1), h.fe.relayed.Load())
}

func TestSleepFromFailureRouteKeepsKindAndResponse(t *testing.T) {
	h := newHarness(t, opts{})
	tx, _ := h.newTx("INVITE")
	res := sip.NewResponseFromRequest(tx.Request(), 408, "Request Timeout", nil)
	c := routes.NewContext(routes.ContextOptions{Ctx: h.ctx, Proxy: h.fe, Kind: routes.KindFailure, Name: "MISSED",
		Tx: tx, Response: res, Logger: discard})
	seen := make(chan *routes.Context, 1)
	require.NoError(t, async.MsSleep(c, 50*time.Millisecond, func(c2 *routes.Context) error {
		seen <- c2
		return c2.Reply(480, "Temporarily Unavailable")
	}))
	require.Equal(t, 1, h.advance(50*time.Millisecond))
	r := h.next()
	require.Equal(t, routes.KindFailure, r.kind)
	require.Equal(t, "MISSED", r.name)
	c2 := <-seen
	require.Equal(t, routes.KindFailure, c2.Kind())
	require.Same(t, res, c2.Response())
}

func TestResumeFromABusSubscriber(t *testing.T) {
	// A bus subscriber (the pattern of a queue consumer: a message names
	// the park to wake) resumes by token; its dispatch goroutine is not
	// held by the route.
	h := newHarness(t, opts{moduleWorkers: 1})
	g := siptest.NewGate(t)
	h.route("R", func(c *routes.Context) error { g.Wait(); return c.Reply(200, "OK") })
	bus := eventbus.New()
	t.Cleanup(func() { _ = bus.Close(context.Background()) })
	wake := eventbus.NewMessageType("wake")
	results := make(chan error, 1)
	_, err := bus.Topic("wake").Subscribe(func(_ *eventbus.Subscription, _ *eventbus.Topic, m *eventbus.Message) {
		results <- h.e.Resume(m.Payload().(transaction.Token), "from the bus")
	}, eventbus.WithTypes(wake))
	require.NoError(t, err)
	_, c, w := h.request("MESSAGE")
	tok, err := async.Suspend(c, "R", nil)
	require.NoError(t, err)
	bus.Topic("wake").Publish(wake, tok)
	select {
	case err := <-results:
		require.NoError(t, err)
	case <-time.After(siptest.WaitFor):
		t.Fatal("Resume from a bus subscriber never returned")
	}
	require.False(t, g.IsOpen(), "the subscriber returned while the route still runs")
	bus.Topic("wake").Publish(wake, tok) // a redelivered message
	require.ErrorIs(t, <-results, transaction.ErrAlreadyResumed)
	g.Open()
	require.Equal(t, "from the bus", h.next().value)
	require.Equal(t, []int{200}, w.Codes())
}
