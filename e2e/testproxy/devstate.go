package main

import (
	"strings"

	"github.com/emiago/sipgo/sip"

	"github.com/sipasync/sipasync"
	"github.com/sipasync/sipasync/devicestate"
	"github.com/sipasync/sipasync/routes"
	"github.com/sipasync/sipasync/sipproxy"
)

// devstateRoutes is --mode devstate: the default registrar + proxy, and an
// OPTIONS to a local user is answered 200 with the user's device state as
// this node aggregates it (X-Device-State) and the views it comes from
// (X-Device-Views: node=STATE, "(gone)" for a node that expired).
func devstateRoutes(a *sipasync.Server) error {
	return a.Routes.Request(a.Proxy.DefaultRoute(sipproxy.DefaultOptions{
		BeforeRelay: routes.HandlerFunc(func(c *routes.Context) error {
			req := c.Request()
			if req.Method != sip.OPTIONS {
				return nil
			}
			dev := req.Recipient.User
			ch, _ := a.DeviceState.Change(dev)
			views := make([]string, len(ch.Views))
			for i, v := range ch.Views {
				views[i] = v.Node + "=" + v.State.String()
				if !v.Alive {
					views[i] += "(gone)"
				}
			}
			return c.Reply(200, "OK",
				sip.NewHeader("X-Device-State", devicestate.Get(dev).String()),
				sip.NewHeader("X-Device-Views", strings.Join(views, ",")))
		}),
	}))
}
