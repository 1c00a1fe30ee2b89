package sipbench

import (
	"encoding/xml"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParsePSS(t *testing.T) {
	rollup := "55d0c0a00000-7ffd1b7fe000 ---p 00000000 00:00 0                          [rollup]\n" +
		"Rss:              350640 kB\nPss:              120001 kB\nPss_Anon:           128 kB\n"
	assert.Equal(t, int64(120001*1024), parsePSS([]byte(rollup)))
	assert.Zero(t, parsePSS([]byte("Rss: 1 kB\n")))
}

func TestParseStatPPID(t *testing.T) {
	pp, ok := parseStatPPID([]byte("4547 (kamailio (x)) S 4545 4545 100 0 -1 4194560 1 0 0 0 5 3 0 0 20 0 1 0"))
	require.True(t, ok)
	assert.Equal(t, 4545, pp)
	_, ok = parseStatPPID([]byte("garbage"))
	assert.False(t, ok)
}

func TestReadTreeOfThisProcess(t *testing.T) {
	s, err := ReadTree(os.Getpid())
	require.NoError(t, err)
	assert.GreaterOrEqual(t, s.Procs, 1)
	assert.Positive(t, s.RSS)
	assert.Positive(t, s.PSS)
	_, err = ReadTree(1 << 30)
	assert.Error(t, err, "no such process")
}

func TestParseShaperLog(t *testing.T) {
	log := `time=2026-11-23T11:00:00Z level=INFO msg="shaper lateness total" n=10 early=0 rejected=0 p50_us=900 p99_us=2000 max_us=3000 intended_p50_us=100 intended_p99_us=200 intended_max_us=300
time=2026-11-23T11:00:01Z level=INFO msg="shaper lateness" n=5 p50_us=1 p99_us=2 max_us=3
time=2026-11-23T11:00:01Z level=INFO msg="shaper lateness total" n=15 early=1 rejected=2 p50_us=1180 p99_us=4080 max_us=13457 intended_p50_us=376000 intended_p99_us=743000 intended_max_us=753000
`
	st := parseShaperLog([]byte(log))
	require.NotNil(t, st)
	assert.Equal(t, ShaperStats{Delayed: 15, Early: 1, Rejected: 2, P50: 1.18, P99: 4.08, Max: 13.457,
		IntendedP50: 376, IntendedP99: 743, IntendedMax: 753}, *st, "the last cumulative line wins")
	assert.Nil(t, parseShaperLog([]byte("level=INFO msg=started\n")))
}

func TestUACCount(t *testing.T) {
	assert.Equal(t, 1, uacCount(50, 0))
	assert.Equal(t, 1, uacCount(6000, 6000))
	assert.Equal(t, 2, uacCount(6001, 6000))
	assert.Equal(t, 4, uacCount(24000, 6000))
}

func TestSippCountsAdd(t *testing.T) {
	a := SippCounts{Created: 10, Successful: 8, Failed: 1, Unfinished: 1, CPUPercent: 10,
		FailureCounters: map[string]int64{"FailedTimeoutOnRecv": 1}}
	a.add(SippCounts{Created: 5, Successful: 5, Err: "boom", CPUPercent: 5, FailureCounters: map[string]int64{"FailedTimeoutOnRecv": 2}})
	assert.Equal(t, int64(15), a.Created)
	assert.Equal(t, int64(13), a.Successful)
	assert.Equal(t, "boom", a.Err)
	assert.Equal(t, 15.0, a.CPUPercent)
	assert.Equal(t, int64(3), a.FailureCounters["FailedTimeoutOnRecv"])
}

func step(rate float64, clean bool, p99 float64, rss int64) *Step {
	calls := int(rate)
	st := &Step{Rate: rate, Calls: calls, Successful: int64(calls), Clean: clean, ProxyPeakRSS: rss,
		RTT: Latency{Samples: calls, P99: p99}}
	if !clean {
		st.Successful = int64(calls / 2)
		st.Failed = int64(calls - calls/2)
	}
	return st
}

func testSuite() *Suite {
	s1, _ := LookupScenario("S1")
	s4, _ := LookupScenario("S4")
	sa1 := &Report{Scenario: s1, Target: "sipasync", Steps: []*Step{step(1000, true, 108, 20<<20), step(2000, true, 115, 30<<20), step(4000, false, 900, 40<<20)}}
	ka1 := &Report{Scenario: s1, Target: "kamailio", Steps: []*Step{step(1000, true, 112, 0), step(2000, false, 2000, 0)}}
	sa4 := &Report{Scenario: s4, Target: "sipasync", Steps: []*Step{step(1000, true, 2008, 50<<20), step(2000, true, 2009, 60<<20)}}
	ka4 := &Report{Scenario: s4, Target: "kamailio", Steps: []*Step{step(1000, true, 2100, 0), step(2000, true, 2100, 0)}}
	su := &Suite{Kind: "suite", StepDurationS: 20, Ladders: []*Report{sa1, ka1, sa4, ka4},
		Mem: &MemReport{Parked: 100000, BytesPerParked: 3900, GoroutinesIdle: 20, GoroutinesParked: 22, GoroutinesParkedN: 100000}}
	for _, l := range su.Ladders {
		l.finish()
	}
	return su
}

func TestVerdicts(t *testing.T) {
	got := map[string]Verdict{}
	for _, v := range testSuite().Verdicts() {
		got[v.Goal] = v
	}
	s1 := got["S1: sipasync's highest clean rate ≥ 2× Kamailio's"]
	assert.True(t, s1.Known && s1.Met, "%+v", s1)
	assert.Contains(t, s1.Result, "2.00×")
	p99 := got["S1: sipasync's p99 at its clean rate ≤ park + 10 ms (110 ms)"]
	assert.True(t, p99.Known)
	assert.False(t, p99.Met, "115 ms > 110 ms")
	assert.Contains(t, p99.Result, "missed by 5 ms")
	assert.True(t, got["S1: proxy RSS at the clean rate ≤ 256 MiB"].Met)
	// S4: both clean at the top: 1× < 3×, but sipasync's limit was not
	// found, so the goal is undecided rather than missed.
	s4 := got["S4: sipasync's highest clean rate ≥ 3× Kamailio's"]
	assert.False(t, s4.Known, "%+v", s4)
	assert.Contains(t, s4.Result, "run higher rates")
	assert.True(t, got["≤ 4 KiB per parked transaction"].Met)
	assert.True(t, got["goroutines bounded (not growing with the number parked)"].Met)
}

func TestSummaryAndChart(t *testing.T) {
	su := testSuite()
	md := su.SummaryMarkdown("sipp-chart.svg")
	assert.Contains(t, md, "| S1 async 404 (park 100ms) | 2,000 | 1,000 | 2.00× (≥ 2×) | 115 ms / 112 ms |")
	assert.Contains(t, md, "| S4 many parked (park 2s) | ≥ 2,000 (ladder top) | ≥ 2,000 (ladder top) |")
	assert.Contains(t, md, "![failure % and p99")

	svg := su.ChartSVG()
	dec := xml.NewDecoder(strings.NewReader(svg))
	circles := 0
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		require.NoError(t, err, "well-formed SVG")
		if se, ok := tok.(xml.StartElement); ok && se.Name.Local == "circle" {
			circles++
		}
	}
	// One marker per step in each of the two panels.
	assert.Equal(t, 2*(3+2+2+2), circles)
}

func TestStepRatesAndParse(t *testing.T) {
	r, err := ParseRates("1000, 2k,2.5k")
	require.NoError(t, err)
	assert.Equal(t, []float64{1000, 2000, 2500}, r)
	_, err = ParseRates("x")
	assert.Error(t, err)
	r, err = StepRates(1000, 1000, 3000)
	require.NoError(t, err)
	assert.Equal(t, []float64{1000, 2000, 3000}, r)
}

func TestFailurePercent(t *testing.T) {
	st := &Step{Calls: 200, Successful: 150, DurationS: 1}
	assert.Equal(t, 25.0, st.FailurePercent())
}

func TestParseRunnable(t *testing.T) {
	v, ok := parseRunnable("9.71 7.71 5.38 8/213 15742\n")
	require.True(t, ok)
	assert.Equal(t, 8.0, v)
	_, ok = parseRunnable("9.71 7.71")
	assert.False(t, ok)
}

func TestQuietWithoutLimitDoesNotWait(t *testing.T) {
	r := Quiet{Window: 100 * time.Millisecond}.WaitQuiet(t.Context())
	assert.True(t, r.Quiet)
	assert.GreaterOrEqual(t, r.Runnable, 0.0)
}
