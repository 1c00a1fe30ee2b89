package eventbus

import (
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
)

// Topic is a named stream of messages. Publishing on a topic delivers the
// message to every subscription of the topic, to the caches attached to it and
// to the topics it forwards to, all before Publish returns. A topic has one
// total order: concurrent publishers are serialized, so every subscriber of
// a topic sees its messages in the same order.
type Topic struct {
	bus  *Bus
	name string

	// pub serializes publishing, which gives the topic its single order.
	// It is held while messages are enqueued, never while user handlers run.
	pub sync.Mutex
	// out is the current fan-out, replaced (copy on write) under bus.graphMu.
	out atomic.Pointer[fanout]
}

// fanout is what a publish on a topic reaches. It is immutable once stored.
type fanout struct {
	subs     []*Subscription
	caches   []*Cache
	forwards []*Topic
}

func newTopic(b *Bus, name string) *Topic {
	t := &Topic{bus: b, name: name}
	t.out.Store(&fanout{})
	return t
}

// Name returns the topic's name.
func (t *Topic) Name() string { return t.name }

// String returns the topic's name.
func (t *Topic) String() string { return t.name }

// Bus returns the bus the topic belongs to.
func (t *Topic) Bus() *Bus { return t.bus }

// Publish creates a message of type typ with payload, stamped with the bus
// clock, and publishes it on t. It returns the message. Publish never waits
// for a handler; it waits only for a subscription that chose the Block
// overflow policy and whose queue is full. Payloads must be immutable
// (see Message). A nil typ is a programming error and panics.
func (t *Topic) Publish(typ *MessageType, payload any) *Message {
	if typ == nil {
		panic("eventbus: Publish with a nil message type")
	}
	m := &Message{typ: typ, payload: payload, time: t.bus.clock.Now(), topic: t}
	t.publish(m)
	return m
}

// PublishMessage publishes an existing message on t, for instance one
// received from another topic. The message keeps its original topic, time and
// payload. Final messages belong to their subscription and are ignored.
func (t *Topic) PublishMessage(m *Message) {
	if m == nil || m.final {
		return
	}
	t.publish(m)
}

// Subscribers returns the number of subscriptions of t.
func (t *Topic) Subscribers() int { return len(t.out.Load().subs) }

func (t *Topic) publish(m *Message) {
	f := t.out.Load()
	if len(f.subs) == 1 && len(f.caches) == 0 && len(f.forwards) == 0 {
		// One receiver: its queue lock orders the messages by itself. A message
		// that also reaches a subscriber added meanwhile was published with
		// the lock below, so subscribers still share one order.
		f.subs[0].enqueue(m)
		return
	}
	t.pub.Lock()
	f = t.out.Load()
	for _, s := range f.subs {
		s.enqueue(m)
	}
	for _, c := range f.caches {
		c.update(m)
	}
	for _, d := range f.forwards {
		d.publish(m)
	}
	t.pub.Unlock()
}

// change replaces t's fan-out with edit applied to a copy. Callers hold
// bus.graphMu.
func (t *Topic) change(edit func(f *fanout)) {
	old := t.out.Load()
	f := &fanout{
		subs:     slices.Clone(old.subs),
		caches:   slices.Clone(old.caches),
		forwards: slices.Clone(old.forwards),
	}
	edit(f)
	t.out.Store(f)
}

// reaches reports whether a message published on t can arrive at dst.
// Callers hold bus.graphMu.
func (t *Topic) reaches(dst *Topic) bool {
	if t == dst {
		return true
	}
	f := t.out.Load()
	for _, d := range f.forwards {
		if d.reaches(dst) {
			return true
		}
	}
	for _, c := range f.caches {
		if c.topic.reaches(dst) {
			return true
		}
	}
	return false
}

// Forwarding links a source topic to a destination topic; see Forward.
type Forwarding struct {
	from, to *Topic
	once     sync.Once
}

// Forward makes every message published on from also published on to, after
// from's own subscribers and caches and before Publish returns. The message
// keeps from (or whatever topic it was first published to) as its Topic. This
// is how per-object topics feed an "all" topic. A link that would close a
// cycle returns ErrCycle; the same link twice returns ErrDuplicate.
func Forward(from, to *Topic) (*Forwarding, error) {
	if from.bus != to.bus {
		return nil, fmt.Errorf("eventbus: forward %q to %q: %w", from.name, to.name, ErrForeignTopic)
	}
	b := from.bus
	if b.isClosed() {
		return nil, ErrClosed
	}
	b.graphMu.Lock()
	defer b.graphMu.Unlock()
	if slices.Contains(from.out.Load().forwards, to) {
		return nil, fmt.Errorf("eventbus: forward %q to %q: %w", from.name, to.name, ErrDuplicate)
	}
	if to.reaches(from) {
		return nil, fmt.Errorf("eventbus: forward %q to %q: %w", from.name, to.name, ErrCycle)
	}
	from.change(func(f *fanout) { f.forwards = append(f.forwards, to) })
	return &Forwarding{from: from, to: to}, nil
}

// Cancel removes the link. Messages published on the source after Cancel
// returns are not forwarded. Cancel is idempotent.
func (fw *Forwarding) Cancel() {
	fw.once.Do(func() {
		b := fw.from.bus
		b.graphMu.Lock()
		defer b.graphMu.Unlock()
		fw.from.change(func(f *fanout) {
			f.forwards = slices.DeleteFunc(f.forwards, func(d *Topic) bool { return d == fw.to })
		})
	})
}
