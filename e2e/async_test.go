package e2e

import (
	"errors"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sipasync/sipasync/internal/sipptest"
)

// Suspend and resume, proven on the wire with SIPp.

func TestAsyncRouteDelayHonoured(t *testing.T) {
	// resume404: async.Route(c, "RESUME", 2s), route[RESUME] answers 404.
	// No response may come before the delay; under light load it comes
	// within the delay plus two 100 ms ticks plus slack for process start-up.
	const delay = 2 * time.Second
	p := startProxy(t, "resume404", "--delay", delay.String())
	start := time.Now()
	res := run(t, p, sipptest.Options{Scenario: scenario("uac_404.xml"), Service: "bob", MaxCalls: 1})
	took := time.Since(start)
	sipptest.RequireSuccess(t, res, 1)
	if took < delay {
		t.Fatalf("404 after %s, before the %s park ended", took, delay)
	}
	if limit := delay + 2*100*time.Millisecond + 1500*time.Millisecond; took > limit {
		t.Fatalf("404 after %s, later than %s", took, limit)
	}
}

func TestAsyncMsRouteHonoursMillis(t *testing.T) {
	const delay = 300 * time.Millisecond
	p := startProxy(t, "resume404", "--async-ms-timer", "10", "--delay", delay.String())
	start := time.Now()
	sipptest.RequireSuccess(t, run(t, p, sipptest.Options{Scenario: scenario("uac_404.xml"), Service: "bob", MaxCalls: 1}), 1)
	if took := time.Since(start); took < delay {
		t.Fatalf("404 after %s, before the %s park ended", took, delay)
	}
}

func TestMsRouteWithoutMsTimerIsAnError(t *testing.T) {
	// Where it can be known at start-up — resume404 declares that its
	// request route uses the ms forms (Routes.ExpectMsTimer) — the program
	// refuses to start: one line, exit 2.
	cmd := exec.CommandContext(ctxT(t, 20*time.Second), bins["resume404"], "--listen", "udp:127.0.0.1:0", "--delay", "100ms")
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 2 {
		t.Fatalf("resume404 --delay 100ms with the ms timer off: %v, want exit 2\n%s", err, out)
	}
	if !strings.Contains(string(out), "--async-ms-timer") {
		t.Fatalf("the start-up error does not say what to set:\n%s", out)
	}
	// Where it cannot (testproxy declares nothing), async.MsRoute returns
	// ErrMsTimerOff to the route, which returns it: answered 500 at once,
	// logged at ERROR as a programming error and counted by kind.
	p := startProxy(t, "testproxy", "--mode", "park", "--delay", "100ms")
	res := run(t, p, sipptest.Options{Scenario: scenario("uac_expect.xml"), Service: "bob", MaxCalls: 1,
		Keys: map[string]string{"code": "500"}})
	sipptest.RequireSuccess(t, res, 1)
	m := scrape(t, adminAddr(t, p))
	if got := m[`sipasync_sipproxy_route_errors_total{kind="ms_timer_off"}`]; got != 1 {
		t.Fatalf("route_errors_total{kind=ms_timer_off} = %v, want 1", got)
	}
	if n := p.count("level=ERROR msg=\"route programming error"); n != 1 {
		t.Fatalf("%d ERROR lines for the route's programming error, want 1:\n%s", n, p.Logs())
	}
}

func TestMsRouteRelayCompletesCalls(t *testing.T) {
	p := startProxy(t, "asyncrelay", "--async-ms-timer", "10", "--delay", "100ms")
	uas(t, p, "uas_call.xml", "alice")
	res := run(t, p, sipptest.Options{Scenario: scenario("uac_call.xml"), Service: "alice", MaxCalls: 50, Rate: 50})
	sipptest.RequireSuccess(t, res, 50)
	p.Stop()
	if parks := p.stat(t, "parks"); parks < 50 {
		t.Fatalf("%d parks, want at least one per INVITE (50)", parks)
	}
}

func TestTaskRouteRelays(t *testing.T) {
	p := startProxy(t, "taskroute", "--async-workers", "2")
	uas(t, p, "uas_call.xml", "alice")
	res := run(t, p, sipptest.Options{Scenario: scenario("uac_call.xml"), Service: "alice", MaxCalls: 30, Rate: 30})
	sipptest.RequireSuccess(t, res, 30)
}

func TestTaskGroupRouteRelays(t *testing.T) {
	p := startProxy(t, "taskroute", "--async-workers-group", "name=abc;workers=2;nonblock=0;usleep=0", "--group", "abc")
	uas(t, p, "uas_call.xml", "alice")
	sipptest.RequireSuccess(t, run(t, p, sipptest.Options{Scenario: scenario("uac_call.xml"), Service: "alice", MaxCalls: 10, Rate: 20}), 10)
}

func TestCancelWhileParkedGives487Only(t *testing.T) {
	// Parked for 1 s, cancelled after 300 ms: 200 to the CANCEL, 487 to the
	// INVITE, and nothing more for 3 s (the pending resume does nothing).
	p := startProxy(t, "testproxy", "--mode", "park", "--delay", "1s")
	res := run(t, p, sipptest.Options{Scenario: scenario("uac_cancel_parked.xml"), Service: "bob", MaxCalls: 5, Rate: 10,
		Pause: 300 * time.Millisecond})
	sipptest.RequireSuccess(t, res, 5)
	if res.OutOfCallMessages != 0 {
		t.Fatalf("%d messages after the calls ended", res.OutOfCallMessages)
	}
	p.Stop()
	if got := p.stat(t, "canceled"); got != 5 {
		t.Fatalf("canceled=%d, want 5", got)
	}
	if got := p.stat(t, "resumes"); got != 0 {
		t.Fatalf("resumes=%d after CANCEL, want 0", got)
	}
}

func TestRetransmissionWhileParkedRunsHandlerOnce(t *testing.T) {
	p := startProxy(t, "testproxy", "--mode", "park", "--delay", "1s")
	// -nr: SIPp takes the proxy's repeated 100 (byte-identical, as a
	// retransmitted response is) for a retransmission and, unless told not
	// to, resends its last message, which storms the proxy with copies.
	res := run(t, p, sipptest.Options{Scenario: scenario("uac_retrans_parked.xml"), Service: "bob", MaxCalls: 3, Rate: 10,
		ExtraArgs: []string{"-nr"}})
	sipptest.RequireSuccess(t, res, 3)
	if res.DeadCallMessages != 0 || res.OutOfCallMessages != 0 {
		t.Fatalf("%d dead-call and %d out-of-call messages: something answered after the call ended",
			res.DeadCallMessages, res.OutOfCallMessages)
	}
	if n := p.count("request route ran"); n != 3 {
		t.Fatalf("the request route ran %d times for 3 INVITEs sent twice each, want 3", n)
	}
}

func TestSuspendTimeoutAnswers408(t *testing.T) {
	p := startProxy(t, "testproxy", "--mode", "suspend", "--suspend-timeout", "1s")
	start := time.Now()
	sipptest.RequireSuccess(t, run(t, p, sipptest.Options{Scenario: scenario("uac_408.xml"), Service: "bob", MaxCalls: 2, Rate: 10}), 2)
	if took := time.Since(start); took < time.Second {
		t.Fatalf("408 after %s, before the suspend timeout", took)
	}
	p.Stop()
	if got := p.stat(t, "expired"); got != 2 {
		t.Fatalf("expired=%d, want 2", got)
	}
}

func TestSuspendTimeoutNonInviteAnswers500(t *testing.T) {
	p := startProxy(t, "testproxy", "--mode", "suspend", "--suspend-timeout", "1s")
	res := run(t, p, sipptest.Options{Scenario: scenario("uac_options.xml"), Service: "bob", MaxCalls: 1,
		Keys: map[string]string{"code": "500"}})
	sipptest.RequireSuccess(t, res, 1)
}

func TestExternalResumeByToken(t *testing.T) {
	p := startProxy(t, "testproxy", "--mode", "external", "--delay", "200ms")
	sipptest.RequireSuccess(t, run(t, p, sipptest.Options{Scenario: scenario("uac_404.xml"), Service: "bob", MaxCalls: 5, Rate: 10}), 5)
}

func TestSuspendResumeSuspendAgain(t *testing.T) {
	// Three parks on one transaction, attributes kept across them (Kamailio #645).
	p := startProxy(t, "testproxy", "--mode", "chain", "--async-ms-timer", "10", "--delay", "50ms")
	sipptest.RequireSuccess(t, run(t, p, sipptest.Options{Scenario: scenario("uac_404.xml"), Service: "bob", MaxCalls: 20, Rate: 20}), 20)
	p.Stop()
	if got := p.stat(t, "parks"); got != 60 {
		t.Fatalf("parks=%d, want 3 per call (60)", got)
	}
}

func TestTenThousandParkedAtOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("load test")
	}
	// 2,000 calls/s with a 5 s park: 10,000 transactions parked at once.
	p := startProxy(t, "resume404", "--delay", "5s")
	// SIPp's socket buffers at 4 MiB, as in benchmarks/: under the whole
	// -race suite SIPp stalls for seconds at a time, and its default
	// 64 KiB buffer then drops 404s faster than Timer G resends them.
	res := run(t, p, sipptest.Options{Scenario: scenario("uac_404.xml"), Service: "bob", MaxCalls: 10000, Rate: 2000,
		CallLimit: 20000, Timeout: 60 * time.Second, ExtraArgs: []string{"-buff_size", strconv.Itoa(4 << 20)}})
	sipptest.RequireSuccess(t, res, 10000)
	p.Stop()
	if got := p.stat(t, "parks"); got != 10000 {
		t.Fatalf("parks=%d, want 10000", got)
	}
	t.Logf("10000 calls parked 5 s: %s", strconv.FormatInt(res.Successful, 10)+" successful")
}

func TestShaperKeepsRatePerSource(t *testing.T) {
	// 20 calls offered at 200/s from one source, shaped to 20/s: all
	// complete, none is dropped, and the last one is released no earlier
	// than 19 intervals after the first.
	p := startProxy(t, "shaper", "--async-ms-timer", "1", "--shape-rate", "20", "--report", "1s")
	uas(t, p, "uas_call.xml", "alice")
	start := time.Now()
	res := run(t, p, sipptest.Options{Scenario: scenario("uac_call.xml"), Service: "alice", MaxCalls: 20, Rate: 200,
		Pause: time.Millisecond})
	took := time.Since(start)
	sipptest.RequireSuccess(t, res, 20)
	if min := 19 * 50 * time.Millisecond; took < min {
		t.Fatalf("20 calls shaped to 20/s took %s, want at least %s", took, min)
	}
	p.Stop()
	if parks := p.stat(t, "parks"); parks < 15 {
		t.Fatalf("parks=%d: the shaper should have delayed most of the burst", parks)
	}
}

func TestSIGTERMLetsParkedTransactionsFinish(t *testing.T) {
	// Parked for 2 s; SIGTERM after 0.5 s: the proxy stops taking new
	// transactions but the parked ones resume and get their 404; exit 0.
	p := startProxy(t, "resume404", "--delay", "2s", "--shutdown-timeout", "10s")
	uac, err := sipptest.Start(ctxT(t, 30*time.Second), sipptest.Options{Scenario: scenario("uac_404.xml"), Target: p.addr,
		Service: "bob", MaxCalls: 10, Rate: 100, Timeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond) // let the 10 calls park
	if code := p.Stop(); code != 0 {
		t.Fatalf("exit %d, want 0", code)
	}
	res, err := uac.Wait()
	if err != nil {
		t.Fatal(err)
	}
	sipptest.RequireSuccess(t, res, 10)
}

func TestShutdownTimeoutAnswersParked503(t *testing.T) {
	// Parked for 5 s, shutdown timeout 0.5 s: what is still parked then is
	// answered 503, nothing is left for SIPp to time out.
	p := startProxy(t, "resume404", "--delay", "5s", "--shutdown-timeout", "500ms")
	uac, err := sipptest.Start(ctxT(t, 30*time.Second), sipptest.Options{Scenario: scenario("uac_expect.xml"), Target: p.addr,
		Service: "bob", MaxCalls: 10, Rate: 100, Timeout: 20 * time.Second, Keys: map[string]string{"code": "503"}})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	if code := p.Stop(); code != 0 {
		t.Fatalf("exit %d, want 0", code)
	}
	res, err := uac.Wait()
	if err != nil {
		t.Fatal(err)
	}
	sipptest.RequireSuccess(t, res, 10)
}

func TestFailureRouteParkFailsOverToTheNextUser(t *testing.T) {
	// The INVITE rings "busy" (486); failure_route[MISSED] parks, an
	// outside goroutine resumes it 200 ms later naming "alice", and
	// route[NEXT] relays there: the caller's call completes, and the
	// held 486 never reaches it (uac_call fails on any other final).
	p := startProxy(t, "testproxy", "--mode", "failpark", "--delay", "200ms")
	uas(t, p, "uas_busy.xml", "busy")
	uas(t, p, "uas_call.xml", "alice")
	res := run(t, p, sipptest.Options{Scenario: scenario("uac_call.xml"), Service: "bob", MaxCalls: 10, Rate: 10})
	sipptest.RequireSuccess(t, res, 10)
	p.Stop()
	if got := p.stat(t, "parks"); got != 10 {
		t.Fatalf("parks=%d, want one per call in the failure route (10)", got)
	}
}

func TestCancelWhileParkedInFailureRouteGives487(t *testing.T) {
	// The failure route parks for 2 s; the caller cancels 500 ms after its
	// INVITE, while the held 486 waits: 200 to the CANCEL, 487 to the
	// INVITE, nothing more, and the late resume is refused as canceled.
	p := startProxy(t, "testproxy", "--mode", "failpark", "--delay", "2s")
	uas(t, p, "uas_busy.xml", "busy")
	uas(t, p, "uas_call.xml", "alice")
	res := run(t, p, sipptest.Options{Scenario: scenario("uac_cancel_parked.xml"), Service: "bob", MaxCalls: 3, Rate: 10,
		Pause: 500 * time.Millisecond})
	sipptest.RequireSuccess(t, res, 3)
	if res.OutOfCallMessages != 0 {
		t.Fatalf("%d messages after the calls ended", res.OutOfCallMessages)
	}
	time.Sleep(2 * time.Second) // the resumes come and are refused
	p.Stop()
	if got := p.stat(t, "canceled"); got != 3 {
		t.Fatalf("canceled=%d, want 3", got)
	}
	if n := p.count("external resume failed"); n != 0 {
		t.Fatalf("%d resumes failed for another reason than the CANCEL", n)
	}
}

func TestParkTimeoutRunsTimeoutRoute(t *testing.T) {
	// Suspend with a 300 ms park timeout and route[LATE]: nobody resumes,
	// LATE runs with reason timeout and answers 504 — well before the
	// 120 s suspend timeout.
	p := startProxy(t, "testproxy", "--mode", "timeoutroute", "--delay", "300ms")
	start := time.Now()
	res := run(t, p, sipptest.Options{Scenario: scenario("uac_expect.xml"), Service: "bob", MaxCalls: 5, Rate: 10,
		Keys: map[string]string{"code": "504"}})
	sipptest.RequireSuccess(t, res, 5)
	if took := time.Since(start); took < 300*time.Millisecond {
		t.Fatalf("504 after %s, before the park timeout", took)
	}
}
