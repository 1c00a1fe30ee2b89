package app

import (
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/assert"
)

func TestSetTimers(t *testing.T) {
	saved := []time.Duration{sip.Timer_B, sip.Timer_D, sip.Timer_F, sip.Timer_H, sip.Timer_I, sip.Timer_J, sip.Timer_L, sip.Timer_M}
	t.Cleanup(func() {
		sip.Timer_B, sip.Timer_D, sip.Timer_F, sip.Timer_H = saved[0], saved[1], saved[2], saved[3]
		sip.Timer_I, sip.Timer_J, sip.Timer_L, sip.Timer_M = saved[4], saved[5], saved[6], saved[7]
	})
	setTimers(2 * time.Second)
	// --fr-timeout bounds the wait for any response at all...
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

	// A value Build refuses leaves B and F alone.
	setTimers(time.Minute)
	assert.Equal(t, 2*time.Second, sip.Timer_B)
}
