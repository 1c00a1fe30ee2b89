package rabbitmq

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/spf13/pflag"

	"github.com/sipasync/sipasync/eventbus/evi"
)

// Defaults of Options.
const (
	DefaultBuffer         = 8192
	DefaultMaxInFlight    = 512
	DefaultConnectTimeout = 5 * time.Second
	DefaultBackoffMin     = 100 * time.Millisecond
	DefaultBackoffMax     = 10 * time.Second
	DefaultDrainTimeout   = 3 * time.Second
	// DefaultHeartbeat is the heartbeat of DefaultOptions and of the
	// --rabbitmq-heartbeat flag. The zero Options request none (OpenSIPS's
	// default).
	DefaultHeartbeat = 10 * time.Second
)

// Options configure the transports of a Factory. Socket parameters
// (;heartbeat=, ;sync=, ;format=, ;persistent=, ;buffer=) override them per
// socket. Zero fields take the defaults above, except Heartbeat, Sync,
// Persistent and Format, whose zero values are OpenSIPS's defaults
// (heartbeat 0, sync_mode 0, transient messages, the event grammar).
type Options struct {
	// Heartbeat is the AMQP heartbeat interval sipasync asks for, in whole
	// seconds (OpenSIPS's heartbeat parameter). 0 asks for none; AMQP then
	// takes the broker's proposal (RabbitMQ: 60 s), so a dead broker is still
	// noticed, after 1.5 intervals without a frame from it.
	Heartbeat time.Duration
	// Sync is OpenSIPS's sync_mode=1: RaiseEvent waits for the broker's
	// publisher confirm (bounded by evi's send timeout) and returns its
	// error. False (sync_mode=0): RaiseEvent returns at once and a transport
	// goroutine publishes.
	Sync bool
	// Persistent publishes with delivery mode 2, so that a durable queue
	// keeps the message across a broker restart (OpenSIPS #2252).
	Persistent bool
	// Format of the message body; FormatGrammar is evi's encoding byte for
	// byte.
	Format Format
	// Buffer bounds the events a socket holds: waiting to be published
	// (while the broker is away) plus published and not yet confirmed. Past
	// it an event is refused: counted as dropped and logged (async), or an
	// error to the raiser (sync).
	Buffer int
	// MaxInFlight bounds the published, unconfirmed messages per connection.
	MaxInFlight int
	// MaxSize is the largest message body accepted, in bytes (default
	// evi.DefaultMaxSize, 16,384): a larger event is refused and counted
	// (TooLarge), never truncated.
	MaxSize int
	// ConnectTimeout bounds the TCP connect and the TLS and AMQP handshakes
	// (OpenSIPS #1836: nothing waits forever on an unresponsive broker).
	ConnectTimeout time.Duration
	// BackoffMin and BackoffMax bound the wait between connection attempts:
	// it doubles from BackoffMin after each failure up to BackoffMax, with
	// ±20 % jitter.
	BackoffMin, BackoffMax time.Duration
	// DrainTimeout bounds how long Close waits to publish and confirm what
	// the socket still holds; what is left then is counted as dropped.
	DrainTimeout time.Duration
	// TLS configures rabbitmqs sockets; nil verifies the broker against the
	// system roots, with the socket's host as server name.
	TLS *tls.Config
	// Logger receives connection state changes and (at most once a second
	// per kind) counted losses. Default slog.Default().
	Logger *slog.Logger
	// Clock drives the reconnect backoff, the drain timeout and the log rate
	// limit (tests use a mock). Network deadlines (ConnectTimeout) always
	// use the wall clock. Default clock.New().
	Clock clock.Clock
}

// DefaultOptions returns the defaults with a 10 s heartbeat.
func DefaultOptions() Options { return Options{Heartbeat: DefaultHeartbeat} }

func (o Options) withDefaults() Options {
	if o.Buffer <= 0 {
		o.Buffer = DefaultBuffer
	}
	if o.MaxInFlight <= 0 {
		o.MaxInFlight = DefaultMaxInFlight
	}
	if o.MaxSize <= 0 {
		o.MaxSize = evi.DefaultMaxSize
	}
	if o.ConnectTimeout <= 0 {
		o.ConnectTimeout = DefaultConnectTimeout
	}
	if o.BackoffMin <= 0 {
		o.BackoffMin = DefaultBackoffMin
	}
	if o.BackoffMax < o.BackoffMin {
		o.BackoffMax = max(DefaultBackoffMax, o.BackoffMin)
	}
	if o.DrainTimeout <= 0 {
		o.DrainTimeout = DefaultDrainTimeout
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Clock == nil {
		o.Clock = clock.New()
	}
	return o
}

// validate reports options that make no sense.
func (o Options) validate() error {
	switch {
	case o.Heartbeat < 0 || o.Heartbeat > 65535*time.Second || o.Heartbeat%time.Second != 0:
		return fmt.Errorf("rabbitmq: heartbeat %v: want whole seconds 0-65535", o.Heartbeat)
	case o.Buffer > maxBuffer:
		return fmt.Errorf("rabbitmq: buffer %d: at most %d", o.Buffer, maxBuffer)
	case o.Format != FormatGrammar && o.Format != FormatJSON:
		return fmt.Errorf("rabbitmq: unknown format %d", o.Format)
	}
	return nil
}

// Flags holds the command-line form of the main options, for the
// integrator: RegisterFlags adds them to a flag set and Options applies them.
type Flags struct {
	Heartbeat      int // seconds, 0 = none requested
	SyncMode       int // 0 or 1
	Buffer         int
	ConnectTimeout time.Duration
}

// RegisterFlags adds --rabbitmq-heartbeat, --rabbitmq-sync-mode,
// --rabbitmq-buffer and --rabbitmq-connect-timeout to fs.
func (f *Flags) RegisterFlags(fs *pflag.FlagSet) {
	fs.IntVar(&f.Heartbeat, "rabbitmq-heartbeat", int(DefaultHeartbeat/time.Second), "AMQP heartbeat in seconds for rabbitmq: sockets (0 = none requested; the broker's value applies); socket param ;heartbeat=N")
	fs.IntVar(&f.SyncMode, "rabbitmq-sync-mode", 0, "1: raising an event waits for the broker's publisher confirm and returns its error; 0: a transport goroutine publishes; socket param ;sync=0|1")
	fs.IntVar(&f.Buffer, "rabbitmq-buffer", DefaultBuffer, "events a rabbitmq: socket holds while the broker is away or has not confirmed them; past it events are dropped and counted; socket param ;buffer=N")
	fs.DurationVar(&f.ConnectTimeout, "rabbitmq-connect-timeout", DefaultConnectTimeout, "bound on connecting to the broker (TCP, TLS and AMQP handshakes)")
}

// Options returns the flags as Options (the other fields default).
func (f *Flags) Options() (Options, error) {
	if f.SyncMode != 0 && f.SyncMode != 1 {
		return Options{}, fmt.Errorf("rabbitmq: --rabbitmq-sync-mode %d: want 0 or 1", f.SyncMode)
	}
	if f.Heartbeat < 0 || f.Heartbeat > 65535 {
		return Options{}, fmt.Errorf("rabbitmq: --rabbitmq-heartbeat %d: want 0-65535", f.Heartbeat)
	}
	if f.Buffer < 1 || f.Buffer > maxBuffer {
		return Options{}, fmt.Errorf("rabbitmq: --rabbitmq-buffer %d: want 1-%d", f.Buffer, maxBuffer)
	}
	return Options{
		Heartbeat:      time.Duration(f.Heartbeat) * time.Second,
		Sync:           f.SyncMode == 1,
		Buffer:         f.Buffer,
		ConnectTimeout: f.ConnectTimeout,
	}, nil
}

// settings are the resolved options of one socket.
type settings struct {
	Options
	addr Address
}

func resolve(o Options, a Address) settings {
	p := a.Params
	if p.Heartbeat != nil {
		o.Heartbeat = *p.Heartbeat
	}
	if p.Sync != nil {
		o.Sync = *p.Sync
	}
	if p.Format != nil {
		o.Format = *p.Format
	}
	if p.Persistent != nil {
		o.Persistent = *p.Persistent
	}
	if p.Buffer != nil {
		o.Buffer = *p.Buffer
	}
	o.MaxInFlight = min(o.MaxInFlight, o.Buffer)
	return settings{Options: o, addr: a}
}
