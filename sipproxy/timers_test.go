package sipproxy

import (
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sipasync/sipasync/routes"
)

func TestApplyTimers(t *testing.T) {
	saved := []time.Duration{sip.Timer_B, sip.Timer_D, sip.Timer_F, sip.Timer_H, sip.Timer_I, sip.Timer_J, sip.Timer_L, sip.Timer_M}
	t.Cleanup(func() {
		sip.Timer_B, sip.Timer_D, sip.Timer_F, sip.Timer_H = saved[0], saved[1], saved[2], saved[3]
		sip.Timer_I, sip.Timer_J, sip.Timer_L, sip.Timer_M = saved[4], saved[5], saved[6], saved[7]
	})
	applyTimers(2 * time.Second)
	// FrTimeout bounds the wait for any response at all...
	assert.Equal(t, 2*time.Second, sip.Timer_B)
	assert.Equal(t, 2*time.Second, sip.Timer_F)
	// ...but not the retransmission of a negative final until its ACK:
	// fewer transmissions lose it to a caller busy for a few seconds.
	assert.Equal(t, 32*time.Second, sip.Timer_H)
	assert.Equal(t, txLinger, sip.Timer_J)
	assert.Equal(t, txLinger, sip.Timer_D)
	assert.Equal(t, acceptedLinger, sip.Timer_L)
	assert.Equal(t, acceptedLinger, sip.Timer_M)
	assert.Zero(t, sip.Timer_I)
}

// sipgo's timers are process-wide: the first proxy sets them, whoever
// builds it, and a later one that wants another FrTimeout is refused
// rather than silently sharing the first's.
func TestTimersAreSetOnceByTheFirstProxy(t *testing.T) {
	_, err := New(Config{Listen: []Listen{{Network: "udp", Host: "127.0.0.1"}}, Logger: discard(), UDPBuffer: -1}, routes.NewTable())
	require.NoError(t, err)
	assert.Equal(t, DefaultFrTimeout, sip.Timer_B, "a proxy built directly sets sipgo's timers")
	assert.Equal(t, txLinger, sip.Timer_J)
	_, err = New(Config{Listen: []Listen{{Network: "udp", Host: "127.0.0.1"}}, Logger: discard(), UDPBuffer: -1,
		FrTimeout: 3 * time.Second}, routes.NewTable())
	require.ErrorContains(t, err, "process-wide")
	_, err = New(Config{Listen: []Listen{{Network: "udp", Host: "127.0.0.1"}}, Logger: discard(), UDPBuffer: -1,
		FrTimeout: time.Minute}, routes.NewTable())
	require.ErrorContains(t, err, "want 500ms to 32s")
}
