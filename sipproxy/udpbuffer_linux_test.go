package sipproxy

import (
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func rcvbuf(t *testing.T, conn net.PacketConn) int {
	t.Helper()
	rc, err := conn.(*net.UDPConn).SyscallConn()
	require.NoError(t, err)
	var n int
	var serr error
	require.NoError(t, rc.Control(func(fd uintptr) { n, serr = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF) }))
	require.NoError(t, serr)
	return n
}

func TestUDPBuffers(t *testing.T) {
	b, err := os.ReadFile("/proc/sys/net/core/rmem_max")
	if err != nil {
		t.Skip("no /proc/sys/net/core/rmem_max")
	}
	rmemMax, err := strconv.Atoi(strings.TrimSpace(string(b)))
	require.NoError(t, err)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, tc := range []struct {
		name string
		ask  int
		want func(before int) int
	}{
		// Linux doubles the value asked for (bookkeeping) and caps it at
		// rmem_max first.
		{"default", 0, func(int) int { return 2 * min(DefaultUDPBuffer, rmemMax) }},
		{"asked", 1 << 20, func(int) int { return 2 * min(1<<20, rmemMax) }},
		{"system default kept", -1, func(before int) int { return before }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn, err := net.ListenPacket("udp", "127.0.0.1:0")
			require.NoError(t, err)
			defer conn.Close()
			before := rcvbuf(t, conn)
			p := &Proxy{cfg: Config{UDPBuffer: tc.ask}, log: log}
			p.setUDPBuffers(conn)
			assert.Equal(t, tc.want(before), rcvbuf(t, conn))
		})
	}
}
