package async

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/sipasync/sipasync/admin"
	"github.com/sipasync/sipasync/transaction"
)

// RegisterControl registers the engine's control methods on r:
// async.list, async.resume (t_continue) and async.cancel.
func (e *Engine) RegisterControl(r *admin.RPC) error {
	for _, m := range []struct {
		name, help string
		params     []string
		fn         admin.Func
	}{
		{"async.list", "parked transactions: token, Call-ID, age, target route", []string{"limit?"}, e.rpcAsyncList},
		{"async.resume", "resume a park (token from async.list) into its route, or into route (t_continue), with reason external; value is readable there; a refusal says why", []string{"token", "value?", "route?"}, e.rpcAsyncResume},
		{"async.cancel", "end a parked transaction with a final response (default 503 with Retry-After)", []string{"token", "code?", "reason?"}, e.rpcAsyncCancel},
	} {
		if err := r.Register(m.name, m.help, m.params, m.fn); err != nil {
			return err
		}
	}
	return nil
}

// ParkedInfo is one row of async.list.
type ParkedInfo struct {
	Token      string  `json:"token"`
	CallID     string  `json:"call_id"`
	Method     string  `json:"method"`
	Route      string  `json:"route"`
	Kind       string  `json:"kind"`
	Park       int     `json:"park"`
	Age        string  `json:"age"`
	AgeSeconds float64 `json:"age_seconds"`
	DueIn      string  `json:"due_in"`      // timed parks: until the resume; "-" otherwise
	DeadlineIn string  `json:"deadline_in"` // until the suspend deadline answers it
}

func (e *Engine) rpcAsyncList(_ context.Context, p json.RawMessage) (any, error) {
	in := struct {
		Limit int `json:"limit"`
	}{Limit: 1000}
	if err := admin.DecodeParams(p, &in); err != nil {
		return nil, err
	}
	if in.Limit < 1 {
		return nil, admin.InvalidParams("param \"limit\" must be >= 1")
	}
	now := time.Now()
	out := []ParkedInfo{}
	for _, tx := range e.cfg.Table.Parked() {
		s := tx.Suspension()
		req := tx.Request()
		row := ParkedInfo{Token: tx.ParkToken().String(), Method: string(req.Method), Route: s.Route, Kind: s.Kind,
			Park: s.Park, Age: now.Sub(s.Since).Round(time.Millisecond).String(), AgeSeconds: now.Sub(s.Since).Seconds(),
			DueIn: "-", DeadlineIn: s.Deadline.Sub(now).Round(time.Millisecond).String()}
		if cid := req.CallID(); cid != nil {
			row.CallID = cid.Value()
		}
		if !s.Due.IsZero() {
			row.DueIn = s.Due.Sub(now).Round(time.Millisecond).String()
		}
		out = append(out, row)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].AgeSeconds > out[j].AgeSeconds })
	if len(out) > in.Limit {
		out = out[:in.Limit]
	}
	return out, nil
}

func parseToken(s string) (transaction.Token, error) {
	tok, err := transaction.ParseToken(s)
	if err != nil {
		return tok, admin.InvalidParams("param \"token\": %v", err)
	}
	return tok, nil
}

func (e *Engine) rpcAsyncResume(_ context.Context, p json.RawMessage) (any, error) {
	var in struct {
		Token string    `json:"token"`
		Value admin.Str `json:"value"`
		Route string    `json:"route"`
	}
	if err := admin.DecodeParams(p, &in); err != nil {
		return nil, err
	}
	tok, err := parseToken(in.Token)
	if err != nil {
		return nil, err
	}
	var v any
	if in.Value != "" {
		v = string(in.Value)
	}
	callID := ""
	if tx, err := e.cfg.Table.Get(tok); err == nil {
		if cid := tx.Request().CallID(); cid != nil {
			callID = cid.Value()
		}
	}
	if err := e.Continue(tok, in.Route, v); err != nil {
		reason := RefusalReasons[refusalIndex(err)]
		if errors.Is(err, ErrResumeAnswered) {
			reason = "answered_503"
		}
		return nil, &admin.Error{Code: admin.CodeFailed, Message: fmt.Sprintf("async.resume %s: %v", tok, err),
			Data: map[string]string{"reason": reason}}
	}
	e.log.Info("resumed by control", "call_id", callID, "tx", tok.String(), "route", in.Route)
	return map[string]any{"resumed": tok.String(), "queued": true}, nil
}

func (e *Engine) rpcAsyncCancel(_ context.Context, p json.RawMessage) (any, error) {
	in := struct {
		Token  string `json:"token"`
		Code   int    `json:"code"`
		Reason string `json:"reason"`
	}{Code: sip.StatusServiceUnavailable}
	if err := admin.DecodeParams(p, &in); err != nil {
		return nil, err
	}
	tok, err := parseToken(in.Token)
	if err != nil {
		return nil, err
	}
	if in.Code < 300 || in.Code > 699 {
		return nil, admin.InvalidParams("param \"code\": %d is not a final error status (300..699)", in.Code)
	}
	if in.Reason == "" {
		in.Reason = reasonPhrase(in.Code)
	}
	tx, err := e.cfg.Table.Get(tok)
	if err != nil {
		return nil, fmt.Errorf("async.cancel %s: %w", tok, err)
	}
	var hdrs []sip.Header
	if in.Code == sip.StatusServiceUnavailable {
		hdrs = append(hdrs, sip.NewHeader("Retry-After", "5"))
	}
	if !e.cfg.Table.Abort(tok, in.Code, in.Reason, hdrs...) {
		return nil, fmt.Errorf("async.cancel %s: %w", tok, transaction.ErrNotSuspended)
	}
	callID := ""
	if cid := tx.Request().CallID(); cid != nil {
		callID = cid.Value()
	}
	e.log.Info("parked transaction answered by control", "call_id", callID, "tx", tok.String(), "code", in.Code)
	return map[string]any{"canceled": tok.String(), "code": in.Code}, nil
}

func reasonPhrase(code int) string {
	switch code {
	case 404:
		return "Not Found"
	case 408:
		return "Request Timeout"
	case 480:
		return "Temporarily Unavailable"
	case 486:
		return "Busy Here"
	case 487:
		return "Request Terminated"
	case 500:
		return "Server Internal Error"
	case 503:
		return "Service Unavailable"
	case 603:
		return "Decline"
	}
	return "Canceled"
}
