package sipbench

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// Quiet is a wait for a quiet machine before a step: other engineers' test
// runs on a shared 2-core machine take the CPU that SIPp and the proxy
// need. Busy is the mean number of runnable tasks (the 4th field of
// /proc/loadavg, minus the reader itself) over Window.
type Quiet struct {
	// Max is the highest mean of runnable tasks that counts as quiet
	// (0: do not wait).
	Max float64
	// Wait bounds the wait; the step then runs anyway and says so.
	Wait time.Duration
	// Window is how long runnable tasks are sampled (default 2 s).
	Window time.Duration
}

// QuietResult is what the wait saw before a step.
type QuietResult struct {
	// Runnable is the mean number of other runnable tasks over the last
	// window before the step.
	Runnable float64 `json:"runnable"`
	// Waited is how long the step was held back.
	WaitedS float64 `json:"waited_s"`
	// Quiet is false when Wait ran out first.
	Quiet bool `json:"quiet"`
}

// WaitQuiet samples the machine until it is quiet, Wait runs out or ctx
// ends.
func (q Quiet) WaitQuiet(ctx context.Context) QuietResult {
	win := q.Window
	if win <= 0 {
		win = 2 * time.Second
	}
	start := time.Now()
	for {
		r := runnableOver(ctx, win)
		res := QuietResult{Runnable: r, WaitedS: time.Since(start).Seconds()}
		if q.Max <= 0 || r <= q.Max {
			res.Quiet = true
			return res
		}
		if ctx.Err() != nil || time.Since(start) >= q.Wait {
			return res
		}
	}
}

// runnableOver is the mean of the runnable-task count over d, sampled
// every 100 ms, less one for this reader.
func runnableOver(ctx context.Context, d time.Duration) float64 {
	var sum float64
	n := 0
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	end := time.After(d)
	for {
		if v, ok := runnableNow(); ok {
			sum += max(0, v-1)
			n++
		}
		select {
		case <-ctx.Done():
			return mean(sum, n)
		case <-end:
			return mean(sum, n)
		case <-t.C:
		}
	}
}

func mean(sum float64, n int) float64 {
	if n == 0 {
		return 0
	}
	return sum / float64(n)
}

// runnableNow reads "running/total" from /proc/loadavg.
func runnableNow() (float64, bool) {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0, false
	}
	return parseRunnable(string(b))
}

func parseRunnable(loadavg string) (float64, bool) {
	f := strings.Fields(loadavg)
	if len(f) < 4 {
		return 0, false
	}
	r, _, ok := strings.Cut(f[3], "/")
	if !ok {
		return 0, false
	}
	v, err := strconv.ParseFloat(r, 64)
	return v, err == nil
}

// String describes the wait for a progress line.
func (r QuietResult) String() string {
	s := fmt.Sprintf("%.1f other runnable", r.Runnable)
	if r.WaitedS >= 3 {
		s += fmt.Sprintf(" after waiting %.0fs", r.WaitedS)
	}
	if !r.Quiet {
		s += " (not quiet)"
	}
	return s
}
