// Package eventbus is an in-process publish/subscribe message bus modelled on
// Asterisk's Stasis: publishers publish typed messages on named topics and
// subscribers receive them asynchronously, each through a bounded queue of
// its own.
//
// # Concepts
//
//   - A Topic is a named stream of messages (Bus.Topic for registered topics,
//     Bus.NewTopic for per-object topics).
//   - A Message has a type (MessageType, or a typed Type[T]), a payload, the
//     time it was created and the topic it was first published to. Its fields
//     have getters only.
//   - A Subscription receives a topic's messages in a Handler that gets the
//     subscription, the original topic and the message.
//   - A Router is a subscription with one handler per message type and a
//     default route.
//   - Forward links a topic into another (per-object topics into an "all"
//     topic); the message keeps its original topic.
//   - A Cache keeps the last message per object id for one type, queryable at
//     any time, and publishes each change as a CacheUpdate (old, new).
//
// # Guarantees
//
//   - Ordered: a subscription receives messages in the order they were
//     published. A topic serializes its publishers, so all subscribers of a
//     topic see the same order; messages published by one goroutine arrive in
//     the order that goroutine published them.
//   - Serialized: a subscription's handler is called for one message at a
//     time; the next call starts after the previous returned. A handler needs
//     no lock for state only it touches.
//   - Asynchronous: handlers run on the subscription's own goroutine, never on
//     the publisher's. Publish returns once the message is enqueued everywhere.
//   - Immutable: a message cannot be changed after it is created, so no
//     subscriber can change what another sees. Payloads are shared, not copied:
//     publish values that nobody writes afterwards.
//   - Final message last: Unsubscribe enqueues a final message (IsFinal) after
//     everything already queued; it is the last message the handler receives,
//     and the Done channel is closed once it has been dispatched. That is the
//     moment to release what the handler uses.
//   - Bounded and isolated: each subscription holds at most its capacity of
//     messages. When it is full, the declared OverflowPolicy applies: Drop
//     (the default) discards the message for that subscription only, counts it
//     and logs; Block makes the publisher wait. A slow or stuck Drop
//     subscriber never delays publishers or other subscribers. Each
//     subscription reports its depth, high-water mark, delivered and dropped
//     counts (Stats), and logs a warning when its depth reaches a high-water
//     mark.
//
// A subscription may opt into dispatch sharded by key (WithShards): one
// queue and goroutine per shard, ordered and serialized per key (a device, a
// call), parallel across keys; the final message still comes last.
//
// Handlers that panic are recovered, logged and counted; dispatching goes on.
//
// # Costs
//
// A subscription is one goroutine and a ring of capacity+1 pointers (per
// shard). A
// delivery allocates nothing: the only allocation of a publish is the message
// itself (plus boxing the payload into an interface when it is not a pointer).
//
// The lock order is written in LOCKS.md.
package eventbus
