// Command asyncrelay is the default registrar + proxy with every initial
// request to a local user parked for --delay before the location lookup and
// relay (benchmark scenario S2):
//
//	go run ./examples/asyncrelay --async-ms-timer 10 --delay 100ms
package main

import (
	"os"
	"time"

	"github.com/spf13/pflag"

	"github.com/sipasync/sipasync"
	"github.com/sipasync/sipasync/async"
	"github.com/sipasync/sipasync/routes"
	"github.com/sipasync/sipasync/sipproxy"
)

func main() {
	var delay time.Duration
	os.Exit(sipasync.Main("asyncrelay", os.Args[1:], os.Stderr,
		func(fs *pflag.FlagSet) {
			fs.DurationVar(&delay, "delay", 100*time.Millisecond, "park time before the relay")
		},
		func(a *sipasync.Server) error {
			park := async.MsRoute
			if delay >= time.Second && delay%time.Second == 0 {
				park = async.Route
			} else {
				a.Routes.ExpectMsTimer("request_route (--delay " + delay.String() + ")")
			}
			a.Routes.Expect(routes.KindNamed, "RELAY", "request_route")
			if err := a.Routes.Route("RELAY", routes.HandlerFunc(a.Proxy.LookupRelay)); err != nil {
				return err
			}
			return a.Routes.Request(a.Proxy.DefaultRoute(sipproxy.DefaultOptions{
				BeforeRelay: routes.HandlerFunc(func(c *routes.Context) error {
					return park(c, "RELAY", delay)
				}),
			}))
		}))
}
