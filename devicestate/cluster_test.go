package devicestate

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sipasync/sipasync/devicestate/devicestatetest"
	"github.com/sipasync/sipasync/observe"
)

// crash stops a node the way a killed process stops: no heartbeat delete,
// no last writes; the connection just drops.
func (n *Node) crash() {
	n.mu.Lock()
	n.closed = true
	n.mu.Unlock()
	_ = n.cl.close(context.Background(), false)
}

type clusterEnv struct {
	t      *testing.T
	url    string
	bucket string
	domain string
	expiry time.Duration
}

func newEnv(t *testing.T, url string, expiry time.Duration) *clusterEnv {
	e := &clusterEnv{t: t, url: url, bucket: devicestatetest.Bucket(t), expiry: expiry}
	t.Cleanup(func() { devicestatetest.DeleteBucket(url, e.bucket, "") })
	return e
}

func (e *clusterEnv) node(id string, o ...func(*Options)) *Node {
	e.t.Helper()
	opts := Options{NodeID: id, Cluster: &ClusterOptions{URL: e.url, Bucket: e.bucket, Domain: e.domain,
		Expiry: e.expiry, Timeout: 3 * time.Second}}
	for _, f := range o {
		f(&opts)
	}
	n, err := New(opts)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { _ = n.Close(context.Background()) })
	return n
}

// eventually waits until device reads s on n, or fails after d.
func eventually(t *testing.T, n *Node, device string, s State, d time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		if got := n.Get(device); got == s {
			return time.Since(start)
		}
		if time.Since(start) > d {
			c, _ := n.Change(device)
			t.Fatalf("node %s: %s reads %s after %s, want %s (views %+v; stats %+v)",
				n.ID(), device, n.Get(device), d, s, c.Views, n.Stats())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// connected waits until every node has seen every other one alive.
func connected(t *testing.T, nodes ...*Node) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for _, n := range nodes {
		for n.Stats().PeersAlive < len(nodes)-1 {
			if time.Now().After(deadline) {
				t.Fatalf("node %s sees %d nodes alive, want %d: %+v", n.ID(), n.Stats().PeersAlive, len(nodes)-1, n.Stats())
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}

// A device registered on A and in a call through B reads in use on C; the
// way back to NOT_INUSE replicates too.
func TestClusterThreeNodes(t *testing.T) {
	e := newEnv(t, devicestatetest.RequireNATS(t), 2*time.Second)
	a, b, c := e.node("a"), e.node("b"), e.node("c")
	connected(t, a, b, c)

	a.OnRegistration(observe.RegAdded, binding("alice", 5070))
	eventually(t, c, "alice", NotInUse, 5*time.Second)
	b.OnCall(observe.Call{State: observe.CallRinging, CallID: "x1", Caller: "bob", Callee: "alice"})
	eventually(t, c, "alice", Ringing, 5*time.Second)
	eventually(t, c, "bob", InUse, 5*time.Second)
	b.OnCall(observe.Call{State: observe.CallAnswered, CallID: "x1", Caller: "bob", Callee: "alice"})
	eventually(t, c, "alice", InUse, 5*time.Second)
	eventually(t, a, "alice", InUse, 5*time.Second) // A too sees the call B relays
	// a second call to alice rings through C's neighbour A: ring-in-use everywhere
	a.OnCall(observe.Call{State: observe.CallRinging, CallID: "x2", Caller: "carol", Callee: "alice"})
	eventually(t, c, "alice", RingInUse, 5*time.Second)
	eventually(t, b, "alice", RingInUse, 5*time.Second)
	a.OnCall(observe.Call{State: observe.CallFailed, CallID: "x2"})
	eventually(t, c, "alice", InUse, 5*time.Second)
	b.OnCall(observe.Call{State: observe.CallEnded, CallID: "x1"})
	eventually(t, c, "alice", NotInUse, 5*time.Second)
	eventually(t, c, "bob", Unknown, 5*time.Second) // B withdrew its view of bob
	// B has nothing more to say about alice (never registered there): its key is gone
	if ch, _ := c.Change("alice"); len(ch.Views) != 1 || ch.Views[0] != (NodeState{Node: "a", State: NotInUse, Alive: true}) {
		t.Fatalf("C's views of alice: %+v", ch.Views)
	}
	a.OnRegistration(observe.RegExpired, binding("alice", 5070))
	eventually(t, c, "alice", Unavailable, 5*time.Second)

	// mailboxes travel too
	if err := b.SetMailbox("100", MWI{New: 2, Old: 1}); err != nil {
		t.Fatal(err)
	}
	waitMailbox(t, c, "100", MWI{New: 2, Old: 1})
	b.ClearMailbox("100")
	waitMailbox(t, c, "100", MWI{New: -1})
	for _, n := range []*Node{a, b, c} {
		if s := n.Stats(); s.PublishErrors != 0 || s.BadEntries != 0 || !s.Connected {
			t.Errorf("node %s: %+v", n.ID(), s)
		}
	}
}

// waitMailbox waits for a mailbox's counts; New -1 waits for it to be gone.
func waitMailbox(t *testing.T, n *Node, name string, m MWI) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got, ok := n.Mailbox(name)
		if (m.New < 0 && !ok) || (ok && got == m) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("node %s: mailbox %s is %+v (%v), want %+v", n.ID(), name, got, ok, m)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A node that dies without a word: its views expire, and its devices read
// UNAVAILABLE (or what the other nodes see) rather than stale in-use.
func TestClusterNodeKilled(t *testing.T) {
	expiry := 1500 * time.Millisecond
	e := newEnv(t, devicestatetest.RequireNATS(t), expiry)
	a, b, c := e.node("a"), e.node("b"), e.node("c")
	connected(t, a, b, c)
	a.OnRegistration(observe.RegAdded, binding("alice", 5070))
	b.OnRegistration(observe.RegAdded, binding("dave", 5090)) // only on B
	b.OnCall(observe.Call{State: observe.CallAnswered, CallID: "k1", Caller: "dave", Callee: "alice"})
	eventually(t, c, "alice", InUse, 5*time.Second)
	eventually(t, c, "dave", InUse, 5*time.Second)

	killed := time.Now()
	b.crash()
	// still in use until B's expiry...
	if got := c.Get("alice"); got != InUse {
		t.Fatalf("alice reads %s right after the crash", got)
	}
	// ...then what A sees, and dave is unavailable
	eventually(t, c, "alice", NotInUse, expiry+2*time.Second)
	eventually(t, c, "dave", Unavailable, time.Second)
	eventually(t, a, "dave", Unavailable, time.Second)
	took := time.Since(killed)
	t.Logf("B's views expired %s after the crash (expiry %s)", took.Round(time.Millisecond), expiry)
	if took < expiry/2 {
		t.Fatalf("B's views expired after %s, well before the expiry %s", took, expiry)
	}
	if s := c.Stats(); s.Peers != 2 || s.PeersAlive != 1 {
		t.Fatalf("C's peers: %+v", s)
	}
}

// A node that stops cleanly removes its heartbeat: the others see its
// devices UNAVAILABLE at once, not after the expiry.
func TestClusterCleanStop(t *testing.T) {
	e := newEnv(t, devicestatetest.RequireNATS(t), 30*time.Second)
	b, c := e.node("b"), e.node("c")
	connected(t, b, c)
	b.OnRegistration(observe.RegAdded, binding("dave", 5090))
	eventually(t, c, "dave", NotInUse, 5*time.Second)
	if err := b.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	eventually(t, c, "dave", Unavailable, 3*time.Second) // the expiry is 30s
}

// A node restarted under the same name replaces what its earlier run left
// in the bucket: views it no longer has are deleted.
func TestClusterRestartReplacesOldView(t *testing.T) {
	e := newEnv(t, devicestatetest.RequireNATS(t), 2*time.Second)
	b, c := e.node("b"), e.node("c")
	connected(t, b, c)
	b.OnRegistration(observe.RegAdded, binding("dave", 5090))
	b.OnRegistration(observe.RegAdded, binding("erin", 5091))
	eventually(t, c, "dave", NotInUse, 5*time.Second)
	eventually(t, c, "erin", NotInUse, 5*time.Second)
	b.crash()
	b2 := e.node("b")
	b2.OnRegistration(observe.RegAdded, binding("erin", 5091)) // erin registers again, dave does not
	eventually(t, c, "dave", Unknown, 5*time.Second)
	eventually(t, c, "erin", NotInUse, 5*time.Second)
	if c.Get("erin") != NotInUse || c.Stats().PeersAlive != 1 {
		t.Fatalf("after the restart: %+v", c.Stats())
	}
}

// NATS goes down and comes back: the node keeps working on its own state,
// counts the errors, reconnects and publishes its full view again. The
// server keeps the bucket in memory, so it comes back empty.
func TestClusterNATSDownAndBack(t *testing.T) {
	srv := devicestatetest.StartServer(t, devicestatetest.ServerOptions{})
	e := newEnv(t, srv.URL, 2*time.Second)
	x, y := e.node("x"), e.node("y")
	connected(t, x, y)
	x.OnRegistration(observe.RegAdded, binding("alice", 5070))
	eventually(t, y, "alice", NotInUse, 5*time.Second)

	srv.Kill()
	deadline := time.Now().Add(5 * time.Second)
	for x.Stats().Connected {
		if time.Now().After(deadline) {
			t.Fatal("x did not notice NATS is down")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// local state keeps working while NATS is down
	x.OnCall(observe.Call{State: observe.CallAnswered, CallID: "d1", Caller: "bob", Callee: "alice"})
	if got := x.Get("alice"); got != InUse {
		t.Fatalf("x reads %s for alice while NATS is down", got)
	}
	// y stops hearing x: after x's expiry alice is UNAVAILABLE there
	eventually(t, y, "alice", Unavailable, 5*time.Second)

	srv.Restart()
	eventually(t, y, "alice", InUse, 10*time.Second)
	eventually(t, y, "bob", InUse, 5*time.Second)
	x.OnCall(observe.Call{State: observe.CallEnded, CallID: "d1"})
	eventually(t, y, "alice", NotInUse, 5*time.Second)
	s := x.Stats()
	if s.Disconnects == 0 || s.Reconnects == 0 || s.Resyncs < 2 || !s.Connected {
		t.Fatalf("x's counters: %+v", s)
	}
	t.Logf("x: %+v", s)
}

// The WAN case: a hub and a leaf node server (a remote site), one
// sipasync node on each. The bucket lives in the hub's JetStream domain;
// the remote node reaches it through its leaf node server.
func TestClusterWAN(t *testing.T) {
	hub := devicestatetest.StartServer(t, devicestatetest.ServerOptions{Name: "hub", Domain: "hub", Hub: true})
	leaf := devicestatetest.StartServer(t, devicestatetest.ServerOptions{Name: "leaf", Domain: "leaf", LeafOf: hub})
	bucket := devicestatetest.Bucket(t)
	mk := func(id, url string) *Node {
		n, err := New(Options{NodeID: id, Cluster: &ClusterOptions{URL: url, Domain: "hub", Bucket: bucket,
			Expiry: 2 * time.Second, Timeout: 3 * time.Second}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = n.Close(context.Background()) })
		return n
	}
	h := mk("hq", hub.URL)
	r := mk("branch", leaf.URL) // the leaf node may need a moment to join: the node retries
	connected(t, h, r)
	h.OnRegistration(observe.RegAdded, binding("alice", 5070))
	r.OnRegistration(observe.RegAdded, binding("bob", 5080))
	eventually(t, r, "alice", NotInUse, 5*time.Second)
	eventually(t, h, "bob", NotInUse, 5*time.Second)
	r.OnCall(observe.Call{State: observe.CallRinging, CallID: "w1", Caller: "bob", Callee: "alice"})
	eventually(t, h, "alice", Ringing, 5*time.Second)
	h.OnCall(observe.Call{State: observe.CallAnswered, CallID: "w2", Caller: "alice", Callee: "carol"})
	eventually(t, r, "alice", RingInUse, 5*time.Second)
	r.OnCall(observe.Call{State: observe.CallFailed, CallID: "w1"})
	h.OnCall(observe.Call{State: observe.CallEnded, CallID: "w2"})
	eventually(t, r, "alice", NotInUse, 5*time.Second)
	eventually(t, h, "bob", NotInUse, 5*time.Second)
	// the remote site's node dies: the hub's node expires its views
	r.crash()
	eventually(t, h, "bob", Unavailable, 5*time.Second)
}

// Entries that are not ours are counted and ignored, never a crash.
func TestClusterForeignEntries(t *testing.T) {
	url := devicestatetest.RequireNATS(t)
	e := newEnv(t, url, 2*time.Second)
	c := e.node("c")
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var kv jetstream.KeyValue
	for kv == nil {
		if kv, err = js.KeyValue(ctx, e.bucket); err != nil {
			time.Sleep(10 * time.Millisecond) // c creates it
			kv = nil
			if ctx.Err() != nil {
				t.Fatal(err)
			}
		}
	}
	for k, v := range map[string]string{"dev.alice.zz": "SLEEPY", "node.zz": "{", "junk": "x", "mwi.100.zz": "[]"} {
		if _, err := kv.PutString(ctx, k, v); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for c.Stats().BadEntries < 4 {
		if time.Now().After(deadline) {
			t.Fatalf("bad entries not counted: %+v", c.Stats())
		}
		time.Sleep(5 * time.Millisecond)
	}
	c.OnRegistration(observe.RegAdded, binding("alice", 5070))
	if c.Get("alice") != NotInUse {
		t.Fatal("the node stopped working")
	}
}
