// Package async is the Go form of Kamailio's async module: functions that a
// route handler calls to park its transaction and resume it later in a named
// route (Route, MsRoute, TaskRoute, TaskGroupRoute), to continue the same
// handler later (Sleep, MsSleep), or to hand work to a worker group without
// parking (TaskData, TaskGroupData, TKVEmit).
//
// A parking call returns nil once the transaction is parked; the handler must
// then return and not touch the Context again (Kamailio's "exits the
// execution of the script"). An error means nothing was parked (Kamailio's
// "returns false"); the handler still owns the transaction and may answer.
// A parked transaction holds no goroutine: it is an entry in the transaction
// table plus one entry in the timer wheel.
//
// The package holds no state of its own beyond the Engine: the table is
// transaction's, the timers timerwheel's, the workers workergroups'.
package async

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/emiago/sipgo/sip"

	"github.com/sipasync/sipasync/internal/lograte"
	"github.com/sipasync/sipasync/observe"
	"github.com/sipasync/sipasync/routes"
	"github.com/sipasync/sipasync/timerwheel"
	"github.com/sipasync/sipasync/transaction"
	"github.com/sipasync/sipasync/workergroups"
)

// Errors returned by the async functions. They are wrapped with detail.
var (
	// Programming errors of a route (routes.ErrProgramming): the proxy
	// logs them at ERROR and counts them by kind.
	ErrNoEngine   = routes.Programming("no_engine", "async: no async engine attached to this route's proxy")
	ErrDelay      = routes.Programming("bad_delay", "async: delay out of range")
	ErrMsTimerOff = routes.Programming("ms_timer_off", "async: millisecond timer is off (set --async-ms-timer)")
	ErrRouteKind  = routes.Programming("route_kind", "async: not allowed in this route")
	ErrNoTx       = routes.Programming("no_transaction", "async: no transaction to suspend")
	ErrTooLong    = routes.Programming("bad_delay", "async: delay not shorter than the suspend timeout")
	// ErrUnknownGroup wraps workergroups.ErrUnknownGroup for a group a
	// route names that is not configured.
	ErrUnknownGroup = routes.Programming("unknown_group", "async: worker group not configured")

	ErrResumeFailed = errors.New("async: resume could not be scheduled")
	// ErrResumeAnswered is returned (with ErrResumeFailed) by Resume and
	// Continue when the module workers could not take the resume: the
	// park was taken and the call answered 503 with Retry-After, so it is
	// not left parked; the caller need not retry.
	ErrResumeAnswered = errors.New("async: module workers full: the call was answered 503")
)

// Limits of the delays, as Kamailio's async module sets them.
const (
	MaxSeconds = 100 * time.Second
	MaxMillis  = 30000 * time.Millisecond
)

// TKVEventRoute is the event route that TKVEmit runs.
const TKVEventRoute = "core:tkv"

// Runner runs routes on transactions; the proxy implements it.
type Runner interface {
	// RunRoute runs kind[name] on a live transaction and finishes it. res
	// is the final response a failure or reply route parked on (nil
	// otherwise): the route sees it, and it goes upstream if the route
	// neither replies, relays nor parks.
	RunRoute(tx *transaction.Tx, kind routes.Kind, name string, res *sip.Response)
	// RunHandler runs h on a live transaction and finishes it, as RunRoute.
	RunHandler(tx *transaction.Tx, kind routes.Kind, name string, h routes.Handler, res *sip.Response)
	// RunDetached runs kind[name] with no transaction.
	RunDetached(kind routes.Kind, name string, req *sip.Request, data any) error
}

// TKV is a type-key-value record of TKVEmit, readable in
// event_route[core:tkv] through TKVOf (the $atkv(...) analog).
type TKV struct {
	Type  int
	Key   string
	Value string
}

// Config builds an Engine.
type Config struct {
	Table  *transaction.Table
	Routes *routes.Table
	Runner Runner
	Groups *workergroups.Groups
	// MsTimer is the ms_timer resolution; 0 turns the ms forms off. The wheel
	// ticks at MsTimer when it is on, else every 100 ms (the second forms and
	// suspend deadlines need no finer grain).
	MsTimer time.Duration
	// ModuleWorkers run the timer resumes (the module's "workers" param).
	// 0 means GOMAXPROCS.
	ModuleWorkers int
	// TKVGroup runs event_route[core:tkv] ("" = the default group).
	TKVGroup string
	// OnTKV, if set, is the first observer of TKVs.
	OnTKV  func(TKV)
	Clock  clock.Clock
	Logger *slog.Logger
}

// Stats are the engine's counters.
type Stats struct {
	Parks, Resumes, ResumeRefused, ResumeRejected, Expired uint64
	// Refused counts ResumeRefused by reason: RefusalReasons, in order.
	Refused                                   [len(RefusalReasons)]uint64
	TimeoutRoutes                             uint64 // park timeouts that ran a timeout route
	DataTasks, DataRejected, TKV, TKVRejected uint64
	WheelPending                              int
}

// RefusalReasons are the reasons a resume is refused, as Stats.Refused,
// the metrics and the logs name them: the table's (see
// transaction.RefusalReason), "unknown_route" for a Continue into a
// route that does not exist, and "other".
var RefusalReasons = [...]string{"canceled", "timed_out", "already_resumed", "ended", "unknown_token", "unknown_route", "other"}

// RefusedFor returns the count of refusals for one of RefusalReasons.
func (s Stats) RefusedFor(reason string) uint64 {
	for i, name := range RefusalReasons {
		if name == reason {
			return s.Refused[i]
		}
	}
	return 0
}

func refusalIndex(err error) int {
	r := transaction.RefusalReason(err)
	if r == "" && errors.Is(err, routes.ErrUnknownRoute) {
		r = "unknown_route"
	}
	for i, name := range RefusalReasons {
		if name == r {
			return i
		}
	}
	return len(RefusalReasons) - 1
}

type itemKind uint8

const (
	itemResume   itemKind = iota + 1 // a timed park is due
	itemDeadline                     // a park without timer reached its suspend timeout
)

// item is what the wheel holds per parked transaction: 16 bytes. The
// token names the park, so an item armed for an earlier park is refused.
type item struct {
	tok  transaction.Token
	kind itemKind
}

// continuation is a Sleep form's "next action" with the route it parked
// from, so that it runs as that route.
type continuation struct {
	h    routes.Handler
	kind routes.Kind
	name string
}

// Engine runs the async functions for one proxy.
type Engine struct {
	cfg    Config
	log    *slog.Logger
	wheel  *timerwheel.Wheel[item]
	module *workergroups.Group
	tkv    *workergroups.Group

	stats struct {
		parks, resumes, refused, rejected, expired atomic.Uint64
		byReason                                   [len(RefusalReasons)]atomic.Uint64
		timeoutRoutes                              atomic.Uint64
		data, dataRejected, tkv, tkvRejected       atomic.Uint64
	}
	logLimit *lograte.Limiter // one "resume refused" line a second
	started  atomic.Bool
	tkvs     observe.List[TKV]
}

// TKVs is the list of observers of every emitted tkv record, after its
// event route ran (the event bus joins here). They run on a tkv worker.
func (e *Engine) TKVs() *observe.List[TKV] { return &e.tkvs }

// ModuleGroup is the name of the worker group that runs timer resumes.
const ModuleGroup = "async:module"

// New builds an engine. It adds the module's worker group to cfg.Groups.
func New(cfg Config) (*Engine, error) {
	if cfg.Table == nil || cfg.Routes == nil || cfg.Runner == nil || cfg.Groups == nil {
		return nil, errors.New("async: Config needs Table, Routes, Runner and Groups")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.New()
	}
	if cfg.MsTimer < 0 || (cfg.MsTimer > 0 && (cfg.MsTimer < time.Millisecond || cfg.MsTimer > time.Second)) {
		return nil, fmt.Errorf("async: ms timer %s out of range (1ms..1s, 0 = off)", cfg.MsTimer)
	}
	if cfg.ModuleWorkers <= 0 {
		cfg.ModuleWorkers = runtime.GOMAXPROCS(0)
	}
	e := &Engine{cfg: cfg, log: cfg.Logger, logLimit: lograte.New(cfg.Clock, time.Second)}
	e.tkvs.Add(cfg.OnTKV)
	tick := cfg.MsTimer
	if tick == 0 {
		tick = 100 * time.Millisecond
	}
	w, err := timerwheel.New(timerwheel.Options[item]{Tick: tick, Clock: cfg.Clock, Dispatch: e.dispatch})
	if err != nil {
		return nil, fmt.Errorf("async: %w", err)
	}
	e.wheel = w
	e.module, err = cfg.Groups.Add(workergroups.Spec{Name: ModuleGroup, Workers: cfg.ModuleWorkers, Nonblock: true, Queue: 1 << 16})
	if err != nil {
		return nil, fmt.Errorf("async: module workers: %w", err)
	}
	if h, ok := cfg.Runner.(Host); ok {
		if err := h.SetAsync(e); err != nil {
			return nil, fmt.Errorf("async: %w", err)
		}
	}
	if cfg.TKVGroup == "" {
		e.tkv = cfg.Groups.Default()
	} else if e.tkv, err = cfg.Groups.Lookup(cfg.TKVGroup); err != nil {
		return nil, fmt.Errorf("async: tkv group: %w", err)
	}
	return e, nil
}

// Start runs the wheel until ctx ends or Stop. Starting twice is harmless:
// the proxy starts the engine attached to it (see Host), and so may its
// builder.
func (e *Engine) Start(ctx context.Context) {
	if !e.started.CompareAndSwap(false, true) {
		return
	}
	go func() {
		if err := e.wheel.Run(ctx); err != nil && !errors.Is(err, timerwheel.ErrStopped) && ctx.Err() == nil {
			e.log.Error("timer wheel stopped", "error", err)
		}
	}()
}

// Stop stops the wheel. Transactions whose timers were pending are answered
// 503 (with Retry-After); it returns how many.
func (e *Engine) Stop() int {
	n := 0
	for _, it := range e.wheel.Stop() {
		if e.cfg.Table.Abort(it.tok, sip.StatusServiceUnavailable, "Service Unavailable",
			sip.NewHeader("Retry-After", "5")) {
			n++
		}
	}
	return n
}

// Wheel returns the engine's timer wheel (for stats).
func (e *Engine) Wheel() *timerwheel.Wheel[item] { return e.wheel }

// Stats returns the engine's counters.
func (e *Engine) Stats() Stats {
	s := Stats{Parks: e.stats.parks.Load(), Resumes: e.stats.resumes.Load(),
		ResumeRefused: e.stats.refused.Load(), ResumeRejected: e.stats.rejected.Load(),
		Expired: e.stats.expired.Load(), TimeoutRoutes: e.stats.timeoutRoutes.Load(),
		DataTasks: e.stats.data.Load(), DataRejected: e.stats.dataRejected.Load(),
		TKV: e.stats.tkv.Load(), TKVRejected: e.stats.tkvRejected.Load(), WheelPending: e.wheel.Len()}
	for i := range s.Refused {
		s.Refused[i] = e.stats.byReason[i].Load()
	}
	return s
}

// refuse counts a refused resume by its reason and returns err.
func (e *Engine) refuse(err error) error {
	e.stats.refused.Add(1)
	e.stats.byReason[refusalIndex(err)].Add(1)
	return err
}

// Host is what a route Context's engine (routes.Proxy: the proxy)
// implements to carry the async engine: New attaches the engine to its
// Runner when the Runner is a Host, so parking calls find the engine
// through the Context by construction, with no context value to forget.
type Host interface {
	// SetAsync attaches the engine; it fails when another one is attached.
	SetAsync(e any) error
	// Async returns the attached engine, or nil.
	Async() any
}

// EngineOf returns the engine a route Context parks on: the one attached
// to the Context's routes.Proxy (see Host).
func EngineOf(c *routes.Context) (*Engine, error) {
	if h, ok := c.Proxy().(Host); ok {
		if e, ok := h.Async().(*Engine); ok && e != nil {
			return e, nil
		}
	}
	return nil, ErrNoEngine
}

// dispatch runs on the wheel's goroutine: hand the item to the module
// workers and return.
func (e *Engine) dispatch(it item) {
	if err := e.module.Submit(func() { e.fire(it) }); err != nil {
		// The workers are saturated: answer rather than lose the transaction.
		n := e.stats.rejected.Add(1)
		tx, _ := e.cfg.Table.Get(it.tok)
		if e.cfg.Table.Abort(it.tok, sip.StatusServiceUnavailable, "Service Unavailable",
			sip.NewHeader("Retry-After", "1")) && e.logDue() {
			e.log.Warn("resume refused: module workers saturated, answered 503 (logged at most once a second)",
				append(txAttrs(tx, it.tok), "rejected_total", n)...)
		}
	}
}

// logDue reports whether a "resume refused" line may be logged now (at
// most once a second), so an overload does not flood the log.
func (e *Engine) logDue() bool {
	ok, _ := e.logLimit.Allow("rejected")
	return ok
}

// txAttrs are the log attributes of one park: Call-ID, the transaction's
// token (as a route's Context.Logger logs it, so the lines of one call
// match) and the park number.
func txAttrs(tx *transaction.Tx, tok transaction.Token) []any {
	callID := ""
	if tx != nil {
		if cid := tx.Request().CallID(); cid != nil {
			callID = cid.Value()
		}
	}
	return []any{"call_id", callID, "tx", tok.Tx().String(), "park", tok.Park}
}

// fire runs on a module worker: a timed park is due, or a park reached
// its timeout.
func (e *Engine) fire(it item) {
	switch it.kind {
	case itemDeadline:
		tx, err := e.cfg.Table.Get(it.tok)
		if err != nil {
			return
		}
		if s := tx.Suspension(); s.TimeoutRoute != "" {
			tx, err := e.cfg.Table.Continue(it.tok, transaction.ReasonTimeout, nil)
			if err != nil {
				return // resumed or ended meanwhile
			}
			e.stats.timeoutRoutes.Add(1)
			e.stats.resumes.Add(1)
			e.cfg.Runner.RunRoute(tx, routes.KindNamed, s.TimeoutRoute, s.Response)
			return
		}
		if e.cfg.Table.Expire(it.tok) {
			e.stats.expired.Add(1)
			s := tx.Suspension()
			e.log.Info("parked transaction reached its suspend deadline: answered",
				append(txAttrs(tx, it.tok), "route", s.Route, "kind", s.Kind)...)
		}
	case itemResume:
		if tx, err := e.take(it.tok, "", transaction.ReasonTimer, nil); err == nil {
			e.run(tx, "")
		}
	}
}

// take claims the park tok names for a resume into route ("" = the park's
// own target): the park ends now, its timer is cancelled, and the caller
// runs the route. A refusal is counted by reason.
func (e *Engine) take(tok transaction.Token, route string, reason transaction.Reason, value any) (*transaction.Tx, error) {
	if route != "" && !e.cfg.Routes.Has(routes.KindNamed, route) {
		return nil, e.refuse(fmt.Errorf("async: continue %s: %w: route[%s]", tok, routes.ErrUnknownRoute, route))
	}
	tx, err := e.cfg.Table.Continue(tok, reason, value)
	if err != nil {
		return nil, e.refuse(err)
	}
	e.wheel.Cancel(tx.Suspension().Timer)
	e.stats.resumes.Add(1)
	return tx, nil
}

// run runs the resumed route of tx: route[route] when one was chosen at
// resume time, else the park's continuation or its route.
func (e *Engine) run(tx *transaction.Tx, route string) {
	s := tx.Suspension()
	if route == "" {
		if next, ok := s.Next.(*continuation); ok {
			e.cfg.Runner.RunHandler(tx, next.kind, next.name, next.h, s.Response)
			return
		}
		route = s.Route
	}
	e.cfg.Runner.RunRoute(tx, routes.KindNamed, route, s.Response)
}

// Resume continues a park from outside a route (an HTTP callback, a bus
// consumer, a control command) into the park's own route, with reason
// ReasonExternal and value readable through ResumeValue. It is
// t_continue with the park's route; see Continue.
func (e *Engine) Resume(tok transaction.Token, value any) error {
	return e.Continue(tok, "", value)
}

// Continue is t_continue(index, label, route): it ends the park tok names
// and queues route[route] (or, for "", the park's own route or Sleep
// continuation) on a module worker, with reason ReasonExternal. It may be
// called from any goroutine, a route or a worker included, and never
// waits for the route to run.
//
// nil means the route is queued and will run. A refusal leaves the park
// as it was and says why: routes.ErrUnknownRoute (checked before the park
// is touched), transaction.ErrAlreadyResumed (a token is single-use),
// ErrTimedOut, ErrCanceled, ErrEnded, ErrUnknownToken; each is counted by
// reason. When the module workers cannot take the resume the park is
// taken all the same and the call answered 503 with Retry-After: the
// error wraps ErrResumeFailed and ErrResumeAnswered.
func (e *Engine) Continue(tok transaction.Token, route string, value any) error {
	tx, err := e.take(tok, route, transaction.ReasonExternal, value)
	if err != nil {
		return err
	}
	if err := e.module.Submit(func() { e.run(tx, route) }); err != nil {
		n := e.stats.rejected.Add(1)
		_ = tx.Reply(sip.StatusServiceUnavailable, "Service Unavailable", nil, sip.NewHeader("Retry-After", "1"))
		e.cfg.Table.Finish(tx)
		if e.logDue() {
			e.log.Warn("resume refused: module workers saturated, answered 503 (logged at most once a second)",
				append(txAttrs(tx, tok), "rejected_total", n)...)
		}
		return fmt.Errorf("%w: %w: %w", ErrResumeFailed, ErrResumeAnswered, err)
	}
	return nil
}

// park suspends c's transaction with target route (or continuation next)
// and arms a timer of kind k after d; a deadline park may name a timeout
// route. It returns the park's token.
func (e *Engine) park(c *routes.Context, kindName, route string, next routes.Handler, d time.Duration, k itemKind, value any, timeoutRoute string) (transaction.Token, error) {
	tx := c.Tx()
	if tx == nil || tx.ServerTx() == nil || c.Request().IsAck() {
		return transaction.Token{}, fmt.Errorf("%w (%s)", ErrNoTx, kindName)
	}
	var held *sip.Response
	switch c.Kind() {
	case routes.KindRequest, routes.KindNamed:
		held = c.Response() // a named route run from a failure route, or a resume of one
	case routes.KindFailure, routes.KindReply:
		// Park on the final response: it is held, not sent upstream.
		if res := c.Response(); res != nil && res.StatusCode >= 300 {
			held = res
			break
		}
		return transaction.Token{}, fmt.Errorf("%w: %s from %s on a %s response (only a final response of 300 or more can be held)",
			ErrRouteKind, kindName, c.Kind(), statusOf(c.Response()))
	default:
		return transaction.Token{}, fmt.Errorf("%w: %s from %s", ErrRouteKind, kindName, c.Kind())
	}
	if next == nil && !e.cfg.Routes.Has(routes.KindNamed, route) {
		return transaction.Token{}, fmt.Errorf("async: %s: %w: route[%s]", kindName, routes.ErrUnknownRoute, route)
	}
	if timeoutRoute != "" && !e.cfg.Routes.Has(routes.KindNamed, timeoutRoute) {
		return transaction.Token{}, fmt.Errorf("async: %s: timeout %w: route[%s]", kindName, routes.ErrUnknownRoute, timeoutRoute)
	}
	timeout := e.cfg.Table.SuspendTimeout()
	if k == itemResume && d >= timeout {
		return transaction.Token{}, fmt.Errorf("%w: %s >= %s", ErrTooLong, d, timeout)
	}
	var nextAny any
	if next != nil {
		nextAny = &continuation{h: next, kind: c.Kind(), name: c.RouteName()}
	}
	var due time.Time
	if k == itemResume {
		due = e.cfg.Clock.Now().Add(d) // for resume lateness (metrics)
	} else if d == 0 {
		d = timeout
	}
	susp := transaction.Suspension{Route: route, Kind: kindName, Value: value, Next: nextAny, Due: due,
		TimeoutRoute: timeoutRoute, Response: held}
	if k == itemDeadline {
		susp.Timeout = d
	}
	tok, err := e.cfg.Table.Suspend(tx, susp)
	if err != nil {
		return tok, err
	}
	h, err := e.wheel.Add(d, item{tok: tok, kind: k})
	if err != nil {
		// Could not arm the timer: take the transaction back, report.
		_, _ = e.cfg.Table.Continue(tok, transaction.ReasonNone, nil)
		return tok, fmt.Errorf("%w: %w", ErrResumeFailed, err)
	}
	tx.SetTimer(int(tok.Park), h)
	e.stats.parks.Add(1)
	c.MarkParked()
	return tok, nil
}

func statusOf(res *sip.Response) string {
	if res == nil {
		return "missing"
	}
	return strconv.Itoa(res.StatusCode)
}
