// Package devicestate is Asterisk's device state and mailbox (MWI) state
// for sipasync, distributed between proxy nodes.
//
// Each node keeps its own view of every device it has something to say
// about, from two sources: the registrar (a live binding: NOT_INUSE; the
// last binding removed or expired: UNAVAILABLE) and the calls it relays
// (per device, the calls ringing it and the calls it is in: RINGING, then
// INUSE on the 2xx, nothing more once a failure or a BYE ends the call).
// Mailbox counts are set through SetMailbox. Every change is published on
// the event bus (TopicDevices, TopicMailboxes) with a cache, which is what
// Get reads:
//
//	n, _ := devicestate.New(devicestate.Options{NodeID: "a"})
//	proxy.Calls().Add(n.OnCall) // observe.Call
//	proxy.Location().Changes().Add(func(c sipproxy.RegChange) {
//		n.OnRegistration(c.Event, observe.Registration{AOR: c.Binding.AOR, Contact: c.Binding.Contact})
//	})
//	devicestate.SetDefault(n)
//	if devicestate.Get("alice").Free() { ... } // in a route handler
//
// # Aggregation
//
// The views of all nodes (and, within one node, the registration and each
// call) are combined by Asterisk's rules (Aggregate): the view of highest
// rank wins,
//
//	INVALID < UNKNOWN < UNAVAILABLE < NOT_INUSE < ONHOLD < RINGING < INUSE < BUSY < RINGINUSE
//
// except that RINGING together with INUSE, ONHOLD or BUSY is RINGINUSE: in
// use on one node and ringing on another is ring-in-use. The view of a node
// that is gone counts as UNAVAILABLE. Every pair (row + column, in either
// order):
//
//	         UK  NI  IU  BY  IV  UA  RG  RI  OH
//	UNKNOWN  UK  NI  IU  BY  UK  UA  RG  RI  OH
//	NOTINUSE NI  NI  IU  BY  NI  NI  RG  RI  OH
//	INUSE    IU  IU  IU  BY  IU  IU  RI  RI  IU
//	BUSY     BY  BY  BY  BY  BY  BY  RI  RI  BY
//	INVALID  UK  NI  IU  BY  IV  UA  RG  RI  OH
//	UNAVAIL  UA  NI  IU  BY  UA  UA  RG  RI  OH
//	RINGING  RG  RG  RI  RI  RG  RG  RG  RI  RI
//	RINGINUS RI  RI  RI  RI  RI  RI  RI  RI  RI
//	ONHOLD   OH  OH  IU  BY  OH  OH  RI  RI  OH
//
// (UK UNKNOWN, NI NOT_INUSE, IU INUSE, BY BUSY, IV INVALID, UA UNAVAILABLE,
// RG RINGING, RI RINGINUSE, OH ONHOLD.) README.md has the same table with
// the full names; a test checks it against the code cell by cell.
//
// # Cluster
//
// With Options.Cluster the views travel through a NATS JetStream KV bucket,
// one key per device per node (Asterisk: "every server knows the state of
// each device from the perspective of each server"), and each node
// aggregates locally. A node heartbeats; one silent for longer than its
// expiry is gone and its views count as UNAVAILABLE. NATS being down stops
// nothing: the node works on its own state and republishes its full view
// when it reconnects. A remote site reaches the bucket through a NATS leaf
// node (ClusterOptions.Domain). Without a cluster the node works alone,
// in-process.
//
// README.md has the per-node rules, the KV layout, the expiry and the WAN
// set-up.
package devicestate
