package sipproxy

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/stretchr/testify/require"

	"github.com/sipasync/sipasync/routes"
)

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// A route that returns a programming error (here: it names a route nobody
// registered) is answered 500, logged at ERROR with the route's name, at
// most once a second per kind, and counted by kind; an ordinary error is
// not.
func TestRouteProgrammingErrorsAreLoudAndCounted(t *testing.T) {
	var logs syncBuf
	mock := clock.NewMock()
	tbl := routes.NewTable()
	p, err := New(Config{Listen: []Listen{{Network: "udp", Host: "127.0.0.1"}}, UDPBuffer: -1, Clock: mock,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))}, tbl)
	require.NoError(t, err)
	require.NoError(t, tbl.Request(routes.HandlerFunc(func(c *routes.Context) error {
		if c.Request().Recipient.User == "plain" {
			return routes.Error(486, "Busy Here", nil)
		}
		return c.Route("NOSUCH") // unknown route: routes.ErrUnknownRoute
	})))
	require.NoError(t, p.Start(context.Background()))
	defer p.Close()
	addr := p.Listeners()[0].Addr()
	conn, err := net.Dial("udp", addr)
	require.NoError(t, err)
	defer conn.Close()
	ask := func(user string, n int) string {
		msg := fmt.Sprintf("MESSAGE sip:%s@%s SIP/2.0\r\nVia: SIP/2.0/UDP %s;rport;branch=z9hG4bK-re%d\r\n"+
			"Max-Forwards: 70\r\nFrom: <sip:a@127.0.0.1>;tag=a\r\nTo: <sip:%s@127.0.0.1>\r\nCall-ID: re-%d\r\n"+
			"CSeq: 1 MESSAGE\r\nContent-Length: 0\r\n\r\n", user, addr, conn.LocalAddr(), n, user, n)
		_, err := conn.Write([]byte(msg))
		require.NoError(t, err)
		buf := make([]byte, 4096)
		require.NoError(t, conn.SetReadDeadline(time.Now().Add(5*time.Second)))
		k, err := conn.Read(buf)
		require.NoError(t, err)
		line, _, _ := strings.Cut(string(buf[:k]), "\r\n")
		return line
	}
	for i := range 3 {
		require.True(t, strings.HasPrefix(ask("bob", i), "SIP/2.0 500 "), "a programming error is answered 500")
	}
	require.True(t, strings.HasPrefix(ask("plain", 9), "SIP/2.0 486 "))
	require.Equal(t, uint64(3), p.Stats().RouteErrors[0], "counted as unknown_route")
	require.Equal(t, 1, strings.Count(logs.String(), "level=ERROR msg=\"route programming error"), "once a second per kind:\n%s", logs.String())
	require.Contains(t, logs.String(), "route=request_route[]")
	require.Contains(t, logs.String(), "kind=unknown_route")
	mock.Add(time.Second)
	ask("bob", 4)
	require.Equal(t, 2, strings.Count(logs.String(), "level=ERROR msg=\"route programming error"), "a second later, logged again")
	require.Contains(t, logs.String(), "count=4")
	var other uint64
	st := p.Stats()
	for _, n := range st.RouteErrors[1:] {
		other += n
	}
	require.Zero(t, other, "a SIP status error is not a programming error")
}
