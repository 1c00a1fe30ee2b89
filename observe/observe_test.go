package observe

import (
	"sync"
	"testing"
)

func TestListNotifiesEveryObserverInOrder(t *testing.T) {
	var l List[int]
	l.Notify(1) // the zero List is empty and ready
	var got []string
	l.Add(func(v int) { got = append(got, "a") })
	l.Add(nil)
	l.Add(func(v int) { got = append(got, "b") })
	l.Notify(2)
	if len(got) != 2 || got[0] != "a" || got[1] != "b" || l.Len() != 2 {
		t.Fatalf("got %v (len %d), want [a b]", got, l.Len())
	}
}

func TestListAddWhileNotifying(t *testing.T) {
	var l List[int]
	var mu sync.Mutex
	n := 0
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 1000 {
				l.Notify(1)
			}
		})
	}
	for range 10 {
		l.Add(func(int) { mu.Lock(); n++; mu.Unlock() })
	}
	wg.Wait()
	l.Notify(1)
	mu.Lock()
	defer mu.Unlock()
	if n < 10 {
		t.Fatalf("the last Notify reached %d observers, want at least 10", n)
	}
}

func TestStrings(t *testing.T) {
	if CallAnswered.String() != "answered" || CallState(9).String() != "unknown" ||
		RegExpired.String() != "expired" || RegEvent(0).String() != "" {
		t.Fatal("names")
	}
}
