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

// BenchmarkListNotify is the cost the observation seam adds per message on
// the request path: a notify to three observers (events, metrics, device
// state), against calling the three directly.
func BenchmarkListNotify(b *testing.B) {
	var sink int
	f := func(v int) { sink += v }
	b.Run("list-3", func(b *testing.B) {
		var l List[int]
		l.Add(f)
		l.Add(f)
		l.Add(f)
		b.ReportAllocs()
		for b.Loop() {
			l.Notify(1)
		}
	})
	b.Run("direct-3", func(b *testing.B) {
		fs := []func(int){f, f, f}
		b.ReportAllocs()
		for b.Loop() {
			for _, g := range fs {
				g(1)
			}
		}
	})
	_ = sink
}
