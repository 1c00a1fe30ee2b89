package sipproxy

import (
	"bufio"
	"encoding/hex"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
)

// UDPSocketStats are the kernel's figures for one UDP listener: what waits
// in its receive queue now and how many datagrams it dropped because the
// queue was full (Config.UDPBuffer). They complete the count of drops: a
// datagram the kernel drops never reaches the proxy.
type UDPSocketStats struct {
	Socket  string // udp:host:port
	Queued  int64  // bytes in the receive queue
	Dropped uint64 // datagrams dropped since the socket was opened
}

// UDPStats reads the kernel's figures for the UDP listeners (Linux:
// /proc/net/udp and udp6; elsewhere, or when unreadable, none).
func (p *Proxy) UDPStats() []UDPSocketStats {
	var want []Listen
	for _, l := range p.Listeners() {
		if l.Network == "udp" && l.Port != 0 {
			want = append(want, l)
		}
	}
	if len(want) == 0 {
		return nil
	}
	rows := map[string]UDPSocketStats{}
	for _, name := range []string{"/proc/net/udp", "/proc/net/udp6"} {
		f, err := os.Open(name)
		if err != nil {
			continue
		}
		parseProcUDP(f, rows)
		_ = f.Close()
	}
	var out []UDPSocketStats
	for _, l := range want {
		ip := net.ParseIP(l.Host)
		if ip == nil {
			continue
		}
		key := net.JoinHostPort(ip.String(), strconv.Itoa(l.Port))
		s, ok := rows[key]
		if !ok && ip.IsUnspecified() { // 0.0.0.0 and :: are listed apart
			s, ok = rows[net.JoinHostPort(net.IPv6unspecified.String(), strconv.Itoa(l.Port))]
		}
		if ok {
			s.Socket = l.String()
			out = append(out, s)
		}
	}
	return out
}

// parseProcUDP reads /proc/net/udp rows into m, keyed by local host:port.
// Columns: sl local rem st tx_queue:rx_queue tr:tm retrnsmt uid timeout
// inode ref pointer drops.
func parseProcUDP(r io.Reader, m map[string]UDPSocketStats) {
	sc := bufio.NewScanner(r)
	sc.Scan() // header
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 13 {
			continue
		}
		addr, ok := procAddr(f[1])
		if !ok {
			continue
		}
		_, rxq, _ := strings.Cut(f[4], ":")
		q, err1 := strconv.ParseInt(rxq, 16, 64)
		d, err2 := strconv.ParseUint(f[12], 10, 64)
		if err1 != nil || err2 != nil {
			continue
		}
		s := m[addr] // SO_REUSEPORT sockets share an address: sum them
		s.Queued += q
		s.Dropped += d
		m[addr] = s
	}
}

// procAddr decodes /proc/net/udp's "0100007F:13C4" (the address in host
// byte order, 32-bit words) to "127.0.0.1:5060".
func procAddr(s string) (string, bool) {
	h, p, ok := strings.Cut(s, ":")
	if !ok {
		return "", false
	}
	port, err := strconv.ParseUint(p, 16, 16)
	if err != nil {
		return "", false
	}
	b, err := hex.DecodeString(h)
	if err != nil || (len(b) != 4 && len(b) != 16) {
		return "", false
	}
	ip := make(net.IP, len(b))
	for i := 0; i < len(b); i += 4 { // each 32-bit word is little-endian
		ip[i], ip[i+1], ip[i+2], ip[i+3] = b[i+3], b[i+2], b[i+1], b[i]
	}
	if v4 := ip.To4(); len(b) == 16 && v4 != nil && !ip.IsUnspecified() {
		ip = v4
	}
	return net.JoinHostPort(ip.String(), strconv.Itoa(int(port))), true
}
