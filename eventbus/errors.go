package eventbus

import "errors"

var (
	// ErrClosed is returned by Subscribe, NewRouter, Forward and NewCache after
	// Bus.Close.
	ErrClosed = errors.New("eventbus: bus closed")
	// ErrInvalidOption is returned when a subscription option is out of range
	// (capacity below 1, high-water mark above capacity) or a handler is nil.
	ErrInvalidOption = errors.New("eventbus: invalid option")
	// ErrForeignTopic is returned when topics of two different buses are linked.
	ErrForeignTopic = errors.New("eventbus: topic belongs to another bus")
	// ErrCycle is returned by Forward when the link would let a message come
	// back to a topic it went through.
	ErrCycle = errors.New("eventbus: forwarding cycle")
	// ErrDuplicate is returned by Forward when the same link exists already and
	// by Router.Add when the type has a route already.
	ErrDuplicate = errors.New("eventbus: duplicate")
)
