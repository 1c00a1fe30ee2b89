package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/spf13/pflag"

	"github.com/sipasync/sipasync"
	"github.com/sipasync/sipasync/eventbus/evi"
	"github.com/sipasync/sipasync/internal/testlock"
)

const brokerURL = "amqp://guest:guest@127.0.0.1:5672/"

func broker(t *testing.T) *amqp.Channel {
	t.Helper()
	testlock.Shared(t, testlock.RabbitMQ) // no broker restart meanwhile
	conn, err := amqp.DialConfig(brokerURL, amqp.Config{Dial: amqp.DefaultDial(3 * time.Second)})
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("RabbitMQ at 127.0.0.1:5672 is needed (CI is set): %v", err)
		}
		t.Skipf("RabbitMQ at 127.0.0.1:5672 unreachable (%v): start it with scripts/test-deps.sh", err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	return ch
}

// build starts the example in-process with args, as main would.
func build(t *testing.T, args ...string) (*sipasync.Server, error) {
	t.Helper()
	fs := pflag.NewFlagSet("rabbitmq", pflag.ContinueOnError)
	f := sipasync.BindFlags(fs)
	if err := fs.Parse(append([]string{"--log-level", "error"}, args...)); err != nil {
		t.Fatal(err)
	}
	f.LogWriter = io.Discard
	a, err := sipasync.New(*f)
	if err != nil {
		return nil, err
	}
	if err := setup(a); err != nil {
		return nil, err
	}
	if err := a.Start(context.Background()); err != nil {
		return nil, err
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), f.ShutdownTimeout)
		defer cancel()
		_ = a.Shutdown(ctx)
	})
	return a, nil
}

func freeUDPPort(t *testing.T) int {
	t.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

// The seed's scenario end to end: a SIP MESSAGE in, E_SIP_MESSAGE with the
// R-URI user and the body in the queue, in the seed's grammar; in sync mode
// the MESSAGE is answered only after the broker confirmed.
func TestMessageRaisesEventToRabbitMQ(t *testing.T) {
	ch := broker(t)
	q := fmt.Sprintf("sipasync.test.example.%d", time.Now().UnixNano())
	if _, err := ch.QueueDeclare(q, true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = ch.QueueDelete(q, false, false, false) })
	port := freeUDPPort(t)
	a, err := build(t, "--listen", fmt.Sprintf("udp:127.0.0.1:%d", port),
		"--event", "E_SIP_MESSAGE=rabbitmq:guest:guest@127.0.0.1:5672/"+q, "--rabbitmq-sync-mode", "1")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.Dial("udp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	body := `Hello, "bob"`
	msg := strings.Join([]string{
		fmt.Sprintf("MESSAGE sip:bob@127.0.0.1:%d SIP/2.0", port),
		"Via: SIP/2.0/UDP " + conn.LocalAddr().String() + ";branch=z9hG4bK-rabbitmq-1;rport",
		"Max-Forwards: 70",
		"From: <sip:alice@127.0.0.1>;tag=a1",
		"To: <sip:bob@127.0.0.1>",
		"Call-ID: rabbitmq-example-1@127.0.0.1",
		"CSeq: 1 MESSAGE",
		"Content-Type: text/plain",
		fmt.Sprintf("Content-Length: %d", len(body)),
		"", body}, "\r\n")
	if _, err := conn.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 4096)
	n, err := conn.Read(buf)
	if err != nil {
		t.Fatalf("no answer to the MESSAGE: %v", err)
	}
	if !strings.HasPrefix(string(buf[:n]), "SIP/2.0 404") { // bob is not registered
		t.Fatalf("answer %q", buf[:n])
	}
	// Sync mode: the answer came after the confirm, so the event is queued.
	got, ok, err := ch.Get(q, true)
	if err != nil || !ok {
		t.Fatalf("no event in the queue when the MESSAGE was answered (ok %v, err %v)", ok, err)
	}
	want := "E_SIP_MESSAGE\nuser::bob\nmsg::\"Hello, \\\"bob\\\"\"\n"
	if string(got.Body) != want {
		t.Fatalf("event %q, want %q", got.Body, want)
	}
	// The transport's counters are on /metrics, the password redacted.
	mfs, err := a.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	confirmed := 0.0
	for _, mf := range mfs {
		if mf.GetName() == "sipasync_transport_confirmed_total" {
			for _, m := range mf.GetMetric() {
				confirmed += m.GetCounter().GetValue()
				if l := m.GetLabel()[0].GetValue(); strings.Contains(l, "guest:guest") {
					t.Fatalf("socket label shows the password: %s", l)
				}
			}
		}
	}
	if confirmed != 1 {
		t.Fatalf("sipasync_transport_confirmed_total = %v, want 1", confirmed)
	}
}

// A malformed socket is a start-up error that does not show the password.
func TestMalformedSocketFailsStartup(t *testing.T) {
	_, err := build(t, "--listen", fmt.Sprintf("udp:127.0.0.1:%d", freeUDPPort(t)),
		"--event", "E_SIP_MESSAGE=rabbitmq:bob:Secret-123@127.0.0.1:99999/q")
	if !errors.Is(err, sipasync.ErrUsage) || !strings.Contains(err.Error(), evi.ErrMalformedSocket.Error()) {
		t.Fatalf("error %v, want a usage error for a malformed socket", err)
	}
	if strings.Contains(err.Error(), "Secret-123") {
		t.Fatalf("error shows the password: %v", err)
	}
	_, err = build(t, "--listen", fmt.Sprintf("udp:127.0.0.1:%d", freeUDPPort(t)), "--rabbitmq-sync-mode", "2")
	if err == nil || !strings.Contains(err.Error(), "sync-mode") {
		t.Fatalf("error %v, want a bad --rabbitmq-sync-mode", err)
	}
}
