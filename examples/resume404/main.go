// Command resume404 is the seed's async_route example: every request is
// parked for --delay (4 s by default) and then answered 404 in route[RESUME].
//
//	go run ./examples/resume404 --listen udp:127.0.0.1:5060 --delay 4s
//	go run ./examples/resume404 --async-ms-timer 10 --delay 100ms
//
// A whole number of seconds uses async.Route; anything else async.MsRoute,
// which needs --async-ms-timer.
package main

import (
	"os"
	"time"

	"github.com/spf13/pflag"

	"github.com/sipasync/sipasync"
	"github.com/sipasync/sipasync/async"
	"github.com/sipasync/sipasync/routes"
)

func main() {
	var delay time.Duration
	os.Exit(sipasync.Main("resume404", os.Args[1:], os.Stderr,
		func(fs *pflag.FlagSet) {
			fs.DurationVar(&delay, "delay", 4*time.Second, "how long each request is parked before the 404")
		},
		func(a *sipasync.Server) error {
			park := async.Route
			if delay < time.Second || delay%time.Second != 0 {
				park = async.MsRoute
				a.Routes.ExpectMsTimer("request_route (--delay " + delay.String() + ")")
			}
			a.Routes.Expect(routes.KindNamed, "RESUME", "request_route")
			if err := a.Routes.Request(routes.HandlerFunc(func(c *routes.Context) error {
				if c.Request().IsAck() {
					c.Drop()
					return nil
				}
				return park(c, "RESUME", delay)
			})); err != nil {
				return err
			}
			return a.Routes.Route("RESUME", routes.HandlerFunc(func(c *routes.Context) error {
				return c.Reply(404, "Not found")
			}))
		}))
}
