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
	_, _, err = e.park(c, "async_route", name, nil, d, itemResume, value)
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
	_, _, err = e.park(c, "async_ms_route", name, nil, d, itemResume, value)
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
	_, _, err = e.park(c, "async_sleep", c.RouteName(), next, d, itemResume, nil)
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
	_, _, err = e.park(c, "async_ms_sleep", c.RouteName(), next, d, itemResume, nil)
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
	e, err := EngineOf(c)
	if err != nil {
		return err
	}
	g, err := e.cfg.Groups.Lookup(group)
	if err != nil {
		return err
	}
	return e.taskRoute(c, name, g, value)
}

func (e *Engine) taskRoute(c *routes.Context, name string, g *workergroups.Group, value any) error {
	tok, park, err := e.park(c, "async_task_route", name, nil, 0, itemDeadline, value)
	if err != nil {
		return err
	}
	if err := g.Submit(func() { _ = e.resume(tok, park, transaction.ReasonTask, nil) }); err != nil {
		// Take the transaction back; the caller may answer (e.g. 503).
		if tx, cerr := e.cfg.Table.ContinuePark(tok, park, transaction.ReasonNone, nil); cerr == nil {
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
	e, err := EngineOf(c)
	if err != nil {
		return err
	}
	g, err := e.cfg.Groups.Lookup(group)
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
// goes to the engine's OnTKV hook (the event bus). Usable from any route.
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
		if e.cfg.OnTKV != nil {
			e.cfg.OnTKV(rec)
		}
	})
	if err != nil {
		e.stats.tkvRejected.Add(1)
		return fmt.Errorf("async: async_tkv_emit: %w", err)
	}
	e.stats.tkv.Add(1)
	return nil
}

// Suspend parks c's transaction with no timer for code outside the engine
// to resume by token (Engine.Resume); route[name] runs then. If nobody
// resumes it within the suspend timeout it is answered (408/500).
func Suspend(c *routes.Context, name string, value any) (transaction.Token, error) {
	e, err := EngineOf(c)
	if err != nil {
		return transaction.Token{}, err
	}
	tok, _, err := e.park(c, "suspend", name, nil, 0, itemDeadline, value)
	return tok, err
}

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
