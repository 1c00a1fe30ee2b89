package eventbus

import (
	"sync"
	"testing"
)

func TestRouterRoutesAndDefault(t *testing.T) {
	b := New()
	closeBus(t, b)
	topic := b.Topic("router")
	r, err := NewRouter(topic)
	noErr(t, err)
	var mu sync.Mutex
	var got []string
	record := func(route string) Handler {
		return func(_ *Subscription, _ *Topic, m *Message) {
			mu.Lock()
			defer mu.Unlock()
			if m.IsFinal() {
				got = append(got, route+":final")
				return
			}
			got = append(got, route+":"+m.Type().Name())
		}
	}
	noErr(t, r.Add(typA, record("A")))
	noErr(t, Route(r, seqType, func(m *Message, v seqMsg) {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, "seq:"+m.Type().Name())
		equal(t, seqMsg{1, 2}, v)
	}))
	r.SetDefault(record("default"))
	errIs(t, r.Add(typA, record("again")), ErrDuplicate)
	errIs(t, r.Add(nil, record("nil")), ErrInvalidOption)
	errIs(t, Route[seqMsg](r, NewType[seqMsg]("other"), nil), ErrInvalidOption)

	topic.Publish(typB, nil)
	topic.Publish(typA, nil)
	seqType.Publish(topic, seqMsg{1, 2})
	topic.Publish(typC, nil)
	waitClosed(t, "done", r.Unsubscribe())
	isTrue(t, r.Subscription().Done() == r.Done())
	mu.Lock()
	defer mu.Unlock()
	equal(t, []string{"default:b", "A:a", "seq:seq", "default:c", "default:final"}, got)
}

// The final message goes to a SubscriptionChangeType route before the default.
func TestRouterFinalRoute(t *testing.T) {
	b := New()
	closeBus(t, b)
	r, err := NewRouter(b.Topic("router"))
	noErr(t, err)
	finals := make(chan string, 2)
	r.SetDefault(func(_ *Subscription, _ *Topic, m *Message) {
		if m.IsFinal() {
			finals <- "default"
		}
	})
	noErr(t, Route(r, SubscriptionChangeType, func(m *Message, v SubscriptionChange) {
		same(t, r.Subscription(), v.Subscription)
		finals <- "change"
	}))
	waitClosed(t, "done", r.Unsubscribe())
	equal(t, "change", recv(t, finals))
	equal(t, 0, len(finals))
}

// Asterisk PR #1529: without a default route, a type nobody routes is never
// enqueued: it takes no queue room, is neither delivered nor dropped.
func TestRouterUnhandledTypeNeverEnqueued(t *testing.T) {
	b := New()
	closeBus(t, b)
	topic := b.Topic("router")
	r, err := NewRouter(topic, WithCapacity(2))
	noErr(t, err)
	gate, open := newGate(t)
	var mu sync.Mutex
	var got []any
	noErr(t, r.Add(typA, func(_ *Subscription, _ *Topic, m *Message) {
		<-gate
		mu.Lock()
		got = append(got, m.Payload())
		mu.Unlock()
	}))
	topic.Publish(typA, 1) // dispatching, blocks on gate
	for i := range 100 {
		topic.Publish(typB, i) // would overflow a 2-slot queue if it were enqueued
	}
	topic.Publish(typA, 2)
	st := r.Subscription().Stats()
	equal(t, 2, st.Depth)
	equal(t, 0, st.Dropped)
	equal(t, 2, st.HighWater)
	open()
	waitClosed(t, "done", r.Unsubscribe())
	equal(t, []any{1, 2}, got)
	equal(t, 2, r.Subscription().Stats().Delivered)
	equal(t, 0, r.Subscription().Stats().Dropped)
}

// A default route turns filtering off; routes added later take effect.
func TestRouterDefaultAcceptsAll(t *testing.T) {
	b := New()
	closeBus(t, b)
	topic := b.Topic("router")
	r, err := NewRouter(topic)
	noErr(t, err)
	c := &collector{}
	topic.Publish(typB, 0) // no route yet: filtered out
	r.SetDefault(c.handle)
	topic.Publish(typB, 1)
	topic.Publish(typC, 2)
	waitClosed(t, "done", r.Unsubscribe())
	equal(t, []any{1, 2}, c.payloads())
	isTrue(t, c.final)
}

func TestRouterOptions(t *testing.T) {
	b := New()
	closeBus(t, b)
	_, err := NewRouter(b.Topic("router"), WithCapacity(0))
	errIs(t, err, ErrInvalidOption)
	// WithTypes and routes combine: both must accept.
	topic := b.Topic("router")
	r, err := NewRouter(topic, WithTypes(typA))
	noErr(t, err)
	c := &collector{}
	r.SetDefault(c.handle)
	topic.Publish(typA, 1)
	topic.Publish(typB, 2)
	waitClosed(t, "done", r.Unsubscribe())
	equal(t, []any{1}, c.payloads())
}
