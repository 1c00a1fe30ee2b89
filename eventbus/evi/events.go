package evi

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/sipasync/sipasync/eventbus"
)

var (
	// ErrUnknownEvent reports an event name that was not declared.
	ErrUnknownEvent = errors.New("evi: unknown event")
	// ErrDuplicate reports a second declaration of an event, a second
	// transport for a scheme or a second local handler for a name.
	ErrDuplicate = errors.New("evi: already registered")
	// ErrAlreadySubscribed reports a second subscription of the same socket
	// to the same event (without WithExpire, which refreshes instead).
	ErrAlreadySubscribed = errors.New("evi: socket already subscribed to the event")
	// ErrUnknownHandler reports a local:NAME socket with no handler NAME.
	ErrUnknownHandler = errors.New("evi: no local handler")
	// ErrEventTooLarge reports an event whose encoding exceeds the maximum
	// size. The event is refused, not truncated, and counted.
	ErrEventTooLarge = errors.New("evi: event too large")
	// ErrClosed is returned after Events.Close.
	ErrClosed = errors.New("evi: closed")
)

// Default settings of Events.
const (
	DefaultSendTimeout = 2 * time.Second
	DefaultQueue       = 1024
	// AllTopicName is the bus topic every raised event is published on.
	AllTopicName = "events"
	// TopicPrefix prefixes the name of each event's own bus topic.
	TopicPrefix = "event:"
)

// Events is the event interface of OpenSIPS (EVI): a registry of declared
// events, of transports by socket scheme and of subscribers, with
// RaiseEvent and SubscribeEvent.
//
// A raised event is encoded once and published on the bus, on the event's
// topic (TopicPrefix+name), which is forwarded to the AllTopicName topic: Go
// code subscribes there. Each SubscribeEvent is a bus subscription of the
// event's topic with its own bounded queue (Drop policy) and goroutine, which
// calls its transport. So RaiseEvent never waits for a transport: a slow or
// dead subscriber loses events (counted in its stats) instead of holding up
// SIP processing, and the others are unaffected.
type Events struct {
	bus         *eventbus.Bus
	clock       clock.Clock
	log         *slog.Logger
	all         *eventbus.Topic
	maxSize     int
	sendTimeout time.Duration
	queue       int

	mu         sync.RWMutex
	events     map[string]*eventbus.Topic
	transports map[string]Factory
	locals     map[string]LocalHandler
	subs       map[subKey]*Subscriber
	closed     bool
	syncs      syncSubs // subscribers whose transport is Synchronous

	raised, tooLarge, unknown, invalid atomic.Uint64
}

// subKey identifies a subscription: the event and the normalized socket.
type subKey struct{ event, socket string }

func keyOf(event string, s Socket) subKey { return subKey{event, s.scheme + ":" + s.address} }

// Option configures Events.
type Option func(*Events)

// WithMaxSize sets the largest encoded event accepted, in bytes. The default
// is DefaultMaxSize.
func WithMaxSize(n int) Option { return func(e *Events) { e.maxSize = n } }

// WithSendTimeout bounds each Transport.Send. The default is
// DefaultSendTimeout.
func WithSendTimeout(d time.Duration) Option { return func(e *Events) { e.sendTimeout = d } }

// WithQueue sets the queue capacity of each subscriber. The default is
// DefaultQueue.
func WithQueue(n int) Option { return func(e *Events) { e.queue = n } }

// WithLogger sets the logger for transport errors. The default is
// slog.Default().
func WithLogger(l *slog.Logger) Option { return func(e *Events) { e.log = l } }

// New returns an event interface publishing on bus, with the udp and local
// transports registered.
func New(bus *eventbus.Bus, opts ...Option) *Events {
	e := &Events{
		bus:         bus,
		clock:       bus.Clock(),
		log:         slog.Default(),
		all:         bus.Topic(AllTopicName),
		maxSize:     DefaultMaxSize,
		sendTimeout: DefaultSendTimeout,
		queue:       DefaultQueue,
		events:      make(map[string]*eventbus.Topic),
		transports:  make(map[string]Factory),
		locals:      make(map[string]LocalHandler),
		subs:        make(map[subKey]*Subscriber),
	}
	for _, o := range opts {
		o(e)
	}
	e.transports[SchemeUDP] = NewUDP
	e.transports[SchemeLocal] = e.localFactory
	return e
}

// validEventName is the rule for declared names: letters, digits and
// "_.:-" (E_SIP_MESSAGE, core:tkv), at most 255 bytes.
func validEventName(name string) error {
	if name == "" || len(name) > 255 {
		return fmt.Errorf("%w %q", ErrInvalidName, name)
	}
	for i := 0; i < len(name); i++ {
		switch c := name[i]; {
		case c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case c == '_', c == '.', c == ':', c == '-':
		default:
			return fmt.Errorf("%w %q: want letters, digits and _.:-", ErrInvalidName, name)
		}
	}
	return nil
}

// Declare adds events to the registry. Only declared events can be raised or
// subscribed to. Names are letters, digits and "_.:-"; OpenSIPS's convention
// is E_MODULE_NAME. Declaring a name twice returns ErrDuplicate.
func (e *Events) Declare(names ...string) error {
	for _, n := range names {
		if err := validEventName(n); err != nil {
			return fmt.Errorf("evi: declare: %w", err)
		}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for i, n := range names {
		if _, ok := e.events[n]; ok || slices.Contains(names[:i], n) {
			return fmt.Errorf("evi: declare %q: %w", n, ErrDuplicate)
		}
	}
	for _, n := range names {
		t := e.bus.Topic(TopicPrefix + n)
		if _, err := eventbus.Forward(t, e.all); err != nil && !errors.Is(err, eventbus.ErrDuplicate) {
			return fmt.Errorf("evi: declare %q: %w", n, err)
		}
		e.events[n] = t
	}
	return nil
}

// Declared returns the declared event names, sorted.
func (e *Events) Declared() []string {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return slices.Sorted(maps.Keys(e.events))
}

// RegisterTransport registers the factory of a socket scheme (lower case,
// see ParseSocket). The udp and local schemes are registered by New; a
// second factory for a scheme returns ErrDuplicate.
func (e *Events) RegisterTransport(scheme string, f Factory) error {
	if !validScheme(scheme) || f == nil {
		return fmt.Errorf("evi: register transport %q: %w", scheme, ErrMalformedSocket)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.transports[scheme]; ok {
		return fmt.Errorf("evi: register transport %q: %w", scheme, ErrDuplicate)
	}
	e.transports[scheme] = f
	return nil
}

// HandleLocal registers the Go function that "local:NAME" sockets deliver to.
// Register it before subscribing such a socket.
func (e *Events) HandleLocal(name string, h LocalHandler) error {
	if name == "" || h == nil {
		return fmt.Errorf("evi: local handler %q: %w", name, ErrMalformedSocket)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.locals[name]; ok {
		return fmt.Errorf("evi: local handler %q: %w", name, ErrDuplicate)
	}
	e.locals[name] = h
	return nil
}

// Topic returns the bus topic of a declared event.
func (e *Events) Topic(name string) (*eventbus.Topic, error) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	t, ok := e.events[name]
	if !ok {
		return nil, fmt.Errorf("%w %q", ErrUnknownEvent, name)
	}
	return t, nil
}

// AllTopic returns the bus topic every raised event is published on.
func (e *Events) AllTopic() *eventbus.Topic { return e.all }

// Probe reports whether anybody (a transport subscriber or a Go subscriber)
// would receive the event, so that a caller can skip building attributes
// nobody reads (OpenSIPS's evi_probe_event).
func (e *Events) Probe(name string) bool {
	e.mu.RLock()
	t := e.events[name]
	e.mu.RUnlock()
	return t != nil && (t.Subscribers() > 0 || e.all.Subscribers() > 0)
}

// RaiseEvent raises a declared event with an ordered list of attributes
// (OpenSIPS's raise_event). It encodes the event once, refuses it if the
// encoding exceeds the maximum size (ErrEventTooLarge, counted), and
// publishes it; delivery to subscribers is asynchronous and RaiseEvent never
// waits for a transport, except one that is Synchronous: RaiseEvent sends to
// it and returns its error (bounded by the send timeout). An undeclared name returns ErrUnknownEvent and a
// bad attribute name ErrInvalidAttrName; both are counted.
func (e *Events) RaiseEvent(name string, attrs ...Attr) error {
	e.mu.RLock()
	t, closed := e.events[name], e.closed
	e.mu.RUnlock()
	if closed {
		return ErrClosed
	}
	if t == nil {
		e.unknown.Add(1)
		return fmt.Errorf("evi: raise: %w %q", ErrUnknownEvent, name)
	}
	for _, a := range attrs {
		if err := ValidateAttrName(a.Name); err != nil {
			e.invalid.Add(1)
			return fmt.Errorf("evi: raise %s: %w", name, err)
		}
	}
	if n := EncodedLen(name, attrs); n > e.maxSize {
		e.tooLarge.Add(1)
		return fmt.Errorf("evi: raise %s: %w: %d bytes, at most %d", name, ErrEventTooLarge, n, e.maxSize)
	}
	ev, err := NewEvent(name, e.clock.Now(), attrs...)
	if err != nil { // names were checked above
		e.invalid.Add(1)
		return fmt.Errorf("evi: raise %s: %w", name, err)
	}
	EventType.Publish(t, ev)
	e.raised.Add(1)
	return e.sendSync(ev)
}

// SubscribeOption configures one SubscribeEvent.
type SubscribeOption func(*subscribeConfig)

type subscribeConfig struct {
	expire time.Duration
	queue  int
}

// WithExpire makes the subscription end by itself after d, unless it is
// subscribed again (same event, same socket, with WithExpire), which
// refreshes the expiry, as OpenSIPS's subscribe_event with an expire does.
func WithExpire(d time.Duration) SubscribeOption {
	return func(c *subscribeConfig) { c.expire = d }
}

// WithQueueSize sets the queue capacity of this subscriber, overriding the
// WithQueue default of Events.
func WithQueueSize(n int) SubscribeOption {
	return func(c *subscribeConfig) { c.queue = n }
}

// SubscribeEvent sends every future raise of the declared event name to
// socket, through the transport registered for the socket's scheme
// (OpenSIPS's subscribe_event). An undeclared event (ErrUnknownEvent), a
// malformed socket (ErrMalformedSocket), an unknown scheme
// (ErrUnknownScheme) or a transport that cannot be created is an error
// (these are start-up errors for --event flags). Errors show the socket with
// its password redacted.
func (e *Events) SubscribeEvent(name, socket string, opts ...SubscribeOption) (*Subscriber, error) {
	cfg := subscribeConfig{queue: e.queue}
	for _, o := range opts {
		o(&cfg)
	}
	s, err := ParseSocket(socket)
	if err != nil {
		return nil, fmt.Errorf("evi: subscribe %s: %w", name, err)
	}
	e.mu.RLock()
	topic, factory, closed := e.events[name], e.transports[s.scheme], e.closed
	existing := e.subs[keyOf(name, s)]
	e.mu.RUnlock()
	switch {
	case closed:
		return nil, ErrClosed
	case topic == nil:
		return nil, fmt.Errorf("evi: subscribe %s to %s: %w", s, name, ErrUnknownEvent)
	case factory == nil:
		return nil, fmt.Errorf("evi: subscribe %s to %s: %w %q", s, name, ErrUnknownScheme, s.scheme)
	case existing != nil:
		if cfg.expire > 0 && existing.refresh(cfg.expire) {
			return existing, nil
		}
		return nil, fmt.Errorf("evi: subscribe %s to %s: %w", s, name, ErrAlreadySubscribed)
	}
	tr, err := factory(s)
	if err != nil {
		return nil, fmt.Errorf("evi: subscribe %s to %s: %w", s, name, err)
	}
	sub := &Subscriber{ev: e, event: name, socket: s, tr: tr, sync: isSynchronous(tr)}
	sub.sub, err = topic.Subscribe(sub.handle,
		eventbus.WithName(s.String()), eventbus.WithCapacity(cfg.queue), eventbus.WithOverflow(eventbus.Drop))
	if err != nil {
		_ = tr.Close()
		return nil, fmt.Errorf("evi: subscribe %s to %s: %w", s, name, err)
	}
	e.mu.Lock()
	if e.closed || e.subs[keyOf(name, s)] != nil {
		closed := e.closed
		e.mu.Unlock()
		sub.sub.Unsubscribe() // its final message closes the transport
		if closed {
			return nil, ErrClosed
		}
		return nil, fmt.Errorf("evi: subscribe %s to %s: %w", s, name, ErrAlreadySubscribed)
	}
	e.subs[keyOf(name, s)] = sub
	e.addSync(sub)
	e.mu.Unlock()
	if cfg.expire > 0 {
		sub.refresh(cfg.expire)
	}
	return sub, nil
}

// SubscribeFlags subscribes every --event NAME=SOCKET value, stopping at the
// first error.
func (e *Events) SubscribeFlags(values []string) error {
	for _, v := range values {
		name, sock, err := ParseEventFlag(v)
		if err != nil {
			return err
		}
		if _, err := e.SubscribeEvent(name, sock.scheme+":"+sock.address); err != nil {
			return fmt.Errorf("evi: --event %s: %w", name, err)
		}
	}
	return nil
}

func (e *Events) forget(s *Subscriber) {
	e.mu.Lock()
	defer e.mu.Unlock()
	k := keyOf(s.event, s.socket)
	if e.subs[k] == s {
		delete(e.subs, k)
		e.removeSync(s)
	}
}

// Subscribers returns the stats of every transport subscriber, by event and
// socket.
func (e *Events) Subscribers() []SubscriberStats {
	e.mu.RLock()
	subs := slices.Collect(maps.Values(e.subs))
	e.mu.RUnlock()
	out := make([]SubscriberStats, 0, len(subs))
	for _, s := range subs {
		out = append(out, s.Stats())
	}
	slices.SortFunc(out, func(a, b SubscriberStats) int {
		return cmp.Or(cmp.Compare(a.Event, b.Event), cmp.Compare(a.Socket, b.Socket))
	})
	return out
}

// Stats counts raised and refused events.
type Stats struct {
	Raised   uint64 // published on the bus
	TooLarge uint64 // refused: encoding above the maximum size
	Unknown  uint64 // refused: event not declared
	Invalid  uint64 // refused: bad attribute name
}

// Stats returns the event interface's counters.
func (e *Events) Stats() Stats {
	return Stats{
		Raised:   e.raised.Load(),
		TooLarge: e.tooLarge.Load(),
		Unknown:  e.unknown.Load(),
		Invalid:  e.invalid.Load(),
	}
}

// Close unsubscribes every transport subscriber, lets each send what it has
// queued (each send bounded by the send timeout), closes the transports and
// waits for all of it or for ctx. RaiseEvent and SubscribeEvent return
// ErrClosed afterwards. Go subscribers of the bus are the bus's business.
func (e *Events) Close(ctx context.Context) error {
	e.mu.Lock()
	e.closed = true
	subs := slices.Collect(maps.Values(e.subs))
	e.mu.Unlock()
	if err := eventbus.UnsubscribeAll(ctx, subs); err != nil {
		return fmt.Errorf("evi: close: %w", err)
	}
	return nil
}

// Subscriber is one socket subscribed to one event.
type Subscriber struct {
	ev     *Events
	event  string
	socket Socket
	tr     Transport
	sub    *eventbus.Subscription
	sync   bool // tr is Synchronous: RaiseEvent sends, handle does not

	sent, failed atomic.Uint64

	mu      sync.Mutex // guards the expiry
	expires time.Time
	timer   *clock.Timer
	ended   bool

	lastErrLog time.Time // used by the dispatch goroutine only
	errsLog    uint64
}

// SubscriberStats describes a subscriber.
type SubscriberStats struct {
	Event  string
	Socket string // redacted
	// Sent and Failed count Transport.Send calls that returned nil / an error.
	Sent, Failed uint64
	// Expires is the zero time for a subscription without expiry.
	Expires time.Time
	// Queue holds the queue depth, high-water mark and dropped count.
	Queue eventbus.Stats
}

// Event returns the event name.
func (s *Subscriber) Event() string { return s.event }

// Socket returns the socket.
func (s *Subscriber) Socket() Socket { return s.socket }

// Stats returns the subscriber's counters.
func (s *Subscriber) Stats() SubscriberStats {
	s.mu.Lock()
	exp := s.expires
	s.mu.Unlock()
	return SubscriberStats{
		Event:   s.event,
		Socket:  s.socket.String(),
		Sent:    s.sent.Load(),
		Failed:  s.failed.Load(),
		Expires: exp,
		Queue:   s.sub.Stats(),
	}
}

// Unsubscribe ends the subscription: events already queued are still sent,
// then the transport is closed and the returned channel is closed.
// It is idempotent.
func (s *Subscriber) Unsubscribe() <-chan struct{} {
	s.mu.Lock()
	s.ended = true
	if s.timer != nil {
		s.timer.Stop()
	}
	s.mu.Unlock()
	s.ev.forget(s)
	return s.sub.Unsubscribe()
}

// Done returns a channel closed when the subscription has ended and its
// transport is closed.
func (s *Subscriber) Done() <-chan struct{} { return s.sub.Done() }

// refresh sets the expiry to now+d; false if the subscription already ended.
func (s *Subscriber) refresh(d time.Duration) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended {
		return false
	}
	s.expires = s.ev.clock.Now().Add(d)
	if s.timer != nil {
		s.timer.Stop()
	}
	s.timer = s.ev.clock.AfterFunc(d, func() { s.Unsubscribe() })
	return true
}

// handle runs on the subscription's goroutine, one event at a time.
func (s *Subscriber) handle(_ *eventbus.Subscription, _ *eventbus.Topic, m *eventbus.Message) {
	if m.IsFinal() {
		if err := s.tr.Close(); err != nil {
			s.ev.log.Warn("evi: closing transport", slog.String("event", s.event), slog.Any("socket", s.socket), slog.Any("error", err))
		}
		return
	}
	if s.sync {
		return
	}
	ev, ok := EventType.Payload(m)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.ev.sendTimeout)
	err := s.tr.Send(ctx, ev)
	cancel()
	if err == nil {
		s.sent.Add(1)
		return
	}
	s.failed.Add(1)
	s.errsLog++
	now := s.ev.clock.Now()
	if s.lastErrLog.IsZero() || now.Sub(s.lastErrLog) >= eventbus.DefaultDropLogInterval {
		s.ev.log.Warn("evi: cannot send event", slog.String("event", s.event), slog.Any("socket", s.socket),
			slog.Uint64("failed", s.errsLog), slog.Uint64("failed_total", s.failed.Load()), slog.Any("error", err))
		s.lastErrLog, s.errsLog = now, 0
	}
}
