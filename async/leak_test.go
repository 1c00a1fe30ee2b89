package async_test

import (
	"runtime"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/sipasync/sipasync/async"
	"github.com/sipasync/sipasync/internal/siptest"
	"github.com/sipasync/sipasync/routes"
	"github.com/sipasync/sipasync/transaction"
)

// settledGoroutines waits until the goroutine count is at most limit (sipgo
// ends a completed reliable transaction from a timer of 0 s, whose goroutine
// lives briefly) and returns the count.
func settledGoroutines(t testing.TB, limit int) int {
	t.Helper()
	deadline := time.Now().Add(siptest.WaitFor)
	for {
		n := runtime.NumGoroutine()
		if n <= limit || time.Now().After(deadline) {
			return n
		}
		time.Sleep(time.Millisecond)
	}
}

// stableGoroutines returns the goroutine count once it has not changed
// for 20 reads in a row.
func stableGoroutines() int {
	n, same := runtime.NumGoroutine(), 0
	for deadline := time.Now().Add(siptest.WaitFor); same < 20 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
		if m := runtime.NumGoroutine(); m == n {
			same++
		} else {
			n, same = m, 0
		}
	}
	return n
}

func heapAlloc() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// TestParkedHoldsNoGoroutine parks 10,000 transactions (real sipgo server
// transactions) and checks the goroutine count does not grow with them.
func TestParkedHoldsNoGoroutine(t *testing.T) {
	const n = 10000
	h := newHarness(t, opts{})
	h.route("R", replyOK)
	w := &siptest.Wire{Counting: true}
	// Parse first, so the heap measure below is about parking.
	reqs := make([]*sip.Request, n)
	for i := range reqs {
		reqs[i] = siptest.Request(t, "MESSAGE")
	}
	base := stableGoroutines()
	heap0 := heapAlloc()

	for i, req := range reqs {
		tx, err := h.tbl.Add(req, siptest.ServerTx(t, req, w))
		require.NoError(t, err)
		c := h.ctxOf(tx, routes.KindRequest, "")
		switch i % 3 {
		case 0:
			err = async.Route(c, "R", 50*time.Second)
		case 1:
			err = async.MsRoute(c, "R", 30*time.Second)
		default:
			_, err = async.Suspend(c, "R", nil)
		}
		require.NoError(t, err)
	}
	require.Equal(t, n, h.tbl.Stats().Parked)
	require.Equal(t, n, h.e.Stats().WheelPending)
	got := runtime.NumGoroutine()
	require.LessOrEqual(t, got, base+5, "%d parked transactions hold goroutines: %d before, %d after", n, base, got)
	heap1 := heapAlloc()
	runtime.KeepAlive(reqs)
	t.Logf("%d parked: goroutines %d → %d; heap +%d B per parked transaction (server tx, table entry, wheel entry)",
		n, base, got, int64(heap1-heap0)/n)

	require.Equal(t, n, h.e.Stop(), "all answered at stop")
	require.Equal(t, int64(n), w.Count(), "one 503 each")
	require.Zero(t, h.tbl.Stats().Live)
}

// TestSuspendResumeCyclesLeakNothing runs 100,000 suspend/resume cycles on
// real server transactions and checks that goroutines and heap come back
// to where they started, and that nothing is left behind after teardown.
func TestSuspendResumeCyclesLeakNothing(t *testing.T) {
	const cycles = 100_000
	before := goleak.IgnoreCurrent()

	// The table remembers the slots of ended parks up to a bound; keep it
	// small so that slots are reused within the run.
	h := newHarness(t, opts{countOnly: true, moduleWorkers: 1, maxRemembered: 1000})
	h.route("R", func(c *routes.Context) error {
		if c.ResumeReason() != transaction.ReasonExternal || c.ResumeValue() != "v" {
			return routes.Error(500, "wrong resume", nil)
		}
		return c.Reply(200, "OK")
	})
	w := &siptest.Wire{Counting: true}
	req := siptest.Request(t, "MESSAGE")
	key, err := sip.ServerTxKeyMake(req)
	require.NoError(t, err)

	cycle := func() {
		stx := sip.NewServerTx(key, req, w, discard)
		if err := stx.Init(); err != nil {
			t.Fatal(err)
		}
		tx, err := h.tbl.Add(req, stx)
		if err != nil {
			t.Fatal(err)
		}
		c := routes.NewContext(routes.ContextOptions{Ctx: h.ctx, Proxy: h.fe, Kind: routes.KindRequest, Tx: tx, Logger: discard})
		tok, err := async.Suspend(c, "R", nil)
		if err != nil {
			t.Fatal(err)
		}
		want := h.r.n.Load() + 1
		if err := h.e.Resume(tok, "v"); err != nil {
			t.Fatal(err)
		}
		for h.r.n.Load() < want { // Resume queues the route and returns
			runtime.Gosched()
		}
	}
	// Warm up: the table's slot, the wheel's node, the groups' queues.
	for range 1000 {
		cycle()
	}
	base := stableGoroutines()
	heap0 := heapAlloc()
	start := time.Now()
	for range cycles {
		cycle()
	}
	elapsed := time.Since(start)

	require.Equal(t, int64(cycles+1000), h.r.n.Load(), "every cycle ran its route")
	require.Equal(t, int64(cycles+1000), w.Count(), "every cycle answered once")
	st := h.tbl.Stats()
	require.Zero(t, st.Live)
	require.Zero(t, st.Parked)
	require.Equal(t, uint64(cycles+1000), st.Resumes)
	es := h.e.Stats()
	require.Equal(t, uint64(cycles+1000), es.Resumes)
	require.Zero(t, es.WheelPending, "every deadline was disarmed")
	require.Zero(t, es.ResumeRefused)

	got := settledGoroutines(t, base)
	require.LessOrEqual(t, got, base, "goroutines after %d cycles", cycles)
	heap1 := heapAlloc()
	growth := int64(heap1) - int64(heap0)
	t.Logf("%d cycles in %s: goroutines %d → %d, heap %d → %d (%+d B)", cycles, elapsed, base, got, heap0, heap1, growth)
	require.Less(t, growth, int64(8<<20), "heap grew by %d B over %d cycles", growth, cycles)

	h.close()
	goleak.VerifyNone(t, before)
}
