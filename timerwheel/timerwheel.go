// Package timerwheel is the hierarchical timing wheel that holds every timer
// of a suspended transaction: async route delays, suspend deadlines and
// registration expiry.
//
// Time is cut into ticks of a fixed length (Options.Tick, 1 ms to 1 s, the
// ms_timer resolution). An item is due on the first tick boundary at or after
// its deadline. The wheel has four levels of 256 slots, which cover 2^32
// ticks (49 days with a 1 ms tick); later deadlines wait in an overflow list
// and move into the wheel when their range comes, so they never wrap early.
//
// Guarantees:
//
//   - Never early: an item is dispatched only by an Advance whose now is at
//     or after the item's deadline.
//   - At most one tick late while ticks are on time: Run ticks on the
//     wheel's tick boundaries and an item fires on the first one at or after
//     its deadline.
//   - Catch-up: after a late tick (GC pause, stalled process) Advance fires
//     every overdue item, tick by tick in deadline order; none is skipped.
//     Items due on the same tick come in no particular order.
//   - Dispatch off the lock: due items are collected under the wheel's lock,
//     then handed to Options.Dispatch with no lock held, so Dispatch may call
//     Add, Cancel and Stop. Dispatch is the only user code the wheel runs; it
//     should pass the item to a worker group and return.
//   - Nothing disappears: every added item is dispatched exactly once, or
//     cancelled (Cancel returned true), or returned by Stop.
//
// Add and Cancel are O(1) and safe for concurrent use; Advance costs O(1) per
// fired item plus at most one move per level. Items live in a slab of
// fixed-size nodes named by int32 indices, and slots are arrays of 8-byte
// entries, so a steady-state Add allocates nothing and a pending item costs
// about 20 bytes plus the size of T.
//
// Lock order: Advance's own mutex, then the wheel's mutex.
package timerwheel

import (
	"cmp"
	"context"
	"errors"
	"math"
	"math/bits"
	"slices"
	"sync"
	"time"

	"github.com/benbjohnson/clock"
)

const (
	slotBits  = 8 // 256 slots per level
	slotCount = 1 << slotBits
	slotMask  = slotCount - 1
	numLevels = 4         // 2^32 ticks: 49.7 days at 1 ms, 136 years at 1 s
	ovfSlot   = 1<<16 - 1 // node.slot of an item in the overflow list
	batchSize = 1024      // due items handed to Dispatch per release of the lock
)

// Limits of Options.Tick and of a delay.
const (
	MinTick  = time.Millisecond
	MaxTick  = time.Second
	MaxDelay = 365 * 24 * time.Hour
)

var (
	// ErrTick is returned by New when Options.Tick is outside MinTick..MaxTick.
	ErrTick = errors.New("timerwheel: tick out of range (1ms..1s)")
	// ErrNoDispatch is returned by New when Options.Dispatch is nil.
	ErrNoDispatch = errors.New("timerwheel: no dispatch function")
	// ErrDelay is returned by Add for a negative delay or one above MaxDelay,
	// and by AddAt for a deadline more than MaxDelay after the wheel's time.
	ErrDelay = errors.New("timerwheel: delay out of range")
	// ErrStopped is returned by Add and AddAt after Stop, and by Run when
	// Stop ends it.
	ErrStopped = errors.New("timerwheel: wheel stopped")
	// ErrFull is returned by Add and AddAt when Options.MaxPending items are
	// pending.
	ErrFull = errors.New("timerwheel: too many pending items")
)

// Options configures a Wheel.
type Options[T any] struct {
	// Tick is the wheel's resolution, MinTick to MaxTick.
	Tick time.Duration
	// Clock is the time source of Add and Run; nil means the real clock.
	Clock clock.Clock
	// Dispatch receives each due item, on the goroutine that called Advance
	// (Run's), with no lock held. It must not call Advance, and should hand
	// the item to a worker group and return at once.
	Dispatch func(T)
	// MaxPending bounds the pending items; Add fails with ErrFull past it.
	// Zero means no bound (but for 2^31-1, the reach of a Handle).
	MaxPending int
}

// Handle names one added item for Cancel. The zero Handle names nothing.
type Handle struct {
	idx int32
	gen uint32
}

// Stats are the wheel's counters since New.
type Stats struct {
	Pending    int    // items waiting now
	Added      uint64 // successful Add and AddAt calls
	Fired      uint64 // items handed (or being handed) to Dispatch
	Cancelled  uint64 // successful Cancel calls
	LateTicks  uint64 // ticks processed late: an Advance covering n ticks adds n-1
	Overflowed uint64 // items added beyond the wheel's range (into the overflow list)
}

// node is one slab entry. gen is odd while the node holds a pending item and
// is bumped on each allocation and release. slot and pos locate the item's
// entry (for Cancel); pos is the next free node while the node is free.
type node[T any] struct {
	gen  uint32
	pos  int32
	slot uint16 // level<<8 | index, or ovfSlot
	v    T
}

// entry is a pending item in a slot: the low 32 bits of its deadline tick
// (the higher ones are those of cur, see Wheel) and its node. Moving entries
// down a level reads only the slot, never the nodes' deadlines.
type entry struct {
	e uint32
	i int32
}

// ovfEntry is an item in the overflow list, with its whole deadline tick.
type ovfEntry struct {
	e int64
	i int32
}

// Wheel is a hierarchical timing wheel of items of type T.
//
// Between ticks, an item with deadline tick e sits at level
// L = (highest bit of e XOR cur)/8, in slot (e >> 8L) & 255 of that level,
// where cur is the last tick processed; the overflow list holds the items
// whose e differs from cur above the top level. A level-L slot is moved down
// (cascaded) when cur reaches its first tick, and a level-0 slot fires when
// cur reaches its tick.
type Wheel[T any] struct {
	tick       time.Duration
	clock      clock.Clock
	base       time.Time // tick 0
	dispatch   func(T)
	maxPending int
	maxTicks   int64 // MaxDelay in ticks
	levels     int   // numLevels; fewer in tests, to exercise the overflow list
	done       chan struct{}

	advMu   sync.Mutex // serialises Advance; guards due and dueNext
	due     []T        // collected items not yet dispatched
	dueNext int        // next item of due to dispatch

	mu      sync.Mutex
	cur     int64 // last tick processed
	slab    []node[T]
	free    int32                    // first free node, -1 when none
	slots   [][]entry                // level<<8 | index
	occ     [][slotCount / 64]uint64 // per level, bit i is set when slot i is not empty
	ovf     []ovfEntry
	ovfMin  int64 // no overflow item is due before this tick
	stopped bool
	stats   Stats
}

// New returns a wheel whose tick 0 is the clock's current time.
func New[T any](opts Options[T]) (*Wheel[T], error) {
	return newWheel(opts, numLevels)
}

func newWheel[T any](opts Options[T], levels int) (*Wheel[T], error) {
	if opts.Tick < MinTick || opts.Tick > MaxTick {
		return nil, ErrTick
	}
	if opts.Dispatch == nil {
		return nil, ErrNoDispatch
	}
	clk := opts.Clock
	if clk == nil {
		clk = clock.New()
	}
	return &Wheel[T]{
		tick:       opts.Tick,
		clock:      clk,
		base:       clk.Now(),
		dispatch:   opts.Dispatch,
		maxPending: opts.MaxPending,
		maxTicks:   int64(MaxDelay / opts.Tick),
		levels:     levels,
		done:       make(chan struct{}),
		due:        make([]T, 0, batchSize),
		free:       -1,
		slots:      make([][]entry, levels*slotCount),
		occ:        make([][slotCount / 64]uint64, levels),
		ovfMin:     math.MaxInt64,
	}, nil
}

// Add schedules v to be dispatched delay after the clock's current time.
func (w *Wheel[T]) Add(delay time.Duration, v T) (Handle, error) {
	if delay < 0 || delay > MaxDelay {
		return Handle{}, ErrDelay
	}
	return w.add(w.ceilTicks(w.clock.Since(w.base)+delay), v, false)
}

// AddAt schedules v to be dispatched at deadline. A deadline that has passed
// is due on the next tick.
func (w *Wheel[T]) AddAt(deadline time.Time, v T) (Handle, error) {
	return w.add(w.ceilTicks(deadline.Sub(w.base)), v, true)
}

// ceilTicks is the first tick at or after base+d.
func (w *Wheel[T]) ceilTicks(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d-1)/w.tick) + 1
}

func (w *Wheel[T]) add(e int64, v T, checkRange bool) (Handle, error) {
	w.mu.Lock()
	switch {
	case w.stopped:
		w.mu.Unlock()
		return Handle{}, ErrStopped
	case checkRange && e-w.cur > w.maxTicks:
		w.mu.Unlock()
		return Handle{}, ErrDelay
	case w.maxPending > 0 && w.stats.Pending >= w.maxPending,
		w.free < 0 && len(w.slab) == math.MaxInt32:
		w.mu.Unlock()
		return Handle{}, ErrFull
	}
	e = max(e, w.cur+1)
	i := w.free
	if i >= 0 {
		w.free = w.slab[i].pos
	} else {
		i = int32(len(w.slab))
		w.slab = append(w.slab, node[T]{})
	}
	n := &w.slab[i]
	n.gen++
	n.v = v
	h := Handle{idx: i, gen: n.gen}
	w.place(i, e)
	w.stats.Pending++
	w.stats.Added++
	w.mu.Unlock()
	return h, nil
}

// levelOf maps the bit length of e^cur to a level.
var levelOf = func() (t [65]uint8) {
	for n := 1; n <= 64; n++ {
		t[n] = uint8((n - 1) / slotBits)
	}
	return t
}()

// place files node i, due at tick e, in its slot or the overflow list.
func (w *Wheel[T]) place(i int32, e int64) {
	if l := int(levelOf[bits.Len64(uint64(e^w.cur))]); l < w.levels {
		w.put(i, uint32(e), l)
		return
	}
	n := &w.slab[i]
	n.slot = ovfSlot
	n.pos = int32(len(w.ovf))
	w.ovf = append(w.ovf, ovfEntry{e, i})
	w.ovfMin = min(w.ovfMin, e)
	w.stats.Overflowed++
}

// put files node i, due at the tick whose low 32 bits are e, at level l.
func (w *Wheel[T]) put(i int32, e uint32, l int) {
	k := int(e>>(l*slotBits)) & slotMask
	s := l<<slotBits | k
	n := &w.slab[i]
	n.slot = uint16(s)
	n.pos = int32(len(w.slots[s]))
	w.slots[s] = append(w.slots[s], entry{e, i})
	w.occ[l][k>>6] |= 1 << (k & 63)
}

// release puts node i, already unlinked, on the free list.
func (w *Wheel[T]) release(i int32) {
	n := &w.slab[i]
	var zero T
	n.v = zero
	n.gen++
	n.pos = w.free
	w.free = i
	w.stats.Pending--
}

// Cancel removes the item named by h. It reports false when the item has
// already fired (or is being dispatched), was cancelled, or the wheel stopped.
func (w *Wheel[T]) Cancel(h Handle) bool {
	w.mu.Lock()
	if h.gen&1 == 0 || h.idx < 0 || int(h.idx) >= len(w.slab) || w.slab[h.idx].gen != h.gen {
		w.mu.Unlock()
		return false
	}
	n := &w.slab[h.idx]
	if n.slot == ovfSlot {
		last := w.ovf[len(w.ovf)-1]
		w.ovf[n.pos] = last
		w.slab[last.i].pos = n.pos
		w.ovf = w.ovf[:len(w.ovf)-1]
	} else {
		list := w.slots[n.slot]
		last := list[len(list)-1]
		list[n.pos] = last
		w.slab[last.i].pos = n.pos
		list = list[:len(list)-1]
		w.slots[n.slot] = list
		if len(list) == 0 {
			l, k := n.slot>>slotBits, n.slot&slotMask
			w.occ[l][k>>6] &^= 1 << (k & 63)
		}
	}
	w.release(h.idx)
	w.stats.Cancelled++
	w.mu.Unlock()
	return true
}

// Advance processes every tick up to now: the items due by then are handed
// to Dispatch, in deadline order at tick granularity. It returns how many
// items it dispatched. Run calls it on each tick; tests call it directly.
func (w *Wheel[T]) Advance(now time.Time) int {
	target := int64(0)
	if d := now.Sub(w.base); d > 0 {
		target = int64(d / w.tick)
	}
	w.advMu.Lock()
	defer w.advMu.Unlock()
	n := w.flush() // left by a Dispatch that panicked
	w.mu.Lock()
	if late := target - w.cur - 1; late > 0 && !w.stopped {
		w.stats.LateTicks += uint64(late)
	}
	for {
		more := !w.stopped && w.collect(target)
		w.mu.Unlock()
		n += w.flush()
		if !more {
			return n
		}
		w.mu.Lock()
	}
}

// flush dispatches the collected items. Called with advMu held, mu not held.
func (w *Wheel[T]) flush() int {
	var zero T
	n := len(w.due) - w.dueNext
	for w.dueNext < len(w.due) {
		v := w.due[w.dueNext]
		w.due[w.dueNext] = zero
		w.dueNext++
		w.dispatch(v)
	}
	w.due = w.due[:0]
	w.dueNext = 0
	return n
}

// collect moves the items due by tick target into w.due. It reports true
// when it stopped early because w.due is full.
func (w *Wheel[T]) collect(target int64) bool {
	for {
		if !w.fire() {
			return true
		}
		if w.cur >= target {
			return false
		}
		t := w.next()
		if t > target {
			// No slot fires or moves in between: the placement of every
			// item is the same at target as at cur.
			w.cur = target
			return false
		}
		w.cur = t
		w.cascade(t)
	}
}

// fire collects level-0 slot cur&255, whose items are all due at cur. It
// reports false when w.due filled up first; the rest stays for the next call.
func (w *Wheel[T]) fire() bool {
	k := int(w.cur & slotMask)
	if w.occ[0][k>>6]&(1<<(k&63)) == 0 {
		return true
	}
	list := w.slots[k]
	for len(list) > 0 {
		if len(w.due) == cap(w.due) {
			w.slots[k] = list
			return false
		}
		i := list[len(list)-1].i
		list = list[:len(list)-1]
		w.due = append(w.due, w.slab[i].v)
		w.release(i)
		w.stats.Fired++
	}
	w.slots[k] = list
	w.occ[0][k>>6] &^= 1 << (k & 63)
	return true
}

// next is the first tick after cur at which a slot fires or moves, or
// MaxInt64. Level-L events all come before level-(L+1) events, so the lowest
// non-empty level decides.
func (w *Wheel[T]) next() int64 {
	cur := uint64(w.cur)
	for l := range w.levels {
		shift := uint(l * slotBits)
		from := cur>>shift&slotMask + 1 // first slot after cur's
		occ := &w.occ[l]
		for wd := from >> 6; wd < slotCount/64; wd++ {
			m := occ[wd]
			if wd == from>>6 {
				m &= ^uint64(0) << (from & 63)
			}
			if m != 0 {
				k := wd<<6 | uint64(bits.TrailingZeros64(m))
				hi := shift + slotBits
				return int64(cur>>hi<<hi | k<<shift)
			}
		}
	}
	if len(w.ovf) > 0 {
		// The first tick of the range holding the earliest overflow item.
		hi := uint(w.levels * slotBits)
		return int64(uint64(w.ovfMin) >> hi << hi)
	}
	return math.MaxInt64
}

// cascade moves down every slot whose first tick is t (cur == t): the
// overflow list first, then levels from the top.
func (w *Wheel[T]) cascade(t int64) {
	u := uint64(t)
	top := uint(w.levels * slotBits)
	if u&(1<<top-1) == 0 && len(w.ovf) > 0 {
		list, j := w.ovf, 0
		w.ovfMin = math.MaxInt64
		for _, en := range list {
			if uint64(en.e^t)>>top != 0 {
				list[j] = en
				w.slab[en.i].pos = int32(j)
				w.ovfMin = min(w.ovfMin, en.e)
				j++
			} else {
				w.put(en.i, uint32(en.e), int(levelOf[bits.Len64(uint64(en.e^t))]))
			}
		}
		w.ovf = list[:j]
	}
	cur := uint32(t)
	for l := min(w.levels-1, bits.TrailingZeros64(u)/slotBits); l >= 1; l-- {
		k := int(u>>(l*slotBits)) & slotMask
		if w.occ[l][k>>6]&(1<<(k&63)) == 0 {
			continue
		}
		s := l<<slotBits | k
		for _, en := range w.slots[s] {
			w.put(en.i, en.e, int(levelOf[bits.Len32(en.e^cur)])) // a lower level
		}
		w.slots[s] = w.slots[s][:0]
		w.occ[l][k>>6] &^= 1 << (k & 63)
	}
}

// Run drives the wheel from a ticker of its clock, aligned on the wheel's
// tick boundaries, until ctx is done (it returns ctx.Err()) or Stop is
// called (ErrStopped). Dispatch runs on Run's goroutine.
func (w *Wheel[T]) Run(ctx context.Context) error {
	if off := w.clock.Since(w.base) % w.tick; off > 0 {
		t := w.clock.Timer(w.tick - off)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-w.done:
			t.Stop()
			return ErrStopped
		}
	}
	tk := w.clock.Ticker(w.tick)
	defer tk.Stop()
	for {
		w.Advance(w.clock.Now())
		select {
		case <-tk.C:
		case <-ctx.Done():
			return ctx.Err()
		case <-w.done:
			return ErrStopped
		}
	}
}

// Stop stops the wheel and returns the items still pending, in deadline
// order, for the owner to drain. Later Add calls fail with ErrStopped, Cancel
// reports false and Advance dispatches nothing new. Stop does not wait for an
// Advance in progress: the items it already collected are still dispatched.
// A second Stop returns nil.
func (w *Wheel[T]) Stop() []T {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped {
		return nil
	}
	w.stopped = true
	close(w.done)
	// The high bits of an in-wheel deadline are those of cur.
	hi := w.cur >> 32 << 32
	pending := make([]ovfEntry, 0, w.stats.Pending)
	for _, list := range w.slots {
		for _, en := range list {
			pending = append(pending, ovfEntry{hi | int64(en.e), en.i})
		}
	}
	pending = append(pending, w.ovf...)
	slices.SortFunc(pending, func(a, b ovfEntry) int { return cmp.Compare(a.e, b.e) })
	out := make([]T, len(pending))
	for k, en := range pending {
		out[k] = w.slab[en.i].v
	}
	w.slab, w.slots, w.ovf, w.free = nil, nil, nil, -1
	clear(w.occ)
	w.stats.Pending = 0
	return out
}

// Len returns the number of pending items.
func (w *Wheel[T]) Len() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.stats.Pending
}

// Stats returns the wheel's counters.
func (w *Wheel[T]) Stats() Stats {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.stats
}

// Tick returns the wheel's tick.
func (w *Wheel[T]) Tick() time.Duration { return w.tick }
