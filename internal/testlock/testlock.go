// Package testlock coordinates tests in different packages (go test runs
// packages as parallel processes) that share an outside service: tests that
// use the shared RabbitMQ hold a shared lock, and a test that restarts the
// broker holds the exclusive one, so it never pulls the broker away from
// under another package's test.
package testlock

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// RabbitMQ names the lock of the broker at 127.0.0.1:5672.
const RabbitMQ = "rabbitmq"

// Shared takes the named lock shared until the test ends.
func Shared(t testing.TB, name string) { lock(t, name, syscall.LOCK_SH) }

// Exclusive takes the named lock exclusively until the test ends; it waits
// for every shared holder to finish.
func Exclusive(t testing.TB, name string) { lock(t, name, syscall.LOCK_EX) }

func lock(t testing.TB, name string, how int) {
	t.Helper()
	path := filepath.Join(os.TempDir(), "sipasync-test-"+name+".lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o666)
	if err != nil {
		t.Fatalf("testlock: %v", err)
	}
	if err := syscall.Flock(int(f.Fd()), how); err != nil {
		_ = f.Close()
		t.Fatalf("testlock: lock %s: %v", path, err)
	}
	t.Cleanup(func() { _ = f.Close() }) // closing releases the lock
}
