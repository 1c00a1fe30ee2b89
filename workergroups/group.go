package workergroups

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"sync/atomic"

	"github.com/benbjohnson/clock"
	"github.com/panjf2000/ants/v2"
)

// Errors returned by this package. Spec errors wrap ErrBadSpec and lookup
// errors wrap ErrUnknownGroup; Submit returns ErrOverload, ErrStopped and
// ErrNilTask as they are, so the hot path never allocates.
var (
	ErrBadSpec        = errors.New("workergroups: bad group spec")
	ErrDuplicateGroup = errors.New("workergroups: duplicate group")
	ErrUnknownGroup   = errors.New("workergroups: unknown group")
	ErrOverload       = errors.New("workergroups: group overloaded")
	ErrStopped        = errors.New("workergroups: group stopped")
	ErrNilTask        = errors.New("workergroups: nil task")
)

// Stats is a group's counters. Each field is read atomically; the set is
// not one consistent snapshot while the group runs.
type Stats struct {
	Workers   int    // worker goroutines alive
	Busy      int    // workers running a task now
	Queued    int    // tasks accepted, not started yet
	Waiting   int    // submitters blocked on a full queue (blocking mode)
	Completed uint64 // tasks that returned
	Panicked  uint64 // tasks that panicked (recovered, logged)
	Rejected  uint64 // Submit calls refused: overload, stopped, context ended
	Undone    uint64 // tasks accepted but dropped by Stop when its context ended
}

// A Group is a fixed set of workers fed by a bounded FIFO queue.
// Its methods are safe for concurrent use.
type Group struct {
	// Read-only after newGroup.
	spec     Spec
	queue    chan func()
	log      *slog.Logger
	clock    clock.Clock
	pool     *ants.Pool
	workers  []worker
	stopping chan struct{} // closed by Stop: wakes blocked submitters
	done     chan struct{} // closed once every worker has exited
	running  sync.WaitGroup
	stopOnce sync.Once

	// Written by every Submit: kept on cache lines of their own, so that
	// workers reading the fields above do not bounce them between cores.
	_       [64]byte
	mu      sync.RWMutex // orders sends on queue (read-locked) before its close (locked)
	stopped atomic.Bool
	_       [64]byte

	alive    atomic.Int64
	waiting  atomic.Int64
	rejected atomic.Uint64
	undone   atomic.Uint64
}

// worker holds counters written only by its own goroutine, on a cache line
// of their own, so counting costs no contention.
type worker struct {
	ended    atomic.Uint64 // tasks that returned or panicked
	panicked atomic.Uint64
	busy     atomic.Bool // false while pausing or waiting for a task
	_        [40]byte
}

func newGroup(spec Spec, o *Options) (*Group, error) {
	g := &Group{
		spec:     spec,
		queue:    make(chan func(), spec.Queue),
		log:      o.Logger,
		clock:    o.Clock,
		workers:  make([]worker, spec.Workers),
		stopping: make(chan struct{}),
		done:     make(chan struct{}),
	}
	// ants owns the worker goroutines: a fixed-size pool that never
	// purges them; each runs one loop until Stop closes the queue.
	pool, err := ants.NewPool(spec.Workers,
		ants.WithDisablePurge(true),
		ants.WithNonblocking(true),
		ants.WithPanicHandler(func(p any) {
			// Unreachable: work recovers every task. Kept as a last guard.
			g.log.Error("workergroups: worker loop panicked", "group", spec.Name, "panic", p)
		}))
	if err != nil {
		return nil, fmt.Errorf("workergroups: group %q: %w", spec.Name, err)
	}
	g.pool = pool
	g.running.Add(spec.Workers)
	for i := range g.workers {
		w := &g.workers[i]
		if err := pool.Submit(func() { g.work(w) }); err != nil {
			g.running.Add(-(spec.Workers - i))
			g.shutdown()
			return nil, fmt.Errorf("workergroups: group %q: start worker: %w", spec.Name, err)
		}
	}
	return g, nil
}

// Name returns the group's name.
func (g *Group) Name() string { return g.spec.Name }

// Spec returns the group's spec, with Queue resolved.
func (g *Group) Spec() Spec { return g.spec }

// Submit queues task to run on one of the group's workers, in FIFO order.
// When the queue is full a blocking group waits for room and a nonblock
// group returns ErrOverload at once. After Stop it returns ErrStopped.
// It does not allocate.
func (g *Group) Submit(task func()) error { return g.submit(nil, task) }

// SubmitContext is Submit that gives up waiting for room when ctx ends,
// returning ctx.Err(). On a nonblock group it never waits.
func (g *Group) SubmitContext(ctx context.Context, task func()) error {
	if err := ctx.Err(); err != nil {
		g.rejected.Add(1)
		return err
	}
	return g.submit(ctx, task)
}

func (g *Group) submit(ctx context.Context, task func()) error {
	if task == nil {
		return ErrNilTask
	}
	g.mu.RLock()
	defer g.mu.RUnlock()
	if g.stopped.Load() {
		g.rejected.Add(1)
		return ErrStopped
	}
	select {
	case g.queue <- task:
		return nil
	default:
	}
	if g.spec.Nonblock {
		g.rejected.Add(1)
		return ErrOverload
	}
	return g.wait(ctx, task)
}

// wait blocks until the queue has room, Stop is called, or ctx ends.
func (g *Group) wait(ctx context.Context, task func()) error {
	var cancel <-chan struct{}
	if ctx != nil {
		cancel = ctx.Done()
	}
	g.waiting.Add(1)
	defer g.waiting.Add(-1)
	select {
	case g.queue <- task:
		return nil
	case <-g.stopping:
		g.rejected.Add(1)
		return ErrStopped
	case <-cancel:
		g.rejected.Add(1)
		return ctx.Err()
	}
}

// work is one worker's loop: pause usleep, take the next task, run it.
// The busy flag changes only when the worker pauses or finds the queue
// empty, so a loaded worker pays one atomic add per task.
func (g *Group) work(w *worker) {
	g.alive.Add(1)
	defer func() {
		w.busy.Store(false)
		g.alive.Add(-1)
		g.running.Done()
	}()
	queue, pause := g.queue, g.spec.Usleep
	busy := false
	for {
		if pause > 0 {
			if busy {
				w.busy.Store(false)
				busy = false
			}
			g.clock.Sleep(pause)
		}
		var task func()
		ok := true
		select {
		case task, ok = <-queue:
		default:
			if busy {
				w.busy.Store(false)
				busy = false
			}
			task, ok = <-queue
		}
		if !ok {
			return
		}
		if !busy {
			w.busy.Store(true)
			busy = true
		}
		g.run(w, task)
	}
}

func (g *Group) run(w *worker, task func()) {
	defer g.finish(w)
	task()
}

// finish ends a task: it recovers a panic, logs it with its stack and
// counts it, so the worker goes on serving.
func (g *Group) finish(w *worker) {
	p := recover()
	w.ended.Add(1)
	if p == nil {
		return
	}
	w.panicked.Add(1)
	g.log.Error("workergroups: task panicked",
		"group", g.spec.Name, "panic", p, "stack", string(debug.Stack()))
}

// Stats returns the group's counters.
func (g *Group) Stats() Stats {
	s := Stats{
		Workers:  int(g.alive.Load()),
		Queued:   len(g.queue),
		Waiting:  int(g.waiting.Load()),
		Rejected: g.rejected.Load(),
		Undone:   g.undone.Load(),
	}
	var ended uint64
	for i := range g.workers {
		w := &g.workers[i]
		// panicked before ended: a panic is counted after its end, so
		// Panicked never exceeds the ends read here.
		s.Panicked += w.panicked.Load()
		ended += w.ended.Load()
		if w.busy.Load() {
			s.Busy++
		}
	}
	s.Completed = ended - s.Panicked
	return s
}

// Stop stops taking tasks (Submit returns ErrStopped, blocked submitters
// wake with it), lets the workers run what is queued, and waits for them to
// exit. If ctx ends first, Stop takes the tasks still queued out of the
// queue, so they never run, and returns their number with ctx.Err(); tasks
// already running finish in the background. Stop is idempotent: a second
// call waits again and reports only what it took itself. A task must not
// call Stop on its own group without a deadline.
func (g *Group) Stop(ctx context.Context) (undone int, err error) {
	g.shutdown()
	select {
	case <-g.done:
		return 0, nil
	default:
	}
	select {
	case <-g.done:
		return 0, nil
	case <-ctx.Done():
	}
	for range g.queue { // closed: ends when empty; workers may race us
		undone++
	}
	if undone > 0 {
		g.undone.Add(uint64(undone))
		g.log.Warn("workergroups: stop deadline: tasks left undone",
			"group", g.spec.Name, "undone", undone, "err", ctx.Err())
	}
	return undone, ctx.Err()
}

// shutdown closes the queue once; sends in flight finish first (mu).
func (g *Group) shutdown() {
	g.stopOnce.Do(func() {
		g.stopped.Store(true)
		close(g.stopping)
		g.mu.Lock()
		close(g.queue)
		g.mu.Unlock()
		go func() {
			g.running.Wait()
			_ = g.pool.ReleaseContext(context.Background())
			close(g.done)
		}()
	})
}
