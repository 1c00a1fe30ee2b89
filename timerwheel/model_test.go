package timerwheel

import (
	"container/heap"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// TestRandomizedAgainstModel drives a wheel and a reference model with the
// same random adds (Add and AddAt, past deadlines, delays from 0 to
// MaxDelay), cancels (live, fired and cancelled handles), re-adds from
// Dispatch and advances (one tick, a few, or a jump of hours: catch-up). At
// each Advance the wheel must dispatch exactly the live items due by then,
// in deadline order at tick granularity and never before their deadline;
// each item fires once or is cancelled, and Stop returns what is left.
func TestRandomizedAgainstModel(t *testing.T) {
	for _, tc := range []struct {
		tick   time.Duration
		levels int
		items  int
	}{
		{ms, numLevels, 200_000},
		{ms, 2, 200_000}, // 65,536-tick range: many items pass the overflow list
		{ms, 1, 50_000},  // 256-tick range: most do
		{7 * ms, numLevels, 50_000},
		{time.Second, 2, 50_000},
	} {
		t.Run(fmt.Sprintf("tick=%v/levels=%d/items=%d", tc.tick, tc.levels, tc.items), func(t *testing.T) {
			runModel(t, tc.tick, tc.levels, tc.items, uint64(tc.tick)+uint64(tc.levels))
		})
	}
}

const (
	live = iota
	fired
	cancelled
	returned // by Stop
)

type modelItem struct {
	e        int64     // due tick
	deadline time.Time // never fire before
	h        Handle
	state    int
	livePos  int // index in model.live while live
}

type model struct {
	tick  time.Duration
	items []modelItem
	live  []int32 // ids of live items, for picking cancels
	due   dueHeap // live (and lazily, dead) ids by due tick
	cur   int64   // last tick advanced to
	late  uint64
}

func (m *model) add(deadline time.Time, h Handle) int32 {
	e := max(ceilDiv(deadline.Sub(epoch), m.tick), m.cur+1)
	id := int32(len(m.items))
	m.items = append(m.items, modelItem{e: e, deadline: deadline, h: h, livePos: len(m.live)})
	m.live = append(m.live, id)
	heap.Push(&m.due, dueEntry{e, id})
	return id
}

func (m *model) end(id int32, state int) {
	it := &m.items[id]
	last := m.live[len(m.live)-1]
	m.live[it.livePos] = last
	m.items[last].livePos = it.livePos
	m.live = m.live[:len(m.live)-1]
	it.state = state
}

func ceilDiv(d, tick time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d-1)/tick) + 1
}

func runModel(t *testing.T, tick time.Duration, levels, n int, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 42))
	clk := &fakeClock{}
	m := &model{tick: tick}
	var got []int32
	var w *Wheel[int32]
	var readd []time.Duration // delays of items to re-add from Dispatch
	w, err := newWheel(Options[int32]{Tick: tick, Clock: clk, Dispatch: func(id int32) {
		got = append(got, id)
		if len(m.items) < n && rng.IntN(8) == 0 {
			// Re-add, as a resumed route may park again. At least one tick
			// ahead, so it is not due in this Advance.
			d := tick + time.Duration(rng.Int64N(int64(100*tick)))
			h, err := w.Add(d, int32(len(m.items)))
			if err != nil {
				t.Fatal(err)
			}
			readd = append(readd, d)
			m.add(clk.Now().Add(d), h)
		}
	}}, levels)
	must(t, err)

	delay := func() time.Duration {
		var max time.Duration
		switch r := rng.IntN(100); {
		case r < 30:
			max = 70 * tick
		case r < 60:
			max = 5000 * tick
		case r < 80:
			max = 300_000 * tick
		case r < 97:
			max = 20_000_000 * ms
		default:
			max = MaxDelay
		}
		return time.Duration(rng.Int64N(int64(max) + 1))
	}
	advance := func(now time.Duration) {
		at := clk.set(now)
		target := int64(now / tick)
		if target > m.cur+1 {
			m.late += uint64(target - m.cur - 1)
		}
		got, readd = got[:0], readd[:0]
		nf := w.Advance(at)
		equal(t, nf, len(got), "Advance's count")
		for k, id := range got {
			it := &m.items[id]
			if it.state != live {
				t.Fatalf("item %d dispatched in state %d", id, it.state)
			}
			if it.e > target || it.deadline.After(at) {
				t.Fatalf("item %d (tick %d, deadline %v) fired early at tick %d (%v)", id, it.e, it.deadline, target, at)
			}
			if k > 0 && m.items[got[k-1]].e > it.e {
				t.Fatalf("item %d (tick %d) fired after item %d (tick %d)", id, it.e, got[k-1], m.items[got[k-1]].e)
			}
			m.end(id, fired)
		}
		// Every live item due by target must have fired now.
		for m.due.Len() > 0 && m.due[0].e <= target {
			id := heap.Pop(&m.due).(dueEntry).id
			if m.items[id].state == live {
				t.Fatalf("item %d (tick %d) not fired by tick %d", id, m.items[id].e, target)
			}
		}
		m.cur = max(m.cur, target)
	}

	var now time.Duration
	for len(m.items) < n {
		switch r := rng.IntN(100); {
		case r < 45: // a burst of adds
			for range 1 + rng.IntN(20) {
				id := int32(len(m.items))
				if rng.IntN(2) == 0 {
					d := delay()
					h, err := w.Add(d, id)
					must(t, err)
					m.add(clk.Now().Add(d), h)
				} else {
					dl := clk.Now().Add(delay() - 3*tick) // some in the past
					h, err := w.AddAt(dl, id)
					must(t, err)
					m.add(dl, h)
				}
			}
		case r < 60: // cancels: mostly live items, some ended ones
			for range 1 + rng.IntN(5) {
				var id int32
				if len(m.live) > 0 && rng.IntN(4) > 0 {
					id = m.live[rng.IntN(len(m.live))]
				} else {
					id = int32(rng.IntN(len(m.items) + 1))
					if int(id) == len(m.items) {
						check(t, !w.Cancel(Handle{}), "zero handle cancelled")
						continue
					}
				}
				it := &m.items[id]
				ok := w.Cancel(it.h)
				equal(t, ok, it.state == live, fmt.Sprintf("Cancel of item %d in state %d", id, it.state))
				if ok {
					m.end(id, cancelled)
				}
			}
		default: // time passes
			switch r := rng.IntN(100); {
			case r < 70: // on time
				now += tick
			case r < 85: // jitter inside a tick
				now += time.Duration(rng.Int64N(int64(2 * tick)))
			case r < 98: // a little late
				now += time.Duration(rng.Int64N(int64(100 * tick)))
			default: // stalled
				now += time.Duration(rng.Int64N(int64(time.Duration(1_000_000) * tick)))
			}
			advance(now)
		}
	}
	equal(t, w.Len(), len(m.live), "Len")

	// Drain: run to the last deadline (jumping ahead) but leave a tail for Stop.
	last := slices.MaxFunc(m.items, func(a, b modelItem) int { return int(a.e - b.e) }).e
	for len(m.live) > 100 {
		now += time.Duration(rng.Int64N(int64(time.Duration(last-m.cur)*tick/50))) + tick
		advance(now)
	}
	left := w.Stop()
	equal(t, len(left), len(m.live), "left at Stop")
	for k, id := range left {
		check(t, m.items[id].state == live, "Stop returned item %d in state %d", id, m.items[id].state)
		check(t, k == 0 || m.items[left[k-1]].e <= m.items[id].e, "Stop: not in deadline order")
		m.end(id, returned)
	}
	var st Stats
	for _, it := range m.items {
		switch it.state {
		case fired:
			st.Fired++
		case cancelled:
			st.Cancelled++
		case live:
			t.Fatal("item left live")
		}
	}
	got2 := w.Stats()
	equal(t, got2.Added, uint64(len(m.items)), "added")
	equal(t, got2.Fired, st.Fired, "fired")
	equal(t, got2.Cancelled, st.Cancelled, "cancelled")
	equal(t, got2.LateTicks, m.late, "late ticks")
	equal(t, got2.Pending, 0, "pending after Stop")
	t.Logf("items %d: fired %d, cancelled %d, left at Stop %d, overflowed %d, late ticks %d",
		len(m.items), st.Fired, st.Cancelled, len(left), got2.Overflowed, got2.LateTicks)
}

type dueEntry struct {
	e  int64
	id int32
}

type dueHeap []dueEntry

func (h dueHeap) Len() int { return len(h) }
func (h dueHeap) Less(i, j int) bool {
	return h[i].e < h[j].e || h[i].e == h[j].e && h[i].id < h[j].id
}
func (h dueHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *dueHeap) Push(x any)   { *h = append(*h, x.(dueEntry)) }
func (h *dueHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
