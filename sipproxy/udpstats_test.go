package sipproxy

import (
	"context"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sipasync/sipasync/routes"
)

func TestParseProcUDP(t *testing.T) {
	const table = `   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
 2322: 0100007F:13C4 00000000:0000 07 00000000:00000A00 00:00000000 00000000     0        0 56570 2 00000000cff8332e 17
 3585: 0100007F:CA7D 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 57623 2 000000007785589d 0
 9999: garbage
`
	m := map[string]UDPSocketStats{}
	parseProcUDP(strings.NewReader(table), m)
	assert.Equal(t, UDPSocketStats{Queued: 0xA00, Dropped: 17}, m["127.0.0.1:5060"])
	assert.Contains(t, m, "127.0.0.1:51837")
	assert.Len(t, m, 2)

	a, ok := procAddr("00000000000000000000000001000000:13C4")
	assert.True(t, ok)
	assert.Equal(t, "[::1]:5060", a)
	a, ok = procAddr("0000000000000000FFFF00000100007F:13C4")
	assert.True(t, ok)
	assert.Equal(t, "127.0.0.1:5060", a, "v4-mapped")
	_, ok = procAddr("XYZ:13C4")
	assert.False(t, ok)
}

// TestUDPStatsCountKernelDrops: datagrams the kernel dropped on a full
// receive queue are counted, per listener.
func TestUDPStatsCountKernelDrops(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc/net/udp")
	}
	table := routes.NewTable()
	require.NoError(t, table.Request(routes.HandlerFunc(func(c *routes.Context) error { return c.Reply(404, "Not Here") })))
	p, err := New(Config{Listen: []Listen{{Network: "udp", Host: "127.0.0.1"}}, Logger: discard(), Clock: clock.New(),
		UDPBuffer: 4096}, table)
	require.NoError(t, err)
	require.NoError(t, p.Start(context.Background()))
	defer p.Close()
	st := p.UDPStats()
	require.Len(t, st, 1)
	assert.Equal(t, p.Listeners()[0].String(), st[0].Socket)
	assert.Zero(t, st[0].Dropped)

	// Flood the small buffer faster than one reader takes it.
	c, err := net.Dial("udp", p.Listeners()[0].Addr())
	require.NoError(t, err)
	defer c.Close()
	junk := make([]byte, 1400)
	require.Eventually(t, func() bool {
		for range 2000 {
			_, _ = c.Write(junk)
		}
		return p.UDPStats()[0].Dropped > 0
	}, 10*time.Second, time.Millisecond)
}
