package sipptest

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"strings"
	"testing"
)

// LoopbackIP is the address everything binds to unless Options.LocalIP says
// otherwise.
const LoopbackIP = "127.0.0.1"

// FreePort asks the kernel for a port on ip that is free right now for
// network ("udp" or "tcp") and returns it. The port is released before
// returning, so another process may grab it; Start retries on a bind
// failure for the ports it picks itself.
func FreePort(network, ip string) (int, error) {
	if ip == "" {
		ip = LoopbackIP
	}
	addr := net.JoinHostPort(ip, "0")
	switch network {
	case "udp", "udp4", "udp6":
		c, err := net.ListenPacket(network, addr)
		if err != nil {
			return 0, fmt.Errorf("sipptest: free %s port on %s: %w", network, ip, err)
		}
		defer c.Close()
		return c.LocalAddr().(*net.UDPAddr).Port, nil
	case "tcp", "tcp4", "tcp6":
		l, err := net.Listen(network, addr)
		if err != nil {
			return 0, fmt.Errorf("sipptest: free %s port on %s: %w", network, ip, err)
		}
		defer l.Close()
		return l.Addr().(*net.TCPAddr).Port, nil
	default:
		return 0, fmt.Errorf("sipptest: FreePort: unknown network %q", network)
	}
}

// FreeUDPPort returns a UDP port on 127.0.0.1 that is free right now, or
// fails the test.
func FreeUDPPort(t testing.TB) int {
	t.Helper()
	p, err := FreePort("udp", LoopbackIP)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// FreeTCPPort returns a TCP port on 127.0.0.1 that is free right now, or
// fails the test.
func FreeTCPPort(t testing.TB) int {
	t.Helper()
	p, err := FreePort("tcp", LoopbackIP)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// portBound reports whether process pid has a socket bound to port, from
// the kernel's socket tables (/proc/net/{udp,tcp}[6]; for TCP only
// listening sockets count) and the process's open files. If the process's
// files cannot be read, any socket on the port counts. known is false
// where the socket tables cannot be read (non-Linux).
func portBound(pid int, network string, port int) (bound, known bool) {
	files := []string{"/proc/net/udp", "/proc/net/udp6"}
	if network == "tcp" {
		files = []string{"/proc/net/tcp", "/proc/net/tcp6"}
	}
	suffix := fmt.Sprintf(":%04X", port)
	var inodes []string
	for _, name := range files {
		f, err := os.Open(name)
		if err != nil {
			continue
		}
		known = true
		sc := bufio.NewScanner(f)
		sc.Scan() // header
		for sc.Scan() {
			// sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
			fields := strings.Fields(sc.Text())
			if len(fields) < 10 || !strings.HasSuffix(fields[1], suffix) {
				continue
			}
			if network == "tcp" && fields[3] != "0A" { // TCP_LISTEN
				continue
			}
			inodes = append(inodes, fields[9])
		}
		f.Close()
	}
	if len(inodes) == 0 {
		return false, known
	}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if errors.Is(err, fs.ErrNotExist) {
		return false, known // the process is gone
	}
	if err != nil {
		return true, known
	}
	for _, fd := range fds {
		link, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
		if err != nil {
			continue
		}
		for _, ino := range inodes {
			if link == "socket:["+ino+"]" {
				return true, known
			}
		}
	}
	return false, known
}
