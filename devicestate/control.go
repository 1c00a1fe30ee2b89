package devicestate

import (
	"context"
	"encoding/json"
	"sort"
	"strings"

	"github.com/sipasync/sipasync/admin"
)

// RegisterControl registers devstate.get and devstate.list on r.
func (n *Node) RegisterControl(r *admin.RPC) error {
	if err := r.Register("devstate.get", "a device's aggregated state and the views of each node; device is user, user@domain or sip:user@domain", []string{"device"}, n.rpcDevstateGet); err != nil {
		return err
	}
	return r.Register("devstate.list", "every known device and its state", nil, n.rpcDevstateList)
}

// DeviceInfo is one device in devstate.get and devstate.list.
type DeviceInfo struct {
	Device string           `json:"device"`
	State  string           `json:"state"`
	Views  []DeviceNodeView `json:"views,omitempty"`
}

// DeviceNodeView is one node's view of a device.
type DeviceNodeView struct {
	Node  string `json:"node"`
	State string `json:"state"`
	Alive bool   `json:"alive"`
}

func deviceInfo(c Change, views bool) DeviceInfo {
	d := DeviceInfo{Device: c.Device, State: c.State.String()}
	if views {
		for _, v := range c.Views {
			d.Views = append(d.Views, DeviceNodeView{Node: v.Node, State: v.State.String(), Alive: v.Alive})
		}
	}
	return d
}

func (n *Node) rpcDevstateGet(_ context.Context, p json.RawMessage) (any, error) {
	var in struct {
		Device admin.Str `json:"device"`
	}
	if err := admin.DecodeParams(p, &in); err != nil {
		return nil, err
	}
	if in.Device == "" {
		return nil, admin.InvalidParams("param \"device\" is empty")
	}
	for _, name := range deviceNames(string(in.Device)) {
		if c, ok := n.Change(name); ok {
			return deviceInfo(c, true), nil
		}
	}
	return DeviceInfo{Device: string(in.Device), State: n.Get(string(in.Device)).String()}, nil
}

// deviceNames are the names devstate.get tries for what an operator
// typed: as given, without a sip:/sips: scheme, and the user part alone
// (the registrar keys devices by user unless it serves several domains),
// so "alice", "alice@example.com" and "sip:alice@example.com" all find
// alice.
func deviceNames(s string) []string {
	out := []string{s}
	if rest, ok := strings.CutPrefix(s, "sip:"); ok {
		s = rest
		out = append(out, s)
	} else if rest, ok := strings.CutPrefix(s, "sips:"); ok {
		s = rest
		out = append(out, s)
	}
	if user, _, ok := strings.Cut(s, "@"); ok && user != "" {
		out = append(out, user)
	}
	return out
}

func (n *Node) rpcDevstateList(context.Context, json.RawMessage) (any, error) {
	out := []DeviceInfo{}
	for _, m := range n.Cache().Snapshot() {
		if c, ok := StateType.Payload(m); ok {
			out = append(out, deviceInfo(c, false))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Device < out[j].Device })
	return out, nil
}
