package main

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestHistogramPercentiles(t *testing.T) {
	var h histogram
	assert.Zero(t, h.pct(.5), "empty")
	// 1..1000 µs: p50 is 500 µs, p99 990 µs, to the 10 µs bucket's upper edge.
	for i := 1; i <= 1000; i++ {
		h.add(time.Duration(i) * time.Microsecond)
	}
	assert.Equal(t, 510*time.Microsecond, h.pct(.5))
	assert.Equal(t, 1000*time.Microsecond, h.pct(.99))
	assert.Equal(t, time.Millisecond, h.max)
}

func TestHistogramTailAbove100ms(t *testing.T) {
	var h histogram
	for range 98 {
		h.add(time.Millisecond)
	}
	h.add(150 * time.Millisecond)
	h.add(-time.Millisecond) // early: counted in the first bucket
	assert.Equal(t, int64(100), h.n)
	assert.Equal(t, 1010*time.Microsecond, h.pct(.5))
	assert.Equal(t, 150*time.Millisecond, h.pct(1), "exact above 100 ms")
	assert.Equal(t, 150*time.Millisecond, h.max)
}

func TestLatenessCountsEarlyAndRejected(t *testing.T) {
	var l lateness
	l.add(-time.Microsecond, 5*time.Millisecond)
	l.add(2*time.Millisecond, 10*time.Millisecond)
	l.reject()
	assert.Equal(t, int64(1), l.early)
	assert.Equal(t, int64(1), l.rejected)
	assert.Equal(t, int64(2), l.total.n)
	assert.Equal(t, 10*time.Millisecond, l.intended.max)
	assert.Len(t, l.take(), 2)
	assert.Empty(t, l.take(), "the window restarts")
}
