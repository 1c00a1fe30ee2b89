package sipbench

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// clockTicks is USER_HZ, the unit of utime/stime in /proc/PID/stat. Linux
// fixes it at 100 in its user-space ABI on every architecture.
const clockTicks = 100

// ProcSample is one reading of /proc/PID/stat and /proc/PID/status.
type ProcSample struct {
	At  time.Time
	CPU time.Duration // utime + stime, all threads
	RSS int64         // VmRSS, bytes (summed over a process tree)
	HWM int64         // VmHWM (peak RSS since start), bytes
	// PSS is the proportional set size (smaps_rollup Pss) summed over a
	// process tree: shared memory counted once in total. Only ReadTree
	// reads it.
	PSS     int64
	Threads int
	// Procs is the number of processes read (1 for ReadProc).
	Procs int
}

// ReadProc reads the CPU time and memory of process pid.
func ReadProc(pid int) (ProcSample, error) {
	s := ProcSample{At: time.Now()}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return s, err
	}
	cpu, err := parseStatCPU(stat)
	if err != nil {
		return s, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	s.CPU = cpu
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, err
	}
	s.RSS, s.HWM, s.Threads = parseStatus(status)
	s.Procs = 1
	return s, nil
}

// ReadTree reads process pid and all its descendants: CPU time, RSS, PSS
// and threads summed (HWM is the root's). Kamailio is such a tree: a main
// process and its forked children, sharing one memory segment that RSS
// would count once per process and PSS counts once.
func ReadTree(pid int) (ProcSample, error) {
	root, err := ReadProc(pid)
	if err != nil {
		return root, err
	}
	sum := root
	sum.PSS = readPSS(pid)
	for _, c := range descendants(pid) {
		s, err := ReadProc(c)
		if err != nil {
			continue // exited meanwhile
		}
		sum.CPU += s.CPU
		sum.RSS += s.RSS
		sum.PSS += readPSS(c)
		sum.Threads += s.Threads
		sum.Procs++
	}
	return sum, nil
}

// readPSS is Pss from /proc/PID/smaps_rollup in bytes (0 if unreadable).
func readPSS(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return 0
	}
	return parsePSS(b)
}

func parsePSS(b []byte) int64 {
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "Pss:"); ok {
			f := strings.Fields(v)
			if len(f) > 0 {
				n, _ := strconv.ParseInt(f[0], 10, 64)
				return n * 1024
			}
		}
	}
	return 0
}

// descendants lists the processes below pid (children, grandchildren...),
// from the parent field of every /proc/N/stat.
func descendants(pid int) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	parent := map[int]int{}
	for _, e := range ents {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", n))
		if err != nil {
			continue
		}
		if pp, ok := parseStatPPID(b); ok {
			parent[n] = pp
		}
	}
	var out []int
	in := map[int]bool{pid: true}
	for changed := true; changed; {
		changed = false
		for n, pp := range parent {
			if in[pp] && !in[n] {
				in[n] = true
				out = append(out, n)
				changed = true
			}
		}
	}
	return out
}

// parseStatPPID returns field 4 (ppid) of /proc/PID/stat.
func parseStatPPID(stat []byte) (int, bool) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 2 {
		return 0, false
	}
	n, err := strconv.Atoi(f[1])
	return n, err == nil
}

// parseStatCPU returns utime+stime from the contents of /proc/PID/stat.
// The command name (field 2) may contain spaces and parentheses, so fields
// are counted from the last ')'.
func parseStatCPU(stat []byte) (time.Duration, error) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("no ')' in stat")
	}
	f := strings.Fields(string(stat[i+1:]))
	// f[0] is field 3 (state); utime is field 14, stime field 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("short stat (%d fields)", len(f))
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("bad utime/stime %q %q", f[11], f[12])
	}
	return time.Duration(ut+st) * time.Second / clockTicks, nil
}

// parseStatus returns VmRSS and VmHWM in bytes and Threads from the
// contents of /proc/PID/status.
func parseStatus(status []byte) (rss, hwm int64, threads int) {
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			continue
		}
		switch k {
		case "VmRSS":
			rss = n * 1024
		case "VmHWM":
			hwm = n * 1024
		case "Threads":
			threads = int(n)
		}
	}
	return rss, hwm, threads
}

// Monitor polls a process's /proc entries until stopped: CPU time used
// between the first and the last reading, and the peak RSS seen.
type Monitor struct {
	pid  int
	tree bool
	stop chan struct{}
	done chan struct{}

	mu      sync.Mutex
	first   ProcSample
	last    ProcSample
	peakRSS int64
	peakPSS int64
	samples int
	err     error
}

// StartMonitor reads pid now and then every interval until Stop.
func StartMonitor(pid int, interval time.Duration) *Monitor {
	return startMonitor(pid, interval, false)
}

// StartTreeMonitor is StartMonitor for pid and its descendants (ReadTree):
// CPU and memory are summed, and PSS is read too.
func StartTreeMonitor(pid int, interval time.Duration) *Monitor {
	return startMonitor(pid, interval, true)
}

func startMonitor(pid int, interval time.Duration, tree bool) *Monitor {
	m := &Monitor{pid: pid, tree: tree, stop: make(chan struct{}), done: make(chan struct{})}
	m.poll()
	go func() {
		defer close(m.done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-m.stop:
				return
			case <-t.C:
				m.poll()
			}
		}
	}()
	return m
}

func (m *Monitor) poll() {
	read := ReadProc
	if m.tree {
		read = ReadTree
	}
	s, err := read(m.pid)
	m.mu.Lock()
	defer m.mu.Unlock()
	if err != nil {
		if m.samples == 0 {
			m.err = err
		}
		return // the process has exited: keep the last reading
	}
	if m.samples == 0 {
		m.first = s
	}
	m.last = s
	m.peakRSS = max(m.peakRSS, s.RSS)
	m.peakPSS = max(m.peakPSS, s.PSS)
	m.samples++
}

// Usage is what a Monitor measured.
type Usage struct {
	Wall       time.Duration // between the first and the last reading
	CPU        time.Duration // CPU time used in that interval
	CPUPercent float64       // CPU / Wall × 100 (100 = one core busy)
	PeakRSS    int64         // highest VmRSS polled, bytes
	PeakPSS    int64         // highest PSS polled (tree monitors), bytes
	Procs      int           // processes at the last reading
	HWM        int64         // VmHWM at the last reading, bytes
	LastRSS    int64
	Threads    int // at the last reading
	Samples    int
}

// Stop takes a last reading (if the process is still there), stops polling
// and returns the usage.
func (m *Monitor) Stop() (Usage, error) {
	close(m.stop)
	<-m.done
	m.poll()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.samples == 0 {
		return Usage{}, m.err
	}
	u := Usage{
		Wall:    m.last.At.Sub(m.first.At),
		CPU:     m.last.CPU - m.first.CPU,
		PeakRSS: m.peakRSS,
		PeakPSS: m.peakPSS,
		Procs:   m.last.Procs,
		HWM:     m.last.HWM,
		LastRSS: m.last.RSS,
		Threads: m.last.Threads,
		Samples: m.samples,
	}
	if !m.tree {
		// VmHWM catches a peak between two polls.
		u.PeakRSS = max(u.PeakRSS, m.last.HWM)
	}
	if u.Wall > 0 {
		u.CPUPercent = 100 * u.CPU.Seconds() / u.Wall.Seconds()
	}
	return u, nil
}

// pidByCwd finds the process whose working directory is dir (sipptest runs
// each SIPp in its own work directory). It returns 0 if there is none.
func pidByCwd(dir string) int {
	want, err := filepath.EvalSymlinks(dir)
	if err != nil {
		want = dir
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid)); err == nil && cwd == want {
			return pid
		}
	}
	return 0
}
