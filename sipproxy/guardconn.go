package sipproxy

import (
	"bytes"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/sipasync/sipasync/rawsip"
)

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
			if h, _ := rawsip.Scan(buf[:n]); h.CallID != nil {
				c.g.acks.seen(h.CallID)
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
