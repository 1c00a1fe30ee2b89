package sipbench

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/sipasync/sipasync/internal/sipptest"
)

// MemConfig is the parked-memory measurement: a park-then-404 proxy with a
// long park, SIPp placing Calls INVITEs at Rate, and the proxy's RSS read
// once every call is parked.
type MemConfig struct {
	Target Target
	Repo   string
	Calls  int
	Rate   float64
	Park   time.Duration
	Dir    string
	// Goroutines also counts goroutines (SIGQUIT dumps) idle and with
	// Calls parked, in two extra proxy runs.
	Goroutines bool
	Progress   io.Writer
	Command    string
}

// MemReport is the result of the parked-memory measurement.
type MemReport struct {
	Kind         string    `json:"kind"` // "parked-memory"
	Target       string    `json:"target"`
	ProxyCommand []string  `json:"proxy_command,omitempty"`
	Command      string    `json:"command"`
	Started      time.Time `json:"started"`
	Machine      Machine   `json:"machine"`
	Calls        int       `json:"calls"`
	Rate         float64   `json:"rate"`
	ParkMS       int64     `json:"park_ms"`

	// IdleRSS: the fresh proxy before any call. ParkedRSS: once SIPp has
	// created every call, Parked of them in progress (none can have been
	// answered yet: the park is longer than the creation).
	IdleRSS        int64   `json:"idle_rss_bytes"`
	ParkedRSS      int64   `json:"parked_rss_bytes"`
	Parked         int64   `json:"parked"`
	SampledAfterS  float64 `json:"sampled_after_s"` // since the first call
	BytesPerParked float64 `json:"bytes_per_parked_rss"`
	PeakRSS        int64   `json:"peak_rss_bytes"`
	EndRSS         int64   `json:"end_rss_bytes"` // after every call was answered
	ThreadsParked  int     `json:"threads_parked"`

	// From GODEBUG=gctrace=1: for each GC cycle between the first call
	// and the sample, the live heap it marked and the calls created (so
	// parked) by then. BytesPerParkedHeap is the least-squares slope of
	// live heap over parked calls; LastGC* is the last of those cycles.
	GCPoints           []GCPoint `json:"gc_points,omitempty"`
	BytesPerParkedHeap float64   `json:"bytes_per_parked_heap"`
	LastGCHeap         int64     `json:"last_gc_heap_live_bytes"`
	LastGCParked       int64     `json:"last_gc_parked"`

	// Goroutines in a SIGQUIT dump: a fresh idle proxy and one with
	// GoroutinesParkedN calls parked (0: not measured).
	GoroutinesIdle    int   `json:"goroutines_idle,omitempty"`
	GoroutinesParked  int   `json:"goroutines_parked,omitempty"`
	GoroutinesParkedN int64 `json:"goroutines_parked_n,omitempty"`

	UAC   SippCounts `json:"uac"`
	RTT   Latency    `json:"response_time"`
	Proxy Exit       `json:"proxy"`
	Notes []string   `json:"notes,omitempty"`
}

// MeasureParked runs the parked-memory measurement.
func MeasureParked(ctx context.Context, cfg MemConfig) (*MemReport, error) {
	sc, _ := LookupScenario("S1")
	out := cfg.Progress
	if out == nil {
		out = io.Discard
	}
	rep := &MemReport{Kind: "parked-memory", Target: cfg.Target.Name(), Command: cfg.Command, Started: time.Now(),
		Machine: DescribeMachine(), Calls: cfg.Calls, Rate: cfg.Rate, ParkMS: cfg.Park.Milliseconds()}
	creation := time.Duration(float64(cfg.Calls) / cfg.Rate * float64(time.Second))
	if creation+2*time.Second > cfg.Park {
		return nil, fmt.Errorf("park %s too short: creating %d calls at %g/s takes %s; the park must outlast it by 2s",
			cfg.Park, cfg.Calls, cfg.Rate, creation)
	}
	fmt.Fprintf(out, "parked memory on %s: %d calls at %g/s, park %s\n", cfg.Target.Name(), cfg.Calls, cfg.Rate, cfg.Park)

	// Phase 1: RSS idle and with every call parked; every call must then
	// be answered 404 after the park.
	res, err := parkRun(ctx, cfg, sc, filepath.Join(cfg.Dir, "rss"), true, func(inst Instance, idle, parked ProcSample, live int64, since time.Duration) {
		rep.IdleRSS, rep.ParkedRSS, rep.Parked, rep.SampledAfterS = idle.RSS, parked.RSS, live, since.Seconds()
		rep.ThreadsParked = parked.Threads
		rep.ProxyCommand = inst.Command()
		fmt.Fprintf(out, "  idle RSS %s; %d parked after %.1fs: RSS %s\n", fmtMiB(idle.RSS), live, since.Seconds(), fmtMiB(parked.RSS))
	})
	if err != nil {
		return rep, err
	}
	rep.UAC, rep.RTT, rep.Proxy, rep.PeakRSS, rep.EndRSS = res.uac, res.rtt, res.exit, res.usage.PeakRSS, res.usage.LastRSS
	if rep.Parked > 0 {
		rep.BytesPerParked = float64(rep.ParkedRSS-rep.IdleRSS) / float64(rep.Parked)
	}
	// The last GC before the sample, and how many calls were created by
	// then (SIPp's rows, interpolated).
	for _, c := range res.gc {
		if c.Wall.After(res.sampledAt) || c.Wall.Before(res.firstCall) {
			continue
		}
		if n := createdAt(res.rows, c.Wall); n > 0 {
			rep.GCPoints = append(rep.GCPoints, GCPoint{Parked: n, HeapLive: c.HeapLive})
			rep.LastGCHeap, rep.LastGCParked = c.HeapLive, n
		}
	}
	rep.BytesPerParkedHeap = slope(rep.GCPoints)
	if rep.UAC.Successful != int64(cfg.Calls) || rep.UAC.Failed != 0 {
		rep.Notes = append(rep.Notes, fmt.Sprintf("only %d of %d calls were answered 404 (%d failed)", rep.UAC.Successful, cfg.Calls, rep.UAC.Failed))
	}
	if rep.Parked < int64(cfg.Calls) {
		rep.Notes = append(rep.Notes, fmt.Sprintf("%d calls in progress at the sample, not %d", rep.Parked, cfg.Calls))
	}
	fmt.Fprintf(out, "  %.0f bytes of RSS per parked transaction; live heap %.0f bytes per parked (last GC, %d parked); %d/%d answered 404, rtt p50 %s ms\n",
		rep.BytesPerParked, rep.BytesPerParkedHeap, rep.LastGCParked, rep.UAC.Successful, cfg.Calls, fmtMS(rep.RTT.P50))

	if !cfg.Goroutines {
		return rep, ctx.Err()
	}
	// Phase 2: goroutines, from SIGQUIT dumps (which end the process):
	// a fresh idle proxy, then one with every call parked.
	idleInst, err := startMemProxy(ctx, cfg, sc, filepath.Join(cfg.Dir, "goroutines-idle"), false)
	if err != nil {
		return rep, err
	}
	time.Sleep(time.Second)
	if d, ok := idleInst.(GoroutineDumper); ok {
		if rep.GoroutinesIdle, err = d.DumpGoroutines(ctx); err != nil {
			return rep, fmt.Errorf("idle goroutine dump: %w", err)
		}
	} else {
		_, _ = idleInst.Stop(ctx)
		fmt.Fprintf(out, "  goroutines: the %s target cannot dump them\n", cfg.Target.Name())
		return rep, nil
	}
	_, err = parkRun(ctx, cfg, sc, filepath.Join(cfg.Dir, "goroutines-parked"), false, func(inst Instance, _, _ ProcSample, live int64, _ time.Duration) {
		rep.GoroutinesParkedN = live
		if n, err := inst.(GoroutineDumper).DumpGoroutines(ctx); err == nil {
			rep.GoroutinesParked = n
		} else {
			rep.Notes = append(rep.Notes, "parked goroutine dump: "+err.Error())
		}
	})
	fmt.Fprintf(out, "  goroutines: %d idle, %d with %d parked\n", rep.GoroutinesIdle, rep.GoroutinesParked, rep.GoroutinesParkedN)
	if err != nil {
		return rep, err
	}
	return rep, ctx.Err()
}

type parkRunResult struct {
	uac       SippCounts
	rtt       Latency
	exit      Exit
	usage     Usage
	gc        []GCCycle
	rows      []statsRow
	firstCall time.Time
	sampledAt time.Time
}

func startMemProxy(ctx context.Context, cfg MemConfig, sc Scenario, dir string, gctrace bool) (Instance, error) {
	return startOnFreePort(ctx, cfg.Target, ProxySpec{Scenario: sc, Dir: dir, GCTrace: gctrace, Park: cfg.Park})
}

// parkRun starts a proxy, reads its idle RSS, runs the UAC and calls sample
// once every call has been created (plus a second), while all are parked.
// With complete set the run goes on until SIPp is done; otherwise SIPp is
// stopped right after sample (which may end the proxy).
func parkRun(ctx context.Context, cfg MemConfig, sc Scenario, dir string, complete bool,
	sample func(inst Instance, idle, parked ProcSample, live int64, since time.Duration)) (*parkRunResult, error) {
	inst, err := startMemProxy(ctx, cfg, sc, dir, complete)
	if err != nil {
		return nil, err
	}
	defer inst.Stop(context.Background()) //nolint:errcheck
	time.Sleep(time.Second)
	idle, err := ReadProc(inst.PID())
	if err != nil {
		return nil, err
	}
	mon := StartMonitor(inst.PID(), 100*time.Millisecond)
	recvTimeout := cfg.Park + 10*time.Second
	p, err := sipptest.Start(ctx, sipptest.Options{
		Scenario:    ScenarioPath(cfg.Repo, sc.UAC),
		Target:      inst.Addr(),
		Service:     sc.User,
		Rate:        cfg.Rate,
		MaxCalls:    cfg.Calls,
		CallLimit:   cfg.Calls * 2,
		Pause:       -1,
		Timeout:     cfg.Park + 2*time.Duration(float64(cfg.Calls)/cfg.Rate*float64(time.Second)) + recvTimeout + 20*time.Second,
		RecvTimeout: recvTimeout,
		TraceRTT:    complete,
		ExtraArgs:   []string{"-fd", "1"},
		Dir:         dir,
		StopGrace:   3 * time.Second,
	})
	if err != nil {
		mon.Stop() //nolint:errcheck
		return nil, err
	}
	r := &parkRunResult{}
	stats := filepath.Join(p.Dir(), "stats.csv")
	started := time.Now()
	sampled := false
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	var allCreated time.Time
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-p.Done():
			break loop
		case <-tick.C:
		}
		if sampled {
			continue
		}
		rows, _ := readStatsRows(stats)
		if len(rows) == 0 {
			continue
		}
		last := rows[len(rows)-1]
		first := rows[0].Start
		if first.IsZero() {
			first = started
		}
		if allCreated.IsZero() && last.Created >= int64(cfg.Calls) {
			allCreated = time.Now()
		}
		late := time.Since(first) > cfg.Park-1500*time.Millisecond
		if (!allCreated.IsZero() && time.Since(allCreated) >= time.Second) || late {
			// Re-read the rows: the current number of calls in progress.
			if rows2, _ := readStatsRows(stats); len(rows2) > 0 {
				last = rows2[len(rows2)-1]
			}
			ps, err := ReadProc(inst.PID())
			if err != nil {
				break loop
			}
			r.firstCall, r.sampledAt = first, ps.At
			sampled = true
			sample(inst, idle, ps, last.Live, ps.At.Sub(first))
			if !complete {
				break loop
			}
		}
	}
	if !complete {
		res, _ := p.Stop()
		_ = res
		mon.Stop() //nolint:errcheck
		_, _ = inst.Stop(context.Background())
		return r, ctx.Err()
	}
	res, werr := p.Wait()
	r.usage, _ = mon.Stop()
	if tr, ok := inst.(GCTracer); ok {
		r.gc = tr.GCTrace()
	}
	r.rows, _ = readStatsRows(stats)
	r.exit, _ = inst.Stop(ctx)
	r.uac = countsOf(res, werr)
	if res != nil {
		r.rtt = latencyOf(res.ResponseTimes)
	}
	if files, _ := filepath.Glob(filepath.Join(p.Dir(), "*_rtt.csv")); len(files) > 0 {
		for _, f := range files {
			_ = os.Remove(f)
		}
	}
	if !sampled {
		return r, fmt.Errorf("SIPp ended before every call was parked: %s", strings.TrimSpace(firstLine(res.Summary())))
	}
	return r, ctx.Err()
}

// createdAt is the number of calls SIPp had created at t, interpolated
// between its periodic rows (0 before the first row).
func createdAt(rows []statsRow, t time.Time) int64 {
	if len(rows) == 0 || t.Before(rows[0].Start) {
		return 0
	}
	prevT, prevN := rows[0].Start, int64(0)
	for _, r := range rows {
		if r.Now.IsZero() {
			continue
		}
		if !t.After(r.Now) {
			span := r.Now.Sub(prevT)
			if span <= 0 {
				return r.Created
			}
			frac := float64(t.Sub(prevT)) / float64(span)
			return prevN + int64(frac*float64(r.Created-prevN))
		}
		prevT, prevN = r.Now, r.Created
	}
	return prevN
}

// GCPoint is one GC cycle during the ramp: calls parked and live heap.
type GCPoint struct {
	Parked   int64 `json:"parked"`
	HeapLive int64 `json:"heap_live_bytes"`
}

// slope is the least-squares slope of HeapLive over Parked (0 with fewer
// than two distinct points).
func slope(pts []GCPoint) float64 {
	if len(pts) < 2 {
		return 0
	}
	var sx, sy, sxx, sxy float64
	n := float64(len(pts))
	for _, p := range pts {
		x, y := float64(p.Parked), float64(p.HeapLive)
		sx, sy, sxx, sxy = sx+x, sy+y, sxx+x*x, sxy+x*y
	}
	d := n*sxx - sx*sx
	if d == 0 {
		return 0
	}
	return (n*sxy - sx*sy) / d
}

// BlockID names the report's block in RESULTS.md.
func (r *MemReport) BlockID() string { return "parked-memory/" + r.Target }

// Markdown is the measurement as a RESULTS.md block.
func (r *MemReport) Markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "**Memory per parked transaction** on %s: ", r.Target)
	if len(r.ProxyCommand) > 0 {
		fmt.Fprintf(&b, "`%s`", displayCommand(r.ProxyCommand))
	}
	fmt.Fprintf(&b, " parks every INVITE for %s; SIPp (`uac_404.xml`) places %s INVITEs at %s calls/s "+
		"with a call limit of twice that, so all of them are parked at once before the first is answered. "+
		"RSS (VmRSS) is read from the fresh proxy before the first call and again one second after SIPp "+
		"created the last call; bytes per parked = (RSS parked − RSS idle) / calls in progress. The live-heap "+
		"figure is the least-squares slope of the live heap marked by each GC cycle during the ramp "+
		"(`GODEBUG=gctrace=1`, MB resolution) over the calls parked by then.",
		time.Duration(r.ParkMS)*time.Millisecond, groupInt(int64(r.Calls)), group(r.Rate))
	if r.GoroutinesParked > 0 {
		b.WriteString(" Goroutines are counted in a SIGQUIT stack dump (`GOTRACEBACK=all`) of a fresh idle proxy and of another one with every call parked.")
	}
	b.WriteString("\n\n")
	fmt.Fprintf(&b, "    %s\n\n", r.Command)
	fmt.Fprintf(&b, "Machine: %s. Run %s.\n\n", r.Machine, r.Started.UTC().Format("2006-01-02 15:04 UTC"))
	b.WriteString("| parked | RSS idle | RSS parked | **bytes per parked (RSS)** | live heap per parked (GC slope) | live heap at last GC (parked then) | peak RSS | RSS after all answered | threads | goroutines idle / parked | answered 404 after the park |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|\n")
	gor := "—"
	if r.GoroutinesParked > 0 {
		gor = fmt.Sprintf("%d / %d (%s parked)", r.GoroutinesIdle, r.GoroutinesParked, groupInt(r.GoroutinesParkedN))
	}
	fmt.Fprintf(&b, "| %s | %s | %s | **%s** | %s | %s (%s) | %s | %s | %d | %s | %s of %s (p50 %s ms) |\n",
		groupInt(r.Parked), fmtMiB(r.IdleRSS), fmtMiB(r.ParkedRSS), groupInt(int64(r.BytesPerParked+0.5)),
		groupInt(int64(r.BytesPerParkedHeap+0.5)), fmtMiB(r.LastGCHeap), groupInt(r.LastGCParked),
		fmtMiB(r.PeakRSS), fmtMiB(r.EndRSS), r.ThreadsParked, gor,
		groupInt(r.UAC.Successful), groupInt(int64(r.Calls)), fmtMS(r.RTT.P50))
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "\nNote: %s.\n", n)
	}
	return b.String()
}
