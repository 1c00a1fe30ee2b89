// Package siptest is the test kit of sipasync's packages: realistic
// requests, real sipgo server transactions over a recording connection,
// and bounded waits. Each package's tests build their harness from it.
package siptest

import (
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/require"
)

// WaitFor bounds every wait on another goroutine: a guard against a hang,
// never a timing assertion.
const WaitFor = 10 * time.Second

// Discard is a logger that drops everything.
var Discard = slog.New(slog.DiscardHandler)

// Eventually polls cond until it holds, failing the test after WaitFor.
func Eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(WaitFor)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for: %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// Wire is a sip.Connection that records the responses a server
// transaction sends. A Counting wire keeps only the number. BlockOn makes
// it hold the response with one status code until Release is closed.
type Wire struct {
	Counting bool
	// Entered is closed when the blocked response is being written;
	// closing Release lets it go (see BlockOn).
	Entered, Release chan struct{}

	mu    sync.Mutex
	sent  []*sip.Response
	n     atomic.Int64
	block int
}

var _ sip.Connection = (*Wire)(nil)

// LocalAddr implements sip.Connection.
func (w *Wire) LocalAddr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5060} }

// WriteMsg implements sip.Connection: it records a response.
func (w *Wire) WriteMsg(m sip.Message) error {
	res, ok := m.(*sip.Response)
	if !ok {
		return nil
	}
	w.n.Add(1)
	if w.Counting {
		return nil
	}
	w.mu.Lock()
	w.sent = append(w.sent, res)
	blocked := w.block != 0 && res.StatusCode == w.block
	w.mu.Unlock()
	if blocked {
		close(w.Entered)
		<-w.Release
	}
	return nil
}

// Ref implements sip.Connection.
func (w *Wire) Ref(int) int { return 1 }

// TryClose implements sip.Connection.
func (w *Wire) TryClose() (int, error) { return 0, nil }

// Close implements sip.Connection.
func (w *Wire) Close() error { return nil }

// BlockOn makes the write of a response with status code wait for Release.
func (w *Wire) BlockOn(code int) *Wire {
	w.block, w.Entered, w.Release = code, make(chan struct{}), make(chan struct{})
	return w
}

// Count returns how many responses were written.
func (w *Wire) Count() int64 { return w.n.Load() }

// Codes lists the status codes of the responses to the original request
// (a response to a CANCEL is left out).
func (w *Wire) Codes() []int {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := []int{}
	for _, r := range w.sent {
		if cs := r.CSeq(); cs != nil && cs.MethodName == sip.CANCEL {
			continue
		}
		out = append(out, r.StatusCode)
	}
	return out
}

// Last returns the last response written, or nil.
func (w *Wire) Last() *sip.Response {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.sent) == 0 {
		return nil
	}
	return w.sent[len(w.sent)-1]
}

var callSeq atomic.Int64

// Request parses a realistic request of method over TCP from 10.0.0.1,
// with a fresh branch, From tag and Call-ID on every call.
func Request(t testing.TB, method string) *sip.Request {
	t.Helper()
	n := callSeq.Add(1)
	raw := fmt.Sprintf("%[1]s sip:bob@example.com SIP/2.0\r\n"+
		"Via: SIP/2.0/TCP 10.0.0.1:5060;branch=z9hG4bK-%[1]s-%[2]d\r\n"+
		"Max-Forwards: 70\r\n"+
		"From: <sip:alice@example.com>;tag=a%[2]d\r\n"+
		"To: <sip:bob@example.com>\r\n"+
		"Call-ID: call-%[2]d@10.0.0.1\r\n"+
		"CSeq: 1 %[1]s\r\n"+
		"Content-Length: 0\r\n\r\n", method, n)
	msg, err := sip.NewParser().ParseSIP([]byte(raw))
	require.NoError(t, err, "parse %s", method)
	req := msg.(*sip.Request)
	req.SetTransport("TCP")
	req.SetSource("10.0.0.1:5060")
	return req
}

// CancelOf builds the CANCEL of an INVITE (same branch, CSeq method CANCEL).
func CancelOf(t testing.TB, inv *sip.Request) *sip.Request {
	t.Helper()
	raw := "CANCEL " + inv.Recipient.String() + " SIP/2.0\r\n" +
		"Via: " + inv.Via().Value() + "\r\n" +
		"Max-Forwards: 70\r\n" +
		"From: " + inv.From().Value() + "\r\n" +
		"To: " + inv.To().Value() + "\r\n" +
		"Call-ID: " + inv.CallID().Value() + "\r\n" +
		"CSeq: " + fmt.Sprint(inv.CSeq().SeqNo) + " CANCEL\r\n" +
		"Content-Length: 0\r\n\r\n"
	msg, err := sip.NewParser().ParseSIP([]byte(raw))
	require.NoError(t, err, "parse CANCEL")
	req := msg.(*sip.Request)
	req.SetTransport("TCP")
	return req
}

// ServerTx returns a real sipgo server transaction of req over w (a
// reliable transport, so sipgo arms no retransmission timers), terminated
// when the test ends.
func ServerTx(t testing.TB, req *sip.Request, w *Wire) *sip.ServerTx {
	t.Helper()
	key, err := sip.ServerTxKeyMake(req)
	require.NoError(t, err, "server tx key")
	stx := sip.NewServerTx(key, req, w, Discard)
	require.NoError(t, stx.Init(), "server tx init")
	t.Cleanup(stx.Terminate)
	return stx
}

// Gate blocks the tasks or routes that Wait on it until Open; opening is
// idempotent and done when the test ends, so a failing test never leaves a
// worker blocked.
type Gate struct {
	ch   chan struct{}
	once sync.Once
}

// NewGate returns a closed gate.
func NewGate(t testing.TB) *Gate {
	g := &Gate{ch: make(chan struct{})}
	t.Cleanup(g.Open)
	return g
}

// Open lets every waiter through, now and later.
func (g *Gate) Open() { g.once.Do(func() { close(g.ch) }) }

// Wait blocks until Open.
func (g *Gate) Wait() { <-g.ch }

// IsOpen reports whether Open was called.
func (g *Gate) IsOpen() bool {
	select {
	case <-g.ch:
		return true
	default:
		return false
	}
}
