package sipbench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// SuiteConfig is the side-by-side run: every scenario's ladder on every
// target, the targets' steps interleaved rate by rate (so both see the same
// machine load), then optionally the parked-memory measurement.
type SuiteConfig struct {
	Scenarios []Scenario
	Targets   []Target
	Repo      string
	// Rates overrides every scenario's Ladder when set.
	Rates      []float64
	Duration   time.Duration
	Dir        string
	StopAfter  int
	KeepTraces bool
	UACRate    float64
	// Profile: see StepConfig.Profile.
	Profile time.Duration
	// Quiet: see StepConfig.Quiet.
	Quiet    Quiet
	Progress io.Writer
	Command  string
	// Mem, when set, is run last (its Target, Repo, Dir and Progress are
	// filled in when empty).
	Mem *MemConfig
}

// Suite is the machine-readable result of a side-by-side run.
type Suite struct {
	Kind          string     `json:"kind"` // "suite"
	Command       string     `json:"command"`
	Started       time.Time  `json:"started"`
	Finished      time.Time  `json:"finished"`
	Machine       Machine    `json:"machine"`
	MachineAtEnd  Machine    `json:"machine_at_end"`
	StepDurationS float64    `json:"step_duration_s"`
	Ladders       []*Report  `json:"ladders"`
	Mem           *MemReport `json:"parked_memory,omitempty"`
	// Errors are ladders or measurements that could not run.
	Errors []string `json:"errors,omitempty"`
}

// RunSuite runs the suite. A ladder that fails to run is recorded in
// Suite.Errors and the suite goes on; only the end of ctx stops it early
// (with the suite so far and the context's error).
func RunSuite(ctx context.Context, cfg SuiteConfig) (*Suite, error) {
	out := cfg.Progress
	if out == nil {
		out = io.Discard
	}
	su := &Suite{Kind: "suite", Command: cfg.Command, Started: time.Now(), Machine: DescribeMachine(),
		StepDurationS: cfg.Duration.Seconds()}
	defer func() {
		su.Finished = time.Now()
		su.MachineAtEnd = DescribeMachine()
	}()
	prepared := map[string]error{}
	for _, t := range cfg.Targets {
		var scs []Scenario
		for _, sc := range cfg.Scenarios {
			if runs(t, sc) == nil {
				scs = append(scs, sc)
			}
		}
		if len(scs) == 0 {
			continue
		}
		fmt.Fprintf(out, "preparing %s\n", t.Name())
		if err := t.Prepare(ctx, scs); err != nil {
			prepared[t.Name()] = err
			su.Errors = append(su.Errors, fmt.Sprintf("%s: %v", t.Name(), firstLine(err.Error())))
		}
	}
	for _, sc := range cfg.Scenarios {
		rates := cfg.Rates
		if len(rates) == 0 {
			rates = sc.Ladder
		}
		// The targets' ladders advance in lockstep, one step of each at a
		// rate before the next rate, so that both see the same machine
		// (other work on a shared machine comes and goes).
		var ls []*ladder
		for _, t := range cfg.Targets {
			if err := runs(t, sc); err != nil {
				fmt.Fprintf(out, "[%s %s] skipped: %v\n", sc.ID, t.Name(), err)
				continue
			}
			if prepared[t.Name()] != nil {
				continue
			}
			ls = append(ls, newLadder(LadderConfig{
				Scenario: sc, Target: t, Repo: cfg.Repo, Rates: rates, Duration: cfg.Duration,
				Dir: filepath.Join(cfg.Dir, fmt.Sprintf("%s-%s", sc.ID, t.Name())), StopAfter: cfg.StopAfter,
				KeepTraces: cfg.KeepTraces, UACRate: cfg.UACRate, Profile: cfg.Profile, Quiet: cfg.Quiet,
				Progress: out, Command: cfg.Command,
			}))
		}
		for i := range rates {
			for _, l := range ls {
				if l.done {
					continue
				}
				select {
				case <-ctx.Done():
				case <-time.After(l.gap):
				}
				if ctx.Err() != nil {
					su.addLadders(ls)
					return su, ctx.Err()
				}
				if _, err := l.step(ctx, i); err != nil {
					if ctx.Err() != nil {
						su.addLadders(ls)
						return su, ctx.Err()
					}
					su.Errors = append(su.Errors, fmt.Sprintf("%s on %s: %v", sc.ID, l.cfg.Target.Name(), firstLine(err.Error())))
				}
			}
		}
		su.addLadders(ls)
	}
	if cfg.Mem != nil {
		m := *cfg.Mem
		if m.Dir == "" {
			m.Dir = filepath.Join(cfg.Dir, "mem")
		}
		if m.Repo == "" {
			m.Repo = cfg.Repo
		}
		if m.Progress == nil {
			m.Progress = out
		}
		if m.Command == "" {
			m.Command = cfg.Command
		}
		if m.Target == nil {
			for _, t := range cfg.Targets {
				if t.Name() == "sipasync" {
					m.Target = t
				}
			}
		}
		if m.Target != nil {
			rep, err := MeasureParked(ctx, m)
			su.Mem = rep
			if err != nil {
				if ctx.Err() != nil {
					return su, ctx.Err()
				}
				su.Errors = append(su.Errors, "parked memory: "+firstLine(err.Error()))
			}
		}
	}
	return su, ctx.Err()
}

func (s *Suite) addLadders(ls []*ladder) {
	for _, l := range ls {
		if len(l.rep.Steps) > 0 {
			s.Ladders = append(s.Ladders, l.rep)
		}
	}
}

// runs says whether target t runs scenario sc (nil) or why not.
func runs(t Target, sc Scenario) error {
	if sc.NotYet != "" {
		return errors.New(sc.NotYet)
	}
	if sc.SipasyncOnly && t.Name() != "sipasync" {
		return fmt.Errorf("%s has no %s counterpart", sc.ID, t.Name())
	}
	return t.Supports(sc.Role)
}

// Ladder returns the suite's ladder for a scenario and target (nil if
// none ran).
func (s *Suite) Ladder(id, target string) *Report {
	for _, r := range s.Ladders {
		if r.Scenario.ID == id && r.Target == target {
			return r
		}
	}
	return nil
}

// scenarioIDs are the scenarios with a ladder, in suite order.
func (s *Suite) scenarioIDs() []Scenario {
	var out []Scenario
	seen := map[string]bool{}
	for _, r := range s.Ladders {
		if !seen[r.Scenario.ID] {
			seen[r.Scenario.ID] = true
			out = append(out, r.Scenario)
		}
	}
	return out
}

// Step returns the step at rate (nil if none).
func (r *Report) Step(rate float64) *Step {
	for _, s := range r.Steps {
		if s.Rate == rate {
			return s
		}
	}
	return nil
}

// LimitFound reports whether a step above the highest clean rate failed:
// the clean maximum was found rather than being the top of the ladder.
func (r *Report) LimitFound() bool {
	for _, s := range r.Steps {
		if !s.Clean && s.Rate > r.HighestClean {
			return true
		}
	}
	return false
}

// FailurePercent is the share of the step's calls that did not succeed.
func (st *Step) FailurePercent() float64 {
	if st.Calls == 0 {
		return 0
	}
	return 100 * float64(int64(st.Calls)-min(st.Successful, int64(st.Calls))) / float64(st.Calls)
}

// Memory is the step's peak proxy memory and what it is: PSS summed over a
// multi-process proxy, else RSS.
func (st *Step) Memory() (int64, string) {
	if st.ProxyPeakPSS > 0 {
		return st.ProxyPeakPSS, "PSS"
	}
	return st.ProxyPeakRSS, "RSS"
}

// Verdict is one goal of the issue, met or missed.
type Verdict struct {
	Goal   string `json:"goal"`
	Result string `json:"result"`
	Met    bool   `json:"met"`
	// Known is false when the run could not decide (a ladder missing).
	Known bool `json:"known"`
}

// Verdicts evaluates the goals on the suite.
func (s *Suite) Verdicts() []Verdict {
	var v []Verdict
	for _, sc := range s.scenarioIDs() {
		sa := s.Ladder(sc.ID, "sipasync")
		if sa == nil {
			continue
		}
		if sc.Goal > 0 {
			g := Verdict{Goal: fmt.Sprintf("%s: sipasync's highest clean rate ≥ %g× Kamailio's", sc.ID, sc.Goal)}
			ka := s.Ladder(sc.ID, "kamailio")
			switch {
			case ka == nil:
				g.Result = "Kamailio not run"
			case sa.HighestClean == 0:
				g.Known, g.Result = true, "sipasync had no clean step"
			case ka.HighestClean == 0:
				g.Known, g.Met = true, true
				g.Result = fmt.Sprintf("sipasync %s, Kamailio none clean", group(sa.HighestClean))
			default:
				ratio := sa.HighestClean / ka.HighestClean
				g.Known, g.Met = true, ratio >= sc.Goal
				if !g.Met && !sa.LimitFound() {
					// sipasync was clean at the top of the ladder: its
					// limit is higher than the ladder went.
					g.Known = false
				}
				ge := ""
				if !sa.LimitFound() {
					ge = "≥ "
				}
				g.Result = fmt.Sprintf("%s%.2f× (%s%s / %s calls/s)", ge, ratio, ge, group(sa.HighestClean), group(ka.HighestClean))
				switch {
				case !g.Known:
					g.Result += "; sipasync was clean at the top of the ladder: run higher rates"
				case !g.Met:
					g.Result += fmt.Sprintf("; missed by %.0f%%", 100*(1-ratio/sc.Goal))
				}
			}
			v = append(v, g)
		}
		if sc.Role != RoleShape && sa.HighestClean > 0 {
			st := sa.Step(sa.HighestClean)
			limit := float64(sc.ParkMS) + 10
			g := Verdict{Goal: fmt.Sprintf("%s: sipasync's p99 at its clean rate ≤ park + 10 ms (%g ms)", sc.ID, limit), Known: true}
			g.Met = st.RTT.P99 <= limit
			g.Result = fmt.Sprintf("p99 %s ms at %s calls/s", fmtMS(st.RTT.P99), group(st.Rate))
			if !g.Met {
				g.Result += fmt.Sprintf("; missed by %s ms", fmtMS(st.RTT.P99-limit))
			}
			v = append(v, g)
		}
		if sc.ID == "S1" && sa.HighestClean > 0 {
			st := sa.Step(sa.HighestClean)
			g := Verdict{Goal: "S1: proxy RSS at the clean rate ≤ 256 MiB", Known: true}
			g.Met = st.ProxyPeakRSS <= 256<<20
			g.Result = fmt.Sprintf("peak RSS %s at %s calls/s", fmtMiB(st.ProxyPeakRSS), group(st.Rate))
			v = append(v, g)
		}
	}
	if m := s.Mem; m != nil && m.Parked > 0 {
		g := Verdict{Goal: "≤ 4 KiB per parked transaction", Known: true}
		per := m.BytesPerParked
		g.Met = per <= 4096
		g.Result = fmt.Sprintf("%s B of RSS per parked (%s parked); live heap %s B per parked",
			groupInt(int64(per+0.5)), groupInt(m.Parked), groupInt(int64(m.BytesPerParkedHeap+0.5)))
		v = append(v, g)
		if m.GoroutinesParked > 0 {
			g := Verdict{Goal: "goroutines bounded (not growing with the number parked)", Known: true}
			extra := m.GoroutinesParked - m.GoroutinesIdle
			g.Met = int64(extra) < m.GoroutinesParkedN/100
			g.Result = fmt.Sprintf("%d idle, %d with %s parked (%+d)", m.GoroutinesIdle, m.GoroutinesParked,
				groupInt(m.GoroutinesParkedN), extra)
			v = append(v, g)
		}
	}
	return v
}

// SummaryMarkdown is the side-by-side table, the goals, the chart and how
// the run was made, for RESULTS.md. chart is the chart's path relative to
// the markdown file ("" for none).
func (s *Suite) SummaryMarkdown(chart string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "One run of every scenario on both proxies, %s to %s, %gs per step "+
		"(a step is clean when every call succeeded, none was left unfinished and SIPp achieved ≥ %.0f%% of the offered rate). "+
		"The two proxies' ladders ran in lockstep (sipasync at a rate, then Kamailio at the same rate, then the next rate), "+
		"so both saw the same machine; "+
		"a ladder stops after %s. Per-step figures are in the next section.\n\n",
		s.Started.UTC().Format("2006-01-02 15:04"), s.Finished.UTC().Format("15:04 UTC"), s.StepDurationS,
		MinCleanRate*100, "two unclean steps in a row")
	fmt.Fprintf(&b, "    %s\n\n", s.Command)
	fmt.Fprintf(&b, "Machine: %s. At the end: load average %s.\n\n", s.Machine, s.MachineAtEnd.LoadAvg)
	if !(s.StepDurationS >= FullDuration.Seconds()) {
		fmt.Fprintf(&b, "**Exploratory run**: steps shorter than the %s the issue asks for a rate to be called clean.\n\n", FullDuration)
	}
	b.WriteString("| scenario | sipasync highest clean | Kamailio highest clean | ratio (goal) | p99 at the clean rate: sipasync / Kamailio | proxy CPU there: sipasync / Kamailio | peak memory there: sipasync RSS / Kamailio PSS |\n")
	b.WriteString("|---|---|---|---|---|---|---|\n")
	for _, sc := range s.scenarioIDs() {
		sa, ka := s.Ladder(sc.ID, "sipasync"), s.Ladder(sc.ID, "kamailio")
		cell := func(r *Report) (rate, p99, cpu, mem string) {
			if r == nil {
				return "not run", "—", "—", "—"
			}
			if r.HighestClean == 0 {
				return "none clean", "—", "—", "—"
			}
			st := r.Step(r.HighestClean)
			rate = group(r.HighestClean)
			if !r.LimitFound() {
				rate = "≥ " + rate + " (ladder top)"
			}
			m, _ := st.Memory()
			return rate, fmtMS(st.RTT.P99) + " ms", fmt.Sprintf("%.0f%%", st.ProxyCPUPercent), fmtMiB(m)
		}
		sr, sp, sc2, sm := cell(sa)
		kr, kp, kc, km := cell(ka)
		if sc.SipasyncOnly {
			kr, kp, kc, km = "n/a (sipasync only)", "—", "—", "—"
		}
		ratio := "—"
		if sa != nil && ka != nil && sa.HighestClean > 0 && ka.HighestClean > 0 {
			ratio = fmt.Sprintf("%.2f×", sa.HighestClean/ka.HighestClean)
			if !sa.LimitFound() {
				ratio = "≥ " + ratio
			}
		}
		if sc.Goal > 0 {
			ratio += fmt.Sprintf(" (≥ %g×)", sc.Goal)
		}
		park := "no park"
		switch {
		case sc.Role == RoleShape:
			park = fmt.Sprintf("shaped to %g×", sc.ShapeRatio)
		case sc.ParkMS > 0:
			park = "park " + (time.Duration(sc.ParkMS) * time.Millisecond).String()
		}
		fmt.Fprintf(&b, "| %s %s (%s) | %s | %s | %s | %s / %s | %s / %s | %s / %s |\n",
			sc.ID, sc.Name, park, sr, kr, ratio, sp, kp, sc2, kc, sm, km)
	}
	if n := s.busyLines(); n != "" {
		b.WriteString("\n" + n)
	}
	if sh := s.shaperLines(); sh != "" {
		b.WriteString("\n" + sh)
	}
	if v := s.Verdicts(); len(v) > 0 {
		b.WriteString("\nGoals of the issue:\n\n")
		for _, g := range v {
			state := "**missed**"
			switch {
			case !g.Known:
				state = "not decided"
			case g.Met:
				state = "**met**"
			}
			fmt.Fprintf(&b, "- %s: %s — %s.\n", g.Goal, state, g.Result)
		}
	}
	for _, e := range s.Errors {
		fmt.Fprintf(&b, "\nNot run: %s.\n", e)
	}
	if chart != "" {
		fmt.Fprintf(&b, "\n![failure %% and p99 response time against offered rate, sipasync and Kamailio, per scenario](%s)\n", chart)
	}
	return b.String()
}

// busyLines names the unclean steps that ran while other work kept the
// machine busy (the wait for a quiet machine ran out): their failure may
// be the machine's, not the proxy's.
func (s *Suite) busyLines() string {
	var busy []string
	for _, r := range s.Ladders {
		for _, st := range r.Steps {
			if !st.Clean && !st.Background.Quiet && st.Background.WaitedS > 0 {
				busy = append(busy, fmt.Sprintf("%s %s at %s calls/s (%.1f other runnable tasks, load %.1f)",
					r.Scenario.ID, r.Target, group(st.Rate), st.Background.Runnable, st.LoadAvg))
			}
		}
	}
	if len(busy) == 0 {
		return ""
	}
	return "Unclean steps that started while other work kept the shared machine busy (the wait for at most the " +
		"--quiet number of other runnable tasks ran out), so part of their failure may be the machine's: " +
		strings.Join(busy, "; ") + ".\n"
}

// shaperLines describes the S5 steps (how exactly delays were kept).
func (s *Suite) shaperLines() string {
	var b strings.Builder
	for _, r := range s.Ladders {
		if r.Scenario.Role != RoleShape {
			continue
		}
		fmt.Fprintf(&b, "S5 shaping on %s (one source shaped to %g of the offered rate; lateness = actual − intended delay of each delayed request, 10 µs resolution):\n\n",
			r.Target, r.Scenario.ShapeRatio)
		b.WriteString("| offered calls/s | shaped to | delayed requests | intended delay p50 / p99 / max | lateness p50 | lateness p99 | lateness max | early | 503 | clean |\n")
		b.WriteString("|---|---|---|---|---|---|---|---|---|---|\n")
		for _, st := range r.Steps {
			sh := st.Shaper
			if sh == nil {
				fmt.Fprintf(&b, "| %s | — | no lateness report | | | | | | | %v |\n", group(st.Rate), yesNo(st.Clean))
				continue
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s / %s / %s ms | %s ms | %s ms | %s ms | %d | %d | %s |\n",
				group(st.Rate), group(st.Rate*r.Scenario.ShapeRatio), groupInt(sh.Delayed),
				fmtMS(sh.IntendedP50), fmtMS(sh.IntendedP99), fmtMS(sh.IntendedMax),
				fmtMS(sh.P50), fmtMS(sh.P99), fmtMS(sh.Max), sh.Early, sh.Rejected, yesNo(st.Clean))
		}
	}
	return b.String()
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// targetsOf lists the suite's targets in a stable order (sipasync first).
func (s *Suite) targetsOf() []string {
	var out []string
	for _, r := range s.Ladders {
		if !slices.Contains(out, r.Target) {
			out = append(out, r.Target)
		}
	}
	slices.SortStableFunc(out, func(a, b string) int {
		if a == "sipasync" {
			return -1
		}
		if b == "sipasync" {
			return 1
		}
		return strings.Compare(a, b)
	})
	return out
}
