package timerwheel_test

import (
	"fmt"
	"time"

	"github.com/benbjohnson/clock"

	"github.com/sipasync/sipasync/timerwheel"
)

// A wheel of resume tokens with a 1 ms tick. Production code passes no Clock
// and runs `go w.Run(ctx)`; a test moves a mock clock and calls Advance.
func Example() {
	type token struct{ index, label uint32 }
	mock := clock.NewMock()
	w, err := timerwheel.New(timerwheel.Options[token]{
		Tick:  time.Millisecond,
		Clock: mock,
		// Dispatch should hand the item to a worker group and return.
		Dispatch: func(t token) { fmt.Printf("resume %d:%d\n", t.index, t.label) },
	})
	if err != nil {
		panic(err)
	}
	w.Add(250*time.Millisecond, token{1, 7})
	h, _ := w.Add(300*time.Millisecond, token{2, 3})
	w.Add(4*time.Second, token{3, 1})
	fmt.Println("cancelled:", w.Cancel(h))

	mock.Add(time.Second)
	fmt.Println("fired:", w.Advance(mock.Now()))
	fmt.Println("cancel after firing:", w.Cancel(h))
	fmt.Println("left at stop:", w.Stop())
	// Output:
	// cancelled: true
	// resume 1:7
	// fired: 1
	// cancel after firing: false
	// left at stop: [{3 1}]
}
