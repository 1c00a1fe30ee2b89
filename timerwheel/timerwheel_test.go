package timerwheel

import (
	"context"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/benbjohnson/clock"
)

func TestNewOptions(t *testing.T) {
	noop := func(int) {}
	for _, tc := range []struct {
		name string
		opts Options[int]
		err  error
	}{
		{"zero tick", Options[int]{Dispatch: noop}, ErrTick},
		{"tick below 1ms", Options[int]{Tick: 999 * time.Microsecond, Dispatch: noop}, ErrTick},
		{"tick 1ms", Options[int]{Tick: ms, Dispatch: noop}, nil},
		{"tick 1s", Options[int]{Tick: time.Second, Dispatch: noop}, nil},
		{"tick above 1s", Options[int]{Tick: time.Second + 1, Dispatch: noop}, ErrTick},
		{"no dispatch", Options[int]{Tick: ms}, ErrNoDispatch},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, err := New(tc.opts)
			isErr(t, err, tc.err)
			if err == nil {
				equal(t, w.Tick(), tc.opts.Tick, "tick")
				equal(t, len(w.Stop()), 0, "pending")
			}
		})
	}
}

func TestAddErrors(t *testing.T) {
	w, _, _ := newTestWheel[int](t, ms, numLevels)
	_, err := w.Add(-1, 0)
	isErr(t, err, ErrDelay)
	_, err = w.Add(MaxDelay+1, 0)
	isErr(t, err, ErrDelay)
	_, err = w.AddAt(epoch.Add(MaxDelay+2*ms), 0)
	isErr(t, err, ErrDelay)
	_, err = w.Add(MaxDelay, 0)
	must(t, err)
	w.maxPending = 2
	_, err = w.Add(ms, 1)
	must(t, err)
	_, err = w.Add(ms, 2)
	isErr(t, err, ErrFull)
	w.Stop()
	_, err = w.Add(ms, 3)
	isErr(t, err, ErrStopped)
	_, err = w.AddAt(epoch, 3)
	isErr(t, err, ErrStopped)
}

// An item fires on the first tick boundary at or after its deadline: never
// before, and less than one tick after.
func TestFiresOnFirstTickAtOrAfterDeadline(t *testing.T) {
	w, clk, rec := newTestWheel[string](t, 10*ms, numLevels)
	clk.set(3 * ms)
	_, err := w.Add(20*ms, "a") // deadline 23ms: tick 3 (30ms)
	must(t, err)
	_, err = w.AddAt(epoch.Add(40*ms), "b") // on a boundary: tick 4
	must(t, err)
	_, err = w.AddAt(epoch.Add(-time.Hour), "past") // due on the next tick
	must(t, err)

	steps := []struct {
		now  time.Duration
		want []string
	}{
		{9 * ms, nil},
		{10 * ms, []string{"past"}},
		{29 * ms, nil},
		{30 * ms, []string{"a"}},
		{39 * ms, nil},
		{49 * ms, []string{"b"}},
	}
	for _, s := range steps {
		equal(t, w.Advance(clk.set(s.now)), len(s.want), "fired at "+s.now.String())
		equalSlice(t, rec.take(), s.want, "fired at "+s.now.String())
	}
	equal(t, w.Len(), 0, "pending")

	_, err = w.Add(0, "now") // zero delay: the next tick
	must(t, err)
	equal(t, w.Advance(clk.set(50*ms)), 1, "fired")
	equalSlice(t, rec.take(), []string{"now"}, "fired")
}

func TestCancel(t *testing.T) {
	w, clk, rec := newTestWheel[int](t, ms, numLevels)
	check(t, !w.Cancel(Handle{}), "zero handle cancelled")
	h1, _ := w.Add(5*ms, 1)
	h2, _ := w.Add(5*ms, 2)
	h3, _ := w.Add(time.Hour, 3)
	check(t, w.Cancel(h2), "cancel failed")
	check(t, !w.Cancel(h2), "cancelled twice")
	check(t, w.Cancel(h3), "cancel failed")
	w.Advance(clk.set(5 * ms))
	equalSlice(t, rec.take(), []int{1}, "fired")
	check(t, !w.Cancel(h1), "cancelled after it fired")

	// The freed nodes are reused: old handles must not cancel new items.
	h4, _ := w.Add(5*ms, 4)
	h5, _ := w.Add(5*ms, 5)
	check(t, slices.Contains([]int32{h1.idx, h2.idx, h3.idx}, h4.idx), "node not reused")
	for _, old := range []Handle{h1, h2, h3} {
		check(t, !w.Cancel(old), "stale handle cancelled")
	}
	equal(t, w.Len(), 2, "pending")
	check(t, w.Cancel(h5), "cancel failed")
	w.Advance(clk.set(time.Second))
	equalSlice(t, rec.take(), []int{4}, "fired")
	equal(t, w.Stats(), Stats{Added: 5, Fired: 2, Cancelled: 3, LateTicks: 4 + 994}, "stats")
}

// After a late tick every overdue item fires, in deadline order at tick
// granularity, across all levels and the overflow list; nothing not yet due.
func TestLateTickCatchUp(t *testing.T) {
	for _, levels := range []int{numLevels, 1} {
		w, clk, rec := newTestWheel[int64](t, ms, levels)
		rng := rand.New(rand.NewPCG(1, uint64(levels)))
		const n = 20_000
		for range n {
			d := time.Duration(rng.Int64N(int64(20 * time.Minute)))
			_, err := w.Add(d, w.ceilTicks(d)) // value: its due tick (0 is due at 1)
			must(t, err)
		}
		// Ticks on time up to 2 s, then the process stalls for 10 minutes.
		for i := 1; i <= 2000; i++ {
			w.Advance(clk.set(time.Duration(i) * ms))
		}
		early := rec.take()
		check(t, slices.IsSorted(early), "not in deadline order")
		check(t, early[len(early)-1] <= 2000, "fired early")
		equal(t, w.Stats().LateTicks, 0, "late ticks")

		fired := w.Advance(clk.set(10*time.Minute + 2*time.Second))
		late := rec.take()
		equal(t, len(late), fired, "fired")
		check(t, slices.IsSorted(late), "catch-up not in deadline order")
		check(t, late[0] > 2000, "fired twice")
		check(t, late[len(late)-1] <= 602_000, "fired early")
		equal(t, w.Stats().LateTicks, 599_999, "late ticks")

		rest := w.Stop()
		check(t, slices.IsSorted(rest), "Stop: not in deadline order")
		check(t, rest[0] > 602_000, "Stop returned an item due")
		equal(t, len(early)+len(late)+len(rest), n, "items accounted for")
	}
}

// A deadline beyond the wheel's range waits in the overflow list and fires on
// time, not when the range wraps.
func TestOverflow(t *testing.T) {
	w, clk, rec := newTestWheel[string](t, ms, 1) // range 256 ticks
	_, err := w.Add(10_000*ms+ms/2, "far")
	must(t, err)
	_, err = w.Add(256*ms*50, "wrap")
	must(t, err)
	equal(t, w.Stats().Overflowed, 2, "overflowed")
	for i := 1; i <= 10_000; i++ {
		w.Advance(clk.set(time.Duration(i) * ms))
	}
	equal(t, len(rec.take()), 0, "fired early")
	w.Advance(clk.set(10_001 * ms))
	equalSlice(t, rec.take(), []string{"far"}, "fired")
	w.Advance(clk.set(256*ms*50 - 1))
	equal(t, len(rec.take()), 0, "fired early")
	w.Advance(clk.set(256 * ms * 50))
	equalSlice(t, rec.take(), []string{"wrap"}, "fired")
}

// Dispatch runs without the lock: it may Add, Cancel and Stop. A tick with
// more due items than one batch releases the lock between batches; an item
// cancelled in between is not dispatched.
func TestDispatchMayCallWheel(t *testing.T) {
	clk := &fakeClock{}
	var w *Wheel[int]
	var handles []Handle
	var got []int
	cancelled, left := 0, -1
	dispatch := func(v int) {
		got = append(got, v)
		if len(got) == 1 { // the first batch is collected, the rest is not
			for _, h := range handles {
				if w.Cancel(h) {
					cancelled++
				}
			}
			if _, err := w.Add(ms, -1); err != nil {
				t.Error(err)
			}
		}
		if v == -1 {
			left = len(w.Stop())
		}
	}
	w, err := New(Options[int]{Tick: ms, Clock: clk, Dispatch: dispatch})
	must(t, err)
	const n = 3 * batchSize
	for i := range n {
		h, err := w.Add(ms, i)
		must(t, err)
		handles = append(handles, h)
	}
	_, err = w.Add(time.Hour, n)
	must(t, err)
	equal(t, w.Advance(clk.set(ms)), batchSize, "fired")
	equal(t, cancelled, 2*batchSize, "cancelled from Dispatch")
	equal(t, w.Advance(clk.set(2*ms)), 1, "fired")
	equal(t, got[len(got)-1], -1, "added from Dispatch")
	equal(t, left, 1, "left at Stop from Dispatch")
	_, err = w.Add(ms, 0)
	isErr(t, err, ErrStopped)
}

// A Dispatch that panics loses nothing and repeats nothing: the next Advance
// dispatches the rest of the batch.
func TestDispatchPanic(t *testing.T) {
	clk := &fakeClock{}
	var got []int
	w, err := New(Options[int]{Tick: ms, Clock: clk, Dispatch: func(v int) {
		got = append(got, v)
		if len(got) == 3 {
			panic("boom")
		}
	}})
	must(t, err)
	for i := range 5 {
		_, err := w.AddAt(epoch.Add(ms), i)
		must(t, err)
	}
	func() {
		defer func() { check(t, recover() != nil, "no panic") }()
		w.Advance(clk.set(ms))
	}()
	equal(t, w.Advance(clk.set(ms)), 2, "fired after the panic")
	slices.Sort(got)
	equalSlice(t, got, []int{0, 1, 2, 3, 4}, "fired")
}

// Many goroutines add and cancel while another advances (run with -race):
// every item ends exactly once, fired or cancelled.
func TestConcurrentAddCancelAdvance(t *testing.T) {
	const workers, perWorker = 4, 20_000
	const pending, fired, cancelled = 0, 1, 2
	clk := &fakeClock{}
	state := make([]atomic.Int32, workers*perWorker)
	var bad atomic.Int64
	w, err := New(Options[int32]{Tick: ms, Clock: clk, Dispatch: func(id int32) {
		if !state[id].CompareAndSwap(pending, fired) {
			bad.Add(1)
		}
	}})
	must(t, err)

	ctx, stop := context.WithCancel(context.Background())
	var ticker sync.WaitGroup
	ticker.Go(func() {
		for ctx.Err() == nil {
			w.Advance(clk.add(ms))
			_ = w.Stats()
		}
	})
	var wg sync.WaitGroup
	for g := range workers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(g), 7))
			hs := make([]Handle, perWorker)
			for k := range perWorker {
				id := int32(g*perWorker + k)
				var err error
				if k%2 == 0 {
					hs[k], err = w.Add(time.Duration(rng.IntN(100))*ms, id)
				} else {
					hs[k], err = w.AddAt(clk.Now().Add(time.Duration(rng.IntN(100))*ms), id)
				}
				if err != nil {
					bad.Add(1)
				}
				if j := rng.IntN(k + 1); rng.IntN(2) == 0 && w.Cancel(hs[j]) {
					if !state[g*perWorker+j].CompareAndSwap(pending, cancelled) {
						bad.Add(1)
					}
				}
				_ = w.Len()
			}
		})
	}
	wg.Wait()
	stop()
	ticker.Wait()
	w.Advance(clk.add(time.Second))
	equal(t, len(w.Stop()), 0, "left at Stop")
	equal(t, bad.Load(), 0, "items fired twice, after a cancel, or not added")

	var nf, nc uint64
	for i := range state {
		switch state[i].Load() {
		case fired:
			nf++
		case cancelled:
			nc++
		default:
			t.Fatalf("item %d neither fired nor cancelled", i)
		}
	}
	st := w.Stats()
	equal(t, st.Added, workers*perWorker, "added")
	equal(t, st.Fired, nf, "fired")
	equal(t, st.Cancelled, nc, "cancelled")
	check(t, nc > 0 && nf > 0, "fired %d, cancelled %d", nf, nc)
}

// Run ticks from the injected clock and ends on Stop or when its context is
// done.
func TestRun(t *testing.T) {
	mock := clock.NewMock()
	type fire struct {
		v  string
		at time.Time
	}
	fires := make(chan fire, 10)
	w, err := New(Options[string]{Tick: 10 * ms, Clock: mock, Dispatch: func(v string) {
		fires <- fire{v, mock.Now()}
	}})
	must(t, err)
	mock.Add(3 * ms) // Run starts off a tick boundary
	deadline := mock.Now().Add(25 * ms)
	_, err = w.AddAt(deadline, "x")
	must(t, err)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	var f fire
wait:
	for i := 0; ; i++ {
		check(t, i < 1000, "never fired")
		select {
		case f = <-fires:
			break wait
		default:
			mock.Add(ms)
		}
	}
	equal(t, f.v, "x", "fired")
	check(t, !f.at.Before(deadline), "fired at %v, before %v", f.at, deadline)
	cancel()
	isErr(t, <-done, context.Canceled)

	go func() { done <- w.Run(context.Background()) }()
	_, err = w.Add(time.Hour, "left")
	must(t, err)
	equalSlice(t, w.Stop(), []string{"left"}, "left at Stop")
	isErr(t, <-done, ErrStopped)
	isErr(t, w.Run(context.Background()), ErrStopped)
}
