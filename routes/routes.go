// Package routes holds what users of sipasync program against: the route
// handler types, the registry of named routes, and the handler Context.
//
// The shape follows Kamailio's configuration: one request route, named
// routes (route[NAME]) that the request route or a resume runs, failure
// routes and reply routes armed per transaction, and named event routes
// (event_route[NAME]). Routes are registered by name at start-up and the
// table is checked by Validate before the first request.
//
// Ownership: a handler owns its transaction until it returns. A handler that
// parks the transaction (the async package) hands it to the async engine and
// must not touch the Context after the parking call returns; the resumed route
// gets a new Context for the same transaction.
package routes

import (
	"errors"
	"fmt"
	"sort"
	"sync"
)

// Kind is the kind of a route.
type Kind uint8

// Route kinds, mirroring Kamailio's route blocks.
const (
	KindRequest Kind = iota // request_route
	KindNamed               // route[NAME]
	KindFailure             // failure_route[NAME]
	KindReply               // onreply_route[NAME]
	KindEvent               // event_route[NAME]
)

func (k Kind) String() string {
	switch k {
	case KindRequest:
		return "request_route"
	case KindNamed:
		return "route"
	case KindFailure:
		return "failure_route"
	case KindReply:
		return "onreply_route"
	case KindEvent:
		return "event_route"
	}
	return fmt.Sprintf("kind(%d)", k)
}

// Errors returned by the registry. An unknown route and a nil handler met
// while a request is handled are programming errors (ErrProgramming).
var (
	ErrDuplicateRoute = errors.New("routes: route registered twice")
	ErrUnknownRoute   = Programming("unknown_route", "routes: unknown route")
	ErrNilHandler     = Programming("nil_handler", "routes: nil handler")
	ErrEmptyName      = errors.New("routes: empty route name")
)

// ErrProgramming is the class of a route's programming errors: a route
// name nobody registered, a delay out of range, a parking call where none
// is allowed, a worker group that is not configured. errors.Is(err,
// ErrProgramming) holds for each; the proxy logs a route that returns one
// at ERROR with the route's name and counts it by kind
// (sipasync_sipproxy_route_errors_total{kind}).
var ErrProgramming = errors.New("routes: programming error")

// ProgrammingError is an error of the ErrProgramming class with the kind
// it is counted under.
type ProgrammingError struct {
	Kind string // e.g. "unknown_route", "bad_delay"
	Msg  string
}

// Programming returns a sentinel error of the ErrProgramming class.
func Programming(kind, msg string) error { return &ProgrammingError{Kind: kind, Msg: msg} }

func (e *ProgrammingError) Error() string { return e.Msg }

// Is makes every ProgrammingError match ErrProgramming.
func (e *ProgrammingError) Is(target error) bool { return target == ErrProgramming }

// ProgrammingKind returns the kind of a programming error in err's chain,
// or "" when there is none.
func ProgrammingKind(err error) string {
	var pe *ProgrammingError
	if errors.As(err, &pe) {
		return pe.Kind
	}
	return ""
}

// Handler handles one SIP request (or, for failure and reply routes, one
// response of the transaction) in a route.
//
// Returning ends this route's work on the transaction. A handler that neither
// replied, relayed, dropped nor parked the transaction leaves the proxy to
// answer it (500). A returned error that carries a SIP status (see Error) is
// answered with that status; any other error with 500.
type Handler interface {
	ServeSIP(c *Context) error
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(c *Context) error

// ServeSIP calls f(c).
func (f HandlerFunc) ServeSIP(c *Context) error { return f(c) }

// Middleware wraps a handler, e.g. to log or to check authentication.
type Middleware func(Handler) Handler

// Chain applies middlewares so that the first one listed runs first.
func Chain(h Handler, mw ...Middleware) Handler {
	for i := len(mw) - 1; i >= 0; i-- {
		h = mw[i](h)
	}
	return h
}

// Table is the registry of routes. Register everything before Validate; the
// table is safe for concurrent lookups after that.
type Table struct {
	mu      sync.RWMutex
	request Handler
	byKind  [KindEvent + 1]map[string]Handler
	targets []target // static resume/failure targets named at start-up
	needs   []Need
}

type target struct {
	kind Kind
	name string
	by   string
}

// Need is a resource a route uses that the server must provide, declared
// with ExpectGroup or ExpectMsTimer.
type Need struct {
	Group string // a worker group's name; "" for the millisecond timer
	By    string // who uses it, for the error message
}

// NewTable returns an empty route table.
func NewTable() *Table {
	t := &Table{}
	for k := range t.byKind {
		t.byKind[k] = make(map[string]Handler)
	}
	return t
}

// Request sets the request route, run for every request that starts a
// transaction.
func (t *Table) Request(h Handler) error {
	if h == nil {
		return fmt.Errorf("%w: request_route", ErrNilHandler)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.request != nil {
		return fmt.Errorf("%w: request_route", ErrDuplicateRoute)
	}
	t.request = h
	return nil
}

// Route registers route[name].
func (t *Table) Route(name string, h Handler) error { return t.add(KindNamed, name, h) }

// Failure registers failure_route[name].
func (t *Table) Failure(name string, h Handler) error { return t.add(KindFailure, name, h) }

// Reply registers onreply_route[name].
func (t *Table) Reply(name string, h Handler) error { return t.add(KindReply, name, h) }

// Event registers event_route[name], e.g. "core:tkv".
func (t *Table) Event(name string, h Handler) error { return t.add(KindEvent, name, h) }

func (t *Table) add(k Kind, name string, h Handler) error {
	if name == "" {
		return fmt.Errorf("%w (%s)", ErrEmptyName, k)
	}
	if h == nil {
		return fmt.Errorf("%w: %s[%s]", ErrNilHandler, k, name)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, dup := t.byKind[k][name]; dup {
		return fmt.Errorf("%w: %s[%s]", ErrDuplicateRoute, k, name)
	}
	t.byKind[k][name] = h
	return nil
}

// Expect declares that code registered elsewhere (by) will run k[name] at
// run time, e.g. a resume target written as a constant. Validate fails when
// no such route is registered, so a misspelled target is a start-up error
// rather than a failure at resume time.
func (t *Table) Expect(k Kind, name, by string) {
	t.mu.Lock()
	t.targets = append(t.targets, target{k, name, by})
	t.mu.Unlock()
}

// ExpectGroup declares that code registered elsewhere (by) names worker
// group name at run time (async.TaskGroupRoute, TaskGroupData): the server
// refuses to start when no such group is configured.
func (t *Table) ExpectGroup(name, by string) {
	t.mu.Lock()
	t.needs = append(t.needs, Need{Group: name, By: by})
	t.mu.Unlock()
}

// ExpectMsTimer declares that by uses the millisecond forms (MsRoute,
// MsSleep): the server refuses to start with the millisecond timer off.
func (t *Table) ExpectMsTimer(by string) {
	t.mu.Lock()
	t.needs = append(t.needs, Need{By: by})
	t.mu.Unlock()
}

// Needs returns what ExpectGroup and ExpectMsTimer declared.
func (t *Table) Needs() []Need {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return append([]Need(nil), t.needs...)
}

// Validate checks the table: a request route is set and every expected
// target exists. It returns all problems joined.
func (t *Table) Validate() error {
	t.mu.RLock()
	defer t.mu.RUnlock()
	var errs []error
	if t.request == nil {
		errs = append(errs, fmt.Errorf("%w: request_route is not set", ErrUnknownRoute))
	}
	for _, tg := range t.targets {
		if _, ok := t.byKind[tg.kind][tg.name]; !ok {
			errs = append(errs, fmt.Errorf("%w: %s[%s] (named by %s)", ErrUnknownRoute, tg.kind, tg.name, tg.by))
		}
	}
	return errors.Join(errs...)
}

// Lookup returns the handler of k[name]. For KindRequest the name is ignored.
func (t *Table) Lookup(k Kind, name string) (Handler, error) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if k == KindRequest {
		if t.request == nil {
			return nil, fmt.Errorf("%w: request_route", ErrUnknownRoute)
		}
		return t.request, nil
	}
	if int(k) >= len(t.byKind) {
		return nil, fmt.Errorf("%w: %s", ErrUnknownRoute, k)
	}
	h, ok := t.byKind[k][name]
	if !ok {
		return nil, fmt.Errorf("%w: %s[%s]", ErrUnknownRoute, k, name)
	}
	return h, nil
}

// Has reports whether k[name] is registered.
func (t *Table) Has(k Kind, name string) bool {
	_, err := t.Lookup(k, name)
	return err == nil
}

// Names lists the registered names of a kind, sorted.
func (t *Table) Names(k Kind) []string {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if int(k) >= len(t.byKind) {
		return nil
	}
	out := make([]string, 0, len(t.byKind[k]))
	for n := range t.byKind[k] {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// StatusError is an error that carries the SIP status the proxy answers
// with when a handler returns it.
type StatusError struct {
	Code   int
	Reason string
	Err    error
}

func (e *StatusError) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("sip %d %s", e.Code, e.Reason)
	}
	return fmt.Sprintf("sip %d %s: %v", e.Code, e.Reason, e.Err)
}

func (e *StatusError) Unwrap() error { return e.Err }

// Error wraps err with a SIP status to answer. If err already carries a
// status, that status is kept.
func Error(code int, reason string, err error) error {
	var se *StatusError
	if errors.As(err, &se) {
		return err
	}
	return &StatusError{Code: code, Reason: reason, Err: err}
}

// StatusOf returns the SIP status an error should be answered with: the
// carried status, or 500.
func StatusOf(err error) (int, string) {
	var se *StatusError
	if errors.As(err, &se) {
		return se.Code, se.Reason
	}
	return 500, "Server Internal Error"
}
