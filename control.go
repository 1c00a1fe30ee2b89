package sipasync

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"runtime/debug"
	"sort"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/sipasync/sipasync/admin"
	"github.com/sipasync/sipasync/async"
	"github.com/sipasync/sipasync/devicestate"
	"github.com/sipasync/sipasync/eventbus/evi"
	"github.com/sipasync/sipasync/routes"
	"github.com/sipasync/sipasync/transaction"
)

// The control methods, Kamailio-style module.command names. Each reads the
// packages' own Stats or acts through their public API.
func (a *Server) registerControl(r *admin.RPC) error {
	type method struct {
		name, help string
		params     []string
		fn         admin.Func
	}
	ms := []method{
		{"core.uptime", "when the process started and for how long it runs", nil, a.rpcUptime},
		{"core.version", "sipasync version and VCS revision, Go and sipgo versions", nil, a.rpcVersion},
		{"core.reload", "reload what can change safely (log level, --event subscriptions) from the config file and environment, as SIGHUP", nil, a.rpcReload},
		{"tm.stats", "transaction table and proxy counters", nil, a.rpcTMStats},
		{"async.list", "parked transactions: token, Call-ID, age, target route", []string{"limit?"}, a.rpcAsyncList},
		{"async.resume", "resume a park (token from async.list) into its route, or into route (t_continue), with reason external; value is readable there; a refusal says why", []string{"token", "value?", "route?"}, a.rpcAsyncResume},
		{"async.cancel", "end a parked transaction with a final response (default 503 with Retry-After)", []string{"token", "code?", "reason?"}, a.rpcAsyncCancel},
		{"wg.list", "worker groups: spec, workers, busy, queued, completed, rejected, panicked", nil, a.rpcWGList},
		{"bus.subscribers", "event bus subscriptions: queue depth, high water, delivered, dropped", nil, a.rpcBusSubscribers},
		{"events.list", "declared events and their transport subscribers", nil, a.rpcEventsList},
		{"events.raise", "raise a declared event with attributes (an object of name: value)", []string{"event", "attrs?"}, a.rpcEventsRaise},
		{"devstate.get", "a device's aggregated state and the views of each node; device is user, user@domain or sip:user@domain", []string{"device"}, a.rpcDevstateGet},
		{"devstate.list", "every known device and its state", nil, a.rpcDevstateList},
	}
	for _, m := range ms {
		if err := r.Register(m.name, m.help, m.params, m.fn); err != nil {
			return err
		}
	}
	return nil
}

func (a *Server) rpcUptime(context.Context, json.RawMessage) (any, error) {
	up := time.Since(a.started)
	return map[string]any{"started": a.started.UTC().Format(time.RFC3339), "uptime": up.Round(time.Second).String(),
		"uptime_seconds": int64(up.Seconds())}, nil
}

// ModulePath is this module's path, as a program's build info names it.
const ModulePath = "github.com/sipasync/sipasync"

// BuildInfo says which sipasync a binary carries: the module version (the
// main module's, or the dependency's in a program of a user's own module;
// "(devel)" for a build of a checkout), the VCS revision and whether the
// tree had local changes (for a build of a checkout), and the Go and sipgo
// versions.
type BuildInfo struct {
	Version  string `json:"version"`
	Revision string `json:"revision,omitempty"`
	Modified bool   `json:"modified,omitempty"`
	Go       string `json:"go"`
	Sipgo    string `json:"sipgo,omitempty"`
	OSArch   string `json:"os_arch"`
}

// ReadBuildInfo returns the BuildInfo of the running binary.
func ReadBuildInfo() BuildInfo {
	out := BuildInfo{Version: "(devel)", Go: runtime.Version(), OSArch: runtime.GOOS + "/" + runtime.GOARCH}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return out
	}
	mods := append([]*debug.Module{&bi.Main}, bi.Deps...)
	for _, m := range mods {
		switch m.Path {
		case ModulePath:
			if m.Version != "" {
				out.Version = m.Version
			}
		case "github.com/emiago/sipgo":
			out.Sipgo = m.Version
		}
	}
	if bi.Main.Path == ModulePath {
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				out.Revision = s.Value
			case "vcs.modified":
				out.Modified = s.Value == "true"
			}
		}
	}
	return out
}

// Version is the sipasync module version of the running binary.
func Version() string { return ReadBuildInfo().Version }

// String is the --version line.
func (b BuildInfo) String() string {
	s := b.Version
	if b.Revision != "" {
		s += " (" + b.Revision
		if b.Modified {
			s += ", modified"
		}
		s += ")"
	}
	s += " " + b.Go + " " + b.OSArch
	if b.Sipgo != "" {
		s += " sipgo " + b.Sipgo
	}
	return s
}

func (a *Server) rpcVersion(context.Context, json.RawMessage) (any, error) {
	return ReadBuildInfo(), nil
}

func (a *Server) rpcReload(context.Context, json.RawMessage) (any, error) {
	rep, err := a.Reload()
	if err != nil {
		return nil, err
	}
	return rep, nil
}

func (a *Server) rpcTMStats(context.Context, json.RawMessage) (any, error) {
	ps, ts := a.Proxy.Stats(), a.Proxy.Transactions().Stats()
	return map[string]any{
		"live": ts.Live, "parked": ts.Parked, "draining": a.Proxy.Draining(),
		"created": ts.Created, "suspends": ts.Suspends, "resumes": ts.Resumes, "expired": ts.Expired,
		"canceled": ts.Canceled, "stale_refused": ts.StaleRefused, "ended_refused": ts.EndedRefused,
		"rejected": ts.Rejected, "late_cancels": ts.LateCancels,
		"requests": ps.Requests, "replies": ps.Replies, "relays": ps.Relays, "active_relays": ps.ActiveRelays,
		"relay_rejected": ps.RelayRejected, "dropped": ps.Dropped, "no_reply": ps.NoReply, "panics": ps.Panics,
		"rejected_503": ps.Rejected503, "unmatched_cancels": ps.Unmatched, "stray_responses": ps.StrayResponses, "stray_forwarded": ps.StrayForwarded,
	}, nil
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

func (a *Server) rpcAsyncList(_ context.Context, p json.RawMessage) (any, error) {
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
	for _, tx := range a.Proxy.Transactions().Parked() {
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

func (a *Server) rpcAsyncResume(_ context.Context, p json.RawMessage) (any, error) {
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
	if tx, err := a.Proxy.Transactions().Get(tok); err == nil {
		if cid := tx.Request().CallID(); cid != nil {
			callID = cid.Value()
		}
	}
	if err := a.Async.Engine.Continue(tok, in.Route, v); err != nil {
		reason := transaction.RefusalReason(err)
		if reason == "" && errors.Is(err, routes.ErrUnknownRoute) {
			reason = "unknown_route"
		}
		if reason == "" && errors.Is(err, async.ErrResumeAnswered) {
			reason = "answered_503"
		}
		return nil, &admin.Error{Code: admin.CodeFailed, Message: fmt.Sprintf("async.resume %s: %v", tok, err),
			Data: map[string]string{"reason": reason}}
	}
	a.Log.Info("resumed by control", "call_id", callID, "tx", tok.String(), "route", in.Route)
	return map[string]any{"resumed": tok.String(), "queued": true}, nil
}

func (a *Server) rpcAsyncCancel(_ context.Context, p json.RawMessage) (any, error) {
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
	tx, err := a.Proxy.Transactions().Get(tok)
	if err != nil {
		return nil, fmt.Errorf("async.cancel %s: %w", tok, err)
	}
	var hdrs []sip.Header
	if in.Code == sip.StatusServiceUnavailable {
		hdrs = append(hdrs, sip.NewHeader("Retry-After", "5"))
	}
	if !a.Proxy.Transactions().Abort(tok, in.Code, in.Reason, hdrs...) {
		return nil, fmt.Errorf("async.cancel %s: %w", tok, transaction.ErrNotSuspended)
	}
	callID := ""
	if cid := tx.Request().CallID(); cid != nil {
		callID = cid.Value()
	}
	a.Log.Info("parked transaction answered by control", "call_id", callID, "tx", tok.String(), "code", in.Code)
	return map[string]any{"canceled": tok.String(), "code": in.Code}, nil
}

// GroupInfo is one row of wg.list.
type GroupInfo struct {
	Name      string `json:"name"`
	Workers   int    `json:"workers"`
	Busy      int    `json:"busy"`
	Queued    int    `json:"queued"`
	Waiting   int    `json:"waiting"`
	Completed uint64 `json:"completed"`
	Rejected  uint64 `json:"rejected"`
	Panicked  uint64 `json:"panicked"`
	Undone    uint64 `json:"undone"`
	Spec      string `json:"spec"`
}

func (a *Server) rpcWGList(context.Context, json.RawMessage) (any, error) {
	out := []GroupInfo{}
	for _, g := range a.Async.Groups.List() {
		s := g.Stats()
		out = append(out, GroupInfo{Name: g.Name(), Spec: g.Spec().String(), Workers: s.Workers,
			Busy: s.Busy, Queued: s.Queued, Waiting: s.Waiting, Completed: s.Completed,
			Rejected: s.Rejected, Panicked: s.Panicked, Undone: s.Undone})
	}
	return out, nil
}

// SubscriptionInfo is one row of bus.subscribers.
type SubscriptionInfo struct {
	Topic     string `json:"topic"`
	Name      string `json:"name"`
	Depth     int    `json:"depth"`
	Capacity  int    `json:"capacity"`
	HighWater int    `json:"high_water"`
	Delivered uint64 `json:"delivered"`
	Dropped   uint64 `json:"dropped"`
	Panics    uint64 `json:"panics"`
	Policy    string `json:"policy"`
}

func (a *Server) rpcBusSubscribers(context.Context, json.RawMessage) (any, error) {
	out := []SubscriptionInfo{}
	for _, s := range a.Bus.Stats() {
		out = append(out, SubscriptionInfo{Topic: s.Topic, Name: s.Name, Policy: s.Policy.String(),
			Capacity: s.Capacity, Depth: s.Depth, HighWater: s.HighWater, Delivered: s.Delivered,
			Dropped: s.Dropped, Panics: s.Panics})
	}
	return out, nil
}

func (a *Server) rpcEventsList(context.Context, json.RawMessage) (any, error) {
	subs := map[string][]string{}
	transports := []map[string]any{}
	for _, s := range a.Events.Subscribers() {
		subs[s.Event] = append(subs[s.Event], s.Socket)
		transports = append(transports, map[string]any{"event": s.Event, "socket": s.Socket, "sent": s.Sent,
			"failed": s.Failed, "queued": s.Queue.Depth, "dropped": s.Queue.Dropped})
	}
	events := []map[string]any{}
	for _, name := range a.Events.Declared() {
		socks := subs[name]
		if socks == nil {
			socks = []string{}
		}
		events = append(events, map[string]any{"event": name, "subscribed": a.Events.Probe(name), "sockets": socks})
	}
	st := a.Events.Stats()
	return map[string]any{"raised": st.Raised, "refused_too_large": st.TooLarge, "refused_unknown": st.Unknown,
		"refused_invalid": st.Invalid, "events": events, "transports": transports}, nil
}

func (a *Server) rpcEventsRaise(_ context.Context, p json.RawMessage) (any, error) {
	var in struct {
		Event string          `json:"event"`
		Attrs json.RawMessage `json:"attrs"`
	}
	if err := admin.DecodeParams(p, &in); err != nil {
		return nil, err
	}
	attrs, err := orderedAttrs(in.Attrs)
	if err != nil {
		return nil, err
	}
	if err := a.Events.RaiseEvent(in.Event, attrs...); err != nil {
		if errors.Is(err, evi.ErrUnknownEvent) {
			return nil, admin.InvalidParams("param \"event\": %v (see events.list)", err)
		}
		return nil, err
	}
	return map[string]any{"raised": in.Event, "attrs": len(attrs)}, nil
}

// orderedAttrs reads {"name": value, ...} keeping the order written.
func orderedAttrs(raw json.RawMessage) ([]evi.Attr, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return nil, nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, admin.InvalidParams("param \"attrs\": want an object of name: value")
	}
	var out []evi.Attr
	for dec.More() {
		kt, err := dec.Token()
		if err != nil {
			return nil, admin.InvalidParams("param \"attrs\": %v", err)
		}
		vt, err := dec.Token()
		if err != nil {
			return nil, admin.InvalidParams("param \"attrs\": %v", err)
		}
		k, _ := kt.(string)
		switch v := vt.(type) {
		case string:
			out = append(out, evi.String(k, v))
		case json.Number:
			out = append(out, evi.String(k, v.String()))
		case bool:
			out = append(out, evi.String(k, fmt.Sprint(v)))
		default:
			return nil, admin.InvalidParams("param \"attrs\": %q must be a string, number or boolean", k)
		}
	}
	return out, nil
}

// DeviceInfo is one device in devstate.get and devstate.list.
type DeviceInfo struct {
	Device string           `json:"device"`
	State  string           `json:"state"`
	Views  []DeviceNodeView `json:"views,omitempty"`
}

// DeviceNodeView is one node's view of a device.
type DeviceNodeView struct {
	Node  string `json:"node"`
	State string `json:"state"`
	Alive bool   `json:"alive"`
}

func deviceInfo(c devicestate.Change, views bool) DeviceInfo {
	d := DeviceInfo{Device: c.Device, State: c.State.String()}
	if views {
		for _, v := range c.Views {
			d.Views = append(d.Views, DeviceNodeView{Node: v.Node, State: v.State.String(), Alive: v.Alive})
		}
	}
	return d
}

func (a *Server) rpcDevstateGet(_ context.Context, p json.RawMessage) (any, error) {
	var in struct {
		Device admin.Str `json:"device"`
	}
	if err := admin.DecodeParams(p, &in); err != nil {
		return nil, err
	}
	if in.Device == "" {
		return nil, admin.InvalidParams("param \"device\" is empty")
	}
	for _, name := range deviceNames(string(in.Device)) {
		if c, ok := a.DeviceState.Change(name); ok {
			return deviceInfo(c, true), nil
		}
	}
	return DeviceInfo{Device: string(in.Device), State: a.DeviceState.Get(string(in.Device)).String()}, nil
}

// deviceNames are the names devstate.get tries for what an operator
// typed: as given, without a sip:/sips: scheme, and the user part alone
// (the registrar keys devices by user unless it serves several domains),
// so "alice", "alice@example.com" and "sip:alice@example.com" all find
// alice.
func deviceNames(s string) []string {
	out := []string{s}
	if rest, ok := strings.CutPrefix(s, "sip:"); ok {
		s = rest
		out = append(out, s)
	} else if rest, ok := strings.CutPrefix(s, "sips:"); ok {
		s = rest
		out = append(out, s)
	}
	if user, _, ok := strings.Cut(s, "@"); ok && user != "" {
		out = append(out, user)
	}
	return out
}

func (a *Server) rpcDevstateList(context.Context, json.RawMessage) (any, error) {
	out := []DeviceInfo{}
	for _, m := range a.DeviceState.Cache().Snapshot() {
		if c, ok := devicestate.StateType.Payload(m); ok {
			out = append(out, deviceInfo(c, false))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Device < out[j].Device })
	return out, nil
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
