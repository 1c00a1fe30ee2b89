package devicestate

import (
	"context"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/sipasync/sipasync/devicestate/devicestatetest"
	"github.com/sipasync/sipasync/eventbus"
	"github.com/sipasync/sipasync/observe"
)

// benchNodes makes nodes a and c on the shared NATS server, in a bucket of
// their own, and waits until they see each other.
func benchNodes(b *testing.B) (*Node, *Node) {
	b.Helper()
	url := devicestatetest.RequireNATS(b)
	bucket := devicestatetest.Bucket(b)
	b.Cleanup(func() { devicestatetest.DeleteBucket(url, bucket, "") })
	mk := func(id string) *Node {
		n, err := New(Options{NodeID: id, Cluster: &ClusterOptions{URL: url, Bucket: bucket,
			Expiry: 5 * time.Second, Timeout: 10 * time.Second}})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = n.Close(context.Background()) })
		return n
	}
	a, c := mk("a"), mk("c")
	deadline := time.Now().Add(10 * time.Second)
	for a.Stats().PeersAlive < 1 || c.Stats().PeersAlive < 1 {
		if time.Now().After(deadline) {
			b.Fatalf("nodes do not see each other: %+v %+v", a.Stats(), c.Stats())
		}
		time.Sleep(5 * time.Millisecond)
	}
	return a, c
}

// BenchmarkPropagation measures how long one state change made on node a
// takes to reach node c's bus through NATS JetStream: from the call event
// on a to the Change delivered to a subscriber on c. One change at a time
// (alice rings, then is free again), so each sample is the latency of an
// unloaded cluster. Run it with -benchtime 2000x for 2,000 samples; it
// reports their p50, p99 and maximum.
func BenchmarkPropagation(b *testing.B) {
	a, c := benchNodes(b)
	got := make(chan Change, 64)
	sub, err := c.Topic().Subscribe(func(_ *eventbus.Subscription, _ *eventbus.Topic, m *eventbus.Message) {
		if ch, ok := StateType.Payload(m); ok && ch.Device == "alice" {
			got <- ch
		}
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { <-sub.Unsubscribe() })
	wait := func(s State) {
		timeout := time.After(10 * time.Second)
		for {
			select {
			case ch := <-got:
				if ch.State == s {
					return
				}
			case <-timeout:
				b.Fatalf("c never read alice %s: %+v", s, c.Stats())
			}
		}
	}
	a.OnRegistration(observe.RegAdded, binding("alice", 5070))
	wait(NotInUse)

	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		id := "p" + strconv.Itoa(i)
		start := time.Now()
		a.OnCall(observe.Call{State: observe.CallRinging, CallID: id, Callee: "alice"})
		wait(Ringing)
		lat = append(lat, time.Since(start))
		// back to NOT_INUSE, untimed
		b.StopTimer()
		a.OnCall(observe.Call{State: observe.CallFailed, CallID: id})
		wait(NotInUse)
		b.StartTimer()
	}
	b.StopTimer()
	slices.Sort(lat)
	q := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) }
	b.ReportMetric(q(0.50), "µs-p50")
	b.ReportMetric(q(0.99), "µs-p99")
	b.ReportMetric(float64(lat[len(lat)-1].Microseconds()), "µs-max")
	b.ReportMetric(float64(len(lat)), "samples")
}

// BenchmarkPublish measures how many state changes one node publishes per
// second: b.N devices register on node a as fast as the caller can make
// them (each a change to write: the node coalesces changes of one device,
// so distinct devices are the worst case). Timed until JetStream has
// acknowledged them all (published/s) and until node c knows every device
// (converged/s).
func BenchmarkPublish(b *testing.B) {
	a, c := benchNodes(b)
	pub0 := a.Stats().Published
	devs0 := c.Stats().Devices
	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		a.OnRegistration(observe.RegAdded, binding("d"+strconv.Itoa(i), 5000))
	}
	made := time.Since(start)
	deadline := time.Now().Add(5*time.Minute + time.Duration(b.N)*time.Millisecond)
	var published time.Duration
	for {
		if published == 0 && a.Stats().Published-pub0 >= uint64(b.N) {
			published = time.Since(start)
		}
		if published != 0 && c.Stats().Devices-devs0 >= b.N {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("not converged: a %+v c %+v", a.Stats(), c.Stats())
		}
		time.Sleep(time.Millisecond)
	}
	converged := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/made.Seconds(), "made/s")
	b.ReportMetric(float64(b.N)/published.Seconds(), "published/s")
	b.ReportMetric(float64(b.N)/converged.Seconds(), "converged/s")
	if s := a.Stats(); s.PublishErrors != 0 {
		b.Logf("publish errors (retried): %d", s.PublishErrors)
	}
}
