// Command testproxy is the proxy the end-to-end tests drive: the common
// flags plus --mode, which picks a route set that exercises one rule of
// suspension. It logs "request route ran" each time its request route runs,
// so tests can count runs.
package main

import (
	"errors"
	"os"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/spf13/pflag"

	"github.com/sipasync/sipasync"
	"github.com/sipasync/sipasync/async"
	"github.com/sipasync/sipasync/routes"
	"github.com/sipasync/sipasync/sipproxy"
	"github.com/sipasync/sipasync/transaction"
)

func main() {
	var mode, nextUser string
	var delay time.Duration
	os.Exit(sipasync.Main("testproxy", os.Args[1:], os.Stderr,
		func(fs *pflag.FlagSet) {
			fs.StringVar(&mode, "mode", "park", "park, suspend, external, chain, task, devstate, failpark, timeoutroute")
			fs.DurationVar(&delay, "delay", time.Second, "park time")
			fs.StringVar(&nextUser, "next-user", "alice", "failpark: the user the external resume names after the first branch failed")
		},
		func(a *sipasync.Server) error {
			if mode == "devstate" {
				return devstateRoutes(a)
			}
			park := func(c *routes.Context, name string) error {
				if delay < time.Second || delay%time.Second != 0 {
					return async.MsRoute(c, name, delay)
				}
				return async.Route(c, name, delay)
			}
			notFound := routes.HandlerFunc(func(c *routes.Context) error { return c.Reply(404, "Not found") })
			var req routes.HandlerFunc
			switch mode {
			case "park":
				req = func(c *routes.Context) error { return park(c, "RESUME") }
			case "suspend":
				req = func(c *routes.Context) error {
					_, err := async.Suspend(c, "RESUME", nil)
					return err
				}
			case "external":
				req = func(c *routes.Context) error {
					e, err := async.EngineOf(c)
					if err != nil {
						return err
					}
					tok, err := async.Suspend(c, "CHECK", nil)
					if err != nil {
						return err
					}
					time.AfterFunc(delay, func() {
						if err := e.Resume(tok, "from-outside"); err != nil {
							a.Log.Error("external resume failed", "error", err)
						}
					})
					return nil
				}
				if err := a.Routes.Route("CHECK", routes.HandlerFunc(func(c *routes.Context) error {
					if c.ResumeReason() != transaction.ReasonExternal || c.ResumeValue() != "from-outside" {
						return routes.Error(500, "Wrong Resume", errors.New("unexpected reason or value"))
					}
					return c.Reply(404, "Not found")
				})); err != nil {
					return err
				}
			case "chain":
				req = func(c *routes.Context) error {
					c.SetAttr("hops", 0)
					return park(c, "STEP")
				}
				if err := a.Routes.Route("STEP", routes.HandlerFunc(func(c *routes.Context) error {
					hops, _ := c.Attr("hops")
					n, _ := hops.(int)
					c.SetAttr("hops", n+1)
					if n+1 < 3 {
						return park(c, "STEP") // suspend again after a resume
					}
					if c.ResumeReason() != transaction.ReasonTimer {
						return routes.Error(500, "Wrong Resume", errors.New("unexpected reason"))
					}
					return c.Reply(404, "Not found")
				})); err != nil {
					return err
				}
			case "task":
				req = func(c *routes.Context) error { return async.TaskRoute(c, "RESUME") }
			case "failpark":
				// An INVITE rings the user "busy" first; its failure goes to
				// failure_route[MISSED], which parks and asks "the outside"
				// where to go next: after --delay a goroutine resumes into
				// route[NEXT] with --next-user, and NEXT relays there (a new
				// branch). Other requests follow the default route.
				def := a.Proxy.DefaultRoute(sipproxy.DefaultOptions{})
				req = func(c *routes.Context) error {
					if !c.Request().IsInvite() || sipproxy.HasToTag(c.Request()) {
						return def.ServeSIP(c)
					}
					c.SetAttr("ruri", c.Request().Recipient.Clone())
					c.Request().Recipient.User = "busy"
					c.RecordRoute()
					c.OnFailure("MISSED")
					return a.Proxy.LookupRelay(c)
				}
				if err := a.Routes.Failure("MISSED", routes.HandlerFunc(func(c *routes.Context) error {
					e, err := async.EngineOf(c)
					if err != nil {
						return err
					}
					tok, err := async.Suspend(c, "NEXT", c.Response().StatusCode)
					if err != nil {
						return err
					}
					time.AfterFunc(delay, func() {
						if err := e.Resume(tok, nextUser); err != nil && !errors.Is(err, transaction.ErrCanceled) {
							a.Log.Error("external resume failed", "error", err)
						}
					})
					return nil
				})); err != nil {
					return err
				}
				if err := a.Routes.Route("NEXT", routes.HandlerFunc(func(c *routes.Context) error {
					if c.Response() == nil || c.Response().StatusCode != 486 {
						return routes.Error(500, "No Held Response", errors.New("route[NEXT] did not see the held 486"))
					}
					ruri, _ := c.Attr("ruri")
					u, _ := ruri.(*sip.Uri)
					if u == nil {
						return routes.Error(500, "No R-URI", errors.New("the request route's R-URI was not kept"))
					}
					next := u.Clone()
					next.User, _ = c.ResumeValue().(string)
					c.Request().Recipient = *next
					return a.Proxy.LookupRelay(c)
				})); err != nil {
					return err
				}
			case "timeoutroute":
				// Suspend with a park timeout of --delay that nobody resumes:
				// route[LATE] runs at the timeout and answers 504.
				req = func(c *routes.Context) error {
					_, err := async.Suspend(c, "RESUME", "lookup", async.Timeout(delay), async.TimeoutRoute("LATE"))
					return err
				}
				if err := a.Routes.Route("LATE", routes.HandlerFunc(func(c *routes.Context) error {
					if c.ResumeReason() != transaction.ReasonTimeout || c.ResumeValue() != "lookup" {
						return routes.Error(500, "Wrong Resume", errors.New("unexpected reason or value"))
					}
					return c.Reply(504, "Server Time-out")
				})); err != nil {
					return err
				}
			default:
				return errors.New("unknown --mode " + mode)
			}
			if err := a.Routes.Route("RESUME", notFound); err != nil {
				return err
			}
			return a.Routes.Request(routes.HandlerFunc(func(c *routes.Context) error {
				if c.Request().IsAck() && mode != "failpark" {
					c.Drop()
					return nil
				}
				c.Logger().Info("request route ran", "method", c.Request().Method)
				return req(c)
			}))
		}))
}
