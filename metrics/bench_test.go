package metrics

import (
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sipasync/sipasync/transaction"
)

// The per-message hooks run on every request and response: they must cost
// little and allocate nothing once a (method, code) pair has been seen.

func BenchmarkTrafficRequest(b *testing.B) {
	tr, err := NewTraffic(prometheus.NewRegistry(), nil)
	if err != nil {
		b.Fatal(err)
	}
	req := request(sip.INVITE)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			tr.Request(req)
		}
	})
}

func BenchmarkTrafficResponse(b *testing.B) {
	tr, err := NewTraffic(prometheus.NewRegistry(), nil)
	if err != nil {
		b.Fatal(err)
	}
	req := request(sip.INVITE)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			tr.Response(req, 404)
		}
	})
}

// BenchmarkCounterVecWithLabelValues is the baseline the cached counters
// avoid: a label lookup (and a strconv for the code) per response.
func BenchmarkCounterVecWithLabelValues(b *testing.B) {
	tr, err := NewTraffic(prometheus.NewRegistry(), nil)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			tr.responses.WithLabelValues("INVITE", "404").Inc()
		}
	})
}

func TestTrafficHooksDoNotAllocate(t *testing.T) {
	tr, err := NewTraffic(prometheus.NewRegistry(), nil)
	if err != nil {
		t.Fatal(err)
	}
	req := request(sip.INVITE)
	tr.Response(req, 404) // first sight of the pair makes its counter
	if n := testing.AllocsPerRun(100, func() { tr.Request(req); tr.Response(req, 404) }); n != 0 {
		t.Fatalf("%v allocations per request+response, want 0", n)
	}
}

// BenchmarkTrafficParkEnded is the hook's work when a park ends: the end
// counter by kind and reason and the duration histogram by kind.
func BenchmarkTrafficParkEnded(b *testing.B) {
	tr, err := NewTraffic(prometheus.NewRegistry(), nil)
	if err != nil {
		b.Fatal(err)
	}
	s := transaction.Suspension{Route: "R", Kind: "async_ms_route", Since: time.Now()}
	now := s.Since.Add(100 * time.Millisecond)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			tr.ended(s, "timer", now)
		}
	})
}
