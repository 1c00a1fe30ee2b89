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
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Kamailio is the reference target: the kamailio binary (Debian package
// kamailio 5.6) run in the foreground (-DD -E) with the configs of
// benchmarks/kamailio/, one per role, the listening socket and the park
// given on the command line. It is a tree of processes (main, UDP
// receivers, timers, async workers): CPU and PSS are summed over the tree.
type Kamailio struct {
	Repo string
	// Binary is the kamailio executable (default: found in PATH).
	Binary string
	// Children is -n, the number of UDP receiver processes (default 4).
	Children int
	// AsyncWorkers is the async module's workers (default 2).
	AsyncWorkers int
	// ShmMB and PkgMB are -m and -M (defaults 1024 and 16).
	ShmMB, PkgMB int
	ExtraArgs    []string
	// Install runs apt-get install -y kamailio in Prepare when the binary
	// is missing.
	Install bool
	// StopTimeout bounds the wait after SIGTERM (default 15 s).
	StopTimeout time.Duration
}

func (k *Kamailio) Name() string { return "kamailio" }

// config returns the config file and the -A defines for a spec.
func (k *Kamailio) config(spec ProxySpec) (cfg string, defines []string, err error) {
	sc := spec.Scenario
	park := fmt.Sprintf(`PARK_MS="%d"`, spec.ParkTime().Milliseconds())
	workers := fmt.Sprintf("ASYNC_WORKERS=%d", k.asyncWorkers())
	switch sc.Role {
	case RolePark404:
		return "park404.cfg", []string{park, workers}, nil
	case RoleParkRelay:
		return "relay.cfg", []string{"WITH_PARK", park, workers}, nil
	case RoleRelay:
		return "relay.cfg", nil, nil
	}
	return "", nil, fmt.Errorf("kamailio target: role %s has no Kamailio config (%s is sipasync only): %w",
		sc.Role, sc.ID, ErrNotImplemented)
}

func (k *Kamailio) asyncWorkers() int {
	if k.AsyncWorkers > 0 {
		return k.AsyncWorkers
	}
	return 2
}

func (k *Kamailio) Supports(role Role) error {
	_, _, err := k.config(ProxySpec{Scenario: Scenario{Role: role}})
	return err
}

// ErrNoKamailio is returned by Prepare when kamailio is not installed and
// may not be installed.
var ErrNoKamailio = errors.New("kamailio is not installed (apt-get install kamailio, or run the runner with --install)")

// Prepare finds (or installs) kamailio and checks each config with
// kamailio -c.
func (k *Kamailio) Prepare(ctx context.Context, scs []Scenario) error {
	bin, err := k.binary()
	if err != nil && k.Install {
		if ierr := installKamailio(ctx); ierr != nil {
			return ierr
		}
		bin, err = k.binary()
	}
	if err != nil {
		return err
	}
	k.Binary = bin
	for _, sc := range scs {
		cfg, defines, err := k.config(ProxySpec{Scenario: sc})
		if err != nil {
			return err
		}
		args := []string{"-c", "-f", filepath.Join(k.Repo, "benchmarks", "kamailio", cfg)}
		for _, d := range defines {
			args = append(args, "-A", d)
		}
		out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("kamailio -c %s: %v\n%s", cfg, err, tail(out, 2048))
		}
	}
	return nil
}

func (k *Kamailio) binary() (string, error) {
	if k.Binary != "" {
		return k.Binary, nil
	}
	for _, p := range []string{"kamailio", "/usr/sbin/kamailio"} {
		if b, err := exec.LookPath(p); err == nil {
			return b, nil
		}
	}
	return "", ErrNoKamailio
}

// installKamailio installs the Debian package (as root only).
func installKamailio(ctx context.Context) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("%w; not root, so not installing it", ErrNoKamailio)
	}
	if _, err := exec.LookPath("apt-get"); err != nil {
		return fmt.Errorf("%w; no apt-get here", ErrNoKamailio)
	}
	cmd := exec.CommandContext(ctx, "apt-get", "install", "-y", "--no-install-recommends", "kamailio")
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	out, err := cmd.CombinedOutput()
	if err != nil {
		// The package lists may be missing: update once and retry.
		upd := exec.CommandContext(ctx, "apt-get", "update")
		if uout, uerr := upd.CombinedOutput(); uerr != nil {
			return fmt.Errorf("apt-get update: %v\n%s", uerr, tail(uout, 1024))
		}
		cmd = exec.CommandContext(ctx, "apt-get", "install", "-y", "--no-install-recommends", "kamailio")
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		if out, err = cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("apt-get install kamailio: %v\n%s", err, tail(out, 2048))
		}
	}
	return nil
}

// KamailioVersion is "5.6.3" or "" when kamailio is not installed.
func KamailioVersion() string {
	bin, err := (&Kamailio{}).binary()
	if err != nil {
		return ""
	}
	out, err := exec.Command(bin, "-v").Output()
	if err != nil {
		return ""
	}
	// version: kamailio 5.6.3 (x86_64/linux)
	for _, l := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "version: kamailio "); ok {
			return strings.Fields(v + " ")[0]
		}
	}
	return ""
}

// Start runs kamailio for spec, its log in spec.Dir/proxy.log and its
// runtime files in spec.Dir/run, and returns once its UDP socket is bound
// and its children are forked.
func (k *Kamailio) Start(ctx context.Context, spec ProxySpec) (Instance, error) {
	cfg, defines, err := k.config(spec)
	if err != nil {
		return nil, err
	}
	if k.Binary == "" {
		if k.Binary, err = k.binary(); err != nil {
			return nil, err
		}
	}
	children, shm, pkg := k.Children, k.ShmMB, k.PkgMB
	if children <= 0 {
		children = 4
	}
	if shm <= 0 {
		shm = 1024
	}
	if pkg <= 0 {
		pkg = 16
	}
	run := filepath.Join(spec.Dir, "run")
	if err := os.MkdirAll(run, 0o755); err != nil {
		return nil, err
	}
	args := []string{"-DD", "-E", "-f", filepath.Join(k.Repo, "benchmarks", "kamailio", cfg),
		"-l", "udp:" + spec.Addr, "-n", strconv.Itoa(children),
		"-m", strconv.Itoa(shm), "-M", strconv.Itoa(pkg), "-Y", run}
	for _, d := range defines {
		args = append(args, "-A", d)
	}
	args = append(args, k.ExtraArgs...)
	logPath := filepath.Join(spec.Dir, "proxy.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command(k.Binary, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// If the runner dies, so does kamailio's main process (which then ends
	// its children).
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	shown := append([]string{"kamailio"}, args...)
	for i, a := range shown {
		if filepath.IsAbs(a) {
			shown[i] = filepath.Base(a)
		}
		if a == run {
			shown[i] = "RUNDIR"
		}
	}
	inst := &kamailioInstance{cmd: cmd, addr: spec.Addr, logPath: logPath, command: shown,
		done: make(chan struct{}), stopTimeout: k.StopTimeout}
	if inst.stopTimeout <= 0 {
		inst.stopTimeout = 15 * time.Second
	}
	go func() {
		inst.waitErr = cmd.Wait()
		close(inst.done)
	}()
	_, portStr, _ := strings.Cut(spec.Addr, ":")
	port, _ := strconv.Atoi(portStr)
	// Bound, and every receiver plus the timer and async processes forked.
	ready := func() bool { return udpBound(port) && len(descendants(cmd.Process.Pid)) >= children+2 }
	switch err := WaitReady(ctx, inst.done, 15*time.Second, 20*time.Millisecond, ready); {
	case errors.Is(err, ErrExited):
		return nil, fmt.Errorf("kamailio %w (%v):\n%s", err, inst.waitErr, TailFile(logPath, 2048))
	case err != nil:
		_, _ = inst.Stop(context.Background())
		return nil, fmt.Errorf("kamailio: %w:\n%s", err, TailFile(logPath, 2048))
	}
	time.Sleep(300 * time.Millisecond)
	return inst, nil
}

// udpBound reports whether some socket is bound to 127.0.0.1:port (UDP).
func udpBound(port int) bool {
	b, err := os.ReadFile("/proc/net/udp")
	if err != nil {
		return false
	}
	want := fmt.Sprintf("0100007F:%04X", port)
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) > 1 && f[1] == want {
			return true
		}
	}
	return false
}

type kamailioInstance struct {
	cmd         *exec.Cmd
	addr        string
	logPath     string
	command     []string
	stopTimeout time.Duration

	done    chan struct{}
	waitErr error

	once sync.Once
	exit Exit
}

func (p *kamailioInstance) PID() int          { return p.cmd.Process.Pid }
func (p *kamailioInstance) Addr() string      { return p.addr }
func (p *kamailioInstance) Command() []string { return p.command }
func (p *kamailioInstance) Tree() bool        { return true }

// Stop sends SIGTERM to the main process (which ends its children), waits
// up to the stop timeout, then kills the tree.
func (p *kamailioInstance) Stop(ctx context.Context) (Exit, error) {
	p.once.Do(func() {
		kids := descendants(p.cmd.Process.Pid)
		select {
		case <-p.done:
		default:
			p.exit.Killed = terminate(ctx, p.cmd, p.done, p.stopTimeout)
		}
		// Children left behind (the main process was killed): end them,
		// checking that the PID is still a kamailio whose parent was ours
		// or, orphaned, init (not a reused PID).
		for _, c := range kids {
			b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", c))
			if err != nil {
				continue
			}
			comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", c))
			if pp, ok := parseStatPPID(b); ok && (pp == p.cmd.Process.Pid || pp == 1) &&
				strings.TrimSpace(string(comm)) == "kamailio" {
				_ = syscall.Kill(c, syscall.SIGKILL)
			}
		}
		p.exit.Code = p.cmd.ProcessState.ExitCode()
		log, _ := os.ReadFile(p.logPath)
		p.exit.Warnings, p.exit.Sample = parseKamailioLog(log)
	})
	return p.exit, nil
}

// parseKamailioLog counts ERROR/CRITICAL/WARNING lines (keeping the first
// few), skipping the shutdown chatter.
func parseKamailioLog(log []byte) (warnings int, sample []string) {
	sc := bufio.NewScanner(bytes.NewReader(log))
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		l := sc.Text()
		if !strings.Contains(l, " ERROR:") && !strings.Contains(l, " CRITICAL:") && !strings.Contains(l, " WARNING:") {
			continue
		}
		warnings++
		if len(sample) < 5 {
			sample = append(sample, truncate(l, 400))
		}
	}
	return warnings, sample
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
