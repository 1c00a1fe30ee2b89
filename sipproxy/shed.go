package sipproxy

import (
	"bytes"
	"strconv"

	"github.com/emiago/sipgo/sip"

	"github.com/sipasync/sipasync/rawsip"
	"github.com/sipasync/sipasync/transaction"
)

// shedRequest answers a parsed new request 503 when overload control says
// so (stream transports; UDP is shed in the socket wrapper) and reports
// whether it did.
func (p *Proxy) shedRequest(req *sip.Request, stx *sip.ServerTx) bool {
	o := p.overload
	if !o.shedding() || req.IsAck() || req.IsCancel() || HasToTag(req) {
		return false
	}
	cid := req.CallID()
	if cid == nil || !o.shed([]byte(cid.Value())) {
		return false
	}
	g := p.guard
	g.shed.Add(1)
	res := sip.NewResponseFromRequest(req, sip.StatusServiceUnavailable, "Service Unavailable", nil)
	res.AppendHeader(retryAfter())
	if err := stx.Respond(res); err != nil {
		g.shedDropped.Add(1)
	} else {
		p.txs.Responses().Notify(transaction.Response{Request: req, Code: res.StatusCode})
	}
	return true
}

// shedTag starts the To tag of a 503 the socket wrapper sends, so that the
// ACKs for those answers are recognized and absorbed there.
const shedTag = "sa-ovl-"

// shedDatagram applies overload control to a datagram read from a UDP
// socket and reports whether it was consumed (answered 503, or an ACK for
// such an answer). Anything it cannot classify passes to sipgo.
func (g *guard) shedDatagram(msg []byte, write func([]byte) error) bool {
	o := g.overload
	h, _ := rawsip.Scan(msg)
	if !h.Request {
		return false // a response (it finishes work already taken), or unreadable
	}
	switch string(h.Method) {
	case "ACK":
		if bytes.HasPrefix(h.ToTag, []byte(shedTag)) {
			g.shedACKs.Add(1)
			return true
		}
		return false
	case "CANCEL":
		return false
	}
	if !h.HasTo || h.ToTag != nil || h.CallID == nil || !o.shed(h.CallID) {
		return false // in-dialog, admitted, or malformed (sipgo refuses it)
	}
	g.shed.Add(1)
	res := rawReplyWith(msg, 503, "Service Unavailable", shedTag+strconv.FormatUint(g.tags.Add(1), 36), "Retry-After: 5\r\n")
	if res == nil || write(res) != nil {
		g.shedDropped.Add(1)
	}
	return true
}
