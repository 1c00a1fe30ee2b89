package sipasync

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/sipasync/sipasync/devicestate"
	"github.com/sipasync/sipasync/internal/config"
)

// DeviceStateOptions configure device state: in-process by default, over
// NATS JetStream with --cluster.
type DeviceStateOptions struct {
	Cluster string
	NodeID  string
	Domain  string
	Bucket  string
	Expiry  time.Duration
	BusyAt  int
}

// Register adds the device state flags to fs.
func (f *DeviceStateOptions) Register(fs *pflag.FlagSet) {
	fs.StringVar(&f.Cluster, "cluster", "", "NATS server(s) with JetStream for distributed device state, e.g. nats://127.0.0.1:4222 (comma-separated); empty: in-process, this node only")
	fs.StringVar(&f.NodeID, "node-id", "", "this node's name in the cluster: letters, digits, - and _ (default: the host name)")
	fs.DurationVar(&f.Expiry, "devstate-expiry", devicestate.DefaultExpiry, "a node not heard from for this long is gone: its devices read UNAVAILABLE")
	fs.StringVar(&f.Domain, "cluster-domain", "", "JetStream domain that holds the device state bucket; on a remote site's leaf node server, the hub's domain")
	fs.StringVar(&f.Bucket, "devstate-bucket", devicestate.DefaultBucket, "JetStream KV bucket of the device state")
	fs.IntVar(&f.BusyAt, "devstate-busy-at", 0, "calls on this node at which a device reads BUSY (device_state_busy_at); 0: never")
}

// options checks the flags and turns them into devicestate options.
func (f *DeviceStateOptions) options(a *Server) (devicestate.Options, error) {
	o := devicestate.Options{NodeID: f.NodeID, Bus: a.Bus, BusyAt: f.BusyAt, Logger: a.Log}
	if f.BusyAt < 0 {
		return o, fmt.Errorf("%w: --devstate-busy-at must be >= 0", ErrUsage)
	}
	if f.Cluster == "" {
		return o, nil
	}
	for _, u := range strings.Split(f.Cluster, ",") {
		if !strings.HasPrefix(u, "nats://") && !strings.HasPrefix(u, "tls://") {
			return o, fmt.Errorf("%w: --cluster %q: want nats://host:port", ErrUsage, config.Redact(u))
		}
	}
	if f.Expiry < 100*time.Millisecond {
		return o, fmt.Errorf("%w: --devstate-expiry must be at least 100ms", ErrUsage)
	}
	o.Cluster = &devicestate.ClusterOptions{URL: f.Cluster, Domain: f.Domain, Bucket: f.Bucket, Expiry: f.Expiry}
	return o, nil
}

// newDeviceState makes the Server's device state node and makes it the
// default one (devicestate.Get); observe joins it to the proxy's calls and
// registrations.
func (a *Server) newDeviceState() error {
	o, err := a.Options.DeviceState.options(a)
	if err != nil {
		return err
	}
	n, err := devicestate.New(o)
	if err != nil {
		return fmt.Errorf("%w: %s", ErrUsage, config.Redact(err.Error()))
	}
	a.DeviceState = n
	devicestate.SetDefault(n)
	a.devstateMode = "in-process"
	if o.Cluster != nil {
		a.devstateMode = "cluster " + config.Redact(o.Cluster.URL) // no NATS password in the logs
	}
	return nil
}

// devstateCloseBudget bounds the node's goodbye (pending writes and the
// heartbeat's removal) at shutdown.
const devstateCloseBudget = 2 * time.Second

// closeDeviceState stops the node: pending writes and its heartbeat's
// removal go out within devstateCloseBudget. The budget is its own, not
// what is left of ctx: a shutdown that spent --shutdown-timeout waiting for
// live transactions still tells the other nodes at once that this one is
// gone, instead of leaving them to wait for the expiry.
func (a *Server) closeDeviceState(ctx context.Context) {
	if a.DeviceState == nil {
		return
	}
	if devicestate.Default() == a.DeviceState {
		devicestate.SetDefault(nil)
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), devstateCloseBudget)
	defer cancel()
	if err := a.DeviceState.Close(ctx); err != nil {
		a.Log.Warn("device state: close", "error", err)
	}
}
