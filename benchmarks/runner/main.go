// Command runner runs the SIPp benchmarks against a proxy under test and
// records the results (see benchmarks/README.md).
//
// A ladder: for each rate, a fresh proxy, a SIPp UAS registered with it
// (scenarios with a called party), and a SIPp UAC placing rate × duration
// calls; one line per step, a JSON report, optionally a table in
// benchmarks/RESULTS.md:
//
//	go run ./benchmarks/runner --scenario S1 --rates 2000,4000,8000 --duration 20s
//	go run ./benchmarks/runner --scenario S3 --start 1000 --step 1000 --max 8000 --duration 5s
//
// The memory per parked transaction:
//
//	go run ./benchmarks/runner --scenario mem --mem-calls 100000 --mem-rate 10000 --mem-park 20s
//
// Tables from earlier JSON reports, without running anything:
//
//	go run ./benchmarks/runner --from-json benchmarks/out/S3-sipasync-20260101-120000.json \
//	    --results benchmarks/RESULTS.md --section '## SIPp: plain relay (S3)'
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"github.com/sipasync/sipasync/benchmarks/sipbench"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

type options struct {
	scenario   string
	target     string
	rates      string
	start      float64
	step       float64
	max        float64
	duration   time.Duration
	out        string
	stopAfter  int
	results    string
	section    string
	fromJSON   []string
	keepTraces bool
	binDir     string
	proxyArgs  []string
	proxyEnv   []string
	maxTime    time.Duration
	repo       string
	list       bool

	memCalls   int
	memRate    float64
	memPark    time.Duration
	goroutines bool

	install bool
	uacRate float64
	withMem bool
	chart   string
	profile time.Duration
	quiet   float64
	quietW  time.Duration

	floodClean    string
	floodFactor   float64
	floodDuration time.Duration
	floodGap      time.Duration
	floodRecovery time.Duration
	floodRSS      int64
	floodBase     int
}

// Sections of the results file a suite run writes.
const (
	sectionSummary = "## SIPp: sipasync and Kamailio side by side"
	sectionSteps   = "## SIPp: every step"
	sectionMem     = "## Parked transactions"
)

func run(args []string, stdout, stderr io.Writer) int {
	fs := pflag.NewFlagSet("runner", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var o options
	fs.StringVar(&o.scenario, "scenario", "", "S1..S5, a comma-separated list of them, all, or mem (memory per parked transaction)")
	fs.StringVar(&o.target, "target", "sipasync", "proxy under test: sipasync, kamailio, or both (sipasync,kamailio)")
	fs.StringVar(&o.rates, "rates", "", "comma-separated calls/s, e.g. 1000,2000,4k")
	fs.Float64Var(&o.start, "start", 0, "first rate of a stepped ladder (with --step and --max)")
	fs.Float64Var(&o.step, "step", 0, "rate increment of a stepped ladder")
	fs.Float64Var(&o.max, "max", 0, "last rate of a stepped ladder")
	fs.DurationVar(&o.duration, "duration", sipbench.FullDuration, "length of each step (calls = rate × duration); the issue calls a rate clean after >= 20s")
	fs.StringVar(&o.out, "out", "", "directory for JSON reports and per-step files (default benchmarks/out in the repository)")
	fs.IntVar(&o.stopAfter, "stop-after", 2, "end the ladder after this many unclean steps in a row (0: run every rate)")
	fs.StringVar(&o.results, "results", "", "markdown file to write the table into (e.g. benchmarks/RESULTS.md)")
	fs.StringVar(&o.section, "section", "", "'## ...' heading of --results to write into (created at the end if missing)")
	fs.StringSliceVar(&o.fromJSON, "from-json", nil, "render these JSON reports into --results instead of running")
	fs.BoolVar(&o.keepTraces, "keep-traces", false, "keep SIPp's response-time trace files")
	fs.StringVar(&o.binDir, "bin-dir", "", "prebuilt proxy binaries (default: build them with go build)")
	fs.StringArrayVar(&o.proxyArgs, "proxy-arg", nil, "extra argument for the proxy, e.g. --proxy-arg=--async-module-workers=4; repeatable")
	fs.StringArrayVar(&o.proxyEnv, "proxy-env", nil, "sipasync: KEY=VALUE added to the proxy's environment, e.g. --proxy-env GODEBUG=adaptivestackstart=1; repeatable")
	fs.DurationVar(&o.maxTime, "max-time", 2*time.Hour, "bound on the whole run")
	fs.StringVar(&o.repo, "repo", "", "repository root (default: found from the working directory)")
	fs.BoolVar(&o.list, "list", false, "list the scenarios and exit")
	fs.IntVar(&o.memCalls, "mem-calls", 100000, "mem: transactions parked at once")
	fs.Float64Var(&o.memRate, "mem-rate", 10000, "mem: calls/s while parking them")
	fs.DurationVar(&o.memPark, "mem-park", 20*time.Second, "mem: park time (longer than mem-calls/mem-rate + 2s)")
	fs.BoolVar(&o.goroutines, "goroutines", true, "mem: also count goroutines (SIGQUIT dumps of two extra proxy runs)")
	fs.BoolVar(&o.install, "install", true, "kamailio: install the Debian package when it is missing (as root, with apt-get)")
	fs.Float64Var(&o.uacRate, "uac-rate", sipbench.DefaultUACRate, "most calls/s per SIPp UAC process; above it the rate is split over several UACs")
	fs.BoolVar(&o.withMem, "with-mem", false, "suite: also measure the memory per parked transaction (sipasync)")
	fs.StringVar(&o.chart, "chart", "", "suite: SVG chart to write (default: sipp-chart.svg beside --results)")
	fs.DurationVar(&o.profile, "profile", 0, "sipasync: build the programs with a pprof endpoint and take a CPU profile this long in each step (cpu.pprof, heap.pprof, goroutines.txt in the step's directory)")
	fs.Float64Var(&o.quiet, "quiet", 0, "before each step wait until at most this many other tasks are runnable on average over 2 s (a shared machine); 0: do not wait")
	fs.DurationVar(&o.quietW, "quiet-wait", 3*time.Minute, "longest wait for --quiet before a step runs anyway")
	fs.StringVar(&o.floodClean, "flood-clean", "", "flood: the clean rates to flood, SCENARIO=RATE,... e.g. S1=12000,S2=2000 (S1 and S2)")
	fs.Float64Var(&o.floodFactor, "flood-factor", 3, "flood: offered rate as a multiple of the clean rate")
	fs.DurationVar(&o.floodDuration, "flood-duration", 30*time.Second, "flood: length of the flood")
	fs.DurationVar(&o.floodGap, "flood-gap", 5*time.Second, "flood: time from the flood's end to the recovery at the clean rate")
	fs.DurationVar(&o.floodRecovery, "flood-recovery", sipbench.FullDuration, "flood: length of the recovery at the clean rate")
	fs.Int64Var(&o.floodRSS, "flood-rss-bound", 1024, "flood: the proxy's RSS bound, MiB")
	fs.IntVar(&o.floodBase, "flood-baseline", 0, "flood: first confirm the clean rate with plain steps (a fresh proxy, no flood), stepping down the scenario's ladder while one is not clean, at most this many; 0: take --flood-clean as given")
	help := fs.BoolP("help", "h", false, "show this help")
	if err := fs.Parse(args); err != nil {
		fmt.Fprintf(stderr, "runner: %v (see --help)\n", err)
		return 2
	}
	if *help {
		fs.SetOutput(stderr)
		fmt.Fprintln(stderr, "Usage: runner --scenario S1..S5|all|mem [--target sipasync,kamailio] [--rates R,R,... | --start R --step R --max R] [flags]")
		fs.PrintDefaults()
		return 0
	}
	if o.list {
		for _, s := range sipbench.Scenarios() {
			note := ""
			if s.NotYet != "" {
				note = " (not yet)"
			}
			fmt.Fprintf(stdout, "%s  %s%s: %s\n", s.ID, s.Name, note, s.Description)
		}
		fmt.Fprintln(stdout, "mem  memory per parked transaction (resume404 with a long park)")
		return 0
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "runner: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	suite := isSuite(o)
	if !suite && len(o.fromJSON) == 0 && !strings.EqualFold(o.scenario, "flood") && (o.results == "") != (o.section == "") {
		fmt.Fprintln(stderr, "runner: --results and --section go together")
		return 2
	}
	if len(o.fromJSON) > 0 {
		if o.results == "" {
			fmt.Fprintln(stderr, "runner: --from-json needs --results (and --section, except for a suite report)")
			return 2
		}
		if err := render(o.fromJSON, o.results, o.section); err != nil {
			fmt.Fprintf(stderr, "runner: %v\n", err)
			return 1
		}
		fmt.Fprintf(stdout, "wrote %d report(s) into %q of %s\n", len(o.fromJSON), o.section, o.results)
		return 0
	}

	repo, err := sipbench.RepoRoot(o.repo)
	if err != nil {
		fmt.Fprintf(stderr, "runner: %v\n", err)
		return 2
	}
	if o.out == "" {
		o.out = filepath.Join(repo, "benchmarks", "out")
	}
	if o.scenario == "" {
		fmt.Fprintln(stderr, "runner: --scenario is required (see --list)")
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, o.maxTime)
	defer cancel()

	stamp := time.Now().UTC().Format("20060102-150405")
	command := displayCommand(fs)
	if suite {
		return runSuite(ctx, o, repo, stamp, command, stdout, stderr)
	}
	tgt, err := sipbench.NewTarget(o.target, sipbench.TargetOptions{Repo: repo, BinDir: o.binDir, ExtraArgs: o.proxyArgs, Env: o.proxyEnv, Install: o.install})
	if err != nil {
		fmt.Fprintf(stderr, "runner: %v\n", err)
		return 2
	}
	if s, ok := tgt.(*sipbench.Sipasync); ok {
		if s.BinDir == "" {
			s.BinDir = filepath.Join(o.out, "bin")
		}
		if o.profile > 0 {
			if o.binDir != "" {
				fmt.Fprintln(stderr, "runner: --profile builds the programs itself: drop --bin-dir")
				return 2
			}
			s.Pprof, s.BinDir = true, filepath.Join(o.out, "bin-pprof")
		}
	}

	var report any
	var runErr error
	var jsonPath string
	if strings.EqualFold(o.scenario, "flood") {
		return runFlood(ctx, o, tgt, repo, stamp, command, stdout, stderr)
	}
	if strings.EqualFold(o.scenario, "mem") {
		s1, _ := sipbench.LookupScenario("S1")
		if err := tgt.Prepare(ctx, []sipbench.Scenario{s1}); err != nil {
			fmt.Fprintf(stderr, "runner: %v\n", err)
			return 1
		}
		name := fmt.Sprintf("mem-%s-%s", tgt.Name(), stamp)
		jsonPath = filepath.Join(o.out, name+".json")
		r, err := sipbench.MeasureParked(ctx, sipbench.MemConfig{
			Target: tgt, Repo: repo, Calls: o.memCalls, Rate: o.memRate, Park: o.memPark,
			Dir: filepath.Join(o.out, name), Goroutines: o.goroutines, Progress: stdout, Command: command,
		})
		if r != nil {
			report = r
		}
		runErr = err
	} else {
		sc, err := sipbench.LookupScenario(o.scenario)
		if err != nil {
			fmt.Fprintf(stderr, "runner: %v\n", err)
			return 2
		}
		if sc.NotYet != "" {
			fmt.Fprintf(stderr, "runner: %s\n", sc.NotYet)
			return 2
		}
		if err := tgt.Supports(sc.Role); err != nil {
			fmt.Fprintf(stderr, "runner: %v\n", err)
			return 2
		}
		rates, err := ladderRates(o)
		if err != nil {
			fmt.Fprintf(stderr, "runner: %v\n", err)
			return 2
		}
		if err := tgt.Prepare(ctx, []sipbench.Scenario{sc}); err != nil {
			fmt.Fprintf(stderr, "runner: %v\n", err)
			return 1
		}
		name := fmt.Sprintf("%s-%s-%s", sc.ID, tgt.Name(), stamp)
		jsonPath = filepath.Join(o.out, name+".json")
		r, err := sipbench.RunLadder(ctx, sipbench.LadderConfig{
			Scenario: sc, Target: tgt, Repo: repo, Rates: rates, Duration: o.duration,
			Dir: filepath.Join(o.out, name), StopAfter: o.stopAfter, KeepTraces: o.keepTraces,
			UACRate: o.uacRate, Profile: o.profile, Progress: stdout, Command: command,
			Quiet: sipbench.Quiet{Max: o.quiet, Wait: o.quietW},
		})
		if r != nil {
			report = r
		}
		runErr = err
	}
	if report != nil {
		if err := sipbench.WriteJSON(jsonPath, report); err != nil {
			fmt.Fprintf(stderr, "runner: %v\n", err)
			return 1
		}
		fmt.Fprintf(stdout, "report: %s\n", jsonPath)
		if o.results != "" {
			id, body, err := sipbench.Markdown(report)
			if err == nil {
				err = sipbench.UpdateSection(o.results, o.section, id, body)
			}
			if err != nil {
				fmt.Fprintf(stderr, "runner: %v\n", err)
				return 1
			}
			fmt.Fprintf(stdout, "table: %q of %s\n", o.section, o.results)
		}
	}
	if runErr != nil {
		fmt.Fprintf(stderr, "runner: %v\n", runErr)
		return 1
	}
	return 0
}

// runFlood floods each scenario of --flood-clean in turn, writes one JSON
// report per scenario and, with --results, their blocks under
// --section (default "## Flood").
func runFlood(ctx context.Context, o options, tgt sipbench.Target, repo, stamp, command string, stdout, stderr io.Writer) int {
	if o.floodClean == "" {
		fmt.Fprintln(stderr, "runner: --scenario flood needs --flood-clean, e.g. S1=12000,S2=2000")
		return 2
	}
	type job struct {
		sc   sipbench.Scenario
		rate float64
	}
	var jobs []job
	for _, kv := range strings.Split(o.floodClean, ",") {
		id, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		rate, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if !ok || err != nil || rate <= 0 {
			fmt.Fprintf(stderr, "runner: --flood-clean %q: want SCENARIO=RATE with a rate > 0\n", kv)
			return 2
		}
		sc, err := sipbench.LookupScenario(strings.TrimSpace(id))
		if err != nil {
			fmt.Fprintf(stderr, "runner: --flood-clean: %v\n", err)
			return 2
		}
		jobs = append(jobs, job{sc, rate})
	}
	if o.floodFactor <= 0 || o.floodDuration <= 0 || o.floodGap < 0 || o.floodRecovery <= 0 || o.floodRSS <= 0 || o.floodBase < 0 {
		fmt.Fprintln(stderr, "runner: --flood-factor, --flood-duration, --flood-recovery and --flood-rss-bound must be > 0, --flood-gap and --flood-baseline >= 0")
		return 2
	}
	section := o.section
	if section == "" {
		section = "## Flood"
	}
	scs := make([]sipbench.Scenario, len(jobs))
	for i, j := range jobs {
		scs[i] = j.sc
	}
	if err := tgt.Prepare(ctx, scs); err != nil {
		fmt.Fprintf(stderr, "runner: %v\n", err)
		return 1
	}
	code := 0
	for _, j := range jobs {
		name := fmt.Sprintf("flood-%s-%s-%s", j.sc.ID, tgt.Name(), stamp)
		fmt.Fprintf(stdout, "[flood %s %s] %.0f calls/s for %s, then %.0f calls/s for %s from %s after\n", j.sc.ID, tgt.Name(),
			j.rate*o.floodFactor, o.floodDuration, j.rate, o.floodRecovery, o.floodGap)
		r, err := sipbench.RunFlood(ctx, sipbench.FloodConfig{
			Scenario: j.sc, Target: tgt, Repo: repo, CleanRate: j.rate, Factor: o.floodFactor,
			Duration: o.floodDuration, Gap: o.floodGap, Recovery: o.floodRecovery, RSSBound: o.floodRSS << 20,
			Dir: filepath.Join(o.out, name), UACRate: o.uacRate, Quiet: sipbench.Quiet{Max: o.quiet, Wait: o.quietW},
			Baselines: o.floodBase,
		}, command)
		if r == nil {
			fmt.Fprintf(stderr, "runner: flood %s: %v\n", j.sc.ID, err)
			return 1
		}
		jsonPath := filepath.Join(o.out, name+".json")
		if werr := sipbench.WriteJSON(jsonPath, r); werr != nil {
			fmt.Fprintf(stderr, "runner: %v\n", werr)
			return 1
		}
		verdict := "passed"
		if !r.Passed {
			verdict = "NOT passed: " + strings.Join(r.Problems, "; ")
			code = 1
		}
		for _, bl := range r.Baseline {
			fmt.Fprintf(stdout, "[flood %s %s] baseline %.0f calls/s: clean %v, failed %d, unfinished %d, p99 %.0f ms\n",
				j.sc.ID, tgt.Name(), bl.Rate, bl.Clean, bl.Failed, bl.Unfinished, bl.P99)
		}
		fmt.Fprintf(stdout, "[flood %s %s] flood: achieved %.0f/s answered %d failed %d | recovery: achieved %.0f/s ok %d failed %d unfinished %d p99 %.0f ms | peak RSS %.1f MiB | shed %d | %s\nreport: %s\n",
			j.sc.ID, tgt.Name(), r.Flood.AchievedRate, r.Flood.UAC.Successful, r.Flood.UAC.Failed, r.Recovery.AchievedRate,
			r.Recovery.UAC.Successful, r.Recovery.UAC.Failed, r.Recovery.Unfinished, r.Recovery.RTT.P99,
			float64(r.PeakRSS)/(1<<20), r.Proxy.Counters["shed"], verdict, jsonPath)
		if o.results != "" {
			if uerr := sipbench.UpdateSection(o.results, section, r.BlockID(), r.Markdown()); uerr != nil {
				fmt.Fprintf(stderr, "runner: %v\n", uerr)
				return 1
			}
		}
		if err != nil {
			fmt.Fprintf(stderr, "runner: flood %s: %v\n", j.sc.ID, err)
			return 1
		}
	}
	return code
}

// isSuite: more than one scenario or target.
func isSuite(o options) bool {
	return strings.EqualFold(o.scenario, "all") || strings.Contains(o.scenario, ",") || strings.Contains(o.target, ",")
}

// runSuite runs every scenario on every target and writes the suite's JSON,
// and with --results its sections and the chart.
func runSuite(ctx context.Context, o options, repo, stamp, command string, stdout, stderr io.Writer) int {
	var scs []sipbench.Scenario
	if strings.EqualFold(o.scenario, "all") {
		scs = sipbench.Scenarios()
	} else {
		for _, id := range strings.Split(o.scenario, ",") {
			sc, err := sipbench.LookupScenario(strings.TrimSpace(id))
			if err != nil {
				fmt.Fprintf(stderr, "runner: %v\n", err)
				return 2
			}
			scs = append(scs, sc)
		}
	}
	var tgts []sipbench.Target
	for _, name := range strings.Split(o.target, ",") {
		t, err := sipbench.NewTarget(strings.TrimSpace(name), sipbench.TargetOptions{Repo: repo, ExtraArgs: o.proxyArgs,
			Env: o.proxyEnv, BinDir: o.binDir, Install: o.install})
		if err != nil {
			fmt.Fprintf(stderr, "runner: %v\n", err)
			return 2
		}
		if s, ok := t.(*sipbench.Sipasync); ok {
			if s.BinDir == "" {
				s.BinDir = filepath.Join(o.out, "bin")
			}
			if o.profile > 0 {
				s.Pprof, s.BinDir, s.Build = true, filepath.Join(o.out, "bin-pprof"), true
			}
		}
		tgts = append(tgts, t)
	}
	var rates []float64
	if o.rates != "" || o.start != 0 || o.step != 0 || o.max != 0 {
		var err error
		if rates, err = ladderRates(o); err != nil {
			fmt.Fprintf(stderr, "runner: %v\n", err)
			return 2
		}
	}
	name := "suite-" + stamp
	cfg := sipbench.SuiteConfig{
		Scenarios: scs, Targets: tgts, Repo: repo, Rates: rates, Duration: o.duration,
		Dir: filepath.Join(o.out, name), StopAfter: o.stopAfter, KeepTraces: o.keepTraces,
		UACRate: o.uacRate, Profile: o.profile, Progress: stdout, Command: command,
		Quiet: sipbench.Quiet{Max: o.quiet, Wait: o.quietW},
	}
	if o.withMem {
		cfg.Mem = &sipbench.MemConfig{Calls: o.memCalls, Rate: o.memRate, Park: o.memPark, Goroutines: o.goroutines}
	}
	su, runErr := sipbench.RunSuite(ctx, cfg)
	jsonPath := filepath.Join(o.out, name+".json")
	if err := sipbench.WriteJSON(jsonPath, su); err != nil {
		fmt.Fprintf(stderr, "runner: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "report: %s\n", jsonPath)
	if o.results != "" {
		if err := writeSuite(su, o.results, o.chart); err != nil {
			fmt.Fprintf(stderr, "runner: %v\n", err)
			return 1
		}
		fmt.Fprintf(stdout, "results: %s\n", o.results)
	}
	for _, v := range su.Verdicts() {
		fmt.Fprintf(stdout, "goal %s: met=%v (%s)\n", v.Goal, v.Met, v.Result)
	}
	if runErr != nil {
		fmt.Fprintf(stderr, "runner: %v\n", runErr)
		return 1
	}
	return 0
}

// writeSuite writes the summary, every ladder and the parked memory into
// their sections of results, and the chart beside it.
func writeSuite(su *sipbench.Suite, results, chart string) error {
	if chart == "" {
		chart = filepath.Join(filepath.Dir(results), "sipp-chart.svg")
	}
	if err := os.WriteFile(chart, []byte(su.ChartSVG()), 0o644); err != nil {
		return err
	}
	rel, err := filepath.Rel(filepath.Dir(results), chart)
	if err != nil {
		rel = filepath.Base(chart)
	}
	if err := sipbench.UpdateSection(results, sectionSummary, "suite", su.SummaryMarkdown(filepath.ToSlash(rel))); err != nil {
		return err
	}
	for _, l := range su.Ladders {
		if err := sipbench.UpdateSection(results, sectionSteps, l.BlockID(), l.Markdown()); err != nil {
			return err
		}
	}
	if su.Mem != nil {
		if err := sipbench.UpdateSection(results, sectionMem, su.Mem.BlockID(), su.Mem.Markdown()); err != nil {
			return err
		}
	}
	return nil
}

func ladderRates(o options) ([]float64, error) {
	switch {
	case o.rates != "" && (o.start != 0 || o.step != 0 || o.max != 0):
		return nil, errors.New("use either --rates or --start/--step/--max")
	case o.rates != "":
		return sipbench.ParseRates(o.rates)
	case o.start != 0 || o.step != 0 || o.max != 0:
		return sipbench.StepRates(o.start, o.step, o.max)
	}
	return nil, errors.New("give --rates or --start/--step/--max")
}

func render(files []string, results, section string) error {
	for _, f := range files {
		rep, err := sipbench.LoadReport(f)
		if err != nil {
			return err
		}
		if su, ok := rep.(*sipbench.Suite); ok {
			if err := writeSuite(su, results, ""); err != nil {
				return err
			}
			continue
		}
		id, body, err := sipbench.Markdown(rep)
		if err != nil {
			return err
		}
		if err := sipbench.UpdateSection(results, section, id, body); err != nil {
			return err
		}
	}
	return nil
}

// displayCommand is the command line for reports: the flags that shape the
// measurement, without where files go.
func displayCommand(fs *pflag.FlagSet) string {
	skip := map[string]bool{"out": true, "results": true, "section": true, "bin-dir": true, "keep-traces": true,
		"repo": true, "max-time": true, "from-json": true, "chart": true, "install": true}
	order := []string{"scenario", "target", "rates", "start", "step", "max", "duration", "stop-after", "proxy-arg",
		"mem-calls", "mem-rate", "mem-park", "goroutines", "uac-rate", "with-mem", "quiet", "quiet-wait", "proxy-env"}
	var parts []string
	seen := map[string]bool{}
	add := func(f *pflag.Flag) {
		if seen[f.Name] || skip[f.Name] || !f.Changed {
			return
		}
		seen[f.Name] = true
		if sv, ok := f.Value.(pflag.SliceValue); ok && f.Value.Type() == "stringArray" {
			for _, v := range sv.GetSlice() {
				parts = append(parts, "--"+f.Name+"="+quote(v))
			}
			return
		}
		if f.Value.Type() == "bool" && f.Value.String() == "true" {
			parts = append(parts, "--"+f.Name)
			return
		}
		parts = append(parts, "--"+f.Name+" "+quote(f.Value.String()))
	}
	for _, name := range order {
		if f := fs.Lookup(name); f != nil {
			add(f)
		}
	}
	fs.VisitAll(add)
	return strings.TrimSpace("go run ./benchmarks/runner " + strings.Join(parts, " "))
}

func quote(s string) string {
	if s == "" || strings.ContainsAny(s, " \t'\"$;&|<>()*?") {
		return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
	}
	return s
}
