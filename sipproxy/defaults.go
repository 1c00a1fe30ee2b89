package sipproxy

import (
	"errors"
	"strconv"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/sipasync/sipasync/routes"
)

// The default route set: the OpenSIPS sample script's request route
// (maxfwd, loose routing, preloaded Route refused, registrar, location
// lookup, record-routing relay) written as Go building blocks. Each block is
// a method so that a custom route can reuse it, e.g. park with the async
// package before LookupRelay.

// DefaultOptions tune the default request route.
type DefaultOptions struct {
	// BeforeRelay, if set, runs for an initial request to a local user just
	// before the location lookup; it may act on the transaction (park it,
	// answer it). If it leaves the outcome open, the lookup and relay run.
	BeforeRelay routes.Handler
	// OnMessage, if set, runs for every MESSAGE to a local user before the
	// lookup (the seed raises E_SIP_MESSAGE here).
	OnMessage func(c *routes.Context)
	// FailureRoute is armed for relayed INVITEs ("" = none).
	FailureRoute string
}

// Authorizer challenges and verifies a request's credentials (package
// sipauth's digest authentication). Authorize returns the authenticated
// user ("" for a method it does not challenge) and true when the request
// may go on; false when it has answered the request (401, 407, 403, 400).
type Authorizer interface {
	Authorize(c *routes.Context) (user string, ok bool)
}

// DefaultRoute returns the default request route. With Config.Auth set,
// initial requests (no To tag) of the methods it challenges are
// authenticated before anything else is done with them: a REGISTER by the
// user it registers (To), any other request by its sender (From).
func (p *Proxy) DefaultRoute(o DefaultOptions) routes.Handler {
	return routes.HandlerFunc(func(c *routes.Context) error {
		req := c.Request()
		if done := p.CheckMaxForwards(c); done {
			return nil
		}
		if HasToTag(req) {
			return p.InDialog(c)
		}
		if req.Route() != nil {
			if req.IsAck() {
				c.Drop()
				return nil
			}
			return c.Reply(403, "Preload Route denied")
		}
		if req.IsAck() { // an initial ACK matches nothing: absorb it
			c.Drop()
			return nil
		}
		if p.cfg.Auth != nil {
			if _, ok := p.cfg.Auth.Authorize(c); !ok {
				return nil // answered
			}
		}
		if req.Method != sip.REGISTER && req.Method != sip.MESSAGE {
			c.RecordRoute()
		}
		if !p.IsMyself(req.Recipient.Host, req.Recipient.Port) {
			req.AppendHeader(sip.NewHeader("P-hint", "outbound"))
			return c.RelayTo(p.cfg.Outbound)
		}
		switch req.Method {
		case sip.PUBLISH:
			return c.Reply(503, "Service Unavailable")
		case sip.REGISTER:
			return p.Register(c)
		}
		if req.Recipient.User == "" {
			if req.Method == sip.OPTIONS {
				return p.ReplyOptions(c) // a keepalive or health check of the proxy itself
			}
			return c.Reply(484, "Address Incomplete")
		}
		if req.Method == sip.MESSAGE && o.OnMessage != nil {
			o.OnMessage(c)
		}
		if o.BeforeRelay != nil {
			if err := o.BeforeRelay.ServeSIP(c); err != nil || c.Outcome() != routes.OutcomeNone {
				return err
			}
		}
		if req.IsInvite() && o.FailureRoute != "" {
			c.OnFailure(o.FailureRoute)
		}
		return p.LookupRelay(c)
	})
}

// Capabilities the proxy states in answer to an OPTIONS addressed to it.
const (
	// AllowMethods are the methods the proxy routes.
	AllowMethods = "INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, MESSAGE, INFO, UPDATE, PRACK, SUBSCRIBE, NOTIFY, REFER"
	// AcceptTypes are the bodies it takes: it reads none itself and
	// passes every type on.
	AcceptTypes = "*/*"
)

// ReplyOptions answers an OPTIONS request addressed to the proxy itself
// (options_reply(): a Request-URI with no user part naming one of its
// addresses, as health checkers and NAT keepalives send it) with 200,
// Allow, Accept, Accept-Encoding, Accept-Language and Supported.
func (p *Proxy) ReplyOptions(c *routes.Context) error {
	return c.Reply(200, "OK",
		sip.NewHeader("Allow", AllowMethods),
		sip.NewHeader("Accept", AcceptTypes),
		sip.NewHeader("Accept-Encoding", "identity"),
		sip.NewHeader("Accept-Language", "en"),
		sip.NewHeader("Supported", ""))
}

// HasToTag reports whether the request is in-dialog (has_totag()).
func HasToTag(req *sip.Request) bool {
	to := req.To()
	return to != nil && to.Params != nil && to.Params.Has("tag")
}

// CheckMaxForwards answers 483 when Max-Forwards is 0 and reports whether it
// did (mf_process_maxfwd_header). The relay decrements the header.
func (p *Proxy) CheckMaxForwards(c *routes.Context) bool {
	mf := c.Request().MaxForwards()
	if mf == nil || mf.Val() > 0 {
		return false
	}
	if c.Request().IsAck() {
		c.Drop()
		return true
	}
	_ = c.Reply(483, "Too Many Hops")
	return true
}

// InDialog routes a request with a To tag: loose routing and relay, else
// 404 (an ACK that matches nothing is dropped).
func (p *Proxy) InDialog(c *routes.Context) error {
	req := c.Request()
	if p.LooseRoute(c) {
		if req.IsInvite() {
			c.RecordRoute()
		}
		return c.Relay()
	}
	if !p.IsMyself(req.Recipient.Host, req.Recipient.Port) {
		// Route set exhausted and the R-URI is elsewhere: relay to it.
		return c.Relay()
	}
	if req.IsAck() {
		c.Drop()
		return nil
	}
	return c.Reply(404, "Not here")
}

// Register saves the REGISTER's bindings in the location service and answers
// 200 with the current bindings, or the matching error status.
func (p *Proxy) Register(c *routes.Context) error {
	req := c.Request()
	if why := checkRegister(req); why != "" {
		return c.Reply(400, "Bad Request - "+why)
	}
	bs, err := p.loc.Save(req)
	switch {
	case errors.Is(err, ErrIntervalTooBrief):
		return c.Reply(423, "Interval Too Brief",
			sip.NewHeader("Min-Expires", strconv.Itoa(int(p.loc.MinExpires()/time.Second))))
	case errors.Is(err, ErrOutOfOrder):
		return c.Reply(500, "Server Internal Error - CSeq Out Of Order")
	case errors.Is(err, ErrTooManyContacts):
		return c.Reply(503, "Service Unavailable - Too Many Contacts", retryAfter())
	case err != nil:
		return c.Reply(400, "Bad Request - "+err.Error())
	}
	now := p.clock.Now()
	hdrs := make([]sip.Header, 0, len(bs))
	for _, b := range bs {
		h := &sip.ContactHeader{Address: *b.Contact.Clone(), Params: sip.NewParams()}
		secs := int(b.Expires.Sub(now).Round(time.Second) / time.Second)
		h.Params.Add("expires", strconv.Itoa(secs))
		hdrs = append(hdrs, h)
	}
	return c.Reply(200, "OK", hdrs...)
}

// LookupRelay rewrites the R-URI to the callee's registered contact and
// relays (lookup("location") + t_relay). No binding: 404 Not Found.
func (p *Proxy) LookupRelay(c *routes.Context) error {
	req := c.Request()
	key := p.loc.Key(req.Recipient)
	bs := p.loc.Lookup(key)
	if len(bs) == 0 {
		return c.Reply(404, "Not Found")
	}
	c.SetAttr(attrCallee, key)
	req.Recipient = *bs[0].Contact.Clone()
	return c.Relay()
}

// FromUser returns the From URI's user ($fU), "" when absent.
func FromUser(req *sip.Request) string {
	if f := req.From(); f != nil {
		return f.Address.User
	}
	return ""
}

// ToUser returns the To URI's user ($tU), "" when absent.
func ToUser(req *sip.Request) string {
	if t := req.To(); t != nil {
		return t.Address.User
	}
	return ""
}
