package transaction

import (
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sipasync/sipasync/internal/siptest"
)

// These tests run the table over real sipgo server transactions whose
// connection records what goes on the wire.

func TestSuspendInviteSendsTryingOnce(t *testing.T) {
	w := &siptest.Wire{}
	req := siptest.Request(t, "INVITE")
	tt := New(Options{})
	tx, err := tt.Add(req, siptest.ServerTx(t, req, w))
	require.NoError(t, err)

	tok, err := tt.Suspend(tx, Suspension{})
	require.NoError(t, err)
	assert.Equal(t, []int{100}, w.Codes(), "a parked INVITE gets 100 Trying at once")
	_, err = tt.Continue(tok, ReasonTimer, nil)
	require.NoError(t, err)
	tok, err = tt.Suspend(tx, Suspension{})
	require.NoError(t, err)
	_, err = tt.Continue(tok, ReasonTimer, nil)
	require.NoError(t, err)
	assert.Equal(t, []int{100}, w.Codes(), "a second park sends no second 100")

	require.NoError(t, tx.Reply(486, "Busy Here", nil))
	assert.True(t, tx.FinalSent())
	assert.ErrorIs(t, tx.Reply(200, "OK", nil), ErrFinal, "one final response only")
	assert.Equal(t, []int{100, 486}, w.Codes())
	_, err = tt.Suspend(tx, Suspension{})
	assert.ErrorIs(t, err, ErrFinal, "an answered transaction cannot park")
	tt.Finish(tx)
}

func TestSuspendNonInviteSendsNothing(t *testing.T) {
	w := &siptest.Wire{}
	req := siptest.Request(t, "MESSAGE")
	tt := New(Options{})
	tx, err := tt.Add(req, siptest.ServerTx(t, req, w))
	require.NoError(t, err)
	_, err = tt.Suspend(tx, Suspension{})
	require.NoError(t, err)
	assert.Equal(t, []int{}, w.Codes(), "no 100 for a non-INVITE")
}

func TestExpireAnswers(t *testing.T) {
	for method, want := range map[string]int{"INVITE": 408, "MESSAGE": 500, "OPTIONS": 500} {
		t.Run(method, func(t *testing.T) {
			w := &siptest.Wire{}
			req := siptest.Request(t, method)
			tt := New(Options{})
			tx, err := tt.Add(req, siptest.ServerTx(t, req, w))
			require.NoError(t, err)
			tok, err := tt.Suspend(tx, Suspension{})
			require.NoError(t, err)
			assert.True(t, tt.Expire(tok))
			codes := w.Codes()
			require.Equal(t, want, codes[len(codes)-1], "the suspended-timeout reply")
			assert.True(t, tx.FinalSent())
			assert.True(t, !tt.Expire(tok))
			assert.Equal(t, codes, w.Codes(), "a second expiry sends nothing")
		})
	}
}

func TestAbortAnswers(t *testing.T) {
	w := &siptest.Wire{}
	req := siptest.Request(t, "MESSAGE")
	tt := New(Options{})
	tx, err := tt.Add(req, siptest.ServerTx(t, req, w))
	require.NoError(t, err)
	tok, err := tt.Suspend(tx, Suspension{})
	require.NoError(t, err)
	assert.True(t, tt.Abort(tok, 503, "Service Unavailable", sip.NewHeader("Retry-After", "5")))
	require.Equal(t, []int{503}, w.Codes())
	res := w.Last()
	assert.Equal(t, "Service Unavailable", res.Reason)
	h := res.GetHeader("Retry-After")
	assert.True(t, h != nil && h.Value() == "5", "the extra header goes out")
}

func TestCancelParkedInvite(t *testing.T) {
	w := &siptest.Wire{}
	req := siptest.Request(t, "INVITE")
	ev := &events{ch: make(chan event, 8)}
	tt := New(Options{OnChange: ev.on})
	stx := siptest.ServerTx(t, req, w)
	tx, err := tt.Add(req, stx)
	require.NoError(t, err)
	notify := tx.CancelNotify()
	tok, err := tt.Suspend(tx, Suspension{Route: "RESUME"})
	require.NoError(t, err)
	assert.Equal(t, EvSuspended, waitEvent(t, ev.ch).ev)

	require.NoError(t, stx.Receive(siptest.CancelOf(t, req)))
	assert.Equal(t, event{tok.Tx(), EvCanceled}, waitEvent(t, ev.ch))

	assert.True(t, tx.Canceled())
	assert.Equal(t, Done, tx.State())
	select {
	case <-notify:
	default:
		t.Error("CancelNotify is not closed after a CANCEL")
	}
	select {
	case <-tx.CancelNotify():
	default:
		t.Error("CancelNotify taken after the CANCEL is not closed")
	}
	assert.Equal(t, []int{100, 487}, w.Codes())

	_, err = tt.Continue(tok, ReasonTimer, nil)
	assert.True(t, err != nil, "the pending resume after a CANCEL does nothing")
	assert.ErrorIs(t, tx.Reply(200, "OK", nil), ErrCanceled, "never respond after a cancel")
	assert.True(t, !tt.Expire(tok), "no expiry after a CANCEL")
	assert.Equal(t, []int{100, 487}, w.Codes(), "nothing but the 487 goes out")
	st := tt.Stats()
	assert.Equal(t, uint64(1), st.Canceled)
	assert.Equal(t, uint64(0), st.LateCancels, "the reply was refused before reaching sipgo")
	assert.Equal(t, 0, st.Live)
	assert.Equal(t, 0, st.Parked)
	assert.Equal(t, []Event{EvSuspended, EvCanceled}, ev.of(tok))
}

func TestCancelLiveInvite(t *testing.T) {
	w := &siptest.Wire{}
	req := siptest.Request(t, "INVITE")
	ev := &events{ch: make(chan event, 8)}
	tt := New(Options{OnChange: ev.on})
	stx := siptest.ServerTx(t, req, w)
	tx, err := tt.Add(req, stx)
	require.NoError(t, err)
	notify := tx.CancelNotify()

	require.NoError(t, stx.Receive(siptest.CancelOf(t, req)))
	assert.Equal(t, event{tx.Token(), EvCanceled}, waitEvent(t, ev.ch))
	<-notify
	assert.True(t, tx.Canceled())
	assert.Equal(t, Live, tx.State(), "a live transaction stays with its route")
	assert.Equal(t, 1, tt.Stats().Live)

	assert.ErrorIs(t, tx.Reply(200, "OK", nil), ErrCanceled)
	assert.Equal(t, uint64(0), tt.Stats().LateCancels, "refused before reaching sipgo")
	_, err = tt.Suspend(tx, Suspension{})
	assert.ErrorIs(t, err, ErrCanceled, "a canceled transaction cannot park")
	assert.Equal(t, []int{487}, w.Codes())
	tt.Finish(tx)
	assert.Equal(t, 0, tt.Stats().Live)
	assert.Equal(t, []Event{EvCanceled, EvEnded}, ev.of(tx.Token()))
}

func TestContinueRefusedWhileCancelPending(t *testing.T) {
	// sipgo's OnCancel sets the flag at once and hands the end to another
	// goroutine; a resume in between must not run the route.
	tt := New(Options{})
	tx, err := tt.Add(newReq(sip.INVITE), nil)
	require.NoError(t, err)
	tok, err := tt.Suspend(tx, Suspension{})
	require.NoError(t, err)
	tx.canceled.Store(true)
	_, err = tt.Continue(tok, ReasonTimer, nil)
	assert.ErrorIs(t, err, ErrCanceled)
	assert.Equal(t, Suspended, tx.State(), "the cancel path ends it")
	tt.cancel(tx)
	assert.Equal(t, Done, tx.State())
	assert.Equal(t, 0, tt.Stats().Live)
}

func TestLateCancelDetectedOnRespond(t *testing.T) {
	// The CANCEL was handled by sipgo (487 sent) while our flag was not set.
	// Our final response must not replace the 487 that retransmissions carry.
	w := &siptest.Wire{}
	req := siptest.Request(t, "INVITE")
	stx := siptest.ServerTx(t, req, w)
	require.NoError(t, stx.Receive(siptest.CancelOf(t, req)))
	assert.Equal(t, []int{487}, w.Codes())

	tt := New(Options{})
	tx, err := tt.Add(req, stx)
	require.NoError(t, err)
	tx.canceled.Store(false) // as if the CANCEL slipped in after the flag check
	assert.ErrorIs(t, tx.Reply(200, "OK", nil), ErrCanceled)
	assert.True(t, tx.Canceled(), "the late cancel is remembered")
	assert.Equal(t, uint64(1), tt.Stats().LateCancels)
	assert.Equal(t, []int{487}, w.Codes(), "the 200 never went out")

	require.NoError(t, stx.Receive(req)) // a retransmission of the INVITE
	assert.Equal(t, []int{487, 487}, w.Codes(), "retransmissions repeat the 487")
	tt.Finish(tx)
}

func TestCancelBeforeAdd(t *testing.T) {
	w := &siptest.Wire{}
	req := siptest.Request(t, "INVITE")
	stx := siptest.ServerTx(t, req, w)
	require.NoError(t, stx.Receive(siptest.CancelOf(t, req)))

	ev := &events{ch: make(chan event, 8)}
	tt := New(Options{OnChange: ev.on})
	tx, err := tt.Add(req, stx)
	require.NoError(t, err)
	assert.True(t, tx.Canceled(), "a CANCEL that came before Add marks the transaction canceled")
	_, err = tt.Suspend(tx, Suspension{})
	assert.ErrorIs(t, err, ErrCanceled, "a canceled transaction cannot park")
	tt.Finish(tx)
}

func TestSuspendEventsStayOrdered(t *testing.T) {
	w := (&siptest.Wire{}).BlockOn(100)
	req := siptest.Request(t, "INVITE")
	ev := &events{}
	tt := New(Options{OnChange: ev.on})
	tx, err := tt.Add(req, siptest.ServerTx(t, req, w))
	require.NoError(t, err)
	tok := tx.Token()
	tok.Park = 1 // the park Suspend is making

	var wg sync.WaitGroup
	wg.Go(func() {
		if _, err := tt.Suspend(tx, Suspension{}); err != nil {
			t.Errorf("Suspend: %v", err)
		}
	})
	<-w.Entered // Suspend is sending 100 Trying: the transaction is parked
	var cerr error
	resumed := make(chan struct{})
	go func() {
		defer close(resumed)
		_, cerr = tt.Continue(tok, ReasonExternal, nil)
	}()
	// Let the resume by token run inside Suspend's window. A fixed table may
	// hold it until Suspend has reported; either way the wait is bounded.
	select {
	case <-resumed:
	case <-time.After(50 * time.Millisecond):
	}
	close(w.Release)
	<-resumed
	wg.Wait()
	require.NoError(t, cerr, "resume by token while Suspend is still returning")
	assert.Equal(t, []Event{EvSuspended, EvResumed}, ev.of(tok), "events of one transaction are reported in order")
	tt.Finish(tx)
}

func TestSuspendParksReadRace(t *testing.T) {
	w := &siptest.Wire{}
	req := siptest.Request(t, "INVITE")
	tt := New(Options{})
	tx, err := tt.Add(req, siptest.ServerTx(t, req, w))
	require.NoError(t, err)
	tok := tx.Token()
	tok.Park = 1 // the park Suspend is making

	var wg sync.WaitGroup
	wg.Go(func() {
		if _, err := tt.Suspend(tx, Suspension{}); err != nil {
			t.Errorf("Suspend: %v", err)
		}
	})
	// An external resume by token (ReasonExternal), with no other
	// synchronisation with the suspending goroutine, then a second park.
	for {
		if _, err := tt.Continue(tok, ReasonExternal, nil); err == nil {
			break
		}
		runtime.Gosched()
	}
	_, err = tt.Suspend(tx, Suspension{})
	require.NoError(t, err)
	wg.Wait()
	assert.Equal(t, 2, tx.Parks())
}

func TestAfterParkEnd(t *testing.T) {
	tt := New(Options{})
	park := func() (*Tx, Token, *siptest.Wire, *sip.ServerTx) {
		w := &siptest.Wire{}
		req := siptest.Request(t, "INVITE")
		stx := siptest.ServerTx(t, req, w)
		tx, err := tt.Add(req, stx)
		require.NoError(t, err)
		tok, err := tt.Suspend(tx, Suspension{})
		require.NoError(t, err)
		return tx, tok, w, stx
	}
	wait := func(ch <-chan struct{}, what string) {
		t.Helper()
		select {
		case <-ch:
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: the hook never ran", what)
		}
	}

	// A CANCEL ends the park: the hook runs.
	tx, tok, _, stx := park()
	ran := make(chan struct{})
	stop := tx.AfterParkEnd(tok, func() { close(ran) })
	require.NoError(t, stx.Receive(siptest.CancelOf(t, tx.Request())))
	wait(ran, "CANCEL")
	assert.True(t, !stop(), "stop after the hook started reports false")

	// Stopped before the end: it never runs.
	tx, tok, _, _ = park()
	never := make(chan struct{}, 1)
	stop = tx.AfterParkEnd(tok, func() { never <- struct{}{} })
	assert.True(t, stop(), "stop before the end reports true")
	_, err := tt.Continue(tok, ReasonExternal, nil)
	require.NoError(t, err)
	tt.Finish(tx)

	// Expiry, and a hook of a park that is already over runs at once.
	tx, tok, _, _ = park()
	ran = make(chan struct{})
	tx.AfterParkEnd(tok, func() { close(ran) })
	assert.True(t, tt.Expire(tok))
	wait(ran, "expiry")
	late := make(chan struct{})
	assert.True(t, !tx.AfterParkEnd(tok, func() { close(late) })(), "a park already over: nothing to stop")
	wait(late, "a park already over")

	select {
	case <-never:
		t.Fatal("a stopped hook ran")
	case <-time.After(50 * time.Millisecond):
	}
}
