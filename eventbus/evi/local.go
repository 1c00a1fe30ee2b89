package evi

import (
	"context"
	"fmt"
)

// SchemeLocal is the scheme of the in-process transport: "local:NAME"
// delivers to the Go function registered with Events.HandleLocal under NAME.
const SchemeLocal = "local"

// LocalHandler receives the events of a "local:NAME" subscription, one at a
// time and in order, on the subscription's own goroutine. An error is counted
// and logged like a transport error.
type LocalHandler func(ctx context.Context, ev *Event) error

type localTransport struct{ h LocalHandler }

func (l localTransport) Send(ctx context.Context, ev *Event) error { return l.h(ctx, ev) }
func (l localTransport) Close() error                              { return nil }

// localFactory resolves local:NAME among the handlers of e.
func (e *Events) localFactory(s Socket) (Transport, error) {
	e.mu.RLock()
	h := e.locals[s.Address()]
	e.mu.RUnlock()
	if h == nil {
		return nil, fmt.Errorf("%w %q (socket %s)", ErrUnknownHandler, s.Address(), s)
	}
	return localTransport{h: h}, nil
}
