package sipproxy

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sipasync/sipasync/routes"
)

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func TestOverloadRunQueue(t *testing.T) {
	var runnable atomic.Int64
	o := newOverload(OverloadConfig{Runnable: 100, Delay: -1, Sample: func() int { return int(runnable.Load()) }},
		clock.NewMock(), discard())
	windows := func(n int) {
		for range n * overloadWindow {
			o.tick()
		}
	}
	runnable.Store(50)
	windows(10)
	assert.InDelta(t, 50, o.stats().Runnable, 1, "the average follows the samples")
	assert.Zero(t, o.stats().Shedding, "under the mark nothing is shed")
	assert.False(t, o.shedding())

	runnable.Store(1000)
	o.tick() // one sample over the mark moves the average, not past it
	assert.Less(t, o.stats().Runnable, 200.0)
	windows(8)
	assert.Equal(t, 1.0, o.stats().Shedding, "a sustained run queue sheds everything")
	assert.True(t, o.shed([]byte("any")))

	runnable.Store(80) // between half the mark and the mark: hold
	windows(20)
	assert.Equal(t, 1.0, o.stats().Shedding)

	runnable.Store(10) // under half the mark: back off slowly
	windows(5)
	s := o.stats().Shedding
	assert.Greater(t, s, 0.0)
	assert.Less(t, s, 1.0)
	windows(20)
	assert.Zero(t, o.stats().Shedding)
	assert.False(t, o.shed([]byte("any")))
}

func TestOverloadQueueingDelay(t *testing.T) {
	o := newOverload(OverloadConfig{Runnable: -1, Delay: 20 * time.Millisecond, Sample: func() int { return 0 }},
		clock.NewMock(), discard())
	require.True(t, o.watchesDelay())
	window := func(delays ...time.Duration) {
		for i := range overloadWindow {
			if i < len(delays) {
				o.observe(delays[i])
			}
			o.tick()
		}
	}
	window(time.Millisecond, 500*time.Millisecond, 0)
	assert.Zero(t, o.stats().Shedding, "a burst is not a standing queue: the least delay counts")
	window(50*time.Millisecond, 30*time.Millisecond, 90*time.Millisecond)
	assert.Equal(t, 30*time.Millisecond, o.stats().Delay)
	assert.Equal(t, 0.125, o.stats().Shedding, "a standing queue over the mark")
	for range 10 {
		window(40 * time.Millisecond)
	}
	assert.Equal(t, 1.0, o.stats().Shedding)
	window(15 * time.Millisecond) // under the mark, not under half of it: hold
	assert.Equal(t, 1.0, o.stats().Shedding)
	window() // nothing came: no delay
	assert.Zero(t, o.stats().Delay)
	assert.Equal(t, 1-1.0/16, o.stats().Shedding)
	window(-time.Second) // a clock step counts as no delay
	assert.Equal(t, 1-2.0/16, o.stats().Shedding)
}

func TestOverloadOffAndDefaults(t *testing.T) {
	assert.Nil(t, newOverload(OverloadConfig{Runnable: -1, Delay: -1}, clock.NewMock(), discard()))
	var o *overload
	assert.False(t, o.shedding(), "nil is off")
	assert.False(t, o.watchesDelay())
	assert.Equal(t, OverloadStats{}, o.stats())
	o = newOverload(OverloadConfig{}, clock.NewMock(), discard())
	assert.Equal(t, float64(DefaultOverloadRunnable), o.high)
	assert.Equal(t, DefaultOverloadDelay, o.target)
	assert.Equal(t, 10*time.Millisecond, o.interval)
	assert.GreaterOrEqual(t, o.sample(), 0, "the runtime's run queue is readable")
	o = newOverload(OverloadConfig{Delay: -1}, clock.NewMock(), discard())
	assert.False(t, o.watchesDelay())
}

func TestShedByCallID(t *testing.T) {
	o := newOverload(OverloadConfig{Runnable: 1}, clock.NewMock(), discard())
	o.frac.Store(shedScale / 4)
	shed := 0
	for i := range 10000 {
		id := []byte(fmt.Sprintf("call-%d@host", i))
		first := o.shed(id)
		assert.Equal(t, first, o.shed(id), "a retransmission gets the same answer")
		if first {
			shed++
		}
	}
	assert.InDelta(t, 2500, shed, 300, "about the fraction is shed")
}

const shedInvite = "INVITE sip:bob@example.com SIP/2.0\r\n" +
	"Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-1\r\n" +
	"From: <sip:alice@example.com>;tag=a1\r\n" +
	"To: <sip:bob@example.com>\r\n" +
	"Call-ID: c1@host\r\n" +
	"CSeq: 1 INVITE\r\n" +
	"Max-Forwards: 70\r\n" +
	"Content-Length: 0\r\n\r\n"

func TestShedDatagram(t *testing.T) {
	g := newGuard(0, 0, discard(), clock.NewMock())
	g.overload = newOverload(OverloadConfig{Runnable: 1}, clock.NewMock(), discard())
	g.overload.frac.Store(shedScale)
	var sent [][]byte
	write := func(b []byte) error { sent = append(sent, append([]byte(nil), b...)); return nil }

	require.True(t, g.shedDatagram([]byte(shedInvite), write))
	require.Len(t, sent, 1)
	res := string(sent[0])
	assert.True(t, strings.HasPrefix(res, "SIP/2.0 503 Service Unavailable\r\n"), res)
	assert.Contains(t, res, "\r\nRetry-After: 5\r\n")
	assert.Contains(t, res, "Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-1\r\n")
	assert.Contains(t, res, "To: <sip:bob@example.com>;tag="+shedTag)
	assert.Equal(t, uint64(1), g.shed.Load())

	// The ACK for that 503 is absorbed; other ACKs pass.
	tag := res[strings.Index(res, ";tag="+shedTag)+5:]
	tag = tag[:strings.Index(tag, "\r\n")]
	ack := strings.Replace(strings.Replace(shedInvite, "INVITE sip", "ACK sip", 1), "CSeq: 1 INVITE", "CSeq: 1 ACK", 1)
	assert.True(t, g.shedDatagram([]byte(strings.Replace(ack, "To: <sip:bob@example.com>", "To: <sip:bob@example.com>;tag="+tag, 1)), write))
	assert.Equal(t, uint64(1), g.shedACKs.Load())
	assert.False(t, g.shedDatagram([]byte(strings.Replace(ack, "To: <sip:bob@example.com>", "To: <sip:bob@example.com>;tag=b2", 1)), write))

	pass := map[string]string{
		"in dialog":       strings.Replace(shedInvite, "To: <sip:bob@example.com>", "t: <sip:bob@example.com> ; tag=b2", 1),
		"CANCEL":          strings.Replace(shedInvite, "INVITE sip", "CANCEL sip", 1),
		"response":        "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-1\r\nCall-ID: c1@host\r\n\r\n",
		"no Call-ID":      strings.Replace(shedInvite, "Call-ID: c1@host\r\n", "", 1),
		"no To":           strings.Replace(shedInvite, "To: <sip:bob@example.com>\r\n", "", 1),
		"binary":          "\x00\x01\x02 garbage",
		"no header lines": "INVITE sip:bob@example.com SIP/2.0",
	}
	for name, msg := range pass {
		assert.False(t, g.shedDatagram([]byte(msg), write), name)
	}
	assert.Len(t, sent, 1)

	// No Via: nothing to answer to; counted as shed and dropped.
	assert.True(t, g.shedDatagram([]byte(strings.Replace(shedInvite, "Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-1\r\n", "", 1)), write))
	assert.Equal(t, uint64(2), g.shed.Load())
	assert.Equal(t, uint64(1), g.shedDropped.Load())
}

// TestOverloadShedsOverTheWire runs a proxy whose run queue reads as long:
// new requests get 503 with Retry-After on UDP (from the socket wrapper)
// and TCP (from the proxy), the ACK for the UDP 503 is absorbed, and once
// the queue is short again requests are routed.
func TestOverloadShedsOverTheWire(t *testing.T) {
	var runnable atomic.Int64
	runnable.Store(100000)
	mock := clock.NewMock()
	table := routes.NewTable()
	require.NoError(t, table.Request(routes.HandlerFunc(func(c *routes.Context) error { return c.Reply(404, "Not Here") })))
	p, err := New(Config{Listen: []Listen{{Network: "udp", Host: "127.0.0.1"}, {Network: "tcp", Host: "127.0.0.1"}},
		Logger: discard(), Clock: mock, UDPBuffer: -1,
		Overload: OverloadConfig{Runnable: 100, Delay: -1, Sample: func() int { return int(runnable.Load()) }}}, table)
	require.NoError(t, err)
	require.NoError(t, p.Start(context.Background()))
	defer p.Close()
	tick := func() {
		mock.Add(10 * time.Millisecond)
	}
	for p.OverloadStats().Shedding < 1 {
		tick()
	}

	lst := p.Listeners()
	uc, err := net.Dial("udp", lst[0].Addr())
	require.NoError(t, err)
	defer uc.Close()
	udpInvite := func(callID string) string {
		msg := strings.NewReplacer("c1@host", callID, "z9hG4bK-1", "z9hG4bK-"+callID,
			"127.0.0.1:5070", uc.LocalAddr().String()).Replace(shedInvite)
		_, err := uc.Write([]byte(msg))
		require.NoError(t, err)
		buf := make([]byte, 4096)
		require.NoError(t, uc.SetReadDeadline(time.Now().Add(5*time.Second)))
		for {
			n, err := uc.Read(buf)
			require.NoError(t, err)
			if !bytes.HasPrefix(buf[:n], []byte("SIP/2.0 100")) {
				return string(buf[:n])
			}
		}
	}
	res := udpInvite("udp-1@host")
	require.True(t, strings.HasPrefix(res, "SIP/2.0 503 "), res)
	assert.Contains(t, res, "Retry-After: 5")
	tag := res[strings.Index(res, ";tag="+shedTag)+5:]
	tag = tag[:strings.Index(tag, "\r\n")]
	ack := strings.NewReplacer("INVITE sip", "ACK sip", "CSeq: 1 INVITE", "CSeq: 1 ACK", "c1@host", "udp-1@host", "z9hG4bK-1", "z9hG4bK-udp-1@host",
		"To: <sip:bob@example.com>", "To: <sip:bob@example.com>;tag="+tag, "127.0.0.1:5070", uc.LocalAddr().String()).Replace(shedInvite)
	_, err = uc.Write([]byte(ack))
	require.NoError(t, err)
	require.Eventually(t, func() bool { return p.InputStats().ShedACKs == 1 }, 5*time.Second, 5*time.Millisecond)

	tc, err := net.Dial("tcp", lst[1].Addr())
	require.NoError(t, err)
	defer tc.Close()
	r := bufio.NewReader(tc)
	tcpInvite := func(callID string) string {
		msg := strings.NewReplacer("c1@host", callID, "z9hG4bK-1", "z9hG4bK-"+callID,
			"SIP/2.0/UDP 127.0.0.1:5070", "SIP/2.0/TCP "+tc.LocalAddr().String()).Replace(shedInvite)
		_, err := tc.Write([]byte(msg))
		require.NoError(t, err)
		require.NoError(t, tc.SetReadDeadline(time.Now().Add(5*time.Second)))
		for {
			var head strings.Builder
			for {
				line, err := r.ReadString('\n')
				require.NoError(t, err)
				head.WriteString(line)
				if line == "\r\n" {
					break
				}
			}
			if !strings.HasPrefix(head.String(), "SIP/2.0 100") && strings.Contains(head.String(), callID) {
				return head.String()
			}
		}
	}
	res = tcpInvite("tcp-1@host")
	require.True(t, strings.HasPrefix(res, "SIP/2.0 503 "), res)
	assert.Contains(t, res, "Retry-After: 5")
	assert.Equal(t, uint64(2), p.InputStats().Shed)

	runnable.Store(0)
	for p.OverloadStats().Shedding > 0 {
		tick()
	}
	res = udpInvite("udp-2@host")
	assert.True(t, strings.HasPrefix(res, "SIP/2.0 404 "), res)
	res = tcpInvite("tcp-2@host")
	assert.True(t, strings.HasPrefix(res, "SIP/2.0 404 "), res)
	assert.Equal(t, uint64(2), p.InputStats().Shed)
	assert.Zero(t, p.InputStats().ShedDropped)
}

// TestDatagramQueueingDelay: a datagram that waited in the socket's queue
// reports that wait (the kernel's arrival stamp) to overload control.
func TestDatagramQueueingDelay(t *testing.T) {
	g := newGuard(0, 0, discard(), clock.NewMock())
	g.overload = newOverload(OverloadConfig{Runnable: -1, Sample: func() int { return 0 }}, clock.NewMock(), discard())
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	require.NoError(t, err)
	defer pc.Close()
	c := g.packetConn(pc).(*guardPacketConn)
	if c.uc == nil {
		t.Skip("no arrival stamps on this system")
	}
	tx, err := net.Dial("udp", pc.LocalAddr().String())
	require.NoError(t, err)
	defer tx.Close()
	time.Sleep(100 * time.Millisecond) // the kernel turns stamping on in the background
	_, err = tx.Write([]byte(shedInvite))
	require.NoError(t, err)
	time.Sleep(60 * time.Millisecond)
	buf := make([]byte, 65536)
	n, addr, err := c.ReadFrom(buf)
	require.NoError(t, err)
	assert.Equal(t, shedInvite, string(buf[:n]))
	assert.Equal(t, tx.LocalAddr().String(), addr.String())
	d := time.Duration(g.overload.winMin.Load())
	assert.GreaterOrEqual(t, d, 55*time.Millisecond, "the wait in the queue")
	assert.Less(t, d, 10*time.Second)
}

// TestOverloadLiveHeap: with a heap mark, a live heap over it sheds; the
// share shrinks only once the heap is under three quarters of the mark.
func TestOverloadLiveHeap(t *testing.T) {
	var heap atomic.Uint64
	o := newOverload(OverloadConfig{Runnable: -1, Delay: -1, Heap: 400 << 20,
		Sample: func() int { return 0 }, HeapSample: heap.Load}, clock.NewMock(), discard())
	require.NotNil(t, o, "the heap alone turns overload control on")
	assert.False(t, o.watchesDelay())
	windows := func(n int) {
		for range n * overloadWindow {
			o.tick()
		}
	}
	heap.Store(300 << 20)
	windows(3)
	assert.Zero(t, o.stats().Shedding, "under the mark nothing is shed")
	assert.Equal(t, uint64(300<<20), o.stats().Heap)

	heap.Store(500 << 20)
	windows(2)
	assert.Equal(t, 0.25, o.stats().Shedding, "over the mark: 1/8 more per window")
	heap.Store(350 << 20) // under the mark, over three quarters of it: hold
	windows(5)
	assert.Equal(t, 0.25, o.stats().Shedding)
	heap.Store(250 << 20)
	windows(4)
	assert.Zero(t, o.stats().Shedding, "under three quarters: back off")

	assert.Nil(t, newOverload(OverloadConfig{Runnable: -1, Delay: -1}, clock.NewMock(), discard()), "all three off")
	o = newOverload(OverloadConfig{Heap: 1}, clock.NewMock(), discard())
	runtime.GC() // the live heap is known from the first GC on
	assert.Greater(t, o.heapSample(), uint64(0), "the runtime's live heap is readable")
}
