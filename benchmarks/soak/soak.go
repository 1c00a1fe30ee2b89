package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sipasync/sipasync/benchmarks/sipbench"
	"github.com/sipasync/sipasync/internal/sipptest"
)

// errInterrupted: the run was stopped by a signal or --max-time.
var errInterrupted = errors.New("interrupted")

// parkUsers are the Request-URI users of soak_uac_call.xml's calls, one
// per way of parking or handing off work (see soakproxy).
var parkUsers = []string{"relay", "msroute", "route", "mssleep", "sleep", "task", "suspend", "taskdata", "tkv"}

// nodeNames are the two nodes' ids.
var nodeNames = []string{"a", "b"}

// soak is one run.
type soak struct {
	o       options
	repo    string
	stamp   string
	command string
	stdout  io.Writer

	nodes    []*node
	uas      map[string][]*sipptest.Process // by node: servers
	clients  []*client
	consumer *consumer
	bucket   string
	http     *http.Client
}

// client is one SIPp load generator.
type client struct {
	node, load string
	rate       float64
	proc       *sipptest.Process
}

// SippTotals is what one SIPp process reported.
type SippTotals struct {
	Node       string  `json:"node"`
	Load       string  `json:"load"`
	Scenario   string  `json:"scenario"`
	Rate       float64 `json:"rate"`
	Created    int64   `json:"created"`
	Successful int64   `json:"successful"`
	Failed     int64   `json:"failed"`
	// Unfinished calls were still under way when SIPp was stopped at the
	// end of the run.
	Unfinished int64  `json:"unfinished"`
	Retrans    int64  `json:"retransmissions"`
	ExitCode   int    `json:"exit_code"`
	Error      string `json:"error,omitempty"`
	// FailureSample holds the first lines of SIPp's error log when a
	// call failed.
	FailureSample string `json:"failure_sample,omitempty"`
}

func (s *soak) logf(format string, args ...any) {
	fmt.Fprintf(s.stdout, format+"\n", args...)
}

// run does the whole soak and returns its report; the report is returned
// (partial, with Interrupted set) when a signal ended the run.
func (s *soak) run(ctx context.Context) (*Report, error) {
	o := s.o
	s.http = &http.Client{Timeout: 5 * time.Second}
	rep := &Report{
		Command: s.command, Started: time.Now().UTC(), Duration: o.duration.String(), Interval: o.interval.String(),
		Warmup: o.warmup.String(), Limits: o.limits, Rates: o.rates, PadUsers: o.padUsers, ParkUsers: parkUsers,
		Machine: sipbench.DescribeMachine(),
	}
	rep.Machine.Kamailio = "" // not part of this run
	defer s.cleanup()

	bin := o.bin
	switch {
	case bin != "":
		rep.Commit = "prebuilt binary"
	case o.rev != "":
		src := filepath.Join(o.out, "src")
		commit, err := exportRev(ctx, s.repo, o.rev, src)
		if err != nil {
			return nil, err
		}
		rep.Commit = commit
		s.logf("building soakproxy from %s (a clean export of %s; pprof=%v)", commit, o.rev, o.pprof)
		if bin, err = buildProxy(ctx, src, filepath.Join(o.out, "bin"), o.pprof); err != nil {
			return nil, err
		}
	default:
		if c, err := gitCommit(ctx, s.repo); err == nil {
			rep.Commit = c
		}
		s.logf("building soakproxy from the working tree (pprof=%v)", o.pprof)
		var err error
		if bin, err = buildProxy(ctx, s.repo, filepath.Join(o.out, "bin"), o.pprof); err != nil {
			return nil, err
		}
	}
	prefix := "sipasync.soak." + s.stamp + "-" + strconv.Itoa(os.Getpid())
	s.bucket = "soak-" + s.stamp + "-" + strconv.Itoa(os.Getpid())
	var err error
	if s.consumer, err = newConsumer(ctx, o.amqpURL, prefix, nodeNames); err != nil {
		return nil, err
	}
	if err := s.startNodes(ctx, bin); err != nil {
		return nil, err
	}
	for _, n := range s.nodes {
		rep.Nodes = append(rep.Nodes, &NodeReport{Name: n.name, Args: redactArgs(n.args)})
	}
	if err := s.startLoad(ctx); err != nil {
		return nil, err
	}
	rep.LoadStarted = time.Now().UTC()
	s.logf("load started: %.0f requests/s per node (%s), %s, a sample every %s, judged after %s",
		o.rates.total(), o.rates, o.duration, o.interval, o.warmup)

	stalls := watchStalls(ctx, time.Now())
	interrupted := s.sample(ctx, rep)
	rep.Stalls = stalls()
	// Stop the load: no new calls, current ones finish.
	s.logf("stopping the load")
	rep.SIPp = s.stopClients()
	select {
	case <-time.After(2 * time.Second): // the last BYEs and ACKs
	case <-ctx.Done():
	}
	// Final counters while the nodes still run, then their drains.
	for i, n := range s.nodes {
		if m, err := scrape(context.WithoutCancel(ctx), s.http, n.admin); err == nil {
			rep.Nodes[i].Counters = counters(m)
			rep.Nodes[i].Parks = byLabel(m, "sipasync_async_parks_total", "kind")
			rep.Nodes[i].Events.Raised = m.Sum("sipasync_events_raised_total")
			rep.Nodes[i].Events.Sent = m.Sum("sipasync_events_sent_total")
			rep.Nodes[i].Events.Published = m.Sum("sipasync_transport_published_total")
			rep.Nodes[i].Events.Confirmed = m.Sum("sipasync_transport_confirmed_total")
		} else {
			rep.RunProblems = append(rep.RunProblems, fmt.Sprintf("node %s: final scrape: %v", n.name, err))
		}
	}
	var wg sync.WaitGroup
	for i, n := range s.nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e := n.stop(30 * time.Second)
			rep.Nodes[i].Exit = &e
		}()
	}
	wg.Wait()
	s.waitEvents(rep)
	for i := range s.nodes {
		ev := s.consumer.Totals(nodeNames[i])
		ev.Raised, ev.Sent = rep.Nodes[i].Events.Raised, rep.Nodes[i].Events.Sent
		ev.Published, ev.Confirmed = rep.Nodes[i].Events.Published, rep.Nodes[i].Events.Confirmed
		ev.Lost = max(0, ev.Confirmed-float64(ev.Received-ev.Duplicates))
		rep.Nodes[i].Events = ev
	}
	rep.Ended = time.Now().UTC()
	rep.Interrupted = interrupted
	rep.judge()
	if interrupted {
		return rep, errInterrupted
	}
	return rep, nil
}

// startNodes starts node a and b on free loopback ports.
func (s *soak) startNodes(ctx context.Context, bin string) error {
	for _, name := range nodeNames {
		sip, err := sipptest.FreePort("udp", sipptest.LoopbackIP)
		if err != nil {
			return err
		}
		admin, err := sipptest.FreePort("tcp", sipptest.LoopbackIP)
		if err != nil {
			return err
		}
		pprof := ""
		if s.o.pprof {
			p, err := sipptest.FreePort("tcp", sipptest.LoopbackIP)
			if err != nil {
				return err
			}
			pprof = fmt.Sprintf("127.0.0.1:%d", p)
		}
		socket := "rabbitmq:" + amqpAuthority(s.o.amqpURL) + "/" + s.consumer.QueueName(name)
		args := []string{
			"--log-level", "info", "--async-ms-timer", "10", "--shutdown-timeout", "5s",
			"--cluster", s.o.natsURL, "--node-id", "soak-" + name, "--devstate-bucket", s.bucket,
			"--event", "E_SIP_MESSAGE=" + socket, "--event", "E_SOAK_TKV=" + socket,
		}
		n, err := startNode(ctx, name, bin, filepath.Join(s.o.out, "node-"+name+".log"),
			fmt.Sprintf("127.0.0.1:%d", sip), fmt.Sprintf("127.0.0.1:%d", admin), pprof, args)
		if err != nil {
			return err
		}
		s.nodes = append(s.nodes, n)
		s.logf("node %s: sip=%s admin=%s pprof=%s", name, n.addr, n.admin, n.pprof)
	}
	return nil
}

// startLoad starts each node's UASs, registers the park users, and starts
// the load generators.
func (s *soak) startLoad(ctx context.Context) error {
	o := s.o
	s.uas = map[string][]*sipptest.Process{}
	serverTimeout := o.duration + 5*time.Minute
	secs := o.duration.Seconds()
	for i, n := range s.nodes {
		dir := filepath.Join(o.out, "sipp", n.name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		call, err := sipptest.Start(ctx, sipptest.Options{Scenario: sipptest.Scenario("uas_call.xml"), Dir: dir, Timeout: serverTimeout})
		if err != nil {
			return fmt.Errorf("node %s: uas_call: %w", n.name, err)
		}
		s.uas[n.name] = append(s.uas[n.name], call)
		ring, err := sipptest.Start(ctx, sipptest.Options{Scenario: sipptest.Scenario("uas_ring.xml"), Dir: dir, Timeout: serverTimeout})
		if err != nil {
			return fmt.Errorf("node %s: uas_ring: %w", n.name, err)
		}
		s.uas[n.name] = append(s.uas[n.name], ring)

		// The park users (and ring) first, so that calls find them.
		var first [][]string
		for _, u := range parkUsers {
			first = append(first, []string{u, strconv.Itoa(call.Port()), "600"})
		}
		first = append(first, []string{"ring", strconv.Itoa(ring.Port()), "600"})
		inf, err := sipptest.WriteInjectionFile(dir, "register-first.csv", "SEQUENTIAL", first)
		if err != nil {
			return err
		}
		res, err := sipptest.Run(ctx, sipptest.Options{Scenario: sipptest.Scenario("register_inf.xml"), Target: n.addr,
			InjectionFiles: []string{inf}, MaxCalls: len(first), Rate: 100, Dir: dir, Timeout: 30 * time.Second})
		if err != nil {
			return fmt.Errorf("node %s: registering: %w", n.name, err)
		}
		if !res.OK() || res.Successful != int64(len(first)) {
			return fmt.Errorf("node %s: registering: %s\n%s", n.name, res.Summary(), res.Diagnostics())
		}

		// The refresh cycle: the same users, then the pad users with
		// 60-90 s expiries.
		rows := first
		for k := range o.padUsers {
			rows = append(rows, []string{fmt.Sprintf("pad%04d", k), strconv.Itoa(call.Port()), strconv.Itoa(60 + k%31)})
		}
		regInf, err := sipptest.WriteInjectionFile(dir, "register.csv", "SEQUENTIAL", rows)
		if err != nil {
			return err
		}
		var users [][]string
		for _, u := range parkUsers {
			users = append(users, []string{u})
		}
		callInf, err := sipptest.WriteInjectionFile(dir, "calls.csv", "SEQUENTIAL", users)
		if err != nil {
			return err
		}
		loads := []struct {
			name string
			rate float64
			opts sipptest.Options
		}{
			{"calls", o.rates.Calls, sipptest.Options{Scenario: filepath.Join(s.repo, "benchmarks", "sipp", "soak_uac_call.xml"),
				InjectionFiles: []string{callInf}}},
			{"cancel", o.rates.Cancel, sipptest.Options{Scenario: sipptest.Scenario("uac_cancel.xml"), Service: "ring",
				Pause: 200 * time.Millisecond}},
			{"hold", o.rates.Hold, sipptest.Options{Scenario: sipptest.Scenario("uac_cancel_parked.xml"), Service: "hold",
				Pause: 200 * time.Millisecond}},
			{"message", o.rates.Message, sipptest.Options{Scenario: sipptest.Scenario("uac_message_200.xml"), Service: "msg"}},
			{"register", o.rates.Register, sipptest.Options{Scenario: sipptest.Scenario("register_inf.xml"),
				InjectionFiles: []string{regInf}}},
		}
		for _, l := range loads {
			if l.rate == 0 {
				continue
			}
			op := l.opts
			op.Target, op.Rate, op.Dir = n.addr, l.rate, dir
			op.MaxCalls = max(1, int(l.rate*secs))
			op.Timeout = o.duration + 2*time.Minute
			op.RecvTimeout = 20 * time.Second
			op.StopGrace = 15 * time.Second
			// Statistics rows at the sampling interval, for the progress lines.
			op.ExtraArgs = []string{"-fd", strconv.Itoa(max(1, int(o.interval.Seconds())))}
			p, err := sipptest.Start(ctx, op)
			if err != nil {
				return fmt.Errorf("node %s: %s: %w", n.name, l.name, err)
			}
			s.clients = append(s.clients, &client{node: nodeNames[i], load: l.name, rate: l.rate, proc: p})
		}
	}
	return nil
}

// sample scrapes every node each interval until the duration is over,
// printing one line per sample. It reports whether the run was
// interrupted.
func (s *soak) sample(ctx context.Context, rep *Report) (interrupted bool) {
	o := s.o
	start := time.Now()
	end := start.Add(o.duration)
	tick := time.NewTicker(o.interval)
	defer tick.Stop()
	warmProfiled := false
	for {
		select {
		case <-ctx.Done():
			return true
		case <-tick.C:
		}
		t := time.Since(start).Seconds()
		var line strings.Builder
		fmt.Fprintf(&line, "[%6s]", (time.Duration(t) * time.Second).Round(time.Second))
		for i, n := range s.nodes {
			select {
			case <-n.done:
				msg := fmt.Sprintf("node %s exited during the run (%v)", n.name, n.waitErr)
				if !slices.Contains(rep.RunProblems, msg) {
					rep.RunProblems = append(rep.RunProblems, msg)
					s.logf("%s:\n%s", msg, sipbench.TailFile(n.logPath, 2048))
				}
				continue
			default:
			}
			m, err := scrape(ctx, s.http, n.admin)
			if err != nil {
				if ctx.Err() != nil {
					return true
				}
				rep.Nodes[i].ScrapeErrors++
				fmt.Fprintf(&line, " %s: scrape failed: %v |", n.name, err)
				continue
			}
			smp, err := sampleOf(m, t)
			if err != nil {
				rep.Nodes[i].ScrapeErrors++
				fmt.Fprintf(&line, " %s: %v |", n.name, err)
				continue
			}
			smp.Received = s.consumer.Received(n.name)
			rep.Nodes[i].Samples = append(rep.Nodes[i].Samples, smp)
			fmt.Fprintf(&line, " %s: gor=%.0f heap=%.1fMiB rss=%.1fMiB live=%.0f parked=%.0f req=%.0f ev=%.0f/%d |",
				n.name, smp.Goroutines, mib(smp.HeapInuse), mib(smp.RSS), smp.Live, smp.Parked, smp.Requests, smp.EventsSent, smp.Received)
		}
		var calls, failed int64
		for _, c := range s.clients {
			select {
			case <-c.proc.Done():
				msg := fmt.Sprintf("SIPp %s on node %s ended early", c.load, c.node)
				if !slices.Contains(rep.RunProblems, msg) && time.Until(end) > o.interval {
					rep.RunProblems = append(rep.RunProblems, msg)
				}
			default:
			}
			if st, ok := readSippStats(c.proc.Dir()); ok {
				calls += st.created
				failed += st.failed
			}
		}
		fmt.Fprintf(&line, " sipp calls=%d failed=%d", calls, failed)
		rep.Progress = append(rep.Progress, Progress{T: math.Round(t*10) / 10, Calls: calls, Failed: failed})
		s.logf("%s", strings.TrimSuffix(line.String(), " |"))
		if !warmProfiled && t >= o.warmup.Seconds() {
			warmProfiled = true
			s.profile(ctx, "warm")
		}
		if !time.Now().Before(end.Add(-o.interval / 2)) {
			s.profile(ctx, "end")
			return false
		}
	}
}

// watchStalls runs a 100 ms ticker until ctx ends or the returned
// function is called, and records every wake-up more than a second after
// the one before: times the shared machine did not run the runner.
func watchStalls(ctx context.Context, start time.Time) func() []Stall {
	ctx, cancel := context.WithCancel(ctx)
	var mu sync.Mutex
	var stalls []Stall
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		last := time.Now()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				now := time.Now()
				if gap := now.Sub(last); gap > time.Second {
					mu.Lock()
					stalls = append(stalls, Stall{T: math.Round(now.Sub(start).Seconds()*10) / 10, Gap: math.Round(gap.Seconds()*100) / 100})
					mu.Unlock()
				}
				last = now
			}
		}
	}()
	return func() []Stall {
		cancel()
		<-done
		mu.Lock()
		defer mu.Unlock()
		return stalls
	}
}

// profile saves each node's heap profile and goroutine dump.
func (s *soak) profile(ctx context.Context, label string) {
	if !s.o.pprof {
		return
	}
	for _, n := range s.nodes {
		if err := n.profile(ctx, s.o.out, n.name+"-"+label); err != nil {
			s.logf("profile %s: %v", label, err)
		}
	}
}

// stopClients stops every load generator (no new calls; current calls
// finish) and collects their totals.
func (s *soak) stopClients() []SippTotals {
	out := make([]SippTotals, len(s.clients))
	var wg sync.WaitGroup
	for i, c := range s.clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := c.proc.Stop()
			t := SippTotals{Node: c.node, Load: c.load, Rate: c.rate}
			if err != nil {
				t.Error = err.Error()
			}
			if res != nil {
				t.Scenario, t.Created, t.Successful, t.Failed = res.Scenario, res.Created, res.Successful, res.Failed
				t.Retrans, t.ExitCode = res.Retransmissions, res.ExitCode
				t.Unfinished = max(0, res.Created-res.Successful-res.Failed)
				if res.Failed > 0 {
					t.FailureSample = lastLines(res.ErrorLog, 10)
				}
			}
			out[i] = t
		}()
	}
	wg.Wait()
	return out
}

// waitEvents waits (up to 15 s) until every node's queue has received at
// least what its transport had confirmed.
func (s *soak) waitEvents(rep *Report) {
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		done := true
		for i, n := range rep.Nodes {
			if float64(s.consumer.Received(nodeNames[i])) < n.Events.Confirmed {
				done = false
			}
		}
		if done {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// cleanup stops whatever is still running: clients, nodes, servers, the
// consumer (its queues go with it) and the device state bucket.
func (s *soak) cleanup() {
	for _, c := range s.clients {
		_, _ = c.proc.Stop()
	}
	for _, n := range s.nodes {
		n.stop(10 * time.Second)
	}
	for _, ps := range s.uas {
		for _, p := range ps {
			_, _ = p.Stop()
		}
	}
	if s.consumer != nil {
		s.consumer.Close()
	}
	if s.bucket != "" {
		deleteBucket(s.o.natsURL, s.bucket)
	}
}

// deleteBucket removes the run's device state bucket.
func deleteBucket(url, bucket string) {
	nc, err := nats.Connect(url, nats.Timeout(2*time.Second))
	if err != nil {
		return
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	_ = js.DeleteKeyValue(ctx, bucket)
}

// amqpAuthority turns amqp://user:pass@host:port/ into user:pass@host:port
// for a rabbitmq: socket.
func amqpAuthority(url string) string {
	s := strings.TrimPrefix(url, "amqp://")
	s, _, _ = strings.Cut(s, "/")
	return s
}

// redactArgs hides the AMQP password in --event values.
func redactArgs(args []string) []string {
	out := slices.Clone(args)
	for i, a := range out {
		if at := strings.Index(a, "@"); at >= 0 && strings.Contains(a, "rabbitmq:") {
			pre := a[:at]
			if c := strings.LastIndex(pre, ":"); c > strings.Index(pre, "rabbitmq:")+len("rabbitmq:") {
				out[i] = pre[:c+1] + "xxxxx" + a[at:]
			}
		}
	}
	return out
}

func mib(b float64) float64 { return b / (1 << 20) }

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[:n]
	}
	return strings.Join(lines, "\n")
}

// sippProgress is the last row of a running SIPp's statistics file.
type sippProgress struct{ created, failed int64 }

// readSippStats reads the running totals of the SIPp in dir from its
// statistics file (written every 60 s; zero before the first row).
func readSippStats(dir string) (sippProgress, bool) {
	b, err := os.ReadFile(filepath.Join(dir, "stats.csv"))
	if err != nil {
		return sippProgress{}, false
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) < 2 {
		return sippProgress{}, false
	}
	head := strings.Split(lines[0], ";")
	last := strings.Split(lines[len(lines)-1], ";")
	var p sippProgress
	for i, h := range head {
		if i >= len(last) {
			break
		}
		switch h {
		case "TotalCallCreated":
			p.created, _ = strconv.ParseInt(last[i], 10, 64)
		case "FailedCall(C)":
			p.failed, _ = strconv.ParseInt(last[i], 10, 64)
		}
	}
	return p, true
}
