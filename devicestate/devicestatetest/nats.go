// Package devicestatetest helps tests of device state: the shared NATS
// server, NATS servers of a test's own (killed and restarted, joined as hub
// and leaf node), and a minimal SIP user agent over UDP.
package devicestatetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sipasync/sipasync/internal/sipptest"
)

// SharedURL is the NATS server with JetStream the project's tests use
// (scripts/test-deps.sh starts it); $SIPASYNC_NATS_URL overrides it.
func SharedURL() string {
	if u := os.Getenv("SIPASYNC_NATS_URL"); u != "" {
		return u
	}
	return "nats://127.0.0.1:4222"
}

// unavailable fails the test under CI and skips it otherwise.
func unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("CI is set but "+format, args...)
	}
	t.Skipf("skipping: "+format, args...)
}

// RequireNATS returns the shared server's URL once it accepts connections.
// Under CI it fails the test when NATS is unreachable; otherwise it skips.
func RequireNATS(t testing.TB) string {
	t.Helper()
	u := SharedURL()
	host := strings.TrimPrefix(strings.Split(u, ",")[0], "nats://")
	c, err := net.DialTimeout("tcp", host, 2*time.Second)
	if err != nil {
		unavailable(t, "NATS is not reachable at %s (run scripts/test-deps.sh): %v", u, err)
		return ""
	}
	_ = c.Close()
	return u
}

// Bucket returns a bucket name no other test uses.
func Bucket(t testing.TB) string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return "test_devstate_" + hex.EncodeToString(b)
}

// DeleteBucket removes a test's bucket (in domain, "" for none); errors
// are ignored: the bucket is in memory and goes with the server anyway.
func DeleteBucket(url, bucket, domain string) {
	nc, err := nats.Connect(url, nats.Timeout(2*time.Second))
	if err != nil {
		return
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if domain != "" {
		js, err = jetstream.NewWithDomain(nc, domain)
	}
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	_ = js.DeleteKeyValue(ctx, bucket)
}

// Server is a nats-server process of a test's own, on loopback, with
// JetStream in a temporary directory. Stopped at the end of the test.
type Server struct {
	t      testing.TB
	Port   int    // client port
	Leaf   int    // leaf node port (a hub), or 0
	URL    string // nats://127.0.0.1:Port
	conf   string
	mu     sync.Mutex
	cmd    *exec.Cmd
	logs   *bytes.Buffer
	exited chan struct{}
}

// ServerOptions shape a test server.
type ServerOptions struct {
	Name   string // server_name
	Domain string // JetStream domain ("" = none)
	Hub    bool   // accept leaf node connections (Server.Leaf is the port)
	LeafOf *Server
}

// StartServer starts nats-server -js with the options; it fails (CI) or
// skips the test when the binary is missing.
func StartServer(t testing.TB, o ServerOptions) *Server {
	t.Helper()
	bin, err := exec.LookPath("nats-server")
	if err != nil {
		unavailable(t, "nats-server is not installed: %v", err)
		return nil
	}
	dir := t.TempDir()
	s := &Server{t: t, Port: sipptest.FreeTCPPort(t)}
	s.URL = "nats://127.0.0.1:" + strconv.Itoa(s.Port)
	if o.Name == "" {
		o.Name = "test-" + strconv.Itoa(s.Port)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "listen: 127.0.0.1:%d\nserver_name: %s\n", s.Port, o.Name)
	fmt.Fprintf(&b, "jetstream { store_dir: %q", filepath.Join(dir, "js"))
	if o.Domain != "" {
		fmt.Fprintf(&b, ", domain: %s", o.Domain)
	}
	b.WriteString(" }\n")
	if o.Hub {
		s.Leaf = sipptest.FreeTCPPort(t)
		fmt.Fprintf(&b, "leafnodes { listen: \"127.0.0.1:%d\" }\n", s.Leaf)
	}
	if o.LeafOf != nil {
		fmt.Fprintf(&b, "leafnodes { remotes = [ { url: \"nats://127.0.0.1:%d\" } ] }\n", o.LeafOf.Leaf)
	}
	s.conf = filepath.Join(dir, "server.conf")
	if err := os.WriteFile(s.conf, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	s.start(bin)
	t.Cleanup(s.Kill)
	return s
}

func (s *Server) start(bin string) {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.logs = &bytes.Buffer{}
	s.cmd = exec.Command(bin, "-c", s.conf)
	s.cmd.Stdout, s.cmd.Stderr = s.logs, s.logs
	if err := s.cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	s.exited = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) { _ = cmd.Wait(); close(done) }(s.cmd, s.exited)
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(s.Port), time.Second)
		if err == nil {
			_ = c.Close()
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("nats-server did not open port %d: %v", s.Port, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Kill stops the server with SIGKILL and waits for it to exit.
func (s *Server) Kill() {
	s.mu.Lock()
	cmd, done := s.cmd, s.exited
	s.mu.Unlock()
	if cmd == nil || cmd.Process == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-done
}

// Restart starts the server again on the same ports and store directory.
func (s *Server) Restart() {
	s.t.Helper()
	s.Kill()
	bin, _ := exec.LookPath("nats-server")
	s.start(bin)
}
