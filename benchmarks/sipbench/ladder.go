package sipbench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// LadderConfig is a run of one scenario on one target at increasing rates.
type LadderConfig struct {
	Scenario Scenario
	Target   Target
	Repo     string
	Rates    []float64
	Duration time.Duration
	// Dir receives one subdirectory per step.
	Dir string
	// StopAfter ends the ladder after that many unclean steps in a row
	// (0: run every rate).
	StopAfter int
	// Gap is the pause between steps (default 2 s).
	Gap        time.Duration
	KeepTraces bool
	// UACRate: see StepConfig.UACRate.
	UACRate float64
	// Profile: see StepConfig.Profile.
	Profile time.Duration
	// Quiet: see StepConfig.Quiet.
	Quiet Quiet
	// Progress receives one line per step (and a header and a summary).
	Progress io.Writer
	// Command is the runner's command line, for the report.
	Command string
}

// Report is the machine-readable result of a ladder (written as JSON).
type Report struct {
	Kind          string    `json:"kind"` // "ladder"
	Scenario      Scenario  `json:"scenario"`
	Target        string    `json:"target"`
	ProxyCommand  []string  `json:"proxy_command,omitempty"`
	Command       string    `json:"command"`
	Started       time.Time `json:"started"`
	Machine       Machine   `json:"machine"`
	StepDurationS float64   `json:"step_duration_s"`
	Steps         []*Step   `json:"steps"`
	// HighestClean is the highest rate whose step was clean (0: none).
	HighestClean float64 `json:"highest_clean_rate"`
	// FullLength is set when the steps lasted at least FullDuration, the
	// length the issue asks for calling a rate clean.
	FullLength bool `json:"full_length"`
	// Stopped says why the ladder ended before its last rate, if it did.
	Stopped string `json:"stopped,omitempty"`
}

// RunLadder runs the steps in order. It returns the report so far with an
// error when a step could not run or the context ended.
func RunLadder(ctx context.Context, cfg LadderConfig) (*Report, error) {
	l := newLadder(cfg)
	for i := range cfg.Rates {
		if i > 0 {
			select {
			case <-ctx.Done():
				return l.rep, ctx.Err()
			case <-time.After(l.gap):
			}
		}
		if done, err := l.step(ctx, i); err != nil || done {
			return l.rep, err
		}
	}
	return l.rep, nil
}

// ladder is a ladder being run, one step at a time (RunSuite interleaves
// the ladders of several targets step by step).
type ladder struct {
	cfg     LadderConfig
	rep     *Report
	out     io.Writer
	gap     time.Duration
	tag     string
	unclean int
	done    bool
}

func newLadder(cfg LadderConfig) *ladder {
	sc := cfg.Scenario
	l := &ladder{cfg: cfg, out: cfg.Progress, gap: cfg.Gap, tag: fmt.Sprintf("[%s %s]", sc.ID, cfg.Target.Name())}
	l.rep = &Report{
		Kind: "ladder", Scenario: sc, Target: cfg.Target.Name(), Command: cfg.Command,
		Started: time.Now(), Machine: DescribeMachine(), StepDurationS: cfg.Duration.Seconds(),
		FullLength: cfg.Duration >= FullDuration,
	}
	if l.out == nil {
		l.out = io.Discard
	}
	if l.gap <= 0 {
		l.gap = 2 * time.Second
	}
	fmt.Fprintf(l.out, "%s %s on %s: rates %s, %s per step\n", sc.ID, sc.Name, cfg.Target.Name(),
		formatRates(cfg.Rates), cfg.Duration)
	return l
}

// step runs rung i. done is set when the ladder is over (last rung, or
// StopAfter unclean steps in a row); an error ends it too.
func (l *ladder) step(ctx context.Context, i int) (done bool, err error) {
	if l.done {
		return true, nil
	}
	cfg, rep := l.cfg, l.rep
	rate := cfg.Rates[i]
	fmt.Fprintf(l.out, "%s %6s calls/s × %s: ", l.tag, fmtRate(rate), cfg.Duration)
	st, err := RunStep(ctx, StepConfig{
		Scenario: cfg.Scenario, Target: cfg.Target, Repo: cfg.Repo, Rate: rate, Duration: cfg.Duration,
		Dir: filepath.Join(cfg.Dir, "rate-"+fmtRate(rate)), KeepTraces: cfg.KeepTraces,
		UACRate: cfg.UACRate, Profile: cfg.Profile, Quiet: cfg.Quiet,
	})
	if st != nil {
		rep.Steps = append(rep.Steps, st)
		if len(rep.ProxyCommand) == 0 {
			rep.ProxyCommand = st.ProxyCommand
		}
		fmt.Fprintln(l.out, st.Line())
	}
	if err != nil {
		if st == nil {
			fmt.Fprintf(l.out, "error: %v\n", firstLine(err.Error()))
		}
		rep.finish()
		l.done = true
		return true, err
	}
	if st.Clean {
		l.unclean = 0
	} else {
		l.unclean++
	}
	last := i == len(cfg.Rates)-1
	if !last && cfg.StopAfter > 0 && l.unclean >= cfg.StopAfter {
		rep.Stopped = fmt.Sprintf("%d unclean steps in a row", l.unclean)
		last = true
	}
	rep.finish()
	if last {
		l.done = true
		fmt.Fprintf(l.out, "%s highest clean rate: %s\n", l.tag, rep.HighestCleanString())
	}
	return l.done, nil
}

func (r *Report) finish() {
	r.HighestClean = 0
	for _, s := range r.Steps {
		if s.Clean && s.Rate > r.HighestClean {
			r.HighestClean = s.Rate
		}
	}
}

// HighestCleanString is the highest clean rate in words.
func (r *Report) HighestCleanString() string {
	if r.HighestClean == 0 {
		return "none"
	}
	s := fmtRate(r.HighestClean) + " calls/s"
	if !r.FullLength {
		s += fmt.Sprintf(" (exploratory: %gs steps, < %s)", r.StepDurationS, FullDuration)
	}
	return s
}

// Line is the one-line progress summary of a step.
func (st *Step) Line() string {
	var b strings.Builder
	fmt.Fprintf(&b, "achieved %s/s ok %d failed %d unfinished %d retrans %d",
		fmtRate(st.AchievedRate), st.Successful, st.Failed, st.Unfinished, st.Retransmissions)
	fmt.Fprintf(&b, " | rtt p50 %s p99 %s max %s ms", fmtMS(st.RTT.P50), fmtMS(st.RTT.P99), fmtMS(st.RTT.Max))
	mem, kind := st.Memory()
	fmt.Fprintf(&b, " | proxy cpu %.0f%% %s %s", st.ProxyCPUPercent, strings.ToLower(kind), fmtMiB(mem))
	fmt.Fprintf(&b, " | uac cpu %.0f%%", st.UAC.CPUPercent)
	if st.UACs > 1 {
		fmt.Fprintf(&b, " (%d uacs)", st.UACs)
	}
	if st.UAS != nil {
		fmt.Fprintf(&b, " uas cpu %.0f%%", st.UAS.CPUPercent)
	}
	if sh := st.Shaper; sh != nil {
		fmt.Fprintf(&b, " | shaper: %d delayed, lateness p50 %s p99 %s max %s ms", sh.Delayed, fmtMS(sh.P50), fmtMS(sh.P99), fmtMS(sh.Max))
	}
	fmt.Fprintf(&b, " | load %.1f, %s", st.LoadAvg, st.Background)
	if st.Clean {
		b.WriteString(" | clean")
	} else {
		b.WriteString(" | NOT clean: " + strings.Join(st.Problems, "; "))
	}
	return b.String()
}

// ParseRates parses "1000,2000,4k" (k = ×1000).
func ParseRates(s string) ([]float64, error) {
	var out []float64
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		mul := 1.0
		if v, ok := strings.CutSuffix(strings.ToLower(f), "k"); ok {
			f, mul = v, 1000
		}
		v, err := strconv.ParseFloat(f, 64)
		if err != nil || v <= 0 {
			return nil, fmt.Errorf("bad rate %q", f)
		}
		out = append(out, v*mul)
	}
	if len(out) == 0 {
		return nil, errors.New("no rates")
	}
	return out, nil
}

// StepRates returns start, start+step, ... up to max inclusive.
func StepRates(start, step, maxRate float64) ([]float64, error) {
	if start <= 0 || step <= 0 || maxRate < start {
		return nil, fmt.Errorf("bad ladder start=%g step=%g max=%g", start, step, maxRate)
	}
	if (maxRate-start)/step > 1000 {
		return nil, fmt.Errorf("ladder start=%g step=%g max=%g has more than 1000 steps", start, step, maxRate)
	}
	var out []float64
	for r := start; r <= maxRate+1e-9; r += step {
		out = append(out, r)
	}
	return out, nil
}

func formatRates(rs []float64) string {
	s := make([]string, len(rs))
	for i, r := range rs {
		s[i] = fmtRate(r)
	}
	return strings.Join(s, ",")
}

func fmtRate(r float64) string {
	if r == float64(int64(r)) {
		return strconv.FormatInt(int64(r), 10)
	}
	return strconv.FormatFloat(r, 'f', 1, 64)
}

// fmtMS renders milliseconds to at most two decimals.
func fmtMS(v float64) string { return strconv.FormatFloat(math.Round(v*100)/100, 'f', -1, 64) }

func fmtMiB(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}
