package transaction

import (
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// These tests run the table over real sipgo server transactions whose
// connection records what goes on the wire.

func TestSuspendInviteSendsTryingOnce(t *testing.T) {
	w := &wire{}
	req := parseReq(t, "INVITE")
	tt := New(Options{})
	tx, err := tt.Add(req, newStx(t, req, w))
	need(t, err)

	tok, err := tt.Suspend(tx, Suspension{})
	need(t, err)
	eq(t, []int{100}, w.codes(), "a parked INVITE gets 100 Trying at once")
	_, err = tt.Continue(tok, ReasonTimer, nil)
	need(t, err)
	tok, err = tt.Suspend(tx, Suspension{})
	need(t, err)
	_, err = tt.Continue(tok, ReasonTimer, nil)
	need(t, err)
	eq(t, []int{100}, w.codes(), "a second park sends no second 100")

	need(t, tx.Reply(486, "Busy Here", nil))
	truth(t, tx.FinalSent())
	errIs(t, tx.Reply(200, "OK", nil), ErrFinal, "one final response only")
	eq(t, []int{100, 486}, w.codes())
	_, err = tt.Suspend(tx, Suspension{})
	errIs(t, err, ErrFinal, "an answered transaction cannot park")
	tt.Finish(tx)
}

func TestSuspendNonInviteSendsNothing(t *testing.T) {
	w := &wire{}
	req := parseReq(t, "MESSAGE")
	tt := New(Options{})
	tx, err := tt.Add(req, newStx(t, req, w))
	need(t, err)
	_, err = tt.Suspend(tx, Suspension{})
	need(t, err)
	eq(t, []int{}, w.codes(), "no 100 for a non-INVITE")
}

func TestExpireAnswers(t *testing.T) {
	for method, want := range map[string]int{"INVITE": 408, "MESSAGE": 500, "OPTIONS": 500} {
		t.Run(method, func(t *testing.T) {
			w := &wire{}
			req := parseReq(t, method)
			tt := New(Options{})
			tx, err := tt.Add(req, newStx(t, req, w))
			need(t, err)
			tok, err := tt.Suspend(tx, Suspension{})
			need(t, err)
			truth(t, tt.Expire(tok))
			codes := w.codes()
			needEq(t, want, codes[len(codes)-1], "the suspended-timeout reply")
			truth(t, tx.FinalSent())
			truth(t, !tt.Expire(tok))
			eq(t, codes, w.codes(), "a second expiry sends nothing")
		})
	}
}

func TestAbortAnswers(t *testing.T) {
	w := &wire{}
	req := parseReq(t, "MESSAGE")
	tt := New(Options{})
	tx, err := tt.Add(req, newStx(t, req, w))
	need(t, err)
	tok, err := tt.Suspend(tx, Suspension{})
	need(t, err)
	truth(t, tt.Abort(tok, 503, "Service Unavailable", sip.NewHeader("Retry-After", "5")))
	needEq(t, []int{503}, w.codes())
	w.mu.Lock()
	res := w.sent[0]
	w.mu.Unlock()
	eq(t, "Service Unavailable", res.Reason)
	h := res.GetHeader("Retry-After")
	truth(t, h != nil && h.Value() == "5", "the extra header goes out")
}

func TestCancelParkedInvite(t *testing.T) {
	w := &wire{}
	req := parseReq(t, "INVITE")
	ev := &events{ch: make(chan event, 8)}
	tt := New(Options{OnChange: ev.on})
	stx := newStx(t, req, w)
	tx, err := tt.Add(req, stx)
	need(t, err)
	notify := tx.CancelNotify()
	tok, err := tt.Suspend(tx, Suspension{Route: "RESUME"})
	need(t, err)
	eq(t, EvSuspended, waitEvent(t, ev.ch).ev)

	need(t, stx.Receive(cancelOf(t, req)))
	eq(t, event{tok.Tx(), EvCanceled}, waitEvent(t, ev.ch))

	truth(t, tx.Canceled())
	eq(t, Done, tx.State())
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
	eq(t, []int{100, 487}, w.codes())

	_, err = tt.Continue(tok, ReasonTimer, nil)
	truth(t, err != nil, "the pending resume after a CANCEL does nothing")
	errIs(t, tx.Reply(200, "OK", nil), ErrCanceled, "never respond after a cancel")
	truth(t, !tt.Expire(tok), "no expiry after a CANCEL")
	eq(t, []int{100, 487}, w.codes(), "nothing but the 487 goes out")
	st := tt.Stats()
	eq(t, uint64(1), st.Canceled)
	eq(t, uint64(0), st.LateCancels, "the reply was refused before reaching sipgo")
	eq(t, 0, st.Live)
	eq(t, 0, st.Parked)
	eq(t, []Event{EvSuspended, EvCanceled}, ev.of(tok))
}

func TestCancelLiveInvite(t *testing.T) {
	w := &wire{}
	req := parseReq(t, "INVITE")
	ev := &events{ch: make(chan event, 8)}
	tt := New(Options{OnChange: ev.on})
	stx := newStx(t, req, w)
	tx, err := tt.Add(req, stx)
	need(t, err)
	notify := tx.CancelNotify()

	need(t, stx.Receive(cancelOf(t, req)))
	eq(t, event{tx.Token(), EvCanceled}, waitEvent(t, ev.ch))
	<-notify
	truth(t, tx.Canceled())
	eq(t, Live, tx.State(), "a live transaction stays with its route")
	eq(t, 1, tt.Stats().Live)

	errIs(t, tx.Reply(200, "OK", nil), ErrCanceled)
	eq(t, uint64(0), tt.Stats().LateCancels, "refused before reaching sipgo")
	_, err = tt.Suspend(tx, Suspension{})
	errIs(t, err, ErrCanceled, "a canceled transaction cannot park")
	eq(t, []int{487}, w.codes())
	tt.Finish(tx)
	eq(t, 0, tt.Stats().Live)
	eq(t, []Event{EvCanceled, EvEnded}, ev.of(tx.Token()))
}

func TestContinueRefusedWhileCancelPending(t *testing.T) {
	// sipgo's OnCancel sets the flag at once and hands the end to another
	// goroutine; a resume in between must not run the route.
	tt := New(Options{})
	tx, err := tt.Add(newReq(sip.INVITE), nil)
	need(t, err)
	tok, err := tt.Suspend(tx, Suspension{})
	need(t, err)
	tx.canceled.Store(true)
	_, err = tt.Continue(tok, ReasonTimer, nil)
	errIs(t, err, ErrCanceled)
	eq(t, Suspended, tx.State(), "the cancel path ends it")
	tt.cancel(tx)
	eq(t, Done, tx.State())
	eq(t, 0, tt.Stats().Live)
}

func TestLateCancelDetectedOnRespond(t *testing.T) {
	// The CANCEL was handled by sipgo (487 sent) while our flag was not set.
	// Our final response must not replace the 487 that retransmissions carry.
	w := &wire{}
	req := parseReq(t, "INVITE")
	stx := newStx(t, req, w)
	need(t, stx.Receive(cancelOf(t, req)))
	eq(t, []int{487}, w.codes())

	tt := New(Options{})
	tx, err := tt.Add(req, stx)
	need(t, err)
	tx.canceled.Store(false) // as if the CANCEL slipped in after the flag check
	errIs(t, tx.Reply(200, "OK", nil), ErrCanceled)
	truth(t, tx.Canceled(), "the late cancel is remembered")
	eq(t, uint64(1), tt.Stats().LateCancels)
	eq(t, []int{487}, w.codes(), "the 200 never went out")

	need(t, stx.Receive(req)) // a retransmission of the INVITE
	eq(t, []int{487, 487}, w.codes(), "retransmissions repeat the 487")
	tt.Finish(tx)
}

func TestCancelBeforeAdd(t *testing.T) {
	w := &wire{}
	req := parseReq(t, "INVITE")
	stx := newStx(t, req, w)
	need(t, stx.Receive(cancelOf(t, req)))

	ev := &events{ch: make(chan event, 8)}
	tt := New(Options{OnChange: ev.on})
	tx, err := tt.Add(req, stx)
	need(t, err)
	truth(t, tx.Canceled(), "a CANCEL that came before Add marks the transaction canceled")
	_, err = tt.Suspend(tx, Suspension{})
	errIs(t, err, ErrCanceled, "a canceled transaction cannot park")
	tt.Finish(tx)
}

func TestSuspendEventsStayOrdered(t *testing.T) {
	w := (&wire{}).blockOn(100)
	req := parseReq(t, "INVITE")
	ev := &events{}
	tt := New(Options{OnChange: ev.on})
	tx, err := tt.Add(req, newStx(t, req, w))
	need(t, err)
	tok := tx.Token()
	tok.Park = 1 // the park Suspend is making

	var wg sync.WaitGroup
	wg.Go(func() {
		if _, err := tt.Suspend(tx, Suspension{}); err != nil {
			t.Errorf("Suspend: %v", err)
		}
	})
	<-w.entered // Suspend is sending 100 Trying: the transaction is parked
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
	close(w.release)
	<-resumed
	wg.Wait()
	need(t, cerr, "resume by token while Suspend is still returning")
	eq(t, []Event{EvSuspended, EvResumed}, ev.of(tok), "events of one transaction are reported in order")
	tt.Finish(tx)
}

func TestSuspendParksReadRace(t *testing.T) {
	w := &wire{}
	req := parseReq(t, "INVITE")
	tt := New(Options{})
	tx, err := tt.Add(req, newStx(t, req, w))
	need(t, err)
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
	need(t, err)
	wg.Wait()
	eq(t, 2, tx.Parks())
}

func TestAfterParkEnd(t *testing.T) {
	tt := New(Options{})
	park := func() (*Tx, Token, *wire, *sip.ServerTx) {
		w := &wire{}
		req := parseReq(t, "INVITE")
		stx := newStx(t, req, w)
		tx, err := tt.Add(req, stx)
		need(t, err)
		tok, err := tt.Suspend(tx, Suspension{})
		need(t, err)
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
	need(t, stx.Receive(cancelOf(t, tx.Request())))
	wait(ran, "CANCEL")
	truth(t, !stop(), "stop after the hook started reports false")

	// Stopped before the end: it never runs.
	tx, tok, _, _ = park()
	never := make(chan struct{}, 1)
	stop = tx.AfterParkEnd(tok, func() { never <- struct{}{} })
	truth(t, stop(), "stop before the end reports true")
	_, err := tt.Continue(tok, ReasonExternal, nil)
	need(t, err)
	tt.Finish(tx)

	// Expiry, and a hook of a park that is already over runs at once.
	tx, tok, _, _ = park()
	ran = make(chan struct{})
	tx.AfterParkEnd(tok, func() { close(ran) })
	truth(t, tt.Expire(tok))
	wait(ran, "expiry")
	late := make(chan struct{})
	truth(t, !tx.AfterParkEnd(tok, func() { close(late) })(), "a park already over: nothing to stop")
	wait(late, "a park already over")

	select {
	case <-never:
		t.Fatal("a stopped hook ran")
	case <-time.After(50 * time.Millisecond):
	}
}
