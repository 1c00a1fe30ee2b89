package e2e

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/sipasync/sipasync/internal/sipptest"
)

// listenUDP returns a loopback UDP socket the test reads events from.
func listenUDP(t *testing.T) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// readUntil reads datagrams until one contains all of want or d passes.
func readUntil(t *testing.T, c *net.UDPConn, d time.Duration, want ...string) string {
	t.Helper()
	deadline := time.Now().Add(d)
	var seen strings.Builder
	buf := make([]byte, 65536)
	for time.Now().Before(deadline) {
		_ = c.SetReadDeadline(deadline)
		n, _, err := c.ReadFromUDP(buf)
		if err != nil {
			break
		}
		seen.Write(buf[:n])
		ok := true
		for _, w := range want {
			ok = ok && strings.Contains(seen.String(), w)
		}
		if ok {
			return seen.String()
		}
	}
	t.Fatalf("did not receive %q within %s; got %q", want, d, seen.String())
	return ""
}

func TestSIPMessageRaisesEvent(t *testing.T) {
	// The seed's scenario: a MESSAGE raises E_SIP_MESSAGE with user and msg,
	// shipped by the udp: transport in the event grammar.
	ev := listenUDP(t)
	p := startProxy(t, "sipmessage", "--event", "E_SIP_MESSAGE=udp:"+ev.LocalAddr().String())
	uas(t, p, "uas_message.xml", "bob")
	res := run(t, p, sipptest.Options{Scenario: scenario("uac_message.xml"), Service: "bob", MaxCalls: 1,
		Keys: map[string]string{"code": "200"}})
	sipptest.RequireSuccess(t, res, 1)
	// The body ends in CRLF, so the value is quoted.
	want := "E_SIP_MESSAGE\nuser::bob\nmsg::\"Hello from sipasync test call 1.\r\n\"\n"
	if got := readUntil(t, ev, 5*time.Second, "E_SIP_MESSAGE\n"); got != want {
		t.Fatalf("event %q, want exactly %q (the seed's grammar)", got, want)
	}
}

func TestUnknownEventIsStartupError(t *testing.T) {
	out, code := runExit(t, "sipasync", "--listen", "udp:127.0.0.1:0", "--event", "E_NOPE=udp:127.0.0.1:9")
	if code != 2 || !strings.Contains(out, "E_NOPE") {
		t.Fatalf("exit %d, %q; want 2 naming the event", code, out)
	}
	out, code = runExit(t, "sipasync", "--listen", "udp:127.0.0.1:0", "--event", "E_SIP_MESSAGE=carrier-pigeon:x")
	if code != 2 {
		t.Fatalf("unknown scheme: exit %d, %q; want 2", code, out)
	}
}

func TestStatsdCountsTransactionAndRegistrationEvents(t *testing.T) {
	sd := listenUDP(t)
	p := startProxy(t, "statsd", "--statsd", sd.LocalAddr().String(), "--flush", "200ms",
		"--async-ms-timer", "10", "--delay", "50ms")
	uas(t, p, "uas_call.xml", "alice")
	sipptest.RequireSuccess(t, run(t, p, sipptest.Options{Scenario: scenario("uac_call.xml"), Service: "alice", MaxCalls: 3, Rate: 10}), 3)
	readUntil(t, sd, 5*time.Second, "sipasync.registration.added:1|c", "sipasync.transaction.suspended:", "sipasync.transaction.resumed:")
}
