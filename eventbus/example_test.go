package eventbus_test

import (
	"context"
	"fmt"

	"github.com/sipasync/sipasync/eventbus"
)

type Registration struct {
	AOR, Contact string
}

var RegistrationType = eventbus.NewType[Registration]("registration")

func ExampleTopic_Subscribe() {
	bus := eventbus.New()
	topic := bus.Topic("registrations")

	sub, _ := topic.Subscribe(func(sub *eventbus.Subscription, from *eventbus.Topic, m *eventbus.Message) {
		if m.IsFinal() {
			fmt.Println("final message: clean up")
			return
		}
		r, _ := RegistrationType.Payload(m)
		fmt.Printf("%s on %s: %s\n", m.Type(), from, r.AOR)
	}, eventbus.WithName("audit"), eventbus.WithCapacity(256))

	RegistrationType.Publish(topic, Registration{AOR: "sip:alice@example.com"})
	RegistrationType.Publish(topic, Registration{AOR: "sip:bob@example.com"})
	<-sub.Unsubscribe()
	st := sub.Stats()
	fmt.Println("delivered", st.Delivered, "dropped", st.Dropped)
	// Output:
	// registration on registrations: sip:alice@example.com
	// registration on registrations: sip:bob@example.com
	// final message: clean up
	// delivered 2 dropped 0
}

func ExampleNewRouter() {
	bus := eventbus.New()
	topic := bus.Topic("sip")
	hangup := eventbus.NewMessageType("hangup")

	r, _ := eventbus.NewRouter(topic)
	_ = eventbus.Route(r, RegistrationType, func(m *eventbus.Message, v Registration) {
		fmt.Println("registration", v.AOR)
	})
	r.SetDefault(func(_ *eventbus.Subscription, _ *eventbus.Topic, m *eventbus.Message) {
		if m.IsFinal() {
			fmt.Println("router done")
			return
		}
		fmt.Println("other:", m.Type())
	})

	RegistrationType.Publish(topic, Registration{AOR: "sip:alice@example.com"})
	topic.Publish(hangup, "call-1")
	<-r.Unsubscribe()
	// Output:
	// registration sip:alice@example.com
	// other: hangup
	// router done
}

type DeviceState struct {
	Device, State string
}

var DeviceStateType = eventbus.NewType[DeviceState]("device_state")

func ExampleNewCache() {
	bus := eventbus.New()
	defer bus.Close(context.Background())
	all := bus.Topic("devices")
	cache, _ := eventbus.NewCache(all, DeviceStateType.MessageType(),
		eventbus.CacheKey(DeviceStateType, func(v DeviceState) string { return v.Device }))

	// One topic per device, forwarded into the "all" topic.
	alice := bus.NewTopic("device:alice")
	fw, _ := eventbus.Forward(alice, all)
	defer fw.Cancel()

	DeviceStateType.Publish(alice, DeviceState{"alice", "INUSE"})
	DeviceStateType.Publish(alice, DeviceState{"alice", "NOT_INUSE"})
	m, _ := cache.Get("alice")
	v, _ := DeviceStateType.Payload(m)
	fmt.Println(v.State, "first published on", m.Topic())

	eventbus.PublishClear(alice, DeviceStateType.MessageType(), "alice") // the device is gone
	fmt.Println(cache.Len(), "cached")
	// Output:
	// NOT_INUSE first published on device:alice
	// 0 cached
}
