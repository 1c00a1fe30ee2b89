package sipptest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// BinaryName is the executable looked up on PATH. Debian and Ubuntu ship it
// in the sip-tester package.
const BinaryName = "sipp"

// EnvBinary, when set, is the path of the sipp binary to use instead of
// looking it up on PATH.
const EnvBinary = "SIPP"

// EnvScenarioDir, when set, overrides the directory Scenario resolves names
// against (by default testdata/sipp at the module root).
const EnvScenarioDir = "SIPPTEST_SCENARIOS"

// ErrNotFound is returned (wrapped) when the sipp binary cannot be found.
var ErrNotFound = errors.New("sipptest: sipp binary not found (install SIPp, e.g. the Debian package sip-tester)")

// Binary returns the path of the sipp binary: $SIPP if set, else sipp on
// PATH. The error wraps ErrNotFound.
func Binary() (string, error) {
	if p := os.Getenv(EnvBinary); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("%w: $%s=%q: %w", ErrNotFound, EnvBinary, p, err)
		}
		return p, nil
	}
	p, err := exec.LookPath(BinaryName)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrNotFound, err)
	}
	return p, nil
}

// VersionInfo describes the installed SIPp.
type VersionInfo struct {
	// Version is the dotted version, e.g. "3.6.1".
	Version string
	// Features is the build suffix, e.g. "SCTP-PCAP-RTPSTREAM". A build
	// without "TLS" cannot use the l1/ln transports.
	Features string
	// Raw is the banner line as printed by sipp -v.
	Raw string
}

// TLS reports whether this SIPp build supports the TLS transports.
func (v VersionInfo) TLS() bool { return strings.Contains(v.Features, "TLS") }

var (
	versionOnce sync.Once
	versionInfo VersionInfo
	versionErr  error
	versionRE   = regexp.MustCompile(`SIPp v?([0-9][0-9A-Za-z.~+]*?)(?:-([A-Za-z0-9-]+))?[.,]?\s*$`)
)

// Version runs sipp -v once and returns what it printed.
func Version() (VersionInfo, error) {
	versionOnce.Do(func() {
		bin, err := Binary()
		if err != nil {
			versionErr = err
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		// sipp -v exits non-zero on some versions; only the output matters.
		out, _ := exec.CommandContext(ctx, bin, "-v").CombinedOutput()
		versionInfo, versionErr = parseVersion(string(out))
	})
	return versionInfo, versionErr
}

func parseVersion(out string) (VersionInfo, error) {
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		if !strings.Contains(line, "SIPp") {
			continue
		}
		if m := versionRE.FindStringSubmatch(line); m != nil {
			return VersionInfo{Version: m[1], Features: m[2], Raw: line}, nil
		}
	}
	return VersionInfo{}, fmt.Errorf("sipptest: cannot parse sipp -v output %q", tail(out, 200))
}

// Require returns the sipp binary path, or ends the test: it is skipped when
// sipp is missing and the CI environment variable is unset, and fails when
// CI is set (CI installs SIPp, so a missing binary there is a real error).
func Require(t testing.TB) string {
	t.Helper()
	bin, err := Binary()
	if err == nil {
		return bin
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("CI is set but SIPp is not available: %v", err)
	}
	t.Skipf("skipping: %v", err)
	return ""
}

// ScenarioDir returns the absolute path of the directory holding the
// scenario files: $SIPPTEST_SCENARIOS if set, else testdata/sipp at the
// module root (located from this source file).
func ScenarioDir() string {
	if d := os.Getenv(EnvScenarioDir); d != "" {
		if abs, err := filepath.Abs(d); err == nil {
			return abs
		}
		return d
	}
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return filepath.Join("testdata", "sipp")
	}
	return filepath.Join(filepath.Dir(file), "..", "..", "testdata", "sipp")
}

// Scenario returns the absolute path of the named scenario file in
// ScenarioDir, e.g. Scenario("uac_call.xml").
func Scenario(name string) string {
	return filepath.Clean(filepath.Join(ScenarioDir(), name))
}
