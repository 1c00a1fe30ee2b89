package sipproxy

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/stretchr/testify/require"

	"github.com/sipasync/sipasync/routes"
)

// An OPTIONS addressed to the proxy itself (no user part, one of its own
// addresses) is answered 200 with what it allows, accepts and supports, as
// health checkers expect; one to a user of a foreign host is not.
func TestOptionsToTheProxyItself(t *testing.T) {
	tbl := routes.NewTable()
	p, err := New(Config{Listen: []Listen{{Network: "udp", Host: "127.0.0.1"}},
		Logger: discard(), Clock: clock.NewMock(), UDPBuffer: -1}, tbl)
	require.NoError(t, err)
	require.NoError(t, tbl.Request(p.DefaultRoute(DefaultOptions{})))
	require.NoError(t, p.Start(context.Background()))
	defer p.Close()
	addr := p.Listeners()[0].Addr()

	conn, err := net.Dial("udp", addr)
	require.NoError(t, err)
	defer conn.Close()
	ask := func(ruri, branch string) string {
		t.Helper()
		msg := "OPTIONS " + ruri + " SIP/2.0\r\n" +
			"Via: SIP/2.0/UDP " + conn.LocalAddr().String() + ";rport;branch=z9hG4bK-" + branch + "\r\n" +
			"Max-Forwards: 70\r\n" +
			"From: <sip:monitor@127.0.0.1>;tag=m1\r\n" +
			"To: <" + ruri + ">\r\n" +
			"Call-ID: options-" + branch + "@127.0.0.1\r\n" +
			"CSeq: 1 OPTIONS\r\n" +
			"Content-Length: 0\r\n\r\n"
		_, err := conn.Write([]byte(msg))
		require.NoError(t, err)
		buf := make([]byte, 8192)
		require.NoError(t, conn.SetReadDeadline(time.Now().Add(5*time.Second)))
		n, err := conn.Read(buf)
		require.NoError(t, err)
		return string(buf[:n])
	}
	got := ask("sip:"+addr, "self")
	require.True(t, strings.HasPrefix(got, "SIP/2.0 200 OK\r\n"), got)
	for _, h := range []string{"Allow: " + AllowMethods, "Accept: */*", "Accept-Encoding: identity", "Accept-Language: en", "Supported:"} {
		require.Contains(t, got, h+"", "the 200 carries %q:\n%s", h, got)
	}
	got = ask("sip:127.0.0.1", "self-no-port")
	require.True(t, strings.HasPrefix(got, "SIP/2.0 200 OK\r\n"), "any of its addresses, default port: %s", got)

	got = ask("sip:nobody@"+addr, "user")
	require.True(t, strings.HasPrefix(got, "SIP/2.0 404 "), "a user part is a user, looked up: %s", got)
}
