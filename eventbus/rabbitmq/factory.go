package rabbitmq

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/sipasync/sipasync/eventbus/evi"
)

// Factory creates the transports of rabbitmq and rabbitmqs sockets for an
// evi.Events. Subscriptions of several events to the same socket share one
// transport (one connection, one buffer, one set of counters), closed when
// the last of them ends.
type Factory struct {
	opts Options

	mu    sync.Mutex
	byKey map[string]*shared
}

type shared struct {
	t    *Transport
	refs int
}

// NewFactory returns a factory with the given options (see Options; socket
// parameters override them per socket).
func NewFactory(opts Options) (*Factory, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	return &Factory{opts: opts, byKey: make(map[string]*shared)}, nil
}

// Register registers the rabbitmq and rabbitmqs schemes on ev, with the
// given options. Use NewFactory and Factory.Register to read the counters.
func Register(ev *evi.Events, opts Options) error {
	f, err := NewFactory(opts)
	if err != nil {
		return err
	}
	return f.Register(ev)
}

// Register registers the factory's schemes on ev.
func (f *Factory) Register(ev *evi.Events) error {
	if err := ev.RegisterTransport(Scheme, f.New); err != nil {
		return err
	}
	return ev.RegisterTransport(SchemeTLS, f.New)
}

// New is the evi.Factory of both schemes. A malformed socket returns an error
// wrapping evi.ErrMalformedSocket; New never waits for the broker.
func (f *Factory) New(s evi.Socket) (evi.Transport, error) {
	key := s.Scheme() + ":" + s.Address()
	f.mu.Lock()
	defer f.mu.Unlock()
	if sh := f.byKey[key]; sh != nil {
		sh.refs++
		return &handle{f: f, key: key, t: sh.t}, nil
	}
	t, err := NewTransport(s, f.opts)
	if err != nil {
		return nil, err
	}
	f.byKey[key] = &shared{t: t, refs: 1}
	return &handle{f: f, key: key, t: t}, nil
}

// String shows the factory by its redacted sockets; its fields (keyed by
// the raw socket) are never printed.
func (f *Factory) String() string {
	st := f.Stats()
	socks := make([]string, len(st))
	for i, s := range st {
		socks[i] = s.Socket
	}
	return "rabbitmq.Factory" + fmt.Sprint(socks)
}

// GoString makes %#v print the redacted form too.
func (f *Factory) GoString() string { return f.String() }

// Stats returns the counters of every open socket, sorted by socket.
func (f *Factory) Stats() []Stats {
	f.mu.Lock()
	ts := make([]*Transport, 0, len(f.byKey))
	for _, sh := range f.byKey {
		ts = append(ts, sh.t)
	}
	f.mu.Unlock()
	out := make([]Stats, 0, len(ts))
	for _, t := range ts {
		out = append(out, t.Stats())
	}
	slices.SortFunc(out, func(a, b Stats) int { return cmp.Compare(a.Socket, b.Socket) })
	return out
}

func (f *Factory) release(key string) {
	f.mu.Lock()
	sh := f.byKey[key]
	if sh == nil {
		f.mu.Unlock()
		return
	}
	sh.refs--
	last := sh.refs == 0
	if last {
		delete(f.byKey, key)
	}
	f.mu.Unlock()
	if last {
		_ = sh.t.Close()
	}
}

// handle is one subscription's use of a shared transport.
type handle struct {
	f    *Factory
	key  string
	t    *Transport
	once sync.Once
}

func (h *handle) Send(ctx context.Context, ev *evi.Event) error { return h.t.Send(ctx, ev) }
func (h *handle) Synchronous() bool                             { return h.t.Synchronous() }

// String shows the redacted socket.
func (h *handle) String() string { return h.t.String() }

// GoString makes %#v print the redacted form too.
func (h *handle) GoString() string { return h.t.String() }

// Transport returns the shared transport, for its Stats.
func (h *handle) Transport() *Transport { return h.t }

func (h *handle) Close() error {
	h.once.Do(func() { h.f.release(h.key) })
	return nil
}

var (
	_ evi.Transport   = (*handle)(nil)
	_ evi.Synchronous = (*handle)(nil)
)
