package async_test

import (
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/sipasync/sipasync/async"
	"github.com/sipasync/sipasync/internal/siptest"
	"github.com/sipasync/sipasync/routes"
	"github.com/sipasync/sipasync/transaction"
)

// BenchmarkExternalResume measures Engine.Resume called from a goroutine
// outside the engine (an HTTP handler, a queue consumer): the latency from
// the call to the start of the resumed route, and how many resumes a
// second the engine takes. Each op parks one transaction on a real sipgo
// server transaction and resumes it.
//
//   - one-at-a-time: one park, one resume, wait for the route: the
//     latency of an idle engine (p50, p99).
//   - burst-1000: 1,000 parked, then resumed back to back from one
//     goroutine: resumes/s and the latency under a queue.
//
// go test -run '^$' -bench ExternalResume -benchmem ./async/
func BenchmarkExternalResume(b *testing.B) {
	for _, bc := range []struct {
		name  string
		burst int
	}{{"one-at-a-time", 1}, {"burst-1000", 1000}} {
		b.Run(bc.name, func(b *testing.B) {
			h := newHarness(b, opts{countOnly: true, maxRemembered: 1 << 12})
			var mu sync.Mutex
			lat := make([]time.Duration, 0, b.N)
			started := make(map[*transaction.Tx]time.Time, bc.burst)
			var wg sync.WaitGroup
			h.route("R", func(c *routes.Context) error {
				now := time.Now()
				mu.Lock()
				lat = append(lat, now.Sub(started[c.Tx()]))
				delete(started, c.Tx())
				mu.Unlock()
				wg.Done()
				return c.Reply(200, "OK")
			})
			w := &siptest.Wire{Counting: true}
			req := siptest.Request(b, "MESSAGE")
			key, err := sip.ServerTxKeyMake(req)
			if err != nil {
				b.Fatal(err)
			}
			park := func() (*transaction.Tx, transaction.Token) {
				stx := sip.NewServerTx(key, req, w, discard)
				if err := stx.Init(); err != nil {
					b.Fatal(err)
				}
				tx, err := h.tbl.Add(req, stx)
				if err != nil {
					b.Fatal(err)
				}
				c := routes.NewContext(routes.ContextOptions{Ctx: h.ctx, Proxy: h.fe, Kind: routes.KindRequest, Tx: tx, Logger: discard})
				tok, err := async.Suspend(c, "R", nil)
				if err != nil {
					b.Fatal(err)
				}
				return tx, tok
			}
			type parked struct {
				tx  *transaction.Tx
				tok transaction.Token
			}
			batch := make([]parked, 0, bc.burst)
			b.ReportAllocs()
			b.ResetTimer()
			var resuming time.Duration
			for done := 0; done < b.N; {
				n := min(bc.burst, b.N-done)
				b.StopTimer()
				batch = batch[:0]
				for range n {
					tx, tok := park()
					batch = append(batch, parked{tx, tok})
				}
				wg.Add(n)
				b.StartTimer()
				t0 := time.Now()
				for _, p := range batch {
					mu.Lock()
					started[p.tx] = time.Now()
					mu.Unlock()
					if err := h.e.Resume(p.tok, nil); err != nil {
						b.Fatal(err)
					}
				}
				wg.Wait()
				resuming += time.Since(t0)
				done += n
			}
			b.StopTimer()
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds()), "p50-ns")
			b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds()), "p99-ns")
			b.ReportMetric(float64(b.N)/resuming.Seconds(), "resumes/s")
		})
	}
}
