package eventbus

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// Tests that look at log lines pass their own logger; the rest stay quiet.
	slog.SetDefault(slog.New(slog.DiscardHandler))
	goleak.VerifyTestMain(m)
}

// waitTimeout bounds every wait in the tests; nothing sleeps for correctness.
const waitTimeout = 10 * time.Second

// checkFor polls cond until it holds or waitTimeout passes.
func checkFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func waitClosed(t testing.TB, what string, ch <-chan struct{}) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(waitTimeout):
		t.Fatalf("timed out waiting for %s", what)
	}
}

// closeBus closes b at the end of the test and fails if it does not drain.
func closeBus(t testing.TB, b *Bus) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		if err := b.Close(ctx); err != nil {
			t.Errorf("close: %v", err)
		}
	})
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

func (l *logBuffer) count(substr string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Count(l.buf.String(), substr)
}

func newLogger() (*slog.Logger, *logBuffer) {
	lb := &logBuffer{}
	return slog.New(slog.NewTextHandler(lb, nil)), lb
}

// collector records what a handler receives.
type collector struct {
	mu    sync.Mutex
	msgs  []*Message
	final bool
	after int // messages received after the final one
}

func (c *collector) handle(_ *Subscription, _ *Topic, m *Message) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.final {
		c.after++
	}
	if m.IsFinal() {
		c.final = true
		return
	}
	c.msgs = append(c.msgs, m)
}

func (c *collector) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.msgs)
}

func (c *collector) payloads() []any {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]any, len(c.msgs))
	for i, m := range c.msgs {
		out[i] = m.Payload()
	}
	return out
}

// recv receives from ch, failing the test after waitTimeout.
func recv[T any](t testing.TB, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(waitTimeout):
		t.Fatal("timed out waiting to receive")
		panic("unreachable")
	}
}

// newGate returns a channel that handlers wait on and the function that
// opens it. The test's cleanup opens it too, so that a failed assertion never
// leaves a handler stuck (and the bus unable to close).
func newGate(t testing.TB) (gate chan struct{}, open func()) {
	gate = make(chan struct{})
	var once sync.Once
	open = func() { once.Do(func() { close(gate) }) }
	t.Cleanup(open)
	return gate, open
}
