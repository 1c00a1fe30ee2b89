package evi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/sipasync/sipasync/eventbus"
)

func TestDeclare(t *testing.T) {
	ev, _ := newEvents(t, nil)
	noErr(t, ev.Declare("E_SIP_MESSAGE", "core:tkv", "E_X-1.2"))
	errIs(t, ev.Declare("E_SIP_MESSAGE"), ErrDuplicate)
	errIs(t, ev.Declare("E_A", "E_A"), ErrDuplicate)
	for _, bad := range []string{"", "E X", "E=X", "E,X", `E"X`, "E\nX", strings.Repeat("E", 256)} {
		errIs(t, ev.Declare(bad), ErrInvalidName)
	}
	equal(t, []string{"E_SIP_MESSAGE", "E_X-1.2", "core:tkv"}, ev.Declared())
	topic, err := ev.Topic("E_SIP_MESSAGE")
	noErr(t, err)
	equal(t, TopicPrefix+"E_SIP_MESSAGE", topic.Name())
	_, err = ev.Topic("E_NOPE")
	errIs(t, err, ErrUnknownEvent)
}

// The seed's example: E_SIP_MESSAGE with user and msg reaches a local Go
// handler and Go subscribers of the bus, in order.
func TestRaiseEventLocalAndBus(t *testing.T) {
	mock := clock.NewMock()
	ev, _ := newEvents(t, []eventbus.Option{eventbus.WithClock(mock)})
	noErr(t, ev.Declare("E_SIP_MESSAGE", "E_OTHER"))
	got := make(chan *Event, 100)
	noErr(t, ev.HandleLocal("audit", func(ctx context.Context, e *Event) error {
		if _, ok := ctx.Deadline(); !ok {
			t.Error("Send without a deadline")
		}
		got <- e
		return nil
	}))
	sub, err := ev.SubscribeEvent("E_SIP_MESSAGE", "local:audit")
	noErr(t, err)

	var mu sync.Mutex
	var onBus []string
	busSub, err := ev.AllTopic().Subscribe(func(_ *eventbus.Subscription, from *eventbus.Topic, m *eventbus.Message) {
		if e, ok := EventType.Payload(m); ok {
			mu.Lock()
			onBus = append(onBus, from.Name()+" "+e.Name())
			mu.Unlock()
		}
	}, eventbus.WithOverflow(eventbus.Block))
	noErr(t, err)

	equal(t, true, ev.Probe("E_SIP_MESSAGE"))
	mock.Add(time.Hour)
	for i := range 50 {
		noErr(t, ev.RaiseEvent("E_SIP_MESSAGE", String("user", "alice"), Int("msg", int64(i))))
	}
	noErr(t, ev.RaiseEvent("E_OTHER"))
	for i := range 50 {
		e := recv(t, got)
		equal(t, "E_SIP_MESSAGE", e.Name())
		equal(t, mock.Now(), e.Time())
		equal(t, []Attr{{"user", "alice"}, {"msg", fmt.Sprint(i)}}, e.Attrs())
		v, ok := e.Value("msg")
		equal(t, true, ok)
		equal(t, fmt.Sprint(i), v)
		equal(t, fmt.Sprintf("E_SIP_MESSAGE\nuser::alice\nmsg::%d\n", i), string(e.Bytes()))
		equal(t, len(e.Bytes()), e.Size())
	}
	waitClosed(t, "bus subscriber", busSub.Unsubscribe())
	equal(t, 51, len(onBus))
	equal(t, "event:E_SIP_MESSAGE E_SIP_MESSAGE", onBus[0])
	equal(t, "event:E_OTHER E_OTHER", onBus[50])
	equal(t, Stats{Raised: 51}, ev.Stats())
	checkFor(t, "sends counted", func() bool { return sub.Stats().Sent == 50 }) // counted after Send returns
	st := sub.Stats()
	equal(t, "local:audit", st.Socket)
	equal(t, "E_SIP_MESSAGE", sub.Event())
	equal(t, "local", sub.Socket().Scheme())
	equal(t, false, ev.Probe("E_OTHER"))
	equal(t, false, ev.Probe("E_NOPE"))
}

func TestRaiseEventRefusals(t *testing.T) {
	ev, _ := newEvents(t, nil, WithMaxSize(64))
	noErr(t, ev.Declare("E_SIP_MESSAGE"))
	errIs(t, ev.RaiseEvent("E_UNDECLARED"), ErrUnknownEvent)
	errIs(t, ev.RaiseEvent("E_SIP_MESSAGE", Attr{"a:b", "v"}), ErrInvalidAttrName)
	body := strings.Repeat("x", 64)
	err := ev.RaiseEvent("E_SIP_MESSAGE", String("msg", body))
	errIs(t, err, ErrEventTooLarge)
	// Exactly at the limit is accepted.
	fits := strings.Repeat("x", 64-len("E_SIP_MESSAGE\nmsg::\n"))
	noErr(t, ev.RaiseEvent("E_SIP_MESSAGE", String("msg", fits)))
	equal(t, Stats{Raised: 1, TooLarge: 1, Unknown: 1, Invalid: 1}, ev.Stats())
}

func TestDefaultMaxSize(t *testing.T) {
	ev, _ := newEvents(t, nil)
	noErr(t, ev.Declare("E"))
	overhead := len("E\nmsg::\n")
	noErr(t, ev.RaiseEvent("E", String("msg", strings.Repeat("x", DefaultMaxSize-overhead))))
	errIs(t, ev.RaiseEvent("E", String("msg", strings.Repeat("x", DefaultMaxSize-overhead+1))), ErrEventTooLarge)
}

func TestUDPTransport(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	noErr(t, err)
	defer pc.Close()
	ev, _ := newEvents(t, nil)
	noErr(t, ev.Declare("E_SIP_MESSAGE"))
	sub, err := ev.SubscribeEvent("E_SIP_MESSAGE", "udp:"+pc.LocalAddr().String())
	noErr(t, err)
	noErr(t, ev.RaiseEvent("E_SIP_MESSAGE", String("user", "alice"), String("msg", "hello, \"world\"\r\n")))
	noErr(t, ev.RaiseEvent("E_SIP_MESSAGE", String("user", "bob"), String("msg", "")))
	noErr(t, pc.SetReadDeadline(time.Now().Add(waitTimeout)))
	buf := make([]byte, 65536)
	for _, want := range []string{
		"E_SIP_MESSAGE\nuser::alice\nmsg::\"hello, \\\"world\\\"\r\n\"\n",
		"E_SIP_MESSAGE\nuser::bob\nmsg::\n",
	} {
		n, _, err := pc.ReadFrom(buf)
		noErr(t, err)
		equal(t, want, string(buf[:n]))
	}
	waitClosed(t, "unsubscribe", sub.Unsubscribe())
	equal(t, uint64(2), sub.Stats().Sent)
	equal(t, 0, len(ev.Subscribers()))
}

func TestSubscribeEventErrors(t *testing.T) {
	ev, _ := newEvents(t, nil)
	noErr(t, ev.Declare("E_SIP_MESSAGE"))
	noErr(t, ev.HandleLocal("audit", func(context.Context, *Event) error { return nil }))
	for _, tc := range []struct {
		event, socket string
		want          error
	}{
		{"E_NOPE", "udp:127.0.0.1:9", ErrUnknownEvent},
		{"E_SIP_MESSAGE", "rabbitmq:guest:secret@localhost/key", ErrUnknownScheme},
		{"E_SIP_MESSAGE", "no-colon", ErrMalformedSocket},
		{"E_SIP_MESSAGE", ":127.0.0.1:9", ErrMalformedSocket},
		{"E_SIP_MESSAGE", "udp:", ErrMalformedSocket},
		{"E_SIP_MESSAGE", "1udp:x", ErrMalformedSocket},
		{"E_SIP_MESSAGE", "u_p:x", ErrMalformedSocket},
		{"E_SIP_MESSAGE", "udp:127.0.0.1", ErrMalformedSocket},
		{"E_SIP_MESSAGE", "udp::9", ErrMalformedSocket},
		{"E_SIP_MESSAGE", "udp:127.0.0.1:0", ErrMalformedSocket},
		{"E_SIP_MESSAGE", "udp:127.0.0.1:65536", ErrMalformedSocket},
		{"E_SIP_MESSAGE", "udp:127.0.0.1:http", ErrMalformedSocket},
		{"E_SIP_MESSAGE", "local:nobody", ErrUnknownHandler},
	} {
		_, err := ev.SubscribeEvent(tc.event, tc.socket)
		if !errors.Is(err, tc.want) {
			t.Errorf("SubscribeEvent(%q, %q): %v, want %v", tc.event, tc.socket, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "secret") {
			t.Errorf("error leaks the password: %v", err)
		}
	}
	_, err := ev.SubscribeEvent("E_SIP_MESSAGE", "local:audit")
	noErr(t, err)
	_, err = ev.SubscribeEvent("E_SIP_MESSAGE", "LOCAL:audit") // the scheme is case-insensitive
	errIs(t, err, ErrAlreadySubscribed)
	_, err = ev.SubscribeEvent("E_SIP_MESSAGE", "udp:[::1]:9")
	noErr(t, err)
	equal(t, 2, len(ev.Subscribers()))
	equal(t, "udp:[::1]:9", ev.Subscribers()[1].Socket)
}

func TestRegisterTransport(t *testing.T) {
	logs := &logBuffer{}
	ev, _ := newEvents(t, nil, WithLogger(slog.New(slog.NewTextHandler(logs, nil))))
	noErr(t, ev.Declare("E_SIP_MESSAGE"))
	fake := &fakeTransport{}
	var gotSocket Socket
	noErr(t, ev.RegisterTransport("rabbitmq", func(s Socket) (Transport, error) {
		if strings.HasSuffix(s.Address(), "/bad") {
			return nil, fmt.Errorf("%w %s: no routing key", ErrMalformedSocket, s)
		}
		gotSocket = s
		return fake, nil
	}))
	errIs(t, ev.RegisterTransport("rabbitmq", NewUDP), ErrDuplicate)
	errIs(t, ev.RegisterTransport("udp", NewUDP), ErrDuplicate)
	errIs(t, ev.RegisterTransport("bad scheme", NewUDP), ErrMalformedSocket)
	errIs(t, ev.RegisterTransport("x", nil), ErrMalformedSocket)

	_, err := ev.SubscribeEvent("E_SIP_MESSAGE", "rabbitmq:guest:secret@localhost/bad")
	errIs(t, err, ErrMalformedSocket)
	if strings.Contains(err.Error(), "secret") {
		t.Fatalf("error leaks the password: %v", err)
	}
	sub, err := ev.SubscribeEvent("E_SIP_MESSAGE", "rabbitmq:guest:secret@localhost/key")
	noErr(t, err)
	// The transport gets the address in clear; everything else is redacted.
	equal(t, "guest:secret@localhost/key", gotSocket.Address())
	equal(t, "rabbitmq:guest:xxxxx@localhost/key", sub.Stats().Socket)
	equal(t, "rabbitmq:guest:xxxxx@localhost/key", sub.Stats().Queue.Name)

	fake.err = errors.New("broker down")
	noErr(t, ev.RaiseEvent("E_SIP_MESSAGE", String("user", "alice")))
	noErr(t, ev.RaiseEvent("E_SIP_MESSAGE", String("user", "bob")))
	checkFor(t, "sends", func() bool { return sub.Stats().Failed == 2 })
	equal(t, 1, logs.count("cannot send event")) // rate-limited
	if strings.Contains(logs.String(), "secret") {
		t.Fatalf("log leaks the password: %s", logs.String())
	}
	waitClosed(t, "unsubscribe", sub.Unsubscribe())
	equal(t, 1, fake.closed)
	equal(t, 2, fake.sent())
}

// A stuck transport loses its own events (counted) and holds up neither
// RaiseEvent nor the other subscribers.
func TestSlowTransportIsolation(t *testing.T) {
	ev, _ := newEvents(t, nil, WithQueue(4))
	noErr(t, ev.Declare("E"))
	gate, open := newGate(t)
	entered := make(chan struct{}, 1)
	noErr(t, ev.HandleLocal("stuck", func(ctx context.Context, e *Event) error {
		select {
		case entered <- struct{}{}:
		default:
		}
		<-gate
		return nil
	}))
	var mu sync.Mutex
	var fast []string
	noErr(t, ev.HandleLocal("fast", func(ctx context.Context, e *Event) error {
		v, _ := e.Value("n")
		mu.Lock()
		fast = append(fast, v)
		mu.Unlock()
		return nil
	}))
	stuck, err := ev.SubscribeEvent("E", "local:stuck")
	noErr(t, err)
	fastSub, err := ev.SubscribeEvent("E", "local:fast", WithQueueSize(256))
	noErr(t, err)
	noErr(t, ev.RaiseEvent("E", Int("n", -1)))
	recv(t, entered)
	for i := range 100 {
		noErr(t, ev.RaiseEvent("E", Int("n", int64(i)))) // returns although "stuck" is stuck
	}
	checkFor(t, "fast subscriber", func() bool { return fastSub.Stats().Sent == 101 })
	equal(t, uint64(0), fastSub.Stats().Queue.Dropped)
	mu.Lock()
	for i := 1; i < len(fast); i++ {
		var a, b int
		fmt.Sscan(fast[i-1], &a)
		fmt.Sscan(fast[i], &b)
		if b <= a {
			t.Fatalf("fast subscriber out of order: %v", fast)
		}
	}
	mu.Unlock()
	st := stuck.Stats()
	equal(t, uint64(101-4), st.Queue.Dropped)
	equal(t, 4, st.Queue.Depth)
	open()
	checkFor(t, "stuck drains", func() bool { return stuck.Stats().Sent == 4 })
}

func TestExpire(t *testing.T) {
	mock := clock.NewMock()
	ev, _ := newEvents(t, []eventbus.Option{eventbus.WithClock(mock)})
	noErr(t, ev.Declare("E"))
	noErr(t, ev.HandleLocal("h", func(context.Context, *Event) error { return nil }))
	sub, err := ev.SubscribeEvent("E", "local:h", WithExpire(time.Minute))
	noErr(t, err)
	equal(t, mock.Now().Add(time.Minute), sub.Stats().Expires)
	mock.Add(40 * time.Second)
	again, err := ev.SubscribeEvent("E", "local:h", WithExpire(time.Minute)) // refresh
	noErr(t, err)
	if again != sub {
		t.Fatal("refresh returned another subscriber")
	}
	equal(t, mock.Now().Add(time.Minute), ev.Subscribers()[0].Expires)
	mock.Add(40 * time.Second) // the first expiry has passed: still subscribed
	equal(t, 1, len(ev.Subscribers()))
	mock.Add(20 * time.Second)
	waitClosed(t, "expiry", sub.Done())
	equal(t, 0, len(ev.Subscribers()))
	// Without WithExpire, a second subscription of the same socket is an error.
	_, err = ev.SubscribeEvent("E", "local:h")
	noErr(t, err)
	_, err = ev.SubscribeEvent("E", "local:h")
	errIs(t, err, ErrAlreadySubscribed)
}

func TestClose(t *testing.T) {
	bus := eventbus.New()
	defer bus.Close(context.Background())
	ev := New(bus)
	noErr(t, ev.Declare("E"))
	fake := &fakeTransport{}
	noErr(t, ev.RegisterTransport("fake", func(Socket) (Transport, error) { return fake, nil }))
	_, err := ev.SubscribeEvent("E", "fake:x")
	noErr(t, err)
	noErr(t, ev.RaiseEvent("E"))
	noErr(t, ev.Close(t.Context()))
	equal(t, 1, fake.sent()) // queued events are sent before the transport closes
	equal(t, 1, fake.closed)
	errIs(t, ev.RaiseEvent("E"), ErrClosed)
	_, err = ev.SubscribeEvent("E", "fake:y")
	errIs(t, err, ErrClosed)
	noErr(t, ev.Close(t.Context()))
}

func TestSubscribeFlags(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	noErr(t, err)
	defer pc.Close()
	ev, _ := newEvents(t, nil)
	noErr(t, ev.Declare("E_SIP_MESSAGE", "E_PIKE_BLOCKED"))
	noErr(t, ev.SubscribeFlags([]string{
		"E_SIP_MESSAGE=udp:" + pc.LocalAddr().String(),
		"E_PIKE_BLOCKED=udp:" + pc.LocalAddr().String(),
	}))
	equal(t, 2, len(ev.Subscribers()))
	errIs(t, ev.SubscribeFlags([]string{"E_UNKNOWN=udp:127.0.0.1:9"}), ErrUnknownEvent)
	errIs(t, ev.SubscribeFlags([]string{"E_SIP_MESSAGE"}), ErrMalformedSocket)
	err = ev.SubscribeFlags([]string{"E_SIP_MESSAGE=amqp:u:hunter2@h/k"})
	errIs(t, err, ErrUnknownScheme)
	if strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("error leaks the password: %v", err)
	}
}
