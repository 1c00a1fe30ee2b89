package transaction

import (
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/require"
)

// newReq builds a bare request of method m (no headers): enough for the
// table, which never reads headers when there is no server transaction.
func newReq(m sip.RequestMethod) *sip.Request {
	return sip.NewRequest(m, sip.Uri{Scheme: "sip", User: "bob", Host: "example.com"})
}

// parseReq builds a realistic request over TCP from raw text.
func parseReq(t testing.TB, method string) *sip.Request {
	t.Helper()
	raw := method + " sip:bob@example.com SIP/2.0\r\n" +
		"Via: SIP/2.0/TCP 10.0.0.1:5060;branch=z9hG4bK-" + method + "-1\r\n" +
		"Max-Forwards: 70\r\n" +
		"From: <sip:alice@example.com>;tag=a1\r\n" +
		"To: <sip:bob@example.com>\r\n" +
		"Call-ID: call-1@10.0.0.1\r\n" +
		"CSeq: 1 " + method + "\r\n" +
		"Content-Length: 0\r\n\r\n"
	msg, err := sip.NewParser().ParseSIP([]byte(raw))
	require.NoError(t, err, "parse %s", method)
	req := msg.(*sip.Request)
	req.SetTransport("TCP")
	req.SetSource("10.0.0.1:5060")
	return req
}

// cancelOf builds the CANCEL of an INVITE (same branch, CSeq method CANCEL).
func cancelOf(t testing.TB, inv *sip.Request) *sip.Request {
	t.Helper()
	raw := "CANCEL sip:bob@example.com SIP/2.0\r\n" +
		"Via: " + inv.Via().Value() + "\r\n" +
		"Max-Forwards: 70\r\n" +
		"From: <sip:alice@example.com>;tag=a1\r\n" +
		"To: <sip:bob@example.com>\r\n" +
		"Call-ID: call-1@10.0.0.1\r\n" +
		"CSeq: 1 CANCEL\r\n" +
		"Content-Length: 0\r\n\r\n"
	msg, err := sip.NewParser().ParseSIP([]byte(raw))
	require.NoError(t, err, "parse CANCEL")
	req := msg.(*sip.Request)
	req.SetTransport("TCP")
	return req
}

// wire is a sip.Connection that records what a server transaction sends.
// When block is set, WriteMsg of a response with that status code signals
// on entered and waits for release.
type wire struct {
	mu    sync.Mutex
	sent  []*sip.Response
	block int

	entered chan struct{}
	release chan struct{}
}

var _ sip.Connection = (*wire)(nil)

func (w *wire) LocalAddr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5060}
}

func (w *wire) WriteMsg(m sip.Message) error {
	res, ok := m.(*sip.Response)
	if !ok {
		return nil
	}
	w.mu.Lock()
	w.sent = append(w.sent, res)
	blocked := w.block != 0 && res.StatusCode == w.block
	w.mu.Unlock()
	if blocked {
		close(w.entered)
		<-w.release
	}
	return nil
}

func (w *wire) Ref(int) int            { return 1 }
func (w *wire) TryClose() (int, error) { return 0, nil }
func (w *wire) Close() error           { return nil }

// blockOn makes WriteMsg of a response with status code wait for release.
func (w *wire) blockOn(code int) *wire {
	w.block, w.entered, w.release = code, make(chan struct{}), make(chan struct{})
	return w
}

// codes lists the status codes sent so far.
func (w *wire) codes() []int {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := []int{}
	for _, r := range w.sent {
		out = append(out, r.StatusCode)
	}
	return out
}

// newStx returns a real sipgo server transaction (reliable transport, so no
// retransmission timers) over a recording wire.
func newStx(t testing.TB, req *sip.Request, w *wire) *sip.ServerTx {
	t.Helper()
	key, err := sip.ServerTxKeyMake(req)
	require.NoError(t, err, "server tx key")
	stx := sip.NewServerTx(key, req, w, slog.New(slog.DiscardHandler))
	require.NoError(t, stx.Init(), "server tx init")
	t.Cleanup(stx.Terminate)
	return stx
}

// events records OnChange calls.
type events struct {
	mu  sync.Mutex
	log []event
	ch  chan event // if set, every event is sent here too
}

type event struct {
	tok Token
	ev  Event
}

func (e *events) on(tx *Tx, ev Event) {
	e.mu.Lock()
	e.log = append(e.log, event{tx.Token(), ev})
	e.mu.Unlock()
	if e.ch != nil {
		e.ch <- event{tx.Token(), ev}
	}
}

// of returns the events of one token, in order.
func (e *events) of(tok Token) []Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := []Event{}
	for _, x := range e.log {
		if x.tok == tok.Tx() {
			out = append(out, x.ev)
		}
	}
	return out
}

// waitEvent waits for an event on ch; the timeout only guards against a hang.
func waitEvent(t testing.TB, ch <-chan event) event {
	t.Helper()
	select {
	case e := <-ch:
		return e
	case <-time.After(5 * time.Second):
		t.Fatal("no event within 5s")
		return event{}
	}
}

// within runs f and fails the test if it does not return in time (a
// deadlock guard, not a timing assertion).
func within(t testing.TB, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatalf("%s did not return within 5s (deadlock?)", what)
	}
}
