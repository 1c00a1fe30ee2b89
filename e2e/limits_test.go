package e2e

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestMaxParkedAnswers503WithRetryAfter: past --max-parked a request the
// route tries to park is answered 503 with Retry-After at once, and the
// parked ones are still answered.
func TestMaxParkedAnswers503WithRetryAfter(t *testing.T) {
	const parked, extra = 3, 4
	p := startProxy(t, "testproxy", "--mode", "park", "--delay", "2s", "--max-parked", fmt.Sprint(parked))
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	require.NoError(t, err)
	defer conn.Close()
	to, err := net.ResolveUDPAddr("udp", p.addr)
	require.NoError(t, err)
	for i := range parked + extra {
		msg := fmt.Sprintf("MESSAGE sip:bob@127.0.0.1 SIP/2.0\r\n"+
			"Via: SIP/2.0/UDP %s;rport;branch=z9hG4bK-maxparked-%d\r\nMax-Forwards: 70\r\n"+
			"From: <sip:alice@127.0.0.1>;tag=a%d\r\nTo: <sip:bob@127.0.0.1>\r\nCall-ID: maxparked-%d\r\n"+
			"CSeq: 1 MESSAGE\r\nContent-Length: 0\r\n\r\n", conn.LocalAddr(), i, i, i)
		_, err := conn.WriteTo([]byte(msg), to)
		require.NoError(t, err)
		time.Sleep(20 * time.Millisecond) // in order: the first ones park
	}
	codes := map[int]int{}
	buf := make([]byte, 4096)
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(10*time.Second)))
	for n := 0; n < parked+extra; {
		k, _, err := conn.ReadFrom(buf)
		require.NoError(t, err, "answers so far: %v", codes)
		res := string(buf[:k])
		code := status(buf[:k])
		if code < 200 {
			continue
		}
		n++
		codes[code]++
		if code == 503 {
			assert.Contains(t, res, "\r\nRetry-After: ", "503 carries Retry-After:\n%s", res)
			id := strings.TrimPrefix(callID(buf[:k]), "maxparked-")
			assert.NotContains(t, []string{"0", "1", "2"}, id, "one of the first %d was refused", parked)
		}
	}
	assert.Equal(t, map[int]int{503: extra, 404: parked}, codes, "refused past --max-parked, the parked resumed to 404")
	require.Equal(t, 0, p.Stop())
}
