package lograte

import (
	"sync"
	"testing"
	"time"

	"github.com/benbjohnson/clock"
)

func TestOncePerIntervalPerKey(t *testing.T) {
	mock := clock.NewMock() // starts at the epoch: the first line is still allowed
	l := New(mock, time.Second)
	if ok, _ := l.Allow("a"); !ok {
		t.Fatal("the first line of a key is allowed")
	}
	for range 3 {
		if ok, _ := l.Allow("a"); ok {
			t.Fatal("a second line within the interval is held back")
		}
	}
	if ok, _ := l.Allow("b"); !ok {
		t.Fatal("keys are limited apart")
	}
	mock.Add(999 * time.Millisecond)
	if ok, _ := l.Allow("a"); ok {
		t.Fatal("still within the interval")
	}
	mock.Add(time.Millisecond)
	ok, skipped := l.Allow("a")
	if !ok || skipped != 4 {
		t.Fatalf("after the interval: ok=%v skipped=%d, want true 4", ok, skipped)
	}
}

func TestOneWinnerUnderContention(t *testing.T) {
	l := New(clock.NewMock(), time.Hour)
	var wg sync.WaitGroup
	var mu sync.Mutex
	allowed := 0
	for range 8 {
		wg.Go(func() {
			for range 1000 {
				if ok, _ := l.Allow("k"); ok {
					mu.Lock()
					allowed++
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	if allowed != 1 {
		t.Fatalf("%d lines allowed, want 1", allowed)
	}
}
