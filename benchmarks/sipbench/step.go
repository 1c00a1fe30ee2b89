package sipbench

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sipasync/sipasync/internal/sipptest"
)

// MinCleanRate is the fraction of the target rate SIPp must achieve for a
// step to count as clean: a step where SIPp (which shares the CPU with the
// proxy) could not place its calls on time did not test that rate.
const MinCleanRate = 0.95

// FullDuration is the step length the issue asks for a rate to be called
// clean; shorter steps are exploratory.
const FullDuration = 20 * time.Second

// StepConfig is one rung of a ladder: one proxy, one UAS (if the scenario
// has one), one UAC run at Rate for Duration.
type StepConfig struct {
	Scenario Scenario
	Target   Target
	Repo     string
	Rate     float64
	Duration time.Duration
	// Dir receives the proxy log and SIPp's files for this step.
	Dir string
	// KeepTraces keeps SIPp's response-time trace files (large at high
	// rates); they are deleted once parsed otherwise.
	KeepTraces bool
	// UACRate is the most calls/s one SIPp UAC process is asked to place:
	// above it the rate is split over several UAC processes, each on its
	// own port (one SIPp tops out at about 9,000 calls/s on a 2-core
	// machine). 0: DefaultUACRate.
	UACRate float64
	// Quiet is waited for before the proxy starts.
	Quiet Quiet
	// Profile, when > 0, takes a CPU profile of that length from a proxy
	// that serves pprof, starting a quarter into the step, and a goroutine
	// count and heap profile after it (files in Dir).
	Profile time.Duration
}

// SippBuffer is SIPp's -buff_size (its sockets' send and receive buffers):
// 4 MiB as the proxies ask for, instead of SIPp's 64 KiB, which overflows
// whenever SIPp is descheduled for a moment on a busy machine (the kernel
// counts those drops as UDP receive buffer errors).
const SippBuffer = 4 << 20

// DefaultUACRate is StepConfig.UACRate's default.
const DefaultUACRate = 6000

// uacCount is how many UAC processes place rate calls/s.
func uacCount(rate, perUAC float64) int {
	if perUAC <= 0 {
		perUAC = DefaultUACRate
	}
	return max(1, int(math.Ceil(rate/perUAC-1e-9)))
}

// SippCounts is what one SIPp process reported.
type SippCounts struct {
	Created         int64 `json:"created"`
	Successful      int64 `json:"successful"`
	Failed          int64 `json:"failed"`
	Unfinished      int64 `json:"unfinished"`
	Retransmissions int64 `json:"retransmissions"`
	// FailureCounters are SIPp's non-zero Failed*(C) columns and the
	// out-of-call and dead-call message counts.
	FailureCounters map[string]int64 `json:"failure_counters,omitempty"`
	ExitCode        int              `json:"exit_code"`
	TimedOut        bool             `json:"timed_out,omitempty"`
	Err             string           `json:"error,omitempty"`
	CPUPercent      float64          `json:"cpu_percent"`
	Args            []string         `json:"args,omitempty"`
}

func countsOf(r *sipptest.Result, err error) SippCounts {
	var c SippCounts
	if err != nil {
		c.Err = err.Error()
		if i := strings.IndexByte(c.Err, '\n'); i >= 0 {
			c.Err = c.Err[:i]
		}
	}
	if r == nil {
		return c
	}
	c.Created, c.Successful, c.Failed = r.Created, r.Successful, r.Failed
	c.Unfinished = max(0, r.Created-r.Successful-r.Failed)
	c.Retransmissions = r.Retransmissions
	c.ExitCode, c.TimedOut = r.ExitCode, r.TimedOut
	c.Args = argsForReport(r.Args)
	for k, v := range r.Stats {
		if !strings.HasSuffix(k, "(C)") {
			continue
		}
		if !strings.HasPrefix(k, "Failed") && !strings.HasPrefix(k, "OutOfCallMsgs") && !strings.HasPrefix(k, "DeadCallMsgs") {
			continue
		}
		if k == "FailedCall(C)" {
			continue
		}
		if n, _ := strconv.ParseFloat(v, 64); n != 0 {
			if c.FailureCounters == nil {
				c.FailureCounters = map[string]int64{}
			}
			c.FailureCounters[strings.TrimSuffix(k, "(C)")] = int64(n)
		}
	}
	return c
}

// argsForReport drops the machine-specific parts of a SIPp command line
// (scenario directories, work-directory file names stay relative).
func argsForReport(args []string) []string {
	out := slices.Clone(args)
	for i, a := range out {
		if filepath.IsAbs(a) {
			out[i] = filepath.Base(a)
		}
	}
	return out
}

// Latency summarises SIPp's response-time samples (RTD 1: INVITE to the
// final response the scenario marks; whole milliseconds).
type Latency struct {
	Samples int     `json:"samples"`
	P50     float64 `json:"p50_ms"`
	P90     float64 `json:"p90_ms"`
	P99     float64 `json:"p99_ms"`
	Max     float64 `json:"max_ms"`
}

func latencyOf(samples []time.Duration) Latency {
	if len(samples) == 0 {
		return Latency{}
	}
	s := slices.Clone(samples)
	slices.Sort(s)
	pct := func(p float64) float64 {
		rank := int(math.Ceil(float64(len(s))*p/100)) - 1
		rank = max(0, min(rank, len(s)-1))
		return float64(s[rank]) / float64(time.Millisecond)
	}
	return Latency{Samples: len(s), P50: pct(50), P90: pct(90), P99: pct(99),
		Max: float64(s[len(s)-1]) / float64(time.Millisecond)}
}

// Step is the outcome of one rung.
type Step struct {
	Rate      float64   `json:"rate"`
	DurationS float64   `json:"duration_s"`
	Calls     int       `json:"calls"`
	Started   time.Time `json:"started"`
	// LoadAvg is the 1-minute load average when the step started (other
	// work on the machine shows here).
	LoadAvg float64 `json:"load_avg_1m"`
	// Background is the other work on the machine just before the step
	// (runnable tasks; see Quiet).
	Background QuietResult `json:"background"`

	// AchievedRate is calls created per second while SIPp was creating
	// them (StartTime to the last call created, from the -fd 1 rows).
	AchievedRate float64 `json:"achieved_rate"`
	// Created..Retransmissions: the UAC's counters, plus the UAS's
	// failures, unfinished calls and retransmissions.
	Created         int64   `json:"created"`
	Successful      int64   `json:"successful"`
	Failed          int64   `json:"failed"`
	Unfinished      int64   `json:"unfinished"`
	Retransmissions int64   `json:"retransmissions"`
	RTT             Latency `json:"response_time"`
	PeakLiveCalls   int64   `json:"peak_live_calls"`
	// WallS is the UAC's run time (creation plus the last calls' end).
	WallS float64 `json:"wall_s"`

	ProxyCPUPercent float64 `json:"proxy_cpu_percent"`
	ProxyCPUSeconds float64 `json:"proxy_cpu_s"`
	ProxyPeakRSS    int64   `json:"proxy_peak_rss_bytes"`
	// ProxyPeakPSS is the peak PSS summed over a multi-process proxy
	// (Kamailio); 0 for a single process, where RSS is the figure.
	ProxyPeakPSS int64 `json:"proxy_peak_pss_bytes,omitempty"`
	// ProxyProcs is the number of proxy processes (Kamailio: main plus
	// children).
	ProxyProcs   int      `json:"proxy_processes,omitempty"`
	ProxyEndRSS  int64    `json:"proxy_end_rss_bytes"`
	ProxyThreads int      `json:"proxy_threads"`
	Proxy        Exit     `json:"proxy"`
	ProxyCommand []string `json:"proxy_command"`

	// UAC is the sum over the UAC processes (UACs of them).
	UAC  SippCounts  `json:"uac"`
	UACs int         `json:"uac_processes"`
	UAS  *SippCounts `json:"uas,omitempty"`
	// Shaper is the S5 lateness summary (actual − intended delay).
	Shaper *ShaperStats `json:"shaper,omitempty"`

	// ProfileError says why a requested profile was not taken.
	ProfileError string `json:"profile_error,omitempty"`

	RateMet  bool     `json:"rate_met"`
	Clean    bool     `json:"clean"`
	Problems []string `json:"problems,omitempty"`
}

// RunStep runs one rung. An error means the step could not be run at all
// (the proxy or the UAS did not start, the registration failed); calls that
// fail are results, not errors.
func RunStep(ctx context.Context, cfg StepConfig) (*Step, error) {
	sc := cfg.Scenario
	if sc.NotYet != "" {
		return nil, fmt.Errorf("%s: %w", sc.NotYet, ErrNotImplemented)
	}
	calls := int(math.Round(cfg.Rate * cfg.Duration.Seconds()))
	if calls < 1 {
		return nil, fmt.Errorf("rate %g × %s is less than one call", cfg.Rate, cfg.Duration)
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, err
	}
	bg := cfg.Quiet.WaitQuiet(ctx)
	st := &Step{Rate: cfg.Rate, DurationS: cfg.Duration.Seconds(), Calls: calls, Started: time.Now(), LoadAvg: loadAvg1(),
		Background: bg}

	inst, err := startOnFreePort(ctx, cfg.Target, ProxySpec{Scenario: sc, Dir: cfg.Dir, Rate: cfg.Rate})
	if err != nil {
		return nil, err
	}
	defer inst.Stop(context.Background()) //nolint:errcheck // the normal path stops it below
	st.ProxyCommand = inst.Command()

	callLimit := max(1000, int(cfg.Rate*(sc.CallLength()+time.Second).Seconds()*3))
	recvTimeout := max(10*time.Second, sc.Park+8*time.Second)
	uacTimeout := cfg.Duration*3/2 + recvTimeout + 20*time.Second

	var uas *sipptest.Process
	var uasMon *Monitor
	if sc.UAS != "" {
		uas, err = sipptest.Start(ctx, sipptest.Options{
			Scenario:    ScenarioPath(cfg.Repo, sc.UAS),
			Dir:         cfg.Dir,
			Timeout:     uacTimeout + time.Minute,
			CallLimit:   callLimit * 2,
			RecvTimeout: recvTimeout,
			StopGrace:   15 * time.Second,
			ExtraArgs:   []string{"-buff_size", strconv.Itoa(SippBuffer)},
		})
		if err != nil {
			return nil, fmt.Errorf("start the UAS: %w", err)
		}
		defer uas.Stop() //nolint:errcheck // stopped below on the normal path
		reg, err := sipptest.Run(ctx, sipptest.Options{
			Scenario: ScenarioPath(cfg.Repo, "register.xml"),
			Target:   inst.Addr(),
			Service:  sc.User,
			MaxCalls: 1,
			Keys:     map[string]string{"contact_port": strconv.Itoa(uas.Port())},
			Timeout:  10 * time.Second,
			Dir:      cfg.Dir,
		})
		if err != nil || !reg.OK() || reg.Successful != 1 {
			return nil, fmt.Errorf("register %s with the proxy: %v\n%s", sc.User, err, reg.Diagnostics())
		}
		if pid := pidByCwd(uas.Dir()); pid > 0 {
			uasMon = StartMonitor(pid, 200*time.Millisecond)
		}
	}

	var proxyMon *Monitor
	if t, ok := inst.(ProcessTree); ok && t.Tree() {
		// Reading every process's smaps_rollup costs the proxy's cores
		// some time: poll less often.
		proxyMon = StartTreeMonitor(inst.PID(), 250*time.Millisecond)
	} else {
		proxyMon = StartMonitor(inst.PID(), 100*time.Millisecond)
	}
	uacOpts := sipptest.Options{
		Scenario:    ScenarioPath(cfg.Repo, sc.UAC),
		Target:      inst.Addr(),
		Service:     sc.User,
		Rate:        cfg.Rate,
		MaxCalls:    calls,
		CallLimit:   callLimit,
		Pause:       sc.Pause,
		Timeout:     uacTimeout,
		RecvTimeout: recvTimeout,
		TraceRTT:    true,
		ExtraArgs:   []string{"-fd", "1", "-buff_size", strconv.Itoa(SippBuffer)},
		Dir:         cfg.Dir,
	}
	if sc.Pause == 0 {
		uacOpts.Pause = -1
	}
	st.UACs = uacCount(cfg.Rate, cfg.UACRate)
	profDone := make(chan struct{})
	if pp, ok := inst.(Profiler); ok && cfg.Profile > 0 && pp.PprofAddr() != "" {
		go func() {
			defer close(profDone)
			select {
			case <-time.After(cfg.Duration / 4):
			case <-ctx.Done():
				return
			}
			secs := fmt.Sprintf("seconds=%d", max(1, int(cfg.Profile.Seconds())))
			if err := FetchProfile(ctx, pp.PprofAddr(), "profile", secs, filepath.Join(cfg.Dir, "cpu.pprof")); err != nil {
				st.ProfileError = err.Error()
			}
			_ = FetchProfile(ctx, pp.PprofAddr(), "heap", "gc=1", filepath.Join(cfg.Dir, "heap.pprof"))
			_ = FetchProfile(ctx, pp.PprofAddr(), "goroutine", "debug=1", filepath.Join(cfg.Dir, "goroutines.txt"))
		}()
	} else {
		close(profDone)
	}
	runs := runClients(ctx, uacOpts, st.UACs)
	<-profDone
	proxyUse, _ := proxyMon.Stop()

	sum := sumClients(runs, cfg.KeepTraces)
	st.UAC, st.RTT, st.AchievedRate = sum.UAC, sum.RTT, sum.AchievedRate
	st.PeakLiveCalls, st.WallS = sum.PeakLive, sum.WallS

	if uas != nil {
		var uasUse Usage
		if uasMon != nil {
			uasUse, _ = uasMon.Stop()
		}
		ures, uerr := uas.Stop()
		c := countsOf(ures, uerr)
		c.CPUPercent = uasUse.CPUPercent
		st.UAS = &c
	}

	exit, _ := inst.Stop(ctx)
	st.Proxy = exit
	st.ProxyCPUPercent = proxyUse.CPUPercent
	st.ProxyCPUSeconds = proxyUse.CPU.Seconds()
	st.ProxyPeakRSS = proxyUse.PeakRSS
	st.ProxyPeakPSS = proxyUse.PeakPSS
	if proxyUse.Procs > 1 {
		st.ProxyProcs = proxyUse.Procs
	}
	if sh, ok := inst.(ShaperReporter); ok {
		st.Shaper = sh.ShaperStats()
	}
	st.ProxyEndRSS = proxyUse.LastRSS
	st.ProxyThreads = proxyUse.Threads

	st.Created = st.UAC.Created
	st.Successful = st.UAC.Successful
	st.Failed = st.UAC.Failed
	st.Unfinished = st.UAC.Unfinished + max(0, int64(calls)-st.UAC.Created)
	st.Retransmissions = st.UAC.Retransmissions
	if st.UAS != nil {
		st.Failed += st.UAS.Failed
		st.Unfinished += st.UAS.Unfinished
		st.Retransmissions += st.UAS.Retransmissions
	}
	st.judge()
	return st, ctx.Err()
}

// judge sets RateMet, Clean and Problems.
func (st *Step) judge() {
	var p []string
	if st.Failed > 0 {
		p = append(p, fmt.Sprintf("%d failed", st.Failed))
	}
	if st.Unfinished > 0 {
		p = append(p, fmt.Sprintf("%d unfinished", st.Unfinished))
	}
	if st.Successful != int64(st.Calls) {
		p = append(p, fmt.Sprintf("%d of %d calls successful", st.Successful, st.Calls))
	}
	st.RateMet = st.AchievedRate >= MinCleanRate*st.Rate
	if !st.RateMet {
		p = append(p, fmt.Sprintf("achieved %.0f/s < %.0f%% of %.0f/s", st.AchievedRate, MinCleanRate*100, st.Rate))
	}
	if st.UAC.Err != "" {
		p = append(p, "uac: "+st.UAC.Err)
	}
	if st.UAS != nil && st.UAS.Failed > 0 {
		p = append(p, fmt.Sprintf("uas: %d failed", st.UAS.Failed))
	}
	if st.Proxy.Code != 0 || st.Proxy.Killed {
		p = append(p, fmt.Sprintf("proxy exit %d (killed=%v)", st.Proxy.Code, st.Proxy.Killed))
	}
	st.Problems = p
	st.Clean = len(p) == 0
}

type clientRun struct {
	res   *sipptest.Result
	dir   string
	usage Usage
	err   error
}

// clientSum is what the runs of one phase's SIPp clients add up to.
type clientSum struct {
	UAC          SippCounts
	RTT          Latency
	AchievedRate float64 // calls created per second, over all clients
	PeakLive     int64   // sum of each client's peak of live calls
	WallS        float64 // the longest client run
}

// sumClients adds up the runs of one phase's clients. A client's achieved
// rate is its calls over their creation span in stats.csv, else SIPp's own
// rate. Response-time traces are deleted unless keepTraces.
func sumClients(runs []clientRun, keepTraces bool) clientSum {
	var sum clientSum
	var samples []time.Duration
	for i, r := range runs {
		c := countsOf(r.res, r.err)
		c.CPUPercent = r.usage.CPUPercent
		if i == 0 {
			sum.UAC = c
		} else {
			sum.UAC.add(c)
		}
		if r.res != nil {
			sum.WallS = max(sum.WallS, r.res.Duration.Seconds())
			samples = append(samples, r.res.ResponseTimes...)
		}
		rate := 0.0
		if rows, err := readStatsRows(filepath.Join(r.dir, "stats.csv")); err == nil {
			if n, span, ok := creationSpan(rows); ok && span > 0 {
				rate = float64(n) / span.Seconds()
			}
			sum.PeakLive += peakCurrent(rows)
		}
		if rate == 0 && r.res != nil {
			rate = r.res.CallRate
		}
		sum.AchievedRate += rate
		if !keepTraces && r.dir != "" {
			files, _ := filepath.Glob(filepath.Join(r.dir, "*_rtt.csv"))
			for _, f := range files {
				_ = os.Remove(f)
			}
		}
	}
	sum.RTT = latencyOf(samples)
	return sum
}

// runClients runs n SIPp clients at once, each with 1/n of the rate and
// the calls (each picks its own port).
func runClients(ctx context.Context, o sipptest.Options, n int) []clientRun {
	out := make([]clientRun, n)
	var wg sync.WaitGroup
	for i := range n {
		oi := o
		oi.Rate = o.Rate / float64(n)
		oi.MaxCalls = o.MaxCalls / n
		if i == 0 {
			oi.MaxCalls += o.MaxCalls % n
		}
		oi.CallLimit = max(100, o.CallLimit/n)
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := &out[i]
			r.res, r.dir, r.usage, r.err = runClient(ctx, oi)
		}()
	}
	wg.Wait()
	return out
}

// add sums another process's counts into c (CPU too; the first error
// stays).
func (c *SippCounts) add(o SippCounts) {
	c.Created += o.Created
	c.Successful += o.Successful
	c.Failed += o.Failed
	c.Unfinished += o.Unfinished
	c.Retransmissions += o.Retransmissions
	for k, v := range o.FailureCounters {
		if c.FailureCounters == nil {
			c.FailureCounters = map[string]int64{}
		}
		c.FailureCounters[k] += v
	}
	if c.ExitCode == 0 {
		c.ExitCode = o.ExitCode
	}
	c.TimedOut = c.TimedOut || o.TimedOut
	if c.Err == "" {
		c.Err = o.Err
	}
	c.CPUPercent += o.CPUPercent
}

// runClient starts a SIPp client, watches its CPU, and waits for it. It
// starts it again (up to twice) if SIPp lost its port to another process.
func runClient(ctx context.Context, o sipptest.Options) (*sipptest.Result, string, Usage, error) {
	for attempt := 1; ; attempt++ {
		p, err := sipptest.Start(ctx, o)
		if err != nil {
			return nil, "", Usage{}, err
		}
		var mon *Monitor
		if pid := pidByCwd(p.Dir()); pid > 0 {
			mon = StartMonitor(pid, 200*time.Millisecond)
		}
		res, err := p.Wait()
		var use Usage
		if mon != nil {
			use, _ = mon.Stop()
		}
		if errors.Is(err, sipptest.ErrBind) && attempt < 3 && ctx.Err() == nil {
			continue
		}
		return res, p.Dir(), use, err
	}
}

// loadAvg1 is the 1-minute load average, or 0 if unknown.
func loadAvg1() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}
