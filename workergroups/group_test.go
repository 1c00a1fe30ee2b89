package workergroups

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

// IgnoreCurrent: importing ants starts its package-level default pool.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m, goleak.IgnoreCurrent()) }

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// newGroups returns a registry stopped at the end of the test.
func newGroups(t *testing.T, opts ...Option) *Groups {
	t.Helper()
	gs, err := New(append([]Option{WithLogger(quiet)}, opts...)...)
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err := gs.Stop(ctx)
		assert.NoError(t, err, "cleanup stop")
	})
	return gs
}

func addGroup(t *testing.T, gs *Groups, spec Spec) *Group {
	t.Helper()
	g, err := gs.Add(spec)
	require.NoError(t, err)
	return g
}

// eventually polls cond until it holds; the long limit only turns a hang
// into a failure, it never decides a pass.
func eventually(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// recv fails the test instead of hanging when nothing arrives.
func recv[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

// gate makes tasks that report their start and then block until opened.
type gate struct {
	started chan struct{}
	open    chan struct{}
}

func newGate() *gate { return &gate{started: make(chan struct{}, 100), open: make(chan struct{})} }

func (g *gate) task() func() {
	return func() {
		g.started <- struct{}{}
		<-g.open
	}
}

func stop(t *testing.T, g interface {
	Stop(context.Context) (int, error)
}) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	undone, err := g.Stop(ctx)
	require.NoError(t, err)
	return undone
}

func TestSubmitRunsTasks(t *testing.T) {
	gs := newGroups(t, WithDefaultWorkers(4))
	var ran atomic.Int64
	for range 1000 {
		require.NoError(t, gs.Default().Submit(func() { ran.Add(1) }))
	}
	assert.Equal(t, 0, stop(t, gs))
	assert.EqualValues(t, 1000, ran.Load())
	st := gs.Default().Stats()
	assert.EqualValues(t, 1000, st.Completed)
	assert.Zero(t, st.Busy)
	assert.Zero(t, st.Queued)
	assert.Zero(t, st.Workers, "workers exit after Stop")
	assert.ErrorIs(t, gs.Default().Submit(func() {}), ErrStopped)
	assert.ErrorIs(t, gs.Default().Submit(nil), ErrNilTask)
}

func TestNonblockRejectsWhenSaturated(t *testing.T) {
	gs := newGroups(t)
	g := addGroup(t, gs, Spec{Name: "nb", Workers: 2, Nonblock: true, Queue: 3})
	gt := newGate()
	var ran atomic.Int64
	task := func() { gt.task()(); ran.Add(1) }

	for range 2 {
		require.NoError(t, g.Submit(task))
	}
	recv(t, gt.started, "first worker busy")
	recv(t, gt.started, "second worker busy")
	for range 3 {
		require.NoError(t, g.Submit(task), "the queue has room")
	}
	st := g.Stats()
	assert.Equal(t, 2, st.Busy)
	assert.Equal(t, 3, st.Queued)

	// Saturated: refused at once, counted, never run.
	for range 4 {
		assert.ErrorIs(t, g.Submit(task), ErrOverload)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	assert.ErrorIs(t, g.SubmitContext(ctx, task), ErrOverload, "SubmitContext never waits either")
	assert.EqualValues(t, 5, g.Stats().Rejected)
	assert.Zero(t, g.Stats().Waiting)

	close(gt.open)
	assert.Equal(t, 0, stop(t, g))
	assert.EqualValues(t, 5, ran.Load())
	assert.EqualValues(t, 5, g.Stats().Completed)
}

func TestBlockingWaitsForRoom(t *testing.T) {
	gs := newGroups(t)
	g := addGroup(t, gs, Spec{Name: "b", Workers: 1, Queue: 1})
	gt := newGate()
	require.NoError(t, g.Submit(gt.task()))
	recv(t, gt.started, "worker busy")
	require.NoError(t, g.Submit(gt.task()), "queued")

	res := make(chan error, 1)
	go func() { res <- g.Submit(gt.task()) }()
	eventually(t, func() bool { return g.Stats().Waiting == 1 }, "submitter to block")
	select {
	case err := <-res:
		t.Fatalf("Submit returned %v with the queue full", err)
	default:
	}
	assert.Equal(t, 1, g.Stats().Queued, "the bound holds")

	close(gt.open)
	require.NoError(t, recv(t, res, "blocked Submit"))
	assert.Equal(t, 0, stop(t, g))
	st := g.Stats()
	assert.EqualValues(t, 3, st.Completed)
	assert.Zero(t, st.Rejected)
	assert.Zero(t, st.Waiting)
}

func TestSubmitContextGivesUp(t *testing.T) {
	gs := newGroups(t)
	g := addGroup(t, gs, Spec{Name: "b", Workers: 1, Queue: 1})
	gt := newGate()
	require.NoError(t, g.Submit(gt.task()))
	recv(t, gt.started, "worker busy")
	require.NoError(t, g.Submit(gt.task()))

	var ran atomic.Bool
	ctx, cancel := context.WithCancel(context.Background())
	res := make(chan error, 1)
	go func() { res <- g.SubmitContext(ctx, func() { ran.Store(true) }) }()
	eventually(t, func() bool { return g.Stats().Waiting == 1 }, "submitter to block")
	cancel()
	assert.ErrorIs(t, recv(t, res, "SubmitContext"), context.Canceled)
	assert.ErrorIs(t, g.SubmitContext(ctx, func() { ran.Store(true) }), context.Canceled, "ended context")

	close(gt.open)
	assert.Equal(t, 0, stop(t, g))
	assert.False(t, ran.Load(), "a refused task never runs")
	assert.EqualValues(t, 2, g.Stats().Rejected)
	assert.EqualValues(t, 2, g.Stats().Completed)
}

// gateClock is a clock whose Sleep reports its duration and then waits to
// be let go: the test decides when each pause ends.
type gateClock struct {
	*clock.Mock
	sleeps chan time.Duration
	wake   chan struct{}
	free   chan struct{} // closed: Sleep returns at once
}

func newGateClock() *gateClock {
	return &gateClock{Mock: clock.NewMock(), sleeps: make(chan time.Duration), wake: make(chan struct{}), free: make(chan struct{})}
}

func (c *gateClock) Sleep(d time.Duration) {
	select {
	case c.sleeps <- d:
	case <-c.free:
		return
	}
	select {
	case <-c.wake:
	case <-c.free:
	}
}

func TestUsleepPacesEachTask(t *testing.T) {
	clk := newGateClock()
	gs := newGroups(t, WithClock(clk))
	spec, err := ParseSpec("name=slow;workers=1;nonblock=0;usleep=250")
	require.NoError(t, err)
	g := addGroup(t, gs, spec)
	defer close(clk.free)

	assert.Equal(t, 250*time.Microsecond, recv(t, clk.sleeps, "first pause"))
	var ran atomic.Int64
	for range 3 {
		require.NoError(t, g.Submit(func() { ran.Add(1) }))
	}
	// The worker is pausing: nothing starts before the pause ends.
	assert.Equal(t, 3, g.Stats().Queued)
	assert.EqualValues(t, 0, ran.Load())

	for i := 1; i <= 3; i++ {
		clk.wake <- struct{}{}
		// One task per pause: it ran, and the worker pauses again.
		assert.Equal(t, 250*time.Microsecond, recv(t, clk.sleeps, "next pause"))
		assert.EqualValues(t, i, ran.Load())
		st := g.Stats()
		assert.EqualValues(t, i, st.Completed)
		assert.Equal(t, 3-i, st.Queued)
	}
}

func TestNoUsleepNoPause(t *testing.T) {
	clk := newGateClock()
	gs := newGroups(t, WithClock(clk), WithDefaultWorkers(2))
	for range 100 {
		require.NoError(t, gs.Default().Submit(func() {}))
	}
	assert.Equal(t, 0, stop(t, gs)) // Sleep would block forever: it is never called
	assert.EqualValues(t, 100, gs.Default().Stats().Completed)
}

// syncBuffer is a log sink safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func panickingTask() { panic("boom") }

func TestPanicIsContained(t *testing.T) {
	var logs syncBuffer
	gs := newGroups(t, WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	g := addGroup(t, gs, Spec{Name: "p", Workers: 1})

	require.NoError(t, g.Submit(panickingTask))
	require.NoError(t, g.Submit(func() { panic(errors.New("second")) }))
	done := make(chan struct{})
	require.NoError(t, g.Submit(func() { close(done) }))
	recv(t, done, "the task after the panics, on the same single worker")
	eventually(t, func() bool { return g.Stats().Completed == 1 }, "completion count")

	st := g.Stats()
	assert.Equal(t, 1, st.Workers, "the worker survived")
	assert.EqualValues(t, 2, st.Panicked)
	assert.EqualValues(t, 1, st.Completed)
	out := logs.String()
	assert.Contains(t, out, "task panicked")
	assert.Contains(t, out, "group=p")
	assert.Contains(t, out, "panic=boom")
	assert.Contains(t, out, "panickingTask", "the stack is logged")
	assert.Contains(t, out, "second")
}

func TestStopDrainsQueue(t *testing.T) {
	gs := newGroups(t)
	g := addGroup(t, gs, Spec{Name: "d", Workers: 1, Queue: 10})
	gt := newGate()
	var ran atomic.Int64
	require.NoError(t, g.Submit(gt.task()))
	recv(t, gt.started, "worker busy")
	for range 5 {
		require.NoError(t, g.Submit(func() { ran.Add(1) }))
	}

	res := make(chan int, 1)
	go func() { res <- stop(t, g) }()
	probes := 0 // accepted before Stop began
	eventually(t, func() bool {
		err := g.Submit(func() { ran.Add(1) })
		if err == nil {
			probes++
		}
		return errors.Is(err, ErrStopped)
	}, "Stop to refuse tasks")
	close(gt.open)
	assert.Equal(t, 0, recv(t, res, "Stop"), "everything queued ran")
	assert.EqualValues(t, 5+probes, ran.Load())
	assert.EqualValues(t, 6+probes, g.Stats().Completed)
	assert.Zero(t, g.Stats().Undone)
}

func TestStopDeadlineCountsUndone(t *testing.T) {
	var logs syncBuffer
	gs := newGroups(t, WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	g := addGroup(t, gs, Spec{Name: "u", Workers: 1, Queue: 10})
	gt := newGate()
	var ran atomic.Int64
	require.NoError(t, g.Submit(gt.task()))
	recv(t, gt.started, "worker busy")
	for range 5 {
		require.NoError(t, g.Submit(func() { ran.Add(1) }))
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	undone, err := g.Stop(ctx)
	assert.ErrorIs(t, err, context.Canceled)
	assert.Equal(t, 5, undone)
	assert.EqualValues(t, 5, g.Stats().Undone)
	assert.Contains(t, logs.String(), "undone=5")

	close(gt.open) // the running task still finishes
	assert.Equal(t, 0, stop(t, g), "a second Stop reports nothing twice")
	assert.Zero(t, ran.Load(), "undone tasks never run")
	assert.EqualValues(t, 1, g.Stats().Completed)
}

func TestStopWakesBlockedSubmitters(t *testing.T) {
	gs := newGroups(t)
	g := addGroup(t, gs, Spec{Name: "w", Workers: 1, Queue: 1})
	gt := newGate()
	require.NoError(t, g.Submit(gt.task()))
	recv(t, gt.started, "worker busy")
	require.NoError(t, g.Submit(gt.task()))

	var ran atomic.Bool
	res := make(chan error, 1)
	go func() { res <- g.Submit(func() { ran.Store(true) }) }()
	eventually(t, func() bool { return g.Stats().Waiting == 1 }, "submitter to block")

	stopped := make(chan int, 1)
	go func() { stopped <- stop(t, g) }()
	assert.ErrorIs(t, recv(t, res, "blocked Submit"), ErrStopped)
	close(gt.open)
	assert.Equal(t, 0, recv(t, stopped, "Stop"))
	assert.False(t, ran.Load())
	assert.EqualValues(t, 2, g.Stats().Completed)
	assert.EqualValues(t, 1, g.Stats().Rejected)
}

// TestNothingDroppedSilently races many submitters against Stop: every
// accepted task either runs or is counted undone.
func TestNothingDroppedSilently(t *testing.T) {
	for _, tc := range []struct {
		name     string
		nonblock bool
		deadline bool
	}{
		{"blocking/drain", false, false},
		{"blocking/deadline", false, true},
		{"nonblock/drain", true, false},
		{"nonblock/deadline", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			gs := newGroups(t)
			g := addGroup(t, gs, Spec{Name: "s", Workers: 3, Nonblock: tc.nonblock, Queue: 16})
			var accepted, ran, finished atomic.Int64
			task := func() { ran.Add(1) }
			var wg sync.WaitGroup
			for range 6 {
				wg.Go(func() {
					defer finished.Add(1)
					for range 2000 {
						switch err := g.Submit(task); {
						case err == nil:
							accepted.Add(1)
						case errors.Is(err, ErrStopped):
							return
						case errors.Is(err, ErrOverload):
						default:
							t.Errorf("Submit: %v", err)
							return
						}
					}
				})
			}
			eventually(t, func() bool { return accepted.Load() > 500 || finished.Load() == 6 }, "some load")
			ctx, cancel := context.WithCancel(context.Background())
			if tc.deadline {
				cancel()
			}
			undone, err := g.Stop(ctx)
			cancel()
			if !tc.deadline {
				require.NoError(t, err)
				assert.Zero(t, undone)
			}
			wg.Wait()
			assert.Equal(t, 0, stop(t, g)) // wait for the workers
			st := g.Stats()
			assert.Equal(t, accepted.Load(), ran.Load()+int64(undone))
			assert.EqualValues(t, ran.Load(), st.Completed)
			assert.EqualValues(t, undone, st.Undone)
			assert.Zero(t, st.Queued)
		})
	}
}

func noop() {}

func TestSubmitDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts differ under the race detector")
	}
	gs := newGroups(t, WithDefaultWorkers(2))
	g := gs.Default()
	assert.Zero(t, testing.AllocsPerRun(10000, func() { _ = g.Submit(noop) }), "Submit")

	nb := addGroup(t, gs, Spec{Name: "nb", Workers: 1, Nonblock: true, Queue: 1})
	gt := newGate()
	require.NoError(t, nb.Submit(gt.task()))
	recv(t, gt.started, "worker busy")
	require.NoError(t, nb.Submit(noop))
	assert.Zero(t, testing.AllocsPerRun(1000, func() { _ = nb.Submit(noop) }), "rejecting Submit")
	close(gt.open)
}
