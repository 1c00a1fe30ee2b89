package sipbench

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/sipasync/sipasync/internal/sipptest"
)

// A Target is a proxy implementation under test (sipasync or Kamailio).
// The runner asks it to prepare once, then to start a fresh proxy for each
// step of a ladder, and stops that proxy when the step is over.
type Target interface {
	// Name is a short identifier used in file names and tables.
	Name() string
	// Supports reports whether the target can play role (else an error
	// saying why not).
	Supports(role Role) error
	// Prepare does the one-time work before the first Start (build
	// binaries, check the installation) for the given scenarios.
	Prepare(ctx context.Context, scs []Scenario) error
	// Start runs a proxy for spec and returns once it serves on
	// spec.Addr.
	Start(ctx context.Context, spec ProxySpec) (Instance, error)
}

// startOnFreePort starts t for spec on a free loopback UDP port (spec.Addr
// is set here).
func startOnFreePort(ctx context.Context, t Target, spec ProxySpec) (Instance, error) {
	port, err := sipptest.FreePort("udp", sipptest.LoopbackIP)
	if err != nil {
		return nil, err
	}
	spec.Addr = fmt.Sprintf("%s:%d", sipptest.LoopbackIP, port)
	inst, err := t.Start(ctx, spec)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", t.Name(), err)
	}
	return inst, nil
}

// ProxySpec is what one proxy process must do.
type ProxySpec struct {
	Scenario Scenario
	// Addr is the UDP address to listen on (127.0.0.1:port).
	Addr string
	// Dir is a directory for the proxy's log and other files.
	Dir string
	// GCTrace asks a Go target to log each garbage collection
	// (GODEBUG=gctrace=1) for the memory measurement.
	GCTrace bool
	// Park overrides Scenario.Park when > 0 (the memory measurement parks
	// for longer).
	Park time.Duration
	// Rate is the step's offered rate (calls/s); the shaper (S5) lets
	// Scenario.ShapeRatio of it through.
	Rate float64
}

// ParkTime is the park time the proxy must use.
func (s ProxySpec) ParkTime() time.Duration {
	if s.Park > 0 {
		return s.Park
	}
	return s.Scenario.Park
}

// Instance is one running proxy process.
type Instance interface {
	// PID is the process to measure (CPU from /proc/PID/stat, memory from
	// /proc/PID/status).
	PID() int
	// Addr is where SIPp sends its requests.
	Addr() string
	// Command is the program's name and arguments, for reports (no
	// directories).
	Command() []string
	// Stop ends the proxy (gracefully, then by force) and reports how it
	// ended. Calling it again returns the same Exit.
	Stop(ctx context.Context) (Exit, error)
}

// GoroutineDumper is implemented by instances of Go programs that can dump
// their goroutines (SIGQUIT). The process ends with the dump.
type GoroutineDumper interface {
	DumpGoroutines(ctx context.Context) (int, error)
}

// GCTracer is implemented by instances that log their garbage collections.
type GCTracer interface {
	GCTrace() []GCCycle
}

// Exit is how a proxy process ended.
type Exit struct {
	Code int `json:"exit_code"`
	// Killed is set when the process had to be killed.
	Killed bool `json:"killed,omitempty"`
	// Counters are the proxy's own counters at the end (sipasync: the
	// fields of the final "stopped" log line).
	Counters map[string]int64 `json:"counters,omitempty"`
	// Warnings counts log lines at warning level or above; Sample holds a
	// few of them.
	Warnings int      `json:"log_warnings"`
	Sample   []string `json:"log_sample,omitempty"`
}

// CountersString renders the non-zero counters as "k=v" in key order.
func (e Exit) CountersString() string {
	keys := make([]string, 0, len(e.Counters))
	for k, v := range e.Counters {
		if v != 0 {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s=%d", k, e.Counters[k])
	}
	return b.String()
}

// ErrNotImplemented is returned for targets and scenarios that are planned
// but not written yet.
var ErrNotImplemented = errors.New("not implemented yet")

// NewTarget returns the named target. opts configures it.
func NewTarget(name string, opts TargetOptions) (Target, error) {
	switch name {
	case "sipasync":
		return &Sipasync{Repo: opts.Repo, BinDir: opts.BinDir, ExtraArgs: opts.ExtraArgs, Env: opts.Env, Build: opts.BinDir == ""}, nil
	case "kamailio":
		return &Kamailio{Repo: opts.Repo, ExtraArgs: opts.ExtraArgs, Install: opts.Install}, nil
	}
	return nil, fmt.Errorf("unknown target %q (want sipasync or kamailio)", name)
}

// TargetOptions are the runner's settings for a target.
type TargetOptions struct {
	// Repo is the repository root.
	Repo string
	// BinDir holds prebuilt binaries; empty: build them into WorkDir.
	BinDir string
	// WorkDir is where the target may put binaries it builds.
	WorkDir string
	// ExtraArgs are appended to the proxy's command line.
	ExtraArgs []string
	// Env is added to the proxy's environment (KEY=VALUE).
	Env []string
	// Install lets a target install what is missing (kamailio: the
	// Debian package, with apt-get, when running as root).
	Install bool
}

// ProcessTree is implemented by instances that are a tree of processes
// (Kamailio's main process and its children): they are measured with
// ReadTree (CPU and PSS summed over the tree).
type ProcessTree interface {
	Tree() bool
}
