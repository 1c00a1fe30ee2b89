package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Metrics is one scrape of a proxy's /metrics: each sample line's value by
// its name with labels as written ("go_goroutines",
// `sipasync_async_parks_total{kind="suspend"}`).
type Metrics map[string]float64

// parseMetrics reads the Prometheus text exposition format. Comment lines
// are skipped; a line that is not "NAME[{LABELS}] VALUE [TIMESTAMP]" is an
// error.
func parseMetrics(r io.Reader) (Metrics, error) {
	m := Metrics{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		// Label values may hold blanks: the value follows the closing brace.
		key, rest := line, ""
		if i := strings.LastIndexByte(line, '}'); i >= 0 {
			key, rest = line[:i+1], strings.TrimSpace(line[i+1:])
		} else if i := strings.IndexByte(line, ' '); i >= 0 {
			key, rest = line[:i], strings.TrimSpace(line[i+1:])
		}
		fields := strings.Fields(rest)
		if key == "" || len(fields) == 0 || len(fields) > 2 {
			return nil, fmt.Errorf("metrics line %d: want NAME VALUE, got %q", n, line)
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			return nil, fmt.Errorf("metrics line %d: %w", n, err)
		}
		m[key] = v
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	return m, nil
}

// Sum adds up every sample of the metric name, whatever its labels.
func (m Metrics) Sum(name string) float64 {
	var s float64
	for k, v := range m {
		if k == name || (strings.HasPrefix(k, name) && len(k) > len(name) && k[len(name)] == '{') {
			s += v
		}
	}
	return s
}

// Has reports whether the metric name is present with any labels.
func (m Metrics) Has(name string) bool {
	for k := range m {
		if k == name || (strings.HasPrefix(k, name) && len(k) > len(name) && k[len(name)] == '{') {
			return true
		}
	}
	return false
}

// scrape fetches http://addr/metrics.
func scrape(ctx context.Context, client *http.Client, addr string) (Metrics, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("scrape %s: %w", addr, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("scrape %s: %s", addr, resp.Status)
	}
	return parseMetrics(resp.Body)
}

// Sample is one node's state at one instant of the run.
type Sample struct {
	// T is the time since the load started, in seconds.
	T float64 `json:"t"`
	// Goroutines is go_goroutines.
	Goroutines float64 `json:"goroutines"`
	// HeapInuse and HeapAlloc are go_memstats_heap_inuse_bytes and
	// go_memstats_heap_alloc_bytes.
	HeapInuse float64 `json:"heap_inuse_bytes"`
	HeapAlloc float64 `json:"heap_alloc_bytes"`
	// HeapGoal is go_memstats_next_gc_bytes: the heap size at which the
	// next GC starts, proportional to the heap live after the last one
	// (the smoothest view of the live heap).
	HeapGoal float64 `json:"heap_goal_bytes"`
	// RSS is process_resident_memory_bytes.
	RSS float64 `json:"rss_bytes"`
	// Live, Parked and Relays are the transaction table's live and parked
	// transactions and the relays waiting for a final response.
	Live   float64 `json:"live"`
	Parked float64 `json:"parked"`
	Relays float64 `json:"active_relays"`
	// Requests is the running total of requests taken.
	Requests float64 `json:"requests_total"`
	// EventsSent is the running total of events the transport
	// subscribers handed to RabbitMQ.
	EventsSent float64 `json:"events_sent_total"`
	// Received is the running total of this node's events the consumer
	// took from its queue.
	Received int64 `json:"events_received"`
}

// sampleOf extracts a Sample from a scrape. Missing runtime series are an
// error: without them the soak cannot judge anything.
func sampleOf(m Metrics, t float64) (Sample, error) {
	for _, name := range []string{"go_goroutines", "go_memstats_heap_inuse_bytes", "process_resident_memory_bytes"} {
		if _, ok := m[name]; !ok {
			return Sample{}, fmt.Errorf("metrics: %s missing", name)
		}
	}
	return Sample{
		T:          math.Round(t*10) / 10,
		Goroutines: m["go_goroutines"],
		HeapInuse:  m["go_memstats_heap_inuse_bytes"],
		HeapAlloc:  m["go_memstats_heap_alloc_bytes"],
		HeapGoal:   m["go_memstats_next_gc_bytes"],
		RSS:        m["process_resident_memory_bytes"],
		Live:       m.Sum("sipasync_transaction_live"),
		Parked:     m.Sum("sipasync_transaction_parked"),
		Relays:     m.Sum("sipasync_sipproxy_active_relays"),
		Requests:   m.Sum("sipasync_sipproxy_requests_total"),
		EventsSent: m.Sum("sipasync_events_sent_total"),
	}, nil
}

// counterNames are the counters copied into a node's report at the end:
// what was done, the drops and refusals the mix causes on purpose, and the
// loss counters.
var counterNames = append([]string{
	"sipasync_sipproxy_requests_total",
	"sipasync_sipproxy_relays_total",
	"sipasync_async_parks_total",
	"sipasync_async_resumes_total",
	"sipasync_async_data_tasks_total",
	"sipasync_async_tkv_total",
	"sipasync_events_raised_total",
	"sipasync_events_sent_total",
	"sipasync_transport_published_total",
	"sipasync_transport_confirmed_total",
	"sipasync_devicestate_changes_total",
	"sipasync_sipproxy_dropped_total",
	"sipasync_sipproxy_stray_responses_total",
	"sipasync_transaction_canceled_total",
	"sipasync_transaction_late_cancels_total",
	"sipasync_transaction_stale_refused_total",
	"sipasync_transaction_ended_refused_total",
	"sipasync_async_resume_refused_total",
	"sipasync_transport_reconnects_total",
	"sipasync_devicestate_publish_errors_total",
}, lossCounters...)

// lossCounters are the counters that must stay 0 in a clean soak: each is
// work refused or lost, not an expected outcome of the mix (stray ACKs
// dropped on purpose, CANCELed transactions, resumes refused after a
// CANCEL are expected).
var lossCounters = []string{
	"sipasync_sipproxy_no_reply_total",
	"sipasync_sipproxy_panics_total",
	"sipasync_sipproxy_rejected_total",
	"sipasync_sipproxy_relay_rejected_total",
	"sipasync_transaction_expired_total",
	"sipasync_transaction_rejected_total",
	"sipasync_async_resume_rejected_total",
	"sipasync_async_data_rejected_total",
	"sipasync_async_tkv_rejected_total",
	"sipasync_workergroups_rejected_total",
	"sipasync_workergroups_panicked_total",
	"sipasync_eventbus_dropped_total",
	"sipasync_eventbus_panics_total",
	"sipasync_events_refused_total",
	"sipasync_events_failed_total",
	"sipasync_events_dropped_total",
	"sipasync_transport_dropped_total",
}

// counters picks counterNames out of a scrape (summed over labels; absent
// ones are left out).
func counters(m Metrics) map[string]float64 {
	out := map[string]float64{}
	for _, n := range counterNames {
		if m.Has(n) {
			out[n] = m.Sum(n)
		}
	}
	return out
}

// byLabel returns the samples of name by the value of one label, e.g.
// parks by kind.
func byLabel(m Metrics, name, label string) map[string]float64 {
	out := map[string]float64{}
	prefix := name + "{"
	for k, v := range m {
		if !strings.HasPrefix(k, prefix) {
			continue
		}
		for _, kv := range strings.Split(strings.TrimSuffix(k[len(prefix):], "}"), ",") {
			if lk, lv, ok := strings.Cut(kv, "="); ok && lk == label {
				out[strings.Trim(lv, `"`)] += v
			}
		}
	}
	return out
}
