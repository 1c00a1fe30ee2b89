package sipptest

import (
	"errors"
	"testing"

	"go.uber.org/goleak"
)

// TestMain checks that no test leaves a goroutine behind (process waiters,
// the fake proxy's reader).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestInstalledVersion(t *testing.T) {
	Require(t)
	v, err := Version()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("sipp %s (features %q, TLS %v)", v.Version, v.Features, v.TLS())
	if v.Version == "" {
		t.Fatalf("empty version from %q", v.Raw)
	}
}

func TestBinaryOverrideAndTLS(t *testing.T) {
	// Not parallel: t.Setenv.
	t.Setenv(EnvBinary, "/nonexistent/sipp")
	_, err := Binary()
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("Binary() with a bad $%s: %v, want ErrNotFound", EnvBinary, err)
	}
}

func TestTLSRefusedWithoutSupport(t *testing.T) {
	t.Parallel()
	Require(t)
	v, err := Version()
	if err != nil {
		t.Fatal(err)
	}
	if v.TLS() {
		t.Skip("this sipp supports TLS")
	}
	_, err = Start(t.Context(), Options{Scenario: Scenario("uas_call.xml"), Transport: TLS})
	if !errors.Is(err, ErrTLSUnsupported) {
		t.Fatalf("Start with TLS: %v, want ErrTLSUnsupported", err)
	}
}
