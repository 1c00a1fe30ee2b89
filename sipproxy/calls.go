package sipproxy

import (
	"github.com/emiago/sipgo/sip"
	"github.com/sipasync/sipasync/transaction"
)

// CallState is a step of a relayed call.
type CallState uint8

// Call states reported to Config.OnCall.
const (
	CallRinging  CallState = iota + 1 // an initial INVITE got a provisional (> 100) response
	CallAnswered                      // it got a 2xx
	CallFailed                        // it ended without a 2xx (failure, CANCEL, timeout)
	CallEnded                         // a BYE for the call was relayed
)

func (s CallState) String() string {
	return [...]string{"", "ringing", "answered", "failed", "ended"}[s]
}

// CallEvent tells how a relayed call progresses. Caller is the From user;
// Callee the address of record the call was routed to (the R-URI user before
// the location lookup rewrote it), for a BYE the To or From user as given.
type CallEvent struct {
	State  CallState
	CallID string
	Caller string
	Callee string
}

// attrCallee keeps the callee's address of record on the transaction.
const attrCallee = "sipproxy:callee"

// callOf returns the call an initial INVITE or a BYE belongs to, or nil.
func (p *Proxy) callOf(tx *transaction.Tx, req *sip.Request) *CallEvent {
	if p.cfg.OnCall == nil || (!req.IsInvite() && req.Method != sip.BYE) {
		return nil
	}
	if req.IsInvite() && HasToTag(req) {
		return nil // a re-INVITE changes nothing
	}
	ev := &CallEvent{Caller: FromUser(req), Callee: ToUser(req)}
	if h := req.CallID(); h != nil {
		ev.CallID = h.Value()
	}
	if v, ok := tx.Attr(attrCallee); ok {
		ev.Callee, _ = v.(string)
	}
	return ev
}

func (p *Proxy) reportCall(ev *CallEvent, st CallState) {
	if ev == nil {
		return
	}
	e := *ev
	e.State = st
	p.cfg.OnCall(e)
}

// callID returns the request's Call-ID, or "" when it has none.
func callID(req *sip.Request) string {
	if h := req.CallID(); h != nil {
		return h.Value()
	}
	return ""
}
