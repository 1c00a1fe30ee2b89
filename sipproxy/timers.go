package sipproxy

import (
	"fmt"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
)

// DefaultFrTimeout is Config.FrTimeout's default, OpenSIPS's fr_timeout.
const DefaultFrTimeout = 5 * time.Second

// ValidFrTimeout reports whether d can be Config.FrTimeout: T1 to 64×T1.
func ValidFrTimeout(d time.Duration) bool { return d >= 500*time.Millisecond && d <= 32*time.Second }

// txLinger is how long sipgo keeps a completed transaction to absorb
// retransmissions (see Timer_J in applyTimers).
const txLinger = 5 * time.Second

// acceptedLinger is how long an INVITE's transactions outlive its 2xx
// (see Timers L and M in applyTimers): T1, the time a retransmission of the
// INVITE already on its way may still take.
const acceptedLinger = 500 * time.Millisecond

// sipgo's timers are process globals read by its transactions: they are
// set once, by the first proxy built, before it starts anything.
var timers struct {
	once      sync.Once
	frTimeout time.Duration
}

// setTimers sets sipgo's timers for frTimeout the first time; later it
// only checks that frTimeout is the same, since two proxies in one process
// share sipgo's timers.
func setTimers(frTimeout time.Duration) error {
	if !ValidFrTimeout(frTimeout) {
		return fmt.Errorf("sipproxy: FrTimeout %s: want 500ms to 32s", frTimeout)
	}
	timers.once.Do(func() {
		timers.frTimeout = frTimeout
		applyTimers(frTimeout)
	})
	if timers.frTimeout != frTimeout {
		return fmt.Errorf("sipproxy: FrTimeout %s: sipgo's timers are process-wide and already set for %s", frTimeout, timers.frTimeout)
	}
	return nil
}

// applyTimers sets sipgo's transaction timers, which are process globals.
func applyTimers(frTimeout time.Duration) {
	// Timer I = 0 ends a confirmed INVITE server transaction at once
	// instead of keeping it (and a goroutine per unread ACK) for 5 s; ACK
	// retransmissions then reach the request route as stray ACKs, which it
	// drops.
	sip.Timer_I = 0
	// Completed transactions linger 5 s, Kamailio's wait timer (wt_timer),
	// instead of sipgo's 64×T1 (32 s) for Timer J (non-INVITE server) and
	// D (INVITE client after a 3xx-6xx, non-INVITE client): each keeps its
	// parsed messages (~10 KiB), so a relay at 1,000 calls/s held ~330 MiB
	// of heap in finished transactions (see benchmarks/RESULTS.md). A
	// retransmission later than that is handled as Kamailio handles it
	// after wt_timer.
	sip.Timer_J, sip.Timer_D = txLinger, txLinger
	// An INVITE's transactions end acceptedLinger after its 2xx (Timers L
	// and M, RFC 6026's Accepted state): they hold the largest messages
	// (INVITE and 2xx with SDP), and what they are kept for is covered
	// otherwise. The caller stops retransmitting the INVITE at the 100
	// Trying the proxy sends at once, and a 2xx the callee retransmits
	// later is sent on statelessly by Via (sipproxy, RFC 3261 16.7).
	// Halves a relay's memory (benchmarks/RESULTS.md, "Flood").
	sip.Timer_L, sip.Timer_M = acceptedLinger, acceptedLinger
	// Timers B and F (no response at all to a request sent) are
	// --fr-timeout, OpenSIPS's fr_timeout (5 s), instead of 64×T1 (32 s): a
	// next hop silent that long is gone, and what is left waiting for it
	// retransmits all the while.
	// Timer H (a 3xx-6xx retransmitted until its ACK) stays 64×T1, as in
	// Kamailio (fr_timer, 30 s): the caller is alive, and a final response
	// sent fewer times is lost for good by a receiver busy for a few
	// seconds (5 s allowed 4 transmissions, 32 s about 11).
	sip.Timer_B, sip.Timer_F = frTimeout, frTimeout
	sip.Timer_H = 64 * sip.T1
}
