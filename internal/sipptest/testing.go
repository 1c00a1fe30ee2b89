package sipptest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// StartT starts a SIPp process for a test (typically a UAS: leave Target
// empty) and stops it in t.Cleanup. The test is skipped or failed as
// Require says when sipp is missing, and failed if SIPp cannot start.
// When the test fails, the process's diagnostics are logged at cleanup.
//
// The process is not tied to t.Context (which ends before cleanups run), so
// Stop at cleanup still collects its final statistics; it stays bounded by
// Options.Timeout.
func StartT(t testing.TB, opts Options) *Process {
	t.Helper()
	Require(t)
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	p, err := Start(context.Background(), opts)
	if err != nil {
		t.Fatalf("sipptest: start %s: %v", filepath.Base(opts.Scenario), err)
	}
	t.Cleanup(func() {
		res, err := p.Stop()
		if t.Failed() || err != nil {
			t.Logf("sipptest: background %s stopped (err=%v)\n%s", res.Scenario, err, res.Diagnostics())
		}
	})
	return p
}

// RunT runs SIPp to completion for a test (typically a UAC) and returns its
// Result. It skips or fails as Require says when sipp is missing, fails the
// test when SIPp could not run properly (see Run), and logs the result's
// diagnostics at cleanup if the test has failed. Failed calls do not fail
// the test by themselves: use RequireSuccess or check the Result.
func RunT(t testing.TB, opts Options) *Result {
	t.Helper()
	Require(t)
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	res, err := Run(contextFor(t), opts)
	if res != nil {
		LogOnFailure(t, res)
	}
	if err != nil {
		t.Fatalf("sipptest: run %s: %v\n%s", filepath.Base(opts.Scenario), err, res.Diagnostics())
	}
	return res
}

// contextFor returns t.Context() for tests and benchmarks.
func contextFor(t testing.TB) context.Context {
	if c, ok := t.(interface{ Context() context.Context }); ok {
		return c.Context()
	}
	return context.Background()
}

// LogOnFailure logs the diagnostics of each result at cleanup if the test
// has failed by then.
func LogOnFailure(t testing.TB, results ...*Result) {
	t.Helper()
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		for _, r := range results {
			t.Log(r.Diagnostics())
		}
	})
}

// RequireSuccess fails the test now unless SIPp exited with status 0 and
// exactly calls calls succeeded with none failed; the failure message
// carries the diagnostics.
func RequireSuccess(t testing.TB, r *Result, calls int) {
	t.Helper()
	if r == nil {
		t.Fatalf("sipptest: no result")
		return
	}
	if r.ExitCode == 0 && r.Failed == 0 && r.Successful == int64(calls) {
		return
	}
	t.Fatalf("sipptest: want %d successful calls and none failed\n%s", calls, r.Diagnostics())
}

// WriteInjectionFile writes a SIPp -inf CSV file in dir and returns its
// path. order is "SEQUENTIAL", "RANDOM" or "USER"; each row becomes one
// ';'-separated line ([field0], [field1], ... in scenarios).
func WriteInjectionFile(dir, name, order string, rows [][]string) (string, error) {
	var b strings.Builder
	b.WriteString(order)
	b.WriteByte('\n')
	for _, row := range rows {
		for _, f := range row {
			if strings.ContainsAny(f, ";\n") {
				return "", fmt.Errorf("sipptest: injection field %q contains ';' or a newline", f)
			}
		}
		b.WriteString(strings.Join(row, ";"))
		b.WriteByte('\n')
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		return "", fmt.Errorf("sipptest: injection file: %w", err)
	}
	return path, nil
}
