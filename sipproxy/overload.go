package sipproxy

import (
	"context"
	"hash/fnv"
	"log/slog"
	"math"
	"runtime/metrics"
	"sync/atomic"
	"time"

	"github.com/benbjohnson/clock"
)

// Overload control. Past its capacity a SIP proxy does not slow down
// gracefully: late answers bring retransmissions, which are more load, and
// the run collapses. Up to three signals say the proxy is behind:
//
//   - the queueing delay of UDP datagrams: the kernel stamps each datagram
//     on arrival (SO_TIMESTAMPNS) and the socket wrapper takes the time from
//     then to its read. As in CoDel, the minimum over a window is what
//     counts: bursts come and go, a standing queue keeps even the minimum
//     high;
//   - the Go run queue (goroutines ready to run and not running), averaged:
//     work taken and not done, on any transport;
//   - optionally the live heap (after the last GC): what the calls taken
//     hold, relays waiting on a slow callee included. It bounds memory
//     where the other two bound latency.
//
// Every window (100ms) the proxy compares them with their marks
// (OverloadConfig.Delay, .Runnable, .Heap): over any, the share of new
// requests it answers 503 with Retry-After grows by 1/8; under half of the
// delay and run-queue marks and three quarters of the heap mark it shrinks
// by 1/16. In-dialog requests, ACKs, CANCELs and responses always
// pass: they finish calls already taken. On UDP the 503 is written by the
// socket wrapper from the raw bytes, before sipgo parses them; on stream
// transports it is sent when the request reaches the proxy. Which calls are
// shed is decided by a hash of the Call-ID, so the retransmissions of a
// request get the same answer as the request while the share holds.

// Defaults of OverloadConfig.
const (
	DefaultOverloadDelay    = 100 * time.Millisecond
	DefaultOverloadRunnable = 4096
)

// OverloadConfig configures overload control (Config.Overload).
type OverloadConfig struct {
	// Delay is the queueing delay of UDP datagrams (the least over a
	// window) above which new requests are shed. 0 means
	// DefaultOverloadDelay; < 0 ignores the delay.
	Delay time.Duration
	// Runnable is the run-queue length, averaged, above which new requests
	// are shed. 0 means DefaultOverloadRunnable; < 0 ignores it. With both
	// ignored, overload control is off.
	Runnable int
	// Interval is the run-queue sampling period (0: 10ms); a window is ten
	// of them.
	Interval time.Duration
	// Sample reads the run-queue length; nil reads the Go runtime's
	// /sched/goroutines/runnable:goroutines. Tests set it.
	Sample func() int
	// Heap is the live heap, in bytes, above which new requests are shed;
	// 0 ignores it (the default). RSS settles at about twice it (GOGC=100).
	Heap uint64
	// HeapSample reads the live heap; nil reads the Go runtime's
	// /gc/heap/live:bytes. Tests set it.
	HeapSample func() uint64
}

// OverloadStats describe overload control now.
type OverloadStats struct {
	// Runnable is the averaged run-queue length at the last sample.
	Runnable float64
	// Delay is the least queueing delay of a UDP datagram in the last
	// window (0 when none came).
	Delay time.Duration
	// Heap is the live heap at the last window, when Heap is watched.
	Heap uint64
	// Shedding is the share of new requests answered 503 now (0 to 1).
	Shedding float64
}

const (
	overloadWeight = 0.125 // of a new run-queue sample in the average
	overloadWindow = 10    // samples per decision
	shedScale      = 1 << 16
	shedUp         = shedScale / 8
	shedDown       = shedScale / 16
	noDelay        = math.MaxInt64
)

type overload struct {
	high     float64       // run-queue mark (0: ignored)
	target   time.Duration // delay mark (0: ignored)
	interval time.Duration
	sample   func() int
	clock    clock.Clock
	log      *slog.Logger

	frac     atomic.Uint32 // shed share, in 1/shedScale
	avg      atomic.Uint64 // the averaged run queue ×1000
	winMin   atomic.Int64  // least delay seen in the current window, ns
	lastMin  atomic.Int64  // of the last window
	avgState float64       // run's goroutine only
	ticks    int

	heapMark   uint64 // live-heap mark (0: ignored)
	heapSample func() uint64
	heapLast   atomic.Uint64
}

func newOverload(cfg OverloadConfig, clk clock.Clock, log *slog.Logger) *overload {
	if cfg.Runnable < 0 && cfg.Delay < 0 && cfg.Heap == 0 {
		return nil
	}
	if cfg.Runnable == 0 {
		cfg.Runnable = DefaultOverloadRunnable
	}
	if cfg.Delay == 0 {
		cfg.Delay = DefaultOverloadDelay
	}
	if cfg.Interval <= 0 {
		cfg.Interval = 10 * time.Millisecond
	}
	o := &overload{interval: cfg.Interval, sample: cfg.Sample, clock: clk, log: log}
	if cfg.Runnable > 0 {
		o.high = float64(cfg.Runnable)
	}
	if cfg.Delay > 0 {
		o.target = cfg.Delay
	}
	if o.sample == nil {
		runnable := runtimeMetric("/sched/goroutines/runnable:goroutines")
		o.sample = func() int { return int(runnable()) }
	}
	if cfg.Heap > 0 {
		o.heapMark, o.heapSample = cfg.Heap, cfg.HeapSample
		if o.heapSample == nil {
			o.heapSample = runtimeMetric("/gc/heap/live:bytes")
		}
	}
	o.winMin.Store(noDelay)
	return o
}

// watchesDelay reports whether datagram delays are wanted.
func (o *overload) watchesDelay() bool { return o != nil && o.target > 0 }

// observe records one datagram's queueing delay.
func (o *overload) observe(d time.Duration) {
	if d < 0 {
		d = 0 // a clock step
	}
	n := int64(d)
	for {
		cur := o.winMin.Load()
		if n >= cur || o.winMin.CompareAndSwap(cur, n) {
			return
		}
	}
}

// runtimeMetric returns a reader of one of the runtime's uint64 metrics
// (no allocation per read): /sched/goroutines/runnable:goroutines (the
// runtime takes its scheduler lock briefly) or /gc/heap/live:bytes.
func runtimeMetric(name string) func() uint64 {
	s := []metrics.Sample{{Name: name}}
	return func() uint64 {
		metrics.Read(s)
		if s[0].Value.Kind() != metrics.KindUint64 {
			return 0
		}
		return s[0].Value.Uint64()
	}
}

// run samples until ctx ends.
func (o *overload) run(ctx context.Context) {
	t := o.clock.Ticker(o.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			o.frac.Store(0)
			return
		case <-t.C:
			o.tick()
		}
	}
}

// tick takes one run-queue sample; every overloadWindow samples it closes
// the delay window and moves the shed share.
func (o *overload) tick() {
	o.avgState = o.avgState*(1-overloadWeight) + float64(o.sample())*overloadWeight
	o.avg.Store(uint64(o.avgState * 1000))
	if o.ticks++; o.ticks%overloadWindow != 0 {
		return
	}
	m := o.winMin.Swap(noDelay)
	delay := time.Duration(0)
	if m != noDelay {
		delay = time.Duration(m)
	}
	o.lastMin.Store(int64(delay))
	avg := o.avgState
	var heap uint64
	if o.heapMark > 0 {
		heap = o.heapSample()
		o.heapLast.Store(heap)
	}
	over := (o.target > 0 && delay > o.target) || (o.high > 0 && avg > o.high) ||
		(o.heapMark > 0 && heap > o.heapMark)
	under := (o.target == 0 || delay < o.target/2) && (o.high == 0 || avg < o.high/2) &&
		(o.heapMark == 0 || heap < o.heapMark/4*3)
	f := o.frac.Load()
	switch {
	case over:
		o.frac.Store(min(f+shedUp, shedScale))
		if f == 0 {
			o.log.Warn("overload: shedding new requests (503)", "delay", delay, "runnable", int(avg),
				"heap", heap, "delay_mark", o.target, "runnable_mark", int(o.high), "heap_mark", o.heapMark)
		}
	case under && f > 0:
		nf := uint32(0)
		if f > shedDown {
			nf = f - shedDown
		}
		o.frac.Store(nf)
		if nf == 0 {
			o.log.Info("overload: no longer shedding", "delay", delay, "runnable", int(avg), "heap", heap)
		}
	}
}

// stats reports the state for metrics.
func (o *overload) stats() OverloadStats {
	if o == nil {
		return OverloadStats{}
	}
	return OverloadStats{Runnable: float64(o.avg.Load()) / 1000, Delay: time.Duration(o.lastMin.Load()),
		Shedding: float64(o.frac.Load()) / shedScale, Heap: o.heapLast.Load()}
}

// shedding reports whether any request may be shed now.
func (o *overload) shedding() bool { return o != nil && o.frac.Load() > 0 }

// shed reports whether a new request with this Call-ID is to be refused.
func (o *overload) shed(callID []byte) bool {
	f := o.frac.Load()
	if f == 0 {
		return false
	}
	if f >= shedScale {
		return true
	}
	h := fnv.New32a()
	_, _ = h.Write(callID)
	return h.Sum32()%shedScale < f
}

// OverloadStats returns overload control's state (zero when it is off).
func (p *Proxy) OverloadStats() OverloadStats { return p.overload.stats() }
