// Command statsd is a Stasis-style statistics subscriber: it subscribes to
// sipasync's own events (transactions parked, resumed, expired, canceled;
// registrations added, refreshed, removed, expired) through a message router
// and sends counters to a statsd server over UDP, one datagram per flush:
//
//	sipasync.transaction.suspended:3|c
//	sipasync.registration.added:1|c
//
// The proxy is the default registrar + proxy with each initial request to a
// local user parked for --delay before the relay, so there is something to
// count.
//
//	go run ./examples/statsd --statsd 127.0.0.1:8125 --async-ms-timer 10
//	nc -klu 127.0.0.1 8125     # watch the counters
package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/spf13/pflag"

	"github.com/sipasync/sipasync"
	"github.com/sipasync/sipasync/async"
	"github.com/sipasync/sipasync/eventbus"
	"github.com/sipasync/sipasync/routes"
	"github.com/sipasync/sipasync/sipevents"
	"github.com/sipasync/sipasync/sipproxy"
)

// counters aggregates between flushes.
type counters struct {
	mu sync.Mutex
	m  map[string]int
}

func (c *counters) inc(name string) {
	c.mu.Lock()
	c.m[name]++
	c.mu.Unlock()
}

func (c *counters) take() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.m
	c.m = make(map[string]int)
	return out
}

func main() {
	var addr string
	var every, delay time.Duration
	os.Exit(sipasync.Main("statsd", os.Args[1:], os.Stderr,
		func(fs *pflag.FlagSet) {
			fs.StringVar(&addr, "statsd", "127.0.0.1:8125", "statsd server host:port (UDP)")
			fs.DurationVar(&every, "flush", time.Second, "how often counters are sent")
			fs.DurationVar(&delay, "delay", 100*time.Millisecond, "park time before each relay (needs --async-ms-timer below 1s)")
		},
		func(a *sipasync.Server) error {
			conn, err := net.Dial("udp", addr)
			if err != nil {
				return fmt.Errorf("--statsd: %w", err)
			}
			cs := &counters{m: make(map[string]int)}
			_, _, _, all := a.Publisher.Topics()
			r, err := eventbus.NewRouter(all, eventbus.WithName("statsd"))
			if err != nil {
				return err
			}
			if err := eventbus.Route(r, sipevents.Transaction, func(_ *eventbus.Message, e sipevents.TxEvent) {
				cs.inc("sipasync.transaction." + e.Event)
			}); err != nil {
				return err
			}
			if err := eventbus.Route(r, sipevents.Registration, func(_ *eventbus.Message, e sipevents.RegEvent) {
				cs.inc("sipasync.registration." + e.Event)
			}); err != nil {
				return err
			}
			go flush(context.Background(), conn, cs, every)

			if delay < time.Second || delay%time.Second != 0 {
				a.Routes.ExpectMsTimer("request_route (--delay " + delay.String() + ")")
			}
			if err := a.Routes.Route("RELAY", routes.HandlerFunc(a.Proxy.LookupRelay)); err != nil {
				return err
			}
			return a.Routes.Request(a.Proxy.DefaultRoute(sipproxy.DefaultOptions{
				BeforeRelay: routes.HandlerFunc(func(c *routes.Context) error {
					if delay >= time.Second && delay%time.Second == 0 {
						return async.Route(c, "RELAY", delay)
					}
					return async.MsRoute(c, "RELAY", delay)
				}),
			}))
		}))
}

// flush sends the counters gathered since the last flush as one datagram.
func flush(ctx context.Context, conn net.Conn, cs *counters, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		m := cs.take()
		if len(m) == 0 {
			continue
		}
		names := make([]string, 0, len(m))
		for n := range m {
			names = append(names, n)
		}
		sort.Strings(names)
		var b strings.Builder
		for _, n := range names {
			fmt.Fprintf(&b, "%s:%d|c\n", n, m[n])
		}
		_, _ = conn.Write([]byte(b.String()))
	}
}
