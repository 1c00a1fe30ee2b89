package eventbus

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/benbjohnson/clock"
)

// DefaultDropLogInterval is how often, at most, a subscription logs that it
// drops messages. Every drop is counted whatever the interval.
const DefaultDropLogInterval = time.Second

// Bus owns a set of topics and their subscriptions, the clock that stamps
// messages and the logger. The zero value is not usable; call New.
type Bus struct {
	clock        clock.Clock
	log          *slog.Logger
	dropLogEvery time.Duration

	// graphMu serializes changes to the fan-out of all topics (subscribe,
	// unsubscribe, forward, cache) so that cycle checks see a stable graph.
	graphMu sync.Mutex

	mu     sync.Mutex // guards the fields below
	topics map[string]*Topic
	subs   map[*Subscription]struct{}
	closed bool
}

// Option configures a Bus.
type Option func(*Bus)

// WithClock sets the clock that stamps messages and paces the drop log.
// Tests pass clock.NewMock(). The default is the real clock, read the cheap
// way: the monotonic clock added to a wall-clock reading refreshed every
// second (see Message.Time).
func WithClock(c clock.Clock) Option { return func(b *Bus) { b.clock = c } }

// WithLogger sets the logger for drops, high-water warnings and handler
// panics. The default is slog.Default().
func WithLogger(l *slog.Logger) Option { return func(b *Bus) { b.log = l } }

// WithDropLogInterval sets how often, at most, each subscription logs drops.
// The default is DefaultDropLogInterval.
func WithDropLogInterval(d time.Duration) Option { return func(b *Bus) { b.dropLogEvery = d } }

// New returns an empty bus.
func New(opts ...Option) *Bus {
	b := &Bus{
		clock:        newAnchoredClock(),
		log:          slog.Default(),
		dropLogEvery: DefaultDropLogInterval,
		topics:       make(map[string]*Topic),
		subs:         make(map[*Subscription]struct{}),
	}
	for _, o := range opts {
		o(b)
	}
	return b
}

// Topic returns the topic registered under name, creating it on first use.
// Registered topics live as long as the bus; use NewTopic for short-lived,
// per-object topics.
func (b *Bus) Topic(name string) *Topic {
	b.mu.Lock()
	defer b.mu.Unlock()
	t, ok := b.topics[name]
	if !ok {
		t = newTopic(b, name)
		b.topics[name] = t
	}
	return t
}

// NewTopic returns a new topic that is not registered under its name: it is
// reachable only through the returned pointer and is garbage once the caller
// drops it and unsubscribes its subscribers. This is the per-object topic of
// Stasis (one per device, one per call), usually forwarded into a registered
// "all" topic with Forward.
func (b *Bus) NewTopic(name string) *Topic { return newTopic(b, name) }

// Clock returns the clock that stamps the bus's messages, for packages built
// on the bus that stamp their own values with the same time source.
func (b *Bus) Clock() clock.Clock { return b.clock }

// Stats returns the statistics of every live subscription, ordered by topic
// and subscription name.
func (b *Bus) Stats() []Stats {
	b.mu.Lock()
	subs := make([]*Subscription, 0, len(b.subs))
	for s := range b.subs {
		subs = append(subs, s)
	}
	b.mu.Unlock()
	out := make([]Stats, 0, len(subs))
	for _, s := range subs {
		out = append(out, s.Stats())
	}
	slices.SortFunc(out, func(x, y Stats) int {
		return cmp.Or(cmp.Compare(x.Topic, y.Topic), cmp.Compare(x.Name, y.Name))
	})
	return out
}

// Close unsubscribes every subscription and waits until each has dispatched
// its final message, or until ctx is done (then it returns the context's
// error; the dispatchers still finish on their own). New subscriptions are
// refused afterwards; publishing still works but reaches nobody. Close is
// idempotent.
func (b *Bus) Close(ctx context.Context) error {
	b.mu.Lock()
	b.closed = true
	subs := make([]*Subscription, 0, len(b.subs))
	for s := range b.subs {
		subs = append(subs, s)
	}
	b.mu.Unlock()
	if err := UnsubscribeAll(ctx, subs); err != nil {
		return fmt.Errorf("eventbus: close: %w", err)
	}
	return nil
}

// UnsubscribeAll unsubscribes every one of subs at once and waits until
// each has dispatched what it holds, or until ctx ends (ctx's error).
func UnsubscribeAll[S interface{ Unsubscribe() <-chan struct{} }](ctx context.Context, subs []S) error {
	done := make([]<-chan struct{}, 0, len(subs))
	for _, s := range subs {
		done = append(done, s.Unsubscribe())
	}
	for _, d := range done {
		select {
		case <-d:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

func (b *Bus) addSub(s *Subscription) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return ErrClosed
	}
	b.subs[s] = struct{}{}
	return nil
}

func (b *Bus) removeSub(s *Subscription) {
	b.mu.Lock()
	delete(b.subs, s)
	b.mu.Unlock()
}

func (b *Bus) isClosed() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.closed
}
