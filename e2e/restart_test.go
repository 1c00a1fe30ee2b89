package e2e

import (
	"testing"
	"time"

	"github.com/sipasync/sipasync/internal/sipptest"
)

// TestSIGTERMWithTenThousandParked is a restart under load: 10,000 INVITEs
// offered at 2,500/s, each parked for 60 s, then SIGTERM. Every one must be
// answered (503 with Retry-After: at the shutdown timeout for those parked,
// at once for those that arrive while draining), SIPp must see no timeout
// or failure, and the proxy must exit 0.
func TestSIGTERMWithTenThousandParked(t *testing.T) {
	if testing.Short() {
		t.Skip("load test")
	}
	const calls, rate = 10000, 2500
	p := startProxy(t, "resume404", "--delay", "60s", "--shutdown-timeout", "3s")
	uac, err := sipptest.Start(ctxT(t, 90*time.Second), sipptest.Options{Scenario: scenario("uac_expect.xml"), Target: p.addr,
		Service: "bob", MaxCalls: calls, Rate: rate, CallLimit: 2 * calls, Timeout: 60 * time.Second,
		Keys: map[string]string{"code": "503"}})
	if err != nil {
		t.Fatal(err)
	}
	// SIGTERM once SIPp has had time to send them all; a slow SIPp still
	// has the 3 s of draining, during which new INVITEs get 503 at once.
	time.Sleep(calls/rate*time.Second + 500*time.Millisecond)
	if code := p.Stop(); code != 0 {
		t.Fatalf("exit %d, want 0", code)
	}
	res, err := uac.Wait()
	if err != nil {
		t.Fatal(err)
	}
	sipptest.RequireSuccess(t, res, calls)
	parks, rejected := p.stat(t, "parks"), p.stat(t, "rejected_503")
	if parks+rejected != calls {
		t.Fatalf("parks=%d + rejected_503=%d, want %d: every INVITE was either parked or refused", parks, rejected, calls)
	}
	if p.stat(t, "resumes") != 0 {
		t.Fatalf("resumes=%d, want 0 (the park is 60 s)", p.stat(t, "resumes"))
	}
	t.Logf("SIGTERM with %d parked (%d more refused while draining): all answered 503, exit 0", parks, rejected)
}
