package eventbus

import (
	"fmt"
	"hash/maphash"
	"sync"
	"sync/atomic"
	"testing"
)

func shardOf(s *Subscription, key string) int {
	return int(maphash.String(s.seed, key) % uint64(len(s.queues)))
}

// With WithShards: ordered and serialized per key, and a stuck key does not
// hold up keys of other shards; the final message is still last.
func TestShardedSubscription(t *testing.T) {
	const keys, perKey, publishers = 16, 300, 4
	b := New()
	closeBus(t, b)
	topic := b.Topic("devices")
	var mu sync.Mutex
	seen := map[string][]int{}
	inflight := map[string]*atomic.Int32{}
	for k := range keys {
		inflight[fmt.Sprint("dev", k)] = &atomic.Int32{}
	}
	var overlaps atomic.Int32
	var finals, after atomic.Int32
	sub, err := topic.Subscribe(func(_ *Subscription, _ *Topic, m *Message) {
		if finals.Load() > 0 {
			after.Add(1)
		}
		if m.IsFinal() {
			finals.Add(1)
			return
		}
		v := m.Payload().(deviceState)
		if inflight[v.Device].Add(1) != 1 {
			overlaps.Add(1)
		}
		mu.Lock()
		var n int
		fmt.Sscan(v.State, &n)
		seen[v.Device] = append(seen[v.Device], n)
		mu.Unlock()
		inflight[v.Device].Add(-1)
	}, WithShards(4, CacheKey(deviceStateType, deviceKey)), WithCapacity(32), WithOverflow(Block))
	noErr(t, err)
	equal(t, 4, sub.Stats().Shards)

	var wg sync.WaitGroup
	for p := range publishers {
		wg.Go(func() {
			// Each publisher owns keys p, p+publishers, ...: per-key order is its order.
			for i := range perKey {
				for k := p; k < keys; k += publishers {
					deviceStateType.Publish(topic, deviceState{fmt.Sprint("dev", k), fmt.Sprint(i)})
				}
			}
		})
	}
	wg.Wait()
	waitClosed(t, "done", sub.Unsubscribe())
	equal(t, int32(1), finals.Load())
	equal(t, int32(0), after.Load(), "messages after the final one")
	equal(t, int32(0), overlaps.Load(), "overlapping dispatches of one key")
	equal(t, keys, len(seen))
	for dev, got := range seen {
		equal(t, perKey, len(got), dev)
		for i, n := range got {
			equal(t, i, n, "%s out of order", dev)
		}
	}
	st := sub.Stats()
	equal(t, uint64(keys*perKey), st.Delivered)
	equal(t, 0, st.Depth)
}

func TestShardedIsolation(t *testing.T) {
	b := New()
	closeBus(t, b)
	topic := b.Topic("devices")
	gate, open := newGate(t)
	got := make(chan string, 10)
	sub, err := topic.Subscribe(func(_ *Subscription, _ *Topic, m *Message) {
		if m.IsFinal() {
			return
		}
		v := m.Payload().(deviceState)
		if v.State == "stuck" {
			<-gate
		}
		got <- v.Device
	}, WithShards(2, CacheKey(deviceStateType, deviceKey)))
	noErr(t, err)
	// Two keys in different shards.
	a, other := "a", ""
	for i := 0; other == ""; i++ {
		if k := fmt.Sprint("k", i); shardOf(sub, k) != shardOf(sub, a) {
			other = k
		}
	}
	deviceStateType.Publish(topic, deviceState{a, "stuck"})
	deviceStateType.Publish(topic, deviceState{other, "fine"})
	equal(t, other, recv(t, got)) // delivered while a's shard is stuck
	checkFor(t, "only a's message left", func() bool { return sub.Stats().Depth == 1 })
	open()
	equal(t, a, recv(t, got))
	waitClosed(t, "done", sub.Unsubscribe())
}

func TestShardOptions(t *testing.T) {
	b := New()
	closeBus(t, b)
	noop := func(*Subscription, *Topic, *Message) {}
	_, err := b.Topic("x").Subscribe(noop, WithShards(0, func(*Message) string { return "" }))
	errIs(t, err, ErrInvalidOption)
	_, err = b.Topic("x").Subscribe(noop, WithShards(2, nil))
	errIs(t, err, ErrInvalidOption)
	// A sharded router.
	r, err := NewRouter(b.Topic("x"), WithShards(3, func(m *Message) string { return fmt.Sprint(m.Payload()) }))
	noErr(t, err)
	c := &collector{}
	r.SetDefault(c.handle)
	b.Topic("x").Publish(typA, 1)
	waitClosed(t, "done", r.Unsubscribe())
	equal(t, []any{1}, c.payloads())
	isTrue(t, c.final)
	equal(t, 3, r.Subscription().Stats().Shards)
}
