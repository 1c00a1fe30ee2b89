package timerwheel

import (
	"errors"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/benbjohnson/clock"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const ms = time.Millisecond

// epoch is the fake clock's zero, and so tick 0 of the wheels built on it.
var epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// fakeClock is a clock.Clock whose Now and Since read a time the test sets,
// without the real sleep the mock clock takes on each move. Tests that use
// it never call Run (its other methods are nil and panic).
type fakeClock struct {
	clock.Clock
	ns atomic.Int64 // offset from epoch
}

func (c *fakeClock) Now() time.Time                  { return epoch.Add(time.Duration(c.ns.Load())) }
func (c *fakeClock) Since(t time.Time) time.Duration { return c.Now().Sub(t) }

// set moves the clock to epoch+d and returns that time.
func (c *fakeClock) set(d time.Duration) time.Time {
	c.ns.Store(int64(d))
	return epoch.Add(d)
}

// add moves the clock by d and returns the new time.
func (c *fakeClock) add(d time.Duration) time.Time {
	return epoch.Add(time.Duration(c.ns.Add(int64(d))))
}

// recorder collects dispatched values.
type recorder[T any] struct{ got []T }

func (r *recorder[T]) dispatch(v T) { r.got = append(r.got, v) }

func (r *recorder[T]) take() []T {
	got := r.got
	r.got = nil
	return got
}

// newTestWheel returns a wheel on a fake clock at epoch that records what
// it dispatches.
func newTestWheel[T any](t testing.TB, tick time.Duration, levels int) (*Wheel[T], *fakeClock, *recorder[T]) {
	t.Helper()
	clk := &fakeClock{}
	rec := &recorder[T]{}
	w, err := newWheel(Options[T]{Tick: tick, Clock: clk, Dispatch: rec.dispatch}, levels)
	if err != nil {
		t.Fatal(err)
	}
	return w, clk, rec
}

// Local assertions (the test dependencies stay at goleak).

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func isErr(t testing.TB, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("error %v, want %v", err, want)
	}
}

func check(t testing.TB, ok bool, format string, args ...any) {
	t.Helper()
	if !ok {
		t.Fatalf(format, args...)
	}
}

func equal[T comparable](t testing.TB, got, want T, what string) {
	t.Helper()
	if got != want {
		t.Fatalf("%s: got %v, want %v", what, got, want)
	}
}

func equalSlice[T comparable](t testing.TB, got, want []T, what string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Fatalf("%s: got %v, want %v", what, got, want)
	}
}
