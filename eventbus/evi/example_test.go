package evi_test

import (
	"context"
	"fmt"

	"github.com/sipasync/sipasync/eventbus"
	"github.com/sipasync/sipasync/eventbus/evi"
)

func ExampleEncode() {
	b, _ := evi.Encode("E_SIP_MESSAGE", []evi.Attr{
		evi.String("user", "alice"),
		evi.String("msg", `hi, "bob"`),
	})
	fmt.Printf("%s", b)
	// Output:
	// E_SIP_MESSAGE
	// user::alice
	// msg::"hi, \"bob\""
}

func ExampleEvents() {
	bus := eventbus.New()
	ev := evi.New(bus)
	_ = ev.Declare("E_SIP_MESSAGE")

	// An in-process subscriber: local:NAME delivers to a Go function.
	_ = ev.HandleLocal("print", func(ctx context.Context, e *evi.Event) error {
		user, _ := e.Value("user")
		msg, _ := e.Value("msg")
		fmt.Printf("%s from %s: %s\n", e.Name(), user, msg)
		return nil
	})
	// As from --event 'E_SIP_MESSAGE=local:print'; a UDP listener would be
	// --event 'E_SIP_MESSAGE=udp:127.0.0.1:8888'.
	if err := ev.SubscribeFlags([]string{"E_SIP_MESSAGE=local:print"}); err != nil {
		fmt.Println(err)
	}

	_ = ev.RaiseEvent("E_SIP_MESSAGE", evi.String("user", "alice"), evi.String("msg", "hello"))
	err := ev.RaiseEvent("E_UNDECLARED")

	_ = ev.Close(context.Background()) // sends what is queued, closes the transports
	_ = bus.Close(context.Background())
	fmt.Println(err)
	// Output:
	// E_SIP_MESSAGE from alice: hello
	// evi: raise: evi: unknown event "E_UNDECLARED"
}
