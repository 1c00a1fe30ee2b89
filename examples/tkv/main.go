// Command tkv is the seed's async_tkv_emit example: every initial request to
// a local user emits the record (8000, "call", "caller='..';callee='..'"),
// which event_route[core:tkv] logs on the tkv worker group; the request is
// relayed as usual.
//
//	go run ./examples/tkv --async-workers-group "name=tkv;workers=1;nonblock=0;usleep=0" --async-tkv-group tkv
package main

import (
	"os"

	"github.com/sipasync/sipasync"
	"github.com/sipasync/sipasync/async"
	"github.com/sipasync/sipasync/routes"
	"github.com/sipasync/sipasync/sipproxy"
)

func main() {
	os.Exit(sipasync.Main("tkv", os.Args[1:], os.Stderr, nil, func(a *sipasync.Server) error {
		if err := a.Routes.Event(async.TKVEventRoute, routes.HandlerFunc(func(c *routes.Context) error {
			rec, _ := async.TKVOf(c)
			c.Logger().Info("tkv", "type", rec.Type, "key", rec.Key, "val", rec.Value)
			return nil
		})); err != nil {
			return err
		}
		return a.Routes.Request(a.Proxy.DefaultRoute(sipproxy.DefaultOptions{
			BeforeRelay: routes.HandlerFunc(func(c *routes.Context) error {
				req := c.Request()
				val := "caller='" + sipproxy.FromUser(req) + "';callee='" + sipproxy.ToUser(req) + "'"
				if err := async.TKVEmit(c, 8000, "call", val); err != nil {
					c.Logger().Warn("tkv not emitted", "error", err) // the call goes on
				}
				return nil
			}),
		}))
	}))
}
