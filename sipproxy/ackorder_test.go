package sipproxy

import (
	"context"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sipasync/sipasync/routes"
)

func TestACKGateHoldsInDialogRequestsUntilTheACK(t *testing.T) {
	mock := clock.NewMock()
	g := newACKGate(mock)

	g.wait("none") // nothing expected: no wait
	assert.Zero(t, g.waited.Load())

	g.expect("c1")
	done := waitAsync(g, "c1")
	select {
	case <-done:
		t.Fatal("a BYE went on before its dialog's ACK")
	case <-time.After(50 * time.Millisecond):
	}
	g.acked("c1")
	requireReleased(t, done, "the ACK did not release the BYE")
	assert.EqualValues(t, 1, g.waited.Load())
	assert.Zero(t, g.timedOut.Load())
	assert.Zero(t, g.pending())
	g.acked("c1") // a retransmitted ACK: nothing to release

	// The ACK never comes: the request goes on after ackWait.
	g.expect("c2")
	done = waitAsync(g, "c2")
	assert.Eventually(t, func() bool { return g.waited.Load() == 2 }, 5*time.Second, time.Millisecond)
	mock.Add(ackWait)
	requireReleased(t, done, "the wait is not bounded")
	assert.EqualValues(t, 1, g.timedOut.Load())

	// Expected ACKs are forgotten after ackMaxAge.
	assert.Equal(t, 1, g.pending())
	mock.Add(ackMaxAge - ackWait - time.Second)
	g.sweep()
	assert.Equal(t, 1, g.pending(), "not older than the bound yet")
	mock.Add(2 * time.Second)
	g.sweep()
	assert.Zero(t, g.pending())
}

// waitAsync runs g.wait(callID) on a goroutine of its own; the channel
// closes when it returns.
func waitAsync(g *ackGate, callID string) <-chan struct{} {
	done := make(chan struct{})
	go func() { g.wait(callID); close(done) }()
	return done
}

// requireReleased fails the test unless done closes within 5 s.
func requireReleased(t *testing.T, done <-chan struct{}, msg string) {
	t.Helper()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal(msg)
	}
}

// An ACK already read from the socket (seen) but not yet routed holds the
// in-dialog request past ackWait, up to ackRouteWait.
func TestACKGateWaitsLongerForAnACKAlreadyRead(t *testing.T) {
	mock := clock.NewMock()
	g := newACKGate(mock)
	assert.False(t, g.expecting())
	g.expect("c1")
	assert.True(t, g.expecting())
	g.seen([]byte("other")) // not expected: nothing happens

	done := waitAsync(g, "c1")
	assert.Eventually(t, func() bool { return g.waited.Load() == 1 }, 5*time.Second, time.Millisecond)
	g.seen([]byte("c1"))
	g.seen([]byte("c1")) // a retransmission read twice
	require.Eventually(t, func() bool { return g.readFirst.Load() == 1 }, 5*time.Second, time.Millisecond)
	mock.Add(ackRouteWait - time.Millisecond)
	time.Sleep(20 * time.Millisecond) // a wrongly released waiter would close done now
	select {
	case <-done:
		t.Fatal("the request went on before the ACK that was read")
	default:
	}
	g.acked("c1")
	requireReleased(t, done, "routing the ACK did not release the request")
	assert.Zero(t, g.timedOut.Load())
	assert.False(t, g.expecting())

	// Read but never routed: bounded by ackRouteWait.
	g.expect("c2")
	done = waitAsync(g, "c2")
	assert.Eventually(t, func() bool { return g.waited.Load() == 2 }, 5*time.Second, time.Millisecond)
	g.seen([]byte("c2"))
	require.Eventually(t, func() bool { return g.readFirst.Load() == 2 }, 5*time.Second, time.Millisecond)
	mock.Add(ackRouteWait)
	requireReleased(t, done, "the wait for an ACK read is not bounded")
	assert.EqualValues(t, 1, g.timedOut.Load())
}

// TestBYEWaitsForACKOverTheWire: a caller's BYE that reaches the proxy
// before its ACK (as when sipgo's goroutines reorder them) is forwarded
// after the ACK. The proxy's clock is a mock, so only the ACK can release
// the BYE.
func TestBYEWaitsForACKOverTheWire(t *testing.T) {
	table := routes.NewTable()
	p, err := New(Config{Listen: []Listen{{Network: "udp", Host: "127.0.0.1"}},
		Logger: discard(), Clock: clock.NewMock(), UDPBuffer: -1}, table)
	require.NoError(t, err)
	uas, err := net.ListenPacket("udp", "127.0.0.1:0")
	require.NoError(t, err)
	defer uas.Close()
	require.NoError(t, table.Request(routes.HandlerFunc(func(c *routes.Context) error {
		if HasToTag(c.Request()) {
			return p.InDialog(c)
		}
		c.RecordRoute()
		return c.RelayTo(uas.LocalAddr().String())
	})))
	require.NoError(t, p.Start(context.Background()))
	defer p.Close()

	uac, err := net.Dial("udp", p.Listeners()[0].Addr())
	require.NoError(t, err)
	defer uac.Close()
	me, them := uac.LocalAddr().String(), uas.LocalAddr().String()
	read := func(c interface{ Read([]byte) (int, error) }, set func(time.Time) error, skip string) string {
		buf := make([]byte, 8192)
		for {
			require.NoError(t, set(time.Now().Add(5*time.Second)))
			n, err := c.Read(buf)
			require.NoError(t, err)
			if msg := string(buf[:n]); !strings.HasPrefix(msg, skip) {
				return msg
			}
		}
	}
	readUAS := func() (string, net.Addr) {
		buf := make([]byte, 8192)
		require.NoError(t, uas.SetReadDeadline(time.Now().Add(5*time.Second)))
		n, from, err := uas.ReadFrom(buf)
		require.NoError(t, err)
		return string(buf[:n]), from
	}
	headers := func(msg, name string) []string {
		var out []string
		for _, l := range strings.Split(msg, "\r\n") {
			if strings.HasPrefix(strings.ToLower(l), strings.ToLower(name)+":") {
				out = append(out, l)
			}
		}
		return out
	}

	invite := "INVITE sip:bob@" + them + " SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP " + me + ";branch=z9hG4bK-inv\r\n" +
		"From: <sip:alice@example.com>;tag=a1\r\n" +
		"To: <sip:bob@example.com>\r\n" +
		"Call-ID: order@host\r\n" +
		"CSeq: 1 INVITE\r\n" +
		"Contact: <sip:alice@" + me + ">\r\n" +
		"Max-Forwards: 70\r\n" +
		"Content-Length: 0\r\n\r\n"
	_, err = uac.Write([]byte(invite))
	require.NoError(t, err)

	fwd, from := readUAS()
	require.True(t, strings.HasPrefix(fwd, "INVITE "), fwd)
	rr := headers(fwd, "Record-Route")
	require.NotEmpty(t, rr, "the proxy record-routes")
	ok := "SIP/2.0 200 OK\r\n" + strings.Join(headers(fwd, "Via"), "\r\n") + "\r\n" +
		strings.Join(rr, "\r\n") + "\r\n" +
		"From: <sip:alice@example.com>;tag=a1\r\n" +
		"To: <sip:bob@example.com>;tag=b1\r\n" +
		"Call-ID: order@host\r\n" +
		"CSeq: 1 INVITE\r\n" +
		"Contact: <sip:bob@" + them + ">\r\n" +
		"Content-Length: 0\r\n\r\n"
	_, err = uas.WriteTo([]byte(ok), from)
	require.NoError(t, err)
	res := read(uac, uac.SetReadDeadline, "SIP/2.0 1")
	require.True(t, strings.HasPrefix(res, "SIP/2.0 200 "), res)

	route := strings.Replace(rr[0], "Record-Route:", "Route:", 1)
	inDialog := func(method, branch string, cseq int) string {
		return method + " sip:bob@" + them + " SIP/2.0\r\n" +
			"Via: SIP/2.0/UDP " + me + ";branch=" + branch + "\r\n" +
			route + "\r\n" +
			"From: <sip:alice@example.com>;tag=a1\r\n" +
			"To: <sip:bob@example.com>;tag=b1\r\n" +
			"Call-ID: order@host\r\n" +
			"CSeq: " + strconv.Itoa(cseq) + " " + method + "\r\n" +
			"Max-Forwards: 70\r\n" +
			"Content-Length: 0\r\n\r\n"
	}
	_, err = uac.Write([]byte(inDialog("BYE", "z9hG4bK-bye", 2)))
	require.NoError(t, err)
	require.Eventually(t, func() bool { return p.Stats().ACKWaits == 1 }, 5*time.Second, time.Millisecond,
		"the BYE waits for the ACK")
	_, err = uac.Write([]byte(inDialog("ACK", "z9hG4bK-ack", 1)))
	require.NoError(t, err)

	first, _ := readUAS()
	second, _ := readUAS()
	assert.True(t, strings.HasPrefix(first, "ACK "), "the ACK reaches the callee first:\n%s", first)
	assert.True(t, strings.HasPrefix(second, "BYE "), "then the BYE:\n%s", second)
	assert.Zero(t, p.Stats().ACKWaitTimeouts)
}
