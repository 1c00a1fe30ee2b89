package sipproxy

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/emiago/sipgo/sip"
	"github.com/sipasync/sipasync/routes"
	"github.com/sipasync/sipasync/transaction"
)

// Relay implements routes.Proxy: t_relay. A request other than ACK goes out
// in a client transaction whose responses one goroutine reads and forwards
// upstream (bounded by Config.MaxRelays); an ACK is forwarded statelessly.
func (p *Proxy) Relay(c *routes.Context, dst string) error {
	req := c.Request()
	if req.IsAck() {
		return p.forwardACK(c, dst)
	}
	tx := c.Tx()
	if tx.Canceled() {
		return transaction.ErrCanceled
	}
	if tx.FinalSent() {
		return transaction.ErrFinal
	}
	out, err := p.buildForward(c, dst)
	if err != nil {
		return err
	}
	select {
	case p.relaySem <- struct{}{}:
	default:
		p.stats.relayRejected.Add(1)
		return routes.Error(503, "Service Unavailable", ErrRelayLimit)
	}
	if req.IsInvite() {
		_ = tx.Respond(sip.NewResponseFromRequest(req, sip.StatusTrying, "Trying", nil))
	}
	clTx, err := p.txl.Request(p.ctxOrBackground(), out)
	if err != nil {
		<-p.relaySem
		return routes.Error(503, "Service Unavailable", fmt.Errorf("sipproxy: relay to %s: %w", out.Destination(), err))
	}
	p.stats.relays.Add(1)
	p.stats.activeRelays.Add(1)
	p.relayWG.Add(1)
	r := &relay{p: p, tx: tx, out: out, cl: clTx, failure: c.FailureRoute(), reply: c.ReplyRoute(), ctx: c,
		call: p.callOf(tx, req)}
	if r.call != nil && req.Method == sip.BYE {
		p.reportCall(r.call, CallEnded)
		r.call = nil
	}
	clTx.OnRetransmission(r.onRetransmission)
	go r.loop()
	return nil
}

// buildForward makes the request that goes downstream: same headers and
// body, our Via on top, Max-Forwards decremented, Record-Route if asked.
// The header values are shared with the request, not copied: sipgo's
// parsed headers are read-only once parsed ("always Clone them for
// change"), and neither message changes one after this; what differs
// (Via, Max-Forwards, Record-Route) is new.
func (p *Proxy) buildForward(c *routes.Context, dst string) (*sip.Request, error) {
	req := c.Request()
	var target Target
	var err error
	switch {
	case dst != "":
		target, err = ParseTarget(dst)
	case req.Route() != nil:
		target, err = uriTarget(req.Route().Address)
	default:
		target, err = uriTarget(req.Recipient)
	}
	if err != nil {
		return nil, routes.Error(400, "Bad Request", err)
	}
	l, ok := p.listenFor(target.Transport)
	if !ok {
		return nil, routes.Error(503, "Service Unavailable", fmt.Errorf("%w %s", ErrNoListener, target.Transport))
	}

	out := sip.NewRequest(req.Method, *req.Recipient.Clone())
	out.SipVersion = req.SipVersion
	via := &sip.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: target.Transport,
		Host: l.Host, Port: l.Port, Params: sip.NewParams()}
	via.Params.Add("branch", sip.GenerateBranchN(16))
	out.AppendHeader(via)
	if c.RecordRouted() && !req.IsAck() {
		out.AppendHeader(p.recordRoute(req))
	}
	mfSeen := false
	for _, h := range req.Headers() {
		if mf, ok := h.(*sip.MaxForwardsHeader); ok {
			if mf.Val() <= 0 {
				return nil, routes.Error(483, "Too Many Hops", errors.New("sipproxy: Max-Forwards is 0"))
			}
			n := sip.MaxForwardsHeader(mf.Val() - 1)
			out.AppendHeader(&n)
			mfSeen = true
			continue
		}
		out.AppendHeader(h)
	}
	if !mfSeen {
		n := sip.MaxForwardsHeader(70)
		out.AppendHeader(&n)
	}
	out.SetBody(req.Body())
	out.SetTransport(target.Transport)
	out.SetDestination(target.Addr())
	if target.Transport == "UDP" {
		out.Laddr = sip.Addr{IP: net.ParseIP(l.Host), Port: l.Port}
	}
	return out, nil
}

// recordRoute is this proxy's Record-Route for the transport the request came on.
func (p *Proxy) recordRoute(req *sip.Request) sip.Header {
	tp := strings.ToLower(req.Transport())
	l, ok := p.listenFor(tp)
	if !ok {
		l = p.cfg.Listen[0]
		tp = l.Network
	}
	u := sip.Uri{Scheme: "sip", Host: l.Host, Port: l.Port, UriParams: sip.NewParams()}
	u.UriParams.Add("transport", tp)
	u.UriParams.Add("lr", "")
	return &sip.RecordRouteHeader{Address: u}
}

func uriTarget(u sip.Uri) (Target, error) {
	if u.Host == "" {
		return Target{}, errors.New("sipproxy: no host in URI " + u.String())
	}
	tp := "UDP"
	if u.UriParams != nil {
		if v, ok := u.UriParams.Get("transport"); ok && v != "" {
			tp = strings.ToUpper(v)
		}
	}
	if u.IsEncrypted() && tp == "TCP" {
		tp = "TLS"
	}
	return Target{Transport: tp, Host: strings.Trim(u.Host, "[]"), Port: portOrDefault(u, tp)}, nil
}

// forwardACK sends an ACK for a 2xx downstream without a transaction.
func (p *Proxy) forwardACK(c *routes.Context, dst string) error {
	out, err := p.buildForward(c, dst)
	if err != nil {
		return err
	}
	if err := p.tpl.WriteMsg(out); err != nil {
		return fmt.Errorf("sipproxy: forward ACK to %s: %w", out.Destination(), err)
	}
	p.stats.acks.Add(1)
	return nil
}

// LooseRoute applies RFC 3261 16.4 route processing to an in-dialog request:
// a top Route that names this proxy is removed. It reports whether the
// request carried Route headers (Kamailio's loose_route() result).
func (p *Proxy) LooseRoute(c *routes.Context) bool {
	req := c.Request()
	rt := req.Route()
	if rt == nil {
		return false
	}
	for rt != nil && p.IsMyself(rt.Address.Host, rt.Address.Port) {
		req.RemoveHeader("Route")
		rt = req.Route()
	}
	// Strict-router fallback: an R-URI that is us with no Route left.
	return true
}

// relay is one active client transaction and the server transaction it
// serves; loop runs on its own goroutine until the final response.
type relay struct {
	p       *Proxy
	tx      *transaction.Tx
	out     *sip.Request
	cl      sip.ClientTransaction
	failure string
	reply   string
	ctx     *routes.Context

	canceled bool
	gotProv  bool
	rang     bool
	cancelTx sip.ClientTransaction
	call     *CallEvent // an initial INVITE's call, for Config.OnCall
}

func (r *relay) loop() {
	p := r.p
	defer func() {
		<-p.relaySem
		p.stats.activeRelays.Add(-1)
		p.relayWG.Done()
	}()
	cancelCh := r.tx.CancelNotify()
	var timeout <-chan time.Time
	var timer *clock.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	var cancelResponses <-chan *sip.Response
	for {
		select {
		case res := <-r.cl.Responses():
			if res == nil {
				continue
			}
			if res.StatusCode < 200 {
				if !r.gotProv && r.out.IsInvite() {
					r.gotProv = true
					timer = p.clock.Timer(p.cfg.InviteTimeout)
					timeout = timer.C
				}
				if res.StatusCode > 100 && !r.canceled {
					if !r.rang {
						r.rang = true
						p.reportCall(r.call, CallRinging)
					}
					r.forward(res)
				}
				continue
			}
			r.final(res)
			return
		case <-cancelCh:
			cancelCh = nil
			r.canceled = true
			cancelResponses = r.sendCancel()
		case <-timeout:
			timeout = nil
			cancelResponses = r.sendCancel()
			if !r.canceled {
				_ = r.tx.Reply(sip.StatusRequestTimeout, "Request Timeout", nil)
				p.stats.replies.Add(1)
				r.canceled = true
			}
		case <-cancelResponses:
			// 200 to our CANCEL: keep waiting for the 487.
		case <-r.cl.Done():
			p.reportCall(r.call, CallFailed)
			if !r.canceled && !r.tx.FinalSent() {
				code, reason := 408, "Request Timeout"
				if err := r.cl.Err(); err != nil && errors.Is(err, sip.ErrTransactionTransport) {
					code, reason = 503, "Service Unavailable"
				}
				_ = r.tx.Reply(code, reason, nil)
				p.stats.replies.Add(1)
			}
			p.txs.Finish(r.tx)
			return
		}
	}
}

// final handles the final response: failure route, else forward. A
// failure route (or a reply route on this response) may park the
// transaction: the response is held for the resumed route, and the
// server transaction stays open.
func (r *relay) final(res *sip.Response) {
	p := r.p
	if res.StatusCode >= 300 && r.failure != "" && !r.canceled && !r.tx.Canceled() {
		c := routes.NewContext(routes.ContextOptions{Ctx: p.ctxOrBackground(), Proxy: p, Kind: routes.KindFailure,
			Name: r.failure, Tx: r.tx, Response: res, Logger: p.txLogger(r.tx)})
		c.OnFailure("") // a failure route runs once per arming (t_on_failure)
		h, err := p.routes.Lookup(routes.KindFailure, r.failure)
		if err == nil {
			err = p.serve(h, c)
		}
		switch c.Outcome() {
		case routes.OutcomeRelayed:
			return // a new relay owns the transaction (and the call)
		case routes.OutcomeParked:
			p.reportCall(r.call, CallFailed) // this branch's call is over; a new relay reports its own
			return                           // the async engine owns the transaction
		case routes.OutcomeReplied, routes.OutcomeDropped:
			p.reportCall(r.call, CallFailed)
			p.txs.Finish(r.tx)
			return
		}
		if err != nil {
			c.Logger().Warn("failure route error", "error", err)
		}
	}
	if res.IsSuccess() && !r.canceled {
		p.reportCall(r.call, CallAnswered)
	} else {
		p.reportCall(r.call, CallFailed)
	}
	if !r.canceled && r.forward(res) == routes.OutcomeParked {
		return
	}
	p.txs.Finish(r.tx)
}

// forward sends a downstream response upstream on the server transaction,
// after the reply route (if armed) had its say. It returns the reply
// route's outcome when that route dropped or parked the response, else
// OutcomeNone.
func (r *relay) forward(res *sip.Response) routes.Outcome {
	p := r.p
	if r.reply != "" {
		c := routes.NewContext(routes.ContextOptions{Ctx: p.ctxOrBackground(), Proxy: p, Kind: routes.KindReply,
			Name: r.reply, Tx: r.tx, Response: res, Logger: p.txLogger(r.tx)})
		if h, err := p.routes.Lookup(routes.KindReply, r.reply); err == nil {
			if err := p.serve(h, c); err != nil {
				c.Logger().Warn("reply route error", "error", err)
			}
			if o := c.Outcome(); o == routes.OutcomeDropped || o == routes.OutcomeParked {
				return o
			}
		}
	}
	if res.IsSuccess() && r.out.IsInvite() && r.ctx.RecordRouted() {
		if cid := res.CallID(); cid != nil {
			p.acks.expect(cid.Value()) // before the caller can ACK it
		}
	}
	if err := r.tx.Respond(p.upstream(r.tx, res)); err == nil {
		p.stats.replies.Add(1)
	}
	return routes.OutcomeNone
}

// onRetransmission forwards 2xx retransmissions of an accepted INVITE.
func (r *relay) onRetransmission(res *sip.Response) {
	if res.IsSuccess() && r.tx.ServerTx() != nil {
		_ = r.tx.ServerTx().Respond(r.p.upstream(r.tx, res))
	}
}

// upstream copies a downstream response for the upstream side: our Via
// removed, sent back where the request came from. The header values are
// shared with the downstream response (see buildForward).
func (p *Proxy) upstream(tx *transaction.Tx, res *sip.Response) *sip.Response {
	fwd := withoutTopVia(res)
	req := tx.Request()
	fwd.SetTransport(req.Transport())
	fwd.SetDestination(req.Source())
	return fwd
}

// sendCancel sends a CANCEL for the relayed INVITE and returns the channel
// of its responses (nil when none was sent).
func (r *relay) sendCancel() <-chan *sip.Response {
	if !r.out.IsInvite() || r.cancelTx != nil {
		return nil
	}
	out := r.out
	cancel := sip.NewRequest(sip.CANCEL, *out.Recipient.Clone())
	cancel.SipVersion = out.SipVersion
	cancel.AppendHeader(out.Via().Clone())
	for _, h := range out.GetHeaders("Route") {
		cancel.AppendHeader(sip.HeaderClone(h))
	}
	mf := sip.MaxForwardsHeader(70)
	cancel.AppendHeader(&mf)
	for _, name := range []string{"From", "To", "Call-ID"} {
		if h := out.GetHeader(name); h != nil {
			cancel.AppendHeader(sip.HeaderClone(h))
		}
	}
	if cs := out.CSeq(); cs != nil {
		cancel.AppendHeader(&sip.CSeqHeader{SeqNo: cs.SeqNo, MethodName: sip.CANCEL})
	}
	cancel.SetBody(nil)
	cancel.SetTransport(out.Transport())
	cancel.SetDestination(out.Destination())
	cancel.Laddr = out.Laddr
	tx, err := r.p.txl.Request(r.p.ctxOrBackground(), cancel)
	if err != nil {
		r.p.log.Warn("CANCEL downstream failed", "error", err, "dst", out.Destination())
		return nil
	}
	r.cancelTx = tx
	go func() { // drain the CANCEL's responses until it ends
		for {
			select {
			case <-tx.Responses():
			case <-tx.Done():
				return
			}
		}
	}()
	return nil
}

// onStrayResponse handles responses that match no client transaction. A
// 2xx to an INVITE is the callee retransmitting its answer after the
// proxy's transaction ended (they end soon after the 2xx, see
// timers.go): it goes on statelessly by the Via below ours (RFC 3261
// 16.7, as proxies did before RFC 6026), so a caller whose ACK was lost
// gets the 2xx again and resends it. Anything else is counted and dropped.
func (p *Proxy) onStrayResponse(res *sip.Response) {
	p.stats.stray.Add(1)
	cseq := res.CSeq()
	if !res.IsSuccess() || cseq == nil || cseq.MethodName != sip.INVITE {
		return
	}
	fwd, l, ok := p.statelessUpstream(res)
	if !ok {
		return
	}
	if err := p.sendStateless(fwd, l); err == nil {
		p.stats.strayForwarded.Add(1)
	}
}

// sendStateless sends a response without a transaction. On UDP it leaves
// from the listener l (the address in the Via the response came back to),
// whether or not the destination has sent anything to it lately.
func (p *Proxy) sendStateless(res *sip.Response, l Listen) error {
	if !strings.EqualFold(res.Transport(), "UDP") {
		return p.tpl.WriteMsg(res)
	}
	c, err := p.tpl.GetConnection("udp", l.Addr())
	if err != nil {
		return err
	}
	defer c.TryClose() //nolint:errcheck // a reference count, as in sipgo's WriteMsg
	return c.WriteMsg(res)
}

// statelessUpstream builds the upstream copy of a response whose top Via is
// this proxy's (the listener l); it goes where the next Via says, received
// and rport first (sipgo's Response.Destination, RFC 3261 18.2.2 and RFC
// 3581). ok is false when the top Via is not ours or no Via follows it.
func (p *Proxy) statelessUpstream(res *sip.Response) (_ *sip.Response, l Listen, ok bool) {
	top := res.Via()
	if top == nil {
		return nil, l, false
	}
	l, ok = p.listenFor(top.Transport)
	if !ok || top.Host != l.Host || top.Port != l.Port {
		return nil, l, false
	}
	fwd := withoutTopVia(res)
	next := fwd.Via()
	if next == nil {
		return nil, l, false
	}
	fwd.SetTransport(next.Transport)
	return fwd, l, true
}

// withoutTopVia copies a response without its top Via, sharing the header
// values (see buildForward).
func withoutTopVia(res *sip.Response) *sip.Response {
	fwd := sip.NewResponse(res.StatusCode, res.Reason)
	fwd.SipVersion = res.SipVersion
	skipped := false
	for _, h := range res.Headers() {
		if !skipped && h.Name() == "Via" {
			skipped = true
			continue
		}
		fwd.AppendHeader(h)
	}
	fwd.SetBody(res.Body())
	return fwd
}
