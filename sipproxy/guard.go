package sipproxy

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/emiago/sipgo/sip"

	"github.com/sipasync/sipasync/internal/lograte"
)

// The guard is what the proxy does with messages it will not route:
// requests that fail validation, bytes sipgo cannot parse, and messages
// over the size limit. Each is answered when a reply is possible (400, 416,
// 420, 505, 513) and counted either way; none is dropped silently.
//
// sipgo parses in its transport goroutines and, on failure, logs "failed to
// parse" with the bytes and drops them. The guard sees that record through
// the logger it gives sipgo (no second parse on the good path) and finds
// the socket the bytes came from: each UDP socket and each TCP or TLS
// connection is wrapped so that it remembers the bytes of its last read
// until the next one. sipgo logs in the reading goroutine before it reads
// again, so the bytes in the record are still there to compare.

// DefaultMaxMessageSize is the largest SIP message taken when
// Config.MaxMessageSize is 0.
const DefaultMaxMessageSize = 65535

// InputStats count the messages refused before routing.
type InputStats struct {
	// Malformed counts messages refused as malformed: unparsable, failing
	// request validation, or missing what a transaction needs (Via, CSeq).
	// Answered with 400, 416, 420 or 505, or dropped.
	Malformed uint64
	// MalformedDropped counts those that got no answer: a response, no
	// request line or no Via to answer to, or the answer could not be sent.
	MalformedDropped uint64
	// TooLarge counts messages over the size limit, answered 513 or dropped.
	TooLarge uint64
	// TooLargeDropped counts those that got no answer.
	TooLargeDropped uint64
	// Shed counts new requests answered 503 by overload control.
	Shed uint64
	// ShedDropped counts those whose 503 could not be built or sent.
	ShedDropped uint64
	// ShedACKs counts ACKs for those 503s, absorbed on UDP.
	ShedACKs uint64
}

// InputStats returns the counts of refused input.
func (p *Proxy) InputStats() InputStats {
	g := p.guard
	return InputStats{Malformed: g.malformed.Load(), MalformedDropped: g.malformedDropped.Load(),
		TooLarge: g.tooLarge.Load(), TooLargeDropped: g.tooLargeDropped.Load(),
		Shed: g.shed.Load(), ShedDropped: g.shedDropped.Load(), ShedACKs: g.shedACKs.Load()}
}

type guard struct {
	maxSize    int
	maxHeaders int
	log        *slog.Logger
	clock      clock.Clock

	malformed, malformedDropped atomic.Uint64
	tooLarge, tooLargeDropped   atomic.Uint64
	shed, shedDropped, shedACKs atomic.Uint64
	warnLimit                   *lograte.Limiter
	tags                        atomic.Uint64
	overload                    *overload // nil: overload control off
	acks                        *ackGate  // told when an expected ACK is read

	mu      sync.Mutex
	packets []*guardPacketConn
	streams map[*guardConn]struct{}
}

func newGuard(maxSize, maxHeaders int, log *slog.Logger, clk clock.Clock) *guard {
	if maxSize <= 0 {
		maxSize = DefaultMaxMessageSize
	}
	if maxHeaders <= 0 {
		maxHeaders = DefaultMaxHeaders
	}
	g := &guard{maxSize: maxSize, maxHeaders: maxHeaders, log: log, clock: clk,
		streams: map[*guardConn]struct{}{}}
	g.warnLimit = lograte.New(g.clock, time.Second)
	return g
}

// parser is sipgo's parser with the size limit.
func (g *guard) parser() *sip.Parser {
	p := sip.NewParser()
	p.MaxMessageLength = g.maxSize
	return p
}

// refuseInvalid answers a request that fails validation and reports
// whether it did. An ACK is never answered: it is dropped and counted.
func (p *Proxy) refuseInvalid(req *sip.Request, stx *sip.ServerTx) bool {
	why := validateRequest(req, p.guard.maxHeaders)
	if why == nil {
		return false
	}
	g := p.guard
	g.malformed.Add(1)
	if req.IsAck() {
		g.malformedDropped.Add(1)
		stx.Terminate()
		g.warn("invalid ACK dropped", why.reason, req.StartLine())
		return true
	}
	res := sip.NewResponseFromRequest(req, why.code, why.reason, nil)
	res.SipVersion = "SIP/2.0" // also to a request of another version (505)
	for _, h := range why.hdrs {
		res.AppendHeader(h)
	}
	if err := stx.Respond(res); err != nil {
		g.malformedDropped.Add(1)
		g.warn("invalid request not answered: "+err.Error(), why.reason, req.StartLine())
		return true
	}
	g.warn("invalid request refused", why.reason, req.StartLine())
	return true
}

// parseFailed handles bytes sipgo could not parse: it answers them on the
// socket they came from when they start with a request line and carry a
// Via, and counts them.
func (g *guard) parseFailed(data string, err error) {
	code, reason := 400, "Bad Request"
	total, dropped := &g.malformed, &g.malformedDropped
	if errors.Is(err, sip.ErrMessageTooLarge) {
		code, reason = 513, "Message Too Large"
		total, dropped = &g.tooLarge, &g.tooLargeDropped
	}
	total.Add(1)
	sent := false
	if res := rawReply([]byte(data), code, reason, g.toTag()); res != nil {
		sent = g.replyTo(data, res)
	}
	if !sent {
		dropped.Add(1)
	}
	why := "unparsable"
	if err != nil {
		why = err.Error()
	}
	g.warn("unparsable message refused", why, sample(data))
}

// replyTo writes res on the socket whose last read was data.
func (g *guard) replyTo(data string, res []byte) bool {
	g.mu.Lock()
	packets := g.packets
	g.mu.Unlock()
	for _, pc := range packets {
		if addr := pc.take(data); addr != nil {
			_, err := pc.PacketConn.WriteTo(res, addr)
			return err == nil
		}
	}
	g.mu.Lock()
	var match *guardConn
	for c := range g.streams {
		if c.take(data) {
			match = c
			break
		}
	}
	g.mu.Unlock()
	if match == nil {
		return false
	}
	_ = match.Conn.SetWriteDeadline(time.Now().Add(time.Second))
	_, err := match.Conn.Write(res)
	return err == nil
}

// tooBig answers (513) or drops a message over the limit read whole from
// a datagram socket.
func (g *guard) tooBig(data []byte, write func([]byte) error) {
	g.tooLarge.Add(1)
	res := rawReply(data, 513, "Message Too Large", g.toTag())
	if res == nil || write(res) != nil {
		g.tooLargeDropped.Add(1)
	}
	g.warn("message over the size limit refused", "size "+strconv.Itoa(len(data))+" > "+strconv.Itoa(g.maxSize), sample(string(data[:min(len(data), 200)])))
}

// toTag returns a To tag for a stateless answer.
func (g *guard) toTag() string { return "sa-" + strconv.FormatUint(g.tags.Add(1), 36) }

// warn logs a refusal at most once a second at Warn (with the totals); the
// others go to Debug, so a flood of bad input cannot flood the log.
func (g *guard) warn(msg, why, what string) {
	if ok, _ := g.warnLimit.Allow("refused"); !ok {
		g.log.Debug(msg, "why", why, "message", what)
		return
	}
	g.log.Warn(msg, "why", why, "message", what,
		"malformed", g.malformed.Load(), "malformed_dropped", g.malformedDropped.Load(),
		"too_large", g.tooLarge.Load(), "too_large_dropped", g.tooLargeDropped.Load())
}

// sample is the start of a message for a log line, quoted.
func sample(s string) string {
	if len(s) > 120 {
		s = s[:120]
	}
	return strconv.Quote(s)
}

// rawReply builds a stateless answer to the raw bytes of a request that
// could not be parsed: the status line, the Via, From, To, Call-ID and CSeq
// lines copied as they came (a To tag added when missing), nil when the
// bytes do not start with a request line or carry no usable Via. Lines with
// control bytes are left out; a Via line with them means no answer. The
// answer is never longer than the request plus a few hundred bytes, so it
// cannot amplify.
func rawReply(msg []byte, code int, reason, tag string) []byte {
	return rawReplyWith(msg, code, reason, tag, "")
}

// rawReplyWith is rawReply with extra header lines (each ending in CRLF).
func rawReplyWith(msg []byte, code int, reason, tag, extra string) []byte {
	line, rest := cutLine(msg)
	if !isRequestLine(line) {
		return nil
	}
	var b bytes.Buffer
	b.WriteString("SIP/2.0 ")
	b.WriteString(strconv.Itoa(code))
	b.WriteByte(' ')
	b.WriteString(reason)
	b.WriteString("\r\n")
	vias := 0
	for len(rest) > 0 {
		line, rest = cutLine(rest)
		if len(line) == 0 {
			break // end of the header section
		}
		if line[0] == ' ' || line[0] == '\t' {
			continue // a folded line: the header is left out
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		isVia, isTo := false, false
		switch strings.ToLower(string(bytes.TrimSpace(name))) {
		case "via", "v":
			isVia = true
		case "to", "t":
			isTo = true
		case "from", "f", "call-id", "i", "cseq":
		default:
			continue
		}
		if !cleanLine(line) {
			if isVia {
				return nil
			}
			continue
		}
		if isVia && len(bytes.TrimSpace(value)) == 0 {
			return nil
		}
		b.Write(line)
		if isTo && !bytes.Contains(bytes.ToLower(value), []byte("tag=")) {
			b.WriteString(";tag=")
			b.WriteString(tag)
		}
		b.WriteString("\r\n")
		if isVia {
			vias++
		}
	}
	if vias == 0 {
		return nil
	}
	b.WriteString(extra)
	b.WriteString("Server: sipasync\r\nContent-Length: 0\r\n\r\n")
	if b.Len() > len(msg)+256 {
		return nil
	}
	return b.Bytes()
}

// cutLine splits at the first LF; a CR before it is dropped.
func cutLine(b []byte) (line, rest []byte) {
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		return b, nil
	}
	line, rest = b[:i], b[i+1:]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, rest
}

// isRequestLine reports whether line looks like a request line: a method
// token, a space, and "SIP/" later on. Responses are never answered.
func isRequestLine(line []byte) bool {
	method, rest, ok := bytes.Cut(line, []byte(" "))
	return ok && isToken(string(method)) && !bytes.HasPrefix(line, []byte("SIP/")) &&
		bytes.Contains(rest, []byte("SIP/"))
}

// cleanLine reports whether a header line may be copied into an answer:
// at most 1024 bytes, no control byte but HTAB.
func cleanLine(b []byte) bool {
	if len(b) > 1024 {
		return false
	}
	for _, c := range b {
		if c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// sipgoLog is the log handler given to sipgo's transport and transaction
// layers: it takes the records that mean "a message was dropped" and
// passes the rest on.
type sipgoLog struct {
	inner slog.Handler
	g     *guard
}

func (g *guard) logger(inner slog.Handler) *slog.Logger {
	return slog.New(sipgoLog{inner: inner, g: g})
}

func (h sipgoLog) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelError || h.inner.Enabled(ctx, l)
}

func (h sipgoLog) Handle(ctx context.Context, r slog.Record) error {
	if r.Level >= slog.LevelError {
		var data string
		var err error
		r.Attrs(func(a slog.Attr) bool {
			switch a.Key {
			case "data":
				data = a.Value.String()
			case "error":
				err, _ = a.Value.Any().(error)
			}
			return true
		})
		switch {
		case r.Message == "failed to parse":
			// Transport: the bytes were dropped (a stream is closed after).
			h.g.parseFailed(data, err)
			return nil
		case r.Message == "Failed to send stateless 400 for malformed request":
			// sipgo's own 400 to a request with no Via or CSeq could not
			// be sent; the record below counts the request.
			h.g.malformedDropped.Add(1)
			return nil
		case r.Message == "Server tx failed to handle request" && err != nil &&
			strings.Contains(err.Error(), "make key failed"):
			h.g.malformed.Add(1)
			h.g.warn("request without Via or CSeq refused", err.Error(), "")
			return nil
		}
	}
	if !h.inner.Enabled(ctx, r.Level) {
		return nil
	}
	return h.inner.Handle(ctx, r)
}

func (h sipgoLog) WithAttrs(as []slog.Attr) slog.Handler {
	return sipgoLog{inner: h.inner.WithAttrs(as), g: h.g}
}

func (h sipgoLog) WithGroup(name string) slog.Handler {
	return sipgoLog{inner: h.inner.WithGroup(name), g: h.g}
}

// guardPacketConn wraps a UDP socket: datagrams over the size limit are
// answered (513) or dropped here and never reach sipgo; datagrams of NUL
// bytes only, which sipgo skips without a word, are counted; the last
// datagram is kept for parseFailed.
type guardPacketConn struct {
	net.PacketConn
	g *guard
	// uc and oob read datagrams with their arrival stamps when overload
	// control watches the queueing delay (uc nil otherwise); only the
	// socket's one reader uses them.
	uc  *net.UDPConn
	oob []byte

	mu   sync.Mutex
	last []byte
	from net.Addr
}

func (g *guard) packetConn(pc net.PacketConn) net.PacketConn {
	c := &guardPacketConn{PacketConn: pc, g: g}
	if uc, ok := pc.(*net.UDPConn); ok && g.overload.watchesDelay() && enableRxTimestamps(uc) {
		c.uc, c.oob = uc, make([]byte, rxOOBSize)
	}
	g.mu.Lock()
	g.packets = append(g.packets[:len(g.packets):len(g.packets)], c)
	g.mu.Unlock()
	return c
}

// ReadFrom reads the next datagram that is not refused here. A datagram
// that fills sipgo's whole buffer may have been cut, so it counts as over
// the limit: on UDP the limit is at most that buffer less one byte.
func (c *guardPacketConn) ReadFrom(b []byte) (int, net.Addr, error) {
	c.mu.Lock()
	c.last, c.from = nil, nil
	c.mu.Unlock()
	buf := b
	if len(buf) > c.g.maxSize+1 {
		buf = buf[:c.g.maxSize+1]
	}
	for {
		n, addr, err := c.read(buf)
		if err != nil {
			return n, addr, err
		}
		if n > c.g.maxSize || n == len(b) {
			c.g.tooBig(buf[:n], func(res []byte) error {
				_, err := c.PacketConn.WriteTo(res, addr)
				return err
			})
			continue
		}
		if n > 0 && buf[0] == 0 && len(bytes.Trim(buf[:n], "\x00")) == 0 {
			c.g.malformed.Add(1)
			c.g.malformedDropped.Add(1)
			c.g.warn("datagram of NUL bytes dropped", "size "+strconv.Itoa(n), "")
			continue
		}
		if c.g.overload.shedding() && c.g.shedDatagram(buf[:n], func(res []byte) error {
			_, err := c.PacketConn.WriteTo(res, addr)
			return err
		}) {
			continue
		}
		if c.g.acks != nil && c.g.acks.expecting() && bytes.HasPrefix(buf[:n], []byte("ACK ")) {
			_, rest := cutLine(buf[:n])
			if callID, _, _ := dialogHeaders(rest); callID != nil {
				c.g.acks.seen(callID)
			}
		}
		c.mu.Lock()
		c.last, c.from = buf[:n], addr
		c.mu.Unlock()
		return n, addr, nil
	}
}

// read reads one datagram; with arrival stamps on, it gives overload
// control the time the datagram waited in the socket's queue.
func (c *guardPacketConn) read(b []byte) (int, net.Addr, error) {
	if c.uc == nil {
		return c.PacketConn.ReadFrom(b)
	}
	n, oobn, _, ua, err := c.uc.ReadMsgUDP(b, c.oob)
	if err != nil {
		if ua == nil {
			return n, nil, err
		}
		return n, ua, err
	}
	if at, ok := rxTimestamp(c.oob[:oobn]); ok {
		c.g.overload.observe(time.Since(at))
	}
	return n, ua, nil
}

// take returns the sender of the last datagram if it was data, once.
func (c *guardPacketConn) take(data string) net.Addr {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.last == nil || string(c.last) != data {
		return nil
	}
	addr := c.from
	c.last, c.from = nil, nil
	return addr
}

// guardListener wraps a TCP or TLS listener so that its connections keep
// their last read for parseFailed.
type guardListener struct {
	net.Listener
	g *guard
}

func (g *guard) listener(ln net.Listener) net.Listener { return guardListener{Listener: ln, g: g} }

func (l guardListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	gc := &guardConn{Conn: c, g: l.g}
	l.g.mu.Lock()
	l.g.streams[gc] = struct{}{}
	l.g.mu.Unlock()
	return gc, nil
}

// guardConn is an accepted stream connection that remembers its last read.
type guardConn struct {
	net.Conn
	g *guard

	mu   sync.Mutex
	last []byte
}

func (c *guardConn) Read(b []byte) (int, error) {
	c.mu.Lock()
	c.last = nil
	c.mu.Unlock()
	n, err := c.Conn.Read(b)
	if n > 0 && b[0] == 0 && len(bytes.Trim(b[:n], "\x00")) == 0 {
		// sipgo skips a read of NUL bytes only without a word.
		c.g.malformed.Add(1)
		c.g.malformedDropped.Add(1)
		c.g.warn("NUL bytes dropped", "size "+strconv.Itoa(n), "")
	}
	if n > 0 {
		c.mu.Lock()
		c.last = b[:n]
		c.mu.Unlock()
	}
	return n, err
}

func (c *guardConn) take(data string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.last == nil || string(c.last) != data {
		return false
	}
	c.last = nil
	return true
}

func (c *guardConn) Close() error {
	c.g.mu.Lock()
	delete(c.g.streams, c)
	c.g.mu.Unlock()
	return c.Conn.Close()
}
