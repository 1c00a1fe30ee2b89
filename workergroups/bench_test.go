package workergroups

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/panjf2000/ants/v2"
)

// spin1us is the ~1 µs task: it keeps its worker busy for a microsecond.
func spin1us() {
	for start := time.Now(); time.Since(start) < time.Microsecond; {
	}
}

// dispatcher is one way to run tasks: submit, then wait for all of them.
type dispatcher interface {
	submit(func())
	wait()
}

type groupImpl struct{ g *Group }

func (d groupImpl) submit(f func()) { _ = d.g.Submit(f) }
func (d groupImpl) wait()           { _, _ = d.g.Stop(context.Background()) }

type antsImpl struct{ p *ants.Pool }

func (d antsImpl) submit(f func()) { _ = d.p.Submit(f) }
func (d antsImpl) wait()           { _ = d.p.ReleaseTimeout(time.Minute) }

type chanImpl struct {
	ch chan func()
	wg *sync.WaitGroup
}

func (d chanImpl) submit(f func()) { d.ch <- f }
func (d chanImpl) wait()           { close(d.ch); d.wg.Wait() }

// goroutineImpl is go f(); package state keeps the go statement free of
// captured variables, hence of allocations of its own.
type goroutineImpl struct{}

var (
	goWG   sync.WaitGroup
	goTask func()
)

func goRun() { goTask(); goWG.Done() }

func (goroutineImpl) submit(func()) { goWG.Add(1); go goRun() }
func (goroutineImpl) wait()         { goWG.Wait() }

func newDispatcher(b *testing.B, impl string, workers int, task func()) dispatcher {
	switch impl {
	case "group":
		gs, err := New(WithDefault(Spec{Workers: workers}), WithLogger(quiet))
		if err != nil {
			b.Fatal(err)
		}
		return groupImpl{gs.Default()}
	case "ants":
		p, err := ants.NewPool(workers)
		if err != nil {
			b.Fatal(err)
		}
		return antsImpl{p}
	case "chanpool":
		d := chanImpl{ch: make(chan func(), DefaultQueue), wg: &sync.WaitGroup{}}
		for range workers {
			d.wg.Go(func() {
				for f := range d.ch {
					f()
				}
			})
		}
		return d
	case "goroutine":
		goTask = task
		return goroutineImpl{}
	}
	panic(impl)
}

// BenchmarkDispatch measures one submitter feeding tasks through each
// implementation, until all of them have run: ns/op is the cost of one task
// end to end, allocs/op the allocations per task. group and chanpool queue
// up to DefaultQueue tasks; ants (default options) makes the submitter wait
// for a free worker; goroutine ignores workers.
func BenchmarkDispatch(b *testing.B) {
	tasks := []struct {
		name string
		fn   func()
	}{{"noop", noop}, {"1us", spin1us}}
	for _, impl := range []string{"group", "ants", "chanpool", "goroutine"} {
		for _, workers := range []int{2, 8, 64} {
			for _, task := range tasks {
				name := fmt.Sprintf("impl=%s/workers=%d/task=%s", impl, workers, task.name)
				b.Run(name, func(b *testing.B) {
					d := newDispatcher(b, impl, workers, task.fn)
					b.ReportAllocs()
					b.ResetTimer()
					for range b.N {
						d.submit(task.fn)
					}
					d.wait()
					b.StopTimer()
					b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tasks/s")
				})
			}
		}
	}
}

// BenchmarkSubmitParallel is Submit from many goroutines at once (as SIP
// transaction goroutines do), no-op tasks, blocking and nonblock groups.
func BenchmarkSubmitParallel(b *testing.B) {
	for _, nonblock := range []bool{false, true} {
		b.Run(fmt.Sprintf("nonblock=%t", nonblock), func(b *testing.B) {
			gs, err := New(WithDefault(Spec{Workers: 8, Nonblock: nonblock}), WithLogger(quiet))
			if err != nil {
				b.Fatal(err)
			}
			g := gs.Default()
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					_ = g.Submit(noop)
				}
			})
			_, _ = gs.Stop(context.Background())
		})
	}
}
