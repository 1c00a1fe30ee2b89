package rabbitmq

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/sipasync/sipasync/eventbus"
	"github.com/sipasync/sipasync/eventbus/evi"
	"github.com/sipasync/sipasync/internal/testlock"
)

const (
	brokerAddr  = "127.0.0.1:5672"
	brokerURL   = "amqp://guest:guest@" + brokerAddr + "/"
	waitTimeout = 20 * time.Second
)

func TestMain(m *testing.M) {
	slog.SetDefault(slog.New(slog.DiscardHandler))
	goleak.VerifyTestMain(m)
}

var brokerOnce struct {
	sync.Once
	err error
}

// needBroker skips the test when no broker listens on 127.0.0.1:5672 and CI
// is unset; under CI (CI set) an unreachable broker fails the test.
func needBroker(t testing.TB) {
	t.Helper()
	brokerOnce.Do(func() {
		c, err := amqp.DialConfig(brokerURL, amqp.Config{Dial: amqp.DefaultDial(3 * time.Second)})
		if err == nil {
			err = c.Close()
		}
		brokerOnce.err = err
	})
	if brokerOnce.err == nil {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("RabbitMQ at %s is needed (CI is set): %v; run scripts/test-deps.sh", brokerAddr, brokerOnce.err)
	}
	t.Skipf("RabbitMQ at %s unreachable (%v): start it with scripts/test-deps.sh; under CI this test fails instead", brokerAddr, brokerOnce.err)
}

// uniq returns a name unique to this run and test.
func uniq(t testing.TB, what string) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	name := strings.NewReplacer("/", ".", " ", "_").Replace(t.Name())
	return fmt.Sprintf("sipasync.test.%s.%s.%s", name, what, hex.EncodeToString(b[:]))
}

// admin is a plain amqp091 connection for the test's own declarations and
// consumers (sipasync never declares anything).
func admin(t testing.TB, vhost string) (*amqp.Connection, *amqp.Channel) {
	t.Helper()
	url := brokerURL
	if vhost != "/" {
		url = "amqp://guest:guest@" + brokerAddr + "/" + vhost
	}
	var c *amqp.Connection
	var err error
	deadline := time.Now().Add(waitTimeout)
	for {
		c, err = amqp.DialConfig(url, amqp.Config{Dial: amqp.DefaultDial(3 * time.Second)})
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond) // the broker may be restarting
	}
	if err != nil {
		t.Fatalf("admin connection: %v", err)
	}
	ch, err := c.Channel()
	if err != nil {
		t.Fatalf("admin channel: %v", err)
	}
	return c, ch
}

// declareQueue declares a durable queue with a unique name, deleted at the
// end of the test.
func declareQueue(t testing.TB, vhost string) string {
	t.Helper()
	name := uniq(t, "q")
	c, ch := admin(t, vhost)
	defer c.Close()
	if _, err := ch.QueueDeclare(name, true, false, false, false, nil); err != nil {
		t.Fatalf("declare queue: %v", err)
	}
	t.Cleanup(func() {
		c, ch := admin(t, vhost)
		defer c.Close()
		if _, err := ch.QueueDelete(name, false, false, false); err != nil {
			t.Logf("delete queue %s: %v", name, err)
		}
	})
	return name
}

// queueDepth returns the number of ready messages in a queue.
func queueDepth(t testing.TB, vhost, queue string) int {
	t.Helper()
	c, ch := admin(t, vhost)
	defer c.Close()
	q, err := ch.QueueDeclarePassive(queue, true, false, false, false, nil)
	if err != nil {
		t.Fatalf("inspect queue %s: %v", queue, err)
	}
	return q.Messages
}

// consumer reads a queue, acknowledging each delivery after recording it,
// and reconnects when the broker goes away (for the restart tests).
type consumer struct {
	t     testing.TB
	vhost string
	queue string

	mu   sync.Mutex
	got  []amqp.Delivery
	more chan struct{} // cap 1: a delivery arrived

	stop chan struct{}
	done chan struct{}
}

func consume(t testing.TB, vhost, queue string) *consumer {
	t.Helper()
	c := &consumer{t: t, vhost: vhost, queue: queue, more: make(chan struct{}, 1),
		stop: make(chan struct{}), done: make(chan struct{})}
	ready := make(chan struct{})
	go c.run(ready)
	select {
	case <-ready:
	case <-time.After(waitTimeout):
		t.Fatal("consumer did not start")
	}
	t.Cleanup(c.close)
	return c
}

func (c *consumer) run(ready chan struct{}) {
	defer close(c.done)
	url := brokerURL
	if c.vhost != "/" {
		url = "amqp://guest:guest@" + brokerAddr + "/" + c.vhost
	}
	for {
		select {
		case <-c.stop:
			return
		default:
		}
		conn, err := amqp.DialConfig(url, amqp.Config{Dial: amqp.DefaultDial(2 * time.Second)})
		if err != nil {
			select {
			case <-c.stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			continue
		}
		ch, err := conn.Channel()
		var deliveries <-chan amqp.Delivery
		if err == nil {
			_ = ch.Qos(1000, 0, false)
			deliveries, err = ch.Consume(c.queue, "", false, false, false, false, nil)
		}
		if err != nil {
			_ = conn.Close()
			time.Sleep(50 * time.Millisecond)
			continue
		}
		if ready != nil {
			close(ready)
			ready = nil
		}
	loop:
		for {
			select {
			case <-c.stop:
				_ = conn.Close()
				return
			case d, ok := <-deliveries:
				if !ok {
					break loop
				}
				c.mu.Lock()
				c.got = append(c.got, d)
				c.mu.Unlock()
				select {
				case c.more <- struct{}{}:
				default:
				}
				_ = d.Ack(false)
			}
		}
		_ = conn.Close()
	}
}

func (c *consumer) close() {
	select {
	case <-c.stop:
	default:
		close(c.stop)
	}
	<-c.done
}

func (c *consumer) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.got)
}

// waitN waits until n deliveries have arrived and returns them.
func (c *consumer) waitN(n int, timeout time.Duration) []amqp.Delivery {
	c.t.Helper()
	deadline := time.After(timeout)
	for {
		c.mu.Lock()
		if len(c.got) >= n {
			got := append([]amqp.Delivery(nil), c.got...)
			c.mu.Unlock()
			return got
		}
		have := len(c.got)
		c.mu.Unlock()
		select {
		case <-c.more:
		case <-deadline:
			c.t.Fatalf("queue %s: %d deliveries after %v, want %d", c.queue, have, timeout, n)
		}
	}
}

// quiet waits until no delivery arrived for d and returns everything.
func (c *consumer) quiet(d time.Duration) []amqp.Delivery {
	for {
		select {
		case <-c.more:
		case <-time.After(d):
			c.mu.Lock()
			defer c.mu.Unlock()
			return append([]amqp.Delivery(nil), c.got...)
		}
	}
}

// newEvents returns an event interface with E_TEST declared and the rabbitmq
// schemes registered through a Factory with opts.
func newEvents(t testing.TB, opts Options, eviOpts ...evi.Option) (*evi.Events, *Factory) {
	t.Helper()
	bus := eventbus.New()
	ev := evi.New(bus, eviOpts...)
	if err := ev.Declare("E_TEST", "E_SIP_MESSAGE"); err != nil {
		t.Fatal(err)
	}
	f, err := NewFactory(opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Register(ev); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		if err := ev.Close(ctx); err != nil {
			t.Errorf("close events: %v", err)
		}
		if err := bus.Close(ctx); err != nil {
			t.Errorf("close bus: %v", err)
		}
	})
	return ev, f
}

// statsOf returns the Factory's stats of the one socket it has.
func statsOf(t testing.TB, f *Factory) Stats {
	t.Helper()
	st := f.Stats()
	if len(st) != 1 {
		t.Fatalf("%d sockets, want 1: %+v", len(st), st)
	}
	return st[0]
}

func checkFor(t testing.TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func noErr(t testing.TB, err error) {
	t.Helper()
	require.NoError(t, err)
}

func errIs(t testing.TB, err, target error) {
	t.Helper()
	require.ErrorIs(t, err, target)
}

// rabbitctl runs rabbitmqctl.
func rabbitctl(t testing.TB, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "rabbitmqctl", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("rabbitmqctl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// restartBroker stops and starts the RabbitMQ application and returns how
// long the broker was away. The broker is started again even if the test
// fails meanwhile (t.Cleanup).
func restartBroker(t testing.TB) time.Duration {
	t.Helper()
	if _, err := exec.LookPath("rabbitmqctl"); err != nil {
		t.Fatalf("rabbitmqctl is needed for the restart tests: %v", err)
	}
	// Other packages' tests use this broker too: wait until none does.
	testlock.Exclusive(t, testlock.RabbitMQ)
	t.Cleanup(func() { ensureBrokerUp(t) })
	start := time.Now()
	rabbitctl(t, "stop_app")
	rabbitctl(t, "start_app")
	away := time.Since(start)
	waitPort(t, brokerAddr, waitTimeout)
	return away
}

func ensureBrokerUp(t testing.TB) {
	if c, err := net.DialTimeout("tcp", brokerAddr, time.Second); err == nil {
		_ = c.Close()
		return
	}
	out, err := exec.Command("rabbitmqctl", "start_app").CombinedOutput()
	if err != nil {
		t.Errorf("rabbitmqctl start_app: %v\n%s", err, out)
	}
}

func waitPort(t testing.TB, addr string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			_ = c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not open after %v", addr, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// logBuffer is a concurrency-safe log sink.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func newLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}
