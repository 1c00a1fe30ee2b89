package async

import (
	"fmt"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/sipasync/sipasync/routes"
	"github.com/sipasync/sipasync/transaction"
	"github.com/sipasync/sipasync/workergroups"
)

// Route is async_route(name, seconds): park the transaction and resume it in
// route[name] after d, a whole number of seconds from 1 to 100.
func Route(c *routes.Context, name string, d time.Duration) error {
	return RouteValue(c, name, d, nil)
}

// RouteValue is Route carrying a typed value to the resumed route
// (Context.ResumeValue).
func RouteValue(c *routes.Context, name string, d time.Duration, value any) error {
	if err := checkSeconds(d); err != nil {
		return err
	}
	e, err := EngineOf(c)
	if err != nil {
		return err
	}
	_, err = e.park(c, "async_route", name, nil, d, itemResume, value, "")
	return err
}

// MsRoute is async_ms_route(name, ms): as Route, with a delay of 1 ms to
// 30 s; only when the ms timer is on.
func MsRoute(c *routes.Context, name string, d time.Duration) error {
	return MsRouteValue(c, name, d, nil)
}

// MsRouteValue is MsRoute carrying a typed value.
func MsRouteValue(c *routes.Context, name string, d time.Duration, value any) error {
	e, err := EngineOf(c)
	if err != nil {
		return err
	}
	if err := e.checkMillis(d); err != nil {
		return err
	}
	_, err = e.park(c, "async_ms_route", name, nil, d, itemResume, value, "")
	return err
}

// Sleep is async_sleep(seconds): park, then after d run next — "the next
// action" of Kamailio's script — on the same transaction. The transaction's
// processing ends when next returns.
func Sleep(c *routes.Context, d time.Duration, next routes.HandlerFunc) error {
	if err := checkSeconds(d); err != nil {
		return err
	}
	if next == nil {
		return fmt.Errorf("async: async_sleep: %w", routes.ErrNilHandler)
	}
	e, err := EngineOf(c)
	if err != nil {
		return err
	}
	_, err = e.park(c, "async_sleep", c.RouteName(), next, d, itemResume, nil, "")
	return err
}

// MsSleep is async_ms_sleep(ms): as Sleep with 1 ms to 30 s; only when the
// ms timer is on.
func MsSleep(c *routes.Context, d time.Duration, next routes.HandlerFunc) error {
	e, err := EngineOf(c)
	if err != nil {
		return err
	}
	if err := e.checkMillis(d); err != nil {
		return err
	}
	if next == nil {
		return fmt.Errorf("async: async_ms_sleep: %w", routes.ErrNilHandler)
	}
	_, err = e.park(c, "async_ms_sleep", c.RouteName(), next, d, itemResume, nil, "")
	return err
}

// TaskRoute is async_task_route(name): park and resume in route[name] as
// soon as a worker of the default group is free.
func TaskRoute(c *routes.Context, name string) error {
	e, err := EngineOf(c)
	if err != nil {
		return err
	}
	return e.taskRoute(c, name, e.cfg.Groups.Default(), nil)
}

// TaskGroupRoute is async_task_group_route(name, group): as TaskRoute on
// the named group. An unknown group is an error.
func TaskGroupRoute(c *routes.Context, name, group string) error {
	return TaskGroupRouteValue(c, name, group, nil)
}

// TaskGroupRouteValue is TaskGroupRoute carrying a typed value.
func TaskGroupRouteValue(c *routes.Context, name, group string, value any) error {
	e, g, err := engineAndGroup(c, group)
	if err != nil {
		return err
	}
	return e.taskRoute(c, name, g, value)
}

// engineAndGroup finds c's engine and the named worker group.
func engineAndGroup(c *routes.Context, group string) (*Engine, *workergroups.Group, error) {
	e, err := EngineOf(c)
	if err != nil {
		return nil, nil, err
	}
	g, err := e.cfg.Groups.Lookup(group)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrUnknownGroup, err)
	}
	return e, g, nil
}

func (e *Engine) taskRoute(c *routes.Context, name string, g *workergroups.Group, value any) error {
	tok, err := e.park(c, "async_task_route", name, nil, 0, itemDeadline, value, "")
	if err != nil {
		return err
	}
	if err := g.Submit(func() {
		if tx, err := e.take(tok, "", transaction.ReasonTask, nil); err == nil {
			e.run(tx, "")
		}
	}); err != nil {
		// Take the transaction back; the caller may answer (e.g. 503).
		if tx, cerr := e.cfg.Table.Continue(tok, transaction.ReasonNone, nil); cerr == nil {
			e.wheel.Cancel(tx.Suspension().Timer)
			c.UnmarkParked()
		}
		return fmt.Errorf("async: async_task_route to group %q: %w", g.Name(), err)
	}
	return nil
}

// TaskData is async_task_data(name, data): run route[name] on a worker of
// the default group with a synthetic request; data is readable there with
// DataOf. Nothing is parked; usable from any route.
func TaskData(c *routes.Context, name string, data any) error {
	e, err := EngineOf(c)
	if err != nil {
		return err
	}
	return e.taskData(name, e.cfg.Groups.Default(), data)
}

// TaskGroupData is async_task_group_data(name, group, data).
func TaskGroupData(c *routes.Context, name, group string, data any) error {
	e, g, err := engineAndGroup(c, group)
	if err != nil {
		return err
	}
	return e.taskData(name, g, data)
}

func (e *Engine) taskData(name string, g *workergroups.Group, data any) error {
	if !e.cfg.Routes.Has(routes.KindNamed, name) {
		return fmt.Errorf("async: async_task_data: %w: route[%s]", routes.ErrUnknownRoute, name)
	}
	err := g.Submit(func() {
		if err := e.cfg.Runner.RunDetached(routes.KindNamed, name, syntheticRequest(), data); err != nil {
			e.log.Warn("data task route failed", "route", name, "error", err)
		}
	})
	if err != nil {
		e.stats.dataRejected.Add(1)
		return fmt.Errorf("async: async_task_data to group %q: %w", g.Name(), err)
	}
	e.stats.data.Add(1)
	return nil
}

// TKVEmit is async_tkv_emit(type, key, value): event_route[core:tkv] runs
// on the tkv group with the record readable through TKVOf, and the record
// goes to the engine's TKVs observers (the event bus). Usable from any route.
func TKVEmit(c *routes.Context, typ int, key, value string) error {
	e, err := EngineOf(c)
	if err != nil {
		return err
	}
	return e.EmitTKV(TKV{Type: typ, Key: key, Value: value})
}

// EmitTKV is TKVEmit for code outside a route.
func (e *Engine) EmitTKV(rec TKV) error {
	err := e.tkv.Submit(func() {
		if e.cfg.Routes.Has(routes.KindEvent, TKVEventRoute) {
			if err := e.cfg.Runner.RunDetached(routes.KindEvent, TKVEventRoute, syntheticRequest(), rec); err != nil {
				e.log.Warn("tkv event route failed", "error", err)
			}
		}
		e.tkvs.Notify(rec)
	})
	if err != nil {
		e.stats.tkvRejected.Add(1)
		return fmt.Errorf("async: async_tkv_emit: %w", err)
	}
	e.stats.tkv.Add(1)
	return nil
}

// Suspend parks c's transaction with no timer, for code outside the
// engine to resume by the returned token (Engine.Resume, Engine.Continue):
// t_suspend. route[name] runs then. The token names this park and resumes
// it once. Without options the park times out at the suspend timeout and
// is answered 408 (INVITE) or 500; Timeout sets a shorter one and
// TimeoutRoute a route to run instead of that answer.
//
// Suspend works in a request route, a named route, and a failure route or
// a reply route on a final response of 300 or more: there the response is
// held (not sent upstream), the resumed route sees it as
// Context.Response, may relay again or reply, and it goes upstream if the
// route does neither.
func Suspend(c *routes.Context, name string, value any, opts ...ParkOption) (transaction.Token, error) {
	e, err := EngineOf(c)
	if err != nil {
		return transaction.Token{}, err
	}
	var o parkOptions
	for _, opt := range opts {
		opt(&o)
	}
	timeout := e.cfg.Table.SuspendTimeout()
	if o.timeout != 0 && (o.timeout < time.Millisecond || o.timeout > timeout) {
		return transaction.Token{}, fmt.Errorf("%w: timeout %s (1ms..%s, the suspend timeout)", ErrDelay, o.timeout, timeout)
	}
	return e.park(c, "suspend", name, nil, o.timeout, itemDeadline, value, o.timeoutRoute)
}

// A ParkOption sets how a park made by Suspend ends when nobody resumes it.
type ParkOption func(*parkOptions)

type parkOptions struct {
	timeout      time.Duration
	timeoutRoute string
}

// Timeout sets the park's timeout, from 1 ms to the suspend timeout (the
// default). It is exact to the wheel's tick (--async-ms-timer, else
// 100 ms).
func Timeout(d time.Duration) ParkOption { return func(o *parkOptions) { o.timeout = d } }

// TimeoutRoute names route[name] to run when the park times out, with
// ResumeReason() == transaction.ReasonTimeout and the park's value as
// ResumeValue; it may reply, relay or park again. Without it the timeout
// is answered 408 (INVITE) or 500. A resume that comes after the timeout
// is refused with transaction.ErrTimedOut.
func TimeoutRoute(name string) ParkOption { return func(o *parkOptions) { o.timeoutRoute = name } }

// DataOf returns the data of a data task as a string (the $async(data)
// analog); ok is false when the route is not a data task or the data is not
// a string.
func DataOf(c *routes.Context) (string, bool) {
	s, ok := c.Data().(string)
	return s, ok
}

// TKVOf returns the record in event_route[core:tkv].
func TKVOf(c *routes.Context) (TKV, bool) {
	t, ok := c.Data().(TKV)
	return t, ok
}

func checkSeconds(d time.Duration) error {
	if d < time.Second || d > MaxSeconds || d%time.Second != 0 {
		return fmt.Errorf("%w: %s (whole seconds, 1s..100s)", ErrDelay, d)
	}
	return nil
}

func (e *Engine) checkMillis(d time.Duration) error {
	if e.cfg.MsTimer == 0 {
		return ErrMsTimerOff
	}
	if d < time.Millisecond || d > MaxMillis || d%time.Millisecond != 0 {
		return fmt.Errorf("%w: %s (whole ms, 1ms..30s)", ErrDelay, d)
	}
	return nil
}

// syntheticRequest is the faked request a data task or event route sees.
func syntheticRequest() *sip.Request {
	req := sip.NewRequest(sip.OPTIONS, sip.Uri{Scheme: "sip", Host: "127.0.0.1"})
	cid := sip.CallIDHeader("async-task")
	req.AppendHeader(&cid)
	return req
}
