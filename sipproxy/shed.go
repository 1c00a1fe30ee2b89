package sipproxy

import (
	"bytes"
	"strconv"

	"github.com/emiago/sipgo/sip"

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
	line, rest := cutLine(msg)
	if !isRequestLine(line) {
		return false // a response: it finishes work already taken
	}
	method, _, _ := bytes.Cut(line, []byte(" "))
	callID, toTag, hasTo := dialogHeaders(rest)
	switch string(method) {
	case "ACK":
		if bytes.HasPrefix(toTag, []byte(shedTag)) {
			g.shedACKs.Add(1)
			return true
		}
		return false
	case "CANCEL":
		return false
	}
	if !hasTo || toTag != nil || callID == nil || !o.shed(callID) {
		return false // in-dialog, admitted, or malformed (sipgo refuses it)
	}
	g.shed.Add(1)
	res := rawReplyWith(msg, 503, "Service Unavailable", shedTag+strconv.FormatUint(g.tags.Add(1), 36), "Retry-After: 5\r\n")
	if res == nil || write(res) != nil {
		g.shedDropped.Add(1)
	}
	return true
}

// dialogHeaders scans a raw message's headers (after the start line) for
// the Call-ID and the To tag; hasTo reports whether a To header was there.
func dialogHeaders(rest []byte) (callID, toTag []byte, hasTo bool) {
	for len(rest) > 0 {
		var h []byte
		h, rest = cutLine(rest)
		if len(h) == 0 {
			break
		}
		name, value, ok := bytes.Cut(h, []byte(":"))
		if !ok {
			continue
		}
		name = bytes.TrimSpace(name)
		switch {
		case bytes.EqualFold(name, []byte("call-id")) || bytes.EqualFold(name, []byte("i")):
			callID = bytes.TrimSpace(value)
		case bytes.EqualFold(name, []byte("to")) || bytes.EqualFold(name, []byte("t")):
			hasTo = true
			toTag = headerTag(value)
		}
	}
	return callID, toTag, hasTo
}

// headerTag returns the tag parameter of a From/To value, nil if none.
func headerTag(v []byte) []byte {
	// Parameters follow the name-addr's '>' or, without one, the URI.
	if i := bytes.LastIndexByte(v, '>'); i >= 0 {
		v = v[i+1:]
	}
	for len(v) > 0 {
		i := bytes.IndexByte(v, ';')
		if i < 0 {
			return nil
		}
		v = v[i+1:]
		p := v
		if j := bytes.IndexByte(p, ';'); j >= 0 {
			p = p[:j]
		}
		k, val, _ := bytes.Cut(p, []byte("="))
		if bytes.EqualFold(bytes.TrimSpace(k), []byte("tag")) {
			if val = bytes.TrimSpace(val); len(val) > 0 {
				return val
			}
			return nil
		}
	}
	return nil
}
