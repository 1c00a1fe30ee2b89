package eventbus

import (
	"fmt"
	"maps"
	"sync"
	"sync/atomic"
)

// Router is a subscription that calls one handler per message type, with an
// optional default handler for the other types. It has the guarantees of a
// plain subscription (ordered, serialized, final message last).
//
// The router filters at publish time: a message whose type has no route is not
// enqueued at all when there is no default route, so it neither takes queue
// room nor counts as delivered or dropped. Routes added later apply to
// messages published from then on.
//
// The final message goes to the route for SubscriptionChangeType if there is
// one, else to the default route; the router's Done channel is closed after
// it in any case.
type Router struct {
	sub   *Subscription
	mu    sync.Mutex // serializes route changes
	table atomic.Pointer[routeTable]
}

type routeTable struct {
	routes map[*MessageType]Handler
	def    Handler
}

// NewRouter subscribes a router to t. Options are those of Subscribe.
func NewRouter(t *Topic, opts ...SubscribeOption) (*Router, error) {
	r := &Router{}
	r.table.Store(&routeTable{routes: map[*MessageType]Handler{}})
	sub, err := t.subscribe(r.dispatch, r.accepts, opts)
	if err != nil {
		return nil, err
	}
	r.sub = sub
	return r, nil
}

// Add routes messages of type typ to h. A second route for the same type
// returns ErrDuplicate.
func (r *Router) Add(typ *MessageType, h Handler) error {
	if typ == nil || h == nil {
		return fmt.Errorf("eventbus: router on %q: nil type or handler: %w", r.sub.topic.name, ErrInvalidOption)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	old := r.table.Load()
	if _, ok := old.routes[typ]; ok {
		return fmt.Errorf("eventbus: router on %q: route for %q: %w", r.sub.topic.name, typ.Name(), ErrDuplicate)
	}
	t := &routeTable{routes: maps.Clone(old.routes), def: old.def}
	t.routes[typ] = h
	r.table.Store(t)
	return nil
}

// SetDefault sets the handler for messages no other route takes. With a
// default route the router receives every message of the topic.
func (r *Router) SetDefault(h Handler) {
	r.mu.Lock()
	defer r.mu.Unlock()
	old := r.table.Load()
	r.table.Store(&routeTable{routes: old.routes, def: h})
}

// Route adds a typed route: fn receives the message and its payload.
func Route[T any](r *Router, typ Type[T], fn func(m *Message, v T)) error {
	if fn == nil {
		return r.Add(typ.mt, nil)
	}
	return r.Add(typ.mt, func(_ *Subscription, _ *Topic, m *Message) {
		v, _ := m.payload.(T)
		fn(m, v)
	})
}

// Subscription returns the router's subscription, for Stats and Done.
func (r *Router) Subscription() *Subscription { return r.sub }

// Unsubscribe ends the router; see Subscription.Unsubscribe.
func (r *Router) Unsubscribe() <-chan struct{} { return r.sub.Unsubscribe() }

// Done returns a channel closed after the router's final message.
func (r *Router) Done() <-chan struct{} { return r.sub.done }

func (r *Router) accepts(mt *MessageType) bool {
	t := r.table.Load()
	if t.def != nil {
		return true
	}
	_, ok := t.routes[mt]
	return ok
}

func (r *Router) dispatch(sub *Subscription, topic *Topic, m *Message) {
	t := r.table.Load()
	if h, ok := t.routes[m.typ]; ok {
		h(sub, topic, m)
		return
	}
	if t.def != nil {
		t.def(sub, topic, m)
	}
}
