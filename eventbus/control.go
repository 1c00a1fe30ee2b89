package eventbus

import (
	"context"
	"encoding/json"

	"github.com/sipasync/sipasync/admin"
)

// RegisterControl registers bus.subscribers on r: every subscription's
// queue and counters.
func (b *Bus) RegisterControl(r *admin.RPC) error {
	return r.Register("bus.subscribers", "event bus subscriptions: queue depth, high water, delivered, dropped", nil, b.rpcBusSubscribers)
}

// SubscriptionInfo is one row of bus.subscribers.
type SubscriptionInfo struct {
	Topic     string `json:"topic"`
	Name      string `json:"name"`
	Depth     int    `json:"depth"`
	Capacity  int    `json:"capacity"`
	HighWater int    `json:"high_water"`
	Delivered uint64 `json:"delivered"`
	Dropped   uint64 `json:"dropped"`
	Panics    uint64 `json:"panics"`
	Policy    string `json:"policy"`
}

func (b *Bus) rpcBusSubscribers(context.Context, json.RawMessage) (any, error) {
	out := []SubscriptionInfo{}
	for _, s := range b.Stats() {
		out = append(out, SubscriptionInfo{Topic: s.Topic, Name: s.Name, Policy: s.Policy.String(),
			Capacity: s.Capacity, Depth: s.Depth, HighWater: s.HighWater, Delivered: s.Delivered,
			Dropped: s.Dropped, Panics: s.Panics})
	}
	return out, nil
}
