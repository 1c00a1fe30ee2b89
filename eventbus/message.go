package eventbus

import "time"

// MessageType identifies a kind of message. Two message types are the same
// only if they are the same pointer: create each type once, usually as a
// package-level variable, and share it. The name is for people (logs, stats).
type MessageType struct{ name string }

// NewMessageType returns a new, distinct message type.
func NewMessageType(name string) *MessageType { return &MessageType{name: name} }

// Name returns the name the type was created with.
func (t *MessageType) Name() string {
	if t == nil {
		return ""
	}
	return t.name
}

// String returns the name of the type.
func (t *MessageType) String() string { return t.Name() }

// Type is a message type whose payload is a T. It removes the type switch and
// the type assertion from publishers and subscribers:
//
//	var DeviceState = eventbus.NewType[DeviceStateChange]("device_state")
//	DeviceState.Publish(topic, DeviceStateChange{Device: "alice", State: "INUSE"})
//	if v, ok := DeviceState.Payload(msg); ok { ... }
type Type[T any] struct{ mt *MessageType }

// NewType returns a new, distinct message type carrying T payloads.
func NewType[T any](name string) Type[T] { return Type[T]{mt: NewMessageType(name)} }

// MessageType returns the untyped identity of t, for routers, filters and caches.
func (t Type[T]) MessageType() *MessageType { return t.mt }

// Name returns the name of the type.
func (t Type[T]) Name() string { return t.mt.Name() }

// Publish publishes v on topic as a message of type t and returns the message.
func (t Type[T]) Publish(topic *Topic, v T) *Message { return topic.Publish(t.mt, v) }

// Is reports whether m is of type t.
func (t Type[T]) Is(m *Message) bool { return m != nil && m.typ == t.mt }

// Payload returns the payload of m if m is of type t.
func (t Type[T]) Payload(m *Message) (T, bool) {
	if m == nil || m.typ != t.mt {
		var zero T
		return zero, false
	}
	v, ok := m.payload.(T)
	return v, ok
}

// Message is one published event: a type, a payload, the time it was created
// and the topic it was first published to. Its fields cannot be changed after
// creation, so every subscriber sees the same message. The payload itself is
// shared by all subscribers: publish immutable values (values without
// pointers, or pointers to data nobody writes after publishing). A subscriber
// that wants to change a payload copies it first.
type Message struct {
	typ     *MessageType
	payload any
	time    time.Time
	topic   *Topic
	final   bool
}

// Type returns the message type.
func (m *Message) Type() *MessageType { return m.typ }

// Payload returns the payload. See Type.Payload for a typed accessor.
func (m *Message) Payload() any { return m.payload }

// Time returns the time the message was created, read from the bus clock.
// With the default clock it is the wall-clock time as of at most a second
// ago plus the monotonic time elapsed since: it has a monotonic reading, and
// follows a step of the system clock within a second.
func (m *Message) Time() time.Time { return m.time }

// Topic returns the topic the message was first published to. It is kept when
// the message is forwarded to other topics.
func (m *Message) Topic() *Topic { return m.topic }

// IsFinal reports whether m is the final message of the subscription it was
// delivered to: the last message that subscription will ever receive. Its type
// is SubscriptionChangeType. After its dispatch returns the subscription's
// Done channel is closed.
func (m *Message) IsFinal() bool { return m.final }

// SubscriptionChange is the payload of a final message.
type SubscriptionChange struct {
	// Subscription is the subscription that ended.
	Subscription *Subscription
	// Topic is the topic it was subscribed to.
	Topic *Topic
}

// SubscriptionChangeType is the type of the final message delivered to a
// subscription when it is unsubscribed.
var SubscriptionChangeType = NewType[SubscriptionChange]("eventbus.subscription_change")
