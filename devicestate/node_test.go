package devicestate

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/emiago/sipgo/sip"

	"github.com/sipasync/sipasync/eventbus"
	"github.com/sipasync/sipasync/observe"
)

func newNode(t *testing.T, o Options) *Node {
	t.Helper()
	if o.NodeID == "" {
		o.NodeID = "local"
	}
	n, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Close(context.Background()) })
	return n
}

func binding(aor string, port int) observe.Registration {
	return observe.Registration{AOR: aor, Contact: sip.Uri{User: aor, Host: "127.0.0.1", Port: port}}
}

func reg(n *Node, ev observe.RegEvent, aor string, port int) {
	n.OnRegistration(ev, binding(aor, port))
}

func callEv(n *Node, st observe.CallState, id, caller, callee string) {
	n.OnCall(observe.Call{State: st, CallID: id, Caller: caller, Callee: callee})
}

func want(t *testing.T, n *Node, device string, s State) {
	t.Helper()
	if got := n.Get(device); got != s {
		t.Fatalf("%s reads %s, want %s", device, got, s)
	}
}

func TestRegistrarSource(t *testing.T) {
	n := newNode(t, Options{})
	want(t, n, "alice", Unknown)
	reg(n, observe.RegAdded, "alice", 5070)
	want(t, n, "alice", NotInUse)
	reg(n, observe.RegAdded, "alice", 5071)
	reg(n, observe.RegRemoved, "alice", 5070)
	want(t, n, "alice", NotInUse) // one binding left
	reg(n, observe.RegExpired, "alice", 5071)
	want(t, n, "alice", Unavailable)
	reg(n, observe.RegRefreshed, "alice", 5072) // a refresh of a binding we missed
	want(t, n, "alice", NotInUse)
	reg(n, observe.RegRemoved, "alice", 5072)
	want(t, n, "alice", Unavailable)
	reg(n, observe.RegRemoved, "alice", 5072) // again: nothing changes
	want(t, n, "alice", Unavailable)
	reg(n, observe.RegExpired, "bob", 1) // never registered here: no state
	want(t, n, "bob", Unknown)
}

func TestCallSource(t *testing.T) {
	n := newNode(t, Options{})
	reg(n, observe.RegAdded, "alice", 5070)
	reg(n, observe.RegAdded, "bob", 5080)

	callEv(n, observe.CallRinging, "c1", "bob", "alice")
	want(t, n, "alice", Ringing)
	want(t, n, "bob", InUse)                             // the caller is in use while its call is up
	callEv(n, observe.CallRinging, "c1", "bob", "alice") // repeated: counted once
	callEv(n, observe.CallAnswered, "c1", "bob", "alice")
	want(t, n, "alice", InUse)
	want(t, n, "bob", InUse)
	callEv(n, observe.CallAnswered, "c1", "bob", "alice")
	callEv(n, observe.CallFailed, "c1", "bob", "alice") // a late failure does not end an answered call
	want(t, n, "alice", InUse)
	// the callee hangs up: the BYE goes the other way
	callEv(n, observe.CallEnded, "c1", "alice", "bob")
	want(t, n, "alice", NotInUse)
	want(t, n, "bob", NotInUse)
	if n.Calls() != 0 {
		t.Fatalf("%d calls left", n.Calls())
	}

	// failure before the answer
	callEv(n, observe.CallRinging, "c2", "bob", "alice")
	callEv(n, observe.CallFailed, "c2", "", "")
	want(t, n, "alice", NotInUse)
	want(t, n, "bob", NotInUse)
	// answered without a provisional
	callEv(n, observe.CallAnswered, "c3", "bob", "alice")
	want(t, n, "alice", InUse)
	callEv(n, observe.CallEnded, "c3", "bob", "alice")
	callEv(n, observe.CallEnded, "c3", "bob", "alice") // a BYE retransmission or a second BYE
	want(t, n, "alice", NotInUse)
	want(t, n, "bob", NotInUse)
	// events without a Call-ID, or for unknown calls, do nothing
	callEv(n, observe.CallRinging, "", "bob", "alice")
	callEv(n, observe.CallEnded, "nope", "bob", "alice")
	want(t, n, "alice", NotInUse)
}

func TestSeveralCallsOnOneDevice(t *testing.T) {
	n := newNode(t, Options{})
	reg(n, observe.RegAdded, "alice", 5070)
	callEv(n, observe.CallAnswered, "c1", "bob", "alice")
	callEv(n, observe.CallRinging, "c2", "carol", "alice") // call waiting
	want(t, n, "alice", RingInUse)
	callEv(n, observe.CallRinging, "c3", "dave", "alice")
	callEv(n, observe.CallFailed, "c2", "", "")
	want(t, n, "alice", RingInUse) // c3 still rings
	callEv(n, observe.CallFailed, "c3", "", "")
	want(t, n, "alice", InUse)
	callEv(n, observe.CallEnded, "c1", "", "")
	want(t, n, "alice", NotInUse)
	// two answered calls, one ends: still in use
	callEv(n, observe.CallAnswered, "c4", "bob", "alice")
	callEv(n, observe.CallAnswered, "c5", "alice", "carol") // alice calls out too
	callEv(n, observe.CallEnded, "c4", "", "")
	want(t, n, "alice", InUse)
	callEv(n, observe.CallEnded, "c5", "", "")
	want(t, n, "alice", NotInUse)
}

func TestCallMovesToAnotherCallee(t *testing.T) {
	n := newNode(t, Options{})
	reg(n, observe.RegAdded, "alice", 5070)
	reg(n, observe.RegAdded, "carol", 5090)
	callEv(n, observe.CallRinging, "c1", "bob", "alice")
	// alice did not answer; a failure route relays the same call to carol
	callEv(n, observe.CallRinging, "c1", "bob", "carol")
	want(t, n, "alice", NotInUse)
	want(t, n, "carol", Ringing)
	callEv(n, observe.CallAnswered, "c1", "bob", "carol")
	want(t, n, "carol", InUse)
	callEv(n, observe.CallEnded, "c1", "", "")
	want(t, n, "carol", NotInUse)
	want(t, n, "bob", Unknown) // never registered here: forgotten once its call ended
}

func TestHold(t *testing.T) {
	n := newNode(t, Options{})
	reg(n, observe.RegAdded, "alice", 5070)
	callEv(n, observe.CallAnswered, "c1", "bob", "alice")
	n.Hold("c1", true)
	want(t, n, "alice", OnHold)
	// Asterisk #1181: one held call must not hide another call
	callEv(n, observe.CallAnswered, "c2", "carol", "alice")
	want(t, n, "alice", InUse)
	callEv(n, observe.CallEnded, "c2", "", "")
	want(t, n, "alice", OnHold)
	callEv(n, observe.CallRinging, "c3", "dave", "alice")
	want(t, n, "alice", RingInUse) // on hold counts as in use
	callEv(n, observe.CallFailed, "c3", "", "")
	n.Hold("c1", false)
	want(t, n, "alice", InUse)
	n.Hold("c1", true)
	callEv(n, observe.CallEnded, "c1", "", "")
	want(t, n, "alice", NotInUse)
	n.Hold("c1", true) // ended: nothing
	n.Hold("zzz", true)
	want(t, n, "alice", NotInUse)
}

func TestBusyAt(t *testing.T) {
	n := newNode(t, Options{BusyAt: 2})
	reg(n, observe.RegAdded, "alice", 5070)
	callEv(n, observe.CallAnswered, "c1", "bob", "alice")
	want(t, n, "alice", InUse)
	// a ringing call counts as in use for busy-at (Asterisk PR #1182)
	callEv(n, observe.CallRinging, "c2", "carol", "alice")
	want(t, n, "alice", Busy)
	// more calls than busy-at is still BUSY (#1181: it was only == before)
	callEv(n, observe.CallRinging, "c3", "dave", "alice")
	want(t, n, "alice", Busy)
	n.Hold("c1", true)
	want(t, n, "alice", Busy)
	callEv(n, observe.CallFailed, "c2", "", "")
	callEv(n, observe.CallFailed, "c3", "", "")
	want(t, n, "alice", OnHold)
	if _, err := New(Options{NodeID: "x", BusyAt: -1}); err == nil {
		t.Fatal("negative BusyAt accepted")
	}
}

func TestUnregisteredDeviceInCall(t *testing.T) {
	n := newNode(t, Options{})
	callEv(n, observe.CallRinging, "c1", "+4930123", "alice")
	want(t, n, "alice", Ringing) // not registered here, but ringing through here
	want(t, n, "+4930123", InUse)
	callEv(n, observe.CallEnded, "c1", "", "")
	want(t, n, "alice", Unknown)
	want(t, n, "+4930123", Unknown)
	if s := n.Stats(); s.Devices != 0 {
		t.Fatalf("%d devices kept after their calls ended", s.Devices)
	}
}

func TestChangesOnTheBus(t *testing.T) {
	bus := eventbus.New()
	t.Cleanup(func() { _ = bus.Close(context.Background()) })
	n := newNode(t, Options{Bus: bus})
	got := make(chan *eventbus.Message, 16)
	sub, err := bus.Topic(TopicDevices).Subscribe(func(_ *eventbus.Subscription, _ *eventbus.Topic, m *eventbus.Message) {
		if !m.IsFinal() {
			got <- m
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { <-sub.Unsubscribe() })
	next := func() *eventbus.Message {
		t.Helper()
		select {
		case m := <-got:
			return m
		case <-time.After(2 * time.Second):
			t.Fatal("no message")
			return nil
		}
	}
	reg(n, observe.RegAdded, "alice", 5070)
	c, ok := StateType.Payload(next())
	if !ok || c.Device != "alice" || c.State != NotInUse || c.Old != Invalid ||
		len(c.Views) != 1 || c.Views[0] != (NodeState{Node: "local", State: NotInUse, Alive: true}) {
		t.Fatalf("first change: %+v", c)
	}
	callEv(n, observe.CallRinging, "c1", "", "alice")
	c, _ = StateType.Payload(next())
	if c.State != Ringing || c.Old != NotInUse {
		t.Fatalf("second change: %+v", c)
	}
	if cc, ok := n.Change("alice"); !ok || cc.State != Ringing {
		t.Fatalf("cache: %+v", cc)
	}
	callEv(n, observe.CallFailed, "c1", "", "")
	next()
	// a device forgotten is cleared from the cache
	callEv(n, observe.CallRinging, "c2", "", "zed")
	next()
	callEv(n, observe.CallFailed, "c2", "", "")
	m := next()
	if cl, ok := eventbus.CacheClearType.Payload(m); !ok || cl.ID != "zed" {
		t.Fatalf("want a clear for zed, got %v", m.Payload())
	}
	if _, ok := n.Cache().Get("zed"); ok {
		t.Fatal("zed still cached")
	}

	// package-level helpers
	want(t, n, "alice", NotInUse)
	if Get("alice") != Unknown {
		t.Fatal("Get without a default node")
	}
	SetDefault(n)
	t.Cleanup(func() { SetDefault(nil) })
	if Get("alice") != NotInUse || Default() != n {
		t.Fatal("Get with the default node")
	}
}

func TestMailbox(t *testing.T) {
	n := newNode(t, Options{})
	if _, ok := n.Mailbox("100"); ok {
		t.Fatal("unknown mailbox found")
	}
	if err := n.SetMailbox("100", MWI{New: 2, Old: 5}); err != nil {
		t.Fatal(err)
	}
	if m, ok := n.Mailbox("100"); !ok || m != (MWI{2, 5}) || !m.Waiting() {
		t.Fatalf("mailbox: %+v %v", m, ok)
	}
	SetDefault(n)
	t.Cleanup(func() { SetDefault(nil) })
	if m, ok := GetMailbox("100"); !ok || m.New != 2 {
		t.Fatalf("GetMailbox: %+v", m)
	}
	if err := n.SetMailbox("", MWI{}); err == nil {
		t.Fatal("empty mailbox name accepted")
	}
	if err := n.SetMailbox("100", MWI{New: -1}); err == nil {
		t.Fatal("negative count accepted")
	}
	n.ClearMailbox("100")
	if _, ok := n.Mailbox("100"); ok {
		t.Fatal("cleared mailbox found")
	}
	n.ClearMailbox("100")
}

func TestNodeID(t *testing.T) {
	for _, bad := range []string{"a.b", "a b", "a*", string(make([]byte, 65))} {
		if _, err := New(Options{NodeID: bad}); err == nil {
			t.Errorf("node id %q accepted", bad)
		}
	}
	if id := DefaultNodeID(); !nodeIDRe.MatchString(id) {
		t.Errorf("DefaultNodeID %q is not valid", id)
	}
}

// The rules for other nodes' views, driven without NATS: entries as the
// watch delivers them, time from a mock clock.
func TestPeerViewsAndExpiry(t *testing.T) {
	mc := clock.NewMock()
	mc.Set(time.Unix(1_700_000_000, 0))
	n := newNode(t, Options{NodeID: "c", Clock: mc})
	hb := func(node string, exp time.Duration) {
		v, _ := json.Marshal(heartbeat{T: mc.Now().UnixMilli(), Exp: exp.Milliseconds(), Boot: "x"})
		n.applyEntry(1, nodeKey(node), v, false, mc.Now(), false)
	}
	dev := func(device, node string, s State) {
		n.applyEntry(1, devKey(device, node), []byte(s.String()), false, mc.Now(), false)
	}
	hb("a", 3*time.Second)
	hb("b", 3*time.Second)
	dev("alice", "a", NotInUse)
	want(t, n, "alice", NotInUse)
	dev("alice", "b", InUse) // in a call through b
	want(t, n, "alice", InUse)
	dev("alice", "b", Ringing)
	want(t, n, "alice", Ringing)
	dev("alice", "b", InUse)
	dev("bob", "b", InUse) // bob only known through b
	want(t, n, "bob", InUse)

	// b goes silent: still counted up to its expiry...
	mc.Add(2 * time.Second)
	hb("a", 3*time.Second)
	n.checkLiveness(mc.Now(), time.Hour)
	want(t, n, "alice", InUse)
	// ...and gone after it: its views count as UNAVAILABLE
	mc.Add(1100 * time.Millisecond)
	n.checkLiveness(mc.Now(), time.Hour)
	want(t, n, "alice", NotInUse)
	want(t, n, "bob", Unavailable)
	if c, _ := n.Change("bob"); len(c.Views) != 1 || c.Views[0].Alive {
		t.Fatalf("bob's views: %+v", c.Views)
	}
	// b is back
	hb("b", 3*time.Second)
	want(t, n, "alice", InUse)
	want(t, n, "bob", InUse)
	// a clean stop deletes the heartbeat: gone at once
	n.applyEntry(1, nodeKey("b"), nil, true, mc.Now(), false)
	want(t, n, "bob", Unavailable)
	// forgotten after Forget
	mc.Add(2 * time.Hour)
	hb("a", 3*time.Second)
	n.checkLiveness(mc.Now(), time.Hour)
	want(t, n, "bob", Unknown)
	want(t, n, "alice", NotInUse)
	if s := n.Stats(); s.Peers != 1 || s.PeersAlive != 1 {
		t.Fatalf("peers: %+v", s)
	}

	// an old heartbeat among the initial values is judged by its age
	mc.Add(time.Minute)
	v, _ := json.Marshal(heartbeat{T: 1, Exp: 3000})
	n.applyEntry(2, nodeKey("d"), v, false, mc.Now().Add(-10*time.Second), true)
	n.applyEntry(2, devKey("dave", "d"), []byte("INUSE"), false, mc.Now(), true)
	want(t, n, "dave", Unavailable)

	// deleted views and bad entries
	n.applyEntry(2, devKey("dave", "d"), nil, true, mc.Now(), false)
	want(t, n, "dave", Unknown)
	before := n.Stats().BadEntries
	n.applyEntry(2, "dev.x", []byte("INUSE"), false, mc.Now(), false)
	n.applyEntry(2, devKey("eve", "d"), []byte("SLEEPY"), false, mc.Now(), false)
	n.applyEntry(2, nodeKey("e"), []byte("{"), false, mc.Now(), false)
	n.applyEntry(2, mwiKey("100", "d"), []byte(`{"new":-1}`), false, mc.Now(), false)
	if got := n.Stats().BadEntries - before; got != 4 {
		t.Fatalf("%d bad entries counted, want 4", got)
	}
}

func TestPeerMailboxesNewestWins(t *testing.T) {
	mc := clock.NewMock()
	mc.Set(time.Unix(1_700_000_000, 0))
	n := newNode(t, Options{NodeID: "c", Clock: mc})
	mwi := func(node string, m MWI, at time.Time) {
		v, _ := json.Marshal(mwiValue{New: m.New, Old: m.Old, T: at.UnixMilli()})
		n.applyEntry(1, mwiKey("100", node), v, false, mc.Now(), false)
	}
	mwi("a", MWI{New: 1}, mc.Now())
	if err := n.SetMailbox("100", MWI{New: 3}); err != nil { // same time: the higher node name wins
		t.Fatal(err)
	}
	if m, _ := n.Mailbox("100"); m.New != 3 {
		t.Fatalf("mailbox %+v", m)
	}
	mc.Add(time.Second)
	mwi("a", MWI{New: 0, Old: 4}, mc.Now())
	if m, _ := n.Mailbox("100"); m != (MWI{0, 4}) {
		t.Fatalf("the newest value must win: %+v", m)
	}
	mwi("b", MWI{New: 9}, mc.Now().Add(-time.Minute)) // older: ignored
	if m, _ := n.Mailbox("100"); m != (MWI{0, 4}) {
		t.Fatalf("an older value won: %+v", m)
	}
	n.applyEntry(1, mwiKey("100", "a"), nil, true, mc.Now(), false)
	if m, _ := n.Mailbox("100"); m != (MWI{New: 3}) {
		t.Fatalf("after a's delete: %+v", m)
	}
}
