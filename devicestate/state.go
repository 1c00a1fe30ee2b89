package devicestate

import (
	"fmt"
	"strings"
)

// State is the state of a device, Asterisk's enum ast_device_state with the
// same values and names.
type State uint8

// Device states. The numbers are Asterisk's; Aggregate orders them by its
// own table, not by these numbers.
const (
	Unknown     State = iota // valid device, state not known
	NotInUse                 // registered, no call
	InUse                    // in a call (answered)
	Busy                     // as many calls as it takes (busy-at)
	Invalid                  // no such device; also the empty aggregate
	Unavailable              // not registered, or its node is gone
	Ringing                  // a call is ringing it
	RingInUse                // ringing while in a call
	OnHold                   // its call is on hold
)

var stateNames = [...]string{"UNKNOWN", "NOT_INUSE", "INUSE", "BUSY", "INVALID",
	"UNAVAILABLE", "RINGING", "RINGINUSE", "ONHOLD"}

// String returns Asterisk's name of the state (ast_devstate_str), e.g.
// "NOT_INUSE".
func (s State) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return fmt.Sprintf("State(%d)", uint8(s))
}

// ParseState parses a state name as String writes it; case and the
// separators "_", " " and "-" do not matter ("not in use" is NotInUse).
func ParseState(name string) (State, error) {
	key := strings.NewReplacer("_", "", " ", "", "-", "").Replace(strings.ToUpper(name))
	for i, n := range stateNames {
		if key == strings.ReplaceAll(n, "_", "") {
			return State(i), nil
		}
	}
	return Invalid, fmt.Errorf("devicestate: unknown state %q", name)
}

// Free reports whether a call may be offered to the device: only NotInUse.
func (s State) Free() bool { return s == NotInUse }

// MarshalText writes the state's name.
func (s State) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText reads a state's name.
func (s *State) UnmarshalText(b []byte) error {
	v, err := ParseState(string(b))
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// order is ast_devstate_aggregate_add's state_order table: the rank of each
// state when several views of one device are combined; the highest wins.
var order = [...]uint8{
	Unknown:     1,
	NotInUse:    3,
	InUse:       6,
	Busy:        7,
	Invalid:     0,
	Unavailable: 2,
	Ringing:     5,
	RingInUse:   8,
	OnHold:      4,
}

// Aggregate combines several views of one device into one state, exactly as
// Asterisk's ast_devstate_aggregate_add/result do: the view of highest rank
// wins (INVALID < UNKNOWN < UNAVAILABLE < NOT_INUSE < ONHOLD < RINGING <
// INUSE < BUSY < RINGINUSE), except that a RINGING view together with an
// INUSE, ONHOLD or BUSY view gives RINGINUSE. The zero value is an empty
// aggregate, whose result is Invalid. The result does not depend on the
// order in which views are added.
type Aggregate struct {
	state   State
	set     bool
	ringing bool
	inuse   bool
}

// Add adds one view.
func (a *Aggregate) Add(s State) {
	if int(s) >= len(order) {
		s = Invalid
	}
	if !a.set {
		a.state, a.set = Invalid, true
	}
	switch s {
	case Ringing:
		a.ringing = true
	case InUse, OnHold, Busy:
		a.inuse = true
	}
	if a.ringing && a.inuse {
		a.state = RingInUse
	} else if order[s] > order[a.state] {
		a.state = s
	}
}

// Result returns the combined state; Invalid when nothing was added.
func (a *Aggregate) Result() State {
	if !a.set {
		return Invalid
	}
	return a.state
}

// AggregateOf combines the given views (see Aggregate).
func AggregateOf(states ...State) State {
	var a Aggregate
	for _, s := range states {
		a.Add(s)
	}
	return a.Result()
}

// MWI is the message-waiting state of a mailbox: counts of new (unheard)
// and old messages.
type MWI struct {
	New int `json:"new"`
	Old int `json:"old"`
}

// Waiting reports whether the message-waiting lamp is on: New > 0.
func (m MWI) Waiting() bool { return m.New > 0 }
