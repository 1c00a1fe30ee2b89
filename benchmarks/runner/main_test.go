package main

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sipasync/sipasync/benchmarks/sipbench"
	"github.com/sipasync/sipasync/internal/sipptest"
)

// TestSmokeSuite runs the runner as CI does: a short, low-rate suite of
// S1 (park, 404) and S3 (registrar + relay with a SIPp UAS) against
// sipasync only, writing a results file and a chart. It checks that the
// run completes and that its JSON report parses with the expected fields;
// it asserts nothing about speed.
func TestSmokeSuite(t *testing.T) {
	if testing.Short() {
		t.Skip("starts SIPp and proxies")
	}
	sipptest.Require(t)
	_, err := sipbench.RepoRoot("")
	require.NoError(t, err, "the test runs inside the repository")
	out := t.TempDir()
	results := filepath.Join(out, "RESULTS.md")
	require.NoError(t, os.WriteFile(results, []byte("# Benchmark results\n\n## other\n\nkept\n"), 0o644))

	var stdout, stderr bytes.Buffer
	code := run([]string{"--scenario", "S1,S3", "--target", "sipasync", "--rates", "50", "--duration", "2s",
		"--out", out, "--results", results, "--max-time", "2m"}, &stdout, &stderr)
	require.Equal(t, 0, code, "stdout:\n%s\nstderr:\n%s", stdout.String(), stderr.String())

	// Progress: one line per step.
	assert.Regexp(t, `\[S1 sipasync\] +50 calls/s × 2s: achieved`, stdout.String())
	assert.Regexp(t, `\[S3 sipasync\] +50 calls/s × 2s: achieved`, stdout.String())

	m := regexp.MustCompile(`report: (\S+\.json)`).FindStringSubmatch(stdout.String())
	require.Len(t, m, 2, stdout.String())
	rep, err := sipbench.LoadReport(m[1])
	require.NoError(t, err)
	su, ok := rep.(*sipbench.Suite)
	require.True(t, ok, "want a suite report, got %T", rep)
	assert.Equal(t, "suite", su.Kind)
	assert.Len(t, su.Ladders, 2)
	assert.Positive(t, su.Machine.Cores)
	assert.NotEmpty(t, su.Machine.SIPp)
	for _, id := range []string{"S1", "S3"} {
		l := su.Ladder(id, "sipasync")
		require.NotNil(t, l, id)
		require.Len(t, l.Steps, 1, id)
		st := l.Steps[0]
		assert.Equal(t, 50.0, st.Rate, id)
		assert.Equal(t, 100, st.Calls, id)
		assert.Positive(t, st.Created, id)
		assert.Positive(t, st.AchievedRate, id)
		assert.Positive(t, st.ProxyPeakRSS, id)
		assert.Positive(t, st.RTT.Samples, id)
		assert.Equal(t, 1, st.UACs, id)
		assert.NotEmpty(t, st.ProxyCommand, id)
		assert.Equal(t, st.Calls, int(st.Successful+st.Failed+st.Unfinished), "%s: every call accounted for", id)
	}
	assert.NotNil(t, su.Ladder("S3", "sipasync").Steps[0].UAS, "S3 has a UAS")

	doc, err := os.ReadFile(results)
	require.NoError(t, err)
	assert.Contains(t, string(doc), "## other\n\nkept\n", "other sections are left alone")
	assert.Contains(t, string(doc), sectionSummary)
	assert.Contains(t, string(doc), "| S1 async 404")
	assert.Contains(t, string(doc), "<!-- sipbench:begin S3/sipasync/2s -->")
	svg, err := os.ReadFile(filepath.Join(out, "sipp-chart.svg"))
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(string(svg), "<svg "), "chart is an SVG")
	assert.Contains(t, string(svg), "S3 plain relay")
}

func TestFlagErrorsAreOneLine(t *testing.T) {
	for _, args := range [][]string{
		{"--scenario", "S9"},
		{"--scenario", "S1", "--rates", "x"},
		{"--scenario", "S1,S2", "--target", "nope"},
		{"--bogus"},
	} {
		var stdout, stderr bytes.Buffer
		code := run(append(args, "--out", t.TempDir()), &stdout, &stderr)
		assert.Equal(t, 2, code, "%v: %s", args, stderr.String())
		assert.Equal(t, 1, strings.Count(stderr.String(), "\n"), "%v: one line: %q", args, stderr.String())
	}
}

// TestSmokeFlood runs the flood run at a low rate (S2: a relay with two
// registered UASes): it completes, passes (nothing is shed at 150 calls/s),
// and writes a report that loads back and a block in the results file.
func TestSmokeFlood(t *testing.T) {
	if testing.Short() {
		t.Skip("starts SIPp and proxies")
	}
	sipptest.Require(t)
	out := t.TempDir()
	results := filepath.Join(out, "RESULTS.md")
	require.NoError(t, os.WriteFile(results, []byte("# Benchmark results\n"), 0o644))
	var stdout, stderr bytes.Buffer
	code := run([]string{"--scenario", "flood", "--flood-clean", "S2=50", "--flood-duration", "2s", "--flood-gap", "1s",
		"--flood-recovery", "2s", "--flood-baseline", "1", "--out", out, "--results", results, "--max-time", "2m"}, &stdout, &stderr)
	require.Equal(t, 0, code, "stdout:\n%s\nstderr:\n%s", stdout.String(), stderr.String())
	assert.Contains(t, stdout.String(), "[flood S2 sipasync] flood: achieved")
	m := regexp.MustCompile(`report: (\S+\.json)`).FindStringSubmatch(stdout.String())
	require.Len(t, m, 2)
	v, err := sipbench.LoadReport(m[1])
	require.NoError(t, err)
	r, ok := v.(*sipbench.FloodReport)
	require.True(t, ok, "%T", v)
	assert.True(t, r.Passed, r.Problems)
	assert.Equal(t, 150.0, r.Flood.Rate)
	// The clean rate is confirmed by a plain step first.
	require.Len(t, r.Baseline, 1)
	assert.True(t, r.Baseline[0].Clean)
	assert.Equal(t, 50.0, r.Baseline[0].Rate)
	assert.EqualValues(t, 100, r.Baseline[0].Successful)
	// The flood's clients stop at its end: calls SIPp had not placed by
	// then are not placed, and those still running a second later are
	// killed (not counted as successful; a slow run leaves more of them).
	assert.LessOrEqual(t, r.Flood.UAC.Successful, int64(300))
	assert.GreaterOrEqual(t, r.Flood.UAC.Successful, int64(200))
	assert.Zero(t, r.Flood.UAC.Failed)
	assert.EqualValues(t, 100, r.Recovery.UAC.Successful)
	require.NotNil(t, r.Recovery.UAS)
	assert.Greater(t, r.PeakRSS, int64(0))
	doc, err := os.ReadFile(results)
	require.NoError(t, err)
	assert.Contains(t, string(doc), "## Flood")
	assert.Contains(t, string(doc), "<!-- sipbench:begin flood/S2/sipasync -->")
	assert.Contains(t, string(doc), "**Passed**")
	assert.Contains(t, string(doc), "Baseline just before the flood")
}

func TestFloodFlagsRefused(t *testing.T) {
	for _, args := range [][]string{
		{"--scenario", "flood"},
		{"--scenario", "flood", "--flood-clean", "S2"},
		{"--scenario", "flood", "--flood-clean", "S2=-1"},
		{"--scenario", "flood", "--flood-clean", "S9=100"},
		{"--scenario", "flood", "--flood-clean", "S2=100", "--flood-factor", "0"},
		{"--scenario", "flood", "--flood-clean", "S2=100", "--flood-baseline", "-1"},
	} {
		var stdout, stderr bytes.Buffer
		code := run(append(args, "--out", t.TempDir()), &stdout, &stderr)
		assert.Equal(t, 2, code, "%v: %s", args, stderr.String())
		assert.Equal(t, 1, strings.Count(strings.TrimSpace(stderr.String()), "\n")+1, "%v: one line: %q", args, stderr.String())
	}
}
