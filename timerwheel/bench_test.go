package timerwheel

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"
)

// The benchmarks compare the wheel with time.AfterFunc, a binary heap and a
// sorted list (Kamailio's async ms timer list), each holding `pending`
// timers due in 1 to 2 hours (so that none fires during the run). Every
// implementation is safe for concurrent use and reads the clock on each add,
// as the wheel does. The value is an 8-byte resume token.
//
//	impl=wheel-addat  the wheel's AddAt, given a deadline the caller computed
//	                  from a time it already has (no clock read)
//	op=add        the cost of one add (cancels of each batch run untimed)
//	op=addcancel  an add and its cancel
//	B/pending     live heap per pending timer, after GC
//
// BenchmarkFire measures expiry: rounds of `pending` items due over the next
// 30 s (the MsRoute range), fired by 1 ms Advance steps (the heap pops what
// is due at each step); ns/op is per fired item.

type token struct{ index, label uint32 }

var benchDelays = func() []time.Duration {
	rng := rand.New(rand.NewPCG(1, 2))
	d := make([]time.Duration, 1<<16)
	for i := range d {
		d[i] = time.Hour + time.Duration(rng.IntN(3_600_000))*time.Millisecond
	}
	return d
}()

const delayMask = 1<<16 - 1

// addBatch is how many timed adds run between untimed cancels: small enough
// to keep the pending count within 1/8 of n.
func addBatch(n int) int { return min(1024, n/8) }

func liveHeap() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// perPending returns what fill returns and the live heap it added per
// pending timer (to report after the timed loop: ResetTimer drops metrics).
func perPending[I any](n int, fill func() I) (I, float64) {
	before := liveHeap()
	im := fill()
	after := liveHeap()
	return im, float64(after-before) / float64(n)
}

func BenchmarkTimers(b *testing.B) {
	for _, op := range []string{"add", "addcancel"} {
		for _, impl := range []string{"wheel", "wheel-addat", "afterfunc", "heap", "sortedlist"} {
			for _, n := range []int{1000, 100_000, 1_000_000} {
				if impl == "sortedlist" && n > 100_000 {
					continue // minutes per run; the trend is clear at 100,000
				}
				b.Run(fmt.Sprintf("op=%s/impl=%s/pending=%d", op, impl, n), func(b *testing.B) {
					switch impl {
					case "wheel":
						benchWheel(b, op, n, false)
					case "wheel-addat":
						benchWheel(b, op, n, true)
					case "afterfunc":
						benchAfterFunc(b, op, n)
					case "heap":
						benchHeap(b, op, n)
					case "sortedlist":
						benchSortedList(b, op, n)
					}
				})
			}
		}
	}
}

// benchWheel measures Add, or with at AddAt of a deadline computed from a
// time the caller already has (as the transaction table does when it parks).
func benchWheel(b *testing.B, op string, n int, at bool) {
	w, bpp := perPending(n, func() *Wheel[token] {
		w, err := New(Options[token]{Tick: time.Millisecond, Dispatch: func(token) {}})
		if err != nil {
			b.Fatal(err)
		}
		for i := range n {
			w.Add(benchDelays[i&delayMask], token{uint32(i), 1})
		}
		return w
	})
	tok := token{1, 2}
	start := time.Now()
	b.ResetTimer()
	switch op {
	case "add":
		batch := addBatch(n)
		hs := make([]Handle, batch)
		for i := 0; i < b.N; i += batch {
			k := min(batch, b.N-i)
			for j := range k {
				if at {
					hs[j], _ = w.AddAt(start.Add(benchDelays[(i+j)&delayMask]), tok)
				} else {
					hs[j], _ = w.Add(benchDelays[(i+j)&delayMask], tok)
				}
			}
			b.StopTimer()
			for _, h := range hs[:k] {
				w.Cancel(h)
			}
			b.StartTimer()
		}
	case "addcancel":
		for i := range b.N {
			var h Handle
			if at {
				h, _ = w.AddAt(start.Add(benchDelays[i&delayMask]), tok)
			} else {
				h, _ = w.Add(benchDelays[i&delayMask], tok)
			}
			w.Cancel(h)
		}
	}
	b.StopTimer()
	b.ReportMetric(bpp, "B/pending")
	if w.Len() != n {
		b.Fatalf("pending %d, want %d", w.Len(), n)
	}
	w.Stop()
}

func benchAfterFunc(b *testing.B, op string, n int) {
	var fired sync.WaitGroup // counts timers that fire (none should)
	dispatch := func(token) { fired.Add(1) }
	ts, bpp := perPending(n, func() []*time.Timer {
		ts := make([]*time.Timer, n)
		for i := range ts {
			tok := token{uint32(i), 1}
			ts[i] = time.AfterFunc(benchDelays[i&delayMask], func() { dispatch(tok) })
		}
		return ts
	})
	tok := token{1, 2}
	b.ResetTimer()
	switch op {
	case "add":
		batch := addBatch(n)
		hs := make([]*time.Timer, batch)
		for i := 0; i < b.N; i += batch {
			k := min(batch, b.N-i)
			for j := range k {
				hs[j] = time.AfterFunc(benchDelays[(i+j)&delayMask], func() { dispatch(tok) })
			}
			b.StopTimer()
			for _, t := range hs[:k] {
				t.Stop()
			}
			b.StartTimer()
		}
	case "addcancel":
		for i := range b.N {
			t := time.AfterFunc(benchDelays[i&delayMask], func() { dispatch(tok) })
			t.Stop()
		}
	}
	b.StopTimer()
	b.ReportMetric(bpp, "B/pending")
	for _, t := range ts {
		t.Stop()
	}
}

func benchHeap(b *testing.B, op string, n int) {
	h, bpp := perPending(n, func() *heapTimers {
		h := &heapTimers{base: time.Now()}
		for i := range n {
			h.add(benchDelays[i&delayMask], token{uint32(i), 1})
		}
		return h
	})
	tok := token{1, 2}
	b.ResetTimer()
	switch op {
	case "add":
		batch := addBatch(n)
		hs := make([]Handle, batch)
		for i := 0; i < b.N; i += batch {
			k := min(batch, b.N-i)
			for j := range k {
				hs[j] = h.add(benchDelays[(i+j)&delayMask], tok)
			}
			b.StopTimer()
			for _, hd := range hs[:k] {
				h.cancel(hd)
			}
			b.StartTimer()
		}
	case "addcancel":
		for i := range b.N {
			h.cancel(h.add(benchDelays[i&delayMask], tok))
		}
	}
	b.StopTimer()
	b.ReportMetric(bpp, "B/pending")
	if len(h.heap) != n {
		b.Fatalf("pending %d, want %d", len(h.heap), n)
	}
}

func benchSortedList(b *testing.B, op string, n int) {
	l, bpp := perPending(n, func() *sortedList {
		l := newSortedList()
		l.fill(n)
		return l
	})
	tok := token{1, 2}
	b.ResetTimer()
	switch op {
	case "add":
		batch := addBatch(n)
		hs := make([]*listNode, batch)
		for i := 0; i < b.N; i += batch {
			k := min(batch, b.N-i)
			for j := range k {
				hs[j] = l.add(benchDelays[(i+j)&delayMask], tok)
			}
			b.StopTimer()
			for _, nd := range hs[:k] {
				l.cancel(nd)
			}
			b.StartTimer()
		}
	case "addcancel":
		for i := range b.N {
			l.cancel(l.add(benchDelays[i&delayMask], tok))
		}
	}
	b.StopTimer()
	b.ReportMetric(bpp, "B/pending")
	if l.n != n {
		b.Fatalf("pending %d, want %d", l.n, n)
	}
}

func BenchmarkFire(b *testing.B) {
	for _, impl := range []string{"wheel", "heap"} {
		for _, n := range []int{100_000, 1_000_000} {
			b.Run(fmt.Sprintf("impl=%s/pending=%d", impl, n), func(b *testing.B) {
				benchFire(b, impl, n)
			})
		}
	}
}

// benchFire fires rounds of n items due over the next 30 s, in 1 ms steps.
func benchFire(b *testing.B, impl string, n int) {
	const span = 30_000 // ticks of 1 ms
	fired := 0
	dispatch := func(token) { fired++ }
	w, err := New(Options[token]{Tick: time.Millisecond, Clock: &fakeClock{}, Dispatch: dispatch})
	if err != nil {
		b.Fatal(err)
	}
	h := &heapTimers{base: epoch}
	rng := rand.New(rand.NewPCG(3, 4))
	var now time.Duration
	b.ResetTimer()
	for fired < b.N {
		b.StopTimer()
		for i := range n {
			at := now + time.Duration(1+rng.IntN(span))*time.Millisecond
			if impl == "wheel" {
				w.AddAt(epoch.Add(at), token{uint32(i), 1})
			} else {
				h.addAt(at, token{uint32(i), 1})
			}
		}
		b.StartTimer()
		for range span {
			now += time.Millisecond
			if impl == "wheel" {
				w.Advance(epoch.Add(now))
			} else {
				h.advance(now, dispatch)
			}
		}
	}
	b.StopTimer()
	if w.Len() != 0 || len(h.heap) != 0 {
		b.Fatal("items left")
	}
	el := b.Elapsed()
	b.ReportMetric(float64(el.Nanoseconds())/float64(fired), "ns/op")
	b.ReportMetric(float64(fired)/el.Seconds(), "fires/s")
	w.Stop()
}

// heapTimers is a binary min-heap of deadlines over a slab, with positions
// for O(log n) cancel: the usual alternative to a wheel.
type heapTimers struct {
	mu    sync.Mutex
	base  time.Time
	nodes []heapNode
	free  []int32
	heap  []int32
	due   []token
}

type heapNode struct {
	at  time.Duration
	gen uint32
	pos int32
	v   token
}

func (h *heapTimers) add(d time.Duration, v token) Handle {
	return h.addAt(time.Since(h.base)+d, v)
}

func (h *heapTimers) addAt(at time.Duration, v token) Handle {
	h.mu.Lock()
	var i int32
	if k := len(h.free); k > 0 {
		i = h.free[k-1]
		h.free = h.free[:k-1]
	} else {
		i = int32(len(h.nodes))
		h.nodes = append(h.nodes, heapNode{})
	}
	n := &h.nodes[i]
	n.gen++
	n.at, n.v, n.pos = at, v, int32(len(h.heap))
	h.heap = append(h.heap, i)
	h.up(int(n.pos))
	hd := Handle{i, n.gen}
	h.mu.Unlock()
	return hd
}

func (h *heapTimers) cancel(hd Handle) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if int(hd.idx) >= len(h.nodes) || h.nodes[hd.idx].gen != hd.gen || hd.gen&1 == 0 {
		return false
	}
	n := &h.nodes[hd.idx]
	p, last := int(n.pos), len(h.heap)-1
	if p != last {
		h.swap(p, last)
	}
	h.heap = h.heap[:last]
	if p != last {
		h.down(p)
		h.up(p)
	}
	n.gen++
	n.v = token{}
	h.free = append(h.free, hd.idx)
	return true
}

// advance pops the timers due by now, then dispatches them off the lock.
func (h *heapTimers) advance(now time.Duration, dispatch func(token)) {
	h.mu.Lock()
	for len(h.heap) > 0 && h.nodes[h.heap[0]].at <= now {
		i := h.heap[0]
		last := len(h.heap) - 1
		h.swap(0, last)
		h.heap = h.heap[:last]
		h.down(0)
		n := &h.nodes[i]
		h.due = append(h.due, n.v)
		n.gen++
		n.v = token{}
		h.free = append(h.free, i)
	}
	due := h.due
	h.mu.Unlock()
	for _, v := range due {
		dispatch(v)
	}
	h.due = due[:0]
}

func (h *heapTimers) less(a, b int) bool { return h.nodes[h.heap[a]].at < h.nodes[h.heap[b]].at }

func (h *heapTimers) swap(a, b int) {
	h.heap[a], h.heap[b] = h.heap[b], h.heap[a]
	h.nodes[h.heap[a]].pos = int32(a)
	h.nodes[h.heap[b]].pos = int32(b)
}

func (h *heapTimers) up(j int) {
	for j > 0 {
		p := (j - 1) / 2
		if !h.less(j, p) {
			return
		}
		h.swap(j, p)
		j = p
	}
}

func (h *heapTimers) down(j int) {
	for {
		c := 2*j + 1
		if c >= len(h.heap) {
			return
		}
		if c+1 < len(h.heap) && h.less(c+1, c) {
			c++
		}
		if !h.less(c, j) {
			return
		}
		h.swap(j, c)
		j = c
	}
}

// sortedList is Kamailio's async ms timer list: a doubly linked list of
// heap-allocated entries kept in deadline order, so an add walks the list.
type sortedList struct {
	mu   sync.Mutex
	base time.Time
	head listNode // sentinel
	n    int
}

type listNode struct {
	prev, next *listNode
	at         time.Duration
	v          token
}

func newSortedList() *sortedList {
	l := &sortedList{base: time.Now()}
	l.head.next, l.head.prev = &l.head, &l.head
	return l
}

func (l *sortedList) add(d time.Duration, v token) *listNode {
	nd := &listNode{at: time.Since(l.base) + d, v: v}
	l.mu.Lock()
	p := l.head.next
	for p != &l.head && p.at <= nd.at {
		p = p.next
	}
	l.link(nd, p)
	l.mu.Unlock()
	return nd
}

// link puts nd before p.
func (l *sortedList) link(nd, p *listNode) {
	nd.next, nd.prev = p, p.prev
	p.prev.next = nd
	p.prev = nd
	l.n++
}

func (l *sortedList) cancel(nd *listNode) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if nd.next == nil {
		return false
	}
	nd.prev.next, nd.next.prev = nd.next, nd.prev
	nd.next, nd.prev = nil, nil
	l.n--
	return true
}

// fill loads n entries in O(n log n), as n adds would take O(n²). As with
// adds, the nodes are allocated in arrival order, not in deadline order.
func (l *sortedList) fill(n int) {
	now := time.Since(l.base)
	nodes := make([]*listNode, n)
	for i := range nodes {
		nodes[i] = &listNode{at: now + benchDelays[i&delayMask], v: token{uint32(i), 1}}
	}
	slices.SortStableFunc(nodes, func(a, b *listNode) int { return cmp.Compare(a.at, b.at) })
	for _, nd := range nodes {
		l.link(nd, &l.head)
	}
}
