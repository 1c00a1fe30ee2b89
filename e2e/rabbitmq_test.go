package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/sipasync/sipasync/internal/sipptest"
	"github.com/sipasync/sipasync/internal/testlock"
)

// The seed's event_rabbitmq scenario with the main binary: --event ships
// E_SIP_MESSAGE to RabbitMQ (every sipasync program has the transport), in
// sync mode, and the consumer gets the event in the seed's grammar.
func TestMainBinaryShipsEventsToRabbitMQ(t *testing.T) {
	testlock.Shared(t, testlock.RabbitMQ) // no broker restart meanwhile
	conn, err := amqp.Dial("amqp://guest:guest@127.0.0.1:5672/")
	if err != nil {
		t.Fatalf("RabbitMQ at 127.0.0.1:5672: %v (make test starts it)", err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	q := fmt.Sprintf("sipasync.e2e.%d", time.Now().UnixNano())
	if _, err := ch.QueueDeclare(q, false, true, false, false, nil); err != nil {
		t.Fatal(err)
	}
	p := startProxy(t, "sipasync", "--event", "E_SIP_MESSAGE=rabbitmq:guest:guest@127.0.0.1:5672/"+q+";sync=1")
	if strings.Contains(p.Logs(), "guest:guest") {
		t.Fatalf("the log shows the AMQP password:\n%s", p.Logs())
	}
	uas(t, p, "uas_message.xml", "bob")
	res := run(t, p, sipptest.Options{Scenario: scenario("uac_message.xml"), Service: "bob", MaxCalls: 1,
		Keys: map[string]string{"code": "200"}})
	sipptest.RequireSuccess(t, res, 1)
	// Sync mode: the MESSAGE was answered after the broker confirmed, so the
	// event is in the queue now.
	msg, ok, err := ch.Get(q, true)
	if err != nil || !ok {
		t.Fatalf("no event in queue %s (ok=%v, err=%v)", q, ok, err)
	}
	want := "E_SIP_MESSAGE\nuser::bob\nmsg::\"Hello from sipasync test call 1.\r\n\"\n"
	if got := string(msg.Body); got != want {
		t.Fatalf("event %q, want exactly %q", got, want)
	}
}

func TestBadRabbitMQSocketIsStartupError(t *testing.T) {
	out, code := runExit(t, "sipasync", "--listen", "udp:127.0.0.1:0", "--admin", "127.0.0.1:0",
		"--event", "E_SIP_MESSAGE=rabbitmq:bob:s3cret@127.0.0.1:99999/q")
	if code != 2 || strings.Count(out, "\n") != 1 || !strings.Contains(out, "port") {
		t.Fatalf("exit %d, %q; want 2 and one line about the port", code, out)
	}
	if strings.Contains(out, "s3cret") {
		t.Fatalf("the error shows the password: %q", out)
	}
}
