// Package sipasync is the public composition root of a sipasync proxy: one
// Options struct builds the proxy, the transaction table, the timer wheel,
// the worker groups, the async engine, the event bus and interface, device
// state, authentication, the admin listener with its metrics and control
// methods. A program of its own is a few lines:
//
//	s, err := sipasync.New(sipasync.DefaultOptions())
//	if err != nil { ... }
//	s.Routes.Request(s.Proxy.DefaultRoute(sipproxy.DefaultOptions{}))
//	if err := s.Serve(ctx); err != nil { ... } // until ctx ends, then drains
//
// or, with cmd/sipasync's flags, config file, environment, --print-config,
// signals and the ctl subcommand, Main:
//
//	os.Exit(sipasync.Main("myproxy", os.Args[1:], os.Stderr, nil, func(s *sipasync.Server) error {
//		return s.Routes.Request(...)
//	}))
//
// Start cannot leave the server half-wired: the async engine is attached
// to the proxy when it is built and starts with it, and Start refuses a
// route table that names a route nobody registered. sipgo's transaction
// timers are process globals: the first server built sets them (see
// Options.FrTimeout).
package sipasync

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/pflag"

	"github.com/sipasync/sipasync/admin"

	"github.com/sipasync/sipasync/devicestate"
	"github.com/sipasync/sipasync/eventbus"
	"github.com/sipasync/sipasync/eventbus/evi"
	"github.com/sipasync/sipasync/eventbus/rabbitmq"
	"github.com/sipasync/sipasync/metrics"
	"github.com/sipasync/sipasync/routes"
	"github.com/sipasync/sipasync/sipauth"
	"github.com/sipasync/sipasync/sipevents"
	"github.com/sipasync/sipasync/sipproxy"
	"github.com/sipasync/sipasync/transaction"
)

// ErrUsage marks errors that are the operator's (bad flag or value): exit 2.
var ErrUsage = errors.New("usage")

// Options configure a Server. Each field but the last few is a flag of
// cmd/sipasync (Register binds them, DefaultOptions returns their
// defaults); the config file and SIPASYNC_* environment set the same keys
// (see Main).
type Options struct {
	Listen          []string
	TLSCert, TLSKey string
	Outbound        string
	Domains         []string
	LogLevel        string
	LogFormat       string
	ShutdownTimeout time.Duration
	SuspendTimeout  time.Duration
	MaxParked       int
	MaxRelays       int
	MaxMessageSize  int
	Overload        int
	OverloadDelay   time.Duration
	OverloadHeapMiB int
	UDPBuffer       int
	InviteTimeout   time.Duration
	FrTimeout       time.Duration
	Events          []string

	Async       AsyncOptions
	DeviceState DeviceStateOptions
	Operate     OperateOptions
	RabbitMQ    rabbitmq.Flags // the rabbitmq: event transport
	Auth        AuthOptions    // digest authentication in the default route

	// Logger, if set, is the server's logger; else one is built from
	// LogLevel and LogFormat writing to LogWriter (nil: os.Stderr). Only a
	// built one follows a reload's --log-level.
	Logger    *slog.Logger
	LogWriter io.Writer

	adminDefault string // default --admin ("": EphemeralAdmin)
}

// DefaultOptions returns the options with every flag at its default, the
// starting point of a program that builds a Server itself.
func DefaultOptions() Options {
	var o Options
	o.Register(pflag.NewFlagSet("defaults", pflag.ContinueOnError))
	return o
}

// BindFlags registers the common flags on fs and returns the options they
// set, for a program with a flag set of its own; see Main for one with
// cmd/sipasync's whole command line.
func BindFlags(fs *pflag.FlagSet) *Options {
	o := &Options{}
	o.Register(fs)
	return o
}

// Register adds the common flags to fs.
func (f *Options) Register(fs *pflag.FlagSet) {
	fs.StringArrayVar(&f.Listen, "listen", []string{"udp:127.0.0.1:5060"}, "listening socket proto:ip[:port] (udp, tcp, tls, ws); repeatable")
	fs.StringVar(&f.TLSCert, "tls-cert", "", "certificate file (PEM) for tls listeners")
	fs.StringVar(&f.TLSKey, "tls-key", "", "private key file (PEM) for tls listeners")
	fs.StringVar(&f.Outbound, "outbound", "", "relay requests for foreign domains to this [proto:]host:port instead of their R-URI")
	fs.StringArrayVar(&f.Domains, "domain", nil, "extra domain served by this proxy (is_myself); repeatable")
	fs.StringVar(&f.LogLevel, "log-level", "info", "log level: debug, info, warn, error")
	fs.StringVar(&f.LogFormat, "log-format", "text", "log format: text or json")
	fs.DurationVar(&f.ShutdownTimeout, "shutdown-timeout", 10*time.Second, "on SIGINT/SIGTERM, how long live transactions may finish")
	fs.DurationVar(&f.SuspendTimeout, "suspend-timeout", 120*time.Second, "a parked transaction nobody resumes within this is answered (408 INVITE, 500 other)")
	fs.IntVar(&f.MaxParked, "max-parked", 1000000, "most transactions parked at once; past it parking fails (503)")
	fs.IntVar(&f.MaxRelays, "max-relays", 20000, "most relayed transactions waiting for a final response at once; past it 503")
	fs.IntVar(&f.MaxMessageSize, "max-message-size", sipproxy.DefaultMaxMessageSize, "largest SIP message taken, in bytes (UDP: at most 32767); larger ones are answered 513 or dropped, and counted")
	fs.IntVar(&f.UDPBuffer, "udp-buffer", sipproxy.DefaultUDPBuffer, "kernel receive and send buffer asked for each UDP socket, bytes (capped by net.core.rmem_max/wmem_max); 0 keeps the system's; what overflows it is dropped by the kernel and counted in /metrics")
	fs.DurationVar(&f.OverloadDelay, "overload-delay", sipproxy.DefaultOverloadDelay, "overload control: while UDP datagrams wait longer than this in the socket's queue (the least over 100ms), a growing share of new requests is answered 503 with Retry-After; 0 ignores the delay")
	fs.IntVar(&f.Overload, "overload-runnable", sipproxy.DefaultOverloadRunnable, "overload control: the same while more goroutines than this wait to run (averaged); 0 ignores the run queue (both 0: overload control off)")
	fs.IntVar(&f.OverloadHeapMiB, "overload-heap-mib", 0, "overload control: the same while the live heap (after the last GC) is over this many MiB, which bounds RSS at about twice it; 0 ignores the heap")
	fs.DurationVar(&f.InviteTimeout, "invite-timeout", 120*time.Second, "a relayed INVITE with a provisional but no final response is cancelled and answered 408 after this")
	fs.DurationVar(&f.FrTimeout, "fr-timeout", sipproxy.DefaultFrTimeout, "a relayed request with no response at all (not even 100 Trying) is answered 408 after this (Timers B and F; OpenSIPS fr_timeout, Kamailio fr_timer); 500ms to 32s")
	fs.StringArrayVar(&f.Events, "event", nil, "subscribe a transport to an event: NAME=SOCKET, e.g. 'E_SIP_MESSAGE=udp:127.0.0.1:8888'; repeatable")
	f.Async.Register(fs)
	f.DeviceState.Register(fs)
	f.RabbitMQ.RegisterFlags(fs)
	f.Auth.Register(fs)
	def := f.adminDefault
	if def == "" {
		def = EphemeralAdmin
	}
	f.Operate.Register(fs, def)
}

// NewLogger builds the logger --log-level and --log-format ask for, writing to w.
func (f *Options) NewLogger(w io.Writer) (*slog.Logger, error) {
	l, _, err := f.logger(w)
	return l, err
}

// logger is Logger with the level variable a reload sets.
func (f *Options) logger(w io.Writer) (*slog.Logger, *slog.LevelVar, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(f.LogLevel)); err != nil {
		return nil, nil, fmt.Errorf("%w: --log-level %q: want debug, info, warn or error", ErrUsage, f.LogLevel)
	}
	lv := new(slog.LevelVar)
	lv.Set(lvl)
	opts := &slog.HandlerOptions{Level: lv}
	switch strings.ToLower(f.LogFormat) {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), lv, nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), lv, nil
	}
	return nil, nil, fmt.Errorf("%w: --log-format %q: want text or json", ErrUsage, f.LogFormat)
}

// ProxyConfig turns the flags into a proxy configuration.
func (f *Options) ProxyConfig(log *slog.Logger) (sipproxy.Config, error) {
	cfg := sipproxy.Config{Outbound: f.Outbound, Domains: f.Domains, Logger: log,
		MaxRelays: f.MaxRelays, InviteTimeout: f.InviteTimeout, MaxMessageSize: f.MaxMessageSize,
		Overload:     sipproxy.OverloadConfig{Runnable: f.Overload, Delay: f.OverloadDelay, Heap: uint64(max(f.OverloadHeapMiB, 0)) << 20},
		UDPBuffer:    f.UDPBuffer,
		Transactions: transaction.Options{MaxParked: f.MaxParked, SuspendTimeout: f.SuspendTimeout}}
	if len(f.Listen) == 0 {
		return cfg, fmt.Errorf("%w: at least one --listen is needed", ErrUsage)
	}
	hasTLS := false
	for _, s := range f.Listen {
		l, err := sipproxy.ParseListen(s)
		if err != nil {
			return cfg, fmt.Errorf("%w: --listen: %v", ErrUsage, err)
		}
		hasTLS = hasTLS || l.Network == "tls"
		cfg.Listen = append(cfg.Listen, l)
	}
	if f.Outbound != "" {
		if _, err := sipproxy.ParseTarget(f.Outbound); err != nil {
			return cfg, fmt.Errorf("%w: --outbound: %v", ErrUsage, err)
		}
	}
	if f.SuspendTimeout <= 0 {
		return cfg, fmt.Errorf("%w: --suspend-timeout must be > 0", ErrUsage)
	}
	if f.MaxMessageSize < 1024 || f.MaxMessageSize > 1<<20 {
		return cfg, fmt.Errorf("%w: --max-message-size %d: want 1024 to 1048576", ErrUsage, f.MaxMessageSize)
	}
	switch {
	case f.Overload < 0:
		return cfg, fmt.Errorf("%w: --overload-runnable %d: want >= 0 (0: ignore the run queue)", ErrUsage, f.Overload)
	case f.OverloadDelay < 0 || f.OverloadDelay > time.Minute:
		return cfg, fmt.Errorf("%w: --overload-delay %s: want 0 (ignore the delay) to 1m", ErrUsage, f.OverloadDelay)
	case f.OverloadHeapMiB < 0 || f.OverloadHeapMiB > 1<<20:
		return cfg, fmt.Errorf("%w: --overload-heap-mib %d: want 0 (ignore the heap) to 1048576", ErrUsage, f.OverloadHeapMiB)
	}
	if f.Overload == 0 {
		cfg.Overload.Runnable = -1
	}
	switch {
	case f.UDPBuffer == 0:
		cfg.UDPBuffer = -1
	case f.UDPBuffer < 0 || f.UDPBuffer > 1<<30:
		return cfg, fmt.Errorf("%w: --udp-buffer %d: want 0 (the system's) to 1073741824", ErrUsage, f.UDPBuffer)
	}
	if f.OverloadDelay == 0 {
		cfg.Overload.Delay = -1
	}
	cfg.FrTimeout = f.FrTimeout
	if !sipproxy.ValidFrTimeout(f.FrTimeout) {
		return cfg, fmt.Errorf("%w: --fr-timeout %s: want 500ms to 32s", ErrUsage, f.FrTimeout)
	}
	if f.MaxParked < 1 || f.MaxRelays < 1 {
		return cfg, fmt.Errorf("%w: --max-parked and --max-relays must be >= 1", ErrUsage)
	}
	if (f.TLSCert == "") != (f.TLSKey == "") {
		return cfg, fmt.Errorf("%w: --tls-cert and --tls-key go together", ErrUsage)
	}
	if hasTLS && f.TLSCert == "" {
		return cfg, fmt.Errorf("%w: a tls listener needs --tls-cert and --tls-key", ErrUsage)
	}
	if f.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(f.TLSCert, f.TLSKey)
		if err != nil {
			return cfg, fmt.Errorf("%w: tls certificate: %v", ErrUsage, err)
		}
		cfg.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	return cfg, nil
}

// Server is a sipasync proxy and everything around it: the proxy, its
// routes, the async engine, the event bus and interface, device state,
// metrics and control. New builds it; its exported fields are for
// registering routes, events and control methods before Start.
type Server struct {
	Options   *Options
	Log       *slog.Logger
	Routes    *routes.Table
	Proxy     *sipproxy.Proxy
	Async     *AsyncParts
	Bus       *eventbus.Bus
	Events    *evi.Events // declare events and subscribe transports here
	Publisher *sipevents.Publisher
	// DeviceState is the device and mailbox state (devicestate.Get reads it).
	DeviceState *devicestate.Node
	// Registry holds the process's Prometheus metrics (served on /metrics):
	// each part's own collector; a program adds its own (a transport, an
	// asynchttp.Client) with Registry.Register.
	Registry *prometheus.Registry
	// RPC is the control interface (served on /rpc); a program may register
	// methods of its own before it starts serving.
	RPC *admin.RPC
	// Auth is the default route's digest authentication (--auth-file), or
	// nil. A program with a request route of its own calls
	// Auth.Authorize itself.
	Auth *sipauth.Auth

	devstateMode string
	started      time.Time
	level        *slog.LevelVar
	traffic      *metrics.Traffic
	admin        *admin.Server
	program      *Program
	flagSet      *pflag.FlagSet

	mu        sync.Mutex // guards eventSubs, hurry
	reloadMu  sync.Mutex // one reload at a time
	eventSubs map[string]*evi.Subscriber
	hurry     context.CancelFunc
	startOnce atomic.Bool
}

// EventSIPMessage is the seed's event: raised for every MESSAGE with the
// R-URI user ("user") and the body ("msg").
const EventSIPMessage = "E_SIP_MESSAGE"

// Setup registers routes on a built Server before it starts.
type Setup func(a *Server) error

// Main runs a program with the common flags plus extra ones; see Run. Its
// admin listener defaults to a free loopback port (EphemeralAdmin), logged
// at start-up, so examples never collide on a fixed port.
func Main(name string, args []string, stderr io.Writer, extra func(fs *pflag.FlagSet), setup Setup) int {
	return Run(Program{Name: name, Args: args, Stdout: os.Stdout, Stderr: stderr, Environ: os.Environ(),
		Extra: extra, Setup: setup})
}

// New builds a server from o, with nothing listening yet: register routes
// on s.Routes (and control methods on s.RPC), then Start or Serve. Start
// from DefaultOptions() and change what you need: a zero Options has no
// listener and is refused. Errors that are the options' wrap ErrUsage.
func New(o Options) (_ *Server, rerr error) {
	log, level := o.Logger, (*slog.LevelVar)(nil)
	var err error
	if log == nil {
		w := o.LogWriter
		if w == nil {
			w = os.Stderr
		}
		if log, level, err = o.logger(w); err != nil {
			return nil, err
		}
	}
	cfg, err := o.ProxyConfig(log)
	if err != nil {
		return nil, err
	}
	a := &Server{Options: &o, Log: log, Routes: routes.NewTable(), started: time.Now(), level: level}
	if a.Auth, err = o.Auth.build(log); err != nil {
		return nil, err
	}
	if a.Auth != nil {
		cfg.Auth = a.Auth
	}
	a.Bus = eventbus.New(eventbus.WithLogger(log))
	if a.Publisher, err = sipevents.New(a.Bus); err != nil {
		return nil, err
	}
	a.Events = evi.New(a.Bus, evi.WithLogger(log))
	if err := a.Events.Declare(EventSIPMessage); err != nil {
		return nil, err
	}
	if err := a.newRegistry(cfg.Clock); err != nil {
		return nil, err
	}
	if a.Auth != nil {
		if err := a.Registry.Register(newAuthCollector(a.Auth)); err != nil {
			return nil, err
		}
	}
	if err := a.newDeviceState(); err != nil {
		return nil, err
	}
	defer func() {
		if rerr != nil { // release what was made: nothing was accepted yet
			a.release()
		}
	}()
	p, err := sipproxy.New(cfg, a.Routes)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUsage, err)
	}
	a.Proxy = p
	a.observe()
	if a.Async, err = o.Async.build(a); err != nil {
		return nil, err
	}
	if err := a.collect(); err != nil {
		return nil, err
	}
	if err := a.registerRabbitMQ(); err != nil {
		return nil, err
	}
	a.RPC = admin.NewRPC()
	if err := a.registerControl(a.RPC); err != nil {
		return nil, err
	}
	return a, nil
}

// Start checks the routes (Routes.Validate: a request route, and every
// route a route Expects), subscribes the --event transports, binds the
// admin listener and then the SIP listeners, and starts serving. A port in
// use or a route table that cannot work is an error returned here, and
// nothing is left running. ctx bounds start-up only; Shutdown stops.
func (a *Server) Start(ctx context.Context) (err error) {
	if !a.startOnce.CompareAndSwap(false, true) {
		return errors.New("sipasync: Start called twice")
	}
	defer func() {
		if err != nil {
			a.release()
		}
	}()
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := a.Routes.Validate(); err != nil {
		return fmt.Errorf("%w: routes: %v", ErrUsage, err)
	}
	if err := a.checkNeeds(); err != nil {
		return fmt.Errorf("%w: routes: %v", ErrUsage, err)
	}
	if err := a.subscribeEvents(a.Options.Events); err != nil {
		return fmt.Errorf("%w: --event: %v", ErrUsage, err)
	}
	if err := a.serveAdmin(); err != nil {
		return err
	}
	if err := a.Proxy.Start(context.WithoutCancel(ctx)); err != nil {
		return fmt.Errorf("%w: %v", ErrUsage, err)
	}
	a.Log.Info("sipasync started", "listen", a.Options.Listen, "async_ms_timer", a.Options.Async.MsTimer,
		"node_id", a.DeviceState.ID(), "device_state", a.devstateMode, "admin", a.AdminAddr())
	return nil
}

// checkNeeds refuses what the routes declared they need and the server
// does not have (routes.Table.ExpectGroup, ExpectMsTimer).
func (a *Server) checkNeeds() error {
	var errs []error
	for _, n := range a.Routes.Needs() {
		switch {
		case n.Group != "":
			if _, err := a.Async.Groups.Lookup(n.Group); err != nil {
				errs = append(errs, fmt.Errorf("%s names worker group %q, which is not configured (--async-workers-group name=%s;...)", n.By, n.Group, n.Group))
			}
		case a.Options.Async.MsTimer == 0:
			errs = append(errs, fmt.Errorf("%s uses the millisecond forms, but the ms timer is off (set --async-ms-timer)", n.By))
		}
	}
	return errors.Join(errs...)
}

// Serve starts the server and runs it until ctx ends, then shuts it down
// with Options.ShutdownTimeout. It returns Start's error, or Shutdown's.
func (a *Server) Serve(ctx context.Context) error {
	if err := a.Start(ctx); err != nil {
		return err
	}
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), a.Options.ShutdownTimeout)
	defer cancel()
	return a.Shutdown(sctx)
}

// release undoes New and a failed Start: nothing was accepted yet.
func (a *Server) release() {
	cctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if a.Proxy != nil {
		a.Proxy.Close()
	}
	a.closeDeviceState(cctx)
	a.closeAdmin()
}

// Shutdown drains the server as net/http's Server.Shutdown does: new
// transactions are answered 503 with Retry-After, live and parked ones run
// until they finish or ctx ends; then what is still parked is answered 503,
// event transports are flushed (with a budget of their own), and
// everything stops. It returns nil after a complete drain, or ctx's error
// when ctx ended first (what was left was answered all the same). Hurry
// ends the wait early.
func (a *Server) Shutdown(ctx context.Context) error {
	dl, _ := ctx.Deadline()
	a.Log.Info("shutting down", "timeout", time.Until(dl).Round(time.Millisecond).String())
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	a.mu.Lock()
	a.hurry = cancel
	a.mu.Unlock()
	left := a.Proxy.Shutdown(ctx) // returns at once when drained; at ctx's end, else
	err := ctx.Err()
	a.Async.stop(ctx)
	a.closeDeviceState(ctx)
	// Flushing the event transports has its own budget: a drain that used
	// all of --shutdown-timeout still sends what the transports hold.
	fctx, fcancel := context.WithTimeout(context.Background(), flushBudget)
	defer fcancel()
	if ferr := a.Events.Close(fctx); ferr != nil {
		a.Log.Warn("event transports not flushed", "error", ferr)
	}
	_ = a.Bus.Close(fctx)
	ps, ts, as, is := a.Proxy.Stats(), a.Proxy.Transactions().Stats(), a.Async.Engine.Stats(), a.Proxy.InputStats()
	a.Log.Info("stopped", "unfinished", left,
		"malformed", is.Malformed, "malformed_dropped", is.MalformedDropped,
		"too_large", is.TooLarge, "too_large_dropped", is.TooLargeDropped,
		"shed", is.Shed, "shed_dropped", is.ShedDropped, "shed_acks", is.ShedACKs, "stray_responses", ps.StrayResponses, "stray_forwarded", ps.StrayForwarded,
		"requests", ps.Requests, "replies", ps.Replies, "relays", ps.Relays, "dropped", ps.Dropped,
		"no_reply", ps.NoReply, "panics", ps.Panics, "rejected_503", ps.Rejected503, "relay_rejected", ps.RelayRejected,
		"ack_waits", ps.ACKWaits, "ack_wait_timeouts", ps.ACKWaitTimeouts,
		"parks", as.Parks, "resumes", as.Resumes, "resume_refused", as.ResumeRefused,
		"expired", ts.Expired, "canceled", ts.Canceled, "late_cancels", ts.LateCancels)
	a.closeAdmin()
	return err
}

// flushBudget bounds how long Shutdown waits for event transports to send
// what they hold.
const flushBudget = 5 * time.Second

// RaiseSIPMessage raises E_SIP_MESSAGE for a MESSAGE request (the seed's
// sample script) when someone subscribed to it.
func (a *Server) RaiseSIPMessage(c *routes.Context) {
	if !a.Events.Probe(EventSIPMessage) {
		return
	}
	req := c.Request()
	if err := a.Events.RaiseEvent(EventSIPMessage, evi.String("user", req.Recipient.User),
		evi.String("msg", string(req.Body()))); err != nil {
		c.Logger().Warn("cannot raise "+EventSIPMessage, "error", err)
	}
}

// registerRabbitMQ makes rabbitmq: and rabbitmqs: sockets available to
// --event and SubscribeEvent, with the --rabbitmq-* flags as defaults, and
// puts the transport's counters on /metrics.
func (a *Server) registerRabbitMQ() error {
	opts, err := a.Options.RabbitMQ.Options()
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUsage, err)
	}
	opts.Logger = a.Log
	f, err := rabbitmq.NewFactory(opts)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUsage, err)
	}
	if err := f.Register(a.Events); err != nil {
		return err
	}
	return a.Registry.Register(f.Collector())
}
