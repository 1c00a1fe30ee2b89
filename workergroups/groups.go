package workergroups

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/benbjohnson/clock"
)

// Groups is the registry of worker groups: the default group, created by
// New, and the named groups added with Add. Lookup is lock-free.
type Groups struct {
	opts Options

	mu      sync.Mutex // serializes Add and Stop
	stopped bool
	reg     atomic.Pointer[registry] // copied on Add, never mutated
}

type registry struct {
	byName map[string]*Group
	list   []*Group // default first, then in order added
}

// New creates the registry and starts its default group.
func New(opts ...Option) (*Groups, error) {
	var o Options
	for _, opt := range opts {
		opt(&o)
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Clock == nil {
		o.Clock = clock.New()
	}
	if o.Queue == 0 {
		o.Queue = DefaultQueue
	}
	if o.Queue < 1 || o.Queue > MaxQueue {
		return nil, badSpec("", "queue=%d: want 1..%d", o.Queue, MaxQueue)
	}
	def := o.Default
	def.Name = DefaultName
	if def.Workers == 0 {
		def.Workers = 1
	}
	gs := &Groups{opts: o}
	gs.reg.Store(&registry{byName: map[string]*Group{}})
	if _, err := gs.add(def); err != nil {
		return nil, err
	}
	return gs, nil
}

// Add validates spec and starts its group. A name already taken, the
// default group's included, is an error wrapping ErrDuplicateGroup; after
// Stop, Add returns ErrStopped.
func (gs *Groups) Add(spec Spec) (*Group, error) {
	if spec.Name == DefaultName {
		return nil, fmt.Errorf("%w %q: configure the default group with WithDefault", ErrDuplicateGroup, spec.Name)
	}
	return gs.add(spec)
}

func (gs *Groups) add(spec Spec) (*Group, error) {
	if spec.Queue == 0 {
		spec.Queue = gs.opts.Queue
	}
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	gs.mu.Lock()
	defer gs.mu.Unlock()
	if gs.stopped {
		return nil, ErrStopped
	}
	old := gs.reg.Load()
	if _, dup := old.byName[spec.Name]; dup {
		return nil, fmt.Errorf("%w %q", ErrDuplicateGroup, spec.Name)
	}
	g, err := newGroup(spec, &gs.opts)
	if err != nil {
		return nil, err
	}
	r := &registry{byName: make(map[string]*Group, len(old.list)+1), list: append(slices.Clip(old.list), g)}
	for _, x := range r.list {
		r.byName[x.spec.Name] = x
	}
	gs.reg.Store(r)
	return g, nil
}

// Default returns the default group.
func (gs *Groups) Default() *Group { return gs.reg.Load().list[0] }

// Lookup returns the group called name, or an error wrapping
// ErrUnknownGroup that names it.
func (gs *Groups) Lookup(name string) (*Group, error) {
	if g, ok := gs.reg.Load().byName[name]; ok {
		return g, nil
	}
	return nil, fmt.Errorf("%w %q", ErrUnknownGroup, name)
}

// List returns the groups, the default first, then in the order added.
func (gs *Groups) List() []*Group { return slices.Clone(gs.reg.Load().list) }

// Stop stops every group at once, then waits for them all as Group.Stop
// does under the one ctx. It returns the total of tasks left undone and
// ctx.Err() if the context ended before every queue was drained.
func (gs *Groups) Stop(ctx context.Context) (undone int, err error) {
	gs.mu.Lock()
	gs.stopped = true
	gs.mu.Unlock()
	list := gs.reg.Load().list
	for _, g := range list {
		g.shutdown()
	}
	for _, g := range list {
		n, gerr := g.Stop(ctx)
		undone += n
		if gerr != nil {
			err = gerr
		}
	}
	return undone, err
}
