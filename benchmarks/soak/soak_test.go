package main

import (
	"bytes"
	"encoding/json"
	"math"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sipasync/sipasync/internal/sipptest"
)

func TestParseMetrics(t *testing.T) {
	in := `# HELP go_goroutines Number of goroutines.
# TYPE go_goroutines gauge
go_goroutines 91
go_memstats_heap_inuse_bytes 1.5e+07
process_resident_memory_bytes 3.4e+07
sipasync_async_parks_total{kind="async_route"} 400
sipasync_async_parks_total{kind="suspend"} 12
sipasync_events_sent_total{event="E_SIP_MESSAGE",socket="rabbitmq:guest:xxxxx@127.0.0.1:5672/q a"} 7 1700000000000
`
	m, err := parseMetrics(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Sum("sipasync_async_parks_total"); got != 412 {
		t.Fatalf("parks sum %v, want 412", got)
	}
	if got := m.Sum("sipasync_async_parks"); got != 0 {
		t.Fatalf("a prefix of a name matched: %v", got)
	}
	if got := byLabel(m, "sipasync_async_parks_total", "kind"); got["suspend"] != 12 || got["async_route"] != 400 {
		t.Fatalf("by kind: %v", got)
	}
	if got := m.Sum("sipasync_events_sent_total"); got != 7 {
		t.Fatalf("a label value with a blank: %v", got)
	}
	s, err := sampleOf(m, 12.34)
	if err != nil {
		t.Fatal(err)
	}
	if s.Goroutines != 91 || s.HeapInuse != 1.5e7 || s.RSS != 3.4e7 || s.T != 12.3 {
		t.Fatalf("sample %+v", s)
	}
	delete(m, "go_goroutines")
	if _, err := sampleOf(m, 1); err == nil {
		t.Fatal("a scrape without go_goroutines gave a sample")
	}
	for _, bad := range []string{"go_goroutines", "go_goroutines x", "a{b=\"c\"} 1 2 3"} {
		if _, err := parseMetrics(strings.NewReader(bad + "\n")); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

func TestFitAndJudge(t *testing.T) {
	xs := []float64{0, 1, 2, 3, 4}
	a, b, r2 := fit(xs, []float64{1, 3, 5, 7, 9})
	if a != 1 || b != 2 || math.Abs(r2-1) > 1e-12 {
		t.Fatalf("fit: a=%v b=%v r2=%v", a, b, r2)
	}
	// A flat, noisy series and one that grows by 50 % over the run.
	var flat, leak []Sample
	for i := range 60 {
		ti := float64(i * 10)
		noise := float64(i%3-1) * 1e6
		flat = append(flat, Sample{T: ti, Goroutines: 100 + float64(i%5), HeapInuse: 20e6 + noise, HeapGoal: 20e6 + noise, RSS: 40e6 + noise})
		leak = append(leak, Sample{T: ti, Goroutines: 100 + float64(i), HeapInuse: 20e6 * (1 + 0.5*ti/600), HeapGoal: 20e6, RSS: 40e6})
	}
	for _, v := range judge("a", flat, 120, DefaultLimits) {
		if !v.OK() || v.N != 48 {
			t.Errorf("flat %s judged %+v", v.Series, v)
		}
	}
	got := map[string]bool{}
	for _, v := range judge("a", leak, 120, DefaultLimits) {
		got[v.Series] = v.Trend
	}
	if !got["goroutines"] || !got["heap_inuse"] || got["rss"] || got["heap_goal"] {
		t.Fatalf("leaking series judged %v, want goroutines and heap_inuse trending, heap_goal and rss flat", got)
	}
	for _, v := range judge("a", flat[:3], 120, DefaultLimits) {
		if v.Note == "" || v.OK() {
			t.Fatalf("no samples after the warm-up judged %+v", v)
		}
	}
}

func TestReplaceSection(t *testing.T) {
	doc := "# Results\n\n## Other\ntext\n"
	out, err := replaceSection(doc, "## Soak\n\none\n")
	if err != nil {
		t.Fatal(err)
	}
	want := doc + "\n" + markBegin + "\n## Soak\n\none\n" + markEnd + "\n"
	if out != want {
		t.Fatalf("appended:\n%q\nwant\n%q", out, want)
	}
	out2, err := replaceSection(out+"\n## After\n", "## Soak\n\ntwo")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out2, "two") || strings.Contains(out2, "one") || !strings.HasPrefix(out2, doc) || !strings.HasSuffix(out2, "\n## After\n") {
		t.Fatalf("replaced:\n%s", out2)
	}
	for _, bad := range []string{markEnd + "\n" + markBegin, markBegin + " only", markBegin + markEnd + markBegin + markEnd} {
		if _, err := replaceSection(bad, "x"); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestRedactArgsAndParseLog(t *testing.T) {
	got := redactArgs([]string{"--event", "E=rabbitmq:guest:s3cret@127.0.0.1:5672/q", "--node-id", "a"})
	if strings.Contains(strings.Join(got, " "), "s3cret") || got[1] != "E=rabbitmq:guest:xxxxx@127.0.0.1:5672/q" {
		t.Fatalf("redacted %q", got)
	}
	log := "time=x level=INFO msg=\"sipasync started\"\ntime=x level=WARN msg=\"node gone\"\n" +
		"time=x level=INFO msg=stopped unfinished=0 requests=14860 parks=2850 canceled=1350\n"
	c, warns, sample := parseLog(strings.NewReader(log))
	if c["requests"] != 14860 || c["parks"] != 2850 || c["unfinished"] != 0 || warns != 1 || len(sample) != 1 {
		t.Fatalf("counters %v, %d warnings %q", c, warns, sample)
	}
}

func TestBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--interval", "100ms"},
		{"--duration", "5s", "--interval", "2s"},
		{"--call-rate", "0"},
		{"--cancel-rate", "-1"},
		{"--warmup", "40m"},
		{"--bin", "x", "--rev", "HEAD"},
		{"extra"},
	} {
		var out, errb bytes.Buffer
		if code := run(args, &out, &errb); code != 2 {
			t.Errorf("%q: exit %d (%s), want 2", args, code, errb.String())
		}
	}
}

// requireService skips the test when addr does not answer (and fails it
// under CI, which runs the services).
func requireService(t *testing.T, name, addr string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err == nil {
		c.Close()
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("CI is set but %s at %s is not reachable: %v", name, addr, err)
	}
	t.Skipf("skipping: %s at %s: %v", name, addr, err)
}

// A short soak: the whole run (build, two nodes on NATS, events to
// RabbitMQ, SIPp on both) for 20 s with a sample every 2 s. It checks that
// the run happened, sampled and wrote a report that parses and a results
// section; it judges nothing about leaks or speed, which 20 s cannot show.
func TestShortSoak(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping the short soak in -short mode")
	}
	sipptest.Require(t)
	requireService(t, "RabbitMQ", "127.0.0.1:5672")
	requireService(t, "NATS", "127.0.0.1:4222")
	dir := t.TempDir()
	results := filepath.Join(dir, "RESULTS.md")
	if err := os.WriteFile(results, []byte("# Results\n\n## Other\nkept\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	code := run([]string{"--duration", "20s", "--interval", "2s", "--out", dir, "--results", results, "--pprof=false",
		"--call-rate", "20", "--cancel-rate", "4", "--hold-rate", "2", "--message-rate", "5", "--register-rate", "5", "--pad-users", "20"},
		&out, &errb)
	t.Logf("output:\n%s\n%s", out.String(), errb.String())
	if code != 0 && code != 1 {
		t.Fatalf("exit %d, want 0 or 1 (a verdict)", code)
	}
	b, err := os.ReadFile(filepath.Join(dir, "report.json"))
	if err != nil {
		t.Fatal(err)
	}
	var rep Report
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatalf("report.json: %v", err)
	}
	if len(rep.Nodes) != 2 || len(rep.Verdicts) != 8 {
		t.Fatalf("%d nodes, %d verdicts", len(rep.Nodes), len(rep.Verdicts))
	}
	if lines := strings.Count(out.String(), " a: gor="); lines < 8 {
		t.Fatalf("%d progress lines, want about 10", lines)
	}
	for _, n := range rep.Nodes {
		if len(n.Samples) < 8 {
			t.Fatalf("node %s: %d samples, want about 10", n.Name, len(n.Samples))
		}
		for _, s := range n.Samples {
			if s.Goroutines <= 0 || s.HeapInuse <= 0 || s.RSS <= 0 {
				t.Fatalf("node %s: empty sample %+v", n.Name, s)
			}
		}
		if n.Events.Received == 0 || n.Events.ByEvent["E_SIP_MESSAGE"] == 0 || n.Events.ByEvent["E_SOAK_TKV"] == 0 {
			t.Fatalf("node %s: events %+v", n.Name, n.Events)
		}
		for _, kind := range []string{"async_route", "async_ms_route", "async_sleep", "async_ms_sleep", "async_task_route", "suspend"} {
			if n.Parks[kind] == 0 {
				t.Fatalf("node %s: no %s park (%v)", n.Name, kind, n.Parks)
			}
		}
		if n.Exit == nil || n.Exit.Counters == nil {
			t.Fatalf("node %s: no exit line", n.Name)
		}
	}
	loads := map[string]int{}
	for _, s := range rep.SIPp {
		if s.Successful > 0 {
			loads[s.Load]++
		}
	}
	for _, l := range []string{"calls", "cancel", "hold", "message", "register"} {
		if loads[l] != 2 {
			t.Fatalf("load %s succeeded on %d nodes, want 2 (%+v)", l, loads[l], rep.SIPp)
		}
	}
	res, err := os.ReadFile(results)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(res), "# Results\n\n## Other\nkept\n") || !strings.Contains(string(res), markBegin+"\n## Soak\n") ||
		!strings.HasSuffix(string(res), markEnd+"\n") {
		t.Fatalf("results file:\n%s", res)
	}
	// Re-rendering the saved report gives the same section.
	var again bytes.Buffer
	if code := run([]string{"--from-json", filepath.Join(dir, "report.json")}, &again, &errb); code != 0 {
		t.Fatalf("--from-json: exit %d: %s", code, errb.String())
	}
	if !strings.Contains(string(res), strings.TrimRight(again.String(), "\n")) {
		t.Fatalf("--from-json rendered something else:\n%s", again.String())
	}
}
