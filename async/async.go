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
	"sync/atomic"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/emiago/sipgo/sip"
	"github.com/sipasync/sipasync/routes"
	"github.com/sipasync/sipasync/timerwheel"
	"github.com/sipasync/sipasync/transaction"
	"github.com/sipasync/sipasync/workergroups"
)

// Errors returned by the async functions. They are wrapped with detail.
var (
	ErrNoEngine     = errors.New("async: no async engine in this context")
	ErrDelay        = errors.New("async: delay out of range")
	ErrMsTimerOff   = errors.New("async: millisecond timer is off (set --async-ms-timer)")
	ErrRouteKind    = errors.New("async: not allowed in this route")
	ErrNoTx         = errors.New("async: no transaction to suspend")
	ErrTooLong      = errors.New("async: delay not shorter than the suspend timeout")
	ErrResumeFailed = errors.New("async: resume could not be scheduled")
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
	// RunRoute runs kind[name] on a live transaction and finishes it.
	RunRoute(tx *transaction.Tx, kind routes.Kind, name string)
	// RunHandler runs h on a live transaction and finishes it.
	RunHandler(tx *transaction.Tx, kind routes.Kind, name string, h routes.Handler)
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
	// OnTKV, if set, receives every emitted record after its event route
	// ran (the event bus hooks in here).
	OnTKV  func(TKV)
	Clock  clock.Clock
	Logger *slog.Logger
}

// Stats are the engine's counters.
type Stats struct {
	Parks, Resumes, ResumeRefused, ResumeRejected, Expired uint64
	DataTasks, DataRejected, TKV, TKVRejected              uint64
	WheelPending                                           int
}

type itemKind uint8

const (
	itemResume   itemKind = iota + 1 // a timed park is due
	itemDeadline                     // a park without timer reached its suspend timeout
)

// item is what the wheel holds per parked transaction: 12 bytes.
type item struct {
	tok  transaction.Token
	park uint16
	kind itemKind
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
		data, dataRejected, tkv, tkvRejected       atomic.Uint64
	}
	rejectLog atomic.Int64 // unix ns of the last "resume refused" line
}

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
	e := &Engine{cfg: cfg, log: cfg.Logger}
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
	if cfg.TKVGroup == "" {
		e.tkv = cfg.Groups.Default()
	} else if e.tkv, err = cfg.Groups.Lookup(cfg.TKVGroup); err != nil {
		return nil, fmt.Errorf("async: tkv group: %w", err)
	}
	return e, nil
}

// Start runs the wheel until ctx ends or Stop.
func (e *Engine) Start(ctx context.Context) {
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
		if e.cfg.Table.AbortPark(it.tok, int(it.park), sip.StatusServiceUnavailable, "Service Unavailable",
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
	return Stats{Parks: e.stats.parks.Load(), Resumes: e.stats.resumes.Load(),
		ResumeRefused: e.stats.refused.Load(), ResumeRejected: e.stats.rejected.Load(),
		Expired: e.stats.expired.Load(), DataTasks: e.stats.data.Load(), DataRejected: e.stats.dataRejected.Load(),
		TKV: e.stats.tkv.Load(), TKVRejected: e.stats.tkvRejected.Load(), WheelPending: e.wheel.Len()}
}

type engineKey struct{}

// WithEngine returns a context carrying e; the proxy's lifetime context
// carries it so that route Contexts find the engine.
func WithEngine(ctx context.Context, e *Engine) context.Context {
	return context.WithValue(ctx, engineKey{}, e)
}

// EngineOf returns the engine a route Context runs under.
func EngineOf(c *routes.Context) (*Engine, error) {
	if e, ok := c.Context().Value(engineKey{}).(*Engine); ok && e != nil {
		return e, nil
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
		if e.cfg.Table.AbortPark(it.tok, int(it.park), sip.StatusServiceUnavailable, "Service Unavailable",
			sip.NewHeader("Retry-After", "1")) && e.logDue(&e.rejectLog) {
			e.log.Warn("resume refused: module workers saturated, answered 503 (logged at most once a second)",
				append(txAttrs(tx, it.tok), "rejected_total", n)...)
		}
	}
}

// logDue reports whether a rate-limited line may be logged now (at most
// once a second), so an overload does not flood the log.
func (e *Engine) logDue(last *atomic.Int64) bool {
	now := e.cfg.Clock.Now().UnixNano()
	prev := last.Load()
	return now-prev >= int64(time.Second) && last.CompareAndSwap(prev, now)
}

// txAttrs are the log attributes of one transaction: Call-ID and token.
func txAttrs(tx *transaction.Tx, tok transaction.Token) []any {
	callID := ""
	if tx != nil {
		if cid := tx.Request().CallID(); cid != nil {
			callID = cid.Value()
		}
	}
	return []any{"call_id", callID, "tx", tok.String()}
}

func (e *Engine) fire(it item) {
	switch it.kind {
	case itemDeadline:
		tx, _ := e.cfg.Table.Get(it.tok)
		if e.cfg.Table.ExpirePark(it.tok, int(it.park)) {
			e.stats.expired.Add(1)
			attrs := txAttrs(tx, it.tok)
			if tx != nil {
				s := tx.Suspension()
				attrs = append(attrs, "route", s.Route, "kind", s.Kind)
			}
			e.log.Info("parked transaction reached its suspend deadline: answered", attrs...)
		}
	case itemResume:
		e.resume(it.tok, int(it.park), transaction.ReasonTimer, nil)
	}
}

// resume continues a parked transaction into its target and runs it.
func (e *Engine) resume(tok transaction.Token, park int, reason transaction.Reason, value any) error {
	tx, err := e.cfg.Table.ContinuePark(tok, park, reason, value)
	if err != nil {
		e.stats.refused.Add(1)
		return err
	}
	s := tx.Suspension()
	e.wheel.Cancel(s.Timer)
	e.stats.resumes.Add(1)
	if next, ok := s.Next.(routes.Handler); ok && next != nil {
		e.cfg.Runner.RunHandler(tx, routes.KindRequest, s.Route, next)
		return nil
	}
	e.cfg.Runner.RunRoute(tx, routes.KindNamed, s.Route)
	return nil
}

// Resume continues a parked transaction from outside a route (an HTTP
// callback, a bus consumer): the target route runs on a module worker with
// reason ReasonExternal and value readable through ResumeValue. A stale,
// ended or not-suspended token is refused with an error.
func (e *Engine) Resume(tok transaction.Token, value any) error {
	tx, err := e.cfg.Table.Get(tok)
	if err != nil {
		return err
	}
	park := tx.Suspension().Park
	if tx.State() != transaction.Suspended {
		return fmt.Errorf("%w: %s", transaction.ErrNotSuspended, tok)
	}
	errc := make(chan error, 1)
	if err := e.module.Submit(func() { errc <- e.resume(tok, park, transaction.ReasonExternal, value) }); err != nil {
		return fmt.Errorf("%w: %w", ErrResumeFailed, err)
	}
	return <-errc
}

// park suspends c's transaction with target route (or continuation next)
// and arms a timer of kind k after d.
func (e *Engine) park(c *routes.Context, kindName, route string, next routes.Handler, d time.Duration, k itemKind, value any) (transaction.Token, int, error) {
	tx := c.Tx()
	if tx == nil || tx.ServerTx() == nil || c.Request().IsAck() {
		return transaction.Token{}, 0, fmt.Errorf("%w (%s)", ErrNoTx, kindName)
	}
	switch c.Kind() {
	case routes.KindRequest, routes.KindNamed:
	default:
		return transaction.Token{}, 0, fmt.Errorf("%w: %s from %s", ErrRouteKind, kindName, c.Kind())
	}
	if next == nil && !e.cfg.Routes.Has(routes.KindNamed, route) {
		return transaction.Token{}, 0, fmt.Errorf("async: %s: %w: route[%s]", kindName, routes.ErrUnknownRoute, route)
	}
	timeout := e.cfg.Table.SuspendTimeout()
	if k == itemResume && d >= timeout {
		return transaction.Token{}, 0, fmt.Errorf("%w: %s >= %s", ErrTooLong, d, timeout)
	}
	var n routes.Handler = next
	var nextAny any
	if n != nil {
		nextAny = n
	}
	var due time.Time
	if k == itemResume {
		due = e.cfg.Clock.Now().Add(d) // for resume lateness (metrics)
	}
	tok, err := e.cfg.Table.Suspend(tx, transaction.Suspension{Route: route, Kind: kindName, Value: value, Next: nextAny, Due: due})
	if err != nil {
		return tok, 0, err
	}
	park := tx.Suspension().Park
	if k == itemDeadline {
		d = timeout
	}
	h, err := e.wheel.Add(d, item{tok: tok, park: uint16(park), kind: k})
	if err != nil {
		// Could not arm the timer: take the transaction back, report.
		_, _ = e.cfg.Table.ContinuePark(tok, park, transaction.ReasonNone, nil)
		return tok, 0, fmt.Errorf("%w: %w", ErrResumeFailed, err)
	}
	tx.SetTimer(park, h)
	e.stats.parks.Add(1)
	c.MarkParked()
	return tok, park, nil
}
