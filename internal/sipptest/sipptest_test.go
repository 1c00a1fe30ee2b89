package sipptest

import (
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Scenario files run straight against each other: no proxy, so no
// Record-Route; [routes] expands to nothing and [next_url] is the Contact.

func TestCallScenarioDirect(t *testing.T) {
	t.Parallel()
	for _, tr := range []Transport{UDP, TCP} {
		t.Run(string(tr), func(t *testing.T) {
			t.Parallel()
			uas := StartT(t, Options{Scenario: Scenario("uas_call.xml"), Transport: tr})
			const calls = 20
			res := RunT(t, Options{
				Scenario:  Scenario("uac_call.xml"),
				Target:    uas.Addr(),
				Transport: tr,
				Service:   "alice",
				MaxCalls:  calls,
				Rate:      100,
				Pause:     20 * time.Millisecond,
				TraceRTT:  true,
			})
			RequireSuccess(t, res, calls)
			assert.EqualValues(t, calls, res.Created)
			assert.Zero(t, res.UnexpectedMessages)
			assert.Len(t, res.ResponseTimes, calls, "one INVITE→200 sample per call")
			assert.Greater(t, res.CallLength, 20*time.Millisecond, "the pause between ACK and BYE")

			srv, err := uas.Stop()
			require.NoError(t, err)
			LogOnFailure(t, srv)
			assert.EqualValues(t, calls, srv.Successful, "UAS side")
			assert.Zero(t, srv.Failed, "UAS side")
		})
	}
}

func TestCancelScenarioDirect(t *testing.T) {
	t.Parallel()
	uas := StartT(t, Options{Scenario: Scenario("uas_ring.xml")})
	const calls = 5
	res := RunT(t, Options{
		Scenario: Scenario("uac_cancel.xml"),
		Target:   uas.Addr(),
		Service:  "bob",
		MaxCalls: calls,
		Rate:     50,
		Pause:    20 * time.Millisecond,
	})
	RequireSuccess(t, res, calls)
	srv, err := uas.Stop()
	require.NoError(t, err)
	LogOnFailure(t, srv)
	assert.EqualValues(t, calls, srv.Successful, "UAS side")
	assert.Zero(t, srv.Failed, "UAS side")
}

func TestExpectScenarioDirect(t *testing.T) {
	t.Parallel()
	uas := StartT(t, Options{Scenario: Scenario("uas_busy.xml")})

	ok := RunT(t, Options{
		Scenario: Scenario("uac_expect.xml"),
		Target:   uas.Addr(),
		Keys:     map[string]string{"code": "486"},
		MaxCalls: 3,
		Rate:     50,
	})
	RequireSuccess(t, ok, 3)

	// The wrong expectation must fail every call, with a clear reason.
	bad := RunT(t, Options{
		Scenario: Scenario("uac_expect.xml"),
		Target:   uas.Addr(),
		Keys:     map[string]string{"code": "404"},
		MaxCalls: 2,
		Rate:     50,
	})
	assert.Equal(t, 1, bad.ExitCode)
	assert.EqualValues(t, 2, bad.Failed)
	assert.Zero(t, bad.Successful)
	v, _ := bad.Stat("FailedStrcmpDoesntMatch(C)")
	assert.Equal(t, "2", v)
	assert.Contains(t, bad.ErrorLog, "expected final response 404, got 486")
	assert.False(t, bad.OK())
}

func TestNonInviteScenariosDirect(t *testing.T) {
	t.Parallel()
	uas := StartT(t, Options{Scenario: Scenario("uas_message.xml")})
	for _, name := range []string{"uac_message.xml", "uac_options.xml"} {
		res := RunT(t, Options{
			Scenario: Scenario(name),
			Target:   uas.Addr(),
			Service:  "carol",
			Keys:     map[string]string{"code": "200"},
			MaxCalls: 3,
			Rate:     50,
			TraceMsg: true,
		})
		RequireSuccess(t, res, 3)
		assert.Contains(t, res.MessageLog, "SIP/2.0 200 OK")
	}
}

// TestScenariosThroughRecordRoutingProxy runs the scenarios through
// fakeProxy, a record-routing registrar/proxy that checks the dialog
// handling of the scenario files.
func TestScenariosThroughRecordRoutingProxy(t *testing.T) {
	t.Parallel()
	fp := newFakeProxy(t)
	run := func(t *testing.T, opts Options) *Result {
		t.Helper()
		opts.Target = fp.addr
		if opts.MaxCalls == 0 {
			opts.MaxCalls = 1
		}
		opts.Rate = 50
		return RunT(t, opts)
	}
	register := func(t *testing.T, user string, uas *Process) {
		t.Helper()
		res := run(t, Options{
			Scenario: Scenario("register.xml"),
			Service:  user,
			Keys:     map[string]string{"contact_port": strconv.Itoa(uas.Port())},
		})
		RequireSuccess(t, res, 1)
		c, ok := fp.binding(user)
		require.True(t, ok, "binding for %s", user)
		require.Equal(t, uas.Addr(), c)
	}

	t.Run("call", func(t *testing.T) {
		uas := StartT(t, Options{Scenario: Scenario("uas_call.xml")})
		register(t, "alice", uas)
		const calls = 10
		res := run(t, Options{Scenario: Scenario("uac_call.xml"), Service: "alice", MaxCalls: calls, Pause: 10 * time.Millisecond})
		RequireSuccess(t, res, calls)
		srv, err := uas.Stop()
		require.NoError(t, err)
		assert.EqualValues(t, calls, srv.Successful)
		assert.Equal(t, calls, fp.counter("routed ACK"), "2xx ACKs sent to [next_url] with our Route")
		assert.Equal(t, calls, fp.counter("routed BYE"), "BYEs sent to [next_url] with our Route")
		assert.GreaterOrEqual(t, fp.counter("rr echoed 180"), calls, "UAS echoes Record-Route in 180")
		assert.GreaterOrEqual(t, fp.counter("rr echoed 200"), calls, "UAS echoes Record-Route in 200")
		fp.requireClean(t)

		// unregister.xml removes the binding: the next call gets 404.
		res = run(t, Options{
			Scenario: Scenario("unregister.xml"),
			Service:  "alice",
			Keys:     map[string]string{"contact_port": strconv.Itoa(uas.Port())},
		})
		RequireSuccess(t, res, 1)
		_, ok := fp.binding("alice")
		assert.False(t, ok, "binding removed")
		RequireSuccess(t, run(t, Options{Scenario: Scenario("uac_404.xml"), Service: "alice"}), 1)
	})

	t.Run("cancel", func(t *testing.T) {
		uas := StartT(t, Options{Scenario: Scenario("uas_ring.xml")})
		register(t, "bob", uas)
		const calls = 5
		res := run(t, Options{Scenario: Scenario("uac_cancel.xml"), Service: "bob", MaxCalls: calls, Pause: 10 * time.Millisecond})
		RequireSuccess(t, res, calls)
		srv, err := uas.Stop()
		require.NoError(t, err)
		assert.EqualValues(t, calls, srv.Successful)
		assert.GreaterOrEqual(t, fp.counter("resp 487 INVITE"), calls, "487s forwarded with the full Via stack")
		assert.GreaterOrEqual(t, fp.counter("resp 200 CANCEL"), calls, "UAS answered the proxy's own CANCEL")
		fp.requireClean(t)
	})

	t.Run("busy", func(t *testing.T) {
		uas := StartT(t, Options{Scenario: Scenario("uas_busy.xml")})
		register(t, "carol", uas)
		res := run(t, Options{Scenario: Scenario("uac_expect.xml"), Service: "carol", Keys: map[string]string{"code": "486"}, MaxCalls: 3})
		RequireSuccess(t, res, 3)
		srv, err := uas.Stop()
		require.NoError(t, err)
		assert.EqualValues(t, 3, srv.Successful, "UAS got the proxy's ACK for 486")
		fp.requireClean(t)
	})

	t.Run("message", func(t *testing.T) {
		uas := StartT(t, Options{Scenario: Scenario("uas_message.xml")})
		register(t, "dave", uas)
		for _, name := range []string{"uac_message.xml", "uac_options.xml"} {
			RequireSuccess(t, run(t, Options{Scenario: Scenario(name), Service: "dave", Keys: map[string]string{"code": "200"}, MaxCalls: 2}), 2)
		}
		RequireSuccess(t, run(t, Options{Scenario: Scenario("uac_message.xml"), Service: "nobody", Keys: map[string]string{"code": "404"}}), 1)
		fp.requireClean(t)
	})

	t.Run("errors", func(t *testing.T) {
		for _, tc := range []struct {
			scenario, user string
			keys           map[string]string
		}{
			{"uac_404.xml", "nobody", nil},
			{"uac_403.xml", "anyone", nil},
			{"uac_483.xml", "anyone", nil},
			{"uac_484.xml", "status-484", nil},
			{"uac_408.xml", "status-408", nil},
			{"uac_expect.xml", "status-480", map[string]string{"code": "480"}},
			{"uac_expect.xml", "nobody", map[string]string{"code": "404"}},
		} {
			res := run(t, Options{Scenario: Scenario(tc.scenario), Service: tc.user, Keys: tc.keys})
			RequireSuccess(t, res, 1)
		}
		fp.requireClean(t)
	})

	t.Run("register_inf", func(t *testing.T) {
		dir := t.TempDir()
		inf, err := WriteInjectionFile(dir, "users.csv", "SEQUENTIAL", [][]string{
			{"u1", "5071", "3600"}, {"u2", "5072", "3600"}, {"u3", "5073", "3600"},
		})
		require.NoError(t, err)
		res := run(t, Options{Scenario: Scenario("register_inf.xml"), InjectionFiles: []string{inf}, MaxCalls: 3})
		RequireSuccess(t, res, 3)
		for i, u := range []string{"u1", "u2", "u3"} {
			c, ok := fp.binding(u)
			assert.True(t, ok, u)
			assert.Equal(t, "127.0.0.1:"+strconv.Itoa(5071+i), c)
		}
		fp.requireClean(t)
	})
}

func TestServerStopsWithContextAndReportsBindErrors(t *testing.T) {
	t.Parallel()
	Require(t)
	uas := StartT(t, Options{Scenario: Scenario("uas_call.xml")})
	// A second server on the same, explicitly chosen port cannot bind.
	_, err := Start(t.Context(), Options{Scenario: Scenario("uas_call.xml"), LocalPort: uas.Port()})
	require.ErrorIs(t, err, ErrBind)

	// A client aimed at nobody times out and reports it.
	res, err := Run(t.Context(), Options{
		Scenario: Scenario("uac_call.xml"),
		Target:   "127.0.0.1:9",
		MaxCalls: 1,
		Timeout:  time.Second,
	})
	require.ErrorIs(t, err, ErrTimeout)
	require.NotNil(t, res)
	assert.True(t, res.TimedOut)
	assert.Zero(t, res.Successful)
}

func TestMissingScenario(t *testing.T) {
	t.Parallel()
	_, err := Start(t.Context(), Options{Scenario: Scenario("no-such.xml")})
	require.Error(t, err)
}
