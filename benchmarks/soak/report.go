package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"time"

	"github.com/sipasync/sipasync/benchmarks/sipbench"
)

// Report is everything a soak run measured; saved as report.json and
// rendered as the Soak section of RESULTS.md.
type Report struct {
	Command     string           `json:"command"`
	Commit      string           `json:"commit,omitempty"`
	Started     time.Time        `json:"started"`
	LoadStarted time.Time        `json:"load_started"`
	Ended       time.Time        `json:"ended"`
	Duration    string           `json:"duration"`
	Interval    string           `json:"interval"`
	Warmup      string           `json:"warmup"`
	Limits      Limits           `json:"limits"`
	Rates       Rates            `json:"rates_per_node"`
	PadUsers    int              `json:"pad_users"`
	ParkUsers   []string         `json:"park_users"`
	Machine     sipbench.Machine `json:"machine"`
	Nodes       []*NodeReport    `json:"nodes"`
	SIPp        []SippTotals     `json:"sipp"`
	Verdicts    []Verdict        `json:"verdicts"`
	// Progress is SIPp's running totals at each sample.
	Progress []Progress `json:"progress,omitempty"`
	// Stalls are the times the runner's own 100 ms ticker woke more than
	// a second late: the machine (shared) did not run it.
	Stalls      []Stall  `json:"stalls,omitempty"`
	Notes       []string `json:"notes,omitempty"`
	Interrupted bool     `json:"interrupted,omitempty"`
	Pass        bool     `json:"pass"`
	Problems    []string `json:"problems,omitempty"`
	// RunProblems are what went wrong while running (a node gone, a
	// scrape failed); judge adds them to Problems.
	RunProblems []string `json:"run_problems,omitempty"`
}

// Progress is the SIPp totals of all load generators at one sample.
type Progress struct {
	T      float64 `json:"t"`
	Calls  int64   `json:"calls"`
	Failed int64   `json:"failed"`
}

// Stall is one late wake-up of the runner's ticker.
type Stall struct {
	T   float64 `json:"t"`     // since the load started (s)
	Gap float64 `json:"gap_s"` // time between the two wake-ups (s)
}

// NodeReport is one node's part of the report.
type NodeReport struct {
	Name         string             `json:"name"`
	Args         []string           `json:"args"`
	Samples      []Sample           `json:"samples"`
	ScrapeErrors int                `json:"scrape_errors,omitempty"`
	Counters     map[string]float64 `json:"counters"`
	Parks        map[string]float64 `json:"parks_by_kind"`
	Events       EventTotals        `json:"events"`
	Exit         *Exit              `json:"exit,omitempty"`
}

// judge fills Verdicts, Pass and Problems.
func (r *Report) judge() {
	warm, _ := time.ParseDuration(r.Warmup)
	r.Verdicts = nil
	r.Problems = slices.Clone(r.RunProblems)
	for _, n := range r.Nodes {
		for _, v := range judge(n.Name, n.Samples, warm.Seconds(), r.Limits) {
			r.Verdicts = append(r.Verdicts, v)
			switch {
			case v.Note != "":
				r.Problems = append(r.Problems, fmt.Sprintf("node %s %s: %s", v.Node, v.Series, v.Note))
			case v.Trend:
				r.Problems = append(r.Problems, fmt.Sprintf("node %s %s trends: +%s over %s (limit %s)",
					v.Node, v.Series, fmtSeries(v.Series, v.Rise), fmtSpan(v.Span), fmtSeries(v.Series, v.Limit)))
			}
		}
		for _, c := range lossCounters {
			if n.Counters[c] > 0 {
				r.Problems = append(r.Problems, fmt.Sprintf("node %s: %s = %.0f", n.Name, c, n.Counters[c]))
			}
		}
		if n.Events.Lost > 0 {
			r.Problems = append(r.Problems, fmt.Sprintf("node %s: %.0f events confirmed by the broker never arrived", n.Name, n.Events.Lost))
		}
		if n.Exit != nil && (n.Exit.Code != 0 || n.Exit.Killed) {
			r.Problems = append(r.Problems, fmt.Sprintf("node %s: exit status %d (killed=%v)", n.Name, n.Exit.Code, n.Exit.Killed))
		}
		if n.Exit != nil && n.Exit.Counters["unfinished"] > 0 {
			r.Problems = append(r.Problems, fmt.Sprintf("node %s: %d transactions unfinished at the drain", n.Name, n.Exit.Counters["unfinished"]))
		}
	}
	for _, t := range r.SIPp {
		if t.Failed > 0 {
			r.Problems = append(r.Problems, fmt.Sprintf("SIPp %s on node %s: %d of %d failed", t.Load, t.Node, t.Failed, t.Created))
		}
		if t.Error != "" {
			r.Problems = append(r.Problems, fmt.Sprintf("SIPp %s on node %s: %s", t.Load, t.Node, t.Error))
		}
		if t.Successful == 0 {
			r.Problems = append(r.Problems, fmt.Sprintf("SIPp %s on node %s: no call succeeded", t.Load, t.Node))
		}
	}
	if r.Interrupted {
		r.Problems = append(r.Problems, "interrupted")
	}
	r.Pass = len(r.Problems) == 0
}

// Markdown renders the Soak section, markers excluded.
func (r *Report) Markdown() string {
	var b strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	p("## Soak\n\n")
	verdict := "**PASS**: every series flat, no call failed, no event lost, no loss counter moved"
	if !r.Pass {
		verdict = "**FAIL**: " + strings.Join(r.Problems, "; ")
	}
	p("%s.\n\n", verdict)
	for _, n := range r.Notes {
		p("Note: %s\n\n", n)
	}
	if w := r.failureWindow(); w != "" {
		p("%s\n\n", w)
	}
	if len(r.Stalls) > 0 {
		longest := r.Stalls[0]
		for _, st := range r.Stalls {
			if st.Gap > longest.Gap {
				longest = st
			}
		}
		p("The machine stalled %d times during the load: the runner's 100 ms ticker woke more than 1 s late "+
			"(longest %.1f s, at %s).\n\n", len(r.Stalls), longest.Gap, fmtSpan(longest.T))
	}
	p("    %s\n\n", r.Command)
	m := r.Machine
	p("Run %s (UTC)", r.LoadStarted.Format("2006-01-02 15:04"))
	if r.Commit != "" {
		p(" at commit `%s`", r.Commit)
	}
	p("; load for %s, a sample of each node every %s. Machine: %s", r.Duration, r.Interval, m.String())
	p(". SIPp, RabbitMQ, NATS and other work share the same cores.\n\n")

	perNode := r.Rates.total()
	p("**Mix**, per node (two nodes, `benchmarks/soak/soakproxy`, sharing device state over NATS JetStream and "+
		"shipping `E_SIP_MESSAGE` and `E_SOAK_TKV` to a RabbitMQ queue of their own that the runner consumes), "+
		"%.0f requests/s per node, %.0f in all:\n\n", perNode, perNode*float64(len(r.Nodes)))
	p("| load | rate/s | SIPp scenario | what the proxy does |\n|---|---|---|---|\n")
	p("| calls | %g | `benchmarks/sipp/soak_uac_call.xml` | one Request-URI user after the other: %s; each parks (or hands off work) that way, then is relayed to a registered `uas_call.xml` with record-route: INVITE/200/ACK, BYE/200 |\n",
		r.Rates.Calls, "`"+strings.Join(r.ParkUsers, "`, `")+"`")
	p("| cancel | %g | `uac_cancel.xml` | relayed to a ringing `uas_ring.xml`, CANCELed after 200 ms: 487 |\n", r.Rates.Cancel)
	p("| hold | %g | `uac_cancel_parked.xml` | parked 10 s (`async.MsRoute`), CANCELed after 200 ms while parked: 487; the later resume is refused |\n", r.Rates.Hold)
	p("| message | %g | `uac_message_200.xml` | raises `E_SIP_MESSAGE` (to RabbitMQ), answered 200 |\n", r.Rates.Message)
	p("| register | %g | `register_inf.xml` | refreshes the %d users above (600 s) and %d more with 60–90 s expiries, one cycle every %.0f s: most of those expire before their turn comes again |\n\n",
		r.Rates.Register, len(r.ParkUsers)+1, r.PadUsers, float64(len(r.ParkUsers)+1+r.PadUsers)/max(r.Rates.Register, 1e-9))
	p("Park kinds: `msroute` = `async.MsRoute` 50 ms, `route` = `async.Route` 1 s, `mssleep`/`sleep` = `async.MsSleep` 50 ms / `async.Sleep` 1 s " +
		"with the relay as continuation, `task` = `async.TaskRoute`, `suspend` = `async.Suspend` resumed by `Engine.Resume` 100 ms later, " +
		"`taskdata` = `async.TaskData` (no park), `tkv` = `async.TKVEmit` (no park; `event_route[core:tkv]` raises `E_SOAK_TKV`).\n\n")

	p("**Rule.** Samples in the first %s are warm-up and not judged. For each node and series a least-squares line is fitted "+
		"to the rest; the series **trends** (a leak) when the line rises by more than %.0f %% of the series' mean over the judged span "+
		"(goroutines: more than %.0f, or %.0f %% of the mean if larger). The rise is slope × span.\n\n",
		r.Warmup, r.Limits.MemFrac*100, r.Limits.Goroutines, r.Limits.MemFrac*100)

	p("| node | series | samples | mean | min – max | first → last window | slope per hour | rise over span | limit | R² | verdict |\n|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, v := range r.Verdicts {
		verdict := "flat"
		switch {
		case v.Note != "":
			verdict = v.Note
		case v.Trend:
			verdict = "**TREND**"
		}
		p("| %s | %s | %d | %s | %s – %s | %s → %s | %s | %s over %s | %s | %.2f | %s |\n", v.Node, v.Series, v.N,
			fmtSeries(v.Series, v.Mean), fmtSeries(v.Series, v.Min), fmtSeries(v.Series, v.Max),
			fmtSeries(v.Series, v.First), fmtSeries(v.Series, v.Last),
			signed(fmtSeries(v.Series, v.SlopePerHour), v.SlopePerHour), signed(fmtSeries(v.Series, v.Rise), v.Rise), fmtSpan(v.Span),
			fmtSeries(v.Series, v.Limit), v.R2, verdict)
	}
	p("\nThe windows are the first and the last fifth of the judged span (at most 5 minutes each); " +
		"`heap_goal` is the heap size at which the next GC starts (`go_memstats_next_gc_bytes`), " +
		"proportional to the heap still live after the last GC.\n\n")

	p("**Samples**, one row per minute (the sample nearest each whole minute; all %d samples per node are in the run's `report.json`). "+
		"Goroutines, heap in use (MiB), RSS (MiB), transactions live / parked:\n\n", r.sampleCount())
	p("| t |")
	for _, n := range r.Nodes {
		p(" %s goroutines | %s heap | %s RSS | %s live/parked |", n.Name, n.Name, n.Name, n.Name)
	}
	p("\n|---|")
	for range r.Nodes {
		p("---|---|---|---|")
	}
	p("\n")
	for _, row := range r.minuteRows() {
		p("| %s |", fmtSpan(row.t))
		for _, s := range row.samples {
			if s == nil {
				p(" – | – | – | – |")
				continue
			}
			p(" %.0f | %.1f | %.1f | %.0f / %.0f |", s.Goroutines, mib(s.HeapInuse), mib(s.RSS), s.Live, s.Parked)
		}
		p("\n")
	}
	p("\n")

	p("**SIPp** (calls still under way when the load was stopped are unfinished, not failed):\n\n")
	p("| node | load | rate/s | calls | successful | failed | unfinished | retransmissions |\n|---|---|---|---|---|---|---|---|\n")
	var tc, ts, tf int64
	for _, t := range r.SIPp {
		p("| %s | %s | %g | %d | %d | %d | %d | %d |\n", t.Node, t.Load, t.Rate, t.Created, t.Successful, t.Failed, t.Unfinished, t.Retrans)
		tc, ts, tf = tc+t.Created, ts+t.Successful, tf+t.Failed
	}
	p("| all | | | %d | %d | %d | | |\n\n", tc, ts, tf)

	p("**Events** (RabbitMQ, one queue per node; raised by routes, sent by the transport subscriber, confirmed by the broker, received by the runner):\n\n")
	p("| node | raised | sent | confirmed | received | by event | duplicates | lost |\n|---|---|---|---|---|---|---|---|\n")
	for _, n := range r.Nodes {
		e := n.Events
		var by []string
		for _, k := range sortedKeys(e.ByEvent) {
			by = append(by, fmt.Sprintf("%s %d", k, e.ByEvent[k]))
		}
		p("| %s | %.0f | %.0f | %.0f | %d | %s | %d | %.0f |\n", n.Name, e.Raised, e.Sent, e.Confirmed, e.Received, strings.Join(by, ", "), e.Duplicates, e.Lost)
	}
	p("\n")

	p("**Parks and counted drops** per node (from `/metrics` before the drain, and the exit line):\n\n")
	p("| node | parks by kind | counted drops and refusals (non-zero) | exit line |\n|---|---|---|---|\n")
	for _, n := range r.Nodes {
		var parks []string
		for _, k := range sortedKeys(n.Parks) {
			parks = append(parks, fmt.Sprintf("%s %.0f", k, n.Parks[k]))
		}
		var drops []string
		for _, c := range counterNames {
			if v := n.Counters[c]; v > 0 && isDropCounter(c) {
				drops = append(drops, fmt.Sprintf("%s %.0f", strings.TrimPrefix(c, "sipasync_"), v))
			}
		}
		if len(drops) == 0 {
			drops = []string{"none"}
		}
		exit := "–"
		if n.Exit != nil {
			var kv []string
			for _, k := range []string{"requests", "relays", "parks", "resumes", "resume_refused", "canceled", "expired", "dropped", "rejected_503", "malformed", "unfinished"} {
				if v, ok := n.Exit.Counters[k]; ok {
					kv = append(kv, fmt.Sprintf("%s=%d", k, v))
				}
			}
			exit = fmt.Sprintf("status %d; %s; %d warnings", n.Exit.Code, strings.Join(kv, " "), n.Exit.Warnings)
		}
		p("| %s | %s | %s | %s |\n", n.Name, strings.Join(parks, ", "), strings.Join(drops, ", "), exit)
	}
	p("\nExpected, not losses: `sipproxy_dropped` (stray ACKs absorbed on purpose), `transaction_canceled` (the CANCELed calls), " +
		"`async_resume_refused` and `transaction_stale_refused` (the hold parks' timers firing after their CANCEL).\n")
	return b.String()
}

// failureWindow says when SIPp's failures appeared, from the progress
// totals ("" when none failed or nothing was recorded).
func (r *Report) failureWindow() string {
	var prev Progress
	var first, last *Progress
	for i := range r.Progress {
		p := &r.Progress[i]
		if p.Failed > prev.Failed {
			if first == nil {
				f := prev
				first = &f
			}
			last = p
		}
		prev = *p
	}
	if first == nil {
		return ""
	}
	return fmt.Sprintf("SIPp's failures (%d at the last sample) appeared between %s and %s of the load.",
		prev.Failed, fmtSpan(first.T), fmtSpan(last.T))
}

func isDropCounter(c string) bool {
	for _, s := range []string{"dropped", "no_reply", "panics", "rejected", "stray", "expired", "canceled", "late_cancels",
		"refused", "failed", "reconnects", "errors"} {
		if strings.Contains(c, s) {
			return true
		}
	}
	return false
}

type minuteRow struct {
	t       float64
	samples []*Sample
}

// minuteRows picks, for each whole minute (and the last sample), each
// node's sample nearest to it.
func (r *Report) minuteRows() []minuteRow {
	var last float64
	for _, n := range r.Nodes {
		if k := len(n.Samples); k > 0 {
			last = max(last, n.Samples[k-1].T)
		}
	}
	var ts []float64
	for t := 60.0; t <= last+5; t += 60 {
		ts = append(ts, t)
	}
	if len(ts) == 0 || last-ts[len(ts)-1] > 5 {
		ts = append(ts, last)
	}
	var rows []minuteRow
	for _, t := range ts {
		row := minuteRow{t: t}
		for _, n := range r.Nodes {
			var best *Sample
			for i := range n.Samples {
				s := &n.Samples[i]
				if best == nil || abs(s.T-t) < abs(best.T-t) {
					best = s
				}
			}
			row.samples = append(row.samples, best)
		}
		rows = append(rows, row)
	}
	return rows
}

func (r *Report) sampleCount() int {
	n := 0
	for _, nd := range r.Nodes {
		n = max(n, len(nd.Samples))
	}
	return n
}

func abs(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}

func fmtSeries(series string, v float64) string {
	if series == "goroutines" {
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.1f MiB", mib(v))
}

func signed(s string, v float64) string {
	if v >= 0 && !strings.HasPrefix(s, "-") {
		return "+" + s
	}
	return s
}

func fmtSpan(sec float64) string {
	return (time.Duration(sec * float64(time.Second))).Round(time.Second).String()
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// Markers delimiting the Soak section in the results file.
const (
	markBegin = "<!-- soak:begin -->"
	markEnd   = "<!-- soak:end -->"
)

// writeSection replaces what lies between the soak markers of path with
// body, or appends the markers and body at the end of the file.
func writeSection(path, body string) error {
	old, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	out, err := replaceSection(string(old), body)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return os.WriteFile(path, []byte(out), 0o644)
}

func replaceSection(doc, body string) (string, error) {
	block := markBegin + "\n" + strings.TrimRight(body, "\n") + "\n" + markEnd
	i := strings.Index(doc, markBegin)
	j := strings.Index(doc, markEnd)
	switch {
	case i < 0 && j < 0:
		if doc != "" && !strings.HasSuffix(doc, "\n") {
			doc += "\n"
		}
		if doc != "" {
			doc += "\n"
		}
		return doc + block + "\n", nil
	case i < 0 || j < 0 || j < i:
		return "", fmt.Errorf("soak markers out of order or one missing")
	case strings.Count(doc, markBegin) > 1 || strings.Count(doc, markEnd) > 1:
		return "", fmt.Errorf("soak markers appear more than once")
	}
	return doc[:i] + block + doc[j+len(markEnd):], nil
}

// exportRev writes a clean copy of the repository at rev into dir (git
// archive) and returns the commit's short hash.
func exportRev(ctx context.Context, repo, rev, dir string) (string, error) {
	out, err := exec.CommandContext(ctx, "git", "-C", repo, "rev-parse", "--short=12", "--verify", rev+"^{commit}").Output()
	if err != nil {
		return "", fmt.Errorf("--rev %q: not a commit: %w", rev, err)
	}
	commit := strings.TrimSpace(string(out))
	if err := os.RemoveAll(dir); err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	archive := exec.CommandContext(ctx, "git", "-C", repo, "archive", "--format=tar", commit)
	untar := exec.CommandContext(ctx, "tar", "-x", "-C", dir)
	pipe, err := archive.StdoutPipe()
	if err != nil {
		return "", err
	}
	untar.Stdin = pipe
	if err := untar.Start(); err != nil {
		return "", err
	}
	if err := archive.Run(); err != nil {
		_ = untar.Wait()
		return "", fmt.Errorf("git archive %s: %w", commit, err)
	}
	if err := untar.Wait(); err != nil {
		return "", fmt.Errorf("untar %s: %w", commit, err)
	}
	return commit, nil
}

// gitCommit returns the short commit of the repository's HEAD, marked
// "+dirty" when tracked files differ from it.
func gitCommit(ctx context.Context, repo string) (string, error) {
	out, err := exec.CommandContext(ctx, "git", "-C", repo, "rev-parse", "--short=12", "HEAD").Output()
	if err != nil {
		return "", err
	}
	c := strings.TrimSpace(string(out))
	if st, err := exec.CommandContext(ctx, "git", "-C", repo, "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(strings.TrimSpace(string(st))) > 0 {
		c += "+dirty"
	}
	return c, nil
}
