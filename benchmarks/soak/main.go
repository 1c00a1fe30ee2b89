// Command soak runs two sipasync nodes under a steady mixed SIPp load for a
// long time and judges whether their goroutines, heap and RSS stay flat
// (see benchmarks/README.md, "Soak"):
//
//	go run ./benchmarks/soak --duration 30m --results benchmarks/RESULTS.md
//
// The nodes (soakproxy, in this directory) share device state over NATS
// JetStream and ship events to RabbitMQ; the runner consumes and counts
// them. Every --interval it samples each node's /metrics and prints one
// line; at the end it fits a line to each series after the warm-up and
// calls a rise beyond the documented limit a leak. It exits 1 when a series
// trends, a call failed, an event was lost or a loss counter moved; 2 on a
// usage error; 130 when interrupted.
//
// Re-render a saved report without running anything:
//
//	go run ./benchmarks/soak --from-json benchmarks/out/soak-STAMP/report.json --results benchmarks/RESULTS.md
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/sipasync/sipasync/benchmarks/sipbench"
	"github.com/spf13/pflag"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// options are the command's flags.
type options struct {
	duration time.Duration
	interval time.Duration
	warmup   time.Duration
	out      string
	results  string
	fromJSON string
	repo     string
	bin      string
	rev      string
	pprof    bool
	natsURL  string
	amqpURL  string
	maxTime  time.Duration
	limits   Limits
	rates    Rates
	padUsers int
	notes    []string
}

// Rates are the offered loads per node, in calls (or requests) per second.
type Rates struct {
	Calls    float64 `json:"calls"`
	Cancel   float64 `json:"cancel"`
	Hold     float64 `json:"hold"`
	Message  float64 `json:"message"`
	Register float64 `json:"register"`
}

func (r Rates) total() float64 { return r.Calls + r.Cancel + r.Hold + r.Message + r.Register }

func (r Rates) String() string {
	return fmt.Sprintf("calls %g, cancel %g, hold %g, message %g, register %g", r.Calls, r.Cancel, r.Hold, r.Message, r.Register)
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := pflag.NewFlagSet("soak", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var o options
	fs.DurationVar(&o.duration, "duration", 30*time.Minute, "how long the load runs")
	fs.DurationVar(&o.interval, "interval", 10*time.Second, "time between samples of each node")
	fs.DurationVar(&o.warmup, "warmup", 0, "samples before this are not judged (default: 20% of --duration, at most 5m)")
	fs.StringVar(&o.out, "out", "", "directory for the report, samples, logs and SIPp files (default benchmarks/out/soak-STAMP)")
	fs.StringVar(&o.results, "results", "", "markdown file to write the Soak section into (e.g. benchmarks/RESULTS.md)")
	fs.StringVar(&o.fromJSON, "from-json", "", "render this saved report.json (into --results, else to stdout) instead of running")
	fs.StringVar(&o.repo, "repo", "", "repository root (default: found from the working directory)")
	fs.StringVar(&o.bin, "bin", "", "a prebuilt soakproxy binary (default: go build it into --out)")
	fs.StringVar(&o.rev, "rev", "", "build soakproxy from a clean export of this git revision (e.g. HEAD) instead of the working tree, which may hold others' unfinished edits")
	fs.BoolVar(&o.pprof, "pprof", true, "build soakproxy with a pprof endpoint (a build overlay) and save heap profiles and goroutine dumps after the warm-up and at the end")
	fs.StringVar(&o.natsURL, "nats", "nats://127.0.0.1:4222", "NATS server with JetStream for the nodes' device state")
	fs.StringVar(&o.amqpURL, "amqp", "amqp://guest:guest@127.0.0.1:5672/", "RabbitMQ broker the nodes ship events to")
	fs.DurationVar(&o.maxTime, "max-time", 0, "bound on the whole run (default --duration + 10m)")
	fs.Float64Var(&o.limits.MemFrac, "mem-limit", DefaultLimits.MemFrac, "heap and RSS trend when the fitted line rises by more than this fraction of the mean after the warm-up")
	fs.Float64Var(&o.limits.Goroutines, "goroutine-limit", DefaultLimits.Goroutines, "goroutines trend when the fitted line rises by more than this many (or by --mem-limit of the mean, if larger)")
	fs.Float64Var(&o.rates.Calls, "call-rate", 40, "per node: calls/s through the park kinds (soak_uac_call.xml, one kind after the other)")
	fs.Float64Var(&o.rates.Cancel, "cancel-rate", 10, "per node: calls/s relayed to a ringing UAS and CANCELed (uac_cancel.xml)")
	fs.Float64Var(&o.rates.Hold, "hold-rate", 5, "per node: calls/s CANCELed while parked (uac_cancel_parked.xml)")
	fs.Float64Var(&o.rates.Message, "message-rate", 20, "per node: MESSAGEs/s, each raising E_SIP_MESSAGE (uac_message_200.xml)")
	fs.Float64Var(&o.rates.Register, "register-rate", 10, "per node: REGISTERs/s refreshing the users (register_inf.xml)")
	fs.IntVar(&o.padUsers, "pad-users", 1000, "per node: extra users registered with 60-90 s expiries (most expire before their refresh comes round)")
	fs.StringArrayVar(&o.notes, "note", nil, "a remark printed with the results (what was going on, what explains a failure); with --from-json, added to the saved report; repeatable")
	help := fs.BoolP("help", "h", false, "show this help")
	if err := fs.Parse(args); err != nil {
		fmt.Fprintf(stderr, "soak: %v (see --help)\n", err)
		return 2
	}
	if *help {
		fs.SetOutput(stderr)
		fmt.Fprintln(stderr, "Usage: soak [--duration 30m] [--interval 10s] [--out DIR] [--results benchmarks/RESULTS.md] [flags]")
		fs.PrintDefaults()
		return 0
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "soak: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if o.fromJSON != "" {
		return render(o.fromJSON, o.results, o.notes, stdout, stderr)
	}
	if err := o.check(); err != nil {
		fmt.Fprintf(stderr, "soak: %v\n", err)
		return 2
	}
	repo, err := sipbench.RepoRoot(o.repo)
	if err != nil {
		fmt.Fprintf(stderr, "soak: %v\n", err)
		return 2
	}
	stamp := time.Now().UTC().Format("20060102-150405")
	if o.out == "" {
		o.out = filepath.Join(repo, "benchmarks", "out", "soak-"+stamp)
	}
	if o.out, err = filepath.Abs(o.out); err != nil {
		fmt.Fprintf(stderr, "soak: --out: %v\n", err)
		return 2
	}
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		fmt.Fprintf(stderr, "soak: %v\n", err)
		return 2
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, o.maxTime)
	defer cancel()

	s := &soak{o: o, repo: repo, stamp: stamp, stdout: stdout, command: displayCommand(fs)}
	rep, err := s.run(ctx)
	if rep != nil {
		if werr := s.write(rep); werr != nil {
			fmt.Fprintf(stderr, "soak: %v\n", werr)
			if err == nil {
				err = werr
			}
		}
	}
	switch {
	case errors.Is(err, errInterrupted):
		fmt.Fprintf(stderr, "soak: interrupted; partial report in %s\n", o.out)
		return 130
	case err != nil:
		fmt.Fprintf(stderr, "soak: %v\n", err)
		return 1
	case !rep.Pass:
		fmt.Fprintf(stderr, "soak: FAIL: %s\n", strings.Join(rep.Problems, "; "))
		return 1
	}
	fmt.Fprintf(stdout, "soak: PASS (report in %s)\n", o.out)
	return 0
}

func (o *options) check() error {
	switch {
	case o.interval < time.Second:
		return fmt.Errorf("--interval %s: at least 1s", o.interval)
	case o.duration < 3*o.interval:
		return fmt.Errorf("--duration %s: at least three --interval (%s)", o.duration, 3*o.interval)
	case o.warmup < 0 || o.warmup >= o.duration:
		return fmt.Errorf("--warmup %s: from 0 to less than --duration", o.warmup)
	case o.limits.MemFrac <= 0 || o.limits.Goroutines <= 0:
		return errors.New("--mem-limit and --goroutine-limit must be positive")
	case o.bin != "" && o.rev != "":
		return errors.New("--bin and --rev exclude each other")
	case o.padUsers < 0:
		return fmt.Errorf("--pad-users %d: negative", o.padUsers)
	}
	for name, r := range map[string]float64{"call": o.rates.Calls, "cancel": o.rates.Cancel, "hold": o.rates.Hold,
		"message": o.rates.Message, "register": o.rates.Register} {
		if r < 0 || r > 2000 {
			return fmt.Errorf("--%s-rate %g: from 0 to 2000", name, r)
		}
	}
	if o.rates.Calls == 0 {
		return errors.New("--call-rate 0: the soak needs calls")
	}
	if o.warmup == 0 {
		o.warmup = min(o.duration/5, 5*time.Minute).Round(time.Second)
	}
	if o.maxTime == 0 {
		o.maxTime = o.duration + 10*time.Minute
	}
	return nil
}

// render writes a saved report's section into results, or prints it.
func render(path, results string, notes []string, stdout, stderr io.Writer) int {
	b, err := os.ReadFile(path)
	if err != nil {
		fmt.Fprintf(stderr, "soak: %v\n", err)
		return 1
	}
	var rep Report
	if err := json.Unmarshal(b, &rep); err != nil {
		fmt.Fprintf(stderr, "soak: %s: %v\n", path, err)
		return 1
	}
	rep.Notes = append(rep.Notes, notes...)
	rep.judge() // with this version's rule
	md := rep.Markdown()
	if results == "" {
		fmt.Fprint(stdout, md)
		return 0
	}
	if err := writeSection(results, md); err != nil {
		fmt.Fprintf(stderr, "soak: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "wrote the Soak section of %s\n", results)
	return 0
}

// write saves the report as JSON and markdown in the output directory and
// into --results when set.
func (s *soak) write(rep *Report) error {
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(s.o.out, "report.json"), b, 0o644); err != nil {
		return err
	}
	md := rep.Markdown()
	if err := os.WriteFile(filepath.Join(s.o.out, "report.md"), []byte(md), 0o644); err != nil {
		return err
	}
	if s.o.results != "" && !rep.Interrupted {
		if err := writeSection(s.o.results, md); err != nil {
			return err
		}
		fmt.Fprintf(s.stdout, "wrote the Soak section of %s\n", s.o.results)
	}
	return nil
}

// displayCommand is the command line as run, with only the flags given.
func displayCommand(fs *pflag.FlagSet) string {
	parts := []string{"go run ./benchmarks/soak"}
	fs.Visit(func(f *pflag.Flag) {
		if f.Name == "out" || f.Name == "repo" || f.Name == "bin" || f.Name == "note" {
			return // machine-specific paths
		}
		parts = append(parts, "--"+f.Name+" "+f.Value.String())
	})
	return strings.Join(parts, " ")
}
