// Package devicestate is Asterisk's device state and mailbox (MWI) state
// for sipasync, distributed between proxy nodes.
//
// Each node keeps its own view of every device it has something to say
// about, from two sources: the registrar (a live binding: NOT_INUSE; the
// last binding removed or expired: UNAVAILABLE) and the calls it relays
// (per device, the calls ringing it and the calls it is in). The views of
// all nodes are aggregated by Asterisk's rules (Aggregate): in use on one
// node and ringing on another is RINGINUSE. Every change is published on
// the event bus (TopicDevices, TopicMailboxes) with a cache, which is what
// Get reads:
//
//	n, _ := devicestate.New(devicestate.Options{NodeID: "a"})
//	cfg.OnCall = n.OnCall                 // sipproxy.Config
//	cfg.Location.OnChange = n.OnRegistration
//	devicestate.SetDefault(n)
//	if devicestate.Get("alice").Free() { ... }
//
// With Options.Cluster the views travel through a NATS JetStream KV bucket,
// one key per device per node (Asterisk: "every server knows the state of
// each device from the perspective of each server"), and each node
// aggregates locally. A node heartbeats; one silent for longer than its
// expiry is gone and its views count as UNAVAILABLE. Without a cluster the
// node works alone, in-process.
//
// The aggregation table, the per-node rules, the KV layout, the expiry and
// the WAN set-up are in README.md.
package devicestate
