// Command rabbitmq is the seed's event_rabbitmq scenario: every MESSAGE
// request to a local user raises E_SIP_MESSAGE with the R-URI user ("user")
// and the body ("msg"), shipped to RabbitMQ by the rabbitmq transport; then
// the MESSAGE is looked up and relayed.
//
//	go run ./examples/rabbitmq/consume --queue sipmsg &   # declares the queue, prints what arrives
//	go run ./examples/rabbitmq --event 'E_SIP_MESSAGE=rabbitmq:guest:guest@127.0.0.1:5672/sipmsg'
//	sipp -sf testdata/sipp/uac_message.xml -s bob -key code 404 -i 127.0.0.1 -p 5072 -m 3 127.0.0.1:5060
//	rabbitmqctl list_queues name messages consumers        # what waits in the queue
//
// sipasync never declares the queue (as event_rabbitmq): the consumer does.
// --rabbitmq-sync-mode 1 makes each MESSAGE wait for the broker's confirm;
// --rabbitmq-heartbeat sets the AMQP heartbeat (socket parameters
// ;sync=0|1;heartbeat=N override them per socket).
package main

import (
	"os"

	"github.com/sipasync/sipasync"
	"github.com/sipasync/sipasync/eventbus/evi"
	"github.com/sipasync/sipasync/routes"
	"github.com/sipasync/sipasync/sipproxy"
)

func main() {
	os.Exit(sipasync.Main("rabbitmq", os.Args[1:], os.Stderr, nil, setup))
}

// setup is the seed's script. The rabbitmq: transport, its --rabbitmq-*
// flags and its counters on /metrics come with every sipasync program
// (package app registers them before the --event flags are subscribed).
func setup(a *sipasync.Server) error {
	return a.Routes.Request(a.Proxy.DefaultRoute(sipproxy.DefaultOptions{
		OnMessage: func(c *routes.Context) {
			req := c.Request()
			// raise_event("E_SIP_MESSAGE", $avp(attrs), $avp(vals)); in sync
			// mode this waits for the broker's confirm and reports its error.
			if err := a.Events.RaiseEvent(sipasync.EventSIPMessage,
				evi.String("user", req.Recipient.User), evi.String("msg", string(req.Body()))); err != nil {
				c.Logger().Error("cannot raise E_SIP_MESSAGE event", "error", err)
			}
		},
	}))
}
