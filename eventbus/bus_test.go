package eventbus

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/benbjohnson/clock"
)

var (
	typA = NewMessageType("a")
	typB = NewMessageType("b")
	typC = NewMessageType("c")
)

type seqMsg struct{ pub, seq int }

var seqType = NewType[seqMsg]("seq")

// Many publishers, several subscribers: each subscriber sees every publisher's
// messages in that publisher's order, and all subscribers see one and the
// same interleaving (the topic's order).
func TestOrderingConcurrentPublishers(t *testing.T) {
	const publishers, perPublisher, subscribers = 8, 2000, 4
	b := New()
	closeBus(t, b)
	topic := b.Topic("order")
	cols := make([]*collector, subscribers)
	for i := range cols {
		cols[i] = &collector{}
		// A small Block queue: publishers keep waiting on each other and on the
		// dispatchers, which is where an ordering bug would show.
		_, err := topic.Subscribe(cols[i].handle, WithCapacity(16), WithOverflow(Block))
		noErr(t, err)
	}
	var wg sync.WaitGroup
	for p := range publishers {
		wg.Go(func() {
			for s := range perPublisher {
				seqType.Publish(topic, seqMsg{pub: p, seq: s})
			}
		})
	}
	wg.Wait()
	for _, c := range cols {
		checkFor(t, "all deliveries", func() bool { return c.len() == publishers*perPublisher })
	}
	first := cols[0].payloads()
	for i, c := range cols {
		next := make([]int, publishers)
		got := c.payloads()
		for _, p := range got {
			v := p.(seqMsg)
			equal(t, next[v.pub], v.seq, "subscriber %d: publisher %d out of order", i, v.pub)
			next[v.pub]++
		}
		for j := range got {
			if got[j] != first[j] {
				t.Fatalf("subscriber %d saw another interleaving than subscriber 0 at message %d: %v, %v", i, j, got[j], first[j])
			}
		}
	}
}

// The handler of one subscription never runs twice at the same time. The
// plain counter also lets the race detector see overlapping calls.
func TestSerializedDispatch(t *testing.T) {
	b := New()
	closeBus(t, b)
	topic := b.Topic("serial")
	var inflight, overlaps atomic.Int32
	plain := 0
	sub, err := topic.Subscribe(func(_ *Subscription, _ *Topic, m *Message) {
		if m.IsFinal() {
			return
		}
		if inflight.Add(1) != 1 {
			overlaps.Add(1)
		}
		plain++
		runtime.Gosched()
		inflight.Add(-1)
	}, WithOverflow(Block), WithCapacity(8))
	noErr(t, err)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 500 {
				topic.Publish(typA, nil)
			}
		})
	}
	wg.Wait()
	waitClosed(t, "final", sub.Unsubscribe())
	equal(t, 0, overlaps.Load(), "overlapping dispatches")
	equal(t, 4000, plain)
	equal(t, 4000, sub.Stats().Delivered)
}

// The final message is the last one, even while publishers keep publishing,
// and Done is closed only after its dispatch returned.
func TestFinalMessageIsLast(t *testing.T) {
	for _, policy := range []OverflowPolicy{Drop, Block} {
		t.Run(policy.String(), func(t *testing.T) {
			b := New()
			closeBus(t, b)
			topic := b.Topic("final")
			for round := range 30 {
				c := &collector{}
				var finalReturned atomic.Bool
				sub, err := topic.Subscribe(func(s *Subscription, tp *Topic, m *Message) {
					c.handle(s, tp, m)
					if m.IsFinal() {
						runtime.Gosched()
						finalReturned.Store(true)
					}
				}, WithCapacity(4), WithOverflow(policy))
				noErr(t, err)
				stop := make(chan struct{})
				var wg sync.WaitGroup
				stopped := false
				stopPublishers := func() {
					if !stopped {
						stopped = true
						close(stop)
						wg.Wait()
					}
				}
				defer stopPublishers() // also when an assertion ends the test early
				for range 4 {
					wg.Go(func() {
						for {
							select {
							case <-stop:
								return
							default:
								topic.Publish(typA, round)
							}
						}
					})
				}
				checkFor(t, "some deliveries", func() bool { return c.len() > 10 })
				done := sub.Unsubscribe()
				waitClosed(t, "done", done)
				isTrue(t, finalReturned.Load(), "Done closed before the final dispatch returned")
				n := c.len()
				// Publishers are still running: nothing may arrive any more.
				for range 100 {
					topic.Publish(typA, round)
				}
				stopPublishers()
				c.mu.Lock()
				isTrue(t, c.final)
				equal(t, 0, c.after, "messages delivered after the final one")
				equal(t, n, len(c.msgs))
				c.mu.Unlock()
				equal(t, 0, topic.Subscribers())
			}
		})
	}
}

func TestFinalMessageContents(t *testing.T) {
	mock := clock.NewMock()
	b := New(WithClock(mock))
	closeBus(t, b)
	topic := b.Topic("final")
	got := make(chan *Message, 1)
	var sub *Subscription
	sub, err := topic.Subscribe(func(_ *Subscription, _ *Topic, m *Message) {
		if m.IsFinal() {
			got <- m
		}
	})
	noErr(t, err)
	mock.Add(time.Minute)
	sub.Unsubscribe()
	m := recv(t, got)
	isTrue(t, SubscriptionChangeType.Is(m))
	v, ok := SubscriptionChangeType.Payload(m)
	isTrue(t, ok)
	same(t, sub, v.Subscription)
	same(t, topic, v.Topic)
	same(t, topic, m.Topic())
	equal(t, mock.Now(), m.Time())
	// Idempotent: the same channel, no second final message.
	equal(t, sub.Done(), sub.Unsubscribe())
}

// Unsubscribe from inside the handler: the rest of the queue, then the final
// message, then nothing.
func TestUnsubscribeFromHandler(t *testing.T) {
	b := New()
	closeBus(t, b)
	topic := b.Topic("self")
	c := &collector{}
	sub, err := topic.Subscribe(func(s *Subscription, tp *Topic, m *Message) {
		c.handle(s, tp, m)
		if m.Payload() == 3 {
			s.Unsubscribe()
		}
	}, WithOverflow(Block), WithCapacity(2))
	noErr(t, err)
	for i := range 10 {
		topic.Publish(typA, i)
	}
	waitClosed(t, "done", sub.Done())
	c.mu.Lock()
	defer c.mu.Unlock()
	isTrue(t, c.final)
	equal(t, 0, c.after)
	// 0..3 at least; what was queued when Unsubscribe ran is still delivered, in order.
	isTrue(t, len(c.msgs) >= 4)
	for i, m := range c.msgs {
		equal(t, i, m.Payload())
	}
}

// A Block publisher waiting on a full queue is released by Unsubscribe, and
// Unsubscribe does not wait for it.
func TestUnsubscribeReleasesBlockedPublisher(t *testing.T) {
	b := New()
	closeBus(t, b)
	topic := b.Topic("blocked")
	gate, open := newGate(t)
	sub, err := topic.Subscribe(func(_ *Subscription, _ *Topic, m *Message) {
		if !m.IsFinal() {
			<-gate
		}
	}, WithCapacity(1), WithOverflow(Block))
	noErr(t, err)
	topic.Publish(typA, 1) // being dispatched, holds the only slot
	published := make(chan struct{})
	go func() {
		topic.Publish(typA, 2)
		close(published)
	}()
	checkFor(t, "publisher blocked", func() bool {
		q := sub.queues[0]
		q.mu.Lock()
		defer q.mu.Unlock()
		return q.blocked == 1
	})
	done := sub.Unsubscribe()
	waitClosed(t, "publisher released", published)
	open()
	waitClosed(t, "done", done)
	equal(t, 1, sub.Stats().Delivered)
}

// Block: the publisher waits for room and nothing is lost.
func TestBlockPolicyWaits(t *testing.T) {
	b := New()
	closeBus(t, b)
	topic := b.Topic("block")
	gate, open := newGate(t)
	c := &collector{}
	sub, err := topic.Subscribe(func(s *Subscription, tp *Topic, m *Message) {
		if m.Payload() == 0 {
			<-gate
		}
		c.handle(s, tp, m)
	}, WithCapacity(2), WithOverflow(Block))
	noErr(t, err)
	published := make(chan struct{})
	go func() {
		for i := range 5 {
			topic.Publish(typA, i)
		}
		close(published)
	}()
	checkFor(t, "publisher blocked", func() bool {
		q := sub.queues[0]
		q.mu.Lock()
		defer q.mu.Unlock()
		return q.blocked == 1 && q.n == 2
	})
	select {
	case <-published:
		t.Fatal("publisher went past a full Block queue")
	default:
	}
	open()
	waitClosed(t, "publisher", published)
	checkFor(t, "deliveries", func() bool { return c.len() == 5 })
	equal(t, []any{0, 1, 2, 3, 4}, c.payloads())
	st := sub.Stats()
	equal(t, 0, st.Dropped)
	equal(t, 2, st.HighWater)
}

// A stuck subscriber with the Drop policy: the publisher never waits, the
// other subscriber gets everything, every drop is counted and logged at a
// bounded rate.
func TestSlowSubscriberIsolation(t *testing.T) {
	mock := clock.NewMock()
	logger, logs := newLogger()
	b := New(WithClock(mock), WithLogger(logger))
	closeBus(t, b)
	topic := b.Topic("isolation")
	gate, open := newGate(t)
	entered := make(chan struct{}, 1)
	stuck, err := topic.Subscribe(func(_ *Subscription, _ *Topic, m *Message) {
		if m.IsFinal() {
			return
		}
		select {
		case entered <- struct{}{}:
		default:
		}
		<-gate
	}, WithName("stuck"), WithCapacity(8))
	noErr(t, err)
	fast := &collector{}
	_, err = topic.Subscribe(fast.handle, WithName("fast"), WithOverflow(Block), WithCapacity(8))
	noErr(t, err)

	topic.Publish(typA, -1)
	recv(t, entered) // the stuck handler holds message -1; the queue counts it
	published := make(chan struct{})
	go func() {
		for i := range 100 {
			topic.Publish(typA, i)
		}
		close(published)
	}()
	waitClosed(t, "publisher (must not wait for a stuck Drop subscriber)", published)
	checkFor(t, "fast subscriber", func() bool { return fast.len() == 101 })

	st := stuck.Stats()
	equal(t, 8, st.Depth)
	equal(t, 8, st.HighWater)
	equal(t, 101-8, st.Dropped)
	equal(t, 0, st.Delivered)
	equal(t, 1, logs.count("dropping messages"), "drop log not rate-limited")

	mock.Add(DefaultDropLogInterval)
	topic.Publish(typA, 100)
	equal(t, 2, logs.count("dropping messages"))
	equal(t, 101-8+1, stuck.Stats().Dropped)

	open()
	checkFor(t, "stuck drains", func() bool { return stuck.Stats().Delivered == 8 })
	equal(t, 0, stuck.Stats().Depth)
}

func TestHighWaterWarning(t *testing.T) {
	mock := clock.NewMock()
	logger, logs := newLogger()
	b := New(WithLogger(logger), WithClock(mock))
	closeBus(t, b)
	topic := b.Topic("hw")
	gate, open := newGate(t)
	sub, err := topic.Subscribe(func(_ *Subscription, _ *Topic, m *Message) {
		if !m.IsFinal() {
			<-gate
		}
	}, WithName("slow"), WithCapacity(10), WithHighWater(5))
	noErr(t, err)
	fill := func() {
		for i := range 7 {
			topic.Publish(typA, i)
		}
	}
	drain := func() {
		gate <- struct{}{} // the message being dispatched when the queue filled
		for {
			select {
			case gate <- struct{}{}:
			default:
				if sub.Stats().Depth == 0 {
					return
				}
				runtime.Gosched()
			}
		}
	}
	for i := range 4 {
		topic.Publish(typA, i)
	}
	equal(t, 0, logs.count("high-water"))
	topic.Publish(typA, 4)
	equal(t, 1, logs.count("high-water"))
	topic.Publish(typA, 5)
	topic.Publish(typA, 6)
	equal(t, 1, logs.count("high-water"), "warning repeated before the depth fell")
	equal(t, 1, logs.count("subscription=slow"))

	drain()
	fill() // crosses again within the interval: counted in Stats, not logged
	equal(t, 1, logs.count("high-water"), "warning not rate-limited")
	drain()
	mock.Add(DefaultDropLogInterval)
	fill()
	equal(t, 2, logs.count("high-water"), "warning not re-armed")
	equal(t, 7, sub.Stats().HighWater)
	open()
	waitClosed(t, "final", sub.Unsubscribe())
}

func TestHandlerPanicIsContained(t *testing.T) {
	logger, logs := newLogger()
	b := New(WithLogger(logger))
	closeBus(t, b)
	topic := b.Topic("panic")
	c := &collector{}
	sub, err := topic.Subscribe(func(s *Subscription, tp *Topic, m *Message) {
		if m.Payload() == 1 {
			panic("boom")
		}
		c.handle(s, tp, m)
	})
	noErr(t, err)
	for i := range 3 {
		topic.Publish(typA, i)
	}
	checkFor(t, "deliveries", func() bool { return c.len() == 2 })
	equal(t, []any{0, 2}, c.payloads())
	equal(t, 1, sub.Stats().Panics)
	equal(t, 1, logs.count("panicked"))
}

func TestMessageFields(t *testing.T) {
	mock := clock.NewMock()
	b := New(WithClock(mock))
	closeBus(t, b)
	topic := b.Topic("fields")
	got := make(chan *Message, 1)
	var gotTopic *Topic
	_, err := topic.Subscribe(func(_ *Subscription, tp *Topic, m *Message) {
		if !m.IsFinal() {
			gotTopic = tp
			got <- m
		}
	})
	noErr(t, err)
	mock.Add(time.Hour)
	sent := seqType.Publish(topic, seqMsg{pub: 1, seq: 2})
	m := recv(t, got)
	same(t, sent, m)
	same(t, topic, gotTopic)
	same(t, topic, m.Topic())
	same(t, seqType.MessageType(), m.Type())
	equal(t, "seq", m.Type().Name())
	equal(t, mock.Now(), m.Time())
	isTrue(t, !m.IsFinal())
	v, ok := seqType.Payload(m)
	isTrue(t, ok)
	equal(t, seqMsg{1, 2}, v)
	_, ok = SubscriptionChangeType.Payload(m)
	isTrue(t, !ok)
	panics(t, func() { topic.Publish(nil, 1) })
}

func TestWithTypesFilters(t *testing.T) {
	b := New()
	closeBus(t, b)
	topic := b.Topic("filter")
	c := &collector{}
	sub, err := topic.Subscribe(c.handle, WithTypes(typA, typC))
	noErr(t, err)
	topic.Publish(typA, 1)
	topic.Publish(typB, 2)
	topic.Publish(typC, 3)
	waitClosed(t, "done", sub.Unsubscribe())
	equal(t, []any{1, 3}, c.payloads())
	isTrue(t, c.final)
	isTrue(t, sub.Stats().HighWater <= 3, "typB enqueued") // a, c, final
}

func TestSubscribeOptionErrors(t *testing.T) {
	b := New()
	closeBus(t, b)
	topic := b.Topic("opts")
	noop := func(*Subscription, *Topic, *Message) {}
	for _, tc := range []struct {
		name string
		h    Handler
		opts []SubscribeOption
	}{
		{"nil handler", nil, nil},
		{"zero capacity", noop, []SubscribeOption{WithCapacity(0)}},
		{"high-water above capacity", noop, []SubscribeOption{WithCapacity(4), WithHighWater(5)}},
		{"negative high-water", noop, []SubscribeOption{WithHighWater(-1)}},
		{"unknown policy", noop, []SubscribeOption{WithOverflow(OverflowPolicy(7))}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := topic.Subscribe(tc.h, tc.opts...)
			errIs(t, err, ErrInvalidOption)
		})
	}
	equal(t, "OverflowPolicy(7)", OverflowPolicy(7).String())
}

func TestBusClose(t *testing.T) {
	b := New()
	topic := b.Topic("close")
	cols := make([]*collector, 3)
	for i := range cols {
		cols[i] = &collector{}
		_, err := topic.Subscribe(cols[i].handle, WithName(fmt.Sprint(i)))
		noErr(t, err)
	}
	topic.Publish(typA, 1)
	equal(t, 3, len(b.Stats()))
	equal(t, "0", b.Stats()[0].Name)
	noErr(t, b.Close(t.Context()))
	for _, c := range cols {
		isTrue(t, c.final)
		equal(t, 1, c.len())
	}
	equal(t, 0, len(b.Stats()))
	_, err := topic.Subscribe(cols[0].handle)
	errIs(t, err, ErrClosed)
	_, err = NewRouter(topic)
	errIs(t, err, ErrClosed)
	_, err = Forward(topic, b.Topic("x"))
	errIs(t, err, ErrClosed)
	_, err = NewCache(topic, typA, func(*Message) string { return "" })
	errIs(t, err, ErrClosed)
	topic.Publish(typA, 2) // reaches nobody, does not block
	noErr(t, b.Close(t.Context()))
}

func TestBusCloseContext(t *testing.T) {
	b := New()
	gate, open := newGate(t)
	_, err := b.Topic("stuck").Subscribe(func(_ *Subscription, _ *Topic, m *Message) {
		if !m.IsFinal() {
			<-gate
		}
	})
	noErr(t, err)
	b.Topic("stuck").Publish(typA, nil)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	isTrue(t, errors.Is(b.Close(ctx), context.Canceled))
	open()
	noErr(t, b.Close(t.Context()))
}

func TestTopicRegistry(t *testing.T) {
	b := New()
	closeBus(t, b)
	same(t, b.Topic("x"), b.Topic("x"))
	isTrue(t, b.NewTopic("x") != b.Topic("x"))
	equal(t, "x", b.Topic("x").Name())
	equal(t, "x", b.Topic("x").String())
	same(t, b, b.Topic("x").Bus())
}

func TestAnchoredClock(t *testing.T) {
	c := newAnchoredClock()
	prev := c.Now()
	for range 1000 {
		now := c.Now()
		isTrue(t, !now.Before(prev), "time went back")
		prev = now
	}
	// Close to the wall clock, and re-anchored once the anchor is old.
	d := time.Since(c.Now())
	isTrue(t, d > -time.Millisecond && d < time.Second, "far from time.Now: %v", d)
	old := time.Now().Add(-2 * anchorEvery)
	c.anchor.Store(&old)
	got := c.Now()
	isTrue(t, got.Sub(old) >= 2*anchorEvery && c.anchor.Load() != &old, "not re-anchored")
	_, isMock := New(WithClock(clock.NewMock())).Clock().(*clock.Mock)
	isTrue(t, isMock)
}
