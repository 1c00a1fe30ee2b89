// Command taskdata is the seed's async_task_data example: for each initial
// request to a local user, "caller: <from user> - callee: <to user>" is sent
// to route[LOG] on a worker, which logs it; the request itself is relayed at
// once (nothing is parked).
//
//	go run ./examples/taskdata --async-workers 2
package main

import (
	"os"

	"github.com/sipasync/sipasync"
	"github.com/sipasync/sipasync/async"
	"github.com/sipasync/sipasync/routes"
	"github.com/sipasync/sipasync/sipproxy"
)

func main() {
	os.Exit(sipasync.Main("taskdata", os.Args[1:], os.Stderr, nil, func(a *sipasync.Server) error {
		a.Routes.Expect(routes.KindNamed, "LOG", "request_route")
		if err := a.Routes.Route("LOG", routes.HandlerFunc(func(c *routes.Context) error {
			data, _ := async.DataOf(c)
			c.Logger().Info(data)
			return nil
		})); err != nil {
			return err
		}
		return a.Routes.Request(a.Proxy.DefaultRoute(sipproxy.DefaultOptions{
			BeforeRelay: routes.HandlerFunc(func(c *routes.Context) error {
				req := c.Request()
				data := "caller: " + sipproxy.FromUser(req) + " - callee: " + sipproxy.ToUser(req)
				if err := async.TaskData(c, "LOG", data); err != nil {
					c.Logger().Warn("data task not queued", "error", err) // the call goes on
				}
				return nil
			}),
		}))
	}))
}
