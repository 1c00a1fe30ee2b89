// Command shaper is the seed's REQUESTSHAPER: a leaky bucket per source
// (the From domain by default, as the seed's key=$fd) computes how long each
// request must wait so that a source never exceeds --shape-rate requests per
// second; the request is parked that long with async.MsSleep and then looked
// up and relayed. No request is dropped; one that would wait longer than
// --max-delay is answered 503 with Retry-After.
//
//	go run ./examples/shaper --async-ms-timer 1 --shape-rate 250
//
// Every --report it logs how exactly the delays were kept: the p50, p99 and
// max of actual minus intended delay over the last interval ("shaper
// lateness") and since the start ("shaper lateness total", with the
// intended delays and the 503s beside it; benchmark scenario S5 reads it).
package main

import (
	"errors"
	"os"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/spf13/pflag"

	"github.com/sipasync/sipasync"
	"github.com/sipasync/sipasync/async"
	"github.com/sipasync/sipasync/routes"
	"github.com/sipasync/sipasync/sipproxy"
	"github.com/sipasync/sipasync/transaction"
)

// bucket is one source's leaky bucket: the time its next request may pass.
type bucket struct{ next time.Time }

// lateness collects actual − intended delay of released requests: the
// samples of the current report window, and a cumulative histogram of
// every request since the start (10 µs buckets up to 100 ms, exact above)
// with the intended delays beside it.
type lateness struct {
	mu       sync.Mutex
	d        []time.Duration
	total    histogram
	intended histogram
	early    int64 // released before the intended time
	rejected int64 // answered 503: the wait would exceed --max-delay
}

func (l *lateness) add(late, intended time.Duration) {
	l.mu.Lock()
	if len(l.d) < 1<<20 {
		l.d = append(l.d, late)
	}
	if late < 0 {
		l.early++
	}
	l.total.add(late)
	l.intended.add(intended)
	l.mu.Unlock()
}

func (l *lateness) reject() {
	l.mu.Lock()
	l.rejected++
	l.mu.Unlock()
}

func (l *lateness) take() []time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := l.d
	l.d = nil
	return out
}

// histogram counts durations in 10 µs buckets below 100 ms; longer ones
// are kept as they are (few: they are what the tail is made of).
type histogram struct {
	n       int64
	buckets [histBuckets]int64
	over    []time.Duration
	max     time.Duration
}

const (
	histWidth   = 10 * time.Microsecond
	histBuckets = int(100 * time.Millisecond / histWidth)
)

func (h *histogram) add(d time.Duration) {
	h.n++
	h.max = max(h.max, d)
	i := int(max(d, 0) / histWidth)
	if i >= histBuckets {
		if len(h.over) < 1<<20 {
			h.over = append(h.over, d)
		}
		return
	}
	h.buckets[i]++
}

// pct is the p-quantile (0..1): the upper edge of its bucket, or the exact
// value above 100 ms.
func (h *histogram) pct(p float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := int64(float64(h.n)*p + 0.5)
	rank = max(1, min(rank, h.n))
	var seen int64
	for i, c := range h.buckets {
		seen += c
		if seen >= rank {
			return time.Duration(i+1) * histWidth
		}
	}
	over := slices.Clone(h.over)
	slices.Sort(over)
	if k := int(rank - seen - 1); k >= 0 && k < len(over) {
		return over[k]
	}
	return h.max
}

func pct(s []time.Duration, p float64) time.Duration {
	if len(s) == 0 {
		return 0
	}
	return s[min(len(s)-1, int(float64(len(s))*p))]
}

func main() {
	var rate float64
	var maxDelay, report time.Duration
	var key string
	os.Exit(sipasync.Main("shaper", os.Args[1:], os.Stderr,
		func(fs *pflag.FlagSet) {
			fs.Float64Var(&rate, "shape-rate", 250, "requests per second let through per source")
			fs.DurationVar(&maxDelay, "max-delay", 30*time.Second, "longest wait; beyond it 503 (at most 30s, the async_ms_sleep limit)")
			fs.StringVar(&key, "shape-key", "from-domain", "what a source is: from-domain, from-user or source")
			fs.DurationVar(&report, "report", 10*time.Second, "how often the lateness summary is logged")
		},
		func(a *sipasync.Server) error {
			if rate <= 0 || maxDelay <= 0 || maxDelay > async.MaxMillis {
				return errors.New("--shape-rate must be > 0 and --max-delay within 1ms..30s")
			}
			a.Routes.ExpectMsTimer("the shaper (async.MsSleep)")
			interval := time.Duration(float64(time.Second) / rate)
			buckets := (&transaction.Shared{}).Table("shaper")
			late := &lateness{}
			go func() {
				var logged int64 = -1
				for range time.Tick(report) {
					s := late.take()
					if len(s) > 0 {
						slices.Sort(s)
						a.Log.Info("shaper lateness", "n", len(s), "p50_us", pct(s, .5).Microseconds(),
							"p99_us", pct(s, .99).Microseconds(), "max_us", s[len(s)-1].Microseconds())
					}
					late.mu.Lock()
					t, in := &late.total, &late.intended
					if t.n+late.rejected != logged {
						logged = t.n + late.rejected
						// Cumulative since the start (10 µs resolution).
						a.Log.Info("shaper lateness total", "n", t.n, "early", late.early,
							"rejected", late.rejected, "p50_us", t.pct(.5).Microseconds(),
							"p99_us", t.pct(.99).Microseconds(), "max_us", t.max.Microseconds(),
							"intended_p50_us", in.pct(.5).Microseconds(),
							"intended_p99_us", in.pct(.99).Microseconds(),
							"intended_max_us", in.max.Microseconds())
					}
					late.mu.Unlock()
				}
			}()
			sourceOf := func(c *routes.Context) string {
				req := c.Request()
				switch key {
				case "from-user":
					return sipproxy.FromUser(req)
				case "source":
					return req.Source()
				}
				if f := req.From(); f != nil {
					return f.Address.Host
				}
				return ""
			}
			return a.Routes.Request(a.Proxy.DefaultRoute(sipproxy.DefaultOptions{
				BeforeRelay: routes.HandlerFunc(func(c *routes.Context) error {
					now := time.Now()
					// route[REQUESTSHAPER]: the bucket says how long to wait.
					v := buckets.Update(sourceOf(c), func(old any, _ bool) any {
						b, _ := old.(bucket)
						if b.next.Before(now) {
							b.next = now
						}
						b.next = b.next.Add(interval)
						return b
					})
					delay := v.(bucket).next.Add(-interval).Sub(now).Round(time.Millisecond)
					if delay <= 0 {
						return nil // no delay: lookup and relay now
					}
					if delay > maxDelay {
						secs := strconv.Itoa(int(delay/time.Second) + 1)
						late.reject()
						return c.Reply(503, "Service Unavailable", sip.NewHeader("Retry-After", secs))
					}
					return async.MsSleep(c, delay, func(c *routes.Context) error {
						late.add(time.Since(now)-delay, delay)
						return a.Proxy.LookupRelay(c)
					})
				}),
			}))
		}))
}
