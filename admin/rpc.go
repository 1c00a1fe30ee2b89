// Package admin is sipasync's operator interface: an HTTP listener that
// serves Prometheus metrics on /metrics and a JSON-RPC 2.0 control interface
// on POST /rpc, with methods named module.command as Kamailio's kamcmd
// (core.uptime, tm.stats, async.list, ...), and the client that
// "sipasync ctl" uses.
//
// Methods take named params (a JSON object) or positional ones (an array,
// mapped onto the names the method declares). An unknown method is error
// -32601; params the method cannot use are error -32602 with a message that
// names the param.
package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
)

// JSON-RPC 2.0 error codes.
const (
	CodeParseError     = -32700
	CodeInvalidRequest = -32600
	CodeMethodNotFound = -32601
	CodeInvalidParams  = -32602
	CodeInternal       = -32603
	// CodeFailed is a method that ran and failed (e.g. a stale token).
	CodeFailed = -32000
)

// Error is a JSON-RPC error object; methods return it (or wrap it) to pick
// the code. Any other error is reported as CodeFailed with its text.
type Error struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
	Data    any    `json:"data,omitempty"`
}

func (e *Error) Error() string { return fmt.Sprintf("rpc error %d: %s", e.Code, e.Message) }

// InvalidParams returns a CodeInvalidParams error.
func InvalidParams(format string, args ...any) *Error {
	return &Error{Code: CodeInvalidParams, Message: fmt.Sprintf(format, args...)}
}

// Func is a method's implementation. params is a JSON object (positional
// params were already mapped onto names); nil when the call had none.
type Func func(ctx context.Context, params json.RawMessage) (any, error)

// Method describes a registered method.
type Method struct {
	Name   string   `json:"name"`
	Help   string   `json:"help"`
	Params []string `json:"params,omitempty"` // names, in positional order; "?" suffix: optional
	fn     Func
}

// RPC is a registry of methods and a JSON-RPC 2.0 dispatcher. It is safe
// for concurrent use.
type RPC struct {
	mu      sync.RWMutex
	methods map[string]*Method
}

// NewRPC returns a registry holding system.listMethods and
// system.methodHelp.
func NewRPC() *RPC {
	r := &RPC{methods: map[string]*Method{}}
	_ = r.Register("system.listMethods", "names of every method", nil,
		func(context.Context, json.RawMessage) (any, error) { return r.Names(), nil })
	_ = r.Register("system.methodHelp", "help and params of a method", []string{"method"},
		func(_ context.Context, p json.RawMessage) (any, error) {
			var in struct {
				Method string `json:"method"`
			}
			if err := DecodeParams(p, &in); err != nil {
				return nil, err
			}
			m, ok := r.lookup(in.Method)
			if !ok {
				return nil, InvalidParams("unknown method %q", in.Method)
			}
			return m, nil
		})
	return r
}

// Register adds a method. params are its param names in positional order
// (a trailing "?" marks an optional one). A duplicate or malformed name is
// an error.
func (r *RPC) Register(name, help string, params []string, fn Func) error {
	mod, cmd, ok := strings.Cut(name, ".")
	if !ok || mod == "" || cmd == "" || fn == nil {
		return fmt.Errorf("admin: method %q: want module.command and a function", name)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, dup := r.methods[name]; dup {
		return fmt.Errorf("admin: method %q registered twice", name)
	}
	r.methods[name] = &Method{Name: name, Help: help, Params: params, fn: fn}
	return nil
}

// Names returns the registered method names, sorted.
func (r *RPC) Names() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]string, 0, len(r.methods))
	for n := range r.methods {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

func (r *RPC) lookup(name string) (*Method, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	m, ok := r.methods[name]
	return m, ok
}

// request is one JSON-RPC request object.
type request struct {
	JSONRPC string          `json:"jsonrpc"`
	Method  string          `json:"method"`
	Params  json.RawMessage `json:"params,omitempty"`
	ID      json.RawMessage `json:"id,omitempty"`
}

// Response is one JSON-RPC response object.
type Response struct {
	JSONRPC string          `json:"jsonrpc"`
	Result  json.RawMessage `json:"result,omitempty"`
	Error   *Error          `json:"error,omitempty"`
	ID      json.RawMessage `json:"id"`
}

// Handle answers a JSON-RPC 2.0 body: one request or a batch. It returns
// nil when nothing is to be sent back (notifications only).
func (r *RPC) Handle(ctx context.Context, body []byte) []byte {
	body = bytes.TrimSpace(body)
	if len(body) > 0 && body[0] == '[' {
		var batch []json.RawMessage
		if err := json.Unmarshal(body, &batch); err != nil {
			return marshal(errorResponse(nil, CodeParseError, "parse error: "+err.Error()))
		}
		if len(batch) == 0 {
			return marshal(errorResponse(nil, CodeInvalidRequest, "empty batch"))
		}
		var out []*Response
		for _, b := range batch {
			if res := r.one(ctx, b); res != nil {
				out = append(out, res)
			}
		}
		if len(out) == 0 {
			return nil
		}
		return marshal(out)
	}
	if !json.Valid(body) {
		return marshal(errorResponse(nil, CodeParseError, "parse error: body is not JSON"))
	}
	if res := r.one(ctx, body); res != nil {
		return marshal(res)
	}
	return nil
}

func marshal(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		b, _ = json.Marshal(errorResponse(nil, CodeInternal, "cannot encode the result: "+err.Error()))
	}
	return b
}

func errorResponse(id json.RawMessage, code int, msg string) *Response {
	if id == nil {
		id = json.RawMessage("null")
	}
	return &Response{JSONRPC: "2.0", ID: id, Error: &Error{Code: code, Message: msg}}
}

func (r *RPC) one(ctx context.Context, raw json.RawMessage) *Response {
	var req request
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return errorResponse(nil, CodeInvalidRequest, "invalid request: "+err.Error())
	}
	notification := req.ID == nil
	if req.JSONRPC != "2.0" || req.Method == "" {
		return errorResponse(req.ID, CodeInvalidRequest, `invalid request: want "jsonrpc":"2.0" and a method`)
	}
	res := r.Call(ctx, req.Method, req.Params)
	if notification {
		return nil
	}
	res.ID = req.ID
	return res
}

// Call runs a method with raw params (object, array or empty) and returns
// its response (ID unset).
func (r *RPC) Call(ctx context.Context, name string, params json.RawMessage) *Response {
	m, ok := r.lookup(name)
	if !ok {
		return errorResponse(nil, CodeMethodNotFound, fmt.Sprintf("method %q not found (see system.listMethods)", name))
	}
	named, rerr := m.named(params)
	if rerr != nil {
		return &Response{JSONRPC: "2.0", Error: rerr}
	}
	v, err := m.fn(ctx, named)
	if err != nil {
		var re *Error
		if !errors.As(err, &re) {
			re = &Error{Code: CodeFailed, Message: err.Error()}
		}
		return &Response{JSONRPC: "2.0", Error: re}
	}
	b, err := json.Marshal(v)
	if err != nil {
		return &Response{JSONRPC: "2.0", Error: &Error{Code: CodeInternal, Message: "cannot encode the result: " + err.Error()}}
	}
	return &Response{JSONRPC: "2.0", Result: b}
}

// named turns positional params into an object keyed by the method's param
// names and checks the required ones are there.
func (m *Method) named(params json.RawMessage) (json.RawMessage, *Error) {
	params = bytes.TrimSpace(params)
	if len(params) == 0 || bytes.Equal(params, []byte("null")) {
		params = nil
	}
	var obj map[string]json.RawMessage
	switch {
	case params == nil:
		obj = map[string]json.RawMessage{}
	case params[0] == '[':
		var arr []json.RawMessage
		if err := json.Unmarshal(params, &arr); err != nil {
			return nil, InvalidParams("params: %v", err)
		}
		if len(arr) > len(m.Params) {
			return nil, InvalidParams("%s takes at most %d params (%s), got %d", m.Name, len(m.Params), m.signature(), len(arr))
		}
		obj = make(map[string]json.RawMessage, len(arr))
		for i, v := range arr {
			obj[strings.TrimSuffix(m.Params[i], "?")] = v
		}
	case params[0] == '{':
		if err := json.Unmarshal(params, &obj); err != nil {
			return nil, InvalidParams("params: %v", err)
		}
	default:
		return nil, InvalidParams("params must be an object or an array")
	}
	for k := range obj {
		if !slices.Contains(m.Params, k) && !slices.Contains(m.Params, k+"?") {
			if len(m.Params) == 0 {
				return nil, InvalidParams("%s takes no params, got %q", m.Name, k)
			}
			return nil, InvalidParams("%s: unknown param %q (want %s)", m.Name, k, m.signature())
		}
	}
	for _, p := range m.Params {
		if !strings.HasSuffix(p, "?") {
			if _, ok := obj[p]; !ok {
				return nil, InvalidParams("%s: missing param %q (want %s)", m.Name, p, m.signature())
			}
		}
	}
	if len(obj) == 0 {
		return nil, nil
	}
	b, _ := json.Marshal(obj)
	return b, nil
}

func (m *Method) signature() string {
	if len(m.Params) == 0 {
		return "no params"
	}
	return strings.Join(m.Params, ", ")
}

// DecodeParams decodes params into dst (a pointer to a struct with json
// tags); a value of the wrong type is a CodeInvalidParams error naming the
// param. Empty params leave dst as it is.
func DecodeParams(params json.RawMessage, dst any) error {
	if len(params) == 0 {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(params))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return InvalidParams("param %q: want a %s, got %s", te.Field, te.Type, te.Value)
		}
		return InvalidParams("params: %v", err)
	}
	return nil
}

// Str is a string param that also accepts a JSON number or boolean, as a
// command line cannot tell "1000" the device from 1000 the number.
type Str string

// UnmarshalJSON implements json.Unmarshaler.
func (s *Str) UnmarshalJSON(b []byte) error {
	var v any
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return err
	}
	switch t := v.(type) {
	case string:
		*s = Str(t)
	case json.Number:
		*s = Str(t.String())
	case bool:
		*s = Str(fmt.Sprint(t))
	case nil:
		*s = ""
	default:
		return fmt.Errorf("want a string, got %s", b)
	}
	return nil
}
