package sipproxy

import (
	"context"
	"errors"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/stretchr/testify/require"

	"github.com/sipasync/sipasync/routes"
)

// A 2xx to an INVITE that matches no client transaction (the callee
// retransmitting after the proxy's transactions ended) goes on statelessly
// to the Via below the proxy's, its rport first; other stray responses,
// and responses whose top Via is not the proxy's, are dropped.
func TestStray2xxForwardedByVia(t *testing.T) {
	p, err := New(Config{Listen: []Listen{{Network: "udp", Host: "127.0.0.1"}},
		Logger: discard(), Clock: clock.NewMock(), UDPBuffer: -1}, routes.NewTable())
	require.NoError(t, err)
	require.NoError(t, p.Start(context.Background()))
	defer p.Close()
	proxy := p.Listeners()[0]

	uac, err := net.ListenPacket("udp", "127.0.0.1:0")
	require.NoError(t, err)
	defer uac.Close()
	callee, err := net.Dial("udp", proxy.Addr())
	require.NoError(t, err)
	defer callee.Close()
	uacPort := uac.LocalAddr().(*net.UDPAddr).Port

	response := func(status, method, topVia string) string {
		return "SIP/2.0 " + status + "\r\n" +
			"Via: " + topVia + "\r\n" +
			// sent-by names a port nobody reads; rport says where the
			// request really came from.
			"Via: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bK-uac;rport=" + strconv.Itoa(uacPort) + "\r\n" +
			"From: <sip:alice@example.com>;tag=a1\r\n" +
			"To: <sip:bob@example.com>;tag=b1\r\n" +
			"Call-ID: stray@host\r\n" +
			"CSeq: 1 " + method + "\r\n" +
			"Content-Length: 0\r\n\r\n"
	}
	ours := "SIP/2.0/UDP " + proxy.Addr() + ";branch=z9hG4bK-proxy"
	for _, msg := range []string{
		response("200 OK", "INVITE", "SIP/2.0/UDP 127.0.0.1:7;branch=z9hG4bK-other"), // not our Via
		response("180 Ringing", "INVITE", ours),                                      // not a 2xx
		response("200 OK", "BYE", ours),                                              // not an INVITE's
		response("200 OK", "INVITE", ours),
	} {
		_, err := callee.Write([]byte(msg))
		require.NoError(t, err)
	}

	buf := make([]byte, 8192)
	require.NoError(t, uac.SetReadDeadline(time.Now().Add(5*time.Second)))
	n, _, err := uac.ReadFrom(buf)
	require.NoError(t, err)
	got := string(buf[:n])
	require.True(t, strings.HasPrefix(got, "SIP/2.0 200 OK\r\n"), got)
	require.Contains(t, got, "CSeq: 1 INVITE")
	require.Equal(t, 1, strings.Count(got, "Via:"), "the proxy's Via is removed:\n%s", got)
	require.Contains(t, got, "branch=z9hG4bK-uac")

	require.Eventually(t, func() bool {
		s := p.Stats()
		return s.StrayResponses == 4 && s.StrayForwarded == 1
	}, 5*time.Second, 10*time.Millisecond)
	require.NoError(t, uac.SetReadDeadline(time.Now().Add(200*time.Millisecond)))
	_, _, err = uac.ReadFrom(buf)
	require.True(t, errors.Is(err, os.ErrDeadlineExceeded), "nothing else is forwarded: %v %q", err, buf[:max(n, 0)])
}
