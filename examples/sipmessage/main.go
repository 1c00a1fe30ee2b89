// Command sipmessage is the seed's event_rabbitmq scenario on the event
// interface: every MESSAGE request to a local user raises E_SIP_MESSAGE with
// the R-URI user ("user") and the body ("msg"), shipped to every transport
// subscribed with --event; then the MESSAGE is looked up and relayed.
//
//	go run ./examples/sipmessage --event 'E_SIP_MESSAGE=udp:127.0.0.1:8888'
//	nc -klu 127.0.0.1 8888     # watch the events
package main

import (
	"os"

	"github.com/sipasync/sipasync"
	"github.com/sipasync/sipasync/eventbus/evi"
	"github.com/sipasync/sipasync/routes"
	"github.com/sipasync/sipasync/sipproxy"
)

func main() {
	os.Exit(sipasync.Main("sipmessage", os.Args[1:], os.Stderr, nil, func(a *sipasync.Server) error {
		return a.Routes.Request(a.Proxy.DefaultRoute(sipproxy.DefaultOptions{
			OnMessage: func(c *routes.Context) {
				req := c.Request()
				// raise_event("E_SIP_MESSAGE", $avp(attrs), $avp(vals))
				if err := a.Events.RaiseEvent(sipasync.EventSIPMessage,
					evi.String("user", req.Recipient.User), evi.String("msg", string(req.Body()))); err != nil {
					c.Logger().Error("cannot raise E_SIP_MESSAGE event", "error", err)
				}
			},
		}))
	}))
}
