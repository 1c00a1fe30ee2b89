// Package e2e runs the built proxy and its examples against real SIPp on
// loopback and asserts on SIPp's outcome.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sipasync/sipasync/internal/sipptest"
)

// bins holds the programs built once for all tests.
var bins = map[string]string{}

var programs = map[string]string{
	"sipasync":     "./cmd/sipasync",
	"resume404":    "./examples/resume404",
	"asyncrelay":   "./examples/asyncrelay",
	"taskroute":    "./examples/taskroute",
	"testproxy":    "./e2e/testproxy",
	"sipmessage":   "./examples/sipmessage",
	"statsd":       "./examples/statsd",
	"shaper":       "./examples/shaper",
	"queue":        "./examples/queue",
	"fromkamailio": "./examples/fromkamailio",
	"httproute":    "./examples/httproute",
}

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "sipasync-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	for name, pkg := range programs {
		out := filepath.Join(dir, name)
		cmd := exec.Command("go", "build", "-o", out, pkg)
		cmd.Dir = ".."
		if b, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "build %s: %v\n%s", pkg, err, b)
			os.Exit(1)
		}
		bins[name] = out
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// proxy is a running proxy process.
type proxy struct {
	t    *testing.T
	cmd  *exec.Cmd
	addr string
	port int

	mu   sync.Mutex
	logs bytes.Buffer
	done chan struct{}
	err  error
}

// startProxy runs program with args plus a --listen on a free UDP port and
// waits until it has started.
func startProxy(t *testing.T, program string, args ...string) *proxy {
	t.Helper()
	sipptest.Require(t)
	port := sipptest.FreeUDPPort(t)
	p := &proxy{t: t, port: port, addr: "127.0.0.1:" + strconv.Itoa(port), done: make(chan struct{})}
	args = append([]string{"--listen", "udp:" + p.addr}, args...)
	p.cmd = exec.Command(bins[program], args...)
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64*1024), 1<<20)
		once := sync.Once{}
		for sc.Scan() {
			line := sc.Text()
			p.mu.Lock()
			p.logs.WriteString(line + "\n")
			p.mu.Unlock()
			if strings.Contains(line, "sipasync started") {
				once.Do(func() { close(started) })
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	select {
	case <-started:
	case <-p.done:
		t.Fatalf("%s exited before starting: %v\n%s", program, p.err, p.Logs())
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		t.Fatalf("%s did not start in 10s\n%s", program, p.Logs())
	}
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			t.Logf("%s log:\n%s", program, tail(p.Logs(), 60))
		}
	})
	return p
}

// Stop sends SIGTERM and waits for the exit; it returns the exit code.
func (p *proxy) Stop() int {
	select {
	case <-p.done:
	default:
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(20 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	}
	return p.cmd.ProcessState.ExitCode()
}

// Logs returns what the proxy logged so far.
func (p *proxy) Logs() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.logs.String()
}

// count returns how many log lines contain s.
func (p *proxy) count(s string) int { return strings.Count(p.Logs(), s) }

// stat returns a key=value field of the final "stopped" log line.
func (p *proxy) stat(t *testing.T, key string) int {
	t.Helper()
	for _, line := range strings.Split(p.Logs(), "\n") {
		if !strings.Contains(line, "msg=stopped") {
			continue
		}
		for _, f := range strings.Fields(line) {
			if v, ok := strings.CutPrefix(f, key+"="); ok {
				n, err := strconv.Atoi(v)
				if err != nil {
					t.Fatalf("stat %s=%q", key, v)
				}
				return n
			}
		}
	}
	t.Fatalf("no %s in the stopped line:\n%s", key, tail(p.Logs(), 10))
	return 0
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func scenario(name string) string { return sipptest.Scenario(name) }

// run runs a SIPp client against the proxy.
func run(t *testing.T, p *proxy, o sipptest.Options) *sipptest.Result {
	t.Helper()
	o.Target = p.addr
	if o.Timeout == 0 {
		o.Timeout = 30 * time.Second
	}
	return sipptest.RunT(t, o)
}

// uas starts a SIPp UAS and registers it as user with the proxy.
func uas(t *testing.T, p *proxy, scen, user string) *sipptest.Process {
	t.Helper()
	u := sipptest.StartT(t, sipptest.Options{Scenario: scenario(scen), Timeout: 60 * time.Second})
	reg := run(t, p, sipptest.Options{Scenario: scenario("register.xml"), Service: user, MaxCalls: 1,
		Keys: map[string]string{"contact_port": strconv.Itoa(u.Port())}})
	sipptest.RequireSuccess(t, reg, 1)
	return u
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
