package evi

import "context"

// Transport delivers events to one subscriber's socket. Events creates one
// Transport per subscription, through the Factory registered for the
// socket's scheme, and calls Send from a single goroutine, one event at a
// time, in the order the events were raised. Send must respect ctx (Events
// gives each call a timeout) and return an error for an event it could not
// deliver; Events counts and logs it and goes on with the next one. Close is
// called once, after the last Send, when the subscription ends. An error
// must not contain the socket's password: format the socket with its String
// method.
type Transport interface {
	Send(ctx context.Context, ev *Event) error
	Close() error
}

// Factory creates the transport for a socket of its scheme. It validates the
// address (an error wrapping ErrMalformedSocket for a bad one) and should not
// block for long: it runs when subscribing, at start-up.
type Factory func(socket Socket) (Transport, error)
