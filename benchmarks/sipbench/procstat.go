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
	At      time.Time
	CPU     time.Duration // utime + stime, all threads
	RSS     int64         // VmRSS, bytes
	HWM     int64         // VmHWM (peak RSS since start), bytes
	Threads int
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
	return s, nil
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
	stop chan struct{}
	done chan struct{}

	mu      sync.Mutex
	first   ProcSample
	last    ProcSample
	peakRSS int64
	samples int
	err     error
}

// StartMonitor reads pid now and then every interval until Stop.
func StartMonitor(pid int, interval time.Duration) *Monitor {
	m := &Monitor{pid: pid, stop: make(chan struct{}), done: make(chan struct{})}
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
	s, err := ReadProc(m.pid)
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
	m.samples++
}

// Usage is what a Monitor measured.
type Usage struct {
	Wall       time.Duration // between the first and the last reading
	CPU        time.Duration // CPU time used in that interval
	CPUPercent float64       // CPU / Wall × 100 (100 = one core busy)
	PeakRSS    int64         // highest VmRSS polled, bytes
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
		PeakRSS: max(m.peakRSS, m.last.HWM),
		HWM:     m.last.HWM,
		LastRSS: m.last.RSS,
		Threads: m.last.Threads,
		Samples: m.samples,
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
