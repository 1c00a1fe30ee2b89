// Package transaction is the table of live and suspended SIP server
// transactions: the Go form of Kamailio tm's t_suspend()/t_continue().
//
// Every server transaction the proxy handles is an entry identified by a
// Token {Index, Label}: the index is a slot in the table, the label a
// generation that changes each time the slot is reused, so a stale token
// (same index, older label) is refused. A transaction is Live while a route
// runs on it, Suspended while it is parked (no goroutine holds it: it is a
// table entry), and Done once answered, relayed or dropped.
//
// The package does not run route code. It owns the transaction's identity,
// its attributes (the $avp/$xavp analog, kept across suspension), the
// suspended-timeout reply, and the one rule that matters on the wire: after a
// CANCEL nothing but the 487 goes out as the final response.
package transaction

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/emiago/sipgo/sip"
	"github.com/sipasync/sipasync/timerwheel"
)

// Errors returned by the table. They are wrapped with the token or detail.
var (
	ErrNotFound     = errors.New("transaction: not found (ended or never existed)")
	ErrStale        = errors.New("transaction: stale token")
	ErrNotSuspended = errors.New("transaction: not suspended")
	ErrNotLive      = errors.New("transaction: not live (suspended or ended)")
	ErrCanceled     = errors.New("transaction: canceled")
	ErrFinal        = errors.New("transaction: final response already sent")
	ErrTableFull    = errors.New("transaction: table full")
	ErrTooMany      = errors.New("transaction: too many parked transactions")
	ErrNoServerTx   = errors.New("transaction: no server transaction to answer")
	ErrBadToken     = errors.New("transaction: malformed token")
)

// Token identifies a transaction: the slot index and the label (generation)
// of the slot when the transaction was created. Tokens are values; a token
// copied into a closure, a queue message or an HTTP callback stays valid
// until its transaction ends, and is refused after that.
type Token struct {
	Index uint32
	Label uint32
}

// String formats the token as "index:label", the form ParseToken reads.
func (t Token) String() string {
	return strconv.FormatUint(uint64(t.Index), 10) + ":" + strconv.FormatUint(uint64(t.Label), 10)
}

// ParseToken reads "index:label".
func ParseToken(s string) (Token, error) {
	i, l, ok := strings.Cut(s, ":")
	if !ok {
		return Token{}, fmt.Errorf("%w: %q (want index:label)", ErrBadToken, s)
	}
	idx, err1 := strconv.ParseUint(i, 10, 32)
	lab, err2 := strconv.ParseUint(l, 10, 32)
	if err1 != nil || err2 != nil {
		return Token{}, fmt.Errorf("%w: %q (want index:label)", ErrBadToken, s)
	}
	return Token{uint32(idx), uint32(lab)}, nil
}

// State of a transaction in the table.
type State uint8

// States.
const (
	Live State = iota + 1
	Suspended
	Done
)

func (s State) String() string {
	switch s {
	case Live:
		return "live"
	case Suspended:
		return "suspended"
	case Done:
		return "done"
	}
	return "unknown"
}

// Reason tells a resumed route why it runs.
type Reason uint8

// Resume reasons.
const (
	ReasonNone     Reason = iota // first run: not a resume
	ReasonTimer                  // the delay of a timed park elapsed
	ReasonTask                   // a worker of a group became free
	ReasonExternal               // Continue called by code outside the engine
	ReasonTimeout                // the suspend deadline passed (no route runs; kept for events)
	ReasonCancel                 // a CANCEL ended the parked transaction (no route runs)
)

func (r Reason) String() string {
	switch r {
	case ReasonNone:
		return "none"
	case ReasonTimer:
		return "timer"
	case ReasonTask:
		return "task"
	case ReasonExternal:
		return "external"
	case ReasonTimeout:
		return "timeout"
	case ReasonCancel:
		return "cancel"
	}
	return "unknown"
}

// Suspension describes one park of a transaction.
type Suspension struct {
	Route    string            // route to resume into (informational for Sleep forms)
	Kind     string            // e.g. "route", "ms_route", "sleep", "task"
	Timeout  time.Duration     // 0: the table's default
	Value    any               // typed value carried to the resumed route
	Next     any               // the engine's continuation (Sleep forms); opaque here
	Deadline time.Time         // set by Suspend
	Since    time.Time         // set by Suspend
	Due      time.Time         // when a timed park is meant to resume (zero: no timer); for resume lateness
	Park     int               // which park of the transaction this is (1, 2, ...), set by Suspend
	Timer    timerwheel.Handle // the engine's timer for this park, set by SetTimer
}

// Tx is one server transaction in the table.
type Tx struct {
	table *Table
	token Token
	req   *sip.Request
	stx   *sip.ServerTx

	canceled  atomic.Bool // set from sipgo's OnCancel (under its FSM lock: no locks here)
	finalSent atomic.Bool

	// evMu serializes this transaction's state changes with the reports of
	// them, so OnChange sees one transaction's events in order. It is taken
	// before Table.mu and Tx.mu.
	evMu sync.Mutex

	mu      sync.Mutex
	state   State
	attrs   map[string]any
	susp    Suspension
	parks   int
	created time.Time
	reason  Reason
	resumeV any

	cancelCh     chan struct{} // made on demand by CancelNotify
	cancelClosed bool
}

// CancelNotify returns a channel closed when a CANCEL ends the transaction.
func (tx *Tx) CancelNotify() <-chan struct{} {
	tx.mu.Lock()
	defer tx.mu.Unlock()
	if tx.cancelCh == nil {
		tx.cancelCh = make(chan struct{})
		if tx.canceled.Load() {
			close(tx.cancelCh)
			tx.cancelClosed = true
		}
	}
	return tx.cancelCh
}

func (tx *Tx) closeCancel() {
	tx.mu.Lock()
	if tx.cancelCh != nil && !tx.cancelClosed {
		close(tx.cancelCh)
		tx.cancelClosed = true
	}
	tx.mu.Unlock()
}

// Token returns the transaction's identity.
func (tx *Tx) Token() Token { return tx.token }

// Request returns the request that started the transaction. After a resume
// the handler that runs owns it; no other goroutine touches it.
func (tx *Tx) Request() *sip.Request { return tx.req }

// ServerTx returns sipgo's server transaction (nil for synthetic ones).
func (tx *Tx) ServerTx() *sip.ServerTx { return tx.stx }

// State returns the current state.
func (tx *Tx) State() State {
	tx.mu.Lock()
	defer tx.mu.Unlock()
	return tx.state
}

// Canceled reports whether a CANCEL ended the transaction.
func (tx *Tx) Canceled() bool { return tx.canceled.Load() }

// FinalSent reports whether a final response was sent.
func (tx *Tx) FinalSent() bool { return tx.finalSent.Load() }

// Created returns when the transaction entered the table.
func (tx *Tx) Created() time.Time { return tx.created }

// Parks counts how often the transaction was suspended.
func (tx *Tx) Parks() int {
	tx.mu.Lock()
	defer tx.mu.Unlock()
	return tx.parks
}

// Suspension returns the current (or last) suspension.
func (tx *Tx) Suspension() Suspension {
	tx.mu.Lock()
	defer tx.mu.Unlock()
	return tx.susp
}

// SetTimer records the engine's timer of the current park, so that a resume
// by another path can cancel it. It does nothing if park is no longer the
// current suspension.
func (tx *Tx) SetTimer(park int, h timerwheel.Handle) {
	tx.mu.Lock()
	if tx.parks == park && tx.state == Suspended {
		tx.susp.Timer = h
	}
	tx.mu.Unlock()
}

// ResumeReason returns why the current run of a route happens, and the value
// the suspending code attached.
func (tx *Tx) ResumeReason() (Reason, any) {
	tx.mu.Lock()
	defer tx.mu.Unlock()
	return tx.reason, tx.resumeV
}

// Attr returns a per-transaction attribute (the $avp analog); it survives
// suspension.
func (tx *Tx) Attr(key string) (any, bool) {
	tx.mu.Lock()
	defer tx.mu.Unlock()
	v, ok := tx.attrs[key]
	return v, ok
}

// SetAttr sets a per-transaction attribute.
func (tx *Tx) SetAttr(key string, v any) {
	tx.mu.Lock()
	if tx.attrs == nil {
		tx.attrs = make(map[string]any, 4)
	}
	tx.attrs[key] = v
	tx.mu.Unlock()
}

// DelAttr removes an attribute.
func (tx *Tx) DelAttr(key string) {
	tx.mu.Lock()
	delete(tx.attrs, key)
	tx.mu.Unlock()
}

// Attrs returns a copy of all attributes.
func (tx *Tx) Attrs() map[string]any {
	tx.mu.Lock()
	defer tx.mu.Unlock()
	out := make(map[string]any, len(tx.attrs))
	for k, v := range tx.attrs {
		out[k] = v
	}
	return out
}

// Respond sends a response on the server transaction. A final response is
// sent at most once; after a CANCEL no final response is sent (ErrCanceled).
//
// The CANCEL check and sipgo's Respond are not atomic: sipgo runs OnCancel
// under its own FSM lock, which we must not wait on. If a CANCEL slips in
// between, sipgo reports ErrTransactionCanceled after storing our response as
// the one it retransmits; Respond then stores a 487 again, so retransmissions
// carry the same status as the 487 already sent.
func (tx *Tx) Respond(res *sip.Response) error {
	if tx.stx == nil {
		return ErrNoServerTx
	}
	final := res.StatusCode >= 200
	if tx.canceled.Load() {
		return ErrCanceled
	}
	if final && !tx.finalSent.CompareAndSwap(false, true) {
		return ErrFinal
	}
	err := tx.stx.Respond(res)
	if err == nil && tx.table.opts.OnRespond != nil {
		tx.table.opts.OnRespond(tx.req, res.StatusCode)
	}
	if errors.Is(err, sip.ErrTransactionCanceled) {
		tx.canceled.Store(true)
		if final {
			_ = tx.stx.Respond(sip.NewResponseFromRequest(tx.req, sip.StatusRequestTerminated, "Request Terminated", nil))
		}
		tx.table.stats.lateCancels.Add(1)
		return ErrCanceled
	}
	return err
}

// Reply builds a response to the transaction's request and sends it.
func (tx *Tx) Reply(code int, reason string, body []byte, hdrs ...sip.Header) error {
	res := sip.NewResponseFromRequest(tx.req, code, reason, body)
	for _, h := range hdrs {
		res.AppendHeader(h)
	}
	return tx.Respond(res)
}

// Options configure a Table.
type Options struct {
	// MaxLive bounds the transactions in the table (live and suspended).
	// 0 means 1<<20.
	MaxLive int
	// MaxParked bounds suspended transactions. 0 means MaxLive.
	MaxParked int
	// SuspendTimeout is the deadline of a suspension that sets none. 0 means 120s
	// (longer than the longest timed park, 100 s).
	SuspendTimeout time.Duration
	// Clock is the time source (tests use a mock). Nil means the real clock.
	Clock clock.Clock
	// OnChange, if set, is told about suspend/resume/expire/cancel/end. It
	// runs on the caller's goroutine without table locks held; keep it short.
	OnChange func(tx *Tx, ev Event)
	// OnRespond, if set, is told about every response sent on a server
	// transaction (metrics). It runs on the sender's goroutine, possibly
	// under a transaction's locks: it must not call into the table.
	OnRespond func(req *sip.Request, code int)
}

// Event is a change of a transaction's state reported to Options.OnChange.
type Event uint8

// Events.
const (
	EvSuspended Event = iota + 1
	EvResumed
	EvExpired
	EvCanceled
	EvEnded
)

func (e Event) String() string {
	return [...]string{"", "suspended", "resumed", "expired", "canceled", "ended"}[e]
}

// Stats are the table's counters.
type Stats struct {
	Live, Parked                                      int
	Created, Suspends, Resumes, Expired, Canceled     uint64
	StaleRefused, EndedRefused, Rejected, LateCancels uint64
}

type slot struct {
	tx    *Tx
	label uint32
}

// Table holds the transactions. It is safe for concurrent use.
type Table struct {
	opts  Options
	clock clock.Clock

	mu     sync.Mutex
	slots  []slot
	free   []uint32
	live   int
	parked int

	stats struct {
		created, suspends, resumes, expired, canceled atomic.Uint64
		stale, ended, rejected, lateCancels           atomic.Uint64
	}
}

// New returns an empty table.
func New(opts Options) *Table {
	if opts.MaxLive <= 0 {
		opts.MaxLive = 1 << 20
	}
	if opts.MaxParked <= 0 || opts.MaxParked > opts.MaxLive {
		opts.MaxParked = opts.MaxLive
	}
	if opts.SuspendTimeout <= 0 {
		opts.SuspendTimeout = 120 * time.Second
	}
	if opts.Clock == nil {
		opts.Clock = clock.New()
	}
	return &Table{opts: opts, clock: opts.Clock}
}

// SuspendTimeout returns the default suspend deadline.
func (t *Table) SuspendTimeout() time.Duration { return t.opts.SuspendTimeout }

// Add enters a new live transaction. stx may be nil for a synthetic request
// (data tasks). When stx is set, a CANCEL matching it marks the transaction
// canceled and, if it is parked, ends it.
func (t *Table) Add(req *sip.Request, stx *sip.ServerTx) (*Tx, error) {
	tx := &Tx{table: t, req: req, stx: stx, state: Live, created: t.clock.Now()}
	t.mu.Lock()
	if t.live >= t.opts.MaxLive {
		t.mu.Unlock()
		t.stats.rejected.Add(1)
		return nil, fmt.Errorf("%w (%d live)", ErrTableFull, t.opts.MaxLive)
	}
	var idx uint32
	if n := len(t.free); n > 0 {
		idx = t.free[n-1]
		t.free = t.free[:n-1]
	} else {
		idx = uint32(len(t.slots))
		t.slots = append(t.slots, slot{})
	}
	s := &t.slots[idx]
	s.label++
	s.tx = tx
	tx.token = Token{idx, s.label}
	t.live++
	t.mu.Unlock()
	t.stats.created.Add(1)

	if stx != nil {
		registered := stx.OnCancel(func(*sip.Request) {
			// Runs under sipgo's FSM lock: only flag and hand off.
			tx.canceled.Store(true)
			go t.cancel(tx)
		})
		if !registered {
			// sipgo already handled a CANCEL (or ended the transaction)
			// before we could listen: nothing but its 487 may go out.
			tx.canceled.Store(true)
		}
	}
	return tx, nil
}

// lookup returns the transaction for a token, checking the label.
func (t *Table) lookup(tok Token) (*Tx, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if int(tok.Index) >= len(t.slots) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, tok)
	}
	s := t.slots[tok.Index]
	if s.label != tok.Label {
		if tok.Label < s.label {
			t.stats.stale.Add(1)
			return nil, fmt.Errorf("%w: %s (slot now at label %d)", ErrStale, tok, s.label)
		}
		return nil, fmt.Errorf("%w: %s", ErrNotFound, tok)
	}
	if s.tx == nil {
		t.stats.ended.Add(1)
		return nil, fmt.Errorf("%w: %s", ErrNotFound, tok)
	}
	return s.tx, nil
}

// Get returns the transaction of a token.
func (t *Table) Get(tok Token) (*Tx, error) { return t.lookup(tok) }

// Suspend parks a live transaction. The caller (the async engine) arms the
// timers; the table records the deadline. An INVITE gets 100 Trying at once.
func (t *Table) Suspend(tx *Tx, s Suspension) (Token, error) {
	if s.Timeout <= 0 {
		s.Timeout = t.opts.SuspendTimeout
	}
	now := t.clock.Now()
	s.Since, s.Deadline = now, now.Add(s.Timeout)

	tx.evMu.Lock()
	defer tx.evMu.Unlock()
	t.mu.Lock()
	if t.parked >= t.opts.MaxParked {
		t.mu.Unlock()
		t.stats.rejected.Add(1)
		return Token{}, fmt.Errorf("%w (%d parked)", ErrTooMany, t.opts.MaxParked)
	}
	tx.mu.Lock()
	if tx.state != Live || tx.canceled.Load() {
		st := tx.state
		tx.mu.Unlock()
		t.mu.Unlock()
		if tx.canceled.Load() {
			return Token{}, fmt.Errorf("%w: %s", ErrCanceled, tx.token)
		}
		return Token{}, fmt.Errorf("%w: %s is %s", ErrNotLive, tx.token, st)
	}
	if tx.finalSent.Load() {
		tx.mu.Unlock()
		t.mu.Unlock()
		return Token{}, fmt.Errorf("%w: %s", ErrFinal, tx.token)
	}
	tx.state = Suspended
	tx.parks++
	s.Park = tx.parks
	tx.susp = s
	first := tx.parks == 1
	t.parked++
	tx.mu.Unlock()
	t.mu.Unlock()
	t.stats.suspends.Add(1)

	t.notify(tx, EvSuspended)
	if tx.stx != nil && tx.req.IsInvite() && first {
		// A retransmission before sipgo's 200 ms timer would cancel its
		// automatic 100 Trying; send it now.
		_ = tx.Respond(trying(tx.req))
	}
	return tx.token, nil
}

// trying is the 100 Trying for a parked INVITE: sip.NewResponseFromRequest's
// response with the request's own From, To, Call-ID and CSeq headers in
// place of its clones. sipgo keeps the 100 for retransmissions for as long
// as the INVITE is parked, and the clones were about a quarter of a parked
// transaction's memory. Sharing is safe: a 100 gets no To tag, the Via
// (which gets rport/received) stays a copy, and nothing changes those
// headers of a request in place.
func trying(req *sip.Request) *sip.Response {
	res := sip.NewResponseFromRequest(req, sip.StatusTrying, "Trying", nil)
	if h := req.From(); h != nil {
		res.ReplaceHeader(h)
	}
	if h := req.To(); h != nil {
		res.ReplaceHeader(h)
	}
	if h := req.CallID(); h != nil {
		res.ReplaceHeader(h)
	}
	if h := req.CSeq(); h != nil {
		res.ReplaceHeader(h)
	}
	return res
}

// Continue takes a suspended transaction back to live for a resume and
// returns it; the caller runs the route. A token that is stale, unknown,
// ended or not suspended is refused with an error; nothing is sent.
func (t *Table) Continue(tok Token, reason Reason, value any) (*Tx, error) {
	return t.ContinuePark(tok, 0, reason, value)
}

// ContinuePark is Continue that also checks the park number (0 = any): a
// timer or task armed for an earlier park of the same transaction is refused.
func (t *Table) ContinuePark(tok Token, park int, reason Reason, value any) (*Tx, error) {
	tx, err := t.lookup(tok)
	if err != nil {
		return nil, err
	}
	tx.evMu.Lock()
	defer tx.evMu.Unlock()
	t.mu.Lock()
	tx.mu.Lock()
	if park != 0 && tx.parks != park {
		tx.mu.Unlock()
		t.mu.Unlock()
		return nil, fmt.Errorf("%w: %s park %d is over", ErrNotSuspended, tok, park)
	}
	if tx.state != Suspended {
		st := tx.state
		tx.mu.Unlock()
		t.mu.Unlock()
		return nil, fmt.Errorf("%w: %s is %s", ErrNotSuspended, tok, st)
	}
	if tx.canceled.Load() {
		tx.mu.Unlock()
		t.mu.Unlock()
		return nil, fmt.Errorf("%w: %s", ErrCanceled, tok)
	}
	tx.state = Live
	tx.reason = reason
	if value != nil {
		tx.resumeV = value
	} else {
		tx.resumeV = tx.susp.Value
	}
	t.parked--
	tx.mu.Unlock()
	t.mu.Unlock()
	t.stats.resumes.Add(1)
	t.notify(tx, EvResumed)
	return tx, nil
}

// Expire answers a transaction still suspended at its deadline (408 for
// INVITE, 500 otherwise) and ends it. It reports whether it did.
func (t *Table) Expire(tok Token) bool { return t.ExpirePark(tok, 0) }

// ExpirePark is Expire for one park of the transaction (0 = any).
func (t *Table) ExpirePark(tok Token, park int) bool {
	tx, err := t.lookup(tok)
	if err != nil {
		return false
	}
	tx.evMu.Lock()
	defer tx.evMu.Unlock()
	if !t.endSuspended(tx, park) {
		return false
	}
	t.stats.expired.Add(1)
	if tx.req.IsInvite() {
		_ = tx.Reply(sip.StatusRequestTimeout, "Request Timeout", nil)
	} else {
		_ = tx.Reply(sip.StatusInternalServerError, "Server Internal Error - Suspend Timeout", nil)
	}
	t.notify(tx, EvExpired)
	t.release(tx)
	return true
}

// Abort ends a suspended transaction with the given final response (e.g.
// 503 at shutdown). It reports whether it did.
func (t *Table) Abort(tok Token, code int, reason string, hdrs ...sip.Header) bool {
	return t.AbortPark(tok, 0, code, reason, hdrs...)
}

// AbortPark is Abort for one park of the transaction (0 = any).
func (t *Table) AbortPark(tok Token, park int, code int, reason string, hdrs ...sip.Header) bool {
	tx, err := t.lookup(tok)
	if err != nil {
		return false
	}
	tx.evMu.Lock()
	defer tx.evMu.Unlock()
	if !t.endSuspended(tx, park) {
		return false
	}
	_ = tx.Reply(code, reason, nil, hdrs...)
	t.notify(tx, EvEnded)
	t.release(tx)
	return true
}

func (t *Table) endSuspended(tx *Tx, park int) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	tx.mu.Lock()
	defer tx.mu.Unlock()
	if tx.state != Suspended || (park != 0 && tx.parks != park) {
		return false
	}
	tx.state = Done
	t.parked--
	return true
}

// cancel runs after sipgo answered a CANCEL (200 to it, 487 to the INVITE).
// A parked transaction ends here; a live one is left to its route, whose
// replies are now refused, and whose relay sends the CANCEL downstream.
func (t *Table) cancel(tx *Tx) {
	t.stats.canceled.Add(1)
	tx.closeCancel()
	tx.evMu.Lock()
	defer tx.evMu.Unlock()
	if t.endSuspended(tx, 0) {
		t.notify(tx, EvCanceled)
		t.release(tx)
		return
	}
	t.notify(tx, EvCanceled)
}

// Finish ends a live transaction whose route has answered, relayed or
// dropped it, and frees its slot. Finishing twice is harmless.
func (t *Table) Finish(tx *Tx) {
	tx.evMu.Lock()
	defer tx.evMu.Unlock()
	tx.mu.Lock()
	if tx.state == Done {
		tx.mu.Unlock()
		t.release(tx)
		return
	}
	if tx.state == Suspended {
		tx.mu.Unlock()
		return // parked: the engine owns it
	}
	tx.state = Done
	tx.mu.Unlock()
	t.notify(tx, EvEnded)
	t.release(tx)
}

func (t *Table) release(tx *Tx) {
	t.mu.Lock()
	s := &t.slots[tx.token.Index]
	if s.tx == tx {
		s.tx = nil
		t.free = append(t.free, tx.token.Index)
		t.live--
	}
	t.mu.Unlock()
}

func (t *Table) notify(tx *Tx, ev Event) {
	if t.opts.OnChange != nil {
		t.opts.OnChange(tx, ev)
	}
}

// Stats returns the table's counters.
func (t *Table) Stats() Stats {
	t.mu.Lock()
	live, parked := t.live, t.parked
	t.mu.Unlock()
	return Stats{
		Live: live, Parked: parked,
		Created: t.stats.created.Load(), Suspends: t.stats.suspends.Load(),
		Resumes: t.stats.resumes.Load(), Expired: t.stats.expired.Load(),
		Canceled: t.stats.canceled.Load(), StaleRefused: t.stats.stale.Load(),
		EndedRefused: t.stats.ended.Load(), Rejected: t.stats.rejected.Load(),
		LateCancels: t.stats.lateCancels.Load(),
	}
}

// Parked lists the suspended transactions (for control interfaces).
func (t *Table) Parked() []*Tx {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []*Tx
	for _, s := range t.slots {
		if s.tx != nil && s.tx.State() == Suspended {
			out = append(out, s.tx)
		}
	}
	return out
}

// ParkedTokens returns the tokens of all suspended transactions, e.g. to
// answer them at shutdown.
func (t *Table) ParkedTokens() []Token {
	txs := t.Parked()
	out := make([]Token, len(txs))
	for i, tx := range txs {
		out[i] = tx.token
	}
	return out
}

// Live lists up to max transactions that have not ended (live or
// suspended), for diagnostics such as a shutdown that timed out.
func (t *Table) Live(max int) []*Tx {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []*Tx
	for _, s := range t.slots {
		if len(out) == max {
			break
		}
		if s.tx != nil {
			out = append(out, s.tx)
		}
	}
	return out
}
