// Command fromkamailio is Kamailio's usual routing script written as
// sipasync routes, line by line: Max-Forwards, in-dialog requests with
// loose routing, record-routing, the registrar, the location lookup and
// relay, and a failure route that sends a busy or unanswered call to
// voicemail. docs/from-kamailio.md walks through it.
//
//	go run ./examples/fromkamailio --listen udp:127.0.0.1:5060
package main

import (
	"os"

	"github.com/emiago/sipgo/sip"

	"github.com/sipasync/sipasync"
	"github.com/sipasync/sipasync/routes"
	"github.com/sipasync/sipasync/sipproxy"
)

func main() {
	os.Exit(sipasync.Main("fromkamailio", os.Args[1:], os.Stderr, nil, setup))
}

func setup(s *sipasync.Server) error {
	p := s.Proxy
	t := s.Routes
	t.Expect(routes.KindFailure, "MANAGE_FAILURE", "request_route")

	// request_route { ... }
	if err := t.Request(routes.HandlerFunc(func(c *routes.Context) error {
		req := c.Request()
		// route(REQINIT): if (!mf_process_maxfwd_header("10")) { sl_send_reply("483","Too Many Hops"); exit; }
		if p.CheckMaxForwards(c) {
			return nil // answered 483
		}
		// route(WITHINDLG): if (has_totag()) { if (loose_route()) { ... t_relay(); } else { sl_send_reply("404","Not here"); } exit; }
		if sipproxy.HasToTag(req) {
			return p.InDialog(c)
		}
		// an ACK that matches no transaction: absorb it
		if req.IsAck() {
			c.Drop()
			return nil
		}
		// remove_hf("Route"); if (is_method("INVITE|SUBSCRIBE")) record_route();
		req.RemoveHeader("Route")
		if req.IsInvite() || req.Method == sip.SUBSCRIBE {
			c.RecordRoute()
		}
		// route(REGISTRAR): if (is_method("REGISTER")) { save("location"); exit; }
		if req.Method == sip.REGISTER {
			return p.Register(c)
		}
		// if ($rU==$null) { sl_send_reply("484","Address Incomplete"); exit; }
		if req.Recipient.User == "" {
			if req.Method == sip.OPTIONS {
				return p.ReplyOptions(c) // options_reply(): a keepalive to the proxy itself
			}
			return c.Reply(484, "Address Incomplete")
		}
		// route(LOCATION): if (!lookup("location")) { sl_send_reply("404","Not Found"); exit; }
		//                  t_on_failure("MANAGE_FAILURE"); t_relay();
		if req.IsInvite() {
			c.OnFailure("MANAGE_FAILURE")
		}
		return p.LookupRelay(c) // 404 when not registered
	})); err != nil {
		return err
	}

	// failure_route[MANAGE_FAILURE] {
	//     if (t_is_canceled()) exit;
	//     if (t_check_status("486|408")) { $ru = "sip:voicemail@" + $rd; t_relay(); }
	// }
	return t.Failure("MANAGE_FAILURE", routes.HandlerFunc(func(c *routes.Context) error {
		if c.Tx().Canceled() {
			return nil // the 487 went upstream already
		}
		switch c.Response().StatusCode {
		case 486, 408:
			c.Request().Recipient.User = "voicemail"
			return p.LookupRelay(c) // a new branch; its own final goes upstream
		}
		return nil // anything else: the winning response goes upstream
	}))
}
