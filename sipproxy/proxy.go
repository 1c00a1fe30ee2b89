// Package sipproxy is sipasync's SIP front: listeners on sipgo's transport
// layer, request dispatch into the route table, the stateful relay (client
// transactions, CANCEL, failure and reply routes), the registrar and location
// service, and the default route set of a registrar + proxy.
//
// sipproxy does not use sipgo.Server, which ends a transaction as soon as its
// handler returns. It installs its own TransactionLayer.OnRequest hook and
// owns each server transaction's lifetime through the transaction table, so a
// route may park a transaction and return without holding a goroutine.
package sipproxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/sipasync/sipasync/internal/lograte"
	"github.com/sipasync/sipasync/observe"
	"github.com/sipasync/sipasync/routes"
	"github.com/sipasync/sipasync/transaction"
)

// Errors of the proxy.
var (
	ErrRelayLimit   = errors.New("sipproxy: too many active relays")
	ErrShuttingDown = errors.New("sipproxy: shutting down")
	ErrNoListener   = errors.New("sipproxy: no listener for transport")
	ErrNoTLSConfig  = errors.New("sipproxy: tls listener needs --tls-cert and --tls-key")
)

// Config configures a Proxy.
type Config struct {
	Listen   []Listen
	TLS      *tls.Config // for tls listeners
	Outbound string      // relay destination for requests to foreign domains ("" = the R-URI)
	// Domains are extra host names that are "myself" besides the listen
	// addresses, "localhost" and the hostname.
	Domains   []string
	UserAgent string
	// MaxRelays bounds concurrently active client transactions (each has one
	// reader goroutine). 0 means 20000.
	MaxRelays int
	// InviteTimeout ends a relayed INVITE that got a provisional response but
	// no final one (Kamailio's fr_inv_timer): CANCEL downstream, 408 upstream.
	// 0 means 120s.
	InviteTimeout time.Duration
	// ShutdownLinger: after answering what was still parked, Shutdown keeps
	// the listeners open while those INVITEs' ACKs keep arriving, so that a
	// final response lost on UDP is retransmitted (Timer G, or on the
	// INVITE's retransmission); it stops when all are acknowledged or none
	// was for ShutdownLinger (sipgo's Timer H, 32 s, bounds it). Default 5s.
	ShutdownLinger time.Duration
	// FrTimeout bounds the wait for any response at all to a request sent
	// downstream (sipgo's Timers B and F; OpenSIPS's fr_timeout): 500ms to
	// 32s, 0 means DefaultFrTimeout. sipgo keeps its timers as process
	// globals: the first proxy built sets them (see setTimers), and a later
	// one that asks for another FrTimeout is an error.
	FrTimeout time.Duration
	// MaxMessageSize is the largest message taken, in bytes (0 means
	// DefaultMaxMessageSize); larger ones are answered 513 or dropped, and
	// counted (InputStats). On UDP it is at most sipgo's read buffer less
	// one byte (32767).
	MaxMessageSize int
	// UDPBuffer is the kernel receive and send buffer asked for each UDP
	// socket, in bytes (0 means DefaultUDPBuffer; < 0 keeps the system's
	// default). sipgo reads a socket from one goroutine: a burst that
	// arrives while it is descheduled waits in this buffer, and the
	// system's default (about 200 KiB) overflows within a fraction of a
	// second at several thousand calls/s, which turns into retransmission
	// storms. The kernel caps it at net.core.rmem_max / wmem_max.
	UDPBuffer int
	// MaxHeaders is the most header fields a request may carry (0 means
	// DefaultMaxHeaders); past it, 400.
	MaxHeaders int
	// Overload configures overload control: while the run queue stays
	// long, new requests are answered 503 with Retry-After (see
	// OverloadConfig). On by default.
	Overload OverloadConfig
	// Auth, if set, challenges and verifies initial requests in the
	// default route (DefaultRoute); see Authorizer.
	Auth         Authorizer
	Logger       *slog.Logger
	Clock        clock.Clock
	Location     LocationOptions
	Transactions transaction.Options
}

// Stats are the proxy's counters.
type Stats struct {
	Requests, Replies, Relays, RelayRejected, Dropped, NoReply    uint64
	Panics, Unmatched, StrayResponses, Rejected503, ACKsForwarded uint64
	ActiveRelays                                                  int64
	// ACKWaits counts in-dialog requests that waited for their dialog's
	// ACK; ACKWaitTimeouts those that went on without it.
	ACKWaits, ACKWaitTimeouts uint64
	// StrayForwarded counts the stray responses (of StrayResponses) sent
	// on statelessly: 2xx retransmissions after the INVITE's transactions
	// ended.
	StrayForwarded uint64
	// RouteErrors counts the programming errors routes returned, by
	// RouteErrorKinds.
	RouteErrors [len(RouteErrorKinds)]uint64
}

// Proxy is a registrar and stateful proxy driven by a route table.
type Proxy struct {
	cfg    Config
	log    *slog.Logger
	clock  clock.Clock
	ua     *sipgo.UserAgent
	txl    *sip.TransactionLayer
	tpl    *sip.TransportLayer
	routes *routes.Table
	txs    *transaction.Table
	loc    *Location
	guard  *guard // refused input: validation, parse failures, size limit
	// overload sheds new requests while the proxy is past its capacity
	// (nil: off).
	overload *overload
	acks     *ackGate // in-dialog requests wait for their dialog's ACK

	myself   map[string]bool
	listenBy map[string]Listen // first listener per network (lower case)
	relaySem chan struct{}

	asyncMu sync.Mutex
	async   any // the async engine route Contexts park on (SetAsync)

	logLimit *lograte.Limiter // ERROR lines of route programming errors, keyed by kind

	calls    observe.List[observe.Call]
	requests observe.List[*sip.Request]

	ctx      context.Context
	cancel   context.CancelFunc
	closing  atomic.Bool
	relayWG  sync.WaitGroup
	serveWG  sync.WaitGroup
	closers  []func() error
	stopOnce sync.Once

	stats struct {
		requests, replies, relays, relayRejected, dropped, noReply  atomic.Uint64
		panics, unmatched, stray, strayForwarded, rejected503, acks atomic.Uint64
		activeRelays                                                atomic.Int64
		routeErrors                                                 [len(RouteErrorKinds)]atomic.Uint64
	}
}

// New builds a proxy over a route table. Start binds the listeners.
func New(cfg Config, table *routes.Table) (*Proxy, error) {
	if table == nil {
		return nil, errors.New("sipproxy: nil route table")
	}
	if len(cfg.Listen) == 0 {
		return nil, errors.New("sipproxy: no listen address")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.New()
	}
	if cfg.MaxRelays <= 0 {
		cfg.MaxRelays = 20000
	}
	if cfg.ShutdownLinger <= 0 {
		cfg.ShutdownLinger = 5 * time.Second
	}
	if cfg.InviteTimeout <= 0 {
		cfg.InviteTimeout = 120 * time.Second
	}
	if cfg.UserAgent == "" {
		cfg.UserAgent = "sipasync"
	}
	if cfg.Transactions.Clock == nil {
		cfg.Transactions.Clock = cfg.Clock
	}
	if cfg.Location.Clock == nil {
		cfg.Location.Clock = cfg.Clock
	}
	if cfg.FrTimeout == 0 {
		cfg.FrTimeout = DefaultFrTimeout
	}
	if err := setTimers(cfg.FrTimeout); err != nil {
		return nil, err
	}
	p := &Proxy{
		cfg: cfg, log: cfg.Logger, clock: cfg.Clock, routes: table, logLimit: lograte.New(cfg.Clock, time.Second),
		myself:   map[string]bool{"localhost": true},
		listenBy: map[string]Listen{},
		relaySem: make(chan struct{}, cfg.MaxRelays),
	}
	for _, l := range cfg.Listen {
		if l.Network == "tls" && cfg.TLS == nil {
			return nil, fmt.Errorf("%w (%s)", ErrNoTLSConfig, l)
		}
		p.myself[l.Host] = true
		if _, ok := p.listenBy[l.Network]; !ok {
			p.listenBy[l.Network] = l
		}
	}
	for _, d := range cfg.Domains {
		p.myself[strings.ToLower(d)] = true
	}
	p.txs = transaction.New(cfg.Transactions)
	p.loc = NewLocation(cfg.Location)
	p.guard = newGuard(cfg.MaxMessageSize, cfg.MaxHeaders, cfg.Logger, cfg.Clock)
	p.overload = newOverload(cfg.Overload, cfg.Clock, cfg.Logger)
	p.guard.overload = p.overload
	p.acks = newACKGate(cfg.Clock)
	p.guard.acks = p.acks
	sipgoLog := p.guard.logger(cfg.Logger.Handler())

	ua, err := sipgo.NewUA(
		sipgo.WithUserAgentParser(p.guard.parser()),
		sipgo.WithUserAgent(cfg.UserAgent),
		sipgo.WithUserAgentHostname(cfg.Listen[0].Host),
		sipgo.WithUserAgenTLSConfig(cfg.TLS),
		sipgo.WithUserAgentTransactionLayerOptions(
			sip.WithTransactionLayerLogger(sipgoLog),
			sip.WithTransactionLayerUnhandledResponseHandler(p.onStrayResponse),
		),
		sipgo.WithUserAgentTransportLayerOptions(sip.WithTransportLayerLogger(sipgoLog)),
	)
	if err != nil {
		return nil, fmt.Errorf("sipproxy: user agent: %w", err)
	}
	p.ua, p.txl, p.tpl = ua, ua.TransactionLayer(), ua.TransportLayer()
	p.txl.OnRequest(p.onRequest)
	return p, nil
}

// Transactions returns the transaction table.
func (p *Proxy) Transactions() *transaction.Table { return p.txs }

// Location returns the location service.
func (p *Proxy) Location() *Location { return p.loc }

// Routes returns the route table (routes.Proxy).
func (p *Proxy) Routes() *routes.Table { return p.routes }

// Logger returns the proxy's logger.
func (p *Proxy) Logger() *slog.Logger { return p.log }

// Context returns the proxy's lifetime context (cancelled by Close).
func (p *Proxy) Context() context.Context { return p.ctx }

// Listeners returns the configured listeners (with ports resolved after Start).
func (p *Proxy) Listeners() []Listen { return append([]Listen(nil), p.cfg.Listen...) }

// SetAsync attaches the async engine that the route Contexts of this proxy
// park on; async.New calls it when the proxy is the engine's Runner, so the
// two are wired by construction. Start starts it. A second, different
// engine is an error.
func (p *Proxy) SetAsync(e any) error {
	p.asyncMu.Lock()
	defer p.asyncMu.Unlock()
	if p.async != nil && p.async != e {
		return errors.New("sipproxy: another async engine is attached")
	}
	p.async = e
	return nil
}

// Async returns the engine attached with SetAsync, or nil.
func (p *Proxy) Async() any {
	p.asyncMu.Lock()
	defer p.asyncMu.Unlock()
	return p.async
}

// Start binds every listener (a port in use is an error returned here) and
// serves them until Close. Serving starts only once every port is bound and
// recorded, so request handling never sees a listener half set up.
func (p *Proxy) Start(ctx context.Context) error {
	p.ctx, p.cancel = context.WithCancel(context.WithoutCancel(ctx))
	serves := make([]func() error, len(p.cfg.Listen))
	for i, l := range p.cfg.Listen {
		bound, serve, err := p.listen(l)
		if err != nil {
			p.closeListeners()
			return err
		}
		p.cfg.Listen[i], serves[i] = bound, serve
		if first, ok := p.listenBy[l.Network]; ok && first.Host == l.Host && first.Port == l.Port {
			p.listenBy[l.Network] = bound
		}
	}
	for i, l := range p.cfg.Listen {
		serve := serves[i]
		p.serveWG.Add(1)
		go func() {
			defer p.serveWG.Done()
			if err := serve(); err != nil && !errors.Is(err, net.ErrClosed) && p.ctx.Err() == nil {
				p.log.Error("listener stopped", "socket", l.String(), "error", err)
			}
		}()
		p.log.Info("listening", "socket", l.String())
	}
	// The attached async engine runs from here, before the first request
	// can park: a park whose engine never started would wait forever.
	if e, ok := p.Async().(interface{ Start(context.Context) }); ok {
		e.Start(ctx)
	}
	go p.loc.Run(p.ctx.Done(), time.Second)
	go p.acks.run(p.ctx.Done())
	if p.overload != nil {
		go p.overload.run(p.ctx)
	}
	return nil
}

// DefaultUDPBuffer is Config.UDPBuffer's default: 4 MiB.
const DefaultUDPBuffer = 4 << 20

// setUDPBuffers asks for Config.UDPBuffer on a UDP socket. The kernel may
// grant less (capped silently); a refusal is logged, not fatal.
func (p *Proxy) setUDPBuffers(conn net.PacketConn) {
	n := p.cfg.UDPBuffer
	if n == 0 {
		n = DefaultUDPBuffer
	}
	uc, ok := conn.(*net.UDPConn)
	if n < 0 || !ok {
		return
	}
	if err := uc.SetReadBuffer(n); err != nil {
		p.log.Warn("cannot set the UDP receive buffer", "bytes", n, "error", err)
	}
	if err := uc.SetWriteBuffer(n); err != nil {
		p.log.Warn("cannot set the UDP send buffer", "bytes", n, "error", err)
	}
}

// listen binds l and returns it with its port resolved and the function
// that serves it.
func (p *Proxy) listen(l Listen) (Listen, func() error, error) {
	switch l.Network {
	case "udp":
		conn, err := net.ListenPacket("udp", l.Addr())
		if err != nil {
			return l, nil, fmt.Errorf("sipproxy: listen %s: %w", l, err)
		}
		l.Port = conn.LocalAddr().(*net.UDPAddr).Port
		p.closers = append(p.closers, conn.Close)
		p.setUDPBuffers(conn)
		return l, func() error { return p.tpl.ServeUDP(p.guard.packetConn(conn)) }, nil
	case "tcp", "ws", "tls":
		var ln net.Listener
		var err error
		if l.Network == "tls" {
			ln, err = tls.Listen("tcp", l.Addr(), p.cfg.TLS)
		} else {
			ln, err = net.Listen("tcp", l.Addr())
		}
		if err != nil {
			return l, nil, fmt.Errorf("sipproxy: listen %s: %w", l, err)
		}
		l.Port = ln.Addr().(*net.TCPAddr).Port
		p.closers = append(p.closers, ln.Close)
		switch l.Network {
		case "tcp":
			return l, func() error { return p.tpl.ServeTCP(p.guard.listener(ln)) }, nil
		case "ws":
			return l, func() error { return p.tpl.ServeWS(ln) }, nil
		default:
			return l, func() error { return p.tpl.ServeTLS(p.guard.listener(ln)) }, nil
		}
	default:
		return l, nil, fmt.Errorf("%w: %s", ErrBadListen, l)
	}
}

func (p *Proxy) closeListeners() {
	for _, c := range p.closers {
		_ = c()
	}
	p.closers = nil
}

// Drain stops taking new transactions: from now on new requests get 503 with
// Retry-After. Live and parked transactions go on.
func (p *Proxy) Drain() { p.closing.Store(true) }

// Draining reports whether Drain was called.
func (p *Proxy) Draining() bool { return p.closing.Load() }

// Shutdown drains, waits until no transaction is live and no relay is
// active or ctx ends, then answers what is still parked with 503 (paced, and
// lingering for their ACKs: Config.ShutdownLinger) and closes everything. It
// returns how many transactions were still live at the end.
func (p *Proxy) Shutdown(ctx context.Context) int {
	p.Drain()
	t := p.clock.Ticker(20 * time.Millisecond)
	defer t.Stop()
	for p.txs.Stats().Live > 0 || p.stats.activeRelays.Load() > 0 {
		select {
		case <-ctx.Done():
			for _, tx := range p.txs.Live(10) {
				req := tx.Request()
				p.log.Warn("shutdown timeout: transaction still live", "tx", tx.Token().String(),
					"method", string(req.Method), "call_id", callID(req), "state", tx.State().String())
			}
			goto done
		case <-t.C:
		}
	}
done:
	p.answerParked()
	left := p.txs.Stats().Live
	p.Close()
	return left
}

// Close stops the listeners and the transaction layer at once.
func (p *Proxy) Close() {
	p.stopOnce.Do(func() {
		if p.cancel != nil {
			p.cancel()
		}
		p.closeListeners()
		_ = p.ua.Close()
	})
}

// Stats returns the proxy's counters.
func (p *Proxy) Stats() Stats {
	s := Stats{
		Requests: p.stats.requests.Load(), Replies: p.stats.replies.Load(),
		Relays: p.stats.relays.Load(), RelayRejected: p.stats.relayRejected.Load(),
		Dropped: p.stats.dropped.Load(), NoReply: p.stats.noReply.Load(),
		Panics: p.stats.panics.Load(), Unmatched: p.stats.unmatched.Load(),
		StrayResponses: p.stats.stray.Load(), StrayForwarded: p.stats.strayForwarded.Load(), Rejected503: p.stats.rejected503.Load(),
		ACKsForwarded: p.stats.acks.Load(), ActiveRelays: p.stats.activeRelays.Load(),
		ACKWaits: p.acks.waited.Load(), ACKWaitTimeouts: p.acks.timedOut.Load(),
	}
	for i := range s.RouteErrors {
		s.RouteErrors[i] = p.stats.routeErrors[i].Load()
	}
	return s
}

func retryAfter() sip.Header { return sip.NewHeader("Retry-After", "5") }

// Shutdown pacing: answer parked transactions in batches, so that a burst
// of thousands of 503s does not overflow the receivers' socket buffers.
const (
	abortBatch = 200
	abortPause = 10 * time.Millisecond // 20,000 answers/s
)

// answerParked answers every parked transaction 503 with Retry-After, paced,
// then waits for the INVITEs among them to be acknowledged while ACKs keep
// coming (see Config.ShutdownLinger): until then their server transactions
// retransmit the 503 if it was lost, which needs the listeners still open.
func (p *Proxy) answerParked() {
	var acked []<-chan struct{}
	for i, tok := range p.txs.ParkedTokens() {
		if i > 0 && i%abortBatch == 0 {
			p.clock.Sleep(abortPause)
		}
		tx, err := p.txs.Get(tok)
		if !p.txs.Abort(tok, sip.StatusServiceUnavailable, "Service Unavailable", retryAfter()) || err != nil {
			continue
		}
		if stx := tx.ServerTx(); stx != nil && tx.Request().IsInvite() {
			acked = append(acked, stx.Done())
		}
	}
	if len(acked) == 0 {
		return
	}
	tick := p.clock.Ticker(50 * time.Millisecond)
	defer tick.Stop()
	last := p.clock.Now() // of the latest ACK
	for i, done := range acked {
		for waiting := true; waiting; {
			select {
			case <-done:
				last, waiting = p.clock.Now(), false
			case <-tick.C:
				if p.clock.Since(last) >= p.cfg.ShutdownLinger {
					p.log.Warn("shutdown: INVITEs answered 503 but not acknowledged", "count", len(acked)-i)
					return
				}
			}
		}
	}
}

// onRequest is sipgo's transaction-layer hook: one call per new server
// transaction, on sipgo's per-message goroutine.
func (p *Proxy) onRequest(req *sip.Request, stx *sip.ServerTx) {
	p.stats.requests.Add(1)
	if p.refuseInvalid(req, stx) {
		return
	}
	p.requests.Notify(req)
	if req.Transport() != "UDP" && p.shedRequest(req, stx) {
		return
	}
	switch {
	case req.IsCancel():
		// sipgo answers a CANCEL that matches a server transaction itself;
		// one that reaches us matches nothing.
		p.stats.unmatched.Add(1)
		p.respondDirect(req, stx, sip.NewResponseFromRequest(req, sip.StatusCallTransactionDoesNotExists, "Call/Transaction Does Not Exist", nil))
		stx.Terminate()
		return
	case req.IsAck():
		// An ACK for a 2xx (its own transaction): route it, never answer it.
		tx, err := p.txs.Add(req, nil)
		stx.Terminate()
		if err != nil {
			p.stats.dropped.Add(1)
			return
		}
		p.runRoute(tx, routes.KindRequest, "", nil, nil)
		if cid := req.CallID(); cid != nil {
			p.acks.acked(cid.Value())
		}
		return
	case HasToTag(req):
		if cid := req.CallID(); cid != nil {
			p.acks.wait(cid.Value())
		}
	}
	if p.closing.Load() {
		p.stats.rejected503.Add(1)
		res := sip.NewResponseFromRequest(req, sip.StatusServiceUnavailable, "Service Unavailable", nil)
		res.AppendHeader(retryAfter())
		p.respondDirect(req, stx, res)
		return
	}
	tx, err := p.txs.Add(req, stx)
	if err != nil {
		p.stats.rejected503.Add(1)
		res := sip.NewResponseFromRequest(req, sip.StatusServiceUnavailable, "Service Unavailable", nil)
		res.AppendHeader(retryAfter())
		p.respondDirect(req, stx, res)
		return
	}
	p.runRoute(tx, routes.KindRequest, "", nil, nil)
}

// respondDirect answers a request that has no transaction in the table.
func (p *Proxy) respondDirect(req *sip.Request, stx *sip.ServerTx, res *sip.Response) {
	if err := stx.Respond(res); err == nil {
		p.txs.Responses().Notify(transaction.Response{Request: req, Code: res.StatusCode})
	}
}

// RunRoute runs kind[name] for a live transaction (a resume, a task) with
// the engine's finishing rules: whatever the route leaves unanswered gets an
// answer. It is how the async engine resumes transactions.
//
// res is the final response a failure or reply route parked on: the route
// sees it as Context.Response, and if it neither replies, relays, drops
// nor parks again, res goes upstream, as after a failure route.
func (p *Proxy) RunRoute(tx *transaction.Tx, kind routes.Kind, name string, res *sip.Response) {
	p.runRoute(tx, kind, name, res, nil)
}

// RunHandler is RunRoute with a handler given directly (a continuation of
// a Sleep form); kind and name label the run.
func (p *Proxy) RunHandler(tx *transaction.Tx, kind routes.Kind, name string, h routes.Handler, res *sip.Response) {
	c := routes.NewContext(routes.ContextOptions{Ctx: p.ctxOrBackground(), Proxy: p, Kind: kind, Name: name,
		Tx: tx, Response: res, Logger: p.txLogger(tx)})
	p.finish(c, p.serve(h, c))
}

// RunDetached runs kind[name] with no transaction, e.g. a data task or an
// event route; req may be a synthetic request.
func (p *Proxy) RunDetached(kind routes.Kind, name string, req *sip.Request, data any) error {
	h, err := p.routes.Lookup(kind, name)
	if err != nil {
		return err
	}
	c := routes.NewContext(routes.ContextOptions{Ctx: p.ctx, Proxy: p, Kind: kind, Name: name,
		Request: req, Logger: p.log.With("route", kind.String()+"["+name+"]"), Data: data})
	return p.serve(h, c)
}

func (p *Proxy) runRoute(tx *transaction.Tx, kind routes.Kind, name string, res *sip.Response, prev *routes.Context) *routes.Context {
	c := routes.NewContext(routes.ContextOptions{Ctx: p.ctxOrBackground(), Proxy: p, Kind: kind, Name: name,
		Tx: tx, Response: res, Logger: p.txLogger(tx)})
	if prev != nil && prev.RecordRouted() {
		c.RecordRoute()
	}
	h, err := p.routes.Lookup(kind, name)
	if err == nil {
		err = p.serve(h, c)
	}
	p.finish(c, err)
	return c
}

func (p *Proxy) ctxOrBackground() context.Context {
	if p.ctx == nil {
		return context.Background()
	}
	return p.ctx
}

// txLogger is the base logger of a route run; the Context adds the
// Call-ID and token when the route first logs.
func (p *Proxy) txLogger(*transaction.Tx) *slog.Logger { return p.log }

// serve runs a handler under recover: a panic is logged with its stack,
// counted, and answered 500. A programming error the route returns
// (routes.ErrProgramming) is logged at ERROR and counted by kind.
func (p *Proxy) serve(h routes.Handler, c *routes.Context) (err error) {
	defer func() {
		if r := recover(); r != nil {
			p.stats.panics.Add(1)
			c.Logger().Error("route panicked", "route", c.Kind().String()+"["+c.RouteName()+"]", "panic", r, "stack", string(debug.Stack()))
			err = routes.Error(500, "Server Internal Error", fmt.Errorf("route panicked: %v", r))
		}
	}()
	err = h.ServeSIP(c)
	if err != nil && errors.Is(err, routes.ErrProgramming) {
		p.routeError(c, err)
	}
	return err
}

// RouteErrorKinds are the kinds Stats.RouteErrors counts programming
// errors under (routes.ProgrammingKind); any other kind is "other".
var RouteErrorKinds = [...]string{"unknown_route", "bad_delay", "ms_timer_off", "route_kind", "no_engine",
	"no_transaction", "unknown_group", "nil_handler", "other"}

// routeError counts a route's programming error and logs it at ERROR, at
// most once a second per kind (with the count), so a broken route under
// load is loud without flooding the log.
func (p *Proxy) routeError(c *routes.Context, err error) {
	kind, i := routes.ProgrammingKind(err), len(RouteErrorKinds)-1
	for j, k := range RouteErrorKinds {
		if k == kind {
			i = j
			break
		}
	}
	n := p.stats.routeErrors[i].Add(1)
	if ok, _ := p.logLimit.Allow(RouteErrorKinds[i]); !ok {
		return
	}
	c.Logger().Error("route programming error (logged at most once a second per kind)",
		"route", c.Kind().String()+"["+c.RouteName()+"]", "kind", RouteErrorKinds[i], "error", err, "count", n)
}

// finish applies the rules for what a route left behind.
func (p *Proxy) finish(c *routes.Context, err error) {
	tx := c.Tx()
	req := tx.Request()
	if err != nil && c.Outcome() != routes.OutcomeNone {
		c.Logger().Warn("route returned an error after acting", "error", err, "outcome", c.Outcome())
	}
	switch c.Outcome() {
	case routes.OutcomeParked, routes.OutcomeRelayed:
		if req.IsAck() {
			p.txs.Finish(tx) // forwarded statelessly: nothing else owns it
		}
		return // the async engine or the relay owns the transaction now
	case routes.OutcomeReplied:
		p.txs.Finish(tx)
		return
	case routes.OutcomeDropped:
		p.stats.dropped.Add(1)
		if stx := tx.ServerTx(); stx != nil && !tx.FinalSent() {
			stx.Terminate()
		}
		p.txs.Finish(tx)
		return
	}
	if req.IsAck() || tx.ServerTx() == nil {
		if err != nil {
			c.Logger().Info("route for ACK failed", "error", err)
		}
		p.txs.Finish(tx)
		return
	}
	if res := c.Response(); res != nil && res.StatusCode >= 300 && err == nil && !tx.FinalSent() && !tx.Canceled() {
		// A route resumed on a held final response that did nothing with
		// it: the response goes upstream, as after a failure route.
		if rerr := tx.Respond(p.upstream(tx, res)); rerr == nil {
			p.stats.replies.Add(1)
		}
		p.txs.Finish(tx)
		return
	}
	if !tx.FinalSent() && !tx.Canceled() {
		code, reason := 500, "Server Internal Error - No Reply"
		if err != nil {
			code, reason = statusOf(err)
			c.Logger().Info("route error answered", "code", code, "error", err)
		} else {
			p.stats.noReply.Add(1)
		}
		var hdrs []sip.Header
		if code == 503 {
			hdrs = append(hdrs, retryAfter())
		}
		if rerr := tx.Reply(code, reason, nil, hdrs...); rerr == nil {
			p.stats.replies.Add(1)
		}
	}
	p.txs.Finish(tx)
}

// Reply implements routes.Proxy.
func (p *Proxy) Reply(c *routes.Context, code int, reason string, body []byte, hdrs ...sip.Header) error {
	tx := c.Tx()
	if c.Request().IsAck() {
		return errors.New("sipproxy: an ACK is never answered")
	}
	if err := tx.Reply(code, reason, body, hdrs...); err != nil {
		return err
	}
	p.stats.replies.Add(1)
	return nil
}

// IsMyself reports whether a host (and port, when non-zero) addresses this
// proxy: is_myself().
func (p *Proxy) IsMyself(host string, port int) bool {
	if !p.myself[strings.ToLower(strings.Trim(host, "[]"))] {
		return false
	}
	if port == 0 {
		return true
	}
	for _, l := range p.cfg.Listen {
		if l.Port == port {
			return true
		}
	}
	return false
}

// listenFor returns the listener to use for a transport ("UDP", "TCP", ...).
func (p *Proxy) listenFor(transport string) (Listen, bool) {
	l, ok := p.listenBy[strings.ToLower(transport)]
	return l, ok
}

func portOrDefault(u sip.Uri, transport string) int {
	if u.Port > 0 {
		return u.Port
	}
	return int(sip.DefaultPort(transport))
}

func itoa(n int) string { return strconv.Itoa(n) }
