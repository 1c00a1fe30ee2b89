package eventbus

import (
	"sync"
	"testing"
)

type deviceState struct {
	Device, State string
}

var deviceStateType = NewType[deviceState]("device_state")

func deviceKey(v deviceState) string { return v.Device }

func TestCacheSnapshotsAndUpdates(t *testing.T) {
	b := New()
	closeBus(t, b)
	all := b.Topic("devices")
	cache, err := NewCache(all, deviceStateType.MessageType(), CacheKey(deviceStateType, deviceKey))
	noErr(t, err)

	var mu sync.Mutex
	var updates []string
	upd, err := cache.Topic().Subscribe(func(_ *Subscription, _ *Topic, m *Message) {
		u, ok := CacheUpdateType.Payload(m)
		if !ok {
			return
		}
		state := func(m *Message) string {
			if m == nil {
				return "-"
			}
			v, _ := deviceStateType.Payload(m)
			return v.State
		}
		mu.Lock()
		updates = append(updates, u.ID+":"+state(u.Old)+">"+state(u.New))
		mu.Unlock()
	}, WithOverflow(Block))
	noErr(t, err)

	// Per-object topics forwarded into the "all" topic.
	alice, bob := b.NewTopic("device:alice"), b.NewTopic("device:bob")
	for _, tp := range []*Topic{alice, bob} {
		_, err := Forward(tp, all)
		noErr(t, err)
	}
	_, ok := cache.Get("alice")
	isTrue(t, !ok)
	equal(t, 0, cache.Len())

	m1 := deviceStateType.Publish(alice, deviceState{"alice", "INUSE"})
	// The cache is updated before Publish returns.
	got, ok := cache.Get("alice")
	isTrue(t, ok)
	same(t, m1, got)
	same(t, alice, got.Topic()) // the original topic is kept

	deviceStateType.Publish(bob, deviceState{"bob", "RINGING"})
	all.Publish(typA, "other type: not cached")
	deviceStateType.Publish(bob, deviceState{"", "no id: not cached"})
	m3 := deviceStateType.Publish(alice, deviceState{"alice", "NOT_INUSE"})

	snap := cache.Snapshot()
	equal(t, 2, len(snap))
	same(t, m3, snap["alice"])
	equal(t, []string{"alice", "bob"}, cache.IDs())
	// A snapshot is a copy: later changes do not show in it.
	PublishClear(bob, deviceStateType.MessageType(), "bob")
	equal(t, 2, len(snap))
	equal(t, []string{"alice"}, cache.IDs())
	PublishClear(bob, deviceStateType.MessageType(), "bob")                        // already gone: no update
	PublishClear(bob, typA, "alice")                                               // another type's cache
	deviceStateType.Publish(b.NewTopic("unlinked"), deviceState{"carol", "INUSE"}) // not forwarded

	waitClosed(t, "updates", upd.Unsubscribe())
	equal(t, []string{"alice:->INUSE", "bob:->RINGING", "alice:INUSE>NOT_INUSE", "bob:RINGING>-"}, updates)

	cache.Close()
	cache.Close()
	deviceStateType.Publish(alice, deviceState{"alice", "BUSY"})
	got, _ = cache.Get("alice")
	same(t, m3, got)
}

func TestCacheErrors(t *testing.T) {
	b := New()
	closeBus(t, b)
	_, err := NewCache(b.Topic("x"), nil, func(*Message) string { return "" })
	errIs(t, err, ErrInvalidOption)
	_, err = NewCache(b.Topic("x"), typA, nil)
	errIs(t, err, ErrInvalidOption)
	// The cache topic is downstream of its source: linking it back is a cycle.
	c, err := NewCache(b.Topic("x"), typA, func(*Message) string { return "k" })
	noErr(t, err)
	_, err = Forward(c.Topic(), b.Topic("x"))
	errIs(t, err, ErrCycle)
}

func TestForward(t *testing.T) {
	b := New()
	closeBus(t, b)
	a, mid, all := b.Topic("a"), b.Topic("mid"), b.Topic("all")
	fw1, err := Forward(a, mid)
	noErr(t, err)
	_, err = Forward(mid, all)
	noErr(t, err)
	_, err = Forward(a, mid)
	errIs(t, err, ErrDuplicate)
	_, err = Forward(all, a)
	errIs(t, err, ErrCycle)
	_, err = Forward(a, a)
	errIs(t, err, ErrCycle)
	_, err = Forward(a, New().Topic("x"))
	errIs(t, err, ErrForeignTopic)

	var mu sync.Mutex
	var origins []string
	_, err = all.Subscribe(func(_ *Subscription, topic *Topic, m *Message) {
		if m.IsFinal() {
			return
		}
		mu.Lock()
		origins = append(origins, topic.Name()+"/"+m.Topic().Name())
		mu.Unlock()
	})
	noErr(t, err)
	aSub := &collector{}
	_, err = a.Subscribe(aSub.handle)
	noErr(t, err)

	a.Publish(typA, 1)
	mid.Publish(typA, 2)
	fw1.Cancel()
	fw1.Cancel()
	a.Publish(typA, 3) // no longer forwarded
	all.Publish(typA, 4)
	noErr(t, b.Close(t.Context()))
	equal(t, []string{"a/a", "mid/mid", "all/all"}, origins)
	equal(t, []any{1, 3}, aSub.payloads())
}
