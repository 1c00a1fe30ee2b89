// Package asynchttp asks an HTTP service while the SIP transaction that
// needs the answer is parked, and resumes the transaction into a named route
// with the answer: Kamailio's http_async_client (http_async_query with a
// resume route), OpenSIPS's async(rest_get(...), resume_route).
//
// A route calls Do with the request and the route to resume into. Do parks
// the transaction (async.Suspend, with a timeout and the same route as its
// timeout route) and returns nil; the handler then returns and must not
// touch the Context again. The request runs on a goroutine of its own; its
// answer, or its failure, is handed to the engine (Engine.Resume), and the
// route reads it with ResultOf:
//
//	func lookup(c *routes.Context) error {
//		req, _ := http.NewRequest(http.MethodGet, "http://127.0.0.1:8080/route?user=bob", nil)
//		return client.Do(c, req, "LOOKUP", 500*time.Millisecond)
//	}
//	// route[LOOKUP]: runs with the answer, or at the timeout.
//	func resumed(c *routes.Context) error {
//		r, ok := asynchttp.ResultOf(c)
//		if !ok || r.Err != nil {
//			return c.Reply(502, "Bad Gateway")
//		}
//		...
//	}
//
// Bounds. At most Options.MaxInFlight requests are in flight; past it Do
// returns ErrBusy and parks nothing, so the caller answers (503). Each
// request in flight holds one goroutine, which is what that bound bounds:
// the client's goroutines are at most MaxInFlight (and, for an instant,
// those handing their result to the engine after giving their slot back),
// plus net/http's own per connection (a read and a write loop each, and a
// dial, two with TLS, while one is opened; MaxConnsPerHost caps the
// connections). The client's own
// transport speaks HTTP/1.1 only, since HTTP/2's client adds a goroutine
// per request. A response body is read up to Options.MaxBody.
//
// The request's context ends at the timeout, at a SIP CANCEL of the
// transaction, when the park ends otherwise (the engine's timeout route ran
// first, or the proxy answered the park at shutdown), and at Close. An
// answer that comes after the park ended is refused by the engine and
// counted as late.
package asynchttp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sipasync/sipasync/async"
	"github.com/sipasync/sipasync/routes"
	"github.com/sipasync/sipasync/transaction"
)

// Errors of the package. Do returns ErrBusy, ErrClosed and ErrInvalid
// (wrapped with detail), or the engine's error when it could not park;
// Result.Err holds ErrTimeout, ErrTransport, ErrBodyTooLarge, ErrCanceled or
// ErrClosed.
var (
	// ErrBusy: MaxInFlight requests are in flight; nothing was parked.
	ErrBusy = errors.New("asynchttp: too many requests in flight")
	// ErrTimeout: no answer within the timeout given to Do.
	ErrTimeout = errors.New("asynchttp: request timed out")
	// ErrBodyTooLarge: the response body is longer than Options.MaxBody;
	// Result.Status and Header are set, Body is nil.
	ErrBodyTooLarge = errors.New("asynchttp: response body over the limit")
	// ErrTransport: the request could not be sent or its answer read
	// (connection refused, reset, bad URL scheme, ...); it wraps the cause.
	ErrTransport = errors.New("asynchttp: transport error")
	// ErrCanceled: the request was abandoned because its park ended first
	// (a SIP CANCEL, or an answer while parked: shutdown, a control
	// command). No route sees it: the engine refuses the resume. A park
	// whose timeout route ran first abandons its request as ErrTimeout.
	ErrCanceled = errors.New("asynchttp: request abandoned: its park ended")
	// ErrClosed: the client is closed (Do), or was closed while the
	// request was in flight (Result.Err).
	ErrClosed = errors.New("asynchttp: client closed")
	// ErrInvalid: Do was called with something it cannot use: no Context
	// or request, a request without URL, a timeout out of range, a route
	// Context without engine or transaction.
	ErrInvalid = errors.New("asynchttp: invalid call")
	// ErrOptions: New was given options it cannot use.
	ErrOptions = errors.New("asynchttp: bad options")
)

// Defaults of Options.
const (
	DefaultMaxInFlight     = 256
	DefaultMaxConnsPerHost = 64
	DefaultMaxBody         = 64 << 10
	DefaultTimeout         = time.Second
)

// Options configure a Client. Zero values take the defaults; negative ones
// are an error.
type Options struct {
	// Client sends the requests. Nil: a client with a transport of its
	// own (keep-alive connections reused, HTTP/1.1, MaxConnsPerHost and
	// MaxIdleConnsPerHost set from MaxConnsPerHost), closed by Close. A
	// client given here is the caller's: its transport sets the
	// connection bound and Close leaves its idle connections open.
	Client *http.Client
	// MaxInFlight bounds the requests in flight at once (DefaultMaxInFlight);
	// over it Do returns ErrBusy and parks nothing.
	MaxInFlight int
	// MaxConnsPerHost bounds the connections the client's own transport
	// opens to one host, and keeps as many idle (DefaultMaxConnsPerHost).
	// Requests beyond it wait in the transport for a free connection
	// (they are in flight all the same). Unused when Client is set.
	MaxConnsPerHost int
	// MaxBody caps a response body, in bytes (DefaultMaxBody); a longer
	// one is ErrBodyTooLarge.
	MaxBody int64
	// Timeout is used when Do is given a timeout of 0 (DefaultTimeout).
	Timeout time.Duration
	// Logger gets the client's few log lines (slog.Default when nil).
	Logger *slog.Logger
}

// Result is what a resumed route learns about its request, through ResultOf.
// With Err nil the server answered: Status, Header and Body are its answer,
// whatever the status (a 500 from the server is a Result, not an Err).
type Result struct {
	Status int
	Header http.Header
	Body   []byte
	// Err says why there is no usable answer: ErrTimeout, ErrTransport
	// (wrapping the cause), ErrBodyTooLarge, ErrClosed.
	Err error
	// Timeout is true when Err is ErrTimeout: the request's deadline
	// passed, or the park's timeout route runs.
	Timeout bool
	// Duration is the time from Do to the answer, the failure, or the
	// timeout.
	Duration time.Duration
}

// Stats are the client's counters.
type Stats struct {
	InFlight    int // requests in flight now (slots taken)
	MaxInFlight int
	// Requests counts the requests parked and sent; each ends as one of
	// Answered, Timeouts, TransportErrors, BodyTooLarge, Canceled, Closed.
	Requests, Answered, Timeouts, TransportErrors, BodyTooLarge, Canceled, Closed uint64
	// Classes counts Answered by status class: index 1 to 5 for 1xx to
	// 5xx, 0 for any other status.
	Classes [6]uint64
	// Busy counts Do calls refused with ErrBusy.
	Busy uint64
	// Resumed counts results handed to their route; Late those the engine
	// refused because the park had ended first (timed out, canceled,
	// answered); ResumeFailed those whose park the engine took but could
	// not run (its module workers were full: the call was answered 503).
	Resumed, Late, ResumeFailed uint64
}

// Client runs HTTP requests for parked transactions. It is safe for
// concurrent use; one Client serves a whole proxy. It implements
// prometheus.Collector.
type Client struct {
	opts Options
	http *http.Client
	own  *http.Transport // the transport New made, nil when Options.Client was given
	log  *slog.Logger

	base     context.Context // parent of every request's context; Close cancels it
	stopBase context.CancelCauseFunc

	inFlight atomic.Int64

	mu     sync.Mutex // guards closed, and wg.Add against Close's Wait
	closed bool
	wg     sync.WaitGroup // one per request goroutine

	stats struct {
		requests, answered, timeouts, transport, tooLarge, canceled, closed atomic.Uint64
		classes                                                             [6]atomic.Uint64
		busy, resumed, late, resumeFailed                                   atomic.Uint64
	}
	hist prometheus.Histogram
}

// New builds a Client. Negative options are an error (ErrOptions).
func New(o Options) (*Client, error) {
	switch {
	case o.MaxInFlight < 0:
		return nil, fmt.Errorf("%w: MaxInFlight %d < 0", ErrOptions, o.MaxInFlight)
	case o.MaxConnsPerHost < 0:
		return nil, fmt.Errorf("%w: MaxConnsPerHost %d < 0", ErrOptions, o.MaxConnsPerHost)
	case o.MaxBody < 0:
		return nil, fmt.Errorf("%w: MaxBody %d < 0", ErrOptions, o.MaxBody)
	case o.Timeout < 0 || (o.Timeout > 0 && o.Timeout < time.Millisecond):
		return nil, fmt.Errorf("%w: Timeout %s (want 1ms or more, 0 for the default)", ErrOptions, o.Timeout)
	}
	if o.MaxInFlight == 0 {
		o.MaxInFlight = DefaultMaxInFlight
	}
	if o.MaxConnsPerHost == 0 {
		o.MaxConnsPerHost = DefaultMaxConnsPerHost
	}
	if o.MaxBody == 0 {
		o.MaxBody = DefaultMaxBody
	}
	if o.Timeout == 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	cl := &Client{opts: o, http: o.Client, log: o.Logger}
	if cl.http == nil {
		cl.own = newTransport(o.MaxConnsPerHost)
		cl.http = &http.Client{Transport: cl.own}
	}
	cl.base, cl.stopBase = context.WithCancelCause(context.Background())
	cl.hist = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: namespace, Subsystem: subsystem, Name: "request_duration_seconds",
		Help: "Time from Do to the end of the request (its answer read, or its failure).",
		// 1 ms to about 8 s: lookups answer in milliseconds; the tail
		// is the timeouts.
		Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
	})
	return cl, nil
}

// newTransport is a transport like net/http's default one with connection
// reuse sized for one lookup service: up to n connections to a host, all
// kept idle between requests. It speaks HTTP/1.1 only: HTTP/2's client runs
// a goroutine per request, which would break the goroutine bound the
// package promises.
func newTransport(n int) *http.Transport {
	t := &http.Transport{
		Proxy: http.ProxyFromEnvironment,
		DialContext: (&net.Dialer{
			Timeout:   30 * time.Second,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		MaxIdleConns:          max(100, n),
		MaxIdleConnsPerHost:   n,
		MaxConnsPerHost:       n,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
		Protocols:             new(http.Protocols),
	}
	t.Protocols.SetHTTP1(true)
	return t
}

// mark is the park's value: what the timeout route finds as ResumeValue,
// so that ResultOf knows the park is one of ours. It is never written after
// the park.
type mark struct{ start time.Time }

// pending is one request in flight.
type pending struct {
	tx      *transaction.Tx
	tok     transaction.Token
	engine  *async.Engine
	mark    *mark
	ctx     context.Context
	cancel  context.CancelCauseFunc // ends the request early: CANCEL, park ended
	stop    context.CancelFunc      // releases the deadline's timer
	unwatch func() bool             // stops the park-end hook (Tx.AfterParkEnd)
}

// Do parks c's transaction and sends req; route[route] runs when the answer
// comes, or at the timeout (from 1 ms to the engine's suspend timeout; 0:
// Options.Timeout), and reads the outcome with ResultOf. nil means parked:
// the handler must return and not touch c again. An error means nothing
// was parked and the handler still owns the transaction: ErrBusy when
// MaxInFlight requests are in flight (answer 503), ErrInvalid,
// routes.ErrUnknownRoute, ErrClosed, or the engine's refusal to park.
//
// Do sets req's context (the caller's is not used) and sends req once; the
// caller must not use req after a nil return.
func (cl *Client) Do(c *routes.Context, req *http.Request, route string, timeout time.Duration) error {
	if cl == nil || cl.http == nil {
		return fmt.Errorf("%w: a Client made by New is needed", ErrInvalid)
	}
	if c == nil || req == nil || req.URL == nil {
		return fmt.Errorf("%w: Do needs a route Context and a request with a URL", ErrInvalid)
	}
	if timeout == 0 {
		timeout = cl.opts.Timeout
	}
	if timeout < time.Millisecond {
		return fmt.Errorf("%w: timeout %s (1ms to the suspend timeout)", ErrInvalid, timeout)
	}
	eng := c.Proxy()
	if eng == nil || eng.Routes() == nil {
		return fmt.Errorf("%w: %w", ErrInvalid, routes.ErrNoProxy)
	}
	// Checked here as well as by Suspend, so that a misspelled route is
	// refused before a slot is taken.
	if !eng.Routes().Has(routes.KindNamed, route) {
		return fmt.Errorf("asynchttp: %w: route[%s]", routes.ErrUnknownRoute, route)
	}
	e, err := async.EngineOf(c)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	tx := c.Tx()
	if tx == nil {
		return fmt.Errorf("%w: %w", ErrInvalid, async.ErrNoTx)
	}
	if !cl.acquire() {
		cl.stats.busy.Add(1)
		return fmt.Errorf("%w (%d)", ErrBusy, cl.opts.MaxInFlight)
	}
	cl.mu.Lock()
	if cl.closed {
		cl.mu.Unlock()
		cl.release()
		return ErrClosed
	}
	cl.wg.Add(1)
	cl.mu.Unlock()

	m := &mark{start: time.Now()}
	tok, err := async.Suspend(c, route, m, async.Timeout(timeout), async.TimeoutRoute(route))
	if err != nil {
		cl.release()
		cl.wg.Done()
		return fmt.Errorf("asynchttp: %w", err)
	}
	// From here c belongs to the engine; only tx (safe for concurrent use)
	// and the token are used.
	p := &pending{tx: tx, tok: tok, engine: e, mark: m}
	dctx, stop := context.WithTimeoutCause(cl.base, timeout, ErrTimeout)
	p.ctx, p.cancel = context.WithCancelCause(dctx)
	p.stop = stop
	cl.stats.requests.Add(1)
	// The park may end before the answer (a CANCEL, its timeout route, an
	// answer at shutdown): then the request stops, nobody can use it.
	p.unwatch = tx.AfterParkEnd(tok, func() { p.cancel(whyEnded(tx)) })
	go cl.run(p, req.WithContext(p.ctx))
	return nil
}

// acquire takes an in-flight slot without waiting.
func (cl *Client) acquire() bool {
	limit := int64(cl.opts.MaxInFlight)
	for {
		n := cl.inFlight.Load()
		if n >= limit {
			return false
		}
		if cl.inFlight.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

func (cl *Client) release() { cl.inFlight.Add(-1) }

// run is the goroutine of one request: send it, read the answer, hand the
// result to the engine.
func (cl *Client) run(p *pending, req *http.Request) {
	defer cl.wg.Done()
	res := cl.roundTrip(p, req)
	p.unwatch()
	p.cancel(nil)
	p.stop()
	cl.hist.Observe(res.Duration.Seconds())
	// The slot is free before the route runs, so that a route that asks
	// again (a retry, a second lookup) finds it.
	cl.release()

	err := p.engine.Resume(p.tok, res)
	switch {
	case err == nil:
		cl.stats.resumed.Add(1)
	case errors.Is(err, async.ErrResumeFailed):
		// The engine answered the call 503 and logged it.
		cl.stats.resumeFailed.Add(1)
	default:
		// The park ended first: a CANCEL, its timeout route, shutdown.
		// Expected under load; the counter says how often.
		cl.stats.late.Add(1)
		if cl.log.Enabled(context.Background(), slog.LevelDebug) {
			cl.log.Debug("asynchttp: answer after the park ended", "tx", p.tok.String(),
				"reason", transaction.RefusalReason(err), "result", describe(res), "error", err)
		}
	}
}

// roundTrip sends req and reads its answer into a Result, classifying what
// went wrong by the cause its context ended with.
func (cl *Client) roundTrip(p *pending, req *http.Request) *Result {
	resp, err := cl.http.Do(req)
	if err != nil {
		return cl.failed(p, err)
	}
	defer resp.Body.Close()
	res := &Result{Status: resp.StatusCode, Header: resp.Header}
	if resp.ContentLength > cl.opts.MaxBody {
		return cl.tooLarge(p, res)
	}
	// One byte more than the cap tells a body of exactly MaxBody from a
	// longer one; a body under the cap is read to EOF, which lets the
	// connection be reused.
	body, err := io.ReadAll(io.LimitReader(resp.Body, cl.opts.MaxBody+1))
	if err != nil {
		return cl.failed(p, err)
	}
	if int64(len(body)) > cl.opts.MaxBody {
		return cl.tooLarge(p, res)
	}
	res.Body = body
	res.Duration = time.Since(p.mark.start)
	cl.stats.answered.Add(1)
	cl.stats.classes[statusClass(resp.StatusCode)].Add(1)
	return res
}

func (cl *Client) tooLarge(p *pending, res *Result) *Result {
	cl.stats.tooLarge.Add(1)
	res.Err = fmt.Errorf("%w (%d bytes)", ErrBodyTooLarge, cl.opts.MaxBody)
	res.Duration = time.Since(p.mark.start)
	return res
}

// failed turns a request error into a Result: the cause of the context's
// end when it ended (deadline, park ended, Close), else a transport error.
func (cl *Client) failed(p *pending, err error) *Result {
	res := &Result{Duration: time.Since(p.mark.start)}
	if p.ctx.Err() == nil {
		cl.stats.transport.Add(1)
		res.Err = fmt.Errorf("%w: %w", ErrTransport, err)
		return res
	}
	switch cause := context.Cause(p.ctx); {
	case errors.Is(cause, ErrTimeout):
		cl.stats.timeouts.Add(1)
		res.Err, res.Timeout = ErrTimeout, true
	case errors.Is(cause, ErrClosed):
		cl.stats.closed.Add(1)
		res.Err = ErrClosed
	default:
		cl.stats.canceled.Add(1)
		res.Err = cause
	}
	return res
}

func statusClass(code int) int {
	if code >= 100 && code < 600 {
		return code / 100
	}
	return 0
}

func describe(r *Result) string {
	if r.Err != nil {
		return r.Err.Error()
	}
	return fmt.Sprintf("HTTP %d, %d bytes", r.Status, len(r.Body))
}

// ResultOf returns the outcome of the request in the route Do resumed:
// the *Result the request produced, or, when the route runs at the park's
// timeout, a Result with Err ErrTimeout and Timeout set. ok is false when
// the route was not resumed by Do.
func ResultOf(c *routes.Context) (*Result, bool) {
	if c == nil {
		return nil, false
	}
	switch c.ResumeReason() {
	case transaction.ReasonExternal:
		r, ok := c.ResumeValue().(*Result)
		return r, ok && r != nil
	case transaction.ReasonTimeout:
		if m, ok := c.ResumeValue().(*mark); ok && m != nil {
			return &Result{Err: ErrTimeout, Timeout: true, Duration: time.Since(m.start)}, true
		}
	}
	return nil, false
}

// Stats returns the client's counters.
func (cl *Client) Stats() Stats {
	s := Stats{InFlight: int(cl.inFlight.Load()), MaxInFlight: cl.opts.MaxInFlight,
		Requests: cl.stats.requests.Load(), Answered: cl.stats.answered.Load(),
		Timeouts: cl.stats.timeouts.Load(), TransportErrors: cl.stats.transport.Load(),
		BodyTooLarge: cl.stats.tooLarge.Load(), Canceled: cl.stats.canceled.Load(), Closed: cl.stats.closed.Load(),
		Busy: cl.stats.busy.Load(), Resumed: cl.stats.resumed.Load(), Late: cl.stats.late.Load(),
		ResumeFailed: cl.stats.resumeFailed.Load()}
	for i := range s.Classes {
		s.Classes[i] = cl.stats.classes[i].Load()
	}
	return s
}

// Close cancels the requests in flight (each resumes its route with
// ErrClosed, if the engine still runs), waits for their goroutines, and
// closes the idle connections of the client's own transport.
// Do returns ErrClosed after it. Closing twice is harmless.
func (cl *Client) Close() {
	if cl == nil || cl.stopBase == nil {
		return // not made by New: nothing runs
	}
	cl.mu.Lock()
	cl.closed = true
	cl.mu.Unlock()
	cl.stopBase(ErrClosed)
	cl.wg.Wait()
	if cl.own != nil {
		cl.own.CloseIdleConnections()
	}
}

// Why a request is abandoned before its answer. A park whose timeout route
// ran is a timeout, as it would be had the request's own deadline (the same
// duration) passed first; the others are ErrCanceled.
var (
	errSIPCancel    = fmt.Errorf("%w (SIP CANCEL)", ErrCanceled)
	errParkEnded    = fmt.Errorf("%w (answered while parked)", ErrCanceled)
	errParkTimedOut = fmt.Errorf("%w (the park's timeout route ran)", ErrTimeout)
)

// whyEnded names why the park of a request in flight ended.
func whyEnded(tx *transaction.Tx) error {
	if tx.Canceled() {
		return errSIPCancel
	}
	if r, _ := tx.ResumeReason(); r == transaction.ReasonTimeout {
		return errParkTimedOut
	}
	return errParkEnded
}
