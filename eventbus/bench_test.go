package eventbus

import (
	"fmt"
	"testing"
	"time"
)

// BenchmarkFanout measures delivered messages per second from one publisher
// to 1, 4 and 16 subscribers, for the bus (Block policy, so nothing is
// dropped, as with channels) and for a plain buffered-channel fan-out of the
// same depth. Each publish allocates one message in both, so allocs/op is
// the message and nothing per delivery. The clock is the bus's real clock.
func BenchmarkFanout(b *testing.B) {
	const depth = 1024
	for _, impl := range []string{"bus", "chan"} {
		b.Run("impl="+impl, func(b *testing.B) {
			for _, subs := range []int{1, 4, 16} {
				b.Run(fmt.Sprintf("subs=%d", subs), func(b *testing.B) {
					if impl == "bus" {
						benchBus(b, subs, depth)
					} else {
						benchChan(b, subs, depth)
					}
					b.ReportMetric(float64(b.N)*float64(subs)/b.Elapsed().Seconds(), "msgs/s")
				})
			}
		})
	}
}

func benchBus(b *testing.B, subs, depth int) {
	bus := New()
	topic := bus.Topic("bench")
	payload := &seqMsg{}
	done := make(chan struct{}, subs)
	list := make([]*Subscription, subs)
	for i := range list {
		n, target := 0, b.N
		s, err := topic.Subscribe(func(_ *Subscription, _ *Topic, m *Message) {
			if m.IsFinal() {
				return
			}
			n++
			if n == target {
				done <- struct{}{}
			}
		}, WithCapacity(depth), WithOverflow(Block))
		if err != nil {
			b.Fatal(err)
		}
		list[i] = s
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		topic.Publish(typA, payload)
	}
	for range subs {
		<-done
	}
	b.StopTimer()
	for _, s := range list {
		<-s.Unsubscribe()
		if st := s.Stats(); st.Dropped != 0 || st.Delivered != uint64(b.N) {
			b.Fatalf("stats %+v, want %d delivered", st, b.N)
		}
	}
}

// chanMsg has the fields of a Message: the baseline allocates the same.
type chanMsg struct {
	typ     *MessageType
	payload any
	time    time.Time
	topic   *Topic
}

func benchChan(b *testing.B, subs, depth int) {
	payload := &seqMsg{}
	done := make(chan struct{}, subs)
	chans := make([]chan *chanMsg, subs)
	for i := range chans {
		ch := make(chan *chanMsg, depth)
		chans[i] = ch
		target := b.N
		go func() {
			n := 0
			for range ch {
				n++
				if n == target {
					done <- struct{}{}
				}
			}
		}()
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		m := &chanMsg{typ: typA, payload: payload}
		for _, ch := range chans {
			ch <- m
		}
	}
	for range subs {
		<-done
	}
	b.StopTimer()
	for _, ch := range chans {
		close(ch)
	}
}
