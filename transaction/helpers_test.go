package transaction

import (
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// newReq builds a bare request of method m (no headers): enough for the
// table, which never reads headers when there is no server transaction.
func newReq(m sip.RequestMethod) *sip.Request {
	return sip.NewRequest(m, sip.Uri{Scheme: "sip", User: "bob", Host: "example.com"})
}

// events records OnChange calls.
type events struct {
	mu  sync.Mutex
	log []event
	ch  chan event // if set, every event is sent here too
}

type event struct {
	tok Token
	ev  Event
}

func (e *events) on(tx *Tx, ev Event) {
	e.mu.Lock()
	e.log = append(e.log, event{tx.Token(), ev})
	e.mu.Unlock()
	if e.ch != nil {
		e.ch <- event{tx.Token(), ev}
	}
}

// of returns the events of one token, in order.
func (e *events) of(tok Token) []Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := []Event{}
	for _, x := range e.log {
		if x.tok == tok.Tx() {
			out = append(out, x.ev)
		}
	}
	return out
}

// waitEvent waits for an event on ch; the timeout only guards against a hang.
func waitEvent(t testing.TB, ch <-chan event) event {
	t.Helper()
	select {
	case e := <-ch:
		return e
	case <-time.After(5 * time.Second):
		t.Fatal("no event within 5s")
		return event{}
	}
}

// within runs f and fails the test if it does not return in time (a
// deadlock guard, not a timing assertion).
func within(t testing.TB, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatalf("%s did not return within 5s (deadlock?)", what)
	}
}
