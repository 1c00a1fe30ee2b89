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
	"math"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/emiago/sipgo/sip"
	"github.com/sipasync/sipasync/observe"
	"github.com/sipasync/sipasync/timerwheel"
)

// Errors returned by the table. They are wrapped with the token or detail.
var (
	ErrUnknownToken   = errors.New("transaction: unknown token (never issued)")
	ErrEnded          = errors.New("transaction: ended")
	ErrStale          = errors.New("transaction: stale token (its slot serves a newer transaction)")
	ErrAlreadyResumed = errors.New("transaction: park already resumed (a token is single-use)")
	ErrTimedOut       = errors.New("transaction: park timed out")
	ErrNotSuspended   = errors.New("transaction: not suspended")
	ErrNotLive        = errors.New("transaction: not live (suspended or ended)")
	ErrCanceled       = errors.New("transaction: canceled")
	ErrFinal          = errors.New("transaction: final response already sent")
	ErrTableFull      = errors.New("transaction: table full")
	ErrTooMany        = errors.New("transaction: too many parked transactions")
	ErrNoServerTx     = errors.New("transaction: no server transaction to answer")
	ErrBadToken       = errors.New("transaction: malformed token")
	ErrParkLimit      = errors.New("transaction: park number limit reached")
)

// RefusalReason names why a resume was refused, for counters and logs:
// "canceled", "timed_out", "already_resumed", "ended", "unknown_token", or
// "" when err is none of the table's refusals.
func RefusalReason(err error) string {
	switch {
	case errors.Is(err, ErrCanceled):
		return "canceled"
	case errors.Is(err, ErrTimedOut):
		return "timed_out"
	case errors.Is(err, ErrAlreadyResumed):
		return "already_resumed"
	case errors.Is(err, ErrEnded):
		return "ended"
	case errors.Is(err, ErrUnknownToken), errors.Is(err, ErrBadToken):
		return "unknown_token"
	}
	return ""
}

// Token identifies a transaction, and with Park one park of it: the slot
// index, the label (generation) of the slot when the transaction was
// created, and the park number (1, 2, ...; 0 names the transaction, not a
// park). Suspend returns a park token; it resumes that park once and is
// refused after that, so a callback delivered twice cannot resume a later
// park. Tokens are values: copy them into closures, queue messages or
// HTTP callbacks freely.
type Token struct {
	Index uint32
	Label uint32
	Park  uint32
}

// Tx returns the token of the transaction itself (Park 0).
func (t Token) Tx() Token { return Token{Index: t.Index, Label: t.Label} }

// String formats the token as "index:label" (a transaction) or
// "index:label:park" (a park), the forms ParseToken reads.
func (t Token) String() string {
	s := strconv.FormatUint(uint64(t.Index), 10) + ":" + strconv.FormatUint(uint64(t.Label), 10)
	if t.Park != 0 {
		s += ":" + strconv.FormatUint(uint64(t.Park), 10)
	}
	return s
}

// ParseToken reads "index:label" or "index:label:park" (park >= 1).
func ParseToken(s string) (Token, error) {
	parts := strings.Split(s, ":")
	if len(parts) != 2 && len(parts) != 3 {
		return Token{}, fmt.Errorf("%w: %q (want index:label:park)", ErrBadToken, s)
	}
	var n [3]uint32
	for i, p := range parts {
		v, err := strconv.ParseUint(p, 10, 32)
		if err != nil || (i == 2 && v == 0) {
			return Token{}, fmt.Errorf("%w: %q (want index:label:park)", ErrBadToken, s)
		}
		n[i] = uint32(v)
	}
	return Token{Index: n[0], Label: n[1], Park: n[2]}, nil
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
	ReasonTimeout                // the park's timeout passed and its timeout route runs
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
	Route        string        // route to resume into (informational for Sleep forms)
	Kind         string        // e.g. "route", "ms_route", "sleep", "task"
	Timeout      time.Duration // 0: the table's default
	TimeoutRoute string        // route the engine runs at the timeout ("" = the table's answer)
	Value        any           // typed value carried to the resumed route
	Next         any           // the engine's continuation (Sleep forms); opaque here
	// Response is the final response a failure or reply route parked on:
	// held, not yet sent upstream, for the resumed route to see.
	Response *sip.Response
	Deadline time.Time         // set by Suspend
	Since    time.Time         // set by Suspend
	Due      time.Time         // when a timed park is meant to resume (zero: no timer); for resume lateness
	Park     int               // which park of the transaction this is (1, 2, ...), set by Suspend
	Timer    timerwheel.Handle // the engine's timer for this park, set by SetTimer
}

// parkEnd is how one park ended, kept in a park history.
type parkEnd uint8

const (
	endResumed  parkEnd = iota + 1 // resumed by its timer, task, or token
	endTimedOut                    // its timeout passed (answered, or a timeout route ran)
	endCanceled                    // a CANCEL ended the transaction while parked
	endAborted                     // answered while parked (shutdown, overload, control)
)

// history records how the last 16 parks of a transaction ended, 4 bits
// each, so that a refused resume can say why. n counts the ended parks.
type history struct {
	n    uint32
	ends uint64
}

func (h *history) push(e parkEnd) {
	h.n++
	h.ends = h.ends<<4 | uint64(e)
}

// refusal explains why park p (1 <= p <= n) cannot be resumed.
func (h history) refusal(tok Token) error {
	back := h.n - tok.Park
	e := endResumed // beyond the history: it ended, and most parks end resumed
	if back < 16 {
		e = parkEnd(h.ends >> (4 * back) & 0xf)
	}
	switch e {
	case endTimedOut:
		return fmt.Errorf("%w: %s", ErrTimedOut, tok)
	case endCanceled:
		return fmt.Errorf("%w: %s", ErrCanceled, tok)
	case endAborted:
		return fmt.Errorf("%w: %s (answered while parked)", ErrEnded, tok)
	}
	return fmt.Errorf("%w: %s", ErrAlreadyResumed, tok)
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
	parks   uint32
	hist    history
	created time.Time
	reason  Reason
	resumeV any

	cancelCh     chan struct{} // made on demand by CancelNotify
	cancelClosed bool

	hooks  []parkHook // AfterParkEnd's, of the current park
	hookID uint64
}

// parkHook is a function AfterParkEnd runs when its park ends.
type parkHook struct {
	id uint64
	f  func()
}

// AfterParkEnd arranges for f to run, on a goroutine of its own, when the
// park tok names ends: resumed, timed out, canceled or answered. It is for
// work done on behalf of a park (an HTTP request, a query) that should stop
// when nobody can use its answer any more. If the park is already over, f
// runs at once. stop unregisters f and reports whether it did so before f
// was started, as context.AfterFunc's stop does.
func (tx *Tx) AfterParkEnd(tok Token, f func()) (stop func() bool) {
	tx.mu.Lock()
	if tok.Park == 0 || tok.Park != tx.parks || tx.state != Suspended {
		tx.mu.Unlock()
		go f()
		return func() bool { return false }
	}
	tx.hookID++
	id := tx.hookID
	tx.hooks = append(tx.hooks, parkHook{id: id, f: f})
	tx.mu.Unlock()
	return func() bool {
		tx.mu.Lock()
		defer tx.mu.Unlock()
		for i, h := range tx.hooks {
			if h.id == id {
				tx.hooks = append(tx.hooks[:i], tx.hooks[i+1:]...)
				return true
			}
		}
		return false
	}
}

// endPark records how the current park ended and starts its hooks. tx.mu
// is held; the hooks run on their own goroutines, so none runs under a
// lock of ours.
func (tx *Tx) endPark(how parkEnd) {
	tx.hist.push(how)
	for _, h := range tx.hooks {
		go h.f()
	}
	tx.hooks = nil
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
	return int(tx.parks)
}

// ParkToken returns the token of the current (or last) park; Park is 0
// when the transaction was never parked.
func (tx *Tx) ParkToken() Token {
	tx.mu.Lock()
	defer tx.mu.Unlock()
	return Token{Index: tx.token.Index, Label: tx.token.Label, Park: tx.parks}
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
	if int(tx.parks) == park && tx.state == Suspended {
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
	if err == nil {
		tx.table.responses.Notify(Response{Request: tx.req, Code: res.StatusCode})
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
	// OnChange, if set, is the first observer of Changes: suspend, resume,
	// expire, cancel, end. Others join with Changes().Add.
	OnChange func(tx *Tx, ev Event)
	// OnRespond, if set, is the first observer of Responses.
	OnRespond func(req *sip.Request, code int)
	// Remember is how long the slot of an ended transaction that was
	// parked is kept before it is reused, so that a late resume with one of
	// its tokens is told how the park ended (canceled, timed out, already
	// resumed) rather than only "ended". 0 means SuspendTimeout.
	Remember time.Duration
	// MaxRemembered bounds the slots kept for Remember; past it the oldest
	// is reused early. 0 means 1<<17 (about 4 MiB of slots).
	MaxRemembered int
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
	hist  history // the parks of the slot's last transaction, once it ended
}

// remembered is a freed slot of a transaction that was parked, and when it
// was freed.
type remembered struct {
	idx uint32
	at  int64 // unix ns
}

// Table holds the transactions. It is safe for concurrent use.
type Table struct {
	opts  Options
	clock clock.Clock

	mu     sync.Mutex
	slots  []slot
	free   []uint32     // slots of transactions never parked: reused at once, last freed first
	recent []remembered // slots of parked ones: reused after Remember, oldest first
	head   int          // first entry of recent still in use
	live   int
	parked int

	changes   observe.List[Change]
	responses observe.List[Response]

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
	if opts.Remember <= 0 {
		opts.Remember = opts.SuspendTimeout
	}
	if opts.MaxRemembered <= 0 {
		opts.MaxRemembered = 1 << 17
	}
	t := &Table{opts: opts, clock: opts.Clock}
	if f := opts.OnChange; f != nil {
		t.changes.Add(func(c Change) { f(c.Tx, c.Event) })
	}
	if f := opts.OnRespond; f != nil {
		t.responses.Add(func(r Response) { f(r.Request, r.Code) })
	}
	return t
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
	idx := t.freeSlot(tx.created)
	s := &t.slots[idx]
	s.label++
	s.tx = tx
	s.hist = history{}
	tx.token = Token{Index: idx, Label: s.label}
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

// freeSlot picks the slot for a new transaction: a free slot, else the
// oldest remembered one once Remember has passed, else a new slot. t.mu is
// held.
func (t *Table) freeSlot(now time.Time) uint32 {
	if n := len(t.free); n > 0 {
		idx := t.free[n-1]
		t.free = t.free[:n-1]
		return idx
	}
	if t.head < len(t.recent) && now.UnixNano()-t.recent[t.head].at >= int64(t.opts.Remember) {
		return t.forgetOldest()
	}
	t.slots = append(t.slots, slot{})
	return uint32(len(t.slots) - 1)
}

// forgetOldest takes the oldest remembered slot off the memory and
// returns it. t.mu is held.
func (t *Table) forgetOldest() uint32 {
	idx := t.recent[t.head].idx
	t.head++
	if t.head == len(t.recent) || t.head > len(t.recent)/2 {
		t.recent = append(t.recent[:0], t.recent[t.head:]...)
		t.head = 0
	}
	return idx
}

// lookup returns the transaction for a token, checking the label. For a
// transaction that ended it says how its park ended, while the slot
// remembers it.
func (t *Table) lookup(tok Token) (*Tx, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if int(tok.Index) >= len(t.slots) {
		return nil, fmt.Errorf("%w: %s", ErrUnknownToken, tok)
	}
	s := t.slots[tok.Index]
	switch {
	case tok.Label > s.label:
		return nil, fmt.Errorf("%w: %s", ErrUnknownToken, tok)
	case tok.Label < s.label:
		t.stats.stale.Add(1)
		return nil, fmt.Errorf("%w: %w: %s (slot now at label %d)", ErrEnded, ErrStale, tok, s.label)
	case s.tx != nil:
		return s.tx, nil
	}
	t.stats.ended.Add(1)
	if tok.Park > s.hist.n {
		return nil, fmt.Errorf("%w: %s", ErrUnknownToken, tok)
	}
	if tok.Park != 0 {
		return nil, s.hist.refusal(tok)
	}
	return nil, fmt.Errorf("%w: %s", ErrEnded, tok)
}

// parkable reports whether tok names the current park of tx, which must be
// suspended, or why not. tx.mu is held.
func (tx *Tx) parkable(tok Token) error {
	switch {
	case tok.Park == 0 || tok.Park > tx.parks:
		return fmt.Errorf("%w: %s (the transaction has %d parks)", ErrUnknownToken, tok, tx.parks)
	case tok.Park <= tx.hist.n:
		return tx.hist.refusal(tok)
	case tx.canceled.Load():
		return fmt.Errorf("%w: %s", ErrCanceled, tok)
	case tx.state != Suspended:
		return fmt.Errorf("%w: %s is %s", ErrNotSuspended, tok, tx.state)
	}
	return nil
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
	if tx.parks == math.MaxUint32 {
		tx.mu.Unlock()
		t.mu.Unlock()
		return Token{}, fmt.Errorf("%w: %s parked %d times", ErrParkLimit, tx.token, tx.parks)
	}
	tx.state = Suspended
	tx.parks++
	s.Park = int(tx.parks)
	tx.susp = s
	first := tx.parks == 1
	tok := Token{Index: tx.token.Index, Label: tx.token.Label, Park: tx.parks}
	t.parked++
	tx.mu.Unlock()
	t.mu.Unlock()
	t.stats.suspends.Add(1)

	t.notify(tx, EvSuspended)
	if tx.stx != nil && tx.req.IsInvite() && first && s.Response == nil {
		// A retransmission before sipgo's 200 ms timer would cancel its
		// automatic 100 Trying; send it now. (A park on a failure route's
		// response comes after the relay's 100.)
		_ = tx.Respond(trying(tx.req))
	}
	return tok, nil
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

// Continue takes the park tok names back to live for a resume and
// returns its transaction; the caller runs the route. A token is
// single-use: once its park ended, Continue refuses it and says why —
// ErrAlreadyResumed, ErrTimedOut, ErrCanceled, ErrEnded (the transaction
// ended), or ErrUnknownToken. Nothing is sent. Resuming with
// ReasonTimeout records the park as timed out (its timeout route runs).
func (t *Table) Continue(tok Token, reason Reason, value any) (*Tx, error) {
	tx, err := t.lookup(tok)
	if err != nil {
		return nil, err
	}
	tx.evMu.Lock()
	defer tx.evMu.Unlock()
	t.mu.Lock()
	tx.mu.Lock()
	if err := tx.parkable(tok); err != nil {
		tx.mu.Unlock()
		t.mu.Unlock()
		return nil, err
	}
	tx.state = Live
	tx.reason = reason
	if reason == ReasonTimeout {
		tx.endPark(endTimedOut)
	} else {
		tx.endPark(endResumed)
	}
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

// Expire answers the park tok names, still suspended at its deadline (408
// for INVITE, 500 otherwise), and ends the transaction. Park 0 means
// whichever park is current. It reports whether it did.
func (t *Table) Expire(tok Token) bool {
	tx, err := t.lookup(tok)
	if err != nil {
		return false
	}
	tx.evMu.Lock()
	defer tx.evMu.Unlock()
	if !t.endSuspended(tx, tok.Park, endTimedOut) {
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

// Abort ends the park tok names (0: whichever is current) with the given
// final response, e.g. 503 at shutdown. It reports whether it did.
func (t *Table) Abort(tok Token, code int, reason string, hdrs ...sip.Header) bool {
	tx, err := t.lookup(tok)
	if err != nil {
		return false
	}
	tx.evMu.Lock()
	defer tx.evMu.Unlock()
	if !t.endSuspended(tx, tok.Park, endAborted) {
		return false
	}
	_ = tx.Reply(code, reason, nil, hdrs...)
	t.notify(tx, EvEnded)
	t.release(tx)
	return true
}

// endSuspended ends a suspended transaction's park (0: any) as how.
func (t *Table) endSuspended(tx *Tx, park uint32, how parkEnd) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	tx.mu.Lock()
	defer tx.mu.Unlock()
	if tx.state != Suspended || (park != 0 && tx.parks != park) {
		return false
	}
	tx.state = Done
	tx.endPark(how)
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
	if t.endSuspended(tx, 0, endCanceled) {
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
		tx.mu.Lock()
		s.hist = tx.hist
		tx.mu.Unlock()
		if s.hist.n == 0 {
			t.free = append(t.free, tx.token.Index)
		} else {
			t.recent = append(t.recent, remembered{idx: tx.token.Index, at: t.clock.Now().UnixNano()})
			if len(t.recent)-t.head > t.opts.MaxRemembered {
				t.free = append(t.free, t.forgetOldest())
			}
		}
		t.live--
	}
	t.mu.Unlock()
}

func (t *Table) notify(tx *Tx, ev Event) { t.changes.Notify(Change{Tx: tx, Event: ev}) }

// Change is a transaction's state change, as Changes reports it.
type Change struct {
	Tx    *Tx
	Event Event
}

// Response is a response sent on a server transaction, as Responses
// reports it.
type Response struct {
	Request *sip.Request
	Code    int
}

// Changes is the list of observers of the transactions' state changes
// (suspended, resumed, expired, canceled, ended): events, metrics. They run
// on the changing goroutine without table locks held, one transaction's in
// order; keep them short. Join before the first transaction.
func (t *Table) Changes() *observe.List[Change] { return &t.changes }

// Responses is the list of observers of every response sent on a server
// transaction (metrics). They run on the sender's goroutine, possibly under
// a transaction's locks: they must not call into the table.
func (t *Table) Responses() *observe.List[Response] { return &t.responses }

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

// ParkedTokens returns the park tokens of all suspended transactions, e.g.
// to answer them at shutdown.
func (t *Table) ParkedTokens() []Token {
	txs := t.Parked()
	out := make([]Token, len(txs))
	for i, tx := range txs {
		out[i] = tx.ParkToken()
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
