package main

import (
	"fmt"
	"math"
)

// Limits decide when a series trends. After the warm-up a least-squares
// line is fitted to the samples; its rise over the judged span (slope ×
// span) is a leak when it exceeds the limit.
type Limits struct {
	// MemFrac: heap and RSS trend when the line rises by more than this
	// fraction of the series' mean over the judged span.
	MemFrac float64 `json:"mem_frac"`
	// Goroutines: the goroutine count trends when the line rises by more
	// than this many goroutines, or by more than MemFrac of its mean if
	// that is larger.
	Goroutines float64 `json:"goroutines"`
}

// DefaultLimits are the documented thresholds of benchmarks/README.md.
var DefaultLimits = Limits{MemFrac: 0.10, Goroutines: 25}

// Verdict is the judgement of one series of one node.
type Verdict struct {
	Node   string `json:"node"`
	Series string `json:"series"`
	// N is the number of samples judged (after the warm-up).
	N int `json:"n"`
	// Span is the time between the first and the last judged sample (s).
	Span float64 `json:"span_s"`
	Mean float64 `json:"mean"`
	Min  float64 `json:"min"`
	Max  float64 `json:"max"`
	// Slope is the fitted change per hour, in the series' unit.
	SlopePerHour float64 `json:"slope_per_hour"`
	// Rise is slope × span: how much the fitted line grew while judged.
	Rise float64 `json:"rise"`
	// Limit is the largest rise allowed.
	Limit float64 `json:"limit"`
	// R2 is the coefficient of determination of the line (how much of
	// the variation the trend explains).
	R2 float64 `json:"r2"`
	// First and Last are the means of the first and the last judged
	// windows (a fifth of the judged span each, at most 5 minutes): a step
	// early on and a steady climb read differently there.
	First float64 `json:"first_window_mean"`
	Last  float64 `json:"last_window_mean"`
	// Trend is set when Rise > Limit: a leak by the soak's rule.
	Trend bool `json:"trend"`
	// Note explains a verdict that could not be made.
	Note string `json:"note,omitempty"`
}

// OK reports a verdict that was made and found no trend.
func (v Verdict) OK() bool { return v.Note == "" && !v.Trend }

// fit returns the least-squares line y = a + b·x and its R².
func fit(xs, ys []float64) (a, b, r2 float64) {
	n := float64(len(xs))
	if n < 2 {
		return 0, 0, 0
	}
	var sx, sy float64
	for i := range xs {
		sx += xs[i]
		sy += ys[i]
	}
	mx, my := sx/n, sy/n
	var sxx, sxy, syy float64
	for i := range xs {
		dx, dy := xs[i]-mx, ys[i]-my
		sxx += dx * dx
		sxy += dx * dy
		syy += dy * dy
	}
	if sxx == 0 {
		return my, 0, 0
	}
	b = sxy / sxx
	a = my - b*mx
	if syy > 0 {
		r2 = sxy * sxy / (sxx * syy)
	}
	return a, b, r2
}

// series names, in report order, and how each is read from a sample.
var seriesOf = []struct {
	Name string
	Unit string // "" count, "MiB" bytes shown in MiB
	Get  func(Sample) float64
	Gor  bool // judged with the goroutine limit
}{
	{"goroutines", "", func(s Sample) float64 { return s.Goroutines }, true},
	{"heap_inuse", "MiB", func(s Sample) float64 { return s.HeapInuse }, false},
	{"heap_goal", "MiB", func(s Sample) float64 { return s.HeapGoal }, false},
	{"rss", "MiB", func(s Sample) float64 { return s.RSS }, false},
}

// judge fits each series of a node's samples taken at or after warmup
// seconds.
func judge(node string, samples []Sample, warmup float64, lim Limits) []Verdict {
	var xs []float64
	var kept []Sample
	for _, s := range samples {
		if s.T >= warmup {
			xs = append(xs, s.T)
			kept = append(kept, s)
		}
	}
	out := make([]Verdict, 0, len(seriesOf))
	for _, se := range seriesOf {
		v := Verdict{Node: node, Series: se.Name, N: len(kept)}
		if len(kept) < 3 {
			v.Note = fmt.Sprintf("%d samples after the warm-up: too few to judge", len(kept))
			out = append(out, v)
			continue
		}
		ys := make([]float64, len(kept))
		v.Min, v.Max = math.Inf(1), math.Inf(-1)
		var sum float64
		for i, s := range kept {
			ys[i] = se.Get(s)
			sum += ys[i]
			v.Min = math.Min(v.Min, ys[i])
			v.Max = math.Max(v.Max, ys[i])
		}
		v.Mean = sum / float64(len(ys))
		_, b, r2 := fit(xs, ys)
		v.Span = xs[len(xs)-1] - xs[0]
		v.SlopePerHour = b * 3600
		v.Rise = b * v.Span
		v.R2 = r2
		v.Limit = lim.MemFrac * v.Mean
		if se.Gor {
			v.Limit = math.Max(lim.Goroutines, v.Limit)
		}
		v.Trend = v.Rise > v.Limit
		win := min(v.Span/5, 300)
		v.First = windowMean(xs, ys, xs[0], xs[0]+win)
		v.Last = windowMean(xs, ys, xs[len(xs)-1]-win, xs[len(xs)-1])
		out = append(out, v)
	}
	return out
}

// windowMean is the mean of the ys whose x lies in [lo, hi].
func windowMean(xs, ys []float64, lo, hi float64) float64 {
	var sum float64
	n := 0
	for i, x := range xs {
		if x >= lo && x <= hi {
			sum += ys[i]
			n++
		}
	}
	if n == 0 {
		return 0
	}
	return sum / float64(n)
}
