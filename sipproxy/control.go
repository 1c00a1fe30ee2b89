package sipproxy

import (
	"context"
	"encoding/json"

	"github.com/sipasync/sipasync/admin"
)

// RegisterControl registers the proxy's control method on r: tm.stats,
// the transaction table's and the proxy's counters.
func (p *Proxy) RegisterControl(r *admin.RPC) error {
	return r.Register("tm.stats", "transaction table and proxy counters", nil, p.rpcTMStats)
}

func (p *Proxy) rpcTMStats(context.Context, json.RawMessage) (any, error) {
	ps, ts := p.Stats(), p.txs.Stats()
	return map[string]any{
		"live": ts.Live, "parked": ts.Parked, "draining": p.Draining(),
		"created": ts.Created, "suspends": ts.Suspends, "resumes": ts.Resumes, "expired": ts.Expired,
		"canceled": ts.Canceled, "stale_refused": ts.StaleRefused, "ended_refused": ts.EndedRefused,
		"rejected": ts.Rejected, "late_cancels": ts.LateCancels,
		"requests": ps.Requests, "replies": ps.Replies, "relays": ps.Relays, "active_relays": ps.ActiveRelays,
		"relay_rejected": ps.RelayRejected, "dropped": ps.Dropped, "no_reply": ps.NoReply, "panics": ps.Panics,
		"rejected_503": ps.Rejected503, "unmatched_cancels": ps.Unmatched, "stray_responses": ps.StrayResponses, "stray_forwarded": ps.StrayForwarded,
	}, nil
}
