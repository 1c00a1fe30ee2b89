package evi

import (
	"fmt"
	"slices"
	"time"

	"github.com/sipasync/sipasync/eventbus"
)

// Event is a raised event: a declared name, an ordered list of attributes,
// the time it was raised and its encoding in the event grammar. It cannot be
// changed after it is created; every subscriber and transport shares it.
type Event struct {
	name  string
	attrs []Attr
	time  time.Time
	data  []byte
}

// EventType is the bus message type of raised events. Go code subscribes to
// Events.Topic(name) or Events.AllTopic() and reads the payload with
// EventType.Payload.
var EventType = eventbus.NewType[*Event]("evi.event")

// NewEvent validates and encodes an event. Events.RaiseEvent uses it;
// transports use it in their tests. The attributes are copied.
func NewEvent(name string, at time.Time, attrs ...Attr) (*Event, error) {
	data, err := Encode(name, attrs)
	if err != nil {
		return nil, err
	}
	return &Event{name: name, attrs: slices.Clone(attrs), time: at, data: data}, nil
}

// Name returns the event name.
func (e *Event) Name() string { return e.name }

// Time returns when the event was raised.
func (e *Event) Time() time.Time { return e.time }

// Len returns the number of attributes.
func (e *Event) Len() int { return len(e.attrs) }

// Attr returns the i-th attribute.
func (e *Event) Attr(i int) Attr { return e.attrs[i] }

// Attrs returns a copy of the attributes, in order.
func (e *Event) Attrs() []Attr { return slices.Clone(e.attrs) }

// Value returns the value of the first attribute called name.
func (e *Event) Value(name string) (string, bool) {
	for _, a := range e.attrs {
		if a.Name == name {
			return a.Value, true
		}
	}
	return "", false
}

// Bytes returns the event's encoding in the event grammar (see Encode). The
// slice is shared by every transport: read it, never modify it.
func (e *Event) Bytes() []byte { return e.data }

// Size returns the length of the encoding.
func (e *Event) Size() int { return len(e.data) }

// String returns the name and the attributes, for logs.
func (e *Event) String() string { return fmt.Sprintf("%s%q", e.name, e.attrs) }
