package e2e

import (
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sipasync/sipasync/internal/sipptest"
)

// The foundation: the registrar + proxy of cmd/sipasync against SIPp.

func TestRegisterThenCallThroughProxy(t *testing.T) {
	p := startProxy(t, "sipasync")
	u := uas(t, p, "uas_call.xml", "alice")
	res := run(t, p, sipptest.Options{Scenario: scenario("uac_call.xml"), Service: "alice", MaxCalls: 5, Rate: 10})
	sipptest.RequireSuccess(t, res, 5)
	ures, err := u.Stop()
	if err != nil {
		t.Fatal(err)
	}
	if ures.Successful != 5 || ures.Failed != 0 {
		t.Fatalf("the UAS saw %d successful and %d failed calls, want 5 and 0\n%s", ures.Successful, ures.Failed, ures.Diagnostics())
	}
	// Every transaction of the calls (INVITE, the 2xx's ACK, BYE) has ended:
	// the proxy stops with nothing left (a leaked one is waited for until
	// --shutdown-timeout and reported as unfinished).
	if code := p.Stop(); code != 0 {
		t.Fatalf("exit %d, want 0", code)
	}
	if n := p.stat(t, "unfinished"); n != 0 {
		t.Fatalf("unfinished=%d after the calls ended, want 0", n)
	}
}

func TestTwoHundredCallsInARow(t *testing.T) {
	p := startProxy(t, "sipasync")
	uas(t, p, "uas_call.xml", "bob")
	res := run(t, p, sipptest.Options{Scenario: scenario("uac_call.xml"), Service: "bob", MaxCalls: 200, Rate: 100})
	sipptest.RequireSuccess(t, res, 200)
}

func TestUnknownUserGets404(t *testing.T) {
	p := startProxy(t, "sipasync")
	sipptest.RequireSuccess(t, run(t, p, sipptest.Options{Scenario: scenario("uac_404.xml"), Service: "nobody", MaxCalls: 3}), 3)
}

func TestMaxForwardsZeroGets483(t *testing.T) {
	p := startProxy(t, "sipasync")
	sipptest.RequireSuccess(t, run(t, p, sipptest.Options{Scenario: scenario("uac_483.xml"), Service: "bob", MaxCalls: 1}), 1)
}

func TestPreloadedRouteGets403(t *testing.T) {
	p := startProxy(t, "sipasync")
	sipptest.RequireSuccess(t, run(t, p, sipptest.Options{Scenario: scenario("uac_403.xml"), Service: "bob", MaxCalls: 1}), 1)
}

func TestMissingUserGets484(t *testing.T) {
	p := startProxy(t, "sipasync")
	sipptest.RequireSuccess(t, run(t, p, sipptest.Options{Scenario: scenario("uac_nouser.xml"), Service: "bob", MaxCalls: 1}), 1)
}

func TestCancelRingingInviteGets487(t *testing.T) {
	p := startProxy(t, "sipasync")
	uas(t, p, "uas_ring.xml", "carol")
	res := run(t, p, sipptest.Options{Scenario: scenario("uac_cancel.xml"), Service: "carol", MaxCalls: 3, Rate: 5, Pause: 200 * time.Millisecond})
	sipptest.RequireSuccess(t, res, 3)
}

func TestUnansweredInviteEndsWith408(t *testing.T) {
	// The callee rings and never answers: after --invite-timeout the proxy
	// cancels downstream and answers 408 upstream.
	p := startProxy(t, "sipasync", "--invite-timeout", "2s")
	uas(t, p, "uas_ring.xml", "dave")
	res := run(t, p, sipptest.Options{Scenario: scenario("uac_408.xml"), Service: "dave", MaxCalls: 1, Timeout: 20 * time.Second})
	sipptest.RequireSuccess(t, res, 1)
}

func TestSilentNextHopEndsWith408AfterFrTimeout(t *testing.T) {
	// The registered contact never answers, not even 100 Trying: after
	// --fr-timeout (Timer B) the proxy answers 408 upstream. With the RFC's
	// 32 s the caller would give up first.
	silent, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	p := startProxy(t, "sipasync", "--fr-timeout", "1s")
	reg := run(t, p, sipptest.Options{Scenario: scenario("register.xml"), Service: "erin", MaxCalls: 1,
		Keys: map[string]string{"contact_port": strconv.Itoa(silent.LocalAddr().(*net.UDPAddr).Port)}})
	sipptest.RequireSuccess(t, reg, 1)
	res := run(t, p, sipptest.Options{Scenario: scenario("uac_408.xml"), Service: "erin", MaxCalls: 1, Timeout: 15 * time.Second})
	sipptest.RequireSuccess(t, res, 1)
}

func TestSIGTERMExitsZero(t *testing.T) {
	p := startProxy(t, "sipasync")
	if code := p.Stop(); code != 0 {
		t.Fatalf("exit code %d after SIGTERM, want 0\n%s", code, p.Logs())
	}
}

func TestBadFlagsExitTwoWithOneLine(t *testing.T) {
	cases := [][]string{
		{"--bogus"},
		{"--listen", "foo:1.2.3.4:5"},
		{"--listen", "udp:127.0.0.1:99999"},
		{"--log-level", "loud"},
		{"--listen", "tls:127.0.0.1:5061"},
		{"--tls-cert", "/nonexistent.pem", "--tls-key", "/nonexistent.key"},
		{"--async-ms-timer", "5000"},
		{"--async-workers-group", "workers=4"},
		{"--outbound", "sip:[]"},
		{"--overload-runnable", "-5"},
		{"--overload-delay", "-1s"},
		{"--overload-heap-mib", "-5"},
		{"--udp-buffer", "-1"},
		{"--fr-timeout", "100ms"},
		{"--fr-timeout", "1m"},
	}
	for _, args := range cases {
		out, code := runExit(t, "sipasync", args...)
		if code != 2 {
			t.Errorf("%v: exit %d, want 2; output %q", args, code, out)
			continue
		}
		if lines := strings.Count(strings.TrimSpace(out), "\n") + 1; lines != 1 || strings.Contains(out, "goroutine ") {
			t.Errorf("%v: want one line, got %q", args, out)
		}
	}
}

func TestPortInUseExitsTwo(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	out, code := runExit(t, "sipasync", "--listen", "udp:"+pc.LocalAddr().String())
	if code != 2 || !strings.Contains(out, "address already in use") {
		t.Fatalf("exit %d, output %q; want 2 naming the address in use", code, out)
	}
}

// runExit runs a program that is expected to exit on its own.
func runExit(t *testing.T, program string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.CommandContext(ctxT(t, 10*time.Second), bins[program], args...)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if _, ok := err.(*exec.ExitError); err != nil && !ok {
		t.Fatal(err)
	}
	return out.String(), cmd.ProcessState.ExitCode()
}

func TestCallOverTCP(t *testing.T) {
	tcpPort := sipptest.FreeTCPPort(t)
	p := startProxy(t, "sipasync", "--listen", "tcp:127.0.0.1:"+strconv.Itoa(tcpPort))
	u := sipptest.StartT(t, sipptest.Options{Scenario: scenario("uas_call.xml"), Transport: sipptest.TCP, Timeout: 60 * time.Second})
	tcpAddr := "127.0.0.1:" + strconv.Itoa(tcpPort)
	reg := sipptest.RunT(t, sipptest.Options{Scenario: scenario("register.xml"), Target: tcpAddr, Transport: sipptest.TCP,
		Service: "tina", MaxCalls: 1, Timeout: 30 * time.Second, Keys: map[string]string{"contact_port": strconv.Itoa(u.Port())}})
	sipptest.RequireSuccess(t, reg, 1)
	res := sipptest.RunT(t, sipptest.Options{Scenario: scenario("uac_call.xml"), Target: tcpAddr, Transport: sipptest.TCP,
		Service: "tina", MaxCalls: 5, Rate: 10, Timeout: 30 * time.Second})
	sipptest.RequireSuccess(t, res, 5)
	_ = p
}

func TestFromKamailioScriptSendsBusyToVoicemail(t *testing.T) {
	// examples/fromkamailio: bob answers 486; failure_route[MANAGE_FAILURE]
	// relays to voicemail, which answers: the caller's call completes.
	p := startProxy(t, "fromkamailio")
	uas(t, p, "uas_busy.xml", "bob")
	uas(t, p, "uas_call.xml", "voicemail")
	res := run(t, p, sipptest.Options{Scenario: scenario("uac_call.xml"), Service: "bob", MaxCalls: 5, Rate: 10})
	sipptest.RequireSuccess(t, res, 5)
	// and a user nobody registered is 404 (lookup), with no failure route run
	res = run(t, p, sipptest.Options{Scenario: scenario("uac_404.xml"), Service: "nobody", MaxCalls: 1})
	sipptest.RequireSuccess(t, res, 1)
}
