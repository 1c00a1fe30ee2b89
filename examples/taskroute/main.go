// Command taskroute is the seed's async_task_route example on the default
// route set: each initial request to a local user is parked and resumed in
// route[RESUME] as soon as a worker of the group is free, which relays it.
//
//	go run ./examples/taskroute --async-workers 4
//	go run ./examples/taskroute --async-workers-group "name=abc;workers=4;nonblock=0;usleep=0" --group abc
package main

import (
	"os"

	"github.com/spf13/pflag"

	"github.com/sipasync/sipasync"
	"github.com/sipasync/sipasync/async"
	"github.com/sipasync/sipasync/routes"
	"github.com/sipasync/sipasync/sipproxy"
)

func main() {
	var group string
	os.Exit(sipasync.Main("taskroute", os.Args[1:], os.Stderr,
		func(fs *pflag.FlagSet) {
			fs.StringVar(&group, "group", "", `worker group for the task ("" = the default group)`)
		},
		func(a *sipasync.Server) error {
			a.Routes.Expect(routes.KindNamed, "RESUME", "request_route")
			if group != "" {
				a.Routes.ExpectGroup(group, "request_route (--group)")
			}
			if err := a.Routes.Route("RESUME", routes.HandlerFunc(a.Proxy.LookupRelay)); err != nil {
				return err
			}
			return a.Routes.Request(a.Proxy.DefaultRoute(sipproxy.DefaultOptions{
				BeforeRelay: routes.HandlerFunc(func(c *routes.Context) error {
					if group == "" {
						return async.TaskRoute(c, "RESUME")
					}
					return async.TaskGroupRoute(c, "RESUME", group)
				}),
			}))
		}))
}
