// Command queue is the seed's use case for distributed device state: a
// call queue that offers each call to the first agent whose device is free
// across every node of the cluster, and answers 486 Busy Here when none is.
// An agent in a call through another node is never rung.
//
// It is the default registrar + proxy (agents register with it) plus one
// rule: an INVITE for the queue's user (--queue, default "queue") goes to the
// first agent of --agents, in that order, whose aggregated state
// (devicestate.Get) is NOT_INUSE and who has a binding here. If that agent
// rejects the call (a final response of 300 or more), the next free one is
// tried; none left: 486. Every device state change is logged ("device
// state").
//
//	go run ./examples/queue --agents alice,bob --cluster nats://127.0.0.1:4222 --node-id q1
//
// See README.md for a two-node walk-through with SIPp.
package main

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"

	"github.com/emiago/sipgo/sip"
	"github.com/spf13/pflag"

	"github.com/sipasync/sipasync"
	"github.com/sipasync/sipasync/devicestate"
	"github.com/sipasync/sipasync/eventbus"
	"github.com/sipasync/sipasync/routes"
	"github.com/sipasync/sipasync/sipproxy"
)

// Attributes the queue keeps on a queued call's transaction (they survive
// the relay and are read again in the failure route).
const (
	attrTried = "queue:tried" // []string: agents offered the call so far
	attrURI   = "queue:uri"   // sip.Uri: the queue's R-URI as it came in
	failNext  = "QUEUE_NEXT"  // failure route: offer the call to the next agent
)

// queue offers calls to agents by device state.
type queue struct {
	name   string
	agents []string
	a      *sipasync.Server

	// mu makes picking an agent and marking it ringing one step, so that two
	// calls arriving together are not offered to the same agent.
	mu sync.Mutex
}

func main() {
	q := &queue{}
	var agents string
	os.Exit(sipasync.Main("queue", os.Args[1:], os.Stderr,
		func(fs *pflag.FlagSet) {
			fs.StringVar(&q.name, "queue", "queue", "the queue's user: INVITEs for sip:USER@this-proxy are queued")
			fs.StringVar(&agents, "agents", "", "the agents (their address-of-record users), comma-separated, in order of preference")
		},
		func(a *sipasync.Server) error {
			list, err := parseAgents(agents, q.name)
			if err != nil {
				return err
			}
			q.agents, q.a = list, a
			return q.setup()
		}))
}

// parseAgents checks --agents.
func parseAgents(s, queueUser string) ([]string, error) {
	if queueUser == "" {
		return nil, errors.New("--queue must not be empty")
	}
	var out []string
	for _, ag := range strings.Split(s, ",") {
		ag = strings.TrimSpace(ag)
		switch {
		case ag == "":
			continue
		case ag == queueUser:
			return nil, fmt.Errorf("--agents: %q is the queue itself", ag)
		case slices.Contains(out, ag):
			return nil, fmt.Errorf("--agents: %q is listed twice", ag)
		}
		out = append(out, ag)
	}
	if len(out) == 0 {
		return nil, errors.New("--agents: at least one agent is needed, e.g. --agents alice,bob")
	}
	return out, nil
}

func (q *queue) setup() error {
	a := q.a
	// log every change of a device's aggregated state, with the views it
	// comes from: what an operator (and the end-to-end test) watches
	if _, err := a.DeviceState.Topic().Subscribe(func(_ *eventbus.Subscription, _ *eventbus.Topic, m *eventbus.Message) {
		if c, ok := devicestate.StateType.Payload(m); ok {
			a.Log.Info("device state", "device", c.Device, "state", c.State.String(), "old", c.Old.String(),
				"views", views(c.Views))
		}
	}, eventbus.WithName("queue:log")); err != nil {
		return err
	}
	if err := a.Routes.Failure(failNext, routes.HandlerFunc(q.next)); err != nil {
		return err
	}
	a.Log.Info("queue ready", "queue", q.name, "agents", strings.Join(q.agents, ","))
	return a.Routes.Request(a.Proxy.DefaultRoute(sipproxy.DefaultOptions{
		BeforeRelay: routes.HandlerFunc(func(c *routes.Context) error {
			req := c.Request()
			if !req.IsInvite() || req.Recipient.User != q.name {
				return nil // not for the queue: lookup and relay
			}
			c.SetAttr(attrURI, *req.Recipient.Clone())
			return q.offer(c, nil)
		}),
	}))
}

// next is the failure route of a queued call: the agent rejected it or did
// not answer; offer it to the next free agent.
func (q *queue) next(c *routes.Context) error {
	tried, _ := c.Attr(attrTried)
	list, _ := tried.([]string)
	if len(list) == 0 || c.Response() == nil {
		return routes.Error(500, "Server Internal Error", errors.New("queue: failure route without an offered agent"))
	}
	c.Logger().Info("queue: agent did not take the call", "queue", q.name, "agent", list[len(list)-1],
		"status", c.Response().StatusCode)
	return q.offer(c, list)
}

// offer relays the call to the first free agent not in tried, or answers
// 486 Busy Here.
func (q *queue) offer(c *routes.Context, tried []string) error {
	req := c.Request()
	n := q.a.DeviceState
	callID := ""
	if h := req.CallID(); h != nil {
		callID = h.Value()
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	var skipped []string
	for _, agent := range q.agents {
		if slices.Contains(tried, agent) {
			continue
		}
		st := n.Get(agent) // aggregated over every node
		if !st.Free() {
			skipped = append(skipped, agent+"="+st.String())
			continue
		}
		if len(q.a.Proxy.Location().Lookup(agent)) == 0 {
			// free, but registered with another node only: this node cannot reach it
			skipped = append(skipped, agent+"=not-registered-here")
			continue
		}
		// Mark the agent ringing now, before the INVITE leaves, so that the
		// next call does not pick it; the proxy reports the same call (same
		// Call-ID) as it progresses.
		n.OnCall(sipproxy.CallEvent{State: sipproxy.CallRinging, CallID: callID,
			Caller: sipproxy.FromUser(req), Callee: agent})
		c.SetAttr(attrTried, append(slices.Clone(tried), agent))
		uri, _ := c.Attr(attrURI)
		target, _ := uri.(sip.Uri)
		target.User = agent
		req.Recipient = target
		c.OnFailure(failNext)
		err := q.a.Proxy.LookupRelay(c)
		if err != nil || c.Outcome() != routes.OutcomeRelayed {
			n.OnCall(sipproxy.CallEvent{State: sipproxy.CallFailed, CallID: callID})
			return err
		}
		c.Logger().Info("queue: offering the call", "queue", q.name, "agent", agent, "skipped", strings.Join(skipped, ","))
		return nil
	}
	c.Logger().Info("queue: no agent free", "queue", q.name, "skipped", strings.Join(skipped, ","))
	return c.Reply(486, "Busy Here")
}

// views formats the per-node views of a device: "q1=NOT_INUSE,b=INUSE(gone)".
func views(vs []devicestate.NodeState) string {
	parts := make([]string, len(vs))
	for i, v := range vs {
		parts[i] = v.Node + "=" + v.State.String()
		if !v.Alive {
			parts[i] += "(gone)"
		}
	}
	return strings.Join(parts, ",")
}
