package sipproxy

import (
	"errors"
	"log/slog"
	"strconv"
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
