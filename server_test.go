package sipasync

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/sipasync/sipasync/async"
	"github.com/sipasync/sipasync/routes"
	"github.com/sipasync/sipasync/sipproxy"
	"github.com/sipasync/sipasync/workergroups"
)

// testOptions are the defaults on a free loopback port, quiet.
func testOptions(t *testing.T) Options {
	t.Helper()
	o := DefaultOptions()
	o.Listen = []string{"udp:127.0.0.1:0"}
	o.Operate.Admin = "off"
	o.LogWriter = io.Discard
	o.ShutdownTimeout = 2 * time.Second
	return o
}

// send writes one SIP request to addr and returns the first final
// response's status line. A port not bound yet (ICMP refused) is tried
// again for a while: Serve binds on its own goroutine.
func send(t *testing.T, addr, method, callID string) string {
	t.Helper()
	for range 100 {
		if line, err := trySend(t, addr, method, callID); err == nil {
			return line
		} else if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s: nothing listens", addr)
	return ""
}

func trySend(t *testing.T, addr, method, callID string) (string, error) {
	t.Helper()
	c, err := net.Dial("udp", addr)
	require.NoError(t, err)
	defer c.Close()
	msg := method + " sip:bob@" + addr + " SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP " + c.LocalAddr().String() + ";rport;branch=z9hG4bK-" + callID + "\r\n" +
		"Max-Forwards: 70\r\nFrom: <sip:alice@127.0.0.1>;tag=a\r\nTo: <sip:bob@127.0.0.1>\r\n" +
		"Call-ID: " + callID + "\r\nCSeq: 1 " + method + "\r\nContent-Length: 0\r\n\r\n"
	_, err = c.Write([]byte(msg))
	require.NoError(t, err)
	buf := make([]byte, 4096)
	require.NoError(t, c.SetReadDeadline(time.Now().Add(10*time.Second)))
	for {
		n, err := c.Read(buf)
		if err != nil {
			return "", err
		}
		line, _, _ := strings.Cut(string(buf[:n]), "\r\n")
		if !strings.HasPrefix(line, "SIP/2.0 100 ") {
			return line, nil
		}
	}
}

func TestNewRefusesUnusableOptions(t *testing.T) {
	_, err := New(Options{})
	require.ErrorIs(t, err, ErrUsage, "a zero Options has no listener")
	o := testOptions(t)
	o.FrTimeout = time.Minute
	_, err = New(o)
	require.ErrorIs(t, err, ErrUsage)
	require.ErrorContains(t, err, "--fr-timeout")
}

func TestStartRefusesAnIncompleteRouteTable(t *testing.T) {
	s, err := New(testOptions(t))
	require.NoError(t, err)
	err = s.Start(context.Background())
	require.ErrorIs(t, err, ErrUsage)
	require.ErrorContains(t, err, "request_route is not set")

	s, err = New(testOptions(t))
	require.NoError(t, err)
	s.Routes.Expect(routes.KindNamed, "RESUME", "request_route")
	require.NoError(t, s.Routes.Request(routes.HandlerFunc(func(c *routes.Context) error {
		return async.Route(c, "RESUME", time.Second)
	})))
	err = s.Start(context.Background())
	require.ErrorContains(t, err, "route[RESUME]", "a route named but never registered is a start-up error")
}

func TestServeAndShutdown(t *testing.T) {
	s, err := New(testOptions(t))
	require.NoError(t, err)
	require.NoError(t, s.Routes.Request(routes.HandlerFunc(func(c *routes.Context) error {
		if c.Request().Recipient.User == "park" {
			return async.Route(c, "LATER", 5*time.Second)
		}
		return c.Reply(404, "Not Found")
	})))
	require.NoError(t, s.Routes.Route("LATER", routes.HandlerFunc(func(c *routes.Context) error {
		return c.Reply(404, "Not Found")
	})))
	require.NoError(t, s.Start(context.Background()))
	require.Error(t, s.Start(context.Background()), "Start twice")
	addr := s.Proxy.Listeners()[0].Addr()
	require.Equal(t, "SIP/2.0 404 Not Found", send(t, addr, "MESSAGE", "served-1"))

	// A park longer than the drain: Shutdown answers it 503 and returns
	// the context's error, as net/http's Shutdown does.
	parked := make(chan string, 1)
	go func() {
		c, err := net.Dial("udp", addr)
		if err != nil {
			parked <- err.Error()
			return
		}
		defer c.Close()
		msg := "MESSAGE sip:park@" + addr + " SIP/2.0\r\nVia: SIP/2.0/UDP " + c.LocalAddr().String() +
			";rport;branch=z9hG4bK-park\r\nMax-Forwards: 70\r\nFrom: <sip:alice@127.0.0.1>;tag=a\r\n" +
			"To: <sip:park@127.0.0.1>\r\nCall-ID: parked-1\r\nCSeq: 1 MESSAGE\r\nContent-Length: 0\r\n\r\n"
		_, _ = c.Write([]byte(msg))
		buf := make([]byte, 4096)
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, err := c.Read(buf)
		if err != nil {
			parked <- err.Error()
			return
		}
		line, _, _ := strings.Cut(string(buf[:n]), "\r\n")
		parked <- line
	}()
	require.Eventually(t, func() bool { return s.Proxy.Transactions().Stats().Parked == 1 }, 5*time.Second, 5*time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	err = s.Shutdown(ctx)
	require.True(t, errors.Is(err, context.DeadlineExceeded), "a drain cut short returns ctx's error: %v", err)
	require.Equal(t, "SIP/2.0 503 Service Unavailable", <-parked, "what was parked is answered")
}

func TestShutdownAfterAFullDrainIsNil(t *testing.T) {
	// Serve binds inside: take a free port first, so the test need not
	// read the listener while Start sets it.
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := pc.LocalAddr().String()
	require.NoError(t, pc.Close())
	o := testOptions(t)
	o.Listen = []string{"udp:" + addr}
	s, err := New(o)
	require.NoError(t, err)
	require.NoError(t, s.Routes.Request(routes.HandlerFunc(func(c *routes.Context) error {
		return c.Reply(404, "Not Found")
	})))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	require.Equal(t, "SIP/2.0 404 Not Found", send(t, addr, "OPTIONS", "drain-1"))
	cancel()
	select {
	case err := <-done:
		require.NoError(t, err, "nothing left to drain")
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after its context ended")
	}
}

// Wired by hand from the packages, in the natural order — proxy, engine,
// proxy.Start — a park resumes: the engine attaches itself to the proxy
// and starts with it, so there is no step to forget.
func TestPackagesWiredByHandCannotBeHalfWired(t *testing.T) {
	tbl := routes.NewTable()
	p, err := sipproxy.New(sipproxy.Config{Listen: []sipproxy.Listen{{Network: "udp", Host: "127.0.0.1"}}, UDPBuffer: -1}, tbl)
	require.NoError(t, err)
	groups, err := workergroups.New()
	require.NoError(t, err)
	_, err = async.New(async.Config{Table: p.Transactions(), Routes: tbl, Runner: p, Groups: groups, MsTimer: 10 * time.Millisecond})
	require.NoError(t, err)
	require.NoError(t, tbl.Request(routes.HandlerFunc(func(c *routes.Context) error {
		return async.MsRoute(c, "LATER", 50*time.Millisecond)
	})))
	require.NoError(t, tbl.Route("LATER", routes.HandlerFunc(func(c *routes.Context) error {
		return c.Reply(404, "Not Found")
	})))
	require.NoError(t, p.Start(context.Background()))
	defer p.Close()
	require.Equal(t, "SIP/2.0 404 Not Found", send(t, p.Listeners()[0].Addr(), "MESSAGE", "by-hand-1"))
}

func TestStartRefusesWhatTheRoutesNeedAndTheServerLacks(t *testing.T) {
	o := testOptions(t)
	o.Async.MsTimer = 0
	s, err := New(o)
	require.NoError(t, err)
	require.NoError(t, s.Routes.Request(routes.HandlerFunc(func(c *routes.Context) error {
		return async.TaskGroupRoute(c, "R", "abc")
	})))
	s.Routes.ExpectGroup("abc", "request_route")
	s.Routes.ExpectMsTimer("route[R]")
	err = s.Start(context.Background())
	require.ErrorIs(t, err, ErrUsage)
	require.ErrorContains(t, err, `request_route names worker group "abc", which is not configured`)
	require.ErrorContains(t, err, "route[R] uses the millisecond forms, but the ms timer is off")

	o = testOptions(t)
	o.Async.MsTimer = 10
	o.Async.Groups = []string{"name=abc;workers=1;nonblock=0;usleep=0"}
	s, err = New(o)
	require.NoError(t, err)
	require.NoError(t, s.Routes.Request(routes.HandlerFunc(func(c *routes.Context) error { return c.Reply(404, "Not Found") })))
	s.Routes.ExpectGroup("abc", "request_route")
	s.Routes.ExpectMsTimer("route[R]")
	require.NoError(t, s.Start(context.Background()), "with the group and the ms timer, it starts")
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	require.NoError(t, s.Shutdown(ctx))
}

// Every part registers its own collector on the server's registry: the
// families are all there, read at scrape time, and lint-clean.
func TestEveryPartsMetricsAreServed(t *testing.T) {
	s, err := New(testOptions(t))
	require.NoError(t, err)
	require.NoError(t, s.Routes.Request(routes.HandlerFunc(func(c *routes.Context) error {
		_, err := async.Suspend(c, "R", nil)
		return err
	})))
	require.NoError(t, s.Routes.Route("R", routes.HandlerFunc(func(c *routes.Context) error { return c.Reply(404, "Not Found") })))
	require.NoError(t, s.Start(context.Background()))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
	})
	gauge := func(name string) (float64, bool) {
		mfs, err := s.Registry.Gather()
		require.NoError(t, err)
		for _, mf := range mfs {
			if mf.GetName() == name && len(mf.GetMetric()) > 0 {
				return mf.GetMetric()[0].GetGauge().GetValue(), true
			}
		}
		return 0, false
	}
	v, _ := gauge("sipasync_transaction_parked")
	require.Zero(t, v)
	addr := s.Proxy.Listeners()[0].Addr()
	conn, err := net.Dial("udp", addr) // the request parks; shutdown answers it
	require.NoError(t, err)
	defer conn.Close()
	_, err = conn.Write([]byte("MESSAGE sip:bob@" + addr + " SIP/2.0\r\nVia: SIP/2.0/UDP " + conn.LocalAddr().String() +
		";rport;branch=z9hG4bK-m1\r\nMax-Forwards: 70\r\nFrom: <sip:a@127.0.0.1>;tag=a\r\nTo: <sip:bob@127.0.0.1>\r\n" +
		"Call-ID: metrics-1\r\nCSeq: 1 MESSAGE\r\nContent-Length: 0\r\n\r\n"))
	require.NoError(t, err)
	require.Eventually(t, func() bool { v, _ := gauge("sipasync_transaction_parked"); return v == 1 },
		5*time.Second, 5*time.Millisecond, "read at scrape time")
	v, _ = gauge("sipasync_sipproxy_draining")
	require.Zero(t, v)
	s.LameDuck()
	v, _ = gauge("sipasync_sipproxy_draining")
	require.Equal(t, 1.0, v)

	mfs, err := s.Registry.Gather()
	require.NoError(t, err)
	have := map[string]bool{}
	for _, mf := range mfs {
		have[mf.GetName()] = true
	}
	for _, name := range []string{
		"sipasync_sipproxy_relays_total", "sipasync_sipproxy_route_errors_total", "sipasync_sipproxy_refused_total",
		"sipasync_sipproxy_overload_shedding", "sipasync_sipproxy_ack_waits_total", "sipasync_sipproxy_requests_total",
		"sipasync_transaction_live", "sipasync_transaction_created_total", "sipasync_async_resume_refused_total",
		"sipasync_async_parks_total", "sipasync_timerwheel_pending", "sipasync_workergroups_busy",
		"sipasync_events_raised_total", "sipasync_devicestate_devices", "sipasync_runtime_goroutines",
		"go_goroutines", "process_resident_memory_bytes",
	} {
		require.True(t, have[name], "%s is served", name)
	}
	problems, err := testutil.GatherAndLint(s.Registry)
	require.NoError(t, err)
	require.Empty(t, problems)
}
