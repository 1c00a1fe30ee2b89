package sipbench

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/sipasync/sipasync/internal/sipptest"
)

// The flood run (hardening): one proxy, SIPp at Factor × the scenario's
// clean rate for Duration (then its SIPp processes, clients and UAS, are
// stopped: a soft exit, killed a second later), then, Gap after the flood's end, the clean rate for
// Recovery on the same proxy. The flood's UAC
// takes a 503 as an answer (benchmarks/sipp/uac_404_or_503.xml, uac_call_or_503.xml), so its
// "successful" calls include the shed ones; the recovery's UAC is the
// scenario's own, where a 503 is a failure. Passed when the proxy lived
// through it (exit 0 at the end), its RSS stayed under RSSBound, and the
// recovery was clean.

// FloodConfig configures RunFlood.
type FloodConfig struct {
	Scenario  Scenario // S1 or S2
	Target    Target
	Repo      string
	CleanRate float64
	Factor    float64       // 3
	Duration  time.Duration // of the flood (30s)
	Gap       time.Duration // from the flood's end to the recovery's start (5s)
	Recovery  time.Duration // at the clean rate (20s)
	RSSBound  int64         // bytes
	Dir       string
	UACRate   float64
	Quiet     Quiet
	// Baselines, when > 0, runs plain steps (RunStep: a fresh proxy, no
	// flood) before the flood, first at CleanRate: while one is not clean
	// the next lower rate of the scenario's ladder is tried, at most
	// Baselines steps, and the flood uses the first clean one. A shared
	// machine's capacity moves from hour to hour; this makes "the clean
	// rate" the one measured just before the flood.
	Baselines int
}

// FloodBaseline is one plain step run before the flood.
type FloodBaseline struct {
	Rate       float64 `json:"rate"`
	Clean      bool    `json:"clean"`
	Successful int64   `json:"successful"`
	Failed     int64   `json:"failed"`
	Unfinished int64   `json:"unfinished"`
	P99        float64 `json:"p99_ms"`
	PeakRSS    int64   `json:"proxy_peak_rss_bytes"`
}

// FloodPhase is one phase's SIPp counts and the proxy's usage in it.
type FloodPhase struct {
	Rate         float64     `json:"rate"`
	DurationS    float64     `json:"duration_s"`
	Calls        int         `json:"calls"`
	AchievedRate float64     `json:"achieved_rate"`
	UAC          SippCounts  `json:"uac"`
	UACs         int         `json:"uac_processes"`
	UAS          *SippCounts `json:"uas,omitempty"`
	RTT          Latency     `json:"response_time"`
	// Unfinished counts calls not created plus calls left open.
	Unfinished      int64   `json:"unfinished"`
	ProxyCPUPercent float64 `json:"proxy_cpu_percent"`
	ProxyPeakRSS    int64   `json:"proxy_peak_rss_bytes"`
	ProxyEndRSS     int64   `json:"proxy_end_rss_bytes"`
	Clean           bool    `json:"clean"`
}

// FloodReport is one scenario's flood run.
type FloodReport struct {
	Kind         string      `json:"kind"` // "flood"
	Scenario     Scenario    `json:"scenario"`
	Target       string      `json:"target"`
	Command      string      `json:"command"`
	ProxyCommand []string    `json:"proxy_command,omitempty"`
	Started      time.Time   `json:"started"`
	Machine      Machine     `json:"machine"`
	Background   QuietResult `json:"background"`
	GapS         float64     `json:"gap_s"`
	// AskedRate is the clean rate asked for; Baseline the plain steps run
	// to confirm it (or the lower one used) just before the flood.
	AskedRate float64         `json:"asked_rate"`
	Baseline  []FloodBaseline `json:"baseline,omitempty"`
	Flood     FloodPhase      `json:"flood"`
	Recovery  FloodPhase      `json:"recovery"`
	RSSBound  int64           `json:"rss_bound_bytes"`
	PeakRSS   int64           `json:"peak_rss_bytes"`
	// Proxy is the proxy's exit (its counters: shed, rejected_503...).
	Proxy    Exit     `json:"proxy"`
	Passed   bool     `json:"passed"`
	Problems []string `json:"problems,omitempty"`
}

// floodUAC is the flood phase's UAC: the scenario's, with 503 taken as an
// answer.
func floodUAC(sc Scenario) (string, error) {
	switch sc.UAC {
	case "bench:uac_404.xml", "uac_404.xml":
		return "bench:uac_404_or_503.xml", nil
	case "uac_call.xml", "bench:uac_call.xml":
		return "bench:uac_call_or_503.xml", nil
	}
	return "", fmt.Errorf("flood: no 503-tolerant UAC for %s (%s)", sc.ID, sc.UAC)
}

// floodGrace is how long the flood's SIPp processes get after its end (a
// soft exit: no new call) before they are killed.
const floodGrace = time.Second

// RunFlood runs the flood and the recovery on one proxy.
func RunFlood(ctx context.Context, cfg FloodConfig, command string) (*FloodReport, error) {
	sc := cfg.Scenario
	fuac, err := floodUAC(sc)
	if err != nil {
		return nil, err
	}
	if cfg.CleanRate <= 0 || cfg.Factor <= 0 || cfg.Duration <= 0 || cfg.Recovery <= 0 {
		return nil, fmt.Errorf("flood: clean rate, factor, duration and recovery must be > 0")
	}
	for _, d := range []string{"", "flood", "recovery", "uas", "uas-recovery"} {
		if err := os.MkdirAll(filepath.Join(cfg.Dir, d), 0o755); err != nil {
			return nil, err
		}
	}
	r := &FloodReport{Kind: "flood", Scenario: sc, Target: cfg.Target.Name(), Command: command,
		Started: time.Now(), Machine: DescribeMachine(), RSSBound: cfg.RSSBound, GapS: cfg.Gap.Seconds(),
		AskedRate: cfg.CleanRate}
	if cfg.Baselines > 0 {
		rate, err := r.baseline(ctx, cfg)
		if err != nil {
			return r, err
		}
		if rate == 0 {
			r.Problems = append(r.Problems, fmt.Sprintf("no clean baseline in %d steps from %s calls/s down: not flooded",
				len(r.Baseline), group(cfg.CleanRate)))
			return r, nil
		}
		cfg.CleanRate = rate
	}
	r.Background = cfg.Quiet.WaitQuiet(ctx)

	floodRate := cfg.CleanRate * cfg.Factor
	inst, err := startOnFreePort(ctx, cfg.Target, ProxySpec{Scenario: sc, Dir: cfg.Dir, Rate: cfg.CleanRate})
	if err != nil {
		return nil, err
	}
	defer inst.Stop(context.Background()) //nolint:errcheck // the normal path stops it below
	r.ProxyCommand = inst.Command()

	recvTimeout := max(10*time.Second, sc.Park+8*time.Second)
	total := cfg.Duration + cfg.Gap + cfg.Recovery
	uacTimeout := total*3/2 + recvTimeout + 20*time.Second
	callLimit := max(1000, int(floodRate*(sc.CallLength()+time.Second).Seconds()*3))

	// Two UASes, registered as two users: the flood's calls go to one, the
	// recovery's to the other, so each phase's UAS counts are its own.
	var floodUAS, recUAS *sipptest.Process
	recUser := sc.User
	if sc.UAS != "" {
		startUAS := func(user, dir string, grace time.Duration) (*sipptest.Process, error) {
			uas, err := sipptest.Start(ctx, sipptest.Options{
				Scenario:    ScenarioPath(cfg.Repo, sc.UAS),
				Dir:         dir,
				Timeout:     uacTimeout + time.Minute,
				CallLimit:   callLimit * 2,
				RecvTimeout: recvTimeout,
				StopGrace:   grace,
				ExtraArgs:   []string{"-buff_size", strconv.Itoa(SippBuffer)},
			})
			if err != nil {
				return nil, fmt.Errorf("start the UAS: %w", err)
			}
			reg, err := sipptest.Run(ctx, sipptest.Options{
				Scenario: ScenarioPath(cfg.Repo, "register.xml"),
				Target:   inst.Addr(),
				Service:  user,
				MaxCalls: 1,
				Keys:     map[string]string{"contact_port": strconv.Itoa(uas.Port())},
				Timeout:  10 * time.Second,
				Dir:      dir,
			})
			if err != nil || !reg.OK() || reg.Successful != 1 {
				_, _ = uas.Stop()
				return nil, fmt.Errorf("register %s with the proxy: %v\n%s", user, err, reg.Diagnostics())
			}
			return uas, nil
		}
		// The flood's UAS ends with its UACs (see below): on a real network
		// the callee is another machine, here its backlog would take the
		// proxy's cores.
		if floodUAS, err = startUAS(sc.User, filepath.Join(cfg.Dir, "uas"), floodGrace); err != nil {
			return nil, err
		}
		defer floodUAS.Stop() //nolint:errcheck // stopped below on the normal path
		recUser = sc.User + "-recovery"
		if recUAS, err = startUAS(recUser, filepath.Join(cfg.Dir, "uas-recovery"), 15*time.Second); err != nil {
			return nil, err
		}
		defer recUAS.Stop() //nolint:errcheck // stopped below on the normal path
	}

	uacOpts := func(scen, user string, rate float64, d time.Duration, dir string) sipptest.Options {
		o := sipptest.Options{
			Scenario:    ScenarioPath(cfg.Repo, scen),
			Target:      inst.Addr(),
			Service:     user,
			Rate:        rate,
			MaxCalls:    int(math.Round(rate * d.Seconds())),
			CallLimit:   callLimit,
			Pause:       sc.Pause,
			Timeout:     uacTimeout,
			RecvTimeout: recvTimeout,
			TraceRTT:    true,
			ExtraArgs:   []string{"-fd", "1", "-buff_size", strconv.Itoa(SippBuffer)},
			Dir:         dir,
		}
		if sc.Pause == 0 {
			o.Pause = -1
		}
		return o
	}

	floodMon := StartMonitor(inst.PID(), 100*time.Millisecond)
	allMon := StartMonitor(inst.PID(), 100*time.Millisecond)
	floodStart := time.Now()
	fo := uacOpts(fuac, sc.User, floodRate, cfg.Duration, filepath.Join(cfg.Dir, "flood"))
	r.Flood = FloodPhase{Rate: floodRate, DurationS: cfg.Duration.Seconds(), Calls: fo.MaxCalls, UACs: uacCount(floodRate, cfg.UACRate)}
	// The flood ends after Duration: its SIPp processes (clients and UAS)
	// get SIPp's soft exit (SIGUSR1) and are killed floodGrace later, so
	// the recovery meets the proxy's own backlog (transactions whose peers
	// are gone included), not a tail of SIPp traffic.
	fo.StopGrace = min(cfg.Gap, floodGrace)
	floodCtx, stopFlood := context.WithDeadline(ctx, floodStart.Add(cfg.Duration))
	defer stopFlood()
	floodDone := make(chan []clientRun, 1)
	go func() { floodDone <- runClients(floodCtx, fo, r.Flood.UACs) }()
	floodUASDone := make(chan SippCounts, 1)
	if floodUAS != nil {
		go func() {
			<-floodCtx.Done()
			floodUASDone <- countsOf(floodUAS.Stop())
		}()
	}

	// The recovery starts Gap after the flood's end.
	select {
	case <-ctx.Done():
	case <-time.After(time.Until(floodStart.Add(cfg.Duration + cfg.Gap))):
	}
	fu, _ := floodMon.Stop()
	r.Flood.ProxyCPUPercent, r.Flood.ProxyPeakRSS, r.Flood.ProxyEndRSS = fu.CPUPercent, fu.PeakRSS, fu.LastRSS
	recMon := StartMonitor(inst.PID(), 100*time.Millisecond)
	ro := uacOpts(sc.UAC, recUser, cfg.CleanRate, cfg.Recovery, filepath.Join(cfg.Dir, "recovery"))
	r.Recovery = FloodPhase{Rate: cfg.CleanRate, DurationS: cfg.Recovery.Seconds(), Calls: ro.MaxCalls, UACs: uacCount(cfg.CleanRate, cfg.UACRate)}
	recRuns := runClients(ctx, ro, r.Recovery.UACs)
	ru, _ := recMon.Stop()
	r.Recovery.ProxyCPUPercent, r.Recovery.ProxyPeakRSS, r.Recovery.ProxyEndRSS = ru.CPUPercent, ru.PeakRSS, ru.LastRSS
	floodRuns := <-floodDone
	for i := range floodRuns {
		if errors.Is(floodRuns[i].err, context.DeadlineExceeded) {
			floodRuns[i].err = nil // stopped at the flood's end, as planned
		}
	}
	au, _ := allMon.Stop()
	r.PeakRSS = au.PeakRSS
	r.Flood.fill(floodRuns)
	r.Recovery.fill(recRuns)

	if floodUAS != nil {
		c := <-floodUASDone
		r.Flood.UAS = &c
	}
	if recUAS != nil {
		c := countsOf(recUAS.Stop())
		r.Recovery.UAS = &c
	}
	exit, _ := inst.Stop(ctx)
	r.Proxy = exit
	r.judge()
	return r, ctx.Err()
}

// baseline runs the plain steps of cfg.Baselines and returns the first
// clean rate (0: none).
func (r *FloodReport) baseline(ctx context.Context, cfg FloodConfig) (float64, error) {
	rates := []float64{cfg.CleanRate}
	for i := len(cfg.Scenario.Ladder) - 1; i >= 0; i-- {
		if l := cfg.Scenario.Ladder[i]; l < cfg.CleanRate {
			rates = append(rates, l)
		}
	}
	for i, rate := range rates[:min(len(rates), cfg.Baselines)] {
		st, err := RunStep(ctx, StepConfig{Scenario: cfg.Scenario, Target: cfg.Target, Repo: cfg.Repo, Rate: rate,
			Duration: cfg.Recovery, Dir: filepath.Join(cfg.Dir, fmt.Sprintf("baseline-%d", i)), UACRate: cfg.UACRate,
			Quiet: cfg.Quiet})
		if err != nil {
			return 0, fmt.Errorf("flood baseline at %g calls/s: %w", rate, err)
		}
		r.Baseline = append(r.Baseline, FloodBaseline{Rate: rate, Clean: st.Clean, Successful: st.Successful,
			Failed: st.Failed, Unfinished: st.Unfinished, P99: st.RTT.P99, PeakRSS: st.ProxyPeakRSS})
		if st.Clean {
			return rate, nil
		}
	}
	return 0, nil
}

// fill sums the phase's client runs.
func (ph *FloodPhase) fill(runs []clientRun) {
	sum := sumClients(runs, false)
	ph.UAC, ph.RTT, ph.AchievedRate = sum.UAC, sum.RTT, sum.AchievedRate
	ph.Unfinished = ph.UAC.Unfinished + max(0, int64(ph.Calls)-ph.UAC.Created)
}

// judge sets the phases' Clean, Passed and Problems.
func (r *FloodReport) judge() {
	rec := &r.Recovery
	failed := rec.UAC.Failed
	unfinished := rec.Unfinished
	if rec.UAS != nil {
		failed += rec.UAS.Failed
		unfinished += rec.UAS.Unfinished
	}
	rec.Clean = failed == 0 && unfinished == 0 && rec.AchievedRate >= 0.95*rec.Rate
	r.Flood.Clean = r.Flood.UAC.Failed == 0 && r.Flood.Unfinished == 0
	for name, ph := range map[string]*FloodPhase{"flood": &r.Flood, "recovery": rec} {
		if ph.UAC.Err != "" {
			r.Problems = append(r.Problems, name+" UAC: "+ph.UAC.Err)
		}
	}
	if r.Proxy.Code != 0 || r.Proxy.Killed {
		r.Problems = append(r.Problems, fmt.Sprintf("proxy exit %d (killed %v)", r.Proxy.Code, r.Proxy.Killed))
	}
	if r.RSSBound > 0 && r.PeakRSS > r.RSSBound {
		r.Problems = append(r.Problems, fmt.Sprintf("peak RSS %s over the bound %s", mib(r.PeakRSS), mib(r.RSSBound)))
	}
	if !rec.Clean {
		r.Problems = append(r.Problems, fmt.Sprintf("recovery not clean: %d failed, %d unfinished, achieved %.0f/s of %.0f/s",
			failed, unfinished, rec.AchievedRate, rec.Rate))
	}
	r.Passed = len(r.Problems) == 0
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// BlockID names the report's block in RESULTS.md.
func (r *FloodReport) BlockID() string { return "flood/" + r.Scenario.ID + "/" + r.Target }

// Markdown renders the flood run.
func (r *FloodReport) Markdown() string {
	var b strings.Builder
	if r.Recovery.Rate == 0 {
		fmt.Fprintf(&b, "**%s flood** on %s, asked at the clean rate %s calls/s. Run %s UTC.\n\n    %s\n\n",
			r.Scenario.ID, r.Target, group(r.AskedRate), r.Started.UTC().Format("2006-01-02 15:04"), r.Command)
	} else {
		fmt.Fprintf(&b, "**%s flood** on %s: %s calls/s offered for %gs (%g× the clean rate %s), then, %gs after the flood's end (its SIPp processes get a soft exit at its end and are killed %gs later), %s calls/s for %gs on the same proxy. Run %s UTC.\n\n",
			r.Scenario.ID, r.Target, group(r.Flood.Rate), r.Flood.DurationS, r.Flood.Rate/r.Recovery.Rate, group(r.Recovery.Rate),
			r.GapS, floodGrace.Seconds(), group(r.Recovery.Rate), r.Recovery.DurationS, r.Started.UTC().Format("2006-01-02 15:04"))
		fmt.Fprintf(&b, "    %s\n\n", r.Command)
	}
	fmt.Fprintf(&b, "Machine: %s. Other runnable tasks before the run: %.1f.\n\n", r.Machine, r.Background.Runnable)
	if len(r.Baseline) > 0 {
		b.WriteString("Baseline just before the flood (plain steps, a fresh proxy each, no flood): ")
		for i, bl := range r.Baseline {
			if i > 0 {
				b.WriteString("; ")
			}
			verdict := "clean"
			if !bl.Clean {
				verdict = fmt.Sprintf("not clean, %s failed, %s unfinished", groupInt(bl.Failed), groupInt(bl.Unfinished))
			}
			fmt.Fprintf(&b, "%s calls/s %s (p99 %.0f ms, peak RSS %s)", group(bl.Rate), verdict, bl.P99, mib(bl.PeakRSS))
		}
		if r.Recovery.Rate > 0 && r.Recovery.Rate != r.AskedRate {
			fmt.Fprintf(&b, ". The clean rate now is %s calls/s (asked: %s); the flood below uses it", group(r.Recovery.Rate), group(r.AskedRate))
		}
		b.WriteString(".\n\n")
	}
	if r.Recovery.Rate == 0 {
		fmt.Fprintf(&b, "**Not flooded**: %s.\n", strings.Join(r.Problems, "; "))
		return b.String()
	}
	b.WriteString("| phase | offered calls/s | achieved | answered (incl. 503) | failed | unfinished | retrans | p50 / p99 / max ms | proxy CPU | proxy peak RSS |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|\n")
	row := func(name string, ph FloodPhase) {
		failed, unfinished := ph.UAC.Failed, ph.Unfinished
		if ph.UAS != nil {
			failed += ph.UAS.Failed
			unfinished += ph.UAS.Unfinished
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %.0f / %.0f / %.0f | %.0f%% | %s |\n", name, group(ph.Rate),
			group(ph.AchievedRate), groupInt(ph.UAC.Successful), groupInt(failed), groupInt(unfinished),
			groupInt(ph.UAC.Retransmissions), ph.RTT.P50, ph.RTT.P99, ph.RTT.Max,
			ph.ProxyCPUPercent, mib(ph.ProxyPeakRSS))
	}
	row("flood", r.Flood)
	row("recovery (clean rate)", r.Recovery)
	c := r.Proxy.Counters
	fmt.Fprintf(&b, "\nThe proxy's own counts at exit: shed by overload control %s (unanswered %s, their ACKs absorbed %s), other 503s %s, relays refused %s, malformed %s; exit code %d.\n",
		groupInt(c["shed"]), groupInt(c["shed_dropped"]), groupInt(c["shed_acks"]), groupInt(c["rejected_503"]),
		groupInt(c["relay_rejected"]), groupInt(c["malformed"]), r.Proxy.Code)
	fmt.Fprintf(&b, "Peak RSS over the whole run %s (bound %s). ", mib(r.PeakRSS), mib(r.RSSBound))
	if r.Passed {
		b.WriteString("**Passed**: the proxy lived through the flood, stayed under the bound and served the clean rate with no failure right after.\n")
	} else {
		fmt.Fprintf(&b, "**Not passed**: %s.\n", strings.Join(r.Problems, "; "))
	}
	return b.String()
}
