package rabbitmq

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	"github.com/sipasync/sipasync/eventbus/evi"
)

// grammarGolden is the message body of the grammar format, byte for byte:
// the event name line, then one "name::value" line per attribute, the value
// in double quotes when it holds ',', '"', CR or LF (and only then), '"'
// and '\' escaped inside quotes, every line ending in LF.
var grammarGolden = []struct {
	name  string
	attrs []evi.Attr
	want  string
}{
	{"seed scenario", []evi.Attr{evi.String("user", "alice"), evi.String("msg", "hello")},
		"E_SIP_MESSAGE\nuser::alice\nmsg::hello\n"},
	{"no attributes", nil, "E_SIP_MESSAGE\n"},
	{"empty value", []evi.Attr{evi.String("user", "")}, "E_SIP_MESSAGE\nuser::\n"},
	{"comma quoted", []evi.Attr{evi.String("msg", "a,b")}, "E_SIP_MESSAGE\nmsg::\"a,b\"\n"},
	{"quote quoted and escaped", []evi.Attr{evi.String("msg", `say "hi"`)}, "E_SIP_MESSAGE\nmsg::\"say \\\"hi\\\"\"\n"},
	{"CR quoted", []evi.Attr{evi.String("msg", "a\rb")}, "E_SIP_MESSAGE\nmsg::\"a\rb\"\n"},
	{"LF quoted", []evi.Attr{evi.String("msg", "a\nb")}, "E_SIP_MESSAGE\nmsg::\"a\nb\"\n"},
	{"CRLF quoted", []evi.Attr{evi.String("msg", "two\r\nlines")}, "E_SIP_MESSAGE\nmsg::\"two\r\nlines\"\n"},
	{"only specials", []evi.Attr{evi.String("msg", ",\"\r\n")}, "E_SIP_MESSAGE\nmsg::\",\\\"\r\n\"\n"},
	{"seed body with comma and quotes", []evi.Attr{evi.String("user", "bob"), evi.String("msg", `hello, "bob"`)},
		"E_SIP_MESSAGE\nuser::bob\nmsg::\"hello, \\\"bob\\\"\"\n"},
	{"backslash alone not quoted", []evi.Attr{evi.String("path", `C:\tmp\`)}, "E_SIP_MESSAGE\npath::C:\\tmp\\\n"},
	{"backslash escaped when quoted", []evi.Attr{evi.String("msg", "two\r\nlines\\")}, "E_SIP_MESSAGE\nmsg::\"two\r\nlines\\\\\"\n"},
	{"tab, NUL, spaces, '::' not quoted", []evi.Attr{evi.String("msg", " a\tb\x00c::d ")}, "E_SIP_MESSAGE\nmsg:: a\tb\x00c::d \n"},
	{"SIP URI not quoted", []evi.Attr{evi.String("uri", "sip:alice@example.com:5060;transport=udp")},
		"E_SIP_MESSAGE\nuri::sip:alice@example.com:5060;transport=udp\n"},
	{"UTF-8 and markup", []evi.Attr{evi.String("msg", "é ünïcode <&>"), evi.Int("n", -42)},
		"E_SIP_MESSAGE\nmsg::é ünïcode <&>\nn::-42\n"},
	{"order and repeats kept", []evi.Attr{evi.String("b", "2"), evi.String("a", "1"), evi.String("b", "3")},
		"E_SIP_MESSAGE\nb::2\na::1\nb::3\n"},
}

// The grammar format's body is the golden bytes, and decodes back.
func TestGrammarGolden(t *testing.T) {
	for _, g := range grammarGolden {
		t.Run(g.name, func(t *testing.T) {
			e, err := evi.NewEvent("E_SIP_MESSAGE", time.Time{}, g.attrs...)
			require.NoError(t, err)
			require.Equal(t, g.want, string(body(FormatGrammar, e)))
			name, attrs, err := evi.Decode([]byte(g.want))
			require.NoError(t, err)
			require.Equal(t, "E_SIP_MESSAGE", name)
			require.Equal(t, fmt.Sprint(g.attrs), fmt.Sprint(attrs))
		})
	}
}

// The seed's scenario through the real broker: every golden event arrives,
// in order, byte for byte, with the AMQP properties set.
func TestGrammarGoldenThroughBroker(t *testing.T) {
	needBroker(t)
	q := declareQueue(t, "/")
	c := consume(t, "/", q)
	ev, f := newEvents(t, DefaultOptions())
	_, err := ev.SubscribeEvent("E_SIP_MESSAGE", "rabbitmq:guest:guest@127.0.0.1:5672/"+q)
	noErr(t, err)

	golden := grammarGolden
	const rounds = 40
	before := time.Now().Truncate(time.Second)
	for i := range rounds {
		for _, g := range golden {
			noErr(t, ev.RaiseEvent("E_SIP_MESSAGE", append(g.attrs, evi.Int("i", int64(i)))...))
		}
	}
	got := c.waitN(rounds*len(golden), waitTimeout)
	ids := map[string]bool{}
	for n, d := range got {
		g := golden[n%len(golden)]
		want := g.want + fmt.Sprintf("i::%d\n", n/len(golden))
		if string(d.Body) != want {
			t.Fatalf("delivery %d:\ngot  %q\nwant %q", n, d.Body, want)
		}
		// Byte for byte what evi encodes.
		e, err := evi.NewEvent("E_SIP_MESSAGE", time.Time{}, append(g.attrs, evi.Int("i", int64(n/len(golden))))...)
		noErr(t, err)
		if string(e.Bytes()) != string(d.Body) {
			t.Fatalf("delivery %d differs from evi.Encode", n)
		}
		if d.ContentType != "text/plain" || d.Type != "E_SIP_MESSAGE" || d.AppId != "sipasync" ||
			d.DeliveryMode != amqp.Transient || d.Timestamp.Before(before) || d.Exchange != "" || d.RoutingKey != q {
			t.Fatalf("delivery %d properties: %+v", n, d)
		}
		if d.MessageId == "" || ids[d.MessageId] {
			t.Fatalf("delivery %d: message id %q empty or repeated", n, d.MessageId)
		}
		ids[d.MessageId] = true
	}
	checkFor(t, "confirms counted", 5*time.Second, func() bool { return statsOf(t, f).Confirmed == rounds*uint64(len(golden)) })
	st := statsOf(t, f)
	if st.Published != st.Confirmed || st.Dropped+st.Returned+st.Nacked+st.Retried+st.Failed+st.TooLarge != 0 ||
		!st.Connected || st.Buffered != 0 || st.Sync || st.Socket != "rabbitmq:guest:xxxxx@127.0.0.1:5672/"+q {
		t.Fatalf("stats %+v", st)
	}
}

func TestJSONFormatThroughBroker(t *testing.T) {
	needBroker(t)
	q := declareQueue(t, "/")
	c := consume(t, "/", q)
	ev, _ := newEvents(t, Options{})
	_, err := ev.SubscribeEvent("E_SIP_MESSAGE", "rabbitmq:127.0.0.1/"+q+";format=json;persistent=1")
	noErr(t, err)
	noErr(t, ev.RaiseEvent("E_SIP_MESSAGE", evi.String("user", "alice"), evi.String("msg", "hi, \"bob\"\r\n")))
	d := c.waitN(1, waitTimeout)[0]
	want := `{"jsonrpc":"2.0","method":"E_SIP_MESSAGE","params":{"user":"alice","msg":"hi, \"bob\"\r\n"}}`
	if string(d.Body) != want {
		t.Fatalf("got  %s\nwant %s", d.Body, want)
	}
	var v struct {
		Method string
		Params map[string]string
	}
	noErr(t, json.Unmarshal(d.Body, &v))
	if v.Method != "E_SIP_MESSAGE" || v.Params["msg"] != "hi, \"bob\"\r\n" {
		t.Fatalf("decoded %+v", v)
	}
	if d.ContentType != "application/json" || d.DeliveryMode != amqp.Persistent {
		t.Fatalf("properties %+v", d)
	}
}

// sync_mode=1: RaiseEvent returns only once the broker has confirmed, that
// is, once the message is in the queue.
func TestSyncModeWaitsForConfirm(t *testing.T) {
	needBroker(t)
	q := declareQueue(t, "/")
	ev, f := newEvents(t, Options{Sync: true})
	_, err := ev.SubscribeEvent("E_TEST", "rabbitmq:127.0.0.1/"+q)
	noErr(t, err)
	for i := 1; i <= 5; i++ {
		noErr(t, ev.RaiseEvent("E_TEST", evi.Int("n", int64(i))))
		if n := queueDepth(t, "/", q); n != i {
			t.Fatalf("after raise %d returned the queue holds %d messages", i, n)
		}
	}
	st := statsOf(t, f)
	if !st.Sync || st.Confirmed != 5 || st.Buffered != 0 {
		t.Fatalf("stats %+v", st)
	}
	// The socket parameter overrides the option.
	q2 := declareQueue(t, "/")
	sub, err := ev.SubscribeEvent("E_TEST", "rabbitmq:127.0.0.1/"+q2+";sync=0")
	noErr(t, err)
	noErr(t, ev.RaiseEvent("E_TEST", evi.Int("n", 6)))
	for _, s := range f.Stats() {
		if strings.HasSuffix(s.Socket, ";sync=0") && s.Sync {
			t.Fatalf("sync=0 socket is sync: %+v", s)
		}
	}
	<-sub.Unsubscribe()
}

// The queue is not created by sipasync: a message no queue takes is returned
// (mandatory), counted and logged; in sync mode the raiser gets the error.
func TestUnroutableCountedAndLogged(t *testing.T) {
	needBroker(t)
	var logs logBuffer
	noQueue := uniq(t, "missing")
	ev, f := newEvents(t, Options{Logger: newLogger(&logs)})
	_, err := ev.SubscribeEvent("E_TEST", "rabbitmq:127.0.0.1/"+noQueue)
	noErr(t, err)
	for range 3 {
		noErr(t, ev.RaiseEvent("E_TEST")) // async: returns at once
	}
	checkFor(t, "returns counted", waitTimeout, func() bool { return statsOf(t, f).Returned == 3 })
	st := statsOf(t, f)
	if st.Confirmed != 0 || st.Published != 3 || st.Dropped != 0 {
		t.Fatalf("stats %+v", st)
	}
	if !strings.Contains(logs.String(), "unroutable") || !strings.Contains(logs.String(), noQueue) {
		t.Fatalf("no log of the returned message:\n%s", logs.String())
	}
	if _, err := queueDepthErr(noQueue); err == nil {
		t.Fatal("the transport created the queue")
	}

	_, err = ev.SubscribeEvent("E_SIP_MESSAGE", "rabbitmq:127.0.0.1/"+noQueue+";sync=1")
	noErr(t, err)
	err = ev.RaiseEvent("E_SIP_MESSAGE")
	errIs(t, err, ErrUnroutable)
}

func queueDepthErr(queue string) (int, error) {
	c, err := amqp.Dial(brokerURL)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	ch, err := c.Channel()
	if err != nil {
		return 0, err
	}
	q, err := ch.QueueDeclarePassive(queue, true, false, false, false, nil)
	return q.Messages, err
}

// An event above the limit is refused with a counted error, never
// truncated; the transport guards its own limit (and the JSON form's size).
func TestTooLargeRefused(t *testing.T) {
	needBroker(t)
	q := declareQueue(t, "/")
	c := consume(t, "/", q)
	var logs logBuffer
	ev, f := newEvents(t, Options{MaxSize: 100, Logger: newLogger(&logs)})
	sub, err := ev.SubscribeEvent("E_TEST", "rabbitmq:127.0.0.1/"+q)
	noErr(t, err)
	noErr(t, ev.RaiseEvent("E_TEST", evi.String("v", strings.Repeat("x", 200)))) // evi accepts 16 KiB; async
	noErr(t, ev.RaiseEvent("E_TEST", evi.String("v", "small")))
	got := c.waitN(1, waitTimeout)
	if string(got[0].Body) != "E_TEST\nv::small\n" {
		t.Fatalf("got %q", got[0].Body)
	}
	checkFor(t, "counted", 5*time.Second, func() bool { return statsOf(t, f).TooLarge == 1 && sub.Stats().Failed == 1 })
	if !strings.Contains(logs.String(), "too large") {
		t.Fatalf("not logged:\n%s", logs.String())
	}
	<-sub.Unsubscribe()

	// Sync: the raiser gets evi.ErrEventTooLarge. A JSON body larger than
	// the limit is refused too.
	ev2, f2 := newEvents(t, Options{MaxSize: 60, Sync: true})
	_, err = ev2.SubscribeEvent("E_TEST", "rabbitmq:127.0.0.1/"+q+";format=json")
	noErr(t, err)
	err = ev2.RaiseEvent("E_TEST", evi.String("v", "0123456789")) // 15 bytes as grammar, 66 as JSON
	errIs(t, err, evi.ErrEventTooLarge)
	if st := statsOf(t, f2); st.TooLarge != 1 || st.Published != 0 {
		t.Fatalf("stats %+v", st)
	}
	// evi's own limit still applies before any transport.
	ev3, _ := newEvents(t, Options{}, evi.WithMaxSize(50))
	err = ev3.RaiseEvent("E_TEST", evi.String("v", strings.Repeat("x", 60)))
	errIs(t, err, evi.ErrEventTooLarge)
	if n := len(c.quiet(200 * time.Millisecond)); n != 1 {
		t.Fatalf("%d deliveries, want 1", n)
	}
}

// exchange?routing_key: published to the exchange with the key; a missing
// exchange is a connection error, retried until it exists (events wait).
func TestExchangeAndRoutingKey(t *testing.T) {
	needBroker(t)
	q := declareQueue(t, "/")
	exchange := uniq(t, "ex")
	var logs logBuffer
	ev, f := newEvents(t, Options{BackoffMax: 200 * time.Millisecond, Logger: newLogger(&logs)})
	_, err := ev.SubscribeEvent("E_TEST", "rabbitmq:127.0.0.1/"+exchange+"?sip.message")
	noErr(t, err)
	noErr(t, ev.RaiseEvent("E_TEST", evi.String("n", "1")))
	checkFor(t, "missing exchange reported", waitTimeout, func() bool {
		st := statsOf(t, f)
		return st.ConnectFailures > 0 && strings.Contains(st.LastError, "NOT_FOUND")
	})
	if st := statsOf(t, f); st.Buffered != 1 || st.Connected {
		t.Fatalf("stats %+v", st)
	}
	c, ch := admin(t, "/")
	defer c.Close()
	noErr(t, ch.ExchangeDeclare(exchange, "topic", false, true, false, false, nil))
	noErr(t, ch.QueueBind(q, "sip.*", exchange, false, nil))
	cons := consume(t, "/", q)
	d := cons.waitN(1, waitTimeout)[0]
	if d.Exchange != exchange || d.RoutingKey != "sip.message" || string(d.Body) != "E_TEST\nn::1\n" {
		t.Fatalf("delivery %+v", d)
	}
	if !strings.Contains(logs.String(), "cannot connect") {
		t.Fatalf("no log of the failure:\n%s", logs.String())
	}
}

// ;vhost=NAME (OpenSIPS supports only "/").
func TestVhost(t *testing.T) {
	needBroker(t)
	vhost := uniq(t, "vh")
	rabbitctl(t, "add_vhost", vhost)
	t.Cleanup(func() { rabbitctl(t, "delete_vhost", vhost) })
	rabbitctl(t, "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
	q := declareQueue(t, vhost)
	c := consume(t, vhost, q)
	ev, _ := newEvents(t, Options{Sync: true})
	_, err := ev.SubscribeEvent("E_TEST", "rabbitmq:127.0.0.1/"+q+";vhost="+vhost)
	noErr(t, err)
	noErr(t, ev.RaiseEvent("E_TEST", evi.String("vhost", vhost)))
	if d := c.waitN(1, waitTimeout)[0]; string(d.Body) != "E_TEST\nvhost::"+vhost+"\n" {
		t.Fatalf("got %q", d.Body)
	}
	// The queue is not in "/": the same key there is unroutable.
	if _, err := queueDepthErr(q); err == nil {
		t.Fatal("queue visible in vhost /")
	}
}

// rabbitmqs: AMQP over TLS (here a TLS-terminating proxy in front of the
// broker), verified against the configured roots; a broker the roots do not
// vouch for is refused.
func TestTLS(t *testing.T) {
	needBroker(t)
	serverTLS, clientTLS := selfSigned(t)
	p := newProxy(t, brokerAddr, serverTLS)
	q := declareQueue(t, "/")
	c := consume(t, "/", q)
	ev, f := newEvents(t, Options{TLS: clientTLS, Sync: true})
	_, err := ev.SubscribeEvent("E_TEST", "rabbitmqs:guest:guest@"+p.addr()+"/"+q)
	noErr(t, err)
	noErr(t, ev.RaiseEvent("E_TEST", evi.String("over", "tls")))
	if d := c.waitN(1, waitTimeout)[0]; string(d.Body) != "E_TEST\nover::tls\n" {
		t.Fatalf("got %q", d.Body)
	}
	if st := statsOf(t, f); !strings.HasPrefix(st.Socket, "rabbitmqs:") || st.Confirmed != 1 {
		t.Fatalf("stats %+v", st)
	}

	ev2, f2 := newEvents(t, Options{ConnectTimeout: time.Second}) // system roots: self-signed refused
	_, err = ev2.SubscribeEvent("E_TEST", "rabbitmqs:"+p.addr()+"/"+q)
	noErr(t, err)
	checkFor(t, "certificate refused", waitTimeout, func() bool {
		return strings.Contains(statsOf(t, f2).LastError, "certificate")
	})
}

// heartbeat: the interval asked for is negotiated with the broker; 0 asks
// for none and gets the broker's.
func TestHeartbeatNegotiated(t *testing.T) {
	needBroker(t)
	q := declareQueue(t, "/")
	for _, tc := range []struct {
		param string
		want  func(time.Duration) bool
	}{
		{";heartbeat=3", func(d time.Duration) bool { return d == 3*time.Second }},
		{";heartbeat=0", func(d time.Duration) bool { return d > 3*time.Second }}, // the broker's (RabbitMQ: 60 s)
		{"", func(d time.Duration) bool { return d == 7*time.Second }},            // the option
	} {
		ev, f := newEvents(t, Options{Heartbeat: 7 * time.Second, Sync: true})
		_, err := ev.SubscribeEvent("E_TEST", "rabbitmq:127.0.0.1/"+q+tc.param)
		noErr(t, err)
		noErr(t, ev.RaiseEvent("E_TEST"))
		if st := statsOf(t, f); !tc.want(st.Heartbeat) {
			t.Fatalf("%q: heartbeat %v", tc.param, st.Heartbeat)
		}
		t.Logf("%q: negotiated heartbeat %v", tc.param, statsOf(t, f).Heartbeat)
	}
}

// Subscriptions of several events to one socket share its transport; it is
// closed with the last one.
func TestSharedTransport(t *testing.T) {
	needBroker(t)
	q := declareQueue(t, "/")
	c := consume(t, "/", q)
	ev, f := newEvents(t, Options{})
	s1, err := ev.SubscribeEvent("E_TEST", "rabbitmq:127.0.0.1/"+q)
	noErr(t, err)
	s2, err := ev.SubscribeEvent("E_SIP_MESSAGE", "rabbitmq:127.0.0.1/"+q)
	noErr(t, err)
	noErr(t, ev.RaiseEvent("E_TEST"))
	noErr(t, ev.RaiseEvent("E_SIP_MESSAGE"))
	c.waitN(2, waitTimeout)
	checkFor(t, "confirms", 5*time.Second, func() bool { return statsOf(t, f).Confirmed == 2 })
	<-s1.Unsubscribe()
	noErr(t, ev.RaiseEvent("E_SIP_MESSAGE"))
	c.waitN(3, waitTimeout)
	<-s2.Unsubscribe()
	if n := len(f.Stats()); n != 0 {
		t.Fatalf("%d sockets open after the last unsubscribe", n)
	}
}

// Close publishes and confirms what the socket holds before it closes.
func TestCloseDrains(t *testing.T) {
	needBroker(t)
	q := declareQueue(t, "/")
	c := consume(t, "/", q)
	tr, err := NewTransport(mustSocket(t, "rabbitmq:127.0.0.1/"+q), Options{})
	noErr(t, err)
	for i := range 2000 {
		e, _ := evi.NewEvent("E_TEST", time.Now(), evi.Int("n", int64(i)))
		noErr(t, tr.Send(context.Background(), e))
	}
	noErr(t, tr.Close())
	st := tr.Stats()
	if st.Confirmed != 2000 || st.Dropped != 0 || st.Buffered != 0 {
		t.Fatalf("stats after Close %+v", st)
	}
	c.waitN(2000, waitTimeout)
	e, _ := evi.NewEvent("E_TEST", time.Now())
	errIs(t, tr.Send(context.Background(), e), ErrClosed)
}

// The password never shows: not in errors, logs, stats or evi's subscriber
// list, whatever goes wrong.
func TestPasswordNeverShown(t *testing.T) {
	needBroker(t)
	const pw = "S3cr3t-Pw_42"
	var logs logBuffer
	ev, f := newEvents(t, Options{Logger: newLogger(&logs), ConnectTimeout: time.Second, BackoffMax: 100 * time.Millisecond, DrainTimeout: 200 * time.Millisecond},
		evi.WithLogger(newLogger(&logs)), evi.WithSendTimeout(300*time.Millisecond))
	_, err := ev.SubscribeEvent("E_TEST", "rabbitmq:guest:"+pw+"@127.0.0.1/q")
	noErr(t, err)
	_, err = ev.SubscribeEvent("E_SIP_MESSAGE", "rabbitmq:bob:"+pw+"@127.0.0.1:1/q;sync=1")
	noErr(t, err)
	noErr(t, ev.RaiseEvent("E_TEST"))
	err = ev.RaiseEvent("E_SIP_MESSAGE") // sync, broker refused: times out
	errIs(t, err, ErrNotConfirmed)
	checkFor(t, "auth failures", waitTimeout, func() bool {
		for _, st := range f.Stats() {
			if st.ConnectFailures < 2 {
				return false
			}
		}
		return true
	})
	var all []string
	all = append(all, err.Error(), logs.String(), fmt.Sprintf("%+v %#v", f.Stats(), f.Stats()), fmt.Sprintf("%+v", ev.Subscribers()))
	for _, bad := range []string{"rabbitmq:u:" + pw + "@h:0/k", "rabbitmqs:u:" + pw + "@/k"} {
		_, err := ev.SubscribeEvent("E_TEST", bad)
		errIs(t, err, evi.ErrMalformedSocket)
		all = append(all, err.Error())
	}
	text := strings.Join(all, "\n")
	if strings.Contains(text, pw) {
		t.Fatalf("the password shows:\n%s", text)
	}
	if !strings.Contains(text, "ACCESS_REFUSED") && !strings.Contains(text, "403") {
		t.Fatalf("the auth failure is not reported:\n%s", text)
	}
	if !strings.Contains(text, "guest:xxxxx@127.0.0.1/q") {
		t.Fatalf("the socket is not shown redacted:\n%s", text)
	}
}

// Async mode with the broker away: events wait in the buffer; what overflows
// it is dropped, counted and logged, and what is still held at Close is
// counted too. Nothing is lost silently.
func TestBufferOverflowCounted(t *testing.T) {
	var logs logBuffer
	tr, err := NewTransport(mustSocket(t, "rabbitmq:127.0.0.1:1/q;buffer=10"),
		Options{Logger: newLogger(&logs), DrainTimeout: 200 * time.Millisecond})
	noErr(t, err)
	var refused int
	for i := range 25 {
		e, _ := evi.NewEvent("E_TEST", time.Now(), evi.Int("n", int64(i)))
		if err := tr.Send(context.Background(), e); err != nil {
			errIs(t, err, ErrBufferFull)
			refused++
		}
	}
	st := tr.Stats()
	if refused != 15 || st.Dropped != 15 || st.Buffered != 10 || st.Published != 0 {
		t.Fatalf("refused %d, stats %+v", refused, st)
	}
	noErr(t, tr.Close())
	if st := tr.Stats(); st.Dropped != 25 || st.Buffered != 0 {
		t.Fatalf("stats after Close %+v", st)
	}
	for _, want := range []string{"buffer full", "closed with events not delivered", "dropped=10", "cannot connect"} {
		if !strings.Contains(logs.String(), want) {
			t.Fatalf("log lacks %q:\n%s", want, logs.String())
		}
	}
}

// Sync mode with the broker away: a raiser waits for the send timeout and
// gets the error; with the buffer full the next raiser gets ErrBufferFull at
// once.
func TestSyncModeBrokerAway(t *testing.T) {
	ev, f := newEvents(t, Options{Sync: true, Buffer: 1}, evi.WithSendTimeout(400*time.Millisecond))
	_, err := ev.SubscribeEvent("E_TEST", "rabbitmq:127.0.0.1:1/q")
	noErr(t, err)
	first := make(chan error, 1)
	go func() { first <- ev.RaiseEvent("E_TEST", evi.Int("n", 1)) }()
	checkFor(t, "first raiser buffered", 5*time.Second, func() bool { return statsOf(t, f).Buffered == 1 })
	errIs(t, ev.RaiseEvent("E_TEST", evi.Int("n", 2)), ErrBufferFull)
	err = <-first
	errIs(t, err, ErrNotConfirmed)
	errIs(t, err, context.DeadlineExceeded)
	if !strings.Contains(err.Error(), "not published") || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("error does not say why: %v", err)
	}
	if st := statsOf(t, f); st.Failed != 2 || st.Buffered != 0 || st.Dropped != 0 {
		t.Fatalf("stats %+v", st)
	}
}

var _ = errors.New

// Printing a transport, a factory or a subscription handle (fmt's verbs, slog
// text and JSON) shows the redacted socket, never the fields that hold the
// password; nor do Stats, LastError or Send's errors. No broker needed.
func TestTransportNeverShowsPassword(t *testing.T) {
	const pw = "Tr4nsp0rt-Secret"
	var logs logBuffer
	opts := Options{Logger: newLogger(&logs), BackoffMax: 50 * time.Millisecond, DrainTimeout: 100 * time.Millisecond, Buffer: 1}
	sock := mustSocket(t, "rabbitmq:bob:"+pw+"@127.0.0.1:1/q;sync=0")
	tr, err := NewTransport(sock, opts)
	noErr(t, err)
	defer tr.Close()
	f, err := NewFactory(opts)
	noErr(t, err)
	h, err := f.New(sock)
	noErr(t, err)
	defer h.Close()
	checkFor(t, "failed connects", waitTimeout, func() bool {
		return tr.Stats().ConnectFailures >= 2 && f.Stats()[0].ConnectFailures >= 2
	})
	e, _ := evi.NewEvent("E_TEST", time.Now())
	noErr(t, tr.Send(context.Background(), e))
	sendErr := tr.Send(context.Background(), e) // buffer of 1: full
	errIs(t, sendErr, ErrBufferFull)

	var text, js logBuffer
	for _, l := range []*slog.Logger{slog.New(slog.NewTextHandler(&text, nil)), slog.New(slog.NewJSONHandler(&js, nil))} {
		l.Info("status", "transport", tr, "factory", f, "handle", h, "stats", tr.Stats(), "all", f.Stats(), "socket", sock)
	}
	all := strings.Join([]string{
		fmt.Sprintf("%v %+v %#v %s", tr, tr, tr, tr),
		fmt.Sprintf("%v %+v %#v %s", f, f, f, f),
		fmt.Sprintf("%v %+v %#v %s", h, h, h, h),
		fmt.Sprintf("%+v %#v %+v", tr.Stats(), f.Stats(), sock),
		sendErr.Error(), logs.String(), text.String(), js.String(),
	}, "\n")
	require.NotContains(t, all, pw, "the password shows")
	for _, want := range []string{"rabbitmq.Transport(rabbitmq:bob:xxxxx@127.0.0.1:1/q;sync=0)", "rabbitmq.Factory[rabbitmq:bob:xxxxx@127.0.0.1:1/q;sync=0]", "connection refused"} {
		require.Contains(t, all, want)
	}
}
