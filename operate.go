package sipasync

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/pflag"

	"github.com/sipasync/sipasync/admin"
	"github.com/sipasync/sipasync/eventbus/evi"
	"github.com/sipasync/sipasync/internal/config"
	"github.com/sipasync/sipasync/metrics"
	"github.com/sipasync/sipasync/observe"
	"github.com/sipasync/sipasync/sipproxy"
	"github.com/sipasync/sipasync/transaction"
)

// OperateOptions are the operator's options: the admin listener (metrics and
// control), the config file, and printing the effective configuration.
type OperateOptions struct {
	Admin       string // host:port of the admin listener; "" or "off": none
	AdminToken  string // bearer token required on the admin listener
	Config      string // YAML config file
	PrintConfig bool
}

// EphemeralAdmin is the default --admin of the examples and of programs
// built with Options directly: loopback, a free port (logged at start-up), so
// that many can run side by side. cmd/sipasync uses admin.DefaultAddr.
const EphemeralAdmin = "127.0.0.1:0"

// Register adds the operator flags; def is the default --admin.
func (f *OperateOptions) Register(fs *pflag.FlagSet, def string) {
	fs.StringVar(&f.Admin, "admin", def, `admin listener host:port: Prometheus /metrics and JSON-RPC control on /rpc ("" or off: none; a non-loopback address needs --admin-token)`)
	fs.StringVar(&f.AdminToken, "admin-token", "", "bearer token the admin listener requires (Authorization: Bearer TOKEN); sipasync ctl sends it")
	fs.StringVar(&f.Config, "config", "", "YAML config file: keys are flag names (log-level: debug) or nested by first word (async: {workers: 4})")
	fs.BoolVar(&f.PrintConfig, "print-config", false, "print the effective configuration (flags > SIPASYNC_* env > --config file > defaults), secrets redacted, and exit")
}

func (f *OperateOptions) adminOn() bool { return f.Admin != "" && f.Admin != "off" }

// Program describes a sipasync program for Run.
type Program struct {
	Name           string
	Args           []string
	Stdout, Stderr io.Writer
	Environ        []string // os.Environ() form; SIPASYNC_* variables set flags
	Extra          func(fs *pflag.FlagSet)
	Setup          Setup
	// Admin is the default --admin ("": EphemeralAdmin).
	Admin string
}

var errHelp = errors.New("help")

// flags builds the flag set, parses the command line and layers the
// environment and the config file under it. For a reload, running is the
// flag set in use: the program's own flags are shadowed (parsed as plain
// strings, never bound to the running program's variables), so that a key
// that is neither common nor the program's is still an error.
func (p *Program) flags(running *pflag.FlagSet) (*Options, *pflag.FlagSet, map[string]config.Source, error) {
	reload := running != nil
	fs := pflag.NewFlagSet(p.Name, pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	f := &Options{adminDefault: p.Admin}
	f.Register(fs)
	if !reload && p.Extra != nil {
		p.Extra(fs)
	}
	if reload {
		running.VisitAll(func(rf *pflag.Flag) {
			if fs.Lookup(rf.Name) == nil {
				fs.AddFlag(shadowFlag(rf))
			}
		})
	}
	var help, version *bool
	if fs.Lookup("help") == nil {
		help = fs.BoolP("help", "h", false, "show this help")
	}
	if fs.Lookup("version") == nil {
		version = fs.Bool("version", false, "print the version (module version, VCS revision, Go, sipgo) and exit")
	}
	if err := fs.Parse(p.Args); err != nil {
		return nil, nil, nil, fmt.Errorf("%w: %v (see --help)", ErrUsage, err)
	}
	if help != nil && *help {
		fs.SetOutput(p.Stderr)
		fmt.Fprintf(p.Stderr, "Usage:\n  %[1]s [flags]                 run the proxy\n"+
			"  %[1]s ctl METHOD [PARAMS...]  call a running proxy's control interface (%[1]s ctl --help)\n\nFlags:\n", p.Name)
		fs.PrintDefaults()
		return nil, nil, nil, errHelp
	}
	if version != nil && *version {
		fmt.Fprintf(p.Stdout, "%s %s\n", p.Name, ReadBuildInfo())
		return nil, nil, nil, errHelp
	}
	if fs.NArg() > 0 {
		return nil, nil, nil, fmt.Errorf("%w: unexpected argument %q (see --help)", ErrUsage, fs.Arg(0))
	}
	opts := config.Options{}
	env, err := config.Environ(fs, p.Environ, opts)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("%w: %v", ErrUsage, err)
	}
	if e, ok := env["config"]; ok && !fs.Changed("config") {
		f.Operate.Config = e.Values[0]
	}
	file := config.Layer{}
	if f.Operate.Config != "" {
		if file, err = config.ReadFile(fs, f.Operate.Config, opts); err != nil {
			return nil, nil, nil, fmt.Errorf("%w: %v", ErrUsage, err)
		}
	}
	src, err := config.Apply(fs, env, file)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("%w: %v", ErrUsage, err)
	}
	return f, fs, src, nil
}

// Run runs a program: "ctl ..." calls a running one's control interface;
// otherwise it layers flags, environment and config file, builds the Server,
// lets Setup register routes, starts it and serves signals until it stops:
//
//   - SIGINT, SIGTERM: stop — refuse new transactions (503 + Retry-After),
//     let live and parked ones finish up to --shutdown-timeout, answer the
//     rest 503, flush event transports, exit 0. A second one hurries: what is
//     parked is answered at once.
//   - SIGUSR2: lame duck — the same drain, announced as such, for a planned
//     stop behind a load balancer or DNS SRV (clients see 503 + Retry-After
//     and move on while parked calls complete).
//   - SIGHUP: reload the log level and the --event subscriptions from the
//     environment and the config file; log what changed and what needs a
//     restart.
//
// It returns the exit status: 0 after a clean stop, 2 for a usage or
// start-up error (one line on stderr), 1 for a failure while running.
func Run(p Program) int {
	if p.Stdout == nil {
		p.Stdout = os.Stdout
	}
	if p.Stderr == nil {
		p.Stderr = os.Stderr
	}
	if len(p.Args) > 0 && p.Args[0] == "ctl" {
		return Ctl(p.Name+" ctl", p.Args[1:], p.Stdout, p.Stderr, p.Environ)
	}
	f, fs, src, err := p.flags(nil)
	if errors.Is(err, errHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(p.Stderr, "%s: %v\n", p.Name, strings.TrimPrefix(err.Error(), "usage: "))
		return 2
	}
	if f.Operate.PrintConfig {
		var b bytes.Buffer
		if err := config.Print(&b, fs, src, "config", "print-config", "help", "version"); err != nil {
			fmt.Fprintf(p.Stderr, "%s: %v\n", p.Name, err)
			return 1
		}
		_, _ = p.Stdout.Write(b.Bytes())
		return 0
	}
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM, syscall.SIGUSR2, syscall.SIGHUP)
	defer signal.Stop(sigs)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	f.LogWriter = p.Stderr
	a, err := New(*f)
	if err == nil && p.Setup != nil {
		if err = p.Setup(a); err != nil {
			a.release()
			err = fmt.Errorf("%w: %w", ErrUsage, err)
		}
	}
	if err == nil {
		err = a.Start(ctx)
	}
	if err != nil {
		fmt.Fprintf(p.Stderr, "%s: %v\n", p.Name, strings.TrimPrefix(err.Error(), "usage: "))
		return 2
	}
	a.program, a.flagSet = &p, fs
	lame := false
wait:
	for s := range sigs {
		switch s {
		case syscall.SIGHUP:
			_, _ = a.Reload()
		case syscall.SIGUSR2:
			lame = true
			break wait
		default:
			break wait
		}
	}
	cancel()
	done := make(chan struct{})
	defer close(done)
	go func() {
		for {
			select {
			case s := <-sigs:
				if s == os.Interrupt || s == syscall.SIGTERM {
					a.Hurry()
				}
			case <-done:
				return
			}
		}
	}()
	sctx, scancel := context.WithTimeout(context.Background(), f.ShutdownTimeout)
	defer scancel()
	if lame {
		a.LameDuck()
	}
	if err := a.Shutdown(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
		fmt.Fprintf(p.Stderr, "%s: %v\n", p.Name, err)
		return 1
	}
	return 0
}

// observe hooks the per-message metrics into the proxy configuration,
// after the hooks already there.
func (a *Server) newRegistry(clk clock.Clock) error {
	a.Registry = prometheus.NewRegistry()
	if err := a.Registry.Register(collectors.NewGoCollector()); err != nil {
		return err
	}
	if err := a.Registry.Register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})); err != nil {
		return err
	}
	tr, err := metrics.NewTraffic(a.Registry, clk)
	if err != nil {
		return err
	}
	a.traffic = tr
	return nil
}

// observe joins the observers of the proxy's lists: the event publisher,
// the per-message metrics and device state, in that order.
func (a *Server) observe() {
	p, tr, n := a.Proxy, a.traffic, a.DeviceState
	p.Transactions().Changes().Add(func(c transaction.Change) { a.Publisher.OnTransaction(c.Tx, c.Event) })
	p.Transactions().Changes().Add(func(c transaction.Change) { tr.Transaction(c.Tx, c.Event) })
	p.Transactions().Responses().Add(func(r transaction.Response) { tr.Response(r.Request, r.Code) })
	p.Requests().Add(tr.Request)
	p.Location().Changes().Add(func(c sipproxy.RegChange) { a.Publisher.OnRegistration(c.Event, c.Binding) })
	p.Location().Changes().Add(func(c sipproxy.RegChange) {
		n.OnRegistration(c.Event, observe.Registration{AOR: c.Binding.AOR, Contact: c.Binding.Contact})
	})
	p.Calls().Add(n.OnCall)
}

// collect registers each part's own collector (read at scrape time) on
// the registry.
func (a *Server) collect() error {
	for _, c := range []prometheus.Collector{a.Proxy.Collector(), a.Proxy.Transactions().Collector(),
		a.Async.Engine.Collector(), a.Async.Engine.Wheel().Collector(), a.Async.Groups.Collector(),
		a.Bus.Collector(), a.Events.Collector(), a.DeviceState.Collector(), metrics.Runtime()} {
		if err := a.Registry.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// serveAdmin starts the admin listener when --admin is on.
func (a *Server) serveAdmin() error {
	o := a.Options.Operate
	if !o.adminOn() {
		return nil
	}
	s, err := admin.Listen(admin.Options{Addr: o.Admin, Token: o.AdminToken, Gatherer: a.Registry, RPC: a.RPC, Logger: a.Log})
	if err != nil {
		return fmt.Errorf("%w: --admin: %v", ErrUsage, err)
	}
	a.admin = s
	return nil
}

// AdminAddr returns the admin listener's address ("" when off).
func (a *Server) AdminAddr() string {
	if a.admin == nil {
		return ""
	}
	return a.admin.Addr()
}

func (a *Server) closeAdmin() {
	if a.admin == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = a.admin.Shutdown(ctx)
}

// subscribeEvents subscribes the --event values and remembers each
// subscriber by its value, for reloads.
func (a *Server) subscribeEvents(values []string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.eventSubs == nil {
		a.eventSubs = map[string]*evi.Subscriber{}
	}
	for _, v := range values {
		if _, ok := a.eventSubs[v]; ok {
			continue
		}
		sub, err := a.subscribeOne(v)
		if err != nil {
			return err
		}
		a.eventSubs[v] = sub
	}
	return nil
}

func (a *Server) subscribeOne(v string) (*evi.Subscriber, error) {
	name, _, err := evi.ParseEventFlag(v)
	if err != nil {
		return nil, err
	}
	_, sock, _ := strings.Cut(v, "=")
	sub, err := a.Events.SubscribeEvent(name, sock)
	if err != nil {
		return nil, fmt.Errorf("evi: --event %s: %w", name, err)
	}
	return sub, nil
}

// ReloadReport says what a reload changed.
type ReloadReport struct {
	Reloaded    []string `json:"reloaded"`     // what changed, e.g. "log-level: info -> debug"
	NotReloaded []string `json:"not_reloaded"` // flags whose new value needs a restart
	Errors      []string `json:"errors"`       // changes that failed (the old value stays)
}

// Reload reads the environment and the config file again and applies what
// can change safely: --log-level and the --event subscriptions (added ones
// subscribed, removed ones unsubscribed after sending what they hold).
// Other changes are reported as needing a restart. Command-line flags still
// win. A config file that no longer parses is an error and changes nothing.
func (a *Server) Reload() (ReloadReport, error) {
	rep := ReloadReport{Reloaded: []string{}, NotReloaded: []string{}, Errors: []string{}}
	if a.program == nil || a.flagSet == nil {
		return rep, errors.New("reload: only a server started by sipasync.Run or Main reloads its configuration")
	}
	_, fs, _, err := a.program.flags(a.flagSet)
	if err != nil {
		err = fmt.Errorf("reload: %s", strings.TrimPrefix(err.Error(), "usage: "))
		a.Log.Error("reload failed: nothing changed", "error", err)
		return rep, err
	}
	a.reloadMu.Lock()
	defer a.reloadMu.Unlock()
	fs.VisitAll(func(nf *pflag.Flag) {
		of := a.flagSet.Lookup(nf.Name)
		if of == nil || of.Value.String() == nf.Value.String() {
			return
		}
		switch nf.Name {
		case "log-level":
			var lvl slog.Level
			if err := lvl.UnmarshalText([]byte(nf.Value.String())); err != nil {
				rep.Errors = append(rep.Errors, fmt.Sprintf("log-level %q: want debug, info, warn or error", nf.Value.String()))
				return
			}
			a.level.Set(lvl)
			rep.Reloaded = append(rep.Reloaded, fmt.Sprintf("log-level: %s -> %s", of.Value.String(), nf.Value.String()))
			_ = of.Value.Set(nf.Value.String())
		case "event":
			vals := nf.Value.(pflag.SliceValue).GetSlice()
			done, errs := a.syncEvents(vals)
			rep.Reloaded = append(rep.Reloaded, done...)
			rep.Errors = append(rep.Errors, errs...)
			kept := a.eventValues()
			_ = of.Value.(pflag.SliceValue).Replace(kept)
		default:
			rep.NotReloaded = append(rep.NotReloaded, nf.Name)
		}
	})
	a.Log.Info("reloaded", "changed", rep.Reloaded, "not_reloaded", rep.NotReloaded, "errors", rep.Errors)
	if len(rep.NotReloaded) > 0 {
		a.Log.Warn("reload: these changes need a restart", "flags", rep.NotReloaded)
	}
	return rep, nil
}

// syncEvents makes the subscriptions those of values.
func (a *Server) syncEvents(values []string) (done, errs []string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for v, sub := range a.eventSubs {
		if !slices.Contains(values, v) {
			sub.Unsubscribe()
			delete(a.eventSubs, v)
			done = append(done, "event -"+config.Redact(v))
		}
	}
	for _, v := range values {
		if _, ok := a.eventSubs[v]; ok {
			continue
		}
		sub, err := a.subscribeOne(v)
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		a.eventSubs[v] = sub
		done = append(done, "event +"+config.Redact(v))
	}
	slices.Sort(done)
	return done, errs
}

func (a *Server) eventValues() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]string, 0, len(a.eventSubs))
	for v := range a.eventSubs {
		out = append(out, v)
	}
	slices.Sort(out)
	return out
}

// LameDuck announces a planned stop: from now new transactions are
// answered 503 with Retry-After, while live and parked ones go on; a
// Shutdown then drains them.
func (a *Server) LameDuck() {
	a.Proxy.Drain()
	ts := a.Proxy.Transactions().Stats()
	a.Log.Info("lame duck: refusing new transactions, draining", "live", ts.Live, "parked", ts.Parked,
		"timeout", a.Options.ShutdownTimeout.String())
}

// Hurry ends the wait of a Shutdown in progress: what is still parked is
// answered now.
func (a *Server) Hurry() {
	a.mu.Lock()
	h := a.hurry
	a.mu.Unlock()
	if h != nil {
		a.Log.Info("second stop signal: answering what is parked now")
		h()
	}
}

// shadowFlag is a stand-in for a program's own flag during a reload: it
// takes any value as a string, so the running program's variable is left
// alone; a change shows as "needs a restart".
func shadowFlag(f *pflag.Flag) *pflag.Flag {
	var v pflag.Value = &shadowValue{typ: f.Value.Type(), val: f.DefValue}
	if _, ok := f.Value.(pflag.SliceValue); ok {
		sv := &shadowSlice{typ: f.Value.Type()}
		if def := strings.Trim(f.DefValue, "[]"); def != "" {
			sv.vals = strings.Split(def, ",")
		}
		v = sv
	}
	return &pflag.Flag{Name: f.Name, Shorthand: f.Shorthand, Usage: f.Usage, Value: v, DefValue: f.DefValue,
		NoOptDefVal: f.NoOptDefVal}
}

type shadowValue struct{ typ, val string }

func (v *shadowValue) String() string     { return v.val }
func (v *shadowValue) Set(s string) error { v.val = s; return nil }
func (v *shadowValue) Type() string       { return v.typ }

type shadowSlice struct {
	typ     string
	changed bool
	vals    []string
}

func (v *shadowSlice) String() string { return "[" + strings.Join(v.vals, ",") + "]" }
func (v *shadowSlice) Type() string   { return v.typ }
func (v *shadowSlice) Set(s string) error {
	if !v.changed {
		v.vals = nil
	}
	v.vals, v.changed = append(v.vals, s), true
	return nil
}
func (v *shadowSlice) Append(s string) error { v.vals = append(v.vals, s); return nil }
func (v *shadowSlice) Replace(s []string) error {
	v.vals, v.changed = slices.Clone(s), true
	return nil
}
func (v *shadowSlice) GetSlice() []string { return slices.Clone(v.vals) }
