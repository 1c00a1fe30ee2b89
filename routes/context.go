package routes

import (
	"context"
	"errors"
	"log/slog"
	"sync"

	"github.com/emiago/sipgo/sip"
	"github.com/sipasync/sipasync/transaction"
)

// ErrNoProxy is returned by actions of a Context that has no proxy.
var ErrNoProxy = errors.New("routes: context has no proxy")

// ErrNoTransaction is returned by actions that need a transaction in a route
// that runs without one (a data task or an event route).
var ErrNoTransaction = errors.New("routes: no transaction in this route")

// Proxy carries out the actions of a Context: sipproxy.Proxy implements
// it; tests may use a recorder.
type Proxy interface {
	// Reply answers the transaction.
	Reply(c *Context, code int, reason string, body []byte, hdrs ...sip.Header) error
	// Relay forwards the request statefully to dst ("host:port", or "" for
	// the next hop from Route/R-URI).
	Relay(c *Context, dst string) error
	// Routes returns the route table, for Context.Route.
	Routes() *Table
}

// Outcome is what a route did with its transaction.
type Outcome uint8

// Outcomes.
const (
	OutcomeNone    Outcome = iota // nothing yet: the proxy answers 500 when the route returns
	OutcomeReplied                // a final response was sent
	OutcomeRelayed                // the request went downstream
	OutcomeDropped                // dropped on purpose, nothing sent
	OutcomeParked                 // suspended: the async engine owns it now
)

// Context is what a handler gets: the request, the transaction, its
// attributes and the actions. A Context belongs to one run of one route and
// to one goroutine; do not keep it after the handler returns.
type Context struct {
	ctx   context.Context
	proxy Proxy
	kind  Kind
	name  string
	req   *sip.Request
	res   *sip.Response
	tx    *transaction.Tx
	log   *slog.Logger
	logTx bool // log already carries the transaction's attributes
	data  any

	outcome      Outcome
	recordRoute  bool
	failureRoute string
	replyRoute   string
	dst          string

	localMu    sync.Mutex
	localAttrs map[string]any
}

// ContextOptions build a Context; proxies use NewContext.
type ContextOptions struct {
	Ctx      context.Context
	Proxy    Proxy
	Kind     Kind
	Name     string
	Request  *sip.Request
	Response *sip.Response
	Tx       *transaction.Tx
	Logger   *slog.Logger
	Data     any
}

// NewContext returns a Context for one run of a route.
func NewContext(o ContextOptions) *Context {
	if o.Ctx == nil {
		o.Ctx = context.Background()
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Request == nil && o.Tx != nil {
		o.Request = o.Tx.Request()
	}
	return &Context{ctx: o.Ctx, proxy: o.Proxy, kind: o.Kind, name: o.Name,
		req: o.Request, res: o.Response, tx: o.Tx, log: o.Logger, data: o.Data}
}

// Context returns the lifetime context of this run (cancelled at shutdown).
func (c *Context) Context() context.Context { return c.ctx }

// Request returns the SIP request. In a resumed route the handler owns it.
func (c *Context) Request() *sip.Request { return c.req }

// Response returns the response that a failure or reply route handles.
func (c *Context) Response() *sip.Response { return c.res }

// Tx returns the transaction, or nil in a route that runs without one.
func (c *Context) Tx() *transaction.Tx { return c.tx }

// Kind returns the kind of the route that runs.
func (c *Context) Kind() Kind { return c.kind }

// RouteName returns the name of the route that runs ("" for request_route).
func (c *Context) RouteName() string { return c.name }

// Logger returns a logger carrying the Call-ID and the transaction token.
// It is built on first use, so routes that do not log pay nothing.
func (c *Context) Logger() *slog.Logger {
	if !c.logTx && c.tx != nil {
		c.logTx = true
		callID := ""
		if h := c.tx.Request().CallID(); h != nil {
			callID = h.Value()
		}
		c.log = c.log.With("call_id", callID, "tx", c.tx.Token().String())
	}
	return c.log
}

// Proxy returns what carries out the Context's actions.
func (c *Context) Proxy() Proxy { return c.proxy }

// Data returns the payload of a data task (the $async(data) analog) or of an
// event route.
func (c *Context) Data() any { return c.data }

// ResumeReason tells a resumed route why it runs (transaction.ReasonNone in a
// first run).
func (c *Context) ResumeReason() transaction.Reason {
	if c.tx == nil {
		return transaction.ReasonNone
	}
	r, _ := c.tx.ResumeReason()
	return r
}

// ResumeValue returns the value the suspending code attached, if any.
func (c *Context) ResumeValue() any {
	if c.tx == nil {
		return nil
	}
	_, v := c.tx.ResumeReason()
	return v
}

// Attr returns a per-transaction attribute; it survives suspension. In a
// route without a transaction it reads the run's own attributes.
func (c *Context) Attr(key string) (any, bool) {
	if c.tx != nil {
		return c.tx.Attr(key)
	}
	c.localMu.Lock()
	defer c.localMu.Unlock()
	v, ok := c.localAttrs[key]
	return v, ok
}

// AttrString returns an attribute as a string ("" when absent or not a string).
func (c *Context) AttrString(key string) string {
	v, _ := c.Attr(key)
	s, _ := v.(string)
	return s
}

// SetAttr sets a per-transaction attribute.
func (c *Context) SetAttr(key string, v any) {
	if c.tx != nil {
		c.tx.SetAttr(key, v)
		return
	}
	c.localMu.Lock()
	if c.localAttrs == nil {
		c.localAttrs = make(map[string]any)
	}
	c.localAttrs[key] = v
	c.localMu.Unlock()
}

// Reply answers the transaction with code and reason.
func (c *Context) Reply(code int, reason string, hdrs ...sip.Header) error {
	return c.ReplyBody(code, reason, nil, hdrs...)
}

// ReplyBody answers with a body.
func (c *Context) ReplyBody(code int, reason string, body []byte, hdrs ...sip.Header) error {
	if c.proxy == nil {
		return ErrNoProxy
	}
	if c.tx == nil {
		return ErrNoTransaction
	}
	if err := c.proxy.Reply(c, code, reason, body, hdrs...); err != nil {
		return err
	}
	if code >= 200 {
		c.outcome = OutcomeReplied
	}
	return nil
}

// Attribute names under which choices that outlive a run (a park, a
// failure route) are kept on the transaction, as Kamailio keeps them in the
// transaction rather than in the script's state.
const (
	attrRecordRoute  = "routes:record_route"
	attrFailureRoute = "routes:failure_route"
	attrReplyRoute   = "routes:reply_route"
)

// RecordRoute asks the relay to insert a Record-Route header for this proxy.
// The choice stays with the transaction across a park.
func (c *Context) RecordRoute() {
	c.recordRoute = true
	if c.tx != nil {
		c.tx.SetAttr(attrRecordRoute, true)
	}
}

// RecordRouted reports whether RecordRoute was called on this transaction.
func (c *Context) RecordRouted() bool {
	if c.recordRoute {
		return true
	}
	if c.tx != nil {
		v, _ := c.tx.Attr(attrRecordRoute)
		return v == true
	}
	return false
}

// SetDestination sets where Relay sends the request ("host:port"), the
// $du analog. Relay with no destination uses Route headers, then the R-URI.
func (c *Context) SetDestination(dst string) { c.dst = dst }

// Destination returns the destination set with SetDestination.
func (c *Context) Destination() string { return c.dst }

// OnFailure arms failure_route[name] for the next relay (t_on_failure); it
// stays armed across a park.
func (c *Context) OnFailure(name string) {
	c.failureRoute = name
	if c.tx != nil {
		c.tx.SetAttr(attrFailureRoute, name)
	}
}

// FailureRoute returns the armed failure route.
func (c *Context) FailureRoute() string {
	if c.failureRoute == "" && c.tx != nil {
		c.failureRoute = c.AttrString(attrFailureRoute)
	}
	return c.failureRoute
}

// OnReply arms onreply_route[name] for the next relay (t_on_reply); it stays
// armed across a park.
func (c *Context) OnReply(name string) {
	c.replyRoute = name
	if c.tx != nil {
		c.tx.SetAttr(attrReplyRoute, name)
	}
}

// ReplyRoute returns the armed reply route.
func (c *Context) ReplyRoute() string {
	if c.replyRoute == "" && c.tx != nil {
		c.replyRoute = c.AttrString(attrReplyRoute)
	}
	return c.replyRoute
}

// Relay forwards the request statefully (t_relay) to the destination set
// with SetDestination, or else by Route headers and R-URI.
func (c *Context) Relay() error { return c.RelayTo(c.dst) }

// RelayTo forwards the request statefully to dst ("host:port").
func (c *Context) RelayTo(dst string) error {
	if c.proxy == nil {
		return ErrNoProxy
	}
	if c.tx == nil {
		return ErrNoTransaction
	}
	if err := c.proxy.Relay(c, dst); err != nil {
		return err
	}
	c.outcome = OutcomeRelayed
	return nil
}

// Drop ends the route without answering (the request is silently discarded
// on purpose; the proxy counts it).
func (c *Context) Drop() { c.outcome = OutcomeDropped }

// MarkParked records that the transaction was suspended and the async
// engine owns it now. The async package calls it; a handler must not touch
// the transaction after a parking call returns.
func (c *Context) MarkParked() { c.outcome = OutcomeParked }

// UnmarkParked undoes MarkParked when a park was taken back (e.g. the
// worker group refused the task); the handler owns the transaction again.
func (c *Context) UnmarkParked() {
	if c.outcome == OutcomeParked {
		c.outcome = OutcomeNone
	}
}

// Outcome returns what this run did so far.
func (c *Context) Outcome() Outcome { return c.outcome }

// Route runs route[name] now, on this goroutine, with this Context (the
// route(NAME) call of Kamailio's script).
func (c *Context) Route(name string) error {
	if c.proxy == nil {
		return ErrNoProxy
	}
	h, err := c.proxy.Routes().Lookup(KindNamed, name)
	if err != nil {
		return err
	}
	prevKind, prevName := c.kind, c.name
	c.kind, c.name = KindNamed, name
	defer func() { c.kind, c.name = prevKind, prevName }()
	return h.ServeSIP(c)
}
