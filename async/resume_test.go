package async_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sipasync/sipasync/async"
	"github.com/sipasync/sipasync/internal/siptest"
	"github.com/sipasync/sipasync/routes"
	"github.com/sipasync/sipasync/timerwheel"
	"github.com/sipasync/sipasync/transaction"
)

func TestRouteResumesAfterDelay(t *testing.T) {
	for _, tc := range []struct {
		name  string
		msOff bool
		d     time.Duration
	}{
		{"1s", false, time.Second},
		{"3s", false, 3 * time.Second},
		{"100s", false, 100 * time.Second},
		{"3s, ms timer off (100ms ticks)", true, 3 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, opts{msOff: tc.msOff})
			h.route("RESUME", func(c *routes.Context) error { return c.Reply(404, "Not Found") })
			tx, c, w := h.request("INVITE")
			require.NoError(t, async.RouteValue(c, "RESUME", tc.d, "carried"))
			requireParked(t, tx, c, "RouteValue")
			require.Equal(t, []int{100}, w.Codes(), "a parked INVITE gets 100 Trying")

			require.Zero(t, h.advance(tc.d-time.Millisecond), "nothing is due before the delay")
			h.noRun()
			require.Equal(t, transaction.Suspended, tx.State())

			require.Equal(t, 1, h.advance(time.Millisecond), "due exactly at the delay")
			r := h.next()
			require.Equal(t, routes.KindNamed, r.kind)
			require.Equal(t, "RESUME", r.name)
			require.Same(t, tx, r.tx, "the same transaction resumes")
			require.Equal(t, transaction.ReasonTimer, r.reason)
			require.Equal(t, "carried", r.value, "RouteValue's value is the ResumeValue")
			require.False(t, r.handler)

			require.Zero(t, h.advance(200*time.Second), "the timer fired once")
			h.noRun()
			require.Equal(t, []int{100, 404}, w.Codes())
			require.Equal(t, transaction.Done, tx.State())
			st := h.tbl.Stats()
			require.Zero(t, st.Parked)
			require.Zero(t, st.Live)
			es := h.e.Stats()
			require.Equal(t, uint64(1), es.Parks)
			require.Equal(t, uint64(1), es.Resumes)
			require.Zero(t, es.WheelPending)
		})
	}
}

func TestRouteWithoutValue(t *testing.T) {
	h := newHarness(t, opts{})
	h.route("R", replyOK)
	_, c, _ := h.request("MESSAGE")
	require.NoError(t, async.Route(c, "R", time.Second))
	require.Equal(t, 1, h.advance(time.Second))
	r := h.next()
	require.Equal(t, transaction.ReasonTimer, r.reason)
	require.Nil(t, r.value)
}

func TestMsRouteResumesWithinOneTick(t *testing.T) {
	for _, d := range []time.Duration{time.Millisecond, 250 * time.Millisecond, 255 * time.Millisecond, 30 * time.Second} {
		t.Run(d.String(), func(t *testing.T) {
			const tick = 10 * time.Millisecond
			h := newHarness(t, opts{msTimer: tick})
			h.route("R", replyOK)
			// The park happens on a tick boundary, as under the wheel's Run.
			tx, c, w := h.request("MESSAGE")
			require.NoError(t, async.MsRouteValue(c, "R", d, 42))
			requireParked(t, tx, c, "MsRouteValue")
			require.Empty(t, w.Codes(), "no 100 for a non-INVITE")

			if d > time.Millisecond {
				require.Zero(t, h.advance(d-time.Millisecond), "nothing is due before the delay")
				h.noRun()
			}
			// Due on the first tick at or after the deadline.
			due := (d + tick - 1) / tick * tick
			if rest := due - h.mock.Since(time.Unix(0, 0)); rest > 0 {
				h.mock.Add(rest)
			}
			require.Equal(t, 1, h.e.Wheel().Advance(h.mock.Now()), "due within one tick of the delay")
			require.Less(t, h.mock.Since(time.Unix(0, 0))-d, tick)
			r := h.next()
			require.Equal(t, "R", r.name)
			require.Equal(t, transaction.ReasonTimer, r.reason)
			require.Equal(t, 42, r.value)
			require.Zero(t, h.advance(time.Minute))
			h.noRun()
			require.Equal(t, []int{200}, w.Codes())
		})
	}
}

func TestSleepContinuesOnSameTransaction(t *testing.T) {
	for _, tc := range []struct {
		name string
		d    time.Duration
		park func(c *routes.Context, d time.Duration, next routes.HandlerFunc) error
	}{
		{"Sleep", 2 * time.Second, async.Sleep},
		{"MsSleep", 250 * time.Millisecond, async.MsSleep},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, opts{})
			tx, c, w := h.request("INVITE")
			type seen struct {
				tx     *transaction.Tx
				attr   any
				local  string
				reason transaction.Reason
			}
			got := make(chan seen, 1)
			c.SetAttr("avp", "set before the park")
			local := "a closure variable"
			require.NoError(t, tc.park(c, tc.d, func(c2 *routes.Context) error {
				v, _ := c2.Attr("avp")
				got <- seen{c2.Tx(), v, local, c2.ResumeReason()}
				return c2.Reply(486, "Busy Here")
			}))
			requireParked(t, tx, c, tc.name)

			require.Zero(t, h.advance(tc.d-time.Millisecond))
			h.noRun()
			require.Equal(t, 1, h.advance(time.Millisecond))
			r := h.next()
			require.True(t, r.handler, "the continuation runs, not a route by name")
			require.Same(t, tx, r.tx)
			s := <-got
			require.Same(t, tx, s.tx, "the continuation runs on the same transaction")
			require.Equal(t, "set before the park", s.attr, "attributes survive the park")
			require.Equal(t, "a closure variable", s.local)
			require.Equal(t, transaction.ReasonTimer, s.reason)
			require.Equal(t, []int{100, 486}, w.Codes())
			require.Equal(t, transaction.Done, tx.State(), "processing ends after the continuation")
			require.Zero(t, h.advance(time.Minute))
			h.noRun()
		})
	}
}

func TestSuspendAndExternalResume(t *testing.T) {
	h := newHarness(t, opts{})
	h.route("R", replyOK)
	tx, c, w := h.request("MESSAGE")
	c.SetAttr("k", "v")
	tok, err := async.Suspend(c, "R", "from suspend")
	require.NoError(t, err)
	require.Equal(t, tx.Token(), tok.Tx(), "the token names the transaction")
	require.Equal(t, uint32(1), tok.Park, "and its first park")
	requireParked(t, tx, c, "Suspend")
	require.Equal(t, 1, h.e.Stats().WheelPending, "a deadline is armed")

	require.Zero(t, h.advance(time.Minute), "no timer but the deadline")
	h.noRun()

	require.NoError(t, h.e.Resume(tok, "from outside"))
	r := h.next()
	require.Equal(t, "R", r.name)
	require.Equal(t, routes.KindNamed, r.kind)
	require.Same(t, tx, r.tx)
	require.Equal(t, transaction.ReasonExternal, r.reason)
	require.Equal(t, "from outside", r.value)
	v, _ := r.tx.Attr("k")
	require.Equal(t, "v", v)
	require.Equal(t, []int{200}, w.Codes())
	require.Zero(t, h.e.Stats().WheelPending, "the deadline is cancelled by the resume")
	require.Zero(t, h.advance(200*time.Second))
	require.Zero(t, h.tbl.Stats().Expired)
}

func TestExternalResumeWithoutValueKeepsSuspendValue(t *testing.T) {
	h := newHarness(t, opts{})
	h.route("R", replyOK)
	_, c, _ := h.request("MESSAGE")
	tok, err := async.Suspend(c, "R", "from suspend")
	require.NoError(t, err)
	require.NoError(t, h.e.Resume(tok, nil))
	require.Equal(t, "from suspend", h.next().value)
}

func TestExternalResumeOfTimedPark(t *testing.T) {
	// Resume works on a timed park too: it runs early, and its timer is
	// disarmed.
	h := newHarness(t, opts{})
	h.route("R", replyOK)
	tx, c, _ := h.request("MESSAGE")
	require.NoError(t, async.MsRoute(c, "R", time.Second))
	require.NoError(t, h.e.Resume(tx.ParkToken(), 1))
	r := h.next()
	require.Equal(t, transaction.ReasonExternal, r.reason)
	require.Zero(t, h.e.Stats().WheelPending)
	require.Zero(t, h.advance(2*time.Second))
	h.noRun()
}

func TestResumeRefusals(t *testing.T) {
	h := newHarness(t, opts{})
	h.route("R", replyOK)

	t.Run("stale token", func(t *testing.T) {
		tx1, c1, _ := h.request("MESSAGE")
		tok1, err := async.Suspend(c1, "R", nil)
		require.NoError(t, err)
		require.NoError(t, h.e.Resume(tok1, nil))
		h.next()
		require.Equal(t, transaction.Done, tx1.State())
		// The slot of a parked transaction is remembered for the suspend
		// timeout before it is reused.
		h.mock.Add(120 * time.Second)

		tx2, c2, w2 := h.request("MESSAGE")
		require.Equal(t, tok1.Index, tx2.Token().Index, "the slot is reused")
		require.Greater(t, tx2.Token().Label, tok1.Label)
		tok2, err := async.Suspend(c2, "R", nil)
		require.NoError(t, err)

		err = h.e.Resume(tok1, "late")
		require.ErrorIs(t, err, transaction.ErrStale)
		require.ErrorIs(t, err, transaction.ErrEnded)
		h.noRun()
		require.Equal(t, transaction.Suspended, tx2.State(), "the slot's new transaction is untouched")
		require.Empty(t, w2.Codes())
		require.NoError(t, h.e.Resume(tok2, nil))
		require.Equal(t, transaction.ReasonExternal, h.next().reason)
	})

	t.Run("after the end, twice", func(t *testing.T) {
		_, c, w := h.request("MESSAGE")
		tok, err := async.Suspend(c, "R", nil)
		require.NoError(t, err)
		require.NoError(t, h.e.Resume(tok, nil))
		h.next()
		require.NotPanics(t, func() {
			err = h.e.Resume(tok, nil)
		})
		require.ErrorIs(t, err, transaction.ErrAlreadyResumed, "the second resume is refused")
		require.ErrorIs(t, h.e.Resume(tok, nil), transaction.ErrAlreadyResumed)
		h.noRun()
		require.Equal(t, []int{200}, w.Codes())
	})

	t.Run("never existed", func(t *testing.T) {
		require.ErrorIs(t, h.e.Resume(transaction.Token{Index: 1 << 20, Label: 1, Park: 1}, nil), transaction.ErrUnknownToken)
		require.ErrorIs(t, h.e.Resume(transaction.Token{Index: 0, Label: 1 << 30, Park: 1}, nil), transaction.ErrUnknownToken)
	})

	t.Run("not suspended", func(t *testing.T) {
		tx, c, _ := h.request("MESSAGE")
		require.ErrorIs(t, h.e.Resume(tx.Token(), nil), transaction.ErrUnknownToken, "a transaction's own token names no park")
		h.noRun()
		require.Equal(t, transaction.Live, tx.State())
		require.NotEqual(t, routes.OutcomeParked, c.Outcome())
		h.tbl.Finish(tx)
	})

	t.Run("concurrent, exactly one wins", func(t *testing.T) {
		for range 50 {
			_, c, w := h.request("MESSAGE")
			tok, err := async.Suspend(c, "R", nil)
			require.NoError(t, err)
			errs := make(chan error, 4)
			for range 4 {
				go func() { errs <- h.e.Resume(tok, nil) }()
			}
			ok := 0
			for range 4 {
				if err := <-errs; err == nil {
					ok++
				}
			}
			require.Equal(t, 1, ok, "one resume wins, the others are refused")
			h.next()
			h.noRun()
			require.Equal(t, []int{200}, w.Codes())
		}
	})
	require.Zero(t, h.tbl.Stats().Live)
}

func TestUnresumedSuspendExpires(t *testing.T) {
	for method, want := range map[string][]int{"INVITE": {100, 408}, "MESSAGE": {500}, "OPTIONS": {500}} {
		t.Run(method, func(t *testing.T) {
			h := newHarness(t, opts{suspendTimeout: 5 * time.Second})
			h.route("R", replyOK)
			tx, c, w := h.request(method)
			tok, err := async.Suspend(c, "R", nil)
			require.NoError(t, err)

			require.Zero(t, h.advance(5*time.Second-time.Millisecond))
			require.Equal(t, transaction.Suspended, tx.State())
			require.Equal(t, 1, h.advance(time.Millisecond), "the deadline is due at the suspend timeout")
			// The table marks the park over, then answers it: wait for the answer.
			siptest.Eventually(t, "the transaction expires", func() bool { return len(w.Codes()) == len(want) })
			require.Equal(t, transaction.Done, tx.State())
			require.Equal(t, want, w.Codes())
			require.Equal(t, uint64(1), h.tbl.Stats().Expired)
			siptest.Eventually(t, "the engine counts the expiry", func() bool { return h.e.Stats().Expired == 1 })
			require.Zero(t, h.tbl.Stats().Live)
			h.noRun()
			require.Error(t, h.e.Resume(tok, nil), "resume after expiry")
			h.noRun()
			require.Equal(t, want, w.Codes())
		})
	}
}

func TestEarlierTimerDoesNotResumeLaterPark(t *testing.T) {
	// park 1 (timer at 100ms) → external resume → park 2 (timer at +500ms):
	// at 100ms nothing runs; park 2 resumes on its own time.
	h := newHarness(t, opts{})
	tx, c, w := h.request("MESSAGE")
	h.route("A", func(c *routes.Context) error { return async.MsRoute(c, "B", 500*time.Millisecond) })
	h.route("B", replyOK)
	require.NoError(t, async.MsRoute(c, "A", 100*time.Millisecond))
	h.mock.Add(50 * time.Millisecond)
	require.NoError(t, h.e.Resume(tx.ParkToken(), nil))
	r := h.next()
	require.Equal(t, "A", r.name)
	require.Equal(t, routes.OutcomeParked, r.outcome)
	require.Equal(t, 2, tx.Parks())

	require.Zero(t, h.advance(60*time.Millisecond), "park 1's timer does not fire for park 2")
	h.noRun()
	require.Equal(t, transaction.Suspended, tx.State())
	require.Zero(t, h.advance(500*time.Millisecond-60*time.Millisecond-time.Millisecond))
	h.noRun()
	require.Equal(t, 1, h.advance(time.Millisecond))
	r = h.next()
	require.Equal(t, "B", r.name)
	require.Equal(t, transaction.ReasonTimer, r.reason)
	require.Equal(t, []int{200}, w.Codes())
}

func TestStaleTimerInFlightIsRefused(t *testing.T) {
	// The timer of park 1 has left the wheel (it sits in the module queue
	// behind a busy worker) when the transaction is resumed by another path
	// and parked again. When it runs it must be refused by its park number.
	h := newHarness(t, opts{moduleWorkers: 1})
	g := siptest.NewGate(t)
	h.route("BLOCK", func(c *routes.Context) error { g.Wait(); return c.Reply(200, "OK") })
	h.route("A", replyOK)
	h.route("B", replyOK)

	_, cx, _ := h.request("MESSAGE")
	require.NoError(t, async.MsRoute(cx, "BLOCK", 10*time.Millisecond))
	txA, cA, wA := h.request("MESSAGE")
	require.NoError(t, async.MsRoute(cA, "A", 20*time.Millisecond))
	require.Equal(t, 1, h.advanceGuarded(10*time.Millisecond))
	siptest.Eventually(t, "the module worker runs BLOCK", func() bool {
		return h.group(async.ModuleGroup).Stats().Busy == 1
	})
	require.Equal(t, 1, h.advanceGuarded(10*time.Millisecond), "park 1's timer leaves the wheel")
	require.False(t, g.IsOpen())

	// Another path takes A back and the route parks it again.
	_, err := h.tbl.Continue(txA.ParkToken(), transaction.ReasonExternal, nil)
	require.NoError(t, err)
	cA2 := h.ctxOf(txA, routes.KindNamed, "A")
	require.NoError(t, async.MsRoute(cA2, "B", time.Second))
	require.Equal(t, 2, txA.Parks())

	g.Open()
	require.Equal(t, "BLOCK", h.next().name)
	siptest.Eventually(t, "the stale timer is refused", func() bool { return h.e.Stats().ResumeRefused == 1 })
	h.noRun()
	require.Equal(t, transaction.Suspended, txA.State(), "park 2 is still parked")
	require.Empty(t, wA.Codes())

	require.Zero(t, h.advance(time.Second-time.Millisecond), "park 2 is due 1s after it began")
	require.Equal(t, 1, h.advance(time.Millisecond))
	r := h.next()
	require.Equal(t, "B", r.name)
	require.Equal(t, transaction.ReasonTimer, r.reason)
}

func TestChainedParks(t *testing.T) {
	t.Run("suspend, resume, suspend, resume", func(t *testing.T) {
		h := newHarness(t, opts{})
		toks := make(chan transaction.Token, 1)
		h.route("R1", func(c *routes.Context) error {
			c.SetAttr("r1", true)
			tok, err := async.Suspend(c, "R2", "second")
			toks <- tok
			return err
		})
		h.route("R2", func(c *routes.Context) error { return c.Reply(200, "OK") })
		tx, c, w := h.request("INVITE")
		c.SetAttr("req", true)
		tok, err := async.Suspend(c, "R1", "first")
		require.NoError(t, err)

		require.NoError(t, h.e.Resume(tok, nil))
		r := h.next()
		require.Equal(t, "R1", r.name)
		require.Equal(t, "first", r.value)
		require.Equal(t, routes.OutcomeParked, r.outcome)
		tok2 := <-toks
		require.Equal(t, tok.Tx(), tok2.Tx(), "the same transaction parks again")
		require.Equal(t, tok.Park+1, tok2.Park, "with a token of its own")
		require.Equal(t, transaction.Suspended, tx.State())

		require.NoError(t, h.e.Resume(tok2, nil))
		r = h.next()
		require.Equal(t, "R2", r.name)
		require.Equal(t, transaction.ReasonExternal, r.reason)
		require.Equal(t, "second", r.value)
		require.Equal(t, map[string]any{"req": true, "r1": true}, tx.Attrs())
		require.Equal(t, 2, tx.Parks())
		require.Equal(t, []int{100, 200}, w.Codes(), "one 100 Trying for all parks, one final")
		require.Zero(t, h.tbl.Stats().Live)
		require.Zero(t, h.e.Stats().WheelPending)
		require.Equal(t, uint64(2), h.e.Stats().Resumes)
	})

	t.Run("timer parks", func(t *testing.T) {
		h := newHarness(t, opts{})
		h.route("R1", func(c *routes.Context) error { return async.MsRouteValue(c, "R2", 20*time.Millisecond, 2) })
		h.route("R2", func(c *routes.Context) error { return async.Route(c, "R3", time.Second) })
		h.route("R3", func(c *routes.Context) error { return async.Sleep(c, time.Second, replyOK) })
		tx, c, w := h.request("MESSAGE")
		require.NoError(t, async.MsRouteValue(c, "R1", 10*time.Millisecond, 1))
		require.Equal(t, 1, h.advance(10*time.Millisecond))
		r := h.next()
		require.Equal(t, "R1", r.name)
		require.Equal(t, 1, r.value)
		require.Equal(t, 1, h.advance(20*time.Millisecond))
		r = h.next()
		require.Equal(t, "R2", r.name)
		require.Equal(t, 2, r.value)
		require.Equal(t, 1, h.advance(time.Second))
		r = h.next()
		require.Equal(t, "R3", r.name)
		require.Nil(t, r.value, "a park without value carries none")
		require.Equal(t, 1, h.advance(time.Second))
		r = h.next()
		require.True(t, r.handler)
		require.Equal(t, transaction.ReasonTimer, r.reason)
		require.Equal(t, []int{200}, w.Codes())
		require.Equal(t, 4, tx.Parks())
		require.Zero(t, h.tbl.Stats().Live)
	})
}

func TestStopAnswersPendingParks(t *testing.T) {
	h := newHarness(t, opts{})
	h.route("R", replyOK)
	var wires []*siptest.Wire
	var txs []*transaction.Tx
	for _, park := range []func(c *routes.Context) error{
		func(c *routes.Context) error { return async.Route(c, "R", 10*time.Second) },
		func(c *routes.Context) error { return async.MsRoute(c, "R", 500*time.Millisecond) },
		func(c *routes.Context) error { return async.MsSleep(c, 500*time.Millisecond, replyOK) },
		func(c *routes.Context) error { _, err := async.Suspend(c, "R", nil); return err },
	} {
		tx, c, w := h.request("MESSAGE")
		require.NoError(t, park(c))
		wires, txs = append(wires, w), append(txs, tx)
	}
	// One that already resumed and ended, one resumed by hand: not pending.
	_, c, wDone := h.request("MESSAGE")
	require.NoError(t, async.MsRoute(c, "R", 10*time.Millisecond))
	require.Equal(t, 1, h.advance(10*time.Millisecond))
	h.next()
	_, c, wExt := h.request("MESSAGE")
	tok, err := async.Suspend(c, "R", nil)
	require.NoError(t, err)
	require.NoError(t, h.e.Resume(tok, nil))
	h.next()

	require.Equal(t, 4, h.e.Stop(), "every pending park is answered and counted")
	for i, w := range wires {
		require.Equal(t, []int{503}, w.Codes(), "park %d", i)
		ra := w.Last().GetHeader("Retry-After")
		require.NotNil(t, ra, "503 carries Retry-After")
		require.Equal(t, transaction.Done, txs[i].State())
	}
	require.Equal(t, []int{200}, wDone.Codes())
	require.Equal(t, []int{200}, wExt.Codes())
	require.Zero(t, h.tbl.Stats().Parked)
	require.Zero(t, h.tbl.Stats().Live)
	require.Zero(t, h.e.Stats().WheelPending)
	require.Zero(t, h.e.Stop(), "a second Stop answers nothing")

	// After Stop nothing more parks: the caller keeps the transaction.
	tx, c, w := h.request("MESSAGE")
	err = async.MsRoute(c, "R", 10*time.Millisecond)
	require.ErrorIs(t, err, async.ErrResumeFailed)
	require.ErrorIs(t, err, timerwheel.ErrStopped)
	h.requireNotParked(tx, c, "MsRoute after Stop")
	require.Empty(t, w.Codes())
	require.Zero(t, h.advance(time.Minute))
	h.noRun()
}

func TestCancelWhileParkedMakesResumeANoOp(t *testing.T) {
	h := newHarness(t, opts{})
	h.route("R", replyOK)
	tx, c, w := h.request("INVITE")
	require.NoError(t, async.MsRoute(c, "R", 100*time.Millisecond))
	require.NoError(t, tx.ServerTx().Receive(siptest.CancelOf(t, tx.Request())))
	siptest.Eventually(t, "the CANCEL ends the parked transaction", func() bool { return tx.State() == transaction.Done })

	require.Equal(t, 1, h.advance(100*time.Millisecond))
	siptest.Eventually(t, "the pending resume is refused", func() bool { return h.e.Stats().ResumeRefused == 1 })
	h.noRun()
	require.Equal(t, []int{100, 487}, w.Codes(), "nothing but the 487 goes out")
	require.Zero(t, h.tbl.Stats().Live)
	require.ErrorIs(t, h.e.Resume(tx.ParkToken(), nil), transaction.ErrCanceled, "a resume after the CANCEL says so")
	require.Equal(t, uint64(2), h.e.Stats().RefusedFor("canceled"), "the timer and the resume, both counted as canceled")
}

func TestStartDrivesTheWheel(t *testing.T) {
	h := newHarness(t, opts{})
	h.route("R", replyOK)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	h.e.Start(ctx)
	tx, c, w := h.request("MESSAGE")
	require.NoError(t, async.Route(c, "R", time.Second))

	// Before the delay nothing can run, however the ticks fall.
	for range 9 {
		h.mock.Add(100 * time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond)
	h.noRun()
	require.Equal(t, transaction.Suspended, tx.State())

	// Past it the wheel's own ticks resume the transaction.
	deadline := time.Now().Add(siptest.WaitFor)
	for h.r.count("R") == 0 && time.Now().Before(deadline) {
		h.mock.Add(10 * time.Millisecond)
	}
	r := h.next()
	require.Equal(t, transaction.ReasonTimer, r.reason)
	require.Equal(t, []int{200}, w.Codes())
	require.GreaterOrEqual(t, h.mock.Since(time.Unix(0, 0)), time.Second, "never early")
}

func TestWheelNeverRunsRoutes(t *testing.T) {
	// Due items go to the module workers: a route that blocks does not
	// hold up the wheel, and other due parks still resume.
	h := newHarness(t, opts{moduleWorkers: 2})
	g := siptest.NewGate(t)
	entered := make(chan struct{}, 1)
	h.route("SLOW", func(c *routes.Context) error {
		entered <- struct{}{}
		g.Wait()
		return c.Reply(200, "OK")
	})
	h.route("R", replyOK)
	_, c1, _ := h.request("MESSAGE")
	require.NoError(t, async.MsRoute(c1, "SLOW", 10*time.Millisecond))
	_, c2, _ := h.request("MESSAGE")
	require.NoError(t, async.MsRoute(c2, "R", 20*time.Millisecond))

	require.Equal(t, 1, h.advanceGuarded(10*time.Millisecond))
	<-entered
	require.Equal(t, 1, h.advance(10*time.Millisecond))
	require.Equal(t, "R", h.next().name, "another park resumes while SLOW holds a worker")
	g.Open()
	require.Equal(t, "SLOW", h.next().name)
}
