package eventbus

import (
	"fmt"
	"hash/maphash"
	"log/slog"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sipasync/sipasync/internal/lograte"
)

// Handler is called for each message delivered to a subscription: sub is the
// subscription being dispatched, topic the topic the message was first
// published to (the same as m.Topic(); useful when messages are forwarded),
// and m the message. The calls for one subscription never overlap and follow
// the order of publication. A handler that panics is recovered, logged and
// counted; the next message is dispatched normally.
type Handler func(sub *Subscription, topic *Topic, m *Message)

// OverflowPolicy says what Publish does when a subscription's queue is full.
type OverflowPolicy int

const (
	// Drop discards the new message for that subscription only, counts it in
	// Stats.Dropped and logs (at most once per drop-log interval). Publishers
	// and other subscriptions are never held up. This is the default.
	Drop OverflowPolicy = iota
	// Block makes Publish wait until the subscription has room. Nothing is
	// lost, but a slow handler then slows every publisher of the topics that
	// reach it (and, as the topic is ordered, the topic's other subscribers).
	// A Block handler must not publish on a topic that reaches its own
	// subscription: with its queue full it would wait for itself.
	Block
)

// String returns "drop" or "block".
func (p OverflowPolicy) String() string {
	switch p {
	case Drop:
		return "drop"
	case Block:
		return "block"
	}
	return fmt.Sprintf("OverflowPolicy(%d)", int(p))
}

// DefaultCapacity is the queue capacity of a subscription created without
// WithCapacity.
const DefaultCapacity = 1024

type subscribeConfig struct {
	name      string
	capacity  int
	highWater int
	policy    OverflowPolicy
	types     []*MessageType
	shards    int
	key       func(*Message) string
}

// SubscribeOption configures a subscription.
type SubscribeOption func(*subscribeConfig)

// WithName names the subscription in logs and stats. The default is empty.
func WithName(name string) SubscribeOption { return func(c *subscribeConfig) { c.name = name } }

// WithCapacity bounds the queue: at most n messages are waiting or being
// dispatched at any time. n must be at least 1; the default is
// DefaultCapacity.
func WithCapacity(n int) SubscribeOption { return func(c *subscribeConfig) { c.capacity = n } }

// WithOverflow sets the policy for a full queue. The default is Drop.
func WithOverflow(p OverflowPolicy) SubscribeOption { return func(c *subscribeConfig) { c.policy = p } }

// WithHighWater sets the queue depth at which a warning is logged. The
// warning is logged when the depth reaches the mark, then not again until the
// depth has fallen to 90 % of the mark, and at most once per drop-log
// interval. n must be between 1 and the capacity; the default is three
// quarters of the capacity.
func WithHighWater(n int) SubscribeOption { return func(c *subscribeConfig) { c.highWater = n } }

// WithTypes restricts the subscription to messages of the given types; the
// others are filtered out when published and never enqueued. The final
// message is always delivered.
func WithTypes(types ...*MessageType) SubscribeOption {
	return func(c *subscribeConfig) { c.types = append(c.types, types...) }
}

// WithShards splits the subscription into n queues, each with its own
// goroutine, and sends each message to the queue chosen by a hash of key(m)
// (for example the device or call the message is about). Messages with the
// same key keep every guarantee (ordered, serialized); messages with
// different keys may be dispatched in parallel, so the handler must be safe
// for concurrent use across keys. The final message is still the very last
// one, after every queue has drained. Capacity and high-water mark apply to
// each queue. key runs under the topic's publish lock: it must be quick and
// pure. n = 1 is an ordinary subscription.
func WithShards(n int, key func(m *Message) string) SubscribeOption {
	return func(c *subscribeConfig) { c.shards, c.key = n, key }
}

// Stats is a snapshot of one subscription's counters.
type Stats struct {
	Topic  string
	Name   string
	Policy OverflowPolicy
	// Capacity is the queue capacity (of each queue, with WithShards).
	Capacity int
	// Shards is the number of queues: 1 unless WithShards.
	Shards int
	// Depth is the number of messages queued or being dispatched now.
	Depth int
	// HighWater is the greatest depth seen since the subscription started
	// (of any one queue, with WithShards).
	HighWater int
	// Delivered counts messages whose handler has returned (the final message
	// excluded).
	Delivered uint64
	// Dropped counts messages discarded because the queue was full.
	Dropped uint64
	// Panics counts handler calls that panicked.
	Panics uint64
	// Closed is true once Unsubscribe was called.
	Closed bool
}

// Subscription receives the messages of one topic through a bounded queue and
// one goroutine of its own, which calls the handler for one message at a time,
// in publication order (per key, with WithShards). Unsubscribe ends it with a
// final message.
type Subscription struct {
	bus      *Bus
	topic    *Topic
	name     string
	handler  Handler
	accepts  func(*MessageType) bool // nil: every type
	policy   OverflowPolicy
	capacity int // of each queue
	highMark int
	lowMark  int
	resume   int // free slots needed before blocked publishers are woken

	queues []*queue
	key    func(*Message) string // with more than one queue
	seed   maphash.Seed

	live   atomic.Int32 // queues whose dispatcher has not met the final message
	panics atomic.Uint64
	done   chan struct{}

	closeMu sync.Mutex
	closed  bool
}

// queue is one bounded ring of messages and the goroutine that dispatches
// them.
type queue struct {
	s *Subscription

	// pressure is set by a publisher that found the queue full, so that the
	// dispatcher frees slots message by message instead of batch by batch.
	pressure atomic.Bool
	wake     chan struct{} // capacity 1: at most one wake-up outstanding

	mu        sync.Mutex
	notFull   sync.Cond // Block publishers wait here; uses mu
	buf       []*Message
	head, n   int // ring: n messages from head; len(buf) = capacity+1 (room for the final message)
	closed    bool
	idle      bool // the dispatcher waits on wake
	blocked   int  // publishers waiting in notFull
	alerted   bool // depth reached the high-water mark and did not fall to the low mark yet
	lastAlert time.Time
	maxDepth  int
	delivered uint64
	dropped   uint64
	dropsLog  uint64           // drops since the last drop log line
	dropLimit *lograte.Limiter // one drop line per drop-log interval
}

// Subscribe starts a subscription to t. The handler runs on the
// subscription's own goroutine; see Handler for its guarantees.
func (t *Topic) Subscribe(h Handler, opts ...SubscribeOption) (*Subscription, error) {
	return t.subscribe(h, nil, opts)
}

func (t *Topic) subscribe(h Handler, accepts func(*MessageType) bool, opts []SubscribeOption) (*Subscription, error) {
	if h == nil {
		return nil, fmt.Errorf("eventbus: subscribe to %q: nil handler: %w", t.name, ErrInvalidOption)
	}
	c := subscribeConfig{capacity: DefaultCapacity, shards: 1}
	for _, o := range opts {
		o(&c)
	}
	if c.capacity < 1 {
		return nil, fmt.Errorf("eventbus: subscribe to %q: capacity %d: %w", t.name, c.capacity, ErrInvalidOption)
	}
	if c.highWater == 0 {
		c.highWater = max(1, c.capacity*3/4)
	}
	if c.highWater < 1 || c.highWater > c.capacity {
		return nil, fmt.Errorf("eventbus: subscribe to %q: high-water mark %d with capacity %d: %w",
			t.name, c.highWater, c.capacity, ErrInvalidOption)
	}
	if c.policy != Drop && c.policy != Block {
		return nil, fmt.Errorf("eventbus: subscribe to %q: %v: %w", t.name, c.policy, ErrInvalidOption)
	}
	if c.shards < 1 || (c.shards > 1 && c.key == nil) {
		return nil, fmt.Errorf("eventbus: subscribe to %q: %d shards: %w", t.name, c.shards, ErrInvalidOption)
	}
	if len(c.types) > 0 {
		types := slices.Clone(c.types)
		inner := accepts
		accepts = func(mt *MessageType) bool {
			return slices.Contains(types, mt) && (inner == nil || inner(mt))
		}
	}
	s := &Subscription{
		bus:      t.bus,
		topic:    t,
		name:     c.name,
		handler:  h,
		accepts:  accepts,
		policy:   c.policy,
		capacity: c.capacity,
		highMark: c.highWater,
		lowMark:  c.highWater * 9 / 10,
		resume:   max(1, c.capacity/8),
		queues:   make([]*queue, c.shards),
		seed:     maphash.MakeSeed(),
		done:     make(chan struct{}),
	}
	if c.shards > 1 {
		s.key = c.key
	}
	for i := range s.queues {
		q := &queue{s: s, wake: make(chan struct{}, 1), buf: make([]*Message, c.capacity+1),
			dropLimit: lograte.New(t.bus.clock, t.bus.dropLogEvery)}
		q.notFull.L = &q.mu
		s.queues[i] = q
	}
	s.live.Store(int32(c.shards))
	if err := t.bus.addSub(s); err != nil {
		return nil, err
	}
	t.bus.graphMu.Lock()
	t.change(func(f *fanout) { f.subs = append(f.subs, s) })
	t.bus.graphMu.Unlock()
	for _, q := range s.queues {
		go q.run()
	}
	return s, nil
}

// Topic returns the topic subscribed to.
func (s *Subscription) Topic() *Topic { return s.topic }

// Name returns the name given with WithName.
func (s *Subscription) Name() string { return s.name }

// Done returns a channel closed after the final message's dispatch returned.
// Nothing is delivered to the subscription after that.
func (s *Subscription) Done() <-chan struct{} { return s.done }

// Unsubscribe ends the subscription. Messages already queued are still
// delivered; then a final message (IsFinal reports true, type
// SubscriptionChangeType) is delivered as the very last one, and the returned
// channel (the same as Done) is closed when its dispatch returns. Unsubscribe
// does not wait: it may be called from the subscription's own handler, which
// must then not wait on the returned channel. It is idempotent.
func (s *Subscription) Unsubscribe() <-chan struct{} {
	s.closeMu.Lock()
	defer s.closeMu.Unlock()
	if s.closed {
		return s.done
	}
	s.closed = true
	final := &Message{
		typ:     SubscriptionChangeType.mt,
		payload: SubscriptionChange{Subscription: s, Topic: s.topic},
		time:    s.bus.clock.Now(),
		topic:   s.topic,
		final:   true,
	}
	// Every queue gets the final message after what it holds; the dispatcher
	// that meets it last delivers it (see run).
	for _, q := range s.queues {
		q.close(final)
	}
	b := s.bus
	b.graphMu.Lock()
	s.topic.change(func(f *fanout) {
		f.subs = slices.DeleteFunc(f.subs, func(x *Subscription) bool { return x == s })
	})
	b.graphMu.Unlock()
	b.removeSub(s)
	return s.done
}

// Stats returns a snapshot of the subscription's counters.
func (s *Subscription) Stats() Stats {
	st := Stats{
		Topic:    s.topic.name,
		Name:     s.name,
		Policy:   s.policy,
		Capacity: s.capacity,
		Shards:   len(s.queues),
		Panics:   s.panics.Load(),
	}
	for _, q := range s.queues {
		q.mu.Lock()
		st.Depth += q.n
		st.HighWater = max(st.HighWater, q.maxDepth)
		st.Delivered += q.delivered
		st.Dropped += q.dropped
		st.Closed = st.Closed || q.closed
		q.mu.Unlock()
	}
	return st
}

// enqueue is called by publishers, under the topic's publish lock.
func (s *Subscription) enqueue(m *Message) {
	if s.accepts != nil && !s.accepts(m.typ) {
		return
	}
	if s.key == nil {
		s.queues[0].enqueue(m)
		return
	}
	h := maphash.String(s.seed, s.key(m))
	s.queues[h%uint64(len(s.queues))].enqueue(m)
}

func (q *queue) enqueue(m *Message) {
	s := q.s
	q.mu.Lock()
	if q.n >= s.capacity && !q.closed {
		q.pressure.Store(true)
		if s.policy == Drop {
			q.drop()
			return // drop unlocked q.mu
		}
		for q.n >= s.capacity && !q.closed {
			q.blocked++
			q.notFull.Wait()
			q.blocked--
		}
	}
	if q.closed {
		q.mu.Unlock()
		return
	}
	q.push(m)
	wake := q.takeIdle()
	alert := false
	if !q.alerted && q.n >= s.highMark {
		q.alerted = true
		// Edge-triggered, and at most once per drop-log interval, so that a
		// queue hovering around the mark does not flood the log.
		now := s.bus.clock.Now()
		if q.lastAlert.IsZero() || now.Sub(q.lastAlert) >= s.bus.dropLogEvery {
			q.lastAlert, alert = now, true
		}
	}
	depth := q.n
	q.mu.Unlock()
	if wake {
		q.wake <- struct{}{}
	}
	if alert {
		s.bus.log.Warn("eventbus: subscription queue reached its high-water mark",
			slog.String("topic", s.topic.name), slog.String("subscription", s.name),
			slog.Int("depth", depth), slog.Int("high_water", s.highMark), slog.Int("capacity", s.capacity))
	}
}

// close marks the queue closed, appends the final message and releases
// blocked publishers.
func (q *queue) close(final *Message) {
	q.mu.Lock()
	q.closed = true
	q.push(final) // len(buf) = capacity+1: there is always room for it
	wake := q.takeIdle()
	if q.blocked > 0 {
		q.notFull.Broadcast() // blocked publishers give up: the subscription is gone
	}
	q.mu.Unlock()
	if wake {
		q.wake <- struct{}{}
	}
}

// drop counts a dropped message and logs at most once per interval. It is
// called with q.mu held and releases it.
func (q *queue) drop() {
	s := q.s
	q.dropped++
	q.dropsLog++
	if ok, _ := q.dropLimit.Allow(""); !ok {
		q.mu.Unlock()
		return
	}
	since, total := q.dropsLog, q.dropped
	q.dropsLog = 0
	q.mu.Unlock()
	s.bus.log.Warn("eventbus: subscription queue full, dropping messages",
		slog.String("topic", s.topic.name), slog.String("subscription", s.name),
		slog.Int("capacity", s.capacity), slog.Uint64("dropped", since), slog.Uint64("dropped_total", total))
}

// push appends m to the ring. Callers hold q.mu and have checked for room.
func (q *queue) push(m *Message) {
	i := q.head + q.n
	if i >= len(q.buf) {
		i -= len(q.buf)
	}
	q.buf[i] = m
	q.n++
	if q.n > q.maxDepth {
		q.maxDepth = q.n
	}
}

// takeIdle reports whether the dispatcher must be woken, and marks it awake.
// Callers hold q.mu.
func (q *queue) takeIdle() bool {
	if !q.idle {
		return false
	}
	q.idle = false
	return true
}

// run is the dispatch loop: it takes every queued message in one go (without
// removing them, so that the depth counts messages being dispatched), calls
// the handler for each and then frees their slots. On the final message it
// stops; the last queue of the subscription to get there delivers it.
func (q *queue) run() {
	s := q.s
	size := len(q.buf)
	for {
		q.mu.Lock()
		for q.n == 0 {
			q.idle = true
			q.mu.Unlock()
			<-q.wake
			q.mu.Lock()
		}
		head, n := q.head, q.n
		q.mu.Unlock()

		// Slots head..head+n-1 belong to the dispatcher until release: publishers
		// write only past them.
		freed := 0
		for i := range n {
			j := head + i
			if j >= size {
				j -= size
			}
			m := q.buf[j]
			q.buf[j] = nil
			if m.final {
				q.release(i+1-freed, i-freed)
				if s.live.Add(-1) == 0 {
					s.dispatch(m)
					close(s.done)
				}
				return
			}
			s.dispatch(m)
			if q.pressure.Load() {
				q.release(i+1-freed, i+1-freed)
				freed = i + 1
			}
		}
		if n > freed {
			q.release(n-freed, n-freed)
		}
	}
}

// release frees k slots at the head of the ring, of which delivered held
// ordinary messages, and wakes blocked publishers.
func (q *queue) release(k, delivered int) {
	s := q.s
	q.mu.Lock()
	q.head += k
	if q.head >= len(q.buf) {
		q.head -= len(q.buf)
	}
	q.n -= k
	q.delivered += uint64(delivered)
	q.pressure.Store(false)
	if q.alerted && q.n <= s.lowMark {
		q.alerted = false
	}
	// Waking blocked publishers for each freed slot would cost a context
	// switch per message; wait for a chunk of free room. The dispatcher keeps
	// freeing slots as long as messages are queued, so the chunk always comes.
	if q.blocked > 0 && s.capacity-q.n >= s.resume {
		q.notFull.Broadcast()
	}
	q.mu.Unlock()
}

func (s *Subscription) dispatch(m *Message) {
	defer func() {
		if r := recover(); r != nil {
			s.panics.Add(1)
			s.bus.log.Error("eventbus: subscription handler panicked",
				slog.String("topic", s.topic.name), slog.String("subscription", s.name),
				slog.String("type", m.typ.Name()), slog.Any("panic", r), slog.String("stack", string(debug.Stack())))
		}
	}()
	s.handler(s, m.topic, m)
}
