package devicestate

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/emiago/sipgo/sip"

	"github.com/sipasync/sipasync/eventbus"
	"github.com/sipasync/sipasync/observe"
)

// Topic names on the event bus.
const (
	TopicDevices   = "devicestate:devices"
	TopicMailboxes = "devicestate:mailboxes"
)

// NodeState is one node's view of a device.
type NodeState struct {
	Node  string
	State State // as that node sees it
	Alive bool  // false: the node is gone, its view counts as Unavailable
}

// Change is published on TopicDevices (and cached by device) whenever a
// device's aggregated state or one of the views it is made of changes.
type Change struct {
	Device string
	State  State       // aggregated over all nodes
	Old    State       // the previous aggregate; Invalid when the device was not known
	Views  []NodeState // the views State was computed from, by node name
}

// MailboxState is published on TopicMailboxes (and cached by mailbox) when
// a mailbox's message counts change.
type MailboxState struct {
	Mailbox string
	MWI
	Node string    // the node whose value this is (the newest)
	Time time.Time // when that node set it
}

// Message types of the two topics.
var (
	StateType   = eventbus.NewType[Change]("devicestate.change")
	MailboxType = eventbus.NewType[MailboxState]("devicestate.mailbox")
)

// Options configure a Node.
type Options struct {
	// NodeID names this node in the cluster: letters, digits, '-' and '_'
	// (default: the host name with other characters replaced by '-').
	NodeID string
	// Bus receives the changes; nil: a bus of the node's own.
	Bus *eventbus.Bus
	// BusyAt is Asterisk's device_state_busy_at: a device with this many
	// calls on this node (ringing, up or held) reads BUSY here; 0: never.
	BusyAt int
	// Cluster distributes the state over NATS JetStream; nil: in-process.
	Cluster *ClusterOptions
	Logger  *slog.Logger
	Clock   clock.Clock
}

var nodeIDRe = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// ErrNodeID is returned for a node name that cannot be used.
var ErrNodeID = errors.New("devicestate: node id must be 1-64 letters, digits, '-' or '_'")

// Node is one sipasync node's device state: its own view of each device
// (from the registrar and the calls it relays), the views of the other
// nodes (from the cluster), and their aggregate, published on the bus.
// All methods are safe for concurrent use.
type Node struct {
	id     string
	o      Options
	log    *slog.Logger
	clock  clock.Clock
	bus    *eventbus.Bus
	ownBus bool

	devTopic, mwiTopic *eventbus.Topic
	devCache, mwiCache *eventbus.Cache

	// mu guards the maps below. Bus messages are published while it is held,
	// so that the caches see each device's changes in order.
	mu        sync.Mutex
	devices   map[string]*device
	calls     map[string]*call
	mailboxes map[string]*mailbox
	peers     map[string]*peer
	dirty     map[string]struct{} // own KV keys to (re)publish; nil in-process
	closed    bool

	cl    *cluster
	stats stats
}

type stats struct {
	changes, published, publishErrors, setupErrors, watchErrors, asyncErrors,
	disconnects, reconnects, resyncs, received, badEntries, conflicts atomic.Uint64
}

// device is everything this node knows of one device.
type device struct {
	contacts   map[string]struct{} // live bindings registered here
	registered bool                // was registered here: reads UNAVAILABLE when not
	ringing    int                 // calls ringing it
	up         int                 // answered calls it is in (as callee or caller)
	held       int                 // of those, on hold
	local      State               // this node's view; Invalid: none
	remote     map[string]remoteView
	agg        State // last published aggregate; Invalid: none
}

type remoteView struct {
	state State
	gen   uint64
}

// call is a call this node relays, by Call-ID.
type call struct {
	caller, callee string
	answered, held bool
}

type mailbox struct {
	views map[string]mwiView // by node; the local one under the node's id
	cur   MailboxState
	set   bool
}

type mwiView struct {
	MWI
	t   time.Time
	gen uint64
}

// peer is another node, known from its heartbeat key.
type peer struct {
	hb       bool          // its heartbeat key exists
	lastSeen time.Time     // local time its last heartbeat was seen
	expiry   time.Duration // from its heartbeat
	alive    bool
	boot     string
	gen      uint64
}

// New makes a node. With Options.Cluster it connects to NATS in the
// background: New does not fail when NATS is down, the node works on its
// own state and publishes its full view once connected.
func New(o Options) (*Node, error) {
	if o.NodeID == "" {
		o.NodeID = DefaultNodeID()
	}
	if !nodeIDRe.MatchString(o.NodeID) {
		return nil, fmt.Errorf("%w: %q", ErrNodeID, o.NodeID)
	}
	if o.BusyAt < 0 {
		return nil, errors.New("devicestate: BusyAt must be >= 0")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Clock == nil {
		o.Clock = clock.New()
	}
	n := &Node{id: o.NodeID, o: o, log: o.Logger.With("node", o.NodeID), clock: o.Clock, bus: o.Bus,
		devices: map[string]*device{}, calls: map[string]*call{}, mailboxes: map[string]*mailbox{},
		peers: map[string]*peer{}}
	if n.bus == nil {
		n.bus, n.ownBus = eventbus.New(eventbus.WithLogger(o.Logger)), true
	}
	n.devTopic, n.mwiTopic = n.bus.Topic(TopicDevices), n.bus.Topic(TopicMailboxes)
	var err error
	if n.devCache, err = eventbus.NewCache(n.devTopic, StateType.MessageType(),
		eventbus.CacheKey(StateType, func(c Change) string { return c.Device })); err != nil {
		return nil, err
	}
	if n.mwiCache, err = eventbus.NewCache(n.mwiTopic, MailboxType.MessageType(),
		eventbus.CacheKey(MailboxType, func(m MailboxState) string { return m.Mailbox })); err != nil {
		return nil, err
	}
	if o.Cluster != nil {
		n.dirty = map[string]struct{}{}
		if n.cl, err = newCluster(n, *o.Cluster); err != nil {
			n.devCache.Close()
			n.mwiCache.Close()
			return nil, err
		}
		n.cl.start()
	}
	return n, nil
}

// DefaultNodeID returns the host name, made a valid node id.
func DefaultNodeID() string {
	h, _ := os.Hostname()
	b := []byte(h)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			b[i] = '-'
		}
	}
	if len(b) == 0 {
		return "node"
	}
	if len(b) > 64 {
		b = b[:64]
	}
	return string(b)
}

// ID returns the node's name.
func (n *Node) ID() string { return n.id }

// Bus returns the bus the node publishes on.
func (n *Node) Bus() *eventbus.Bus { return n.bus }

// Topic returns TopicDevices; its messages are Change values.
func (n *Node) Topic() *eventbus.Topic { return n.devTopic }

// MailboxTopic returns TopicMailboxes; its messages are MailboxState values.
func (n *Node) MailboxTopic() *eventbus.Topic { return n.mwiTopic }

// Cache returns the last Change of every known device.
func (n *Node) Cache() *eventbus.Cache { return n.devCache }

// MailboxCache returns the last MailboxState of every known mailbox.
func (n *Node) MailboxCache() *eventbus.Cache { return n.mwiCache }

// Get returns the aggregated state of a device across all nodes: the last
// published Change for it, Unknown if no node knows it. It reads the cache
// only and takes no lock of the node: cheap enough for every route run.
func (n *Node) Get(device string) State {
	if c, ok := n.Change(device); ok {
		return c.State
	}
	return Unknown
}

// Change returns the last published Change of a device.
func (n *Node) Change(device string) (Change, bool) {
	m, ok := n.devCache.Get(device)
	if !ok {
		return Change{}, false
	}
	return StateType.Payload(m)
}

// Local returns this node's own view of a device (Invalid: none).
func (n *Node) Local(device string) State {
	n.mu.Lock()
	defer n.mu.Unlock()
	if d := n.devices[device]; d != nil {
		return d.local
	}
	return Invalid
}

// Mailbox returns a mailbox's message counts (the newest any node set).
func (n *Node) Mailbox(name string) (MWI, bool) {
	m, ok := n.mwiCache.Get(name)
	if !ok {
		return MWI{}, false
	}
	v, _ := MailboxType.Payload(m)
	return v.MWI, true
}

// OnRegistration is told of a registrar's binding change (the root wires
// it to sipproxy.Location.Changes): a device with
// a live binding here is NOT_INUSE (unless in a call); once its last
// binding is removed or expired it is UNAVAILABLE.
func (n *Node) OnRegistration(ev observe.RegEvent, b observe.Registration) {
	if b.AOR == "" {
		return
	}
	key := contactKey(b.Contact)
	n.mu.Lock()
	defer n.mu.Unlock()
	d := n.device(b.AOR)
	switch ev {
	case observe.RegAdded, observe.RegRefreshed:
		if _, ok := d.contacts[key]; ok {
			return
		}
		d.contacts[key] = struct{}{}
		d.registered = true
	case observe.RegRemoved, observe.RegExpired:
		if _, ok := d.contacts[key]; !ok {
			return
		}
		delete(d.contacts, key)
	default:
		return
	}
	n.refreshLocked(b.AOR, d, false)
}

// contactKey is a binding's identity as the registrar sees it: user, host
// (any case) and port.
func contactKey(u sip.Uri) string {
	return u.User + "@" + strings.ToLower(u.Host) + ":" + strconv.Itoa(u.Port)
}

// OnCall is told how a relayed call progresses (an observer of
// sipproxy.Proxy.Calls). Per device it counts the calls
// ringing it and the calls it is in; the callee rings from CallRinging, both
// parties are in use from CallAnswered, and CallFailed or CallEnded ends the
// call. The caller's device is in use for as long as the call exists. Calls
// are known by Call-ID, so a repeated event changes nothing and a call
// re-routed to another callee (a failure route) moves to it. Route code may
// report a call itself before the proxy does, e.g. CallRinging as it sends
// the INVITE, so that a second call does not pick the same device.
func (n *Node) OnCall(ev observe.Call) {
	if ev.CallID == "" {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	c := n.calls[ev.CallID]
	switch ev.State {
	case observe.CallRinging, observe.CallAnswered:
		if c == nil {
			c = &call{}
			n.calls[ev.CallID] = c
		} else if c.answered && (ev.State == observe.CallRinging || ev.Callee == "" || ev.Callee == c.callee) {
			return // an answered call stays answered
		}
		old := *c
		n.applyCall(c, -1)
		if ev.Callee != "" {
			c.callee = ev.Callee
		}
		if ev.Caller != "" {
			c.caller = ev.Caller
		}
		c.answered = ev.State == observe.CallAnswered
		if c.answered {
			c.held = old.held && old.callee == c.callee
		}
		n.applyCall(c, +1)
		if old == *c {
			return
		}
		n.touchCall(&old, c)
	case observe.CallFailed, observe.CallEnded:
		if c == nil || (ev.State == observe.CallFailed && c.answered) {
			return // an answered call ends with its BYE
		}
		n.applyCall(c, -1)
		delete(n.calls, ev.CallID)
		n.touchCall(c, nil)
	}
}

// Hold marks an answered call held or not: its devices read ONHOLD for it
// (a device's other calls still count; see the README's table).
func (n *Node) Hold(callID string, held bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	c := n.calls[callID]
	if c == nil || !c.answered || c.held == held {
		return
	}
	n.applyCall(c, -1)
	c.held = held
	n.applyCall(c, +1)
	n.touchCall(c, nil)
}

// applyCall adds (sign +1) or removes (-1) a call's share of its devices'
// counters.
func (n *Node) applyCall(c *call, sign int) {
	if c.callee != "" {
		d := n.device(c.callee)
		switch {
		case !c.answered:
			d.ringing += sign
		case c.held:
			d.up += sign
			d.held += sign
		default:
			d.up += sign
		}
	}
	if c.caller != "" {
		d := n.device(c.caller)
		d.up += sign
		if c.held {
			d.held += sign
		}
	}
}

func (n *Node) touchCall(a, b *call) {
	seen := [4]string{}
	k := 0
	for _, c := range []*call{a, b} {
		if c == nil {
			continue
		}
		for _, name := range []string{c.callee, c.caller} {
			if name == "" || slices.Contains(seen[:k], name) {
				continue
			}
			seen[k] = name
			k++
			n.refreshLocked(name, n.device(name), false)
		}
	}
}

// Calls returns the number of calls this node tracks.
func (n *Node) Calls() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.calls)
}

// SetMailbox sets a mailbox's message counts from this node. Across nodes
// the newest value wins (a mailbox lives on one voicemail server; whoever
// set it last knows best).
func (n *Node) SetMailbox(name string, m MWI) error {
	if name == "" || m.New < 0 || m.Old < 0 {
		return fmt.Errorf("devicestate: bad mailbox %q %+v", name, m)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	mb := n.mailboxes[name]
	if mb == nil {
		mb = &mailbox{views: map[string]mwiView{}}
		n.mailboxes[name] = mb
	}
	mb.views[n.id] = mwiView{MWI: m, t: n.clock.Now()}
	n.markDirty(kindMWI, name)
	n.refreshMailboxLocked(name, mb)
	return nil
}

// ClearMailbox withdraws this node's value for a mailbox.
func (n *Node) ClearMailbox(name string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	mb := n.mailboxes[name]
	if mb == nil {
		return
	}
	if _, ok := mb.views[n.id]; !ok {
		return
	}
	delete(mb.views, n.id)
	n.markDirty(kindMWI, name)
	n.refreshMailboxLocked(name, mb)
}

func (n *Node) device(name string) *device {
	d := n.devices[name]
	if d == nil {
		d = &device{contacts: map[string]struct{}{}, local: Invalid, agg: Invalid}
		n.devices[name] = d
	}
	return d
}

// localState is this node's view of a device (chan_pjsip's per-endpoint
// state after Asterisk PR #1182): BUSY when its calls reach BusyAt,
// otherwise the aggregate of its registration (NOT_INUSE, or UNAVAILABLE
// with no binding) and of each call (RINGING, INUSE or ONHOLD). Invalid
// when this node has nothing to say about it.
func (n *Node) localState(d *device) State {
	calls := d.ringing + d.up
	if len(d.contacts) == 0 && !d.registered && calls == 0 {
		return Invalid
	}
	if n.o.BusyAt > 0 && calls >= n.o.BusyAt {
		return Busy
	}
	var a Aggregate
	if len(d.contacts) > 0 {
		a.Add(NotInUse)
	} else {
		a.Add(Unavailable)
	}
	if d.ringing > 0 {
		a.Add(Ringing)
	}
	if d.up > d.held {
		a.Add(InUse)
	}
	if d.held > 0 {
		a.Add(OnHold)
	}
	return a.Result()
}

// refreshLocked recomputes a device's local view and aggregate and
// publishes a Change when anything changed (views is true when a remote
// view changed).
func (n *Node) refreshLocked(name string, d *device, views bool) {
	if local := n.localState(d); local != d.local {
		d.local = local
		views = true
		n.markDirty(kindDev, name)
	}
	var a Aggregate
	if d.local != Invalid {
		a.Add(d.local)
	}
	for node, v := range d.remote {
		if p := n.peers[node]; p != nil && p.alive {
			a.Add(v.state)
		} else {
			a.Add(Unavailable)
		}
	}
	agg := a.Result()
	if agg == d.agg && !views {
		return
	}
	old := d.agg
	d.agg = agg
	if agg == Invalid {
		if d.ringing == 0 && d.up == 0 && len(d.contacts) == 0 {
			delete(n.devices, name)
		}
		if old != Invalid {
			n.stats.changes.Add(1)
			eventbus.PublishClear(n.devTopic, StateType.MessageType(), name)
		}
		return
	}
	n.stats.changes.Add(1)
	StateType.Publish(n.devTopic, Change{Device: name, State: agg, Old: old, Views: n.viewsLocked(d)})
}

func (n *Node) viewsLocked(d *device) []NodeState {
	out := make([]NodeState, 0, 1+len(d.remote))
	if d.local != Invalid {
		out = append(out, NodeState{Node: n.id, State: d.local, Alive: true})
	}
	for node, v := range d.remote {
		p := n.peers[node]
		out = append(out, NodeState{Node: node, State: v.state, Alive: p != nil && p.alive})
	}
	slices.SortFunc(out, func(a, b NodeState) int {
		switch {
		case a.Node < b.Node:
			return -1
		case a.Node > b.Node:
			return 1
		}
		return 0
	})
	return out
}

// refreshMailboxLocked picks the newest view of a mailbox and publishes it
// when it changed.
func (n *Node) refreshMailboxLocked(name string, mb *mailbox) {
	var best MailboxState
	found := false
	for node, v := range mb.views {
		if !found || v.t.After(best.Time) || v.t.Equal(best.Time) && node > best.Node {
			best = MailboxState{Mailbox: name, MWI: v.MWI, Node: node, Time: v.t}
			found = true
		}
	}
	if !found {
		delete(n.mailboxes, name)
		if mb.set {
			n.stats.changes.Add(1)
			eventbus.PublishClear(n.mwiTopic, MailboxType.MessageType(), name)
		}
		return
	}
	if mb.set && best.MWI == mb.cur.MWI {
		mb.cur = best
		return
	}
	mb.cur, mb.set = best, true
	n.stats.changes.Add(1)
	MailboxType.Publish(n.mwiTopic, best)
}

// Stats are the node's counters. NATS errors are counted here (and logged
// at most once a second per kind); they never stop the node.
type Stats struct {
	Devices, Calls, Mailboxes int // known now
	Peers, PeersAlive         int // other nodes seen, and alive
	Connected                 bool
	Changes                   uint64 // messages published on the bus
	Published                 uint64 // KV writes acknowledged
	PublishErrors             uint64 // KV writes that failed (retried)
	SetupErrors               uint64 // failures to bind, create or watch the bucket
	AsyncErrors               uint64 // errors reported by the NATS connection
	Disconnects, Reconnects   uint64
	Resyncs                   uint64 // full views published (start, reconnect, periodic)
	Received                  uint64 // entries of other nodes applied
	BadEntries                uint64 // entries that could not be read (ignored)
	Conflicts                 uint64 // another process heartbeats with this node's id
}

// Stats returns the counters.
func (n *Node) Stats() Stats {
	n.mu.Lock()
	s := Stats{Devices: len(n.devices), Calls: len(n.calls), Mailboxes: len(n.mailboxes), Peers: len(n.peers)}
	for _, p := range n.peers {
		if p.alive {
			s.PeersAlive++
		}
	}
	n.mu.Unlock()
	if n.cl != nil {
		s.Connected = n.cl.nc.IsConnected()
	}
	st := &n.stats
	s.Changes, s.Published, s.PublishErrors = st.changes.Load(), st.published.Load(), st.publishErrors.Load()
	s.SetupErrors, s.AsyncErrors = st.setupErrors.Load(), st.asyncErrors.Load()
	s.Disconnects, s.Reconnects, s.Resyncs = st.disconnects.Load(), st.reconnects.Load(), st.resyncs.Load()
	s.Received, s.BadEntries, s.Conflicts = st.received.Load(), st.badEntries.Load(), st.conflicts.Load()
	return s
}

// Close stops the node. In a cluster it first publishes what is pending and
// removes its heartbeat, so the other nodes see its devices UNAVAILABLE at
// once rather than after the expiry; ctx bounds that. The bus is closed
// only if the node made it.
func (n *Node) Close(ctx context.Context) error {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil
	}
	n.closed = true
	n.mu.Unlock()
	var err error
	if n.cl != nil {
		err = n.cl.close(ctx, true)
	}
	n.devCache.Close()
	n.mwiCache.Close()
	if n.ownBus {
		err = errors.Join(err, n.bus.Close(ctx))
	}
	return err
}

// defaultNode is the node behind the package-level helpers.
var defaultNode atomic.Pointer[Node]

// SetDefault makes n the node the package-level helpers (Get, GetMailbox)
// use; nil unsets it.
func SetDefault(n *Node) { defaultNode.Store(n) }

// Default returns the node set by SetDefault, or nil.
func Default() *Node { return defaultNode.Load() }

// Get returns the aggregated state of a device from the default node;
// Unknown when none is set or no node knows the device. Usable from route
// handlers: it reads the bus cache and takes no lock.
func Get(device string) State {
	if n := Default(); n != nil {
		return n.Get(device)
	}
	return Unknown
}

// GetMailbox returns a mailbox's counts from the default node.
func GetMailbox(name string) (MWI, bool) {
	if n := Default(); n != nil {
		return n.Mailbox(name)
	}
	return MWI{}, false
}
