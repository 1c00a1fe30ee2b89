package eventbus

import (
	"fmt"
	"maps"
	"slices"
	"sync"
)

// CacheUpdate is the payload published on a cache's topic each time an entry
// changes. Old is nil when the id was not cached; New is nil when the entry
// was removed (the object ended).
type CacheUpdate struct {
	ID       string
	Old, New *Message
}

// CacheUpdateType is the type of the messages a cache publishes on its topic.
var CacheUpdateType = NewType[CacheUpdate]("eventbus.cache_update")

// CacheClear is the payload of a message that removes an entry from the caches
// of Type attached to the topic it is published on (and to the topics that
// topic forwards to). Publish it with PublishClear when an object ends.
type CacheClear struct {
	Type *MessageType
	ID   string
}

// CacheClearType is the type of the messages published by PublishClear.
var CacheClearType = NewType[CacheClear]("eventbus.cache_clear")

// PublishClear publishes on t a message telling the caches of typ to forget
// id. Subscribers of t see it too: it is the "object ended" event, in order
// with the object's other messages.
func PublishClear(t *Topic, typ *MessageType, id string) *Message {
	return CacheClearType.Publish(t, CacheClear{Type: typ, ID: id})
}

// Cache keeps the last message of one type per object id, as seen on a source
// topic (including what other topics forward to it). It is updated while the
// message is published, before Publish returns, so a query made after Publish
// returns sees the message. Each change is published as a CacheUpdate (old and
// new message) on the cache's own topic, in the order of the source topic.
type Cache struct {
	src   *Topic
	typ   *MessageType
	key   func(*Message) string
	topic *Topic

	mu      sync.RWMutex
	entries map[string]*Message
}

// NewCache attaches a cache of messages of type typ to src. key returns the
// object id of a message; a message with an empty id is not cached. key runs
// while src's publish lock is held: it must be a quick, pure function of the
// message and must not use the bus.
func NewCache(src *Topic, typ *MessageType, key func(*Message) string) (*Cache, error) {
	if typ == nil || key == nil {
		return nil, fmt.Errorf("eventbus: cache on %q: nil type or key: %w", src.name, ErrInvalidOption)
	}
	b := src.bus
	if b.isClosed() {
		return nil, ErrClosed
	}
	c := &Cache{
		src:     src,
		typ:     typ,
		key:     key,
		topic:   newTopic(b, src.name+"/cache"),
		entries: make(map[string]*Message),
	}
	b.graphMu.Lock()
	src.change(func(f *fanout) { f.caches = append(f.caches, c) })
	b.graphMu.Unlock()
	return c, nil
}

// CacheKey adapts a function of the typed payload to a cache key function.
func CacheKey[T any](typ Type[T], fn func(v T) string) func(*Message) string {
	return func(m *Message) string {
		v, ok := typ.Payload(m)
		if !ok {
			return ""
		}
		return fn(v)
	}
}

// Topic returns the topic on which the cache publishes its CacheUpdate
// messages. Subscribe to it to follow changes as old/new pairs.
func (c *Cache) Topic() *Topic { return c.topic }

// Get returns the last message cached for id.
func (c *Cache) Get(id string) (*Message, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	m, ok := c.entries[id]
	return m, ok
}

// Snapshot returns a copy of all entries, by id.
func (c *Cache) Snapshot() map[string]*Message {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return maps.Clone(c.entries)
}

// IDs returns the cached ids in ascending order.
func (c *Cache) IDs() []string {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return slices.Sorted(maps.Keys(c.entries))
}

// Len returns the number of cached ids.
func (c *Cache) Len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.entries)
}

// Close detaches the cache from its source topic; it keeps its entries but no
// longer changes. Close is idempotent.
func (c *Cache) Close() {
	b := c.src.bus
	b.graphMu.Lock()
	defer b.graphMu.Unlock()
	c.src.change(func(f *fanout) {
		f.caches = slices.DeleteFunc(f.caches, func(x *Cache) bool { return x == c })
	})
}

// update runs under the source topic's publish lock, so updates are applied
// and published in the source topic's order.
func (c *Cache) update(m *Message) {
	var id string
	var next *Message
	switch m.typ {
	case c.typ:
		id, next = c.key(m), m
	case CacheClearType.mt:
		cl, _ := m.payload.(CacheClear)
		if cl.Type != c.typ {
			return
		}
		id = cl.ID
	default:
		return
	}
	if id == "" {
		return
	}
	c.mu.Lock()
	old := c.entries[id]
	if next != nil {
		c.entries[id] = next
	} else {
		delete(c.entries, id)
	}
	c.mu.Unlock()
	if old == nil && next == nil {
		return
	}
	c.topic.publish(&Message{
		typ:     CacheUpdateType.mt,
		payload: CacheUpdate{ID: id, Old: old, New: next},
		time:    m.time,
		topic:   c.topic,
	})
}
