package sipproxy

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/benbjohnson/clock"
)

// In-dialog order. sipgo hands each message to its own goroutine, so two
// requests of a dialog read in order may be routed out of order when the
// proxy is busy. The case that breaks calls is a BYE (or another in-dialog
// request) overtaking the ACK for the INVITE's 2xx: the callee then gets
// the BYE of a call it has not seen confirmed. The proxy remembers, per
// Call-ID, a 2xx it forwarded upstream for a record-routed INVITE until
// that ACK is routed; an in-dialog request of the same Call-ID that arrives
// meanwhile waits for it, at most ackWait (the ACK itself may have been
// lost on the way; the caller resends it when the 2xx is retransmitted).
// On UDP the socket wrapper also marks the ACK as read (seen) the moment it
// is read, before sipgo hands it to a goroutine: a request that waits for
// an ACK already read waits for it to be routed, at most ackRouteWait, so
// a busy proxy keeps the order in which a dialog's datagrams came in.

// ackWait bounds how long an in-dialog request waits for its dialog's ACK
// when that ACK has not been read.
const ackWait = 500 * time.Millisecond

// ackRouteWait bounds the wait for an ACK that was read but not yet routed
// (its goroutine has not run yet): T4.
const ackRouteWait = 5 * time.Second

// ackMaxAge is how long an ACK is expected at all (64×T1, Timer H).
const ackMaxAge = 32 * time.Second

type ackGate struct {
	clock clock.Clock

	mu sync.Mutex
	m  map[string]*ackEntry
	n  atomic.Int64 // len(m), read without the lock

	waited, timedOut atomic.Uint64
	readFirst        atomic.Uint64 // waits extended because the ACK was read
}

type ackEntry struct {
	done chan struct{}
	seen chan struct{} // closed when the ACK was read (UDP)
	at   time.Time
}

func newACKGate(clk clock.Clock) *ackGate {
	return &ackGate{clock: clk, m: map[string]*ackEntry{}}
}

// expect records that a 2xx for an INVITE of this Call-ID went upstream
// and its ACK will come through the proxy.
func (g *ackGate) expect(callID string) {
	g.mu.Lock()
	if e, ok := g.m[callID]; !ok {
		g.m[callID] = &ackEntry{done: make(chan struct{}), seen: make(chan struct{}), at: g.clock.Now()}
		g.n.Store(int64(len(g.m)))
	} else {
		e.at = g.clock.Now()
	}
	g.mu.Unlock()
}

// acked releases what waits for the ACK of this Call-ID.
func (g *ackGate) acked(callID string) {
	g.mu.Lock()
	e, ok := g.m[callID]
	delete(g.m, callID)
	g.n.Store(int64(len(g.m)))
	g.mu.Unlock()
	if ok {
		close(e.done)
	}
}

// seen records that the ACK of this Call-ID was read from the socket.
func (g *ackGate) seen(callID []byte) {
	g.mu.Lock()
	e, ok := g.m[string(callID)]
	if ok {
		select {
		case <-e.seen:
		default:
			close(e.seen)
		}
	}
	g.mu.Unlock()
}

// expecting reports whether any ACK is expected (no lock).
func (g *ackGate) expecting() bool { return g.pending() > 0 }

// wait returns once the ACK of this Call-ID was routed, at once when none
// is expected, or after ackWait (ackRouteWait once the ACK was read).
func (g *ackGate) wait(callID string) {
	g.mu.Lock()
	e, ok := g.m[callID]
	g.mu.Unlock()
	if !ok {
		return
	}
	t := g.clock.Timer(ackWait)
	defer func() { t.Stop() }()
	seen := e.seen
	g.waited.Add(1) // after the timer exists (tests advance a mock clock)
	for {
		select {
		case <-e.done:
			return
		case <-seen:
			seen = nil
			t.Stop()
			t = g.clock.Timer(ackRouteWait)
			g.readFirst.Add(1) // after the timer exists, as above
		case <-t.C:
			g.timedOut.Add(1)
			return
		}
	}
}

// sweep forgets ACKs expected for longer than ackMaxAge (the caller gave
// up, or the ACK took another path).
func (g *ackGate) sweep() {
	cut := g.clock.Now().Add(-ackMaxAge)
	g.mu.Lock()
	defer g.mu.Unlock()
	for id, e := range g.m {
		if e.at.Before(cut) {
			delete(g.m, id)
			close(e.done)
		}
	}
	g.n.Store(int64(len(g.m)))
}

// pending is the number of ACKs expected now (no lock).
func (g *ackGate) pending() int { return int(g.n.Load()) }

// run sweeps every few seconds until done closes.
func (g *ackGate) run(done <-chan struct{}) { every(g.clock, 5*time.Second, done, g.sweep) }
