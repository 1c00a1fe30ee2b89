// Package sipevents puts sipasync's own events on the event bus: transaction
// suspended/resumed/expired/canceled/ended, registration added/refreshed/
// removed/expired, and the type-key-value records of async.TKVEmit. Each kind
// has its own topic, all forwarded into TopicAll (the original topic kept),
// and a typed message type for subscribers and routers.
//
// Publishing costs one allocation (the message) and is skipped when nobody
// listens to a topic, so a proxy without subscribers pays nothing.
package sipevents

import (
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/sipasync/sipasync/async"
	"github.com/sipasync/sipasync/eventbus"
	"github.com/sipasync/sipasync/sipproxy"
	"github.com/sipasync/sipasync/transaction"
)

// Topic names.
const (
	TopicTransactions  = "sipasync:transactions"
	TopicRegistrations = "sipasync:registrations"
	TopicTKV           = "sipasync:tkv"
	TopicAll           = "sipasync:all"
)

// TxEvent is a change of a transaction's state.
type TxEvent struct {
	Event  string // suspended, resumed, expired, canceled, ended
	Token  string // the current or last park's token (index:label:park; index:label if never parked): Engine.Resume takes it
	Method string
	CallID string
	Route  string // the park's target route
	Kind   string // the park's kind: async_route, async_ms_route, async_task_route, ...
	Park   int    // which park of the transaction
	Reason string // for resumed: timer, task, external, timeout
}

// RegEvent is a change of a registration binding.
type RegEvent struct {
	Event   string // added, refreshed, removed, expired
	AOR     string
	Contact string
	Expires time.Time
	Source  string // where the REGISTER came from
}

// Message types.
var (
	Transaction  = eventbus.NewType[TxEvent]("sipasync.transaction")
	Registration = eventbus.NewType[RegEvent]("sipasync.registration")
	TKV          = eventbus.NewType[async.TKV]("sipasync.tkv")
)

// Publisher turns the proxy's hooks into bus messages.
type Publisher struct {
	tx, reg, tkv, all *eventbus.Topic
}

// New makes the topics on bus and forwards them into TopicAll.
func New(bus *eventbus.Bus) (*Publisher, error) {
	p := &Publisher{tx: bus.Topic(TopicTransactions), reg: bus.Topic(TopicRegistrations),
		tkv: bus.Topic(TopicTKV), all: bus.Topic(TopicAll)}
	for _, t := range []*eventbus.Topic{p.tx, p.reg, p.tkv} {
		if _, err := eventbus.Forward(t, p.all); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// Topics returns the per-kind topics and the "all" topic.
func (p *Publisher) Topics() (tx, reg, tkv, all *eventbus.Topic) { return p.tx, p.reg, p.tkv, p.all }

func (p *Publisher) listened(t *eventbus.Topic) bool {
	return t.Subscribers() > 0 || p.all.Subscribers() > 0
}

// OnTransaction is a transaction.Options.OnChange hook.
func (p *Publisher) OnTransaction(tx *transaction.Tx, ev transaction.Event) {
	if !p.listened(p.tx) {
		return
	}
	req := tx.Request()
	s := tx.Suspension()
	e := TxEvent{Event: ev.String(), Token: tx.ParkToken().String(), Method: string(req.Method),
		Route: s.Route, Kind: s.Kind, Park: s.Park}
	if h := req.CallID(); h != nil {
		e.CallID = h.Value()
	}
	if ev == transaction.EvResumed {
		r, _ := tx.ResumeReason()
		e.Reason = r.String()
	}
	Transaction.Publish(p.tx, e)
}

// OnRegistration is a sipproxy.LocationOptions.OnChange hook.
func (p *Publisher) OnRegistration(ev sipproxy.RegEvent, b sipproxy.Binding) {
	if !p.listened(p.reg) {
		return
	}
	Registration.Publish(p.reg, RegEvent{Event: ev.String(), AOR: b.AOR, Contact: contact(b.Contact),
		Expires: b.Expires, Source: b.Received})
}

// OnTKV is an async.Config.OnTKV hook.
func (p *Publisher) OnTKV(rec async.TKV) {
	if !p.listened(p.tkv) {
		return
	}
	TKV.Publish(p.tkv, rec)
}

func contact(u sip.Uri) string { return u.String() }
