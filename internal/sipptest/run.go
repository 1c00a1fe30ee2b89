package sipptest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Transport is a SIPp -t value.
type Transport string

// Transports. TLS needs a SIPp built with OpenSSL; Debian's is not (see
// VersionInfo.TLS), and Start refuses it early with ErrTLSUnsupported.
const (
	UDP Transport = "u1" // UDP, one socket
	TCP Transport = "t1" // TCP, one socket
	TLS Transport = "l1" // TLS, one socket
)

func (tr Transport) network() string {
	switch tr {
	case "t1", "tn", "l1", "ln":
		return "tcp"
	}
	return "udp"
}

// Defaults used when the matching Options field is zero.
const (
	DefaultPause         = 100 * time.Millisecond // -d: length of <pause/> without a duration
	DefaultClientTimeout = 60 * time.Second       // -timeout for a client run
	DefaultServerTimeout = 10 * time.Minute       // -timeout for a background server
	DefaultStopGrace     = 5 * time.Second        // SIGUSR1 → SIGKILL
	DefaultReadyTimeout  = 5 * time.Second        // how long Start waits for a server to bind
)

// Errors returned (wrapped) by Start, Run, Wait and Stop.
var (
	// ErrTimeout: SIPp's own -timeout fired before the run finished (a
	// client run with calls still pending).
	ErrTimeout = errors.New("sipptest: sipp reached its -timeout")
	// ErrBind: SIPp could not bind its SIP socket (exit status 254).
	ErrBind = errors.New("sipptest: sipp could not bind its socket")
	// ErrExit: SIPp exited with a status other than 0, 1, 97 or 99, was
	// killed, or ended before it was ready.
	ErrExit = errors.New("sipptest: sipp failed")
	// ErrTLSUnsupported: the installed SIPp was built without TLS.
	ErrTLSUnsupported = errors.New("sipptest: this sipp build has no TLS support")
)

// Options describe one SIPp process. Scenario is required; Target makes it
// a client (UAC) aimed at that host:port, an empty Target makes it a server
// (UAS) that waits for calls on LocalPort.
type Options struct {
	// Scenario is the path of the XML scenario (-sf), e.g.
	// Scenario("uac_call.xml").
	Scenario string
	// Target is the remote host:port for a client; empty for a server.
	Target string
	// LocalIP is the address SIPp binds and puts in Via/Contact/SDP (-i,
	// -mi, -ci, with -bind_local). Default 127.0.0.1.
	LocalIP string
	// LocalPort is the SIP port (-p). 0 means: pick a free one (and pick
	// again if another process takes it before SIPp binds it). SIPp's own
	// default would be 5060 when free.
	LocalPort int
	// Transport is -t; default UDP.
	Transport Transport
	// Service is -s, the Request-URI user ([service]) of client
	// scenarios. SIPp's default is "service".
	Service string
	// Rate is -r, calls per RatePeriod (SIPp's default is 10 per second).
	Rate float64
	// RatePeriod is -rp; default one second.
	RatePeriod time.Duration
	// MaxCalls is -m: SIPp exits after that many calls. Set it for
	// clients; a client without it runs until its Timeout and fails.
	MaxCalls int
	// CallLimit is -l, the maximum number of simultaneous calls.
	CallLimit int
	// Pause is -d, the length of <pause/> elements without an explicit
	// duration (uac_call.xml's pause between ACK and BYE). Zero means
	// DefaultPause; a negative value means no pause.
	Pause time.Duration
	// Keys are -key NAME VALUE pairs, used as [NAME] in scenarios
	// (e.g. {"code": "404"} or {"contact_port": "5070"}).
	Keys map[string]string
	// Vars are -set NAME VALUE pairs (global scenario variables).
	Vars map[string]string
	// InjectionFiles are -inf CSV files ([field0], [field1], ...). See
	// WriteInjectionFile.
	InjectionFiles []string
	// Timeout is SIPp's -timeout (whole seconds, rounded up). Clients also
	// get -timeout_error, so a run that does not finish in time fails with
	// ErrTimeout. Zero means: until shortly before the context's deadline
	// if it has one, else DefaultClientTimeout / DefaultServerTimeout. The
	// Go side kills SIPp if it is still running StopGrace after that.
	Timeout time.Duration
	// RecvTimeout is -recv_timeout: a call waiting longer than this for an
	// expected message fails (FailedTimeoutOnRecv). Zero: none.
	RecvTimeout time.Duration
	// TraceMsg adds -trace_msg; Result.MessageLog then holds the tail of
	// the message trace. Costly at high rates.
	TraceMsg bool
	// TraceRTT adds -trace_rtt -rtt_freq 1; Result.ResponseTimes then
	// holds every response-time sample (millisecond resolution).
	TraceRTT bool
	// ExtraArgs are appended to the command line as they are.
	ExtraArgs []string
	// Dir is where a per-process work directory is created (its files
	// are left there). Empty: a temporary directory, removed once the
	// Result is collected unless KeepDir is set.
	Dir     string
	KeepDir bool
	// StopGrace is how long Stop (or the end of the context) waits after
	// SIGUSR1 before killing SIPp. Default DefaultStopGrace.
	StopGrace time.Duration
	// ReadyTimeout bounds how long Start waits for a server to bind its
	// port. Default DefaultReadyTimeout.
	ReadyTimeout time.Duration
	// Binary overrides the sipp executable (default: Binary()).
	Binary string
}

func (o *Options) server() bool { return o.Target == "" }

// Names of the files SIPp writes in a process's work directory.
const (
	statsFile   = "stats.csv"
	errorsFile  = "errors.log"
	messageFile = "messages.log"
	stdoutFile  = "stdout.log"
	stderrFile  = "stderr.log"
)

// Process is a running SIPp. Wait for it to end by itself (client runs,
// servers with MaxCalls) or Stop it; both return the same Result.
type Process struct {
	opts      Options
	name      string // scenario base name, for messages
	args      []string
	dir       string
	removeDir bool
	port      int
	grace     time.Duration

	cmd     *exec.Cmd
	started time.Time

	done    chan struct{}
	ended   time.Time
	waitErr error
	ctxErr  error // the caller's context error when SIPp exited
	hardErr error // the hard-deadline context's error when SIPp exited

	stopping atomic.Bool
	once     sync.Once
	res      *Result
	resErr   error
}

// Start launches SIPp as described by opts and returns once it is running.
// Unless opts.LocalPort is set it picks a free port. For a server (empty
// Target) it then waits, polling the kernel's socket tables, until SIPp
// itself has bound that port (falling back to a short fixed wait where the
// tables cannot be read), and starts again on a new port if another
// process took it first. The process is stopped when ctx ends; callers
// must still Wait or Stop it.
func Start(ctx context.Context, opts Options) (*Process, error) {
	if opts.Scenario == "" {
		return nil, fmt.Errorf("%w: Options.Scenario is empty", ErrExit)
	}
	scen, err := filepath.Abs(opts.Scenario)
	if err != nil {
		return nil, fmt.Errorf("sipptest: scenario path: %w", err)
	}
	if _, err := os.Stat(scen); err != nil {
		return nil, fmt.Errorf("sipptest: scenario: %w", err)
	}
	opts.Scenario = scen
	if opts.Binary == "" {
		if opts.Binary, err = Binary(); err != nil {
			return nil, err
		}
	}
	if opts.Transport == "" {
		opts.Transport = UDP
	}
	if opts.Transport == "l1" || opts.Transport == "ln" {
		if v, err := Version(); err == nil && !v.TLS() {
			return nil, fmt.Errorf("%w (%s)", ErrTLSUnsupported, v.Raw)
		}
	}
	if opts.LocalIP == "" {
		opts.LocalIP = LoopbackIP
	}
	if opts.StopGrace <= 0 {
		opts.StopGrace = DefaultStopGrace
	}
	if opts.ReadyTimeout <= 0 {
		opts.ReadyTimeout = DefaultReadyTimeout
	}
	if opts.Timeout <= 0 {
		opts.Timeout = defaultTimeout(ctx, opts.server())
	}

	attempts := 1
	autoPort := opts.LocalPort == 0
	if autoPort {
		attempts = bindAttempts
	}
	var lastErr error
	for i := 0; i < attempts; i++ {
		port := opts.LocalPort
		if autoPort {
			if port, err = FreePort(opts.Transport.network(), opts.LocalIP); err != nil {
				return nil, err
			}
		}
		p, err := start(ctx, opts, port)
		if err != nil {
			return nil, err
		}
		if !opts.server() {
			return p, nil
		}
		err = p.waitReady()
		if err == nil {
			return p, nil
		}
		lastErr = err
		if !errors.Is(err, ErrBind) || !autoPort {
			break
		}
	}
	return nil, lastErr
}

// Run starts a client (or a server with MaxCalls) and waits for it to end.
// The Result is returned even when err is non-nil, if SIPp ran at all.
// Calls that failed are not an error: check Result.Failed / Result.OK.
func Run(ctx context.Context, opts Options) (*Result, error) {
	for attempt := 1; ; attempt++ {
		p, err := Start(ctx, opts)
		if err != nil {
			return nil, err
		}
		res, err := p.Wait()
		// A client's port is picked by Start: retry if another process
		// took it before SIPp could bind it.
		if errors.Is(err, ErrBind) && opts.LocalPort == 0 && attempt < bindAttempts && ctx.Err() == nil {
			continue
		}
		return res, err
	}
}

// bindAttempts is how often a process on an automatically picked port is
// started again after losing the port to another process.
const bindAttempts = 3

func defaultTimeout(ctx context.Context, server bool) time.Duration {
	if dl, ok := ctx.Deadline(); ok {
		d := time.Until(dl) - 2*time.Second
		if d < time.Second {
			d = time.Second
		}
		return d
	}
	if server {
		return DefaultServerTimeout
	}
	return DefaultClientTimeout
}

func start(ctx context.Context, opts Options, port int) (*Process, error) {
	name := strings.TrimSuffix(filepath.Base(opts.Scenario), filepath.Ext(opts.Scenario))
	p := &Process{
		opts:  opts,
		name:  name,
		port:  port,
		grace: opts.StopGrace,
		done:  make(chan struct{}),
	}
	var err error
	if opts.Dir != "" {
		p.dir, err = os.MkdirTemp(opts.Dir, name+"-")
	} else {
		p.dir, err = os.MkdirTemp("", "sipptest-"+name+"-")
		p.removeDir = !opts.KeepDir
	}
	if err != nil {
		return nil, fmt.Errorf("sipptest: work dir: %w", err)
	}
	p.args = buildArgs(opts, port)

	stdout, err := os.Create(filepath.Join(p.dir, stdoutFile))
	if err != nil {
		p.cleanup()
		return nil, fmt.Errorf("sipptest: %w", err)
	}
	defer stdout.Close()
	stderr, err := os.Create(filepath.Join(p.dir, stderrFile))
	if err != nil {
		p.cleanup()
		return nil, fmt.Errorf("sipptest: %w", err)
	}
	defer stderr.Close()

	// Hard bound: SIPp's own -timeout plus the grace, plus some slack.
	hardCtx, cancel := context.WithTimeout(ctx, opts.Timeout+time.Second+opts.StopGrace+5*time.Second)
	cmd := exec.CommandContext(hardCtx, opts.Binary, p.args...)
	cmd.Dir = p.dir
	cmd.Stdout = stdout
	cmd.Stderr = stderr
	cmd.Cancel = func() error { return softStop(cmd.Process) }
	cmd.WaitDelay = opts.StopGrace
	p.cmd = cmd
	if err := cmd.Start(); err != nil {
		cancel()
		p.cleanup()
		return nil, fmt.Errorf("sipptest: start %s: %w", opts.Binary, err)
	}
	p.started = time.Now()
	go func() {
		p.waitErr = cmd.Wait()
		p.ended = time.Now()
		p.ctxErr, p.hardErr = ctx.Err(), hardCtx.Err()
		cancel()
		close(p.done)
	}()
	return p, nil
}

func buildArgs(o Options, port int) []string {
	var a []string
	if o.Target != "" {
		a = append(a, o.Target)
	}
	a = append(a,
		"-sf", o.Scenario,
		"-t", string(o.Transport),
		"-i", o.LocalIP, "-bind_local",
		"-mi", o.LocalIP,
		"-ci", o.LocalIP,
		"-nostdin",
		"-trace_stat", "-stf", statsFile,
		"-trace_err", "-error_file", errorsFile,
	)
	if port > 0 {
		a = append(a, "-p", strconv.Itoa(port))
	}
	if o.Service != "" {
		a = append(a, "-s", o.Service)
	}
	if o.Rate > 0 {
		a = append(a, "-r", strconv.FormatFloat(o.Rate, 'f', -1, 64))
	}
	if o.RatePeriod > 0 {
		a = append(a, "-rp", strconv.FormatInt(o.RatePeriod.Milliseconds(), 10))
	}
	if o.MaxCalls > 0 {
		a = append(a, "-m", strconv.Itoa(o.MaxCalls))
	}
	if o.CallLimit > 0 {
		a = append(a, "-l", strconv.Itoa(o.CallLimit))
	}
	pause := o.Pause
	switch {
	case pause == 0:
		pause = DefaultPause
	case pause < 0:
		pause = 0
	}
	a = append(a, "-d", strconv.FormatInt(pause.Milliseconds(), 10))
	// SIPp truncates -timeout to whole seconds.
	secs := int64(math.Ceil(o.Timeout.Seconds()))
	if secs < 1 {
		secs = 1
	}
	a = append(a, "-timeout", strconv.FormatInt(secs, 10)+"s")
	if !o.server() {
		a = append(a, "-timeout_error")
	}
	if o.RecvTimeout > 0 {
		a = append(a, "-recv_timeout", strconv.FormatInt(o.RecvTimeout.Milliseconds(), 10))
	}
	for _, k := range slices.Sorted(maps.Keys(o.Keys)) {
		a = append(a, "-key", k, o.Keys[k])
	}
	for _, k := range slices.Sorted(maps.Keys(o.Vars)) {
		a = append(a, "-set", k, o.Vars[k])
	}
	for _, f := range o.InjectionFiles {
		a = append(a, "-inf", f)
	}
	if o.TraceMsg {
		a = append(a, "-trace_msg", "-message_file", messageFile)
	}
	if o.TraceRTT {
		a = append(a, "-trace_rtt", "-rtt_freq", "1")
	}
	return append(a, o.ExtraArgs...)
}

// waitReady waits until the server has bound its port.
func (p *Process) waitReady() error {
	deadline := time.NewTimer(p.opts.ReadyTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	network := p.opts.Transport.network()
	for {
		bound, known := portBound(p.cmd.Process.Pid, network, p.port)
		if bound {
			select {
			case <-p.done: // exited after all (e.g. a bind race)
				return p.earlyExit()
			default:
				return nil
			}
		}
		if !known {
			// No socket table to look at: give SIPp a moment to bind.
			select {
			case <-p.done:
				return p.earlyExit()
			case <-time.After(300 * time.Millisecond):
				return nil
			}
		}
		select {
		case <-p.done:
			return p.earlyExit()
		case <-deadline.C:
			res, _ := p.Stop()
			return fmt.Errorf("%w: %s did not bind %s port %d within %s\n%s",
				ErrExit, p.name, network, p.port, p.opts.ReadyTimeout, res.Diagnostics())
		case <-tick.C:
		}
	}
}

func (p *Process) earlyExit() error {
	res, err := p.Wait()
	if err == nil {
		err = fmt.Errorf("%w: exited with status %d before it was ready", ErrExit, res.ExitCode)
	}
	return fmt.Errorf("sipptest: %s on port %d: %w\n%s", p.name, p.port, err, res.Diagnostics())
}

// Port returns the local SIP port.
func (p *Process) Port() int { return p.port }

// Addr returns LocalIP:Port, the address to send requests to (a server's
// address, e.g. as the contact_port of register.xml or a proxy's route).
func (p *Process) Addr() string {
	return fmt.Sprintf("%s:%d", hostForAddr(p.opts.LocalIP), p.port)
}

func hostForAddr(ip string) string {
	if strings.Contains(ip, ":") {
		return "[" + ip + "]"
	}
	return ip
}

// Args returns the sipp command-line arguments.
func (p *Process) Args() []string { return slices.Clone(p.args) }

// Dir returns the process's work directory (removed after Wait unless
// Options.Dir or KeepDir was set).
func (p *Process) Dir() string { return p.dir }

// Done is closed when the SIPp process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Wait waits for SIPp to exit by itself (or for the context to end) and
// returns its Result. It may be called any number of times.
func (p *Process) Wait() (*Result, error) {
	<-p.done
	p.once.Do(p.collect)
	return p.res, p.resErr
}

// Stop asks SIPp to finish (SIGUSR1: no new calls, let current calls end,
// write the final statistics), kills it if it is still running after
// StopGrace, and returns its Result. Safe to call more than once and after
// the process has exited.
func (p *Process) Stop() (*Result, error) {
	select {
	case <-p.done:
	default:
		p.stopping.Store(true)
		_ = softStop(p.cmd.Process)
		t := time.NewTimer(p.grace)
		select {
		case <-p.done:
		case <-t.C:
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		t.Stop()
	}
	return p.Wait()
}

func (p *Process) cleanup() {
	if p.removeDir {
		_ = os.RemoveAll(p.dir)
	}
}

func (p *Process) collect() {
	r := &Result{
		Scenario: p.name,
		Args:     slices.Clone(p.args),
		Dir:      p.dir,
		Port:     p.port,
		Duration: p.ended.Sub(p.started),
		ExitCode: -1,
	}
	if st := p.cmd.ProcessState; st != nil {
		r.ExitCode = st.ExitCode()
	}
	r.Stdout = readTail(filepath.Join(p.dir, stdoutFile), 8<<10)
	r.Stderr = readTail(filepath.Join(p.dir, stderrFile), 8<<10)
	r.ErrorLog = readTail(filepath.Join(p.dir, errorsFile), 16<<10)
	if p.opts.TraceMsg {
		r.MessageLog = readTail(filepath.Join(p.dir, messageFile), 32<<10)
	}
	statsErr := r.loadStats(filepath.Join(p.dir, statsFile))
	if statsErr != nil {
		r.parseScreen(r.Stdout)
	}
	if p.opts.TraceRTT {
		if files, _ := filepath.Glob(filepath.Join(p.dir, "*_rtt.csv")); len(files) > 0 {
			r.loadRTT(files)
		}
	}
	r.TimedOut = strings.Contains(r.Stderr, "timed out after") || strings.Contains(r.ErrorLog, "timed out after")

	p.res = r
	p.resErr = p.exitError(r)
	p.cleanup()
	if p.removeDir {
		r.Dir = ""
	}
}

func (p *Process) exitError(r *Result) error {
	stopped := p.stopping.Load()
	if err := p.ctxErr; err != nil && !stopped {
		return fmt.Errorf("sipptest: %s interrupted (status %d): %w", p.name, r.ExitCode, err)
	}
	if p.hardErr != nil && !stopped {
		return fmt.Errorf("%w: %s still running %s after its -timeout; stopped", ErrExit, p.name, p.grace)
	}
	switch r.ExitCode {
	case 0, 1, 97, 99:
		return nil
	case 254:
		return fmt.Errorf("%w: %s port %d: %s", ErrBind, p.name, p.port, lastLine(r.Stderr))
	case -1:
		return fmt.Errorf("%w: %s was killed (%v)", ErrExit, p.name, p.waitErr)
	}
	if r.TimedOut {
		return fmt.Errorf("%w: %s after %s (%d of %d calls done)", ErrTimeout, p.name,
			r.Duration.Round(time.Millisecond), r.Successful+r.Failed, r.Created)
	}
	return fmt.Errorf("%w: %s exited with status %d: %s", ErrExit, p.name, r.ExitCode, lastLine(r.Stderr))
}
