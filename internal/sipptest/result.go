package sipptest

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Result is what one SIPp process did, read from its statistics file (the
// last, cumulative row of -trace_stat), its final screen when that file is
// missing, and its logs.
type Result struct {
	Scenario string   // scenario base name, e.g. "uac_call"
	Args     []string // sipp command-line arguments
	Dir      string   // work directory, if it was kept
	Port     int      // local SIP port, if known

	// ExitCode is SIPp's exit status: 0 all calls succeeded, 1 at least one
	// failed, 97 exit on internal command or -timeout (servers), 99 normal
	// exit without calls processed, 254 bind failure, 255 fatal error or
	// -timeout with -timeout_error; -1 if it was killed by a signal.
	ExitCode int
	// TimedOut is set when SIPp's -timeout fired.
	TimedOut bool
	Duration time.Duration // wall-clock run time

	Created    int64 // TotalCallCreated (incoming + outgoing calls)
	Successful int64 // SuccessfulCall(C)
	Failed     int64 // FailedCall(C), all reasons

	Retransmissions    int64 // Retransmissions(C), sent by SIPp
	UnexpectedMessages int64 // FailedUnexpectedMessage(C)
	TimeoutOnRecv      int64 // FailedTimeoutOnRecv(C) (-recv_timeout)
	MaxUDPRetrans      int64 // FailedMaxUDPRetrans(C)
	OutOfCallMessages  int64 // OutOfCallMsgs(C): no call matched
	DeadCallMessages   int64 // DeadCallMsgs(C): for calls already ended

	CallRate     float64       // CallRate(C), calls per second
	ResponseTime time.Duration // ResponseTime1(C): mean of RTD 1 (ms resolution)
	CallLength   time.Duration // CallLength(C): mean call length

	// ResponseTimes are the RTD 1 samples of the -trace_rtt file when
	// Options.TraceRTT was set, in the order SIPp wrote them. SIPp measures
	// in whole milliseconds.
	ResponseTimes []time.Duration

	// Stats is the last row of the statistics file by column name (e.g.
	// "FailedCallRejected(C)"), for anything not copied into a field.
	Stats map[string]string

	Stdout     string // tail of stdout (SIPp's screens; the last is the final one)
	Stderr     string // tail of stderr
	ErrorLog   string // tail of the -trace_err log (unexpected messages, warnings)
	MessageLog string // tail of the -trace_msg log, when Options.TraceMsg was set
}

// OK reports whether SIPp exited with status 0 and no call failed.
func (r *Result) OK() bool {
	return r != nil && r.ExitCode == 0 && r.Failed == 0
}

// Stat returns a column of the last statistics row, e.g.
// Stat("FailedCallRejected(C)").
func (r *Result) Stat(name string) (string, bool) {
	v, ok := r.Stats[name]
	return v, ok
}

// Percentile returns the p-th percentile (0 < p <= 100) of ResponseTimes
// (nearest-rank), or 0 when there are none.
func (r *Result) Percentile(p float64) time.Duration {
	if r == nil || len(r.ResponseTimes) == 0 {
		return 0
	}
	s := slices.Clone(r.ResponseTimes)
	slices.Sort(s)
	switch {
	case p <= 0:
		return s[0]
	case p >= 100:
		return s[len(s)-1]
	}
	rank := int(float64(len(s))*p/100+0.999999999) - 1
	rank = max(0, min(rank, len(s)-1))
	return s[rank]
}

// Summary is a one-line account of the counters.
func (r *Result) Summary() string {
	if r == nil {
		return "<no result>"
	}
	s := fmt.Sprintf("%s: exit=%d created=%d successful=%d failed=%d retrans=%d unexpected=%d "+
		"recv-timeouts=%d out-of-call=%d rate=%.1f/s rtd1=%s duration=%s",
		r.Scenario, r.ExitCode, r.Created, r.Successful, r.Failed, r.Retransmissions,
		r.UnexpectedMessages, r.TimeoutOnRecv, r.OutOfCallMessages, r.CallRate,
		r.ResponseTime, r.Duration.Round(time.Millisecond))
	if r.TimedOut {
		s += " TIMED-OUT"
	}
	if n := len(r.ResponseTimes); n > 0 {
		s += fmt.Sprintf(" rtt[n=%d p50=%s p95=%s p99=%s max=%s]", n,
			r.Percentile(50), r.Percentile(95), r.Percentile(99), r.Percentile(100))
	}
	return s
}

// Diagnostics returns everything useful to understand a failed run: the
// command line, the counters, the non-zero failure columns, and the tails
// of stderr, the error log, the message trace and the final screen.
func (r *Result) Diagnostics() string {
	if r == nil {
		return "<no sipp result>"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "==== sipp %s\n", r.Summary())
	fmt.Fprintf(&b, "command: sipp %s\n", strings.Join(r.Args, " "))
	var nz []string
	for k, v := range r.Stats {
		if strings.HasPrefix(k, "Failed") && strings.HasSuffix(k, "(C)") && v != "0" && v != "" {
			nz = append(nz, k+"="+v)
		}
	}
	if len(nz) > 0 {
		slices.Sort(nz)
		fmt.Fprintf(&b, "failure counters: %s\n", strings.Join(nz, " "))
	}
	section := func(title, body string, maxLines int) {
		body = strings.TrimSpace(body)
		if body == "" {
			return
		}
		fmt.Fprintf(&b, "---- %s\n%s\n", title, lastLines(body, maxLines))
	}
	section("stderr", r.Stderr, 30)
	section("error log", r.ErrorLog, 80)
	section("message trace (tail)", r.MessageLog, 150)
	section("final screen", finalScreen(r.Stdout), 60)
	return b.String()
}

// finalScreen returns the last statistics screen SIPp printed: from the
// last scenario screen (the one with the message table) to the end.
func finalScreen(stdout string) string {
	if i := strings.LastIndex(stdout, "Messages  Retrans"); i >= 0 {
		if j := strings.LastIndex(stdout[:i], "\n"); j >= 0 {
			// Include the lines just above the table (call counts).
			start := j
			for k := 0; k < 8 && start > 0; k++ {
				start = strings.LastIndex(stdout[:start], "\n")
			}
			return stdout[max(start, 0):]
		}
		return stdout[i:]
	}
	return stdout
}

// Column names of the statistics file. Alternatives cover other SIPp
// versions; the first present wins.
var (
	colCreated         = []string{"TotalCallCreated", "TotalCallCreated(C)"}
	colSuccessful      = []string{"SuccessfulCall(C)"}
	colFailed          = []string{"FailedCall(C)"}
	colRetrans         = []string{"Retransmissions(C)"}
	colUnexpected      = []string{"FailedUnexpectedMessage(C)"}
	colTimeoutOnRecv   = []string{"FailedTimeoutOnRecv(C)"}
	colMaxUDPRetrans   = []string{"FailedMaxUDPRetrans(C)"}
	colOutOfCall       = []string{"OutOfCallMsgs(C)"}
	colDeadCall        = []string{"DeadCallMsgs(C)"}
	colCallRate        = []string{"CallRate(C)"}
	colResponseTime    = []string{"ResponseTime1(C)"}
	colCallLength      = []string{"CallLength(C)"}
	colIncoming        = []string{"IncomingCall(C)"}
	colOutgoing        = []string{"OutgoingCall(C)"}
	defaultStatDelimit = ";"
)

// loadStats reads the statistics file: a header line of column names and
// one row per dump, each ';'-separated (with a trailing ';'). The last
// complete row is the final, cumulative one.
func (r *Result) loadStats(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("sipptest: stats: %w", err)
	}
	return r.parseStats(data)
}

func (r *Result) parseStats(data []byte) error {
	var lines []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		if l := strings.TrimRight(sc.Text(), "\r"); strings.TrimSpace(l) != "" {
			lines = append(lines, l)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("sipptest: stats: %w", err)
	}
	if len(lines) < 2 {
		return fmt.Errorf("sipptest: stats: no data rows")
	}
	header := splitStats(lines[0])
	var row []string
	for i := len(lines) - 1; i >= 1; i-- {
		if f := splitStats(lines[i]); len(f) >= len(header) {
			row = f
			break
		}
	}
	if row == nil {
		return fmt.Errorf("sipptest: stats: no complete data row")
	}
	r.Stats = make(map[string]string, len(header))
	for i, h := range header {
		if h != "" {
			r.Stats[h] = strings.TrimSpace(row[i])
		}
	}
	num := func(cols []string) int64 {
		for _, c := range cols {
			if v, ok := r.Stats[c]; ok {
				n, _ := strconv.ParseFloat(v, 64)
				return int64(n)
			}
		}
		return 0
	}
	r.Created = num(colCreated)
	if r.Created == 0 {
		r.Created = num(colIncoming) + num(colOutgoing)
	}
	r.Successful = num(colSuccessful)
	r.Failed = num(colFailed)
	r.Retransmissions = num(colRetrans)
	r.UnexpectedMessages = num(colUnexpected)
	r.TimeoutOnRecv = num(colTimeoutOnRecv)
	r.MaxUDPRetrans = num(colMaxUDPRetrans)
	r.OutOfCallMessages = num(colOutOfCall)
	r.DeadCallMessages = num(colDeadCall)
	for _, c := range colCallRate {
		if v, ok := r.Stats[c]; ok {
			r.CallRate, _ = strconv.ParseFloat(v, 64)
			break
		}
	}
	r.ResponseTime = r.statDuration(colResponseTime)
	r.CallLength = r.statDuration(colCallLength)
	return nil
}

func splitStats(line string) []string {
	f := strings.Split(line, defaultStatDelimit)
	if n := len(f); n > 0 && strings.TrimSpace(f[n-1]) == "" {
		f = f[:n-1]
	}
	return f
}

func (r *Result) statDuration(cols []string) time.Duration {
	for _, c := range cols {
		if v, ok := r.Stats[c]; ok {
			d, _ := parseSippDuration(v)
			return d
		}
	}
	return 0
}

// parseSippDuration parses SIPp's "HH:MM:SS:uuuuuu" (also "HH:MM:SS:mmm"
// and "HH:MM:SS") durations.
func parseSippDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	parts := strings.Split(s, ":")
	if len(parts) < 3 || len(parts) > 4 {
		return 0, fmt.Errorf("sipptest: bad duration %q", s)
	}
	var d time.Duration
	units := []time.Duration{time.Hour, time.Minute, time.Second}
	for i := 0; i < 3; i++ {
		n, err := strconv.ParseInt(parts[i], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("sipptest: bad duration %q: %w", s, err)
		}
		d += time.Duration(n) * units[i]
	}
	if len(parts) == 4 {
		frac := parts[3]
		n, err := strconv.ParseInt(frac, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("sipptest: bad duration %q: %w", s, err)
		}
		switch len(frac) {
		case 3:
			d += time.Duration(n) * time.Millisecond
		default:
			d += time.Duration(n) * time.Microsecond
		}
	}
	return d, nil
}

// Screen lines: "  Successful call        |        0                  |        5".
var screenRE = regexp.MustCompile(`(?im)^\s*(successful call|failed call|total calls? created)\s*\|.*?(\d+)\s*$`)

// parseScreen fills the call counters from the last screen on stdout, for
// runs that left no statistics row (e.g. SIPp killed).
func (r *Result) parseScreen(stdout string) {
	for _, m := range screenRE.FindAllStringSubmatch(stdout, -1) {
		n, _ := strconv.ParseInt(m[2], 10, 64)
		switch strings.ToLower(m[1]) {
		case "successful call":
			r.Successful = n
		case "failed call":
			r.Failed = n
		default:
			r.Created = n
		}
	}
}

// loadRTT reads -trace_rtt files: "Date_ms;response_time_ms;rtd_no" then
// one line per sample. Only RTD 1 (or the first RTD seen) is kept.
func (r *Result) loadRTT(files []string) {
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		r.ResponseTimes = append(r.ResponseTimes, parseRTT(data)...)
	}
}

func parseRTT(data []byte) []time.Duration {
	byRTD := map[string][]time.Duration{}
	first := ""
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Split(strings.TrimSpace(line), ";")
		if len(f) < 2 {
			continue
		}
		ms, err := strconv.ParseFloat(strings.TrimSpace(f[1]), 64)
		if err != nil {
			continue // header
		}
		rtd := "1"
		if len(f) >= 3 && strings.TrimSpace(f[2]) != "" {
			rtd = strings.TrimSpace(f[2])
		}
		if first == "" {
			first = rtd
		}
		byRTD[rtd] = append(byRTD[rtd], time.Duration(ms*float64(time.Millisecond)))
	}
	if s, ok := byRTD["1"]; ok {
		return s
	}
	return byRTD[first]
}

func readTail(path string, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return ""
	}
	off := int64(0)
	if st.Size() > n {
		off = st.Size() - n
	}
	b, err := io.ReadAll(io.NewSectionReader(f, off, st.Size()-off))
	if err != nil {
		return ""
	}
	s := string(b)
	if off > 0 {
		if i := strings.IndexByte(s, '\n'); i >= 0 {
			s = s[i+1:]
		}
		s = "[...]\n" + s
	}
	return s
}

func lastLines(s string, n int) string {
	s = strings.TrimRight(s, "\n")
	idx := len(s)
	for i := 0; i < n; i++ {
		j := strings.LastIndexByte(s[:idx], '\n')
		if j < 0 {
			return s
		}
		idx = j
	}
	return "[...]" + s[idx:]
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}
