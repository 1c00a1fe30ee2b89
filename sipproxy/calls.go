package sipproxy

import (
	"github.com/emiago/sipgo/sip"
	"github.com/sipasync/sipasync/observe"
	"github.com/sipasync/sipasync/transaction"
)

// CallState is a step of a relayed call (observe.CallState).
type CallState = observe.CallState

// Call states reported to the Calls observers.
const (
	CallRinging  = observe.CallRinging
	CallAnswered = observe.CallAnswered
	CallFailed   = observe.CallFailed
	CallEnded    = observe.CallEnded
)

// CallEvent tells how a relayed call progresses (observe.Call).
type CallEvent = observe.Call

// Calls is the list of observers of relayed calls' progress (device
// state, a program's own). They run on the relay's goroutine with no lock
// held; keep them short. Join before Start.
func (p *Proxy) Calls() *observe.List[observe.Call] { return &p.calls }

// Requests is the list of observers of every request that reaches the
// proxy (metrics); the responses it sends are the transaction table's
// Responses. They run on the reading goroutine; keep them short.
func (p *Proxy) Requests() *observe.List[*sip.Request] { return &p.requests }

// attrCallee keeps the callee's address of record on the transaction.
const attrCallee = "sipproxy:callee"

// callOf returns the call an initial INVITE or a BYE belongs to, or nil.
func (p *Proxy) callOf(tx *transaction.Tx, req *sip.Request) *CallEvent {
	if p.calls.Len() == 0 || (!req.IsInvite() && req.Method != sip.BYE) {
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
	p.calls.Notify(e)
}

// callID returns the request's Call-ID, or "" when it has none.
func callID(req *sip.Request) string {
	if h := req.CallID(); h != nil {
		return h.Value()
	}
	return ""
}
