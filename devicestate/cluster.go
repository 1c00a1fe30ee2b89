package devicestate

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sipasync/sipasync/internal/lograte"
)

// Cluster defaults.
const (
	DefaultBucket = "sipasync_devstate"
	DefaultExpiry = 15 * time.Second
	DefaultForget = time.Hour
)

// ClusterOptions configure the distribution over NATS JetStream.
type ClusterOptions struct {
	// URL of the NATS server(s), e.g. "nats://127.0.0.1:4222"; a comma
	// separates several. Ignored when Conn is set.
	URL string
	// Conn is a connection to use instead of dialling URL; Close leaves it open.
	Conn *nats.Conn
	// Domain is the JetStream domain that holds the bucket: empty on the
	// cluster itself; on a leaf node of a remote site, the hub's domain, so
	// that every site shares one bucket.
	Domain string
	// Bucket is the KV bucket's name (default DefaultBucket).
	Bucket string
	// Expiry: a node whose heartbeat has not been seen for this long is gone
	// and its views count as UNAVAILABLE (default DefaultExpiry). Each node
	// heartbeats every Expiry/3 and puts its own expiry in the heartbeat, so
	// the other nodes apply the value of the node they judge.
	Expiry time.Duration
	// Forget: a node gone for this long is forgotten (its views dropped); it
	// is also the bucket's MaxAge, and each node re-publishes its full view
	// every Forget/4 (default DefaultForget).
	Forget time.Duration
	// Replicas of the bucket in a JetStream cluster (default 1).
	Replicas int
	// FileStorage keeps the bucket on disk; the default is memory: the state
	// is soft, every node re-publishes its view when it reconnects.
	FileStorage bool
	// Timeout bounds each NATS request and each batch of writes (default 5s).
	Timeout time.Duration
}

// cluster publishes this node's view to the bucket and applies the other
// nodes' views from a watch on it. One goroutine (loop) does all writes;
// one per watch reads.
type cluster struct {
	n       *Node
	o       ClusterOptions
	nc      *nats.Conn
	ownConn bool
	js      jetstream.JetStream
	pre     string // subject prefix of writes: [$JS.<domain>.API.]$KV.<bucket>.
	boot    string

	ctx    context.Context
	cancel context.CancelFunc
	kickc  chan struct{}
	setupc chan struct{} // (re)connected: bind the bucket again, restart the watch
	status chan nats.Status
	wg     sync.WaitGroup // loop, liveness, watchStatus
	wwg    sync.WaitGroup // watches

	gen atomic.Uint64 // generation of the current watch

	// owned by loop
	kv       jetstream.KeyValue
	w        jetstream.KeyWatcher
	lastHB   time.Time
	lastFull time.Time

	logLimit *lograte.Limiter
}

func newCluster(n *Node, o ClusterOptions) (*cluster, error) {
	if o.Bucket == "" {
		o.Bucket = DefaultBucket
	}
	if o.Expiry <= 0 {
		o.Expiry = DefaultExpiry
	}
	if o.Forget <= 0 {
		o.Forget = DefaultForget
	}
	if o.Forget < 4*o.Expiry {
		o.Forget = 4 * o.Expiry
	}
	if o.Replicas <= 0 {
		o.Replicas = 1
	}
	if o.Timeout <= 0 {
		o.Timeout = 5 * time.Second
	}
	if o.Expiry < 100*time.Millisecond {
		return nil, fmt.Errorf("devicestate: expiry %s is below 100ms", o.Expiry)
	}
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	c := &cluster{n: n, o: o, boot: hex.EncodeToString(b), kickc: make(chan struct{}, 1),
		setupc: make(chan struct{}, 1), logLimit: lograte.New(nil, time.Second)}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	if o.Conn != nil {
		c.nc = o.Conn
	} else {
		if o.URL == "" {
			return nil, errors.New("devicestate: cluster needs a NATS URL")
		}
		nc, err := nats.Connect(o.URL, nats.Name("sipasync devicestate "+n.id),
			nats.MaxReconnects(-1), nats.ReconnectWait(250*time.Millisecond), nats.RetryOnFailedConnect(true),
			nats.PingInterval(max(o.Expiry/3, time.Second)), nats.MaxPingsOutstanding(2),
			nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
				n.stats.asyncErrors.Add(1)
				c.logErr("async", "nats error", err)
			}))
		if err != nil {
			return nil, fmt.Errorf("devicestate: cluster %q: %w", o.URL, err)
		}
		c.nc, c.ownConn = nc, true
	}
	var err error
	jsOpts := []jetstream.JetStreamOpt{jetstream.WithPublishAsyncMaxPending(8192)}
	if o.Domain != "" {
		c.js, err = jetstream.NewWithDomain(c.nc, o.Domain, jsOpts...)
		c.pre = "$JS." + o.Domain + ".API.$KV." + o.Bucket + "."
	} else {
		c.js, err = jetstream.New(c.nc, jsOpts...)
		c.pre = "$KV." + o.Bucket + "."
	}
	if err != nil {
		if c.ownConn {
			c.nc.Close()
		}
		return nil, err
	}
	return c, nil
}

// start runs the cluster's goroutines; n.cl is set before.
func (c *cluster) start() {
	c.status = c.nc.StatusChanged(nats.CONNECTED, nats.DISCONNECTED, nats.RECONNECTING)
	c.wg.Add(3)
	go c.watchStatus()
	go c.loop()
	go c.liveness()
}

// logErr logs an error at most once a second per kind.
func (c *cluster) logErr(kind, msg string, err error) {
	if ok, _ := c.logLimit.Allow(kind); !ok {
		return
	}
	c.n.log.Warn("devicestate: "+msg, "error", err)
}

func (c *cluster) kick() {
	select {
	case c.kickc <- struct{}{}:
	default:
	}
}

func (c *cluster) needSetup() {
	select {
	case c.setupc <- struct{}{}:
	default:
	}
}

func (c *cluster) watchStatus() {
	defer c.wg.Done()
	down := false
	for {
		select {
		case <-c.ctx.Done():
			return
		case s, ok := <-c.status:
			if !ok {
				return
			}
			switch s {
			case nats.DISCONNECTED, nats.RECONNECTING:
				if !down {
					down = true
					c.n.stats.disconnects.Add(1)
					c.logErr("conn", "disconnected from NATS; working on local state", nats.ErrConnectionClosed)
				}
			case nats.CONNECTED:
				if down {
					c.n.stats.reconnects.Add(1)
					c.n.log.Info("devicestate: reconnected to NATS; re-publishing the full view")
				}
				down = false
				c.needSetup()
			}
		}
	}
}

// liveness re-judges the other nodes' heartbeats ten times per expiry.
func (c *cluster) liveness() {
	defer c.wg.Done()
	t := c.n.clock.Ticker(max(c.o.Expiry/10, 10*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-t.C:
			c.n.checkLiveness(c.n.clock.Now(), c.o.Forget)
		}
	}
}

// loop owns the bucket handle and every write: setup, heartbeats, the
// dirty keys, full re-publications.
func (c *cluster) loop() {
	defer c.wg.Done()
	hbEvery := max(c.o.Expiry/3, 10*time.Millisecond)
	tick := c.n.clock.Ticker(min(hbEvery, 250*time.Millisecond))
	defer tick.Stop()
	ready, full := false, true
	for {
		if !ready && c.nc.IsConnected() {
			if err := c.setup(); err != nil {
				c.n.stats.setupErrors.Add(1)
				c.logErr("setup", "cannot use the KV bucket "+c.o.Bucket, err)
			} else {
				ready, full = true, true
			}
		}
		if ready && c.nc.IsConnected() {
			now := c.n.clock.Now()
			if full || now.Sub(c.lastFull) >= c.o.Forget/4 {
				// heartbeat first: the others take our views for alive at once
				c.lastHB = time.Time{}
			}
			if now.Sub(c.lastHB) >= hbEvery {
				if err := c.heartbeat(); err != nil {
					ready = !c.lostBucket(err)
				}
			}
			if ready && (full || now.Sub(c.lastFull) >= c.o.Forget/4) {
				c.n.markAllDirty()
				c.lastFull, full = now, false
				c.n.stats.resyncs.Add(1)
			}
			if ready {
				if err := c.flush(hbEvery); err != nil {
					ready = !c.lostBucket(err)
				}
			}
		}
		select {
		case <-c.ctx.Done():
			return
		case <-c.kickc:
		case <-c.setupc:
			ready = false
		case <-tick.C:
		}
	}
}

// lostBucket tells whether an error means the bucket (or JetStream) is gone
// and setup must run again.
func (c *cluster) lostBucket(err error) bool {
	return errors.Is(err, nats.ErrNoResponders) || errors.Is(err, jetstream.ErrNoStreamResponse) ||
		errors.Is(err, jetstream.ErrStreamNotFound) || errors.Is(err, jetstream.ErrBucketNotFound)
}

// setup binds (or creates) the bucket and (re)starts the watch, whose first
// values replace everything known of the other nodes.
func (c *cluster) setup() error {
	ctx, cancel := context.WithTimeout(c.ctx, c.o.Timeout)
	defer cancel()
	kv, err := c.js.KeyValue(ctx, c.o.Bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		storage := jetstream.MemoryStorage
		if c.o.FileStorage {
			storage = jetstream.FileStorage
		}
		kv, err = c.js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: c.o.Bucket, History: 1,
			TTL: c.o.Forget, Storage: storage, Replicas: c.o.Replicas,
			Description: "sipasync device state: dev.<device>.<node>, mwi.<mailbox>.<node>, node.<node>"})
		if errors.Is(err, jetstream.ErrBucketExists) {
			kv, err = c.js.KeyValue(ctx, c.o.Bucket)
		}
	}
	if err != nil {
		return err
	}
	if c.w != nil {
		_ = c.w.Stop()
		c.w = nil
	}
	gen := c.gen.Add(1)
	w, err := kv.WatchAll(c.ctx)
	if err != nil {
		return err
	}
	c.kv, c.w = kv, w
	c.wwg.Add(1)
	go c.watch(w, gen)
	return nil
}

// watch applies the bucket's entries; the nil entry ends the initial values.
func (c *cluster) watch(w jetstream.KeyWatcher, gen uint64) {
	defer c.wwg.Done()
	initial := true
	for e := range w.Updates() {
		if c.gen.Load() != gen {
			continue // replaced by a newer watch; drain until stopped
		}
		if e == nil {
			initial = false
			c.n.sweepRemote(gen)
			continue
		}
		c.n.applyEntry(gen, e.Key(), e.Value(), e.Operation() != jetstream.KeyValuePut, e.Created(), initial)
	}
}

type kvWrite struct {
	dirty string // the dirty-set entry it came from, "" for a heartbeat
	msg   *nats.Msg
}

func (c *cluster) heartbeat() error {
	now := c.n.clock.Now()
	v := encodeHeartbeat(heartbeat{T: now.UnixMilli(), Exp: c.o.Expiry.Milliseconds(), Boot: c.boot})
	if err := c.write(c.ctx, []kvWrite{{msg: &nats.Msg{Subject: c.pre + nodeKey(c.n.id), Data: v}}}); err != nil {
		return err
	}
	c.lastHB = now
	return nil
}

// flush writes the dirty keys in batches until none is left, with the
// heartbeat kept on time between batches.
func (c *cluster) flush(hbEvery time.Duration) error {
	for {
		if c.n.clock.Now().Sub(c.lastHB) >= hbEvery {
			if err := c.heartbeat(); err != nil {
				return err
			}
		}
		batch := c.n.takeDirty(c.pre, 4096)
		if len(batch) == 0 {
			return nil
		}
		if err := c.write(c.ctx, batch); err != nil {
			return err
		}
	}
}

// write publishes a batch asynchronously (in order, on one connection) and
// waits for the acks; the dirty keys of failed writes are marked again.
func (c *cluster) write(ctx context.Context, batch []kvWrite) error {
	futs := make([]jetstream.PubAckFuture, 0, len(batch))
	var firstErr error
	fail := func(i int, err error) {
		c.n.stats.publishErrors.Add(1)
		if firstErr == nil {
			firstErr = err
		}
		if batch[i].dirty != "" {
			c.n.redirty(batch[i].dirty)
		}
	}
	sent := 0
	for i, w := range batch {
		f, err := c.js.PublishMsgAsync(w.msg)
		if err != nil {
			for j := i; j < len(batch); j++ {
				fail(j, err)
			}
			break
		}
		futs = append(futs, f)
		sent++
	}
	timeout := time.NewTimer(c.o.Timeout)
	defer timeout.Stop()
	for i, f := range futs {
		select {
		case <-f.Ok():
			c.n.stats.published.Add(1)
		case err := <-f.Err():
			fail(i, err)
		case <-timeout.C:
			for j := i; j < sent; j++ {
				fail(j, context.DeadlineExceeded)
			}
			c.logErr("publish", "KV writes timed out", context.DeadlineExceeded)
			return context.DeadlineExceeded
		case <-ctx.Done():
			for j := i; j < sent; j++ {
				fail(j, ctx.Err())
			}
			return ctx.Err()
		}
	}
	if firstErr != nil {
		c.logErr("publish", "KV write failed", firstErr)
	}
	return firstErr
}

// close stops the loops. With clean set (Node.Close) it first writes what
// is pending and deletes the heartbeat, so the other nodes see this node
// gone at once; otherwise (a crash, in tests) it just drops the connection.
func (c *cluster) close(ctx context.Context, clean bool) error {
	c.cancel()
	c.nc.RemoveStatusListener(c.status)
	c.wg.Wait() // loop is done: c.w and c.kv are ours now
	if c.w != nil {
		_ = c.w.Stop()
	}
	c.wwg.Wait()
	var err error
	if clean && c.kv != nil && c.nc.IsConnected() {
		batch := c.n.takeDirty(c.pre, 1<<30)
		del := nats.NewMsg(c.pre + nodeKey(c.n.id))
		del.Header.Set("KV-Operation", "DEL")
		err = c.write(ctx, append(batch, kvWrite{msg: del}))
	}
	if c.ownConn {
		c.nc.Close()
	}
	return err
}

// markDirty records that an own key must be written (n.mu held).
func (n *Node) markDirty(kind, name string) {
	if n.dirty == nil {
		return
	}
	n.dirty[kind+name] = struct{}{}
	n.cl.kick()
}

func (n *Node) redirty(key string) {
	n.mu.Lock()
	if !n.closed {
		n.dirty[key] = struct{}{}
	}
	n.mu.Unlock()
}

// markAllDirty schedules the full view for writing.
func (n *Node) markAllDirty() {
	n.mu.Lock()
	defer n.mu.Unlock()
	for name, d := range n.devices {
		if d.local != Invalid {
			n.dirty[kindDev+name] = struct{}{}
		}
	}
	for name, mb := range n.mailboxes {
		if _, ok := mb.views[n.id]; ok {
			n.dirty[kindMWI+name] = struct{}{}
		}
	}
}

// takeDirty turns up to max dirty keys into writes of their current value
// (a delete when this node no longer has a view).
func (n *Node) takeDirty(pre string, limit int) []kvWrite {
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(n.dirty) == 0 {
		return nil
	}
	out := make([]kvWrite, 0, min(len(n.dirty), limit))
	for k := range n.dirty {
		if len(out) >= limit {
			break
		}
		delete(n.dirty, k)
		kind, name := k[:2], k[2:]
		var m *nats.Msg
		switch kind {
		case kindDev:
			m = &nats.Msg{Subject: pre + devKey(name, n.id)}
			if d := n.devices[name]; d != nil && d.local != Invalid {
				m.Data = encodeDevice(d.local)
			}
		case kindMWI:
			m = &nats.Msg{Subject: pre + mwiKey(name, n.id)}
			if mb := n.mailboxes[name]; mb != nil {
				if v, ok := mb.views[n.id]; ok {
					m.Data = encodeMailbox(mwiValue{New: v.New, Old: v.Old, T: v.t.UnixMilli()})
				}
			}
		}
		if m.Data == nil {
			m.Header = nats.Header{"KV-Operation": []string{"DEL"}}
		}
		out = append(out, kvWrite{dirty: k, msg: m})
	}
	return out
}

// applyEntry applies one entry of the bucket. Own keys are not applied: this
// node's view is the one in memory; one seen among the initial values that
// differs from it (left by an earlier run) is written again or deleted.
func (n *Node) applyEntry(gen uint64, key string, val []byte, deleted bool, created time.Time, initial bool) {
	kind, name, node, err := parseKey(key)
	if err != nil {
		n.stats.badEntries.Add(1)
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return
	}
	if node == n.id {
		switch kind {
		case "node":
			if hb, err := decodeHeartbeat(val); !deleted && n.cl != nil && err == nil && hb.Boot != n.cl.boot {
				n.stats.conflicts.Add(1)
				n.cl.logErr("conflict", "another process heartbeats with this node id", fmt.Errorf("boot %s", hb.Boot))
			}
		case "dev":
			if initial {
				n.markDirty(kindDev, name)
			}
		case "mwi":
			if initial {
				n.markDirty(kindMWI, name)
			}
		}
		return
	}
	n.stats.received.Add(1)
	switch kind {
	case "node":
		p := n.peers[node]
		if p == nil {
			p = &peer{}
			n.peers[node] = p
		}
		if p.gen > gen {
			return // from a watch already replaced
		}
		p.gen = gen
		hb, err := decodeHeartbeat(val)
		if deleted {
			p.hb = false
		} else if err != nil {
			n.stats.badEntries.Add(1)
			return
		} else {
			now := n.clock.Now()
			p.hb, p.boot = true, hb.Boot
			p.expiry = time.Duration(hb.Exp) * time.Millisecond
			if p.expiry <= 0 {
				p.expiry = DefaultExpiry
			}
			p.lastSeen = now
			if initial {
				// an old heartbeat is as old as the server says (clocks in sync)
				if age := now.Sub(created); age > 0 {
					p.lastSeen = now.Add(-age)
				}
			}
		}
		n.judgeLocked(node, p, n.clock.Now())
	case "dev":
		d := n.devices[name]
		if deleted {
			if d == nil {
				return
			}
			if _, ok := d.remote[node]; !ok {
				return
			}
			delete(d.remote, node)
		} else {
			s, err := decodeDevice(val)
			if err != nil {
				n.stats.badEntries.Add(1)
				return
			}
			d = n.device(name)
			if d.remote == nil {
				d.remote = map[string]remoteView{}
			}
			old, had := d.remote[node]
			if had && old.gen > gen {
				return // from a watch already replaced
			}
			d.remote[node] = remoteView{state: s, gen: gen}
			if had && old.state == s {
				return
			}
		}
		n.refreshLocked(name, d, true)
	case "mwi":
		mb := n.mailboxes[name]
		if deleted {
			if mb == nil {
				return
			}
			if _, ok := mb.views[node]; !ok {
				return
			}
			delete(mb.views, node)
		} else {
			v, err := decodeMailbox(val)
			if err != nil {
				n.stats.badEntries.Add(1)
				return
			}
			if mb == nil {
				mb = &mailbox{views: map[string]mwiView{}}
				n.mailboxes[name] = mb
			}
			mb.views[node] = mwiView{MWI: MWI{New: v.New, Old: v.Old}, t: time.UnixMilli(v.T), gen: gen}
		}
		n.refreshMailboxLocked(name, mb)
	}
}

// sweepRemote drops what the watch of generation gen did not deliver among
// its initial values: keys deleted while this node was not watching.
func (n *Node) sweepRemote(gen uint64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return
	}
	now := n.clock.Now()
	for id, p := range n.peers {
		if p.gen < gen && p.hb {
			p.hb = false
			n.judgeLocked(id, p, now)
		}
	}
	for name, d := range n.devices {
		changed := false
		for node, v := range d.remote {
			if v.gen < gen {
				delete(d.remote, node)
				changed = true
			}
		}
		if changed {
			n.refreshLocked(name, d, true)
		}
	}
	for name, mb := range n.mailboxes {
		changed := false
		for node, v := range mb.views {
			if node != n.id && v.gen < gen {
				delete(mb.views, node)
				changed = true
			}
		}
		if changed {
			n.refreshMailboxLocked(name, mb)
		}
	}
}

// checkLiveness re-judges every peer at now and forgets the ones gone for
// longer than forget.
func (n *Node) checkLiveness(now time.Time, forget time.Duration) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return
	}
	for id, p := range n.peers {
		n.judgeLocked(id, p, now)
		if !p.alive && now.Sub(p.lastSeen) > forget {
			n.forgetLocked(id)
		}
	}
}

// judgeLocked sets a peer alive or gone; a change re-aggregates its devices.
func (n *Node) judgeLocked(id string, p *peer, now time.Time) {
	alive := p.hb && now.Sub(p.lastSeen) <= p.expiry
	if alive == p.alive {
		return
	}
	p.alive = alive
	if alive {
		n.log.Info("devicestate: node alive", "peer", id)
	} else {
		n.log.Warn("devicestate: node gone; its devices count as UNAVAILABLE", "peer", id,
			"silent_for", now.Sub(p.lastSeen).Round(time.Millisecond).String())
	}
	for name, d := range n.devices {
		if _, ok := d.remote[id]; ok {
			n.refreshLocked(name, d, true)
		}
	}
}

func (n *Node) forgetLocked(id string) {
	delete(n.peers, id)
	for name, d := range n.devices {
		if _, ok := d.remote[id]; ok {
			delete(d.remote, id)
			n.refreshLocked(name, d, true)
		}
	}
	for name, mb := range n.mailboxes {
		if _, ok := mb.views[id]; ok {
			delete(mb.views, id)
			n.refreshMailboxLocked(name, mb)
		}
	}
}
