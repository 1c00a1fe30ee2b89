package rabbitmq

import (
	"context"
	crand "crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/sipasync/sipasync/eventbus/evi"
	"github.com/sipasync/sipasync/internal/lograte"
)

var (
	// ErrBufferFull reports an event refused because the socket already holds
	// Buffer events (the broker is away or slow to confirm).
	ErrBufferFull = errors.New("rabbitmq: buffer full")
	// ErrUnroutable reports a message the broker returned: no queue is bound
	// to its exchange with its routing key (published with mandatory).
	ErrUnroutable = errors.New("rabbitmq: unroutable: no queue bound for the routing key")
	// ErrNacked reports a message the broker refused (basic.nack).
	ErrNacked = errors.New("rabbitmq: broker nacked the message")
	// ErrNotConfirmed reports a sync raise whose confirm did not come within
	// the send timeout.
	ErrNotConfirmed = errors.New("rabbitmq: not confirmed within the send timeout")
	// ErrClosed reports an event sent to, or still held by, a closed
	// transport.
	ErrClosed = errors.New("rabbitmq: transport closed")
)

// Transport publishes events to one RabbitMQ socket. It implements
// evi.Transport and evi.Synchronous. One goroutine owns the connection: it
// connects (bounded by ConnectTimeout), publishes in confirm mode with
// mandatory set, and after the connection is lost reconnects with bounded
// exponential backoff and publishes again, first, what was published and not
// confirmed (so delivery is at least once; consumers dedupe on the message
// id). Send never blocks on the network: it appends to a bounded buffer.
type Transport struct {
	set      settings
	socket   string // redacted
	log      *slog.Logger
	idPrefix string
	seq      atomic.Uint64
	secret   string // the password, to scrub from broker and network errors

	mu        sync.Mutex
	pending   []*item // to publish, in order; pending[head:] are live
	head      int
	inflight  []*item // published, not confirmed, in publish order
	returned  map[string]struct{}
	closing   bool
	connected bool
	heartbeat time.Duration
	lastErr   string
	retryAt   time.Time // when the backoff ends; zero when not waiting
	netConn   net.Conn

	wake      chan struct{} // cap 1: pending grew, the window opened, closing
	closingCh chan struct{} // closed when Close starts
	force     chan struct{} // closed when the drain time is over
	done      chan struct{} // closed when the connection goroutine has ended
	closeOnce sync.Once

	published, confirmed, returnedN, nacked, retried atomic.Uint64
	dropped, tooLarge, failed                        atomic.Uint64
	reconnects, connectFailures                      atomic.Uint64

	logLimit *lograte.Limiter
}

type itemState uint8

const (
	queued    itemState = iota
	sent                // published at least once
	abandoned           // a sync raiser gave up before it was published
)

type item struct {
	body   []byte
	id     string
	event  string
	at     time.Time
	result chan error // sync mode only; cap 1
	state  itemState  // guarded by Transport.mu
	sends  int        // guarded by Transport.mu
}

// NewTransport starts the transport of a rabbitmq or rabbitmqs socket. It
// does not wait for the broker: the connection is made in the background
// and events wait in the buffer meanwhile. A malformed socket is an error
// wrapping evi.ErrMalformedSocket.
func NewTransport(s evi.Socket, opts Options) (*Transport, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	a, err := ParseAddress(s)
	if err != nil {
		return nil, err
	}
	set := resolve(opts.withDefaults(), a)
	if err := set.validate(); err != nil {
		return nil, fmt.Errorf("%w %s: %v", evi.ErrMalformedSocket, s, err)
	}
	var rnd [6]byte
	_, _ = crand.Read(rnd[:])
	t := &Transport{
		set:       set,
		socket:    s.String(),
		log:       set.Logger,
		idPrefix:  hex.EncodeToString(rnd[:]),
		returned:  make(map[string]struct{}),
		wake:      make(chan struct{}, 1),
		closingCh: make(chan struct{}),
		force:     make(chan struct{}),
		done:      make(chan struct{}),
		logLimit:  lograte.New(set.Clock, time.Second),
	}
	if a.Password != DefaultPass && len(a.Password) >= 3 {
		t.secret = a.Password
	}
	go t.run()
	return t, nil
}

// Synchronous reports sync mode: evi's RaiseEvent then calls Send itself and
// returns its error.
func (t *Transport) Synchronous() bool { return t.set.Sync }

// Socket returns the socket, password redacted.
func (t *Transport) Socket() string { return t.socket }

// String shows the transport by its redacted socket, so that printing it
// (%v, %+v, slog) never shows the fields holding the password.
func (t *Transport) String() string { return "rabbitmq.Transport(" + t.socket + ")" }

// GoString makes %#v print the redacted form too.
func (t *Transport) GoString() string { return t.String() }

// Send publishes ev. In async mode it only appends the event to the buffer
// and returns; a full buffer refuses it (ErrBufferFull, counted as dropped
// and logged). In sync mode it waits until the broker confirms the message
// or ctx ends, and returns nil, ErrUnroutable, ErrNacked, ErrBufferFull, or
// an error wrapping ErrNotConfirmed (the message may still arrive if it was
// published). An event whose body exceeds MaxSize is refused with
// evi.ErrEventTooLarge and counted (TooLarge), never truncated.
func (t *Transport) Send(ctx context.Context, ev *evi.Event) error {
	sync := t.set.Sync
	b := body(t.set.Format, ev)
	if len(b) > t.set.MaxSize {
		t.tooLarge.Add(1)
		if sync {
			t.failed.Add(1)
		}
		t.lossLog("too_large", "rabbitmq: event refused: too large", t.tooLarge.Load(),
			slog.String("event", ev.Name()), slog.Int("bytes", len(b)), slog.Int("max", t.set.MaxSize))
		return fmt.Errorf("rabbitmq: %s: %w: %d bytes, at most %d", t.socket, evi.ErrEventTooLarge, len(b), t.set.MaxSize)
	}
	it := &item{body: b, event: ev.Name(), at: ev.Time(),
		id: t.idPrefix + "-" + strconv.FormatUint(t.seq.Add(1), 10)}
	if sync {
		it.result = make(chan error, 1)
	}
	t.mu.Lock()
	switch {
	case t.closing:
		t.mu.Unlock()
		t.lose(sync)
		return fmt.Errorf("rabbitmq: %s: %w", t.socket, ErrClosed)
	case t.heldLocked() >= t.set.Buffer:
		t.mu.Unlock()
		t.lose(sync)
		if !sync {
			t.lossLog("buffer_full", "rabbitmq: buffer full: event dropped", t.dropped.Load(),
				slog.String("event", ev.Name()), slog.Int("buffer", t.set.Buffer))
		}
		return fmt.Errorf("rabbitmq: %s: %w (%d events held)", t.socket, ErrBufferFull, t.set.Buffer)
	}
	t.pending = append(t.pending, it)
	t.mu.Unlock()
	t.signal()
	if !sync {
		return nil
	}
	select {
	case err := <-it.result:
		if err != nil {
			t.failed.Add(1)
			return fmt.Errorf("rabbitmq: %s: %w", t.socket, err)
		}
		return nil
	case <-ctx.Done():
	}
	t.mu.Lock()
	state := it.state
	if state == queued {
		it.state = abandoned
		t.removePendingLocked(it)
	}
	lastErr := t.lastErr
	t.mu.Unlock()
	if state == sent {
		select {
		case err := <-it.result: // confirmed just now
			if err == nil {
				return nil
			}
			t.failed.Add(1)
			return fmt.Errorf("rabbitmq: %s: %w", t.socket, err)
		default:
		}
	}
	t.failed.Add(1)
	what := "not published"
	if state == sent {
		what = "published, may still be delivered"
	}
	if lastErr != "" {
		what += "; last error: " + lastErr
	}
	return fmt.Errorf("rabbitmq: %s: %w (%s): %w", t.socket, ErrNotConfirmed, what, ctx.Err())
}

// lose counts an event refused by Send: a failure for a sync raiser (who
// gets the error), a drop otherwise.
func (t *Transport) lose(sync bool) {
	if sync {
		t.failed.Add(1)
	} else {
		t.dropped.Add(1)
	}
}

func (t *Transport) heldLocked() int { return len(t.pending) - t.head + len(t.inflight) }

func (t *Transport) removePendingLocked(it *item) {
	for i := t.head; i < len(t.pending); i++ {
		if t.pending[i] == it {
			copy(t.pending[i:], t.pending[i+1:])
			t.pending[len(t.pending)-1] = nil
			t.pending = t.pending[:len(t.pending)-1]
			return
		}
	}
}

func (t *Transport) signal() {
	select {
	case t.wake <- struct{}{}:
	default:
	}
}

// Close stops taking events, lets the connection goroutine publish and
// confirm what the socket holds for up to DrainTimeout, then closes the
// connection. Events still held then are counted as dropped (sync raisers
// get ErrClosed) and logged. It is idempotent.
func (t *Transport) Close() error {
	t.closeOnce.Do(func() {
		t.mu.Lock()
		t.closing = true
		t.mu.Unlock()
		close(t.closingCh)
		t.signal()
		timer := t.set.Clock.Timer(t.set.DrainTimeout)
		defer timer.Stop()
		select {
		case <-t.done:
		case <-timer.C:
			close(t.force)
			t.mu.Lock()
			nc := t.netConn
			t.mu.Unlock()
			if nc != nil {
				_ = nc.Close() // unblocks a write to a broker that stopped reading
			}
			<-t.done
		}
	})
	<-t.done
	return nil
}

// Stats are the counters of one socket.
type Stats struct {
	Socket    string // password redacted
	Sync      bool
	Connected bool
	// Heartbeat is the interval negotiated with the broker (0 when not
	// connected or none).
	Heartbeat time.Duration
	// Published counts basic.publish calls (republishing included),
	// Confirmed the messages the broker acked and routed, Returned those it
	// returned as unroutable, Nacked those it refused, Retried the
	// republishing of messages published before a connection loss and not
	// confirmed (each a possible duplicate).
	Published, Confirmed, Returned, Nacked, Retried uint64
	// Dropped counts async events lost: refused by a full buffer, nacked,
	// or still held at Close. TooLarge counts events refused for their size
	// (both modes). Failed counts sync raises that returned an error.
	Dropped, TooLarge, Failed uint64
	// Reconnects counts connections made after the first; ConnectFailures
	// the attempts that failed.
	Reconnects, ConnectFailures uint64
	// Buffered is what the socket holds now: waiting to be published plus
	// published and not yet confirmed.
	Buffered int
	// LastError is the last connection error (password redacted), "" if
	// none since the last successful connect.
	LastError string
	// RetryAt is when the next connection attempt is due, while the socket
	// waits out its backoff (by Options.Clock); zero otherwise.
	RetryAt time.Time
}

// Stats returns the socket's counters.
func (t *Transport) Stats() Stats {
	t.mu.Lock()
	st := Stats{Socket: t.socket, Sync: t.set.Sync, Connected: t.connected, Heartbeat: t.heartbeat,
		Buffered: t.heldLocked(), LastError: t.lastErr, RetryAt: t.retryAt}
	t.mu.Unlock()
	st.Published = t.published.Load()
	st.Confirmed = t.confirmed.Load()
	st.Returned = t.returnedN.Load()
	st.Nacked = t.nacked.Load()
	st.Retried = t.retried.Load()
	st.Dropped = t.dropped.Load()
	st.TooLarge = t.tooLarge.Load()
	st.Failed = t.failed.Load()
	st.Reconnects = t.reconnects.Load()
	st.ConnectFailures = t.connectFailures.Load()
	return st
}

// run owns the connection: connect, serve, reconnect with backoff, until
// Close has drained the buffer or the drain time is over.
func (t *Transport) run() {
	defer close(t.done)
	defer t.failHeld()
	backoff := t.set.BackoffMin
	connectedOnce := false
	for !t.finished() {
		s, err := t.connect()
		if err != nil {
			t.connectFailures.Add(1)
			msg := t.scrub(err)
			t.setState(false, 0, msg)
			t.stateLog("connect", slog.LevelWarn, "rabbitmq: cannot connect", slog.String("error", msg),
				slog.Duration("retry_in", backoff), slog.Int("buffered", t.Stats().Buffered))
			if !t.sleep(jitter(backoff)) {
				return
			}
			backoff = min(backoff*2, t.set.BackoffMax)
			continue
		}
		if connectedOnce {
			t.reconnects.Add(1)
			t.log.Info("rabbitmq: reconnected", slog.String("socket", t.socket),
				slog.Uint64("reconnects", t.reconnects.Load()), slog.Int("buffered", t.Stats().Buffered))
		} else {
			t.log.Info("rabbitmq: connected", slog.String("socket", t.socket), slog.Duration("heartbeat", s.conn.Config.Heartbeat))
		}
		connectedOnce = true
		t.setState(true, s.conn.Config.Heartbeat, "")
		start := t.set.Clock.Now()
		err = t.serve(s)
		if err == nil { // drained or forced
			t.setState(false, 0, "")
			return
		}
		msg := t.scrub(err)
		t.setState(false, 0, msg)
		t.log.Warn("rabbitmq: connection lost", slog.String("socket", t.socket), slog.String("error", msg),
			slog.Int("buffered", t.Stats().Buffered))
		// A connection that dies at once (a missing exchange, a broker
		// refusing us) must not make a busy loop: the backoff only starts
		// over after a connection that lived.
		if t.set.Clock.Since(start) > 5*time.Second {
			backoff = t.set.BackoffMin
		}
		if !t.sleep(jitter(backoff)) {
			return
		}
		backoff = min(backoff*2, t.set.BackoffMax)
	}
}

// finished reports that run must end: the drain time is over, or Close has
// started and nothing is held.
func (t *Transport) finished() bool {
	select {
	case <-t.force:
		return true
	default:
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.closing && t.heldLocked() == 0
}

// sleep waits d; false if run must end.
func (t *Transport) sleep(d time.Duration) bool {
	timer := t.set.Clock.Timer(d)
	defer timer.Stop()
	t.mu.Lock()
	t.retryAt = t.set.Clock.Now().Add(d)
	t.mu.Unlock()
	defer func() {
		t.mu.Lock()
		t.retryAt = time.Time{}
		t.mu.Unlock()
	}()
	for {
		select {
		case <-timer.C:
			return !t.finished()
		case <-t.force:
			return false
		case <-t.wake:
			if t.finished() {
				return false
			}
		}
	}
}

func jitter(d time.Duration) time.Duration {
	return d + time.Duration((rand.Float64()*0.4-0.2)*float64(d))
}

// failHeld ends what the socket still holds after the connection goroutine:
// sync raisers get ErrClosed, async events are counted as dropped.
func (t *Transport) failHeld() {
	t.mu.Lock()
	held := append(t.inflight, t.pending[t.head:]...)
	t.inflight, t.pending, t.head = nil, nil, 0
	t.mu.Unlock()
	var dropped int
	for _, it := range held {
		if it.result != nil {
			it.result <- ErrClosed
			continue
		}
		dropped++
	}
	if dropped > 0 {
		t.dropped.Add(uint64(dropped))
		t.log.Error("rabbitmq: closed with events not delivered", slog.String("socket", t.socket),
			slog.Int("dropped", dropped), slog.Uint64("dropped_total", t.dropped.Load()))
	}
}

func (t *Transport) setState(connected bool, hb time.Duration, lastErr string) {
	t.mu.Lock()
	t.connected, t.heartbeat = connected, hb
	if lastErr != "" || connected {
		t.lastErr = lastErr
	}
	t.mu.Unlock()
}

// scrub returns err's text without the password (in case a broker or a
// library ever echoes it).
func (t *Transport) scrub(err error) string {
	msg := err.Error()
	if t.secret != "" {
		msg = strings.ReplaceAll(msg, t.secret, "xxxxx")
	}
	return msg
}

// session is one AMQP connection and its publishing channel.
type session struct {
	conn     *amqp.Connection
	ch       *amqp.Channel
	confirms chan amqp.Confirmation
	returns  chan amqp.Return
	blocked  chan amqp.Blocking
	connLost chan *amqp.Error
	chLost   chan *amqp.Error
}

func (t *Transport) connect() (*session, error) {
	a := t.set.addr
	timeout := t.set.ConnectTimeout
	props := amqp.NewConnectionProperties()
	props.SetClientConnectionName("sipasync " + t.socket)
	cfg := amqp.Config{
		SASL:       []amqp.Authentication{&amqp.PlainAuth{Username: a.User, Password: a.Password}},
		Vhost:      a.Vhost,
		Heartbeat:  t.set.Heartbeat,
		Properties: props,
		Locale:     "en_US",
		Dial: func(network, addr string) (net.Conn, error) {
			c, err := net.DialTimeout(network, addr, timeout)
			if err != nil {
				return nil, err
			}
			// Bounds the TLS and AMQP handshakes; amqp091 clears it after.
			_ = c.SetDeadline(time.Now().Add(timeout))
			t.mu.Lock()
			t.netConn = c
			t.mu.Unlock()
			return c, nil
		},
	}
	url := "amqp://" + a.hostPort() + "/"
	if a.TLS {
		url = "amqps://" + a.hostPort() + "/"
		tc := &tls.Config{MinVersion: tls.VersionTLS12}
		if t.set.TLS != nil {
			tc = t.set.TLS.Clone()
		}
		if tc.ServerName == "" {
			tc.ServerName = a.Host
		}
		cfg.TLSClientConfig = tc
	}
	if t.set.Heartbeat == 0 {
		url += "?heartbeat=0" // amqp091 would ask for 10 s otherwise
	}
	conn, err := amqp.DialConfig(url, cfg)
	if err != nil {
		return nil, err
	}
	fail := func(what string, err error) (*session, error) {
		_ = conn.CloseDeadline(time.Now().Add(timeout))
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	ch, err := conn.Channel()
	if err != nil {
		return fail("open channel", err)
	}
	if a.Exchange != "" {
		// The exchange must exist: publishing to a missing one would close
		// the channel on every message.
		if err := ch.ExchangeDeclarePassive(a.Exchange, "direct", false, false, false, false, nil); err != nil {
			return fail("exchange", err)
		}
	}
	if err := ch.Confirm(false); err != nil {
		return fail("confirm mode", err)
	}
	w := t.set.MaxInFlight
	s := &session{
		conn:     conn,
		ch:       ch,
		confirms: ch.NotifyPublish(make(chan amqp.Confirmation, w)),
		returns:  ch.NotifyReturn(make(chan amqp.Return, w)),
		blocked:  conn.NotifyBlocked(make(chan amqp.Blocking, 4)),
		connLost: conn.NotifyClose(make(chan *amqp.Error, 1)),
		chLost:   ch.NotifyClose(make(chan *amqp.Error, 1)),
	}
	return s, nil
}

// serve publishes until the session ends. It returns nil when the transport
// is finished (drained or forced) and the reason otherwise; either way the
// connection is closed and what was published and not confirmed is put back
// at the head of the buffer.
func (t *Transport) serve(s *session) error {
	confirmerDone := make(chan struct{})
	go t.confirmer(s, confirmerDone)
	err := t.publish(s)
	// Usually closed already; after a forced stop the network connection is
	// closed, so this never waits long.
	_ = s.conn.CloseDeadline(time.Now().Add(time.Second))
	<-confirmerDone
	t.mu.Lock()
	if n := len(t.inflight); n > 0 {
		t.pending = append(t.inflight, t.pending[t.head:]...)
		t.inflight, t.head = nil, 0
	}
	clear(t.returned)
	t.mu.Unlock()
	return err
}

// publish is the publishing loop of a session.
func (t *Transport) publish(s *session) error {
	a := t.set.addr
	mode := amqp.Transient
	if t.set.Persistent {
		mode = amqp.Persistent
	}
	ctype := ContentTypeGrammar
	if t.set.Format == FormatJSON {
		ctype = ContentTypeJSON
	}
	for {
		it, stop := t.next()
		if stop {
			return nil
		}
		if it == nil {
			select {
			case <-t.wake:
			case <-t.force:
			case e := <-s.connLost:
				return lost("connection closed", e)
			case e := <-s.chLost:
				return lost("channel closed", e)
			}
			continue
		}
		err := s.ch.PublishWithContext(context.Background(), a.Exchange, a.RoutingKey, true, false, amqp.Publishing{
			ContentType:  ctype,
			DeliveryMode: mode,
			MessageId:    it.id,
			Timestamp:    it.at,
			Type:         it.event,
			AppId:        "sipasync",
			Body:         it.body,
		})
		if err != nil {
			t.unpublish(it)
			return fmt.Errorf("publish: %w", err)
		}
		t.published.Add(1)
	}
}

func lost(what string, e *amqp.Error) error {
	if e == nil {
		return errors.New(what)
	}
	return fmt.Errorf("%s: %w", what, e)
}

// next takes the next event to publish and records it as in flight; nil if
// there is none or the window is full; stop when the session must end.
func (t *Transport) next() (it *item, stop bool) {
	select {
	case <-t.force:
		return nil, true
	default:
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closing && t.heldLocked() == 0 {
		return nil, true
	}
	if t.head == len(t.pending) || len(t.inflight) >= t.set.MaxInFlight {
		return nil, false
	}
	it = t.pending[t.head]
	t.pending[t.head] = nil
	t.head++
	if t.head == len(t.pending) {
		t.pending, t.head = t.pending[:0], 0
	}
	it.state = sent
	it.sends++
	if it.sends > 1 {
		t.retried.Add(1)
	}
	t.inflight = append(t.inflight, it)
	return it, false
}

// unpublish puts back an event whose publish failed: it is the last in
// flight (no confirm can come for it).
func (t *Transport) unpublish(it *item) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if n := len(t.inflight); n > 0 && t.inflight[n-1] == it {
		t.inflight = t.inflight[:n-1]
	}
	it.sends--
	t.pending = append([]*item{it}, t.pending[t.head:]...)
	t.head = 0
}

// confirmer matches the broker's confirms, which amqp091 delivers one per
// message in publish order, to the events in flight. A basic.return comes
// before the confirm of its message, so the returns are read first.
func (t *Transport) confirmer(s *session, done chan struct{}) {
	defer close(done)
	returns, blocked := s.returns, s.blocked
	for {
		select {
		case r, ok := <-returns:
			if !ok {
				returns = nil
				continue
			}
			t.markReturned(r)
		case b, ok := <-blocked:
			if !ok {
				blocked = nil
				continue
			}
			if b.Active {
				t.log.Warn("rabbitmq: broker blocks publishing (resource alarm)", slog.String("socket", t.socket), slog.String("reason", b.Reason))
			} else {
				t.log.Info("rabbitmq: broker unblocked publishing", slog.String("socket", t.socket))
			}
		case c, ok := <-s.confirms:
			if !ok {
				return
			}
		drain:
			for returns != nil {
				select {
				case r, ok := <-returns:
					if !ok {
						returns = nil
						break drain
					}
					t.markReturned(r)
				default:
					break drain
				}
			}
			t.confirm(c.Ack)
			t.signal()
		}
	}
}

func (t *Transport) markReturned(r amqp.Return) {
	t.mu.Lock()
	t.returned[r.MessageId] = struct{}{}
	t.mu.Unlock()
	n := t.returnedN.Add(1)
	t.lossLog("returned", "rabbitmq: message returned unroutable (no queue bound)", n,
		slog.String("exchange", r.Exchange), slog.String("routing_key", r.RoutingKey),
		slog.String("event", r.Type), slog.String("reply", r.ReplyText))
}

func (t *Transport) confirm(ack bool) {
	t.mu.Lock()
	if len(t.inflight) == 0 {
		t.mu.Unlock()
		return
	}
	it := t.inflight[0]
	t.inflight[0] = nil
	t.inflight = t.inflight[1:]
	if len(t.inflight) == 0 {
		t.inflight = nil
	}
	_, returned := t.returned[it.id]
	delete(t.returned, it.id)
	t.mu.Unlock()
	var err error
	switch {
	case !ack:
		n := t.nacked.Add(1)
		err = ErrNacked
		if it.result == nil {
			t.dropped.Add(1)
		}
		t.lossLog("nacked", "rabbitmq: broker nacked a message", n, slog.String("event", it.event))
	case returned:
		err = ErrUnroutable
	default:
		t.confirmed.Add(1)
	}
	if it.result != nil {
		it.result <- err
	}
}

// lossLog logs at most once a second per kind, with the total and how many
// were not logged.
func (t *Transport) lossLog(kind, msg string, total uint64, attrs ...slog.Attr) {
	t.limitedLog(kind, slog.LevelWarn, msg, append(attrs, slog.Uint64("total", total))...)
}

func (t *Transport) stateLog(kind string, lvl slog.Level, msg string, attrs ...slog.Attr) {
	t.limitedLog(kind, lvl, msg, attrs...)
}

func (t *Transport) limitedLog(kind string, lvl slog.Level, msg string, attrs ...slog.Attr) {
	ok, skipped := t.logLimit.Allow(kind)
	if !ok {
		return
	}
	attrs = append([]slog.Attr{slog.String("socket", t.socket)}, attrs...)
	if skipped > 0 {
		attrs = append(attrs, slog.Uint64("not_logged", skipped))
	}
	t.log.LogAttrs(context.Background(), lvl, msg, attrs...)
}

func (s settings) validate() error {
	if err := s.Options.validate(); err != nil {
		return err
	}
	return nil
}

var (
	_ evi.Transport   = (*Transport)(nil)
	_ evi.Synchronous = (*Transport)(nil)
)
