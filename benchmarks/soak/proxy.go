package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/sipasync/sipasync/benchmarks/sipbench"
)

// buildProxy builds soakproxy into dir and returns the binary's path.
func buildProxy(ctx context.Context, repo, dir string, pprof bool) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "soakproxy")
	pkg := filepath.Join(repo, "benchmarks", "soak", "soakproxy")
	args := []string{"build", "-o", bin}
	if pprof {
		ov, cleanup, err := sipbench.PprofOverlay(pkg)
		if err != nil {
			return "", err
		}
		defer cleanup()
		args = append(args, "-overlay", ov)
	}
	cmd := exec.CommandContext(ctx, "go", append(args, "./benchmarks/soak/soakproxy")...)
	cmd.Dir = repo
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build soakproxy: %w\n%s", err, out)
	}
	return bin, nil
}

// node is one running soakproxy.
type node struct {
	name    string
	addr    string // SIP, udp host:port
	admin   string // admin listener host:port
	pprof   string // pprof host:port ("" if none)
	logPath string
	cmd     *exec.Cmd
	done    chan struct{}
	waitErr error
	args    []string
}

// startNode runs bin with args plus its --listen and --admin, its log in
// logPath, and waits (up to 20 s) for its start-up line.
func startNode(ctx context.Context, name, bin, logPath, addr, admin, pprof string, args []string) (*node, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	args = append([]string{"--listen", "udp:" + addr, "--admin", admin}, args...)
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), "GOTRACEBACK=all")
	if pprof != "" {
		cmd.Env = append(cmd.Env, sipbench.PprofAddrEnv+"="+pprof)
	}
	// If the soak runner dies, so do its proxies.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("node %s: %w", name, err)
	}
	n := &node{name: name, addr: addr, admin: admin, pprof: pprof, logPath: logPath, cmd: cmd, done: make(chan struct{}), args: args}
	go func() {
		n.waitErr = cmd.Wait()
		close(n.done)
	}()
	switch err := sipbench.WaitReady(ctx, n.done, 20*time.Second, 50*time.Millisecond, sipbench.Logged(logPath, "sipasync started")); {
	case errors.Is(err, sipbench.ErrExited):
		return nil, fmt.Errorf("node %s %w (%v):\n%s", name, err, n.waitErr, sipbench.TailFile(logPath, 2048))
	case err != nil:
		n.stop(5 * time.Second)
		return nil, fmt.Errorf("node %s: %w:\n%s", name, err, sipbench.TailFile(logPath, 2048))
	}
	return n, nil
}

// Exit is how a node ended: its exit status and the counters of its
// final "stopped" line.
type Exit struct {
	Code     int              `json:"code"`
	Killed   bool             `json:"killed,omitempty"`
	Counters map[string]int64 `json:"counters"`
	// Warnings counts WARN and ERROR lines in the log; Sample keeps the
	// first few of them.
	Warnings int      `json:"warnings"`
	Sample   []string `json:"warning_sample,omitempty"`
}

// stop sends SIGTERM (a drain) and kills the node if it has not exited
// within grace. Safe to call more than once.
func (n *node) stop(grace time.Duration) Exit {
	var e Exit
	select {
	case <-n.done:
	default:
		_ = n.cmd.Process.Signal(syscall.SIGTERM)
		t := time.NewTimer(grace)
		select {
		case <-n.done:
		case <-t.C:
			e.Killed = true
			_ = n.cmd.Process.Kill()
			<-n.done
		}
		t.Stop()
	}
	e.Code = n.cmd.ProcessState.ExitCode()
	f, err := os.Open(n.logPath)
	if err == nil {
		e.Counters, e.Warnings, e.Sample = parseLog(f)
		f.Close()
	}
	return e
}

// parseLog reads the counters of the final "msg=stopped" line and counts
// WARN/ERROR lines (keeping the first few).
func parseLog(r io.Reader) (counters map[string]int64, warnings int, sample []string) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		l := sc.Text()
		if strings.Contains(l, "level=WARN") || strings.Contains(l, "level=ERROR") {
			warnings++
			if len(sample) < 5 {
				if len(l) > 300 {
					l = l[:300] + "..."
				}
				sample = append(sample, l)
			}
		}
		if !strings.Contains(l, "msg=stopped ") {
			continue
		}
		counters = map[string]int64{}
		for _, f := range strings.Fields(l) {
			if k, v, ok := strings.Cut(f, "="); ok {
				if n, err := strconv.ParseInt(v, 10, 64); err == nil {
					counters[k] = n
				}
			}
		}
	}
	return counters, warnings, sample
}

// profile saves node's heap profile and goroutine dump as
// heap-LABEL.pprof and goroutines-LABEL.txt in dir.
func (n *node) profile(ctx context.Context, dir, label string) error {
	if n.pprof == "" {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := sipbench.FetchProfile(ctx, n.pprof, "heap", "gc=1", filepath.Join(dir, "heap-"+label+".pprof")); err != nil {
		return fmt.Errorf("node %s: %w", n.name, err)
	}
	if err := sipbench.FetchProfile(ctx, n.pprof, "goroutine", "debug=1", filepath.Join(dir, "goroutines-"+label+".txt")); err != nil {
		return fmt.Errorf("node %s: %w", n.name, err)
	}
	return nil
}
