//go:build !race

package eventbus

import "testing"

// A publish to 4 subscribers allocates the message and nothing else: no
// allocation per delivery, none in the dispatch goroutines.
func TestNoAllocationPerDelivery(t *testing.T) {
	b := New()
	closeBus(t, b)
	topic := b.Topic("allocs")
	payload := &seqMsg{}
	for range 4 {
		_, err := topic.Subscribe(func(*Subscription, *Topic, *Message) {}, WithOverflow(Block))
		noErr(t, err)
	}
	allocs := testing.AllocsPerRun(1000, func() { topic.Publish(typA, payload) })
	if allocs > 1 {
		t.Fatalf("%v allocations per publish to 4 subscribers, want 1 (the message)", allocs)
	}
}
