package async_test

// Tests of defects found in the engine, kept under their names so that
// they stay fixed.

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sipasync/sipasync/async"
	"github.com/sipasync/sipasync/internal/siptest"
	"github.com/sipasync/sipasync/routes"
	"github.com/sipasync/sipasync/transaction"
)

// The wheel item once kept the park number in a uint16: park 65,537 of a
// transaction was armed as park 1 and refused, so it stayed parked forever.
// A park token now carries a uint32 park number, and Suspend refuses a
// park past it rather than wrap.
func TestParkNumberBeyondUint16(t *testing.T) {
	h := newHarness(t, opts{})
	h.route("AGAIN", func(c *routes.Context) error { return async.MsRoute(c, "LAST", 10*time.Millisecond) })
	h.route("LAST", replyOK)
	tx, c, w := h.request("MESSAGE")
	// A route that re-parks in a loop (a 1 ms polling MsSleep, say) gets
	// there in about 65 s; the table gets there faster.
	for range 65535 {
		tok, err := h.tbl.Suspend(tx, transaction.Suspension{})
		require.NoError(t, err)
		_, err = h.tbl.Continue(tok, transaction.ReasonExternal, nil)
		require.NoError(t, err)
	}
	require.NoError(t, async.MsRoute(c, "AGAIN", 10*time.Millisecond)) // park 65,536
	require.Equal(t, 1, h.advance(10*time.Millisecond))
	require.Equal(t, "AGAIN", h.next().name)
	require.Equal(t, 65537, tx.Parks())
	require.Equal(t, 1, h.advance(10*time.Millisecond))
	siptest.Eventually(t, "the timer of park 65,537 is handled", func() bool {
		return h.r.count("LAST") == 1 || h.e.Stats().ResumeRefused > 0
	})
	require.Zero(t, h.e.Stats().ResumeRefused, "the due timer of the current park is refused")
	require.Equal(t, "LAST", h.next().name)
	require.Equal(t, []int{200}, w.Codes())
}

// Engine.Resume once waited for the resumed route to run on the module
// group: from a route on the last free module worker it waited for a task
// that could never start. Resume now queues and returns.
func TestResumeFromModuleWorker(t *testing.T) {
	h := newHarness(t, opts{moduleWorkers: 1})
	h.route("B", replyOK)
	done := make(chan error, 1)
	_, cB, wB := h.request("MESSAGE")
	tokB, err := async.Suspend(cB, "B", nil)
	require.NoError(t, err)
	h.route("A", func(c *routes.Context) error {
		done <- h.e.Resume(tokB, "woken by A")
		return c.Reply(200, "OK")
	})
	_, cA, _ := h.request("MESSAGE")
	require.NoError(t, async.MsRoute(cA, "A", 10*time.Millisecond))
	require.Equal(t, 1, h.advance(10*time.Millisecond))
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(siptest.WaitFor):
		t.Fatal("Engine.Resume called from route[A] on the module worker never returned")
	}
	siptest.Eventually(t, "B answered", func() bool { return len(wB.Codes()) == 1 })
}

// A token names one park: a duplicate delivery of an external callback
// (an HTTP retry, a redelivered queue message) must not resume the next
// park of the same transaction. DESIGN.md: "A resume token is single-use,
// carries a generation (label)".
func TestResumeTokenIsSingleUse(t *testing.T) {
	h := newHarness(t, opts{})
	toks := make(chan transaction.Token, 1)
	h.route("R1", func(c *routes.Context) error {
		tok, err := async.Suspend(c, "R2", nil)
		toks <- tok
		return err
	})
	h.route("R2", replyOK)
	tx, c, _ := h.request("MESSAGE")
	tok1, err := async.Suspend(c, "R1", nil)
	require.NoError(t, err)
	require.NoError(t, h.e.Resume(tok1, "callback"))
	require.Equal(t, "R1", h.next().name)
	tok2 := <-toks
	require.Equal(t, transaction.Suspended, tx.State())

	require.ErrorIs(t, h.e.Resume(tok1, "callback, delivered twice"), transaction.ErrAlreadyResumed, "the first park's token is used up")
	require.Equal(t, uint64(1), h.e.Stats().RefusedFor("already_resumed"), "counted as already_resumed")
	h.noRun()
	require.Equal(t, transaction.Suspended, tx.State(), "the second park waits for its own token")
	require.NoError(t, h.e.Resume(tok2, nil))
	require.Equal(t, "R2", h.next().name)
}

// Sleep from route[X] continues "with the next action" of route[X]: the
// continuation runs as route[X], not as request_route.
func TestSleepContinuationKeepsRouteKind(t *testing.T) {
	h := newHarness(t, opts{})
	kinds := make(chan routes.Kind, 1)
	tx, _ := h.newTx("MESSAGE")
	c := h.ctxOf(tx, routes.KindNamed, "X")
	require.NoError(t, async.Sleep(c, time.Second, func(c2 *routes.Context) error {
		kinds <- c2.Kind()
		return c2.Reply(200, "OK")
	}))
	require.Equal(t, 1, h.advance(time.Second))
	r := h.next()
	require.Equal(t, "X", r.name)
	require.Equal(t, routes.KindNamed, <-kinds, "the continuation of route[X] runs as route[X]")
}
