package sipbench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Sipasync is the target for this repository's programs: cmd/sipasync and
// the examples, built with the go tool (or taken from BinDir).
type Sipasync struct {
	Repo      string
	BinDir    string
	ExtraArgs []string
	// Env is added to the programs' environment (KEY=VALUE), e.g.
	// GODEBUG settings.
	Env []string
	// Build: build the programs into BinDir in Prepare.
	Build bool
	// StopTimeout bounds the wait after SIGTERM before SIGKILL (default
	// 30 s; the proxy's own --shutdown-timeout is 10 s).
	StopTimeout time.Duration
	// Pprof builds the programs with a net/http/pprof endpoint (an overlay
	// file; the repository's programs have none) and serves it on a free
	// loopback port.
	Pprof bool
}

// program is the package and the role-specific flags for a spec.
func (s *Sipasync) program(spec ProxySpec) (name string, args []string, err error) {
	sc := spec.Scenario
	ms := func() []string {
		if sc.MsTimer > 0 {
			return []string{"--async-ms-timer", strconv.Itoa(sc.MsTimer)}
		}
		return nil
	}
	switch sc.Role {
	case RolePark404:
		return "resume404", append([]string{"--delay", spec.ParkTime().String()}, ms()...), nil
	case RoleRelay:
		return "sipasync", nil, nil
	case RoleParkRelay:
		return "asyncrelay", append([]string{"--delay", spec.ParkTime().String()}, ms()...), nil
	case RoleShape:
		rate := spec.Rate * sc.ShapeRatio
		if rate <= 0 {
			rate = 250
		}
		return "shaper", append([]string{"--shape-rate", strconv.FormatFloat(rate, 'f', -1, 64),
			"--shape-key", "from-domain", "--report", shaperReport.String()}, ms()...), nil
	}
	return "", nil, fmt.Errorf("sipasync target: role %s: %w", sc.Role, ErrNotImplemented)
}

var sipasyncPackages = map[string]string{
	"resume404":  "./examples/resume404",
	"sipasync":   "./cmd/sipasync",
	"asyncrelay": "./examples/asyncrelay",
	"shaper":     "./examples/shaper",
}

// shaperReport is the shaper's --report interval: its cumulative lateness
// line is read after the last call (Stop waits for one more report).
const shaperReport = time.Second

func (s *Sipasync) Name() string { return "sipasync" }

func (s *Sipasync) Supports(role Role) error {
	_, _, err := s.program(ProxySpec{Scenario: Scenario{Role: role}})
	return err
}

// Prepare builds the programs the scenarios need (when Build is set) and
// checks they are there.
func (s *Sipasync) Prepare(ctx context.Context, scs []Scenario) error {
	need := map[string]bool{}
	for _, sc := range scs {
		name, _, err := s.program(ProxySpec{Scenario: sc})
		if err != nil {
			return err
		}
		need[name] = true
	}
	for name := range need {
		bin := filepath.Join(s.BinDir, name)
		if s.Build {
			if err := os.MkdirAll(s.BinDir, 0o755); err != nil {
				return err
			}
			args := []string{"build", "-o", bin}
			cleanup := func() {}
			if s.Pprof {
				ov, done, err := PprofOverlay(filepath.Join(s.Repo, sipasyncPackages[name]))
				if err != nil {
					return err
				}
				args, cleanup = append(args, "-overlay", ov), done
			}
			cmd := exec.CommandContext(ctx, "go", append(args, sipasyncPackages[name])...)
			cmd.Dir = s.Repo
			out, err := cmd.CombinedOutput()
			cleanup()
			if err != nil {
				return fmt.Errorf("go build %s: %v\n%s", sipasyncPackages[name], err, out)
			}
		}
		if _, err := os.Stat(bin); err != nil {
			return fmt.Errorf("sipasync target: %w", err)
		}
	}
	return nil
}

// Start runs the program for spec with its log in spec.Dir/proxy.log and
// waits for its "sipasync started" line.
func (s *Sipasync) Start(ctx context.Context, spec ProxySpec) (Instance, error) {
	name, args, err := s.program(spec)
	if err != nil {
		return nil, err
	}
	// info: the final "stopped" line carries the counters; nothing is
	// logged per request at this level.
	args = append([]string{"--listen", "udp:" + spec.Addr, "--log-level", "info"}, args...)
	args = append(args, s.ExtraArgs...)
	if err := os.MkdirAll(spec.Dir, 0o755); err != nil {
		return nil, err
	}
	logPath := filepath.Join(spec.Dir, "proxy.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command(filepath.Join(s.BinDir, name), args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(append(os.Environ(), "GOTRACEBACK=all"), s.Env...)
	if spec.GCTrace {
		cmd.Env = append(cmd.Env, "GODEBUG=gctrace=1")
	}
	pprofAddr := ""
	if s.Pprof {
		port, err := freeTCPPort()
		if err != nil {
			return nil, err
		}
		pprofAddr = fmt.Sprintf("127.0.0.1:%d", port)
		cmd.Env = append(cmd.Env, PprofAddrEnv+"="+pprofAddr)
	}
	// If the runner dies, so does the proxy.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	inst := &sipasyncInstance{
		shaper: name == "shaper", pprof: pprofAddr,
		cmd: cmd, addr: spec.Addr, logPath: logPath, started: time.Now(),
		command: append(append(slices.Clone(s.Env), name), args...), done: make(chan struct{}),
		stopTimeout: s.StopTimeout,
	}
	if inst.stopTimeout <= 0 {
		inst.stopTimeout = 30 * time.Second
	}
	go func() {
		inst.waitErr = cmd.Wait()
		close(inst.done)
	}()
	switch err := WaitReady(ctx, inst.done, 15*time.Second, 20*time.Millisecond, Logged(logPath, "sipasync started")); {
	case errors.Is(err, ErrExited):
		return nil, fmt.Errorf("%s %w (%v):\n%s", name, err, inst.waitErr, TailFile(logPath, 2048))
	case err != nil:
		_, _ = inst.Stop(context.Background())
		return nil, fmt.Errorf("%s: %w:\n%s", name, err, TailFile(logPath, 2048))
	}
	return inst, nil
}

type sipasyncInstance struct {
	shaper      bool
	pprof       string
	cmd         *exec.Cmd
	addr        string
	logPath     string
	command     []string
	started     time.Time
	stopTimeout time.Duration

	done    chan struct{}
	waitErr error

	once sync.Once
	exit Exit
}

func (p *sipasyncInstance) PID() int          { return p.cmd.Process.Pid }
func (p *sipasyncInstance) PprofAddr() string { return p.pprof }
func (p *sipasyncInstance) Addr() string      { return p.addr }
func (p *sipasyncInstance) Command() []string { return p.command }

// Stop sends SIGTERM, waits up to the stop timeout, then kills.
func (p *sipasyncInstance) Stop(ctx context.Context) (Exit, error) {
	p.once.Do(func() {
		select {
		case <-p.done:
		default:
			if p.shaper {
				// One more lateness report covers the last calls.
				time.Sleep(shaperReport * 3 / 2)
			}
			p.exit.Killed = terminate(ctx, p.cmd, p.done, p.stopTimeout)
		}
		p.exit.Code = p.cmd.ProcessState.ExitCode()
		log, _ := os.ReadFile(p.logPath)
		p.exit.Counters, p.exit.Warnings, p.exit.Sample = parseSipasyncLog(log)
	})
	return p.exit, nil
}

// ShaperReporter is implemented by instances that report how exactly
// delays were kept (the shaper, S5).
type ShaperReporter interface {
	ShaperStats() *ShaperStats
}

// ShaperStats is the shaper's cumulative "shaper lateness total" line:
// actual minus intended delay of every delayed request.
type ShaperStats struct {
	Delayed int64   `json:"delayed"`
	Early   int64   `json:"early"`
	P50     float64 `json:"p50_ms"`
	P99     float64 `json:"p99_ms"`
	Max     float64 `json:"max_ms"`
	// Intended is the intended delay's p50/p99/max (ms).
	IntendedP50 float64 `json:"intended_p50_ms"`
	IntendedP99 float64 `json:"intended_p99_ms"`
	IntendedMax float64 `json:"intended_max_ms"`
	Rejected    int64   `json:"rejected_503"`
}

// ShaperStats reads the last cumulative lateness line of the log (nil when
// this is not the shaper or it logged none).
func (p *sipasyncInstance) ShaperStats() *ShaperStats {
	if !p.shaper {
		return nil
	}
	log, _ := os.ReadFile(p.logPath)
	return parseShaperLog(log)
}

func parseShaperLog(log []byte) *ShaperStats {
	var last string
	sc := bufio.NewScanner(bytes.NewReader(log))
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		if l := sc.Text(); strings.Contains(l, `msg="shaper lateness total"`) {
			last = l
		}
	}
	if last == "" {
		return nil
	}
	st := &ShaperStats{}
	us := func(v string) float64 { n, _ := strconv.ParseFloat(v, 64); return n / 1000 }
	for _, f := range strings.Fields(last) {
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			continue
		}
		switch k {
		case "n":
			st.Delayed, _ = strconv.ParseInt(v, 10, 64)
		case "early":
			st.Early, _ = strconv.ParseInt(v, 10, 64)
		case "rejected":
			st.Rejected, _ = strconv.ParseInt(v, 10, 64)
		case "p50_us":
			st.P50 = us(v)
		case "p99_us":
			st.P99 = us(v)
		case "max_us":
			st.Max = us(v)
		case "intended_p50_us":
			st.IntendedP50 = us(v)
		case "intended_p99_us":
			st.IntendedP99 = us(v)
		case "intended_max_us":
			st.IntendedMax = us(v)
		}
	}
	return st
}

// DumpGoroutines sends SIGQUIT (the Go runtime prints every goroutine's
// stack and exits) and counts the goroutines in the dump.
func (p *sipasyncInstance) DumpGoroutines(ctx context.Context) (int, error) {
	select {
	case <-p.done:
		return 0, fmt.Errorf("the proxy has already exited")
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGQUIT)
	t := time.NewTimer(30 * time.Second)
	defer t.Stop()
	select {
	case <-p.done:
	case <-t.C:
		_, _ = p.Stop(ctx)
		return 0, fmt.Errorf("no exit 30s after SIGQUIT")
	case <-ctx.Done():
		_, _ = p.Stop(context.Background())
		return 0, ctx.Err()
	}
	_, _ = p.Stop(ctx)
	log, err := os.ReadFile(p.logPath)
	if err != nil {
		return 0, err
	}
	n := countGoroutines(log)
	if n == 0 {
		return 0, fmt.Errorf("no goroutine dump in the log")
	}
	return n, nil
}

// GCTrace returns the garbage collections logged so far (GODEBUG=gctrace=1),
// with their wall-clock time.
func (p *sipasyncInstance) GCTrace() []GCCycle {
	log, _ := os.ReadFile(p.logPath)
	cycles := parseGCTrace(log)
	for i := range cycles {
		cycles[i].Wall = p.started.Add(cycles[i].SinceStart)
	}
	return cycles
}

// countGoroutines counts "goroutine N [state]:" headers in a Go stack dump.
func countGoroutines(log []byte) int {
	n := 0
	sc := bufio.NewScanner(bytes.NewReader(log))
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		l := sc.Text()
		if strings.HasPrefix(l, "goroutine ") && strings.HasSuffix(l, "]:") {
			n++
		}
	}
	return n
}

// parseSipasyncLog reads the counters of the final "msg=stopped" line and
// counts WARN/ERROR lines (keeping the first few).
func parseSipasyncLog(log []byte) (counters map[string]int64, warnings int, sample []string) {
	sc := bufio.NewScanner(bytes.NewReader(log))
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		l := sc.Text()
		if strings.Contains(l, "level=WARN") || strings.Contains(l, "level=ERROR") {
			warnings++
			if len(sample) < 5 {
				sample = append(sample, truncate(l, 400))
			}
		}
		if !strings.Contains(l, "msg=stopped ") {
			continue
		}
		counters = map[string]int64{}
		for _, f := range strings.Fields(l) {
			k, v, ok := strings.Cut(f, "=")
			if !ok {
				continue
			}
			if n, err := strconv.ParseInt(v, 10, 64); err == nil {
				counters[k] = n
			}
		}
	}
	return counters, warnings, sample
}

// GCCycle is one line of GODEBUG=gctrace=1 output.
type GCCycle struct {
	N          int           `json:"n"`
	SinceStart time.Duration `json:"-"`
	Wall       time.Time     `json:"wall"`
	HeapStart  int64         `json:"heap_start_bytes"` // heap size when the cycle started
	HeapLive   int64         `json:"heap_live_bytes"`  // live heap marked by the cycle
	Goal       int64         `json:"heap_goal_bytes"`
}

// parseGCTrace parses lines like
//
//	gc 12 @3.456s 2%: 0.01+1.2+0.02 ms clock, ..., 45->46->30 MB, 60 MB goal, 0 MB stacks, 0 MB globals, 2 P
func parseGCTrace(log []byte) []GCCycle {
	var out []GCCycle
	sc := bufio.NewScanner(bytes.NewReader(log))
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		l := sc.Text()
		if !strings.HasPrefix(l, "gc ") {
			continue
		}
		f := strings.Fields(l)
		if len(f) < 3 || !strings.HasPrefix(f[2], "@") {
			continue
		}
		var c GCCycle
		c.N, _ = strconv.Atoi(f[1])
		c.SinceStart, _ = time.ParseDuration(strings.TrimPrefix(f[2], "@"))
		for i, w := range f {
			if strings.Count(w, "->") == 2 && i+1 < len(f) {
				unit := unitBytes(strings.TrimSuffix(f[i+1], ","))
				p := strings.Split(w, "->")
				c.HeapStart = int64(atof(p[0]) * unit)
				c.HeapLive = int64(atof(p[2]) * unit)
			}
			if strings.TrimSuffix(w, ",") == "goal" && i >= 2 {
				c.Goal = int64(atof(f[i-2]) * unitBytes(f[i-1]))
			}
		}
		out = append(out, c)
	}
	return out
}

func unitBytes(u string) float64 {
	switch u {
	case "MB":
		return 1 << 20
	case "KB", "kB":
		return 1 << 10
	case "GB":
		return 1 << 30
	}
	return 1
}

func atof(s string) float64 {
	v, _ := strconv.ParseFloat(s, 64)
	return v
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// terminate sends cmd SIGTERM and waits for done (closed when it exited)
// up to timeout or ctx's end; then it kills it and waits. It reports
// whether it had to kill.
func terminate(ctx context.Context, cmd *exec.Cmd, done <-chan struct{}, timeout time.Duration) bool {
	_ = cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-done:
		return false
	case <-t.C:
	case <-ctx.Done():
	}
	_ = cmd.Process.Kill()
	<-done
	return true
}
