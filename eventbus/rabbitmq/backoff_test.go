package rabbitmq

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/stretchr/testify/require"

	"github.com/sipasync/sipasync/eventbus/evi"
)

// The reconnect backoff, on a mock clock: with the broker away, the wait
// before each attempt doubles from BackoffMin to BackoffMax, within the ±20 %
// jitter, and no attempt is made before the wait is over.
func TestReconnectBackoffMockClock(t *testing.T) {
	mock := clock.NewMock()
	tr, err := NewTransport(mustSocket(t, "rabbitmq:127.0.0.1:1/q"), Options{
		Clock: mock, BackoffMin: 100 * time.Millisecond, BackoffMax: time.Second,
		Logger: slog.New(slog.DiscardHandler),
	})
	require.NoError(t, err)
	defer tr.Close()

	want := []time.Duration{100, 200, 400, 800, 1000, 1000, 1000}
	for i, w := range want {
		w *= time.Millisecond
		var st Stats
		checkFor(t, "the next backoff", waitTimeout, func() bool {
			st = tr.Stats()
			return st.ConnectFailures == uint64(i+1) && !st.RetryAt.IsZero()
		})
		wait := st.RetryAt.Sub(mock.Now())
		require.InDelta(t, float64(w), float64(wait), 0.2*float64(w)+1, "wait before attempt %d", i+2)
		require.Contains(t, st.LastError, "connection refused")
		require.False(t, st.Connected)

		mock.Add(wait - time.Millisecond)
		time.Sleep(10 * time.Millisecond) // room for a wrong early attempt
		require.Equal(t, uint64(i+1), tr.Stats().ConnectFailures, "attempt %d came before its backoff ended", i+2)
		mock.Add(time.Millisecond)
	}
	checkFor(t, "the last attempt", waitTimeout, func() bool { return tr.Stats().ConnectFailures == uint64(len(want)+1) })
}

// The default size limit is 16,384 bytes of message body: exactly that is
// taken, one byte more refused (evi.ErrEventTooLarge, counted as TooLarge,
// never truncated); the JSON body is measured in its own format. No broker
// needed: async Send only buffers.
func TestDefaultSizeLimit(t *testing.T) {
	for _, tc := range []struct {
		params string
		value  int // bytes of the value
		ok     bool
	}{
		{"", 16384 - len("E_TEST\nv::\n"), true},
		{"", 16384 - len("E_TEST\nv::\n") + 1, false},
		{";format=json", 16384 - len(`{"jsonrpc":"2.0","method":"E_TEST","params":{"v":""}}`), true},
		{";format=json", 16384 - len(`{"jsonrpc":"2.0","method":"E_TEST","params":{"v":""}}`) + 1, false},
	} {
		tr, err := NewTransport(mustSocket(t, "rabbitmq:127.0.0.1:1/q"+tc.params),
			Options{Logger: slog.New(slog.DiscardHandler), DrainTimeout: time.Millisecond})
		require.NoError(t, err)
		e, err := evi.NewEvent("E_TEST", time.Now(), evi.String("v", strings.Repeat("x", tc.value)))
		require.NoError(t, err)
		err = tr.Send(context.Background(), e)
		st := tr.Stats()
		if tc.ok {
			require.NoError(t, err, "%s %d", tc.params, tc.value)
			require.Equal(t, 1, st.Buffered)
			require.Zero(t, st.TooLarge)
		} else {
			require.ErrorIs(t, err, evi.ErrEventTooLarge, "%s %d", tc.params, tc.value)
			require.Zero(t, st.Buffered)
			require.Equal(t, uint64(1), st.TooLarge)
		}
		require.NoError(t, tr.Close())
	}
}
