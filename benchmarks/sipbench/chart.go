package sipbench

import (
	"fmt"
	"html"
	"math"
	"strings"
)

// chart geometry (px).
const (
	chartW      = 980
	chartRowH   = 230
	chartTop    = 50
	panelW      = 400
	panelH      = 160
	panelLeft1  = 80
	panelLeft2  = 570
	panelOffset = 30 // from the row's top to the plot area
)

var chartColors = map[string]string{"sipasync": "#1f6fb4", "kamailio": "#e0701b"}

// ChartSVG draws, per scenario, the failure % and the p99 response time
// (log scale) against the offered rate, one line per target.
func (s *Suite) ChartSVG() string {
	scs := s.scenarioIDs()
	h := chartTop + len(scs)*chartRowH + 20
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="11">`+"\n",
		chartW, h, chartW, h)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="white"/>`+"\n", chartW, h)
	fmt.Fprintf(&b, `<text x="%d" y="20" font-size="14" font-weight="bold">SIPp on loopback, %gs per step, %s</text>`+"\n",
		panelLeft1, s.StepDurationS, html.EscapeString(s.Started.UTC().Format("2006-01-02")))
	lx := panelLeft1
	for _, t := range s.targetsOf() {
		fmt.Fprintf(&b, `<line x1="%d" y1="36" x2="%d" y2="36" stroke="%s" stroke-width="3"/><text x="%d" y="40">%s</text>`+"\n",
			lx, lx+24, color(t), lx+30, html.EscapeString(t))
		lx += 120
	}
	fmt.Fprintf(&b, `<text x="%d" y="40" fill="#555">hollow marker: step not clean</text>`+"\n", lx)
	for i, sc := range scs {
		top := chartTop + i*chartRowH
		maxRate := 0.0
		for _, r := range s.Ladders {
			if r.Scenario.ID == sc.ID {
				for _, st := range r.Steps {
					maxRate = max(maxRate, st.Rate)
				}
			}
		}
		maxRate = niceCeil(maxRate)
		title := fmt.Sprintf("%s %s", sc.ID, sc.Name)
		if sc.ParkMS > 0 && sc.Role != RoleShape {
			title += fmt.Sprintf(" (park %d ms)", sc.ParkMS)
		}
		fmt.Fprintf(&b, `<text x="%d" y="%d" font-size="13" font-weight="bold">%s</text>`+"\n", panelLeft1-60, top+14, html.EscapeString(title))
		// Failure %.
		fy := func(v float64) float64 { return float64(top+panelOffset+panelH) - v/100*panelH }
		b.WriteString(panel(panelLeft1, top+panelOffset, maxRate, "failed or unfinished calls, %",
			[]tick{{0, "0"}, {25, "25"}, {50, "50"}, {75, "75"}, {100, "100"}}, fy))
		// p99, log scale 1 ms .. 100 s.
		lo, hi := 0.0, 5.0
		py := func(ms float64) float64 {
			l := math.Log10(max(ms, 1))
			l = min(max(l, lo), hi)
			return float64(top+panelOffset+panelH) - (l-lo)/(hi-lo)*panelH
		}
		var ticks []tick
		for _, v := range []float64{1, 10, 100, 1000, 10000, 100000} {
			ticks = append(ticks, tick{v, fmtTick(v)})
		}
		b.WriteString(panel(panelLeft2, top+panelOffset, maxRate, "p99 response time, ms (log)", ticks, py))
		for _, t := range s.targetsOf() {
			r := s.Ladder(sc.ID, t)
			if r == nil {
				continue
			}
			var fails, p99s []point
			for _, st := range r.Steps {
				x := st.Rate
				fails = append(fails, point{x, st.FailurePercent(), st.Clean})
				if st.RTT.Samples > 0 {
					p99s = append(p99s, point{x, st.RTT.P99, st.Clean})
				}
			}
			b.WriteString(series(panelLeft1, maxRate, fails, fy, color(t)))
			b.WriteString(series(panelLeft2, maxRate, p99s, py, color(t)))
		}
	}
	b.WriteString("</svg>\n")
	return b.String()
}

type tick struct {
	v     float64
	label string
}

type point struct {
	x, y  float64
	clean bool
}

func color(t string) string {
	if c, ok := chartColors[t]; ok {
		return c
	}
	return "#555"
}

func xpos(left int, maxRate, x float64) float64 {
	return float64(left) + x/maxRate*panelW
}

// panel draws axes, grid and labels of one plot.
func panel(left, top int, maxRate float64, ylabel string, yticks []tick, y func(float64) float64) string {
	var b strings.Builder
	bottom := top + panelH
	fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#999"/>`+"\n", left, top, panelW, panelH)
	for _, t := range yticks {
		yy := y(t.v)
		fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#e5e5e5"/><text x="%d" y="%.1f" text-anchor="end">%s</text>`+"\n",
			left, yy, left+panelW, yy, left-4, yy+4, t.label)
	}
	step := maxRate / 4
	for i := 0; i <= 4; i++ {
		v := step * float64(i)
		xx := xpos(left, maxRate, v)
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#e5e5e5"/><text x="%.1f" y="%d" text-anchor="middle">%s</text>`+"\n",
			xx, top, xx, bottom, xx, bottom+14, fmtTick(v))
	}
	fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle" fill="#333">offered calls/s</text>`+"\n", left+panelW/2, bottom+28)
	fmt.Fprintf(&b, `<text x="%d" y="%d" fill="#333">%s</text>`+"\n", left, top-5, html.EscapeString(ylabel))
	return b.String()
}

// series draws a line through the points and a marker on each (hollow when
// the step was not clean).
func series(left int, maxRate float64, pts []point, y func(float64) float64, col string) string {
	if len(pts) == 0 {
		return ""
	}
	var b strings.Builder
	var path []string
	for _, p := range pts {
		path = append(path, fmt.Sprintf("%.1f,%.1f", xpos(left, maxRate, p.x), y(p.y)))
	}
	fmt.Fprintf(&b, `<polyline points="%s" fill="none" stroke="%s" stroke-width="2"/>`+"\n", strings.Join(path, " "), col)
	for _, p := range pts {
		fill := col
		if !p.clean {
			fill = "white"
		}
		fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="3.5" fill="%s" stroke="%s" stroke-width="1.5"/>`+"\n",
			xpos(left, maxRate, p.x), y(p.y), fill, col)
	}
	return b.String()
}

// niceCeil rounds up to 1, 2 or 5 × 10^n (at least 1).
func niceCeil(v float64) float64 {
	if v <= 1 {
		return 1
	}
	e := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 4, 5, 8, 10} {
		if m*e >= v {
			return m * e
		}
	}
	return 10 * e
}

func fmtTick(v float64) string {
	switch {
	case v >= 1000 && math.Mod(v, 1000) == 0:
		return fmt.Sprintf("%gk", v/1000)
	case v >= 1000:
		return fmt.Sprintf("%.1fk", v/1000)
	}
	return fmt.Sprintf("%g", v)
}
