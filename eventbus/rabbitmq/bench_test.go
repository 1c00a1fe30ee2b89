package rabbitmq

import (
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sipasync/sipasync/eventbus/evi"
)

// The benchmarks publish to the real broker on 127.0.0.1:5672, through
// evi.RaiseEvent, the path route code takes. Each event is the seed's
// E_SIP_MESSAGE (user and a 40-byte body, 70 bytes as grammar) to a durable
// queue nobody consumes (deleted at the end). Recorded in
// benchmarks/RESULTS.md:
//
//	go test -run '^$' -bench 'BenchmarkPublish' -benchtime 20000x -count 3 ./eventbus/rabbitmq/

var benchAttrs = []evi.Attr{evi.String("user", "alice"), evi.String("msg", "hello bob, this is a 40 byte text body.")}

// BenchmarkPublishAsync: sync_mode=0. RaiseEvent returns at once; the clock
// runs until the broker has confirmed every event, so events/s is what
// reaches the broker, not what is raised. The buffers hold b.N events, so
// nothing is dropped (the benchmark fails if anything is).
func BenchmarkPublishAsync(b *testing.B) {
	for _, bc := range []struct{ name, params string }{
		{"transient", ""},
		{"persistent", ";persistent=1"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			needBroker(b)
			q := declareQueue(b, "/")
			ev, f := newEvents(b, Options{Buffer: max(b.N, DefaultBuffer)}, evi.WithQueue(max(b.N, DefaultBuffer)+16))
			sub, err := ev.SubscribeEvent("E_SIP_MESSAGE", "rabbitmq:127.0.0.1/"+q+bc.params)
			noErr(b, err)
			warmUp(b, ev, f)
			base := statsOf(b, f).Confirmed
			var slowest time.Duration
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			for range b.N {
				t0 := time.Now()
				if err := ev.RaiseEvent("E_SIP_MESSAGE", benchAttrs...); err != nil {
					b.Fatal(err)
				}
				slowest = max(slowest, time.Since(t0))
			}
			raised := time.Since(start)
			checkFor(b, "all confirmed", 5*time.Minute, func() bool {
				st := statsOf(b, f)
				return st.Confirmed-base == uint64(b.N) || st.Dropped > 0 || sub.Stats().Queue.Dropped > 0
			})
			elapsed := time.Since(start)
			b.StopTimer()
			st := statsOf(b, f)
			if st.Dropped > 0 || sub.Stats().Queue.Dropped > 0 || st.Returned > 0 {
				b.Fatalf("events lost in a benchmark: %+v, evi queue dropped %d", st, sub.Stats().Queue.Dropped)
			}
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "events/s")
			b.ReportMetric(float64(b.N)/raised.Seconds(), "raised/s")
			b.ReportMetric(float64(slowest.Microseconds()), "max-raise-µs")
		})
	}
}

// BenchmarkPublishSync: sync_mode=1. Each RaiseEvent waits for the broker's
// publisher confirm; p50 and p99 are the latencies of RaiseEvent. With one
// raiser this is the round trip; with more, confirms of concurrent raisers
// share the connection and the broker batches them.
func BenchmarkPublishSync(b *testing.B) {
	for _, bc := range []struct {
		name    string
		params  string
		raisers int
	}{
		{"transient/raisers=1", "", 1},
		{"transient/raisers=16", "", 16},
		{"persistent/raisers=1", ";persistent=1", 1},
		{"persistent/raisers=16", ";persistent=1", 16},
	} {
		b.Run(bc.name, func(b *testing.B) {
			needBroker(b)
			q := declareQueue(b, "/")
			ev, f := newEvents(b, Options{Sync: true})
			_, err := ev.SubscribeEvent("E_SIP_MESSAGE", "rabbitmq:127.0.0.1/"+q+bc.params)
			noErr(b, err)
			warmUp(b, ev, f)
			lat := make([]time.Duration, b.N)
			var next atomic.Int64
			var failed atomic.Int64
			var wg sync.WaitGroup
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			for range bc.raisers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						i := next.Add(1) - 1
						if i >= int64(b.N) {
							return
						}
						t0 := time.Now()
						if err := ev.RaiseEvent("E_SIP_MESSAGE", benchAttrs...); err != nil {
							failed.Add(1)
						}
						lat[i] = time.Since(t0)
					}
				}()
			}
			wg.Wait()
			elapsed := time.Since(start)
			b.StopTimer()
			if n := failed.Load(); n > 0 {
				b.Fatalf("%d sync raises failed: %+v", n, statsOf(b, f))
			}
			slices.Sort(lat)
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "events/s")
			b.ReportMetric(float64(quantile(lat, 0.50).Microseconds()), "p50-µs")
			b.ReportMetric(float64(quantile(lat, 0.99).Microseconds()), "p99-µs")
			b.ReportMetric(float64(lat[len(lat)-1].Microseconds()), "max-µs")
		})
	}
}

// warmUp connects the socket and publishes a few events first, so that the
// connection set-up is not measured.
func warmUp(b *testing.B, ev *evi.Events, f *Factory) {
	b.Helper()
	for range 10 {
		noErr(b, ev.RaiseEvent("E_SIP_MESSAGE", benchAttrs...))
	}
	checkFor(b, "warm-up confirmed", waitTimeout, func() bool { return statsOf(b, f).Confirmed == 10 })
}

// quantile returns the q-quantile of sorted durations (nearest rank).
func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted)) + 0.5)
	return sorted[min(max(i-1, 0), len(sorted)-1)]
}

func TestQuantile(t *testing.T) {
	d := []time.Duration{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	for _, tc := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 5}, {0.99, 10}, {0.1, 1}, {0, 1}, {1, 10}} {
		if got := quantile(d, tc.q); got != tc.want {
			t.Errorf("quantile(%v) = %v, want %v", tc.q, got, tc.want)
		}
	}
	if quantile(nil, 0.5) != 0 {
		t.Error("quantile of nothing")
	}
}
