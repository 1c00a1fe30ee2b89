package evi

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncTransport is a Synchronous fakeTransport that records the goroutine's
// context deadline of each Send.
type syncTransport struct {
	fakeTransport
	sync      bool
	deadlines []time.Duration
}

func (s *syncTransport) Synchronous() bool { return s.sync }

func (s *syncTransport) Send(ctx context.Context, ev *Event) error {
	d, ok := ctx.Deadline()
	s.mu.Lock()
	if ok {
		s.deadlines = append(s.deadlines, time.Until(d))
	} else {
		s.deadlines = append(s.deadlines, -1)
	}
	s.mu.Unlock()
	return s.fakeTransport.Send(ctx, ev)
}

func TestSynchronousTransport(t *testing.T) {
	ev, _ := newEvents(t, nil, WithSendTimeout(3*time.Second))
	noErr(t, ev.Declare("E_SYNC", "E_OTHER"))
	failing := errors.New("broker said no")
	trs := map[string]*syncTransport{}
	var mu sync.Mutex
	noErr(t, ev.RegisterTransport("fake", func(s Socket) (Transport, error) {
		mu.Lock()
		defer mu.Unlock()
		tr := &syncTransport{sync: !strings.HasPrefix(s.Address(), "async")}
		trs[s.Address()] = tr
		return tr, nil
	}))
	syncSub, err := ev.SubscribeEvent("E_SYNC", "fake:sync")
	noErr(t, err)
	asyncSub, err := ev.SubscribeEvent("E_SYNC", "fake:async")
	noErr(t, err)
	st, as := trs["sync"], trs["async"]

	// RaiseEvent has sent to the synchronous transport when it returns, once.
	noErr(t, ev.RaiseEvent("E_SYNC", String("n", "1")))
	equal(t, 1, st.sent())
	checkFor(t, "async send", func() bool { return as.sent() == 1 })
	equal(t, 1, st.sent()) // the bus subscription of a sync transport never sends
	st.mu.Lock()
	if d := st.deadlines[0]; d <= 2*time.Second || d > 3*time.Second {
		t.Errorf("sync Send deadline %v, want the send timeout (3s)", d)
	}
	st.mu.Unlock()

	// Its error is the raiser's, wrapped, with the socket; counted.
	st.mu.Lock()
	st.err = failing
	st.mu.Unlock()
	err = ev.RaiseEvent("E_SYNC", String("n", "2"))
	errIs(t, err, failing)
	if !strings.Contains(err.Error(), "fake:sync") {
		t.Errorf("error %q does not name the socket", err)
	}
	equal(t, uint64(1), syncSub.Stats().Sent)
	equal(t, uint64(1), syncSub.Stats().Failed)
	// Other events are not sent to it.
	noErr(t, ev.RaiseEvent("E_OTHER"))
	equal(t, 2, st.sent())

	// After Unsubscribe, RaiseEvent neither sends nor fails; the transport is
	// closed once.
	waitClosed(t, "sync unsubscribe", syncSub.Unsubscribe())
	noErr(t, ev.RaiseEvent("E_SYNC", String("n", "3")))
	equal(t, 2, st.sent())
	st.mu.Lock()
	equal(t, 1, st.closed)
	st.mu.Unlock()
	checkFor(t, "async sends", func() bool { return as.sent() == 3 })

	// Subscribing again works, and a synchronous transport that says false is
	// asynchronous.
	_, err = ev.SubscribeEvent("E_SYNC", "fake:sync")
	noErr(t, err)
	noErr(t, ev.RaiseEvent("E_SYNC", String("n", "4")))
	mu.Lock()
	equal(t, 1, trs["sync"].sent())
	mu.Unlock()
	waitClosed(t, "async unsubscribe", asyncSub.Unsubscribe())
}
