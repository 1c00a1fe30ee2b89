// Package observe is sipasync's observation seam: typed lists of observers
// that any number of subscribers join (metrics, events, device state, a
// program's own), and the small event types the proxy reports, so that a
// package that watches calls or registrations depends on these types and
// not on the proxy.
package observe

import (
	"sync"
	"sync/atomic"

	"github.com/emiago/sipgo/sip"
)

// List is a typed list of observers. Add joins one; Notify calls each, in
// the order they joined, on the notifier's goroutine, so an observer must
// be short and must not block. Notify takes no lock (the list is copied on
// Add), which makes it fit for per-message hooks. The zero List is empty
// and ready.
type List[T any] struct {
	mu  sync.Mutex // serializes Add
	fns atomic.Pointer[[]func(T)]
}

// Add joins f to the list. A nil f is ignored.
func (l *List[T]) Add(f func(T)) {
	if f == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	var next []func(T)
	if cur := l.fns.Load(); cur != nil {
		next = append(next, *cur...)
	}
	next = append(next, f)
	l.fns.Store(&next)
}

// Notify tells every observer about v.
func (l *List[T]) Notify(v T) {
	if fns := l.fns.Load(); fns != nil {
		for _, f := range *fns {
			f(v)
		}
	}
}

// Len returns how many observers joined.
func (l *List[T]) Len() int {
	if fns := l.fns.Load(); fns != nil {
		return len(*fns)
	}
	return 0
}

// CallState is how far a relayed call got.
type CallState uint8

// Call states.
const (
	CallRinging  CallState = iota + 1 // an initial INVITE got a provisional (> 100) response
	CallAnswered                      // it got a 2xx
	CallFailed                        // it ended without a 2xx (failure, CANCEL, timeout)
	CallEnded                         // a BYE for the call was relayed
)

func (s CallState) String() string {
	if int(s) < len(callStates) {
		return callStates[s]
	}
	return "unknown"
}

var callStates = [...]string{"", "ringing", "answered", "failed", "ended"}

// Call tells how a relayed call progresses. Caller is the From user;
// Callee the address of record the call was routed to (the R-URI user
// before the location lookup rewrote it), for a BYE the To or From user as
// given.
type Call struct {
	State  CallState
	CallID string
	Caller string
	Callee string
}

// RegEvent is a change of a registration binding.
type RegEvent uint8

// Registration events.
const (
	RegAdded RegEvent = iota + 1
	RegRefreshed
	RegRemoved
	RegExpired
)

func (e RegEvent) String() string {
	if int(e) < len(regEvents) {
		return regEvents[e]
	}
	return "unknown"
}

var regEvents = [...]string{"", "added", "refreshed", "removed", "expired"}

// Registration is the binding a RegEvent is about: the address of record
// and the contact registered for it.
type Registration struct {
	AOR     string
	Contact sip.Uri
}
