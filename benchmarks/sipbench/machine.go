package sipbench

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"

	"github.com/sipasync/sipasync/internal/sipptest"
)

// Machine describes where a run took place (no host names or paths).
type Machine struct {
	Cores  int     `json:"cores"`
	CPU    string  `json:"cpu,omitempty"`
	MemGiB float64 `json:"mem_gib,omitempty"`
	OS     string  `json:"os"`
	Go     string  `json:"go"`
	SIPp   string  `json:"sipp,omitempty"`
	Kernel string  `json:"kernel,omitempty"`
	// Kamailio is the installed kamailio's version ("" if none).
	Kamailio string `json:"kamailio,omitempty"`
	// LoadAvg is the 1, 5 and 15 minute load average when described:
	// other work on a shared machine shows here.
	LoadAvg string `json:"load_avg,omitempty"`
	// SharedCores: SIPp runs on the same cores as the proxy.
	SharedCores bool `json:"sipp_on_same_cores"`
}

// DescribeMachine reads the CPU model and memory size from /proc.
func DescribeMachine() Machine {
	m := Machine{Cores: runtime.NumCPU(), OS: runtime.GOOS + "/" + runtime.GOARCH, Go: runtime.Version(), SharedCores: true}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "MemTotal:"); ok {
				f := strings.Fields(v)
				if len(f) > 0 {
					kb, _ := strconv.ParseFloat(f[0], 64)
					m.MemGiB = float64(int(kb/(1<<20)*10+0.5)) / 10
				}
			}
		}
	}
	if v, err := sipptest.Version(); err == nil {
		m.SIPp = v.Version
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		if f := strings.Fields(string(b)); len(f) >= 3 {
			m.LoadAvg = strings.Join(f[:3], " ")
		}
	}
	m.Kamailio = KamailioVersion()
	return m
}

// String is the machine in one line, for reports.
func (m Machine) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d cores", m.Cores)
	if m.CPU != "" {
		fmt.Fprintf(&b, " (%s)", m.CPU)
	}
	if m.MemGiB > 0 {
		fmt.Fprintf(&b, ", %.0f GiB", m.MemGiB)
	}
	fmt.Fprintf(&b, ", %s", m.OS)
	if m.Kernel != "" {
		fmt.Fprintf(&b, " (kernel %s)", m.Kernel)
	}
	fmt.Fprintf(&b, ", %s", m.Go)
	if m.Kamailio != "" {
		fmt.Fprintf(&b, ", Kamailio %s", m.Kamailio)
	}
	if m.SIPp != "" {
		fmt.Fprintf(&b, ", SIPp %s", m.SIPp)
		if m.SharedCores {
			b.WriteString(" on the same cores as the proxy")
		}
	}
	if m.LoadAvg != "" {
		fmt.Fprintf(&b, "; load average %s at the start", m.LoadAvg)
	}
	return b.String()
}
