package workergroups

import (
	"context"
	"encoding/json"

	"github.com/sipasync/sipasync/admin"
)

// RegisterControl registers wg.list on r: every group's spec and counters.
func (gs *Groups) RegisterControl(r *admin.RPC) error {
	return r.Register("wg.list", "worker groups: spec, workers, busy, queued, completed, rejected, panicked", nil, gs.rpcWGList)
}

// GroupInfo is one row of wg.list.
type GroupInfo struct {
	Name      string `json:"name"`
	Workers   int    `json:"workers"`
	Busy      int    `json:"busy"`
	Queued    int    `json:"queued"`
	Waiting   int    `json:"waiting"`
	Completed uint64 `json:"completed"`
	Rejected  uint64 `json:"rejected"`
	Panicked  uint64 `json:"panicked"`
	Undone    uint64 `json:"undone"`
	Spec      string `json:"spec"`
}

func (gs *Groups) rpcWGList(context.Context, json.RawMessage) (any, error) {
	out := []GroupInfo{}
	for _, g := range gs.List() {
		s := g.Stats()
		out = append(out, GroupInfo{Name: g.Name(), Spec: g.Spec().String(), Workers: s.Workers,
			Busy: s.Busy, Queued: s.Queued, Waiting: s.Waiting, Completed: s.Completed,
			Rejected: s.Rejected, Panicked: s.Panicked, Undone: s.Undone})
	}
	return out, nil
}
