// Command soakproxy is the proxy the soak run drives (see
// benchmarks/README.md, "Soak"): the default registrar + stateful proxy,
// with the Request-URI user of an initial request choosing what happens to
// it before the location lookup and relay, so that one run exercises every
// way the async package parks or hands off work:
//
//	relay      relayed at once
//	msroute    async.MsRoute --park, then route[RELAY]
//	route      async.Route --park-seconds, then route[RELAY]
//	mssleep    async.MsSleep --park, then the relay as the continuation
//	sleep      async.Sleep --park-seconds, then the relay as the continuation
//	task       async.TaskRoute, then route[RELAY] on a worker
//	suspend    async.Suspend, resumed from outside (Engine.Resume) after
//	           --resume-after into route[RESUMED]
//	taskdata   async.TaskData to route[DATA] (nothing parked), then relayed
//	tkv        async.TKVEmit (nothing parked), then relayed;
//	           event_route[core:tkv] raises E_SOAK_TKV
//	hold       async.MsRoute for --hold: the caller CANCELs it while parked
//	anything else: relayed to its registered contact (404 if none)
//
// Every MESSAGE raises E_SIP_MESSAGE (the seed's event) and is answered
// 200 by the proxy. Ship both events with --event, e.g.
// --event 'E_SOAK_TKV=rabbitmq:127.0.0.1/QUEUE'.
package main

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/spf13/pflag"

	"github.com/sipasync/sipasync"
	"github.com/sipasync/sipasync/async"
	"github.com/sipasync/sipasync/eventbus/evi"
	"github.com/sipasync/sipasync/routes"
	"github.com/sipasync/sipasync/sipproxy"
	"github.com/sipasync/sipasync/transaction"
)

// EventTKV is raised from event_route[core:tkv] for every tkv record.
const EventTKV = "E_SOAK_TKV"

// resumeValue is what the external resumer passes to route[RESUMED].
const resumeValue = "soak"

func main() {
	var park, hold, resumeAfter time.Duration
	var parkSeconds time.Duration
	os.Exit(sipasync.Main("soakproxy", os.Args[1:], os.Stderr,
		func(fs *pflag.FlagSet) {
			fs.DurationVar(&park, "park", 50*time.Millisecond, "park time of msroute and mssleep (needs --async-ms-timer)")
			fs.DurationVar(&parkSeconds, "park-seconds", time.Second, "park time of route and sleep (whole seconds)")
			fs.DurationVar(&hold, "hold", 10*time.Second, "park time of hold (the caller cancels before it; up to 30s)")
			fs.DurationVar(&resumeAfter, "resume-after", 100*time.Millisecond, "suspend: the external resume comes this much later")
		},
		func(a *sipasync.Server) error { return setup(a, park, parkSeconds, hold, resumeAfter) }))
}

func setup(a *sipasync.Server, park, parkSeconds, hold, resumeAfter time.Duration) error {
	if err := a.Events.Declare(EventTKV); err != nil {
		return err
	}
	relay := routes.HandlerFunc(a.Proxy.LookupRelay)
	for name, h := range map[string]routes.HandlerFunc{
		"RELAY": relay,
		"RESUMED": func(c *routes.Context) error {
			if c.ResumeReason() != transaction.ReasonExternal || c.ResumeValue() != resumeValue {
				return routes.Error(500, "Wrong Resume", fmt.Errorf("resumed by %v with %v", c.ResumeReason(), c.ResumeValue()))
			}
			return a.Proxy.LookupRelay(c)
		},
		"DATA": func(c *routes.Context) error {
			if _, ok := async.DataOf(c); !ok {
				return errors.New("data task without data")
			}
			return nil
		},
	} {
		if err := a.Routes.Route(name, h); err != nil {
			return err
		}
	}
	a.Routes.Expect(routes.KindNamed, "RELAY", "request_route")
	a.Routes.Expect(routes.KindNamed, "RESUMED", "request_route")
	a.Routes.Expect(routes.KindNamed, "DATA", "request_route")
	if err := a.Routes.Event(async.TKVEventRoute, routes.HandlerFunc(func(c *routes.Context) error {
		rec, _ := async.TKVOf(c)
		if !a.Events.Probe(EventTKV) {
			return nil
		}
		return a.Events.RaiseEvent(EventTKV, evi.Int("type", int64(rec.Type)),
			evi.String("key", rec.Key), evi.String("value", rec.Value))
	})); err != nil {
		return err
	}

	before := func(c *routes.Context) error {
		req := c.Request()
		if req.Method == sip.MESSAGE {
			return c.Reply(200, "OK")
		}
		if req.Method != sip.INVITE {
			return nil
		}
		switch user := req.Recipient.User; user {
		case "msroute":
			return async.MsRoute(c, "RELAY", park)
		case "route":
			return async.Route(c, "RELAY", parkSeconds)
		case "mssleep":
			return async.MsSleep(c, park, relay)
		case "sleep":
			return async.Sleep(c, parkSeconds, relay)
		case "task":
			return async.TaskRoute(c, "RELAY")
		case "hold":
			return async.MsRoute(c, "RELAY", hold)
		case "suspend":
			e, err := async.EngineOf(c)
			if err != nil {
				return err
			}
			tok, err := async.Suspend(c, "RESUMED", nil)
			if err != nil {
				return err
			}
			time.AfterFunc(resumeAfter, func() {
				if err := e.Resume(tok, resumeValue); err != nil {
					a.Log.Warn("external resume failed", "tx", tok.String(), "error", err)
				}
			})
			return nil
		case "taskdata":
			return async.TaskData(c, "DATA", "caller: "+sipproxy.FromUser(req)+" - callee: "+user)
		case "tkv":
			return async.TKVEmit(c, 8000, "call", "caller='"+sipproxy.FromUser(req)+"';callee='"+user+"'")
		}
		return nil
	}
	return a.Routes.Request(a.Proxy.DefaultRoute(sipproxy.DefaultOptions{
		OnMessage:   a.RaiseSIPMessage,
		BeforeRelay: routes.HandlerFunc(before),
	}))
}
