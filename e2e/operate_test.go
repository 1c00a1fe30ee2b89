package e2e

import (
	"bufio"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sipasync/sipasync/internal/sipptest"
)

// Operating a running proxy: metrics on /metrics, the JSON-RPC control
// interface through "sipasync ctl", configuration layering, and the lame
// duck drain on SIGUSR2.

func init() {
	// Every proxy these tests start (they run side by side) takes a free
	// loopback admin port instead of cmd/sipasync's fixed 127.0.0.1:9060;
	// the environment is below flags, so a test's own --admin still wins.
	os.Setenv("SIPASYNC_ADMIN", "127.0.0.1:0")
}

var adminRE = regexp.MustCompile(`msg="sipasync started".* admin=(\S+)`)

// adminAddr returns the admin listener the proxy logged at start-up.
func adminAddr(t *testing.T, p *proxy) string {
	t.Helper()
	m := adminRE.FindStringSubmatch(p.Logs())
	require.NotNil(t, m, "no admin= in the start-up line:\n%s", tail(p.Logs(), 5))
	return m[1]
}

// scrape reads /metrics into series -> value, e.g.
// `sipasync_async_parks_total{kind="async_ms_route"}` -> 50.
func scrape(t *testing.T, addr string) map[string]float64 {
	t.Helper()
	res, err := http.Get("http://" + addr + "/metrics")
	require.NoError(t, err)
	defer res.Body.Close()
	require.Equal(t, http.StatusOK, res.StatusCode)
	out := map[string]float64{}
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		require.NoError(t, err, line)
		out[line[:i]] = v
	}
	require.NoError(t, sc.Err())
	return out
}

// ctl runs "sipasync ctl --admin addr args..." and returns its stdout,
// stderr and exit code.
func ctl(t *testing.T, addr string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.CommandContext(ctxT(t, 15*time.Second), bins["sipasync"], append([]string{"ctl", "--admin", addr}, args...)...)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if _, ok := err.(*exec.ExitError); err != nil && !ok {
		t.Fatal(err)
	}
	return stdout.String(), stderr.String(), cmd.ProcessState.ExitCode()
}

// ctlJSON runs a method with --json and decodes the result into v.
func ctlJSON(t *testing.T, addr string, v any, args ...string) {
	t.Helper()
	out, errOut, code := ctl(t, addr, append([]string{"--json"}, args...)...)
	require.Equal(t, 0, code, "ctl %v: %s", args, errOut)
	require.NoError(t, json.Unmarshal([]byte(out), v), out)
}

func TestMetricsMoveUnderSIPp(t *testing.T) {
	const calls = 40
	p := startProxy(t, "testproxy", "--mode", "park", "--async-ms-timer", "10", "--delay", "200ms")
	addr := adminAddr(t, p)
	before := scrape(t, addr)
	res := run(t, p, sipptest.Options{Scenario: scenario("uac_404.xml"), Service: "bob", MaxCalls: calls, Rate: 40})
	sipptest.RequireSuccess(t, res, calls)
	// The last resume may still be finishing its reply when SIPp exits.
	var after map[string]float64
	for deadline := time.Now().Add(5 * time.Second); ; {
		after = scrape(t, addr)
		if after[`sipasync_transaction_live`] == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	delta := func(series string) float64 { return after[series] - before[series] }

	for series, want := range map[string]float64{
		`sipasync_sipproxy_requests_total{method="INVITE"}`:                  calls,
		`sipasync_sipproxy_replies_total{code="100",method="INVITE"}`:        calls,
		`sipasync_sipproxy_replies_total{code="404",method="INVITE"}`:        calls,
		`sipasync_async_parks_total{kind="async_ms_route"}`:                  calls,
		`sipasync_async_resumes_total{kind="async_ms_route",reason="timer"}`: calls,
		`sipasync_async_park_duration_seconds_count{kind="async_ms_route"}`:  calls,
		`sipasync_async_resume_lateness_seconds_count`:                       calls,
		`sipasync_transaction_created_total`:                                 calls,
	} {
		assert.Equal(t, want, delta(series), series)
	}
	for series, atLeast := range map[string]float64{
		`sipasync_timerwheel_fired_total`:                             calls,
		`sipasync_workergroups_completed_total{group="async:module"}`: calls,
	} {
		assert.GreaterOrEqual(t, delta(series), atLeast, series)
	}
	// Parked for 200 ms each: the mean park lasts at least that.
	sum := delta(`sipasync_async_park_duration_seconds_sum{kind="async_ms_route"}`)
	assert.GreaterOrEqual(t, sum/calls, 0.2)
	assert.Equal(t, 0.0, after[`sipasync_transaction_parked`])
	assert.Equal(t, 0.0, after[`sipasync_sipproxy_draining`])
	assert.Greater(t, after[`sipasync_runtime_goroutines`], 0.0)
	assert.Contains(t, after, `sipasync_timerwheel_late_ticks_total`)
	assert.Contains(t, after, `sipasync_workergroups_busy{group="default"}`)
	assert.Contains(t, after, `sipasync_devicestate_changes_total`)
	assert.Contains(t, after, `go_goroutines`)
}

func TestControlMethods(t *testing.T) {
	// A UDP socket the E_SIP_MESSAGE subscription sends to.
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	require.NoError(t, err)
	defer pc.Close()
	p := startProxy(t, "testproxy", "--mode", "suspend", "--event", "E_SIP_MESSAGE=udp:"+pc.LocalAddr().String())
	addr := adminAddr(t, p)

	var methods []string
	ctlJSON(t, addr, &methods, "system.listMethods")
	want := []string{"async.cancel", "async.list", "async.resume", "bus.subscribers", "core.reload", "core.uptime",
		"core.version", "devstate.get", "devstate.list", "events.list", "events.raise", "system.listMethods",
		"system.methodHelp", "tm.stats", "wg.list"}
	assert.Equal(t, want, methods)

	var help struct {
		Name   string
		Params []string
	}
	ctlJSON(t, addr, &help, "system.methodHelp", "async.cancel")
	assert.Equal(t, []string{"token", "code?", "reason?"}, help.Params)

	var up struct {
		UptimeSeconds *int64 `json:"uptime_seconds"`
		Started       string
	}
	ctlJSON(t, addr, &up, "core.uptime")
	require.NotNil(t, up.UptimeSeconds)
	_, err = time.Parse(time.RFC3339, up.Started)
	require.NoError(t, err)

	var ver map[string]string
	ctlJSON(t, addr, &ver, "core.version")
	assert.Equal(t, "v1.7.2", ver["sipgo"])
	assert.True(t, strings.HasPrefix(ver["go"], "go1."), ver["go"])

	// Two INVITEs parked with async.Suspend (no timer): one resumed and one
	// answered by the operator.
	uacs := map[string]*sipptest.Process{}
	for _, code := range []string{"404", "486"} {
		u, err := sipptest.Start(ctxT(t, 60*time.Second), sipptest.Options{Scenario: scenario("uac_expect.xml"), Target: p.addr,
			Service: "bob", MaxCalls: 1, Timeout: 30 * time.Second, Keys: map[string]string{"code": code}})
		require.NoError(t, err)
		uacs[code] = u
		// Wait for this one to be parked before the next, so that the older
		// is the first to resume.
		waitParked(t, addr, len(uacs))
	}
	var parked []struct {
		Token, CallID, Method, Route, Kind string
		AgeSeconds                         float64 `json:"age_seconds"`
		CallIDJSON                         string  `json:"call_id"`
	}
	ctlJSON(t, addr, &parked, "async.list")
	require.Len(t, parked, 2)
	for _, row := range parked {
		assert.Equal(t, "INVITE", row.Method)
		assert.Equal(t, "RESUME", row.Route)
		assert.Equal(t, "suspend", row.Kind)
		assert.NotEmpty(t, row.CallIDJSON)
	}
	assert.GreaterOrEqual(t, parked[0].AgeSeconds, parked[1].AgeSeconds, "oldest first")
	// The table form names the columns.
	out, _, code := ctl(t, addr, "async.list")
	require.Equal(t, 0, code)
	assert.Contains(t, out, "TOKEN")
	assert.Contains(t, out, parked[0].Token)

	var stats map[string]any
	ctlJSON(t, addr, &stats, "tm.stats")
	assert.EqualValues(t, 2, stats["parked"])
	assert.EqualValues(t, false, stats["draining"])

	// A route that does not exist is refused and leaves the park alone.
	_, errOut, code := ctl(t, addr, "async.resume", "token="+parked[0].Token, "route=NOSUCH")
	assert.Equal(t, 1, code)
	assert.Contains(t, errOut, "unknown route")
	// Resume the older into route[RESUME] named at resume time (t_continue;
	// it answers 404), answer the other 486.
	_, errOut, code = ctl(t, addr, "async.resume", "token="+parked[0].Token, "route=RESUME")
	require.Equal(t, 0, code, errOut)
	_, errOut, code = ctl(t, addr, "async.cancel", "token="+parked[1].Token, "code=486")
	require.Equal(t, 0, code, errOut)
	for code, u := range uacs {
		res, err := u.Wait()
		require.NoError(t, err, code)
		sipptest.RequireSuccess(t, res, 1)
	}
	// A token used once: the method fails and says why, exit 1; the
	// refusals are counted by reason.
	_, errOut, code = ctl(t, addr, "async.resume", parked[0].Token)
	assert.Equal(t, 1, code)
	assert.Contains(t, errOut, "already resumed")
	_, errOut, code = ctl(t, addr, "async.resume", parked[1].Token)
	assert.Equal(t, 1, code)
	assert.Contains(t, errOut, "answered while parked", "the park async.cancel answered")
	m := scrape(t, addr)
	assert.Equal(t, 1.0, m[`sipasync_async_resume_refused_total{reason="already_resumed"}`])
	assert.Equal(t, 1.0, m[`sipasync_async_resume_refused_total{reason="unknown_route"}`])
	assert.Equal(t, 1.0, m[`sipasync_async_resume_refused_total{reason="ended"}`])
	// Bad params and unknown methods are JSON-RPC errors.
	_, errOut, code = ctl(t, addr, "async.resume", "not-a-token")
	assert.Equal(t, 1, code)
	assert.Contains(t, errOut, "code -32602")
	assert.Contains(t, errOut, `param "token"`)
	_, errOut, code = ctl(t, addr, "async.cancel", "token="+parked[1].Token, "code=200")
	assert.Equal(t, 1, code)
	assert.Contains(t, errOut, "not a final error status")
	_, errOut, code = ctl(t, addr, "tm.nope")
	assert.Equal(t, 1, code)
	assert.Contains(t, errOut, "code -32601")
	_, errOut, code = ctl(t, addr, "tm.stats", "x=1")
	assert.Equal(t, 1, code)
	assert.Contains(t, errOut, "takes no params")

	var groups []struct {
		Name      string
		Completed uint64
	}
	ctlJSON(t, addr, &groups, "wg.list")
	names := []string{}
	for _, g := range groups {
		names = append(names, g.Name)
	}
	assert.Contains(t, names, "default")
	assert.Contains(t, names, "async:module")

	var subs []struct{ Topic, Name string }
	ctlJSON(t, addr, &subs, "bus.subscribers")
	assert.NotEmpty(t, subs)

	var events struct {
		Events []struct {
			Event      string
			Subscribed bool
			Sockets    []string
		}
	}
	ctlJSON(t, addr, &events, "events.list")
	require.Len(t, events.Events, 1)
	assert.Equal(t, "E_SIP_MESSAGE", events.Events[0].Event)
	assert.True(t, events.Events[0].Subscribed)
	assert.Equal(t, []string{"udp:" + pc.LocalAddr().String()}, events.Events[0].Sockets)

	// events.raise reaches the subscribed socket in the event grammar.
	_, errOut, code = ctl(t, addr, "events.raise", "E_SIP_MESSAGE", `{"user":"alice","msg":"hi"}`)
	require.Equal(t, 0, code, errOut)
	buf := make([]byte, 2048)
	require.NoError(t, pc.SetReadDeadline(time.Now().Add(5*time.Second)))
	n, _, err := pc.ReadFrom(buf)
	require.NoError(t, err)
	assert.Equal(t, "E_SIP_MESSAGE\nuser::alice\nmsg::hi\n", string(buf[:n]))
	_, errOut, code = ctl(t, addr, "events.raise", "event=E_NOPE")
	assert.Equal(t, 1, code)
	assert.Contains(t, errOut, "unknown event")

	// The subscription's queue and sends are on /metrics.
	m = scrape(t, addr)
	sock := "udp:" + pc.LocalAddr().String()
	assert.Equal(t, 1.0, m[`sipasync_events_sent_total{event="E_SIP_MESSAGE",socket="`+sock+`"}`])
	assert.Equal(t, 1.0, m[`sipasync_events_raised_total`])
	assert.Contains(t, m, `sipasync_eventbus_queue_depth{subscription="`+sock+`",topic="event:E_SIP_MESSAGE"}`)

	// core.reload with nothing changed changes nothing.
	var rep struct{ Reloaded, NotReloaded []string }
	ctlJSON(t, addr, &rep, "core.reload")
	assert.Empty(t, rep.Reloaded)
	assert.Empty(t, rep.NotReloaded)
}

func TestControlDeviceState(t *testing.T) {
	p := startProxy(t, "sipasync")
	addr := adminAddr(t, p)
	before := scrape(t, addr)
	// bob registers: his device is then known and not in use.
	uas(t, p, "uas_call.xml", "bob")
	var devices []struct{ Device, State string }
	ctlJSON(t, addr, &devices, "devstate.list")
	require.Len(t, devices, 1)
	assert.Contains(t, devices[0].Device, "bob")
	assert.Equal(t, "NOT_INUSE", devices[0].State)
	var dev struct {
		Device, State string
		Views         []struct{ Node, State string }
	}
	ctlJSON(t, addr, &dev, "devstate.get", devices[0].Device)
	assert.Equal(t, devices[0].Device, dev.Device)
	assert.Equal(t, "NOT_INUSE", dev.State)
	require.Len(t, dev.Views, 1)
	// The device as the registrar keys it, the AOR, or a SIP URI: the same.
	for _, name := range []string{"bob", "bob@127.0.0.1", "sip:bob@127.0.0.1"} {
		ctlJSON(t, addr, &dev, "devstate.get", name)
		assert.Equal(t, devices[0].Device, dev.Device, name)
		assert.Equal(t, "NOT_INUSE", dev.State, name)
	}
	ctlJSON(t, addr, &dev, "devstate.get", "device=nobody@nowhere")
	assert.Equal(t, "UNKNOWN", dev.State)
	out, _, code := ctl(t, addr, "devstate.list")
	require.Equal(t, 0, code)
	assert.Contains(t, out, "DEVICE")
	after := scrape(t, addr)
	assert.Greater(t, after[`sipasync_devicestate_changes_total`], before[`sipasync_devicestate_changes_total`])
	assert.Equal(t, 1.0, after[`sipasync_sipproxy_requests_total{method="REGISTER"}`]-before[`sipasync_sipproxy_requests_total{method="REGISTER"}`])
	assert.Equal(t, 1.0, after[`sipasync_sipproxy_replies_total{code="200",method="REGISTER"}`]-before[`sipasync_sipproxy_replies_total{code="200",method="REGISTER"}`])
}

// waitParked polls async.list until n transactions are parked.
func waitParked(t *testing.T, addr string, n int) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		var rows []json.RawMessage
		ctlJSON(t, addr, &rows, "async.list")
		if len(rows) >= n {
			return
		}
	}
	t.Fatalf("fewer than %d parked after 10s", n)
}

func TestConfigPrecedenceAndErrors(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "sipasync.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte(`
log-level: warn
async:
  workers: 3
  ms_timer: 10
shutdown-timeout: 30s
event:
  - E_SIP_MESSAGE=rabbitmq:guest:topsecret@127.0.0.1:5672/sipmsg
`), 0o600))
	cmd := exec.CommandContext(ctxT(t, 10*time.Second), bins["sipasync"], "--config", cfg, "--print-config",
		"--shutdown-timeout", "5s", "--admin-token", "hunter2")
	cmd.Env = append(os.Environ(), "SIPASYNC_ASYNC_WORKERS=4", "SIPASYNC_LOG_LEVEL=error")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, string(out))
	for _, line := range []string{
		"shutdown-timeout: 5s # flag",    // flags win
		"async-workers: 4 # env",         // env over the file
		"log-level: error # env",         // env over the file
		"async-ms-timer: 10 # file",      // nested key, "_" for "-"
		"max-relays: 20000 # default",    // defaults last
		"admin-token: <redacted> # flag", // secrets never printed
		"admin: 127.0.0.1:0 # env",       // (this test file's environment)
	} {
		assert.Contains(t, string(out), line+"\n")
	}
	assert.NotContains(t, string(out), "topsecret")
	assert.NotContains(t, string(out), "hunter2")
	assert.Contains(t, string(out), "rabbitmq:guest:xxxxx@127.0.0.1:5672/sipmsg")

	// The printed configuration is a config file giving the same values.
	printed := filepath.Join(dir, "printed.yaml")
	require.NoError(t, os.WriteFile(printed, []byte(strings.ReplaceAll(string(out), "<redacted>", "x")), 0o600))
	cmd = exec.CommandContext(ctxT(t, 10*time.Second), bins["sipasync"], "--config", printed, "--print-config")
	again, err := cmd.CombinedOutput()
	require.NoError(t, err, string(again))
	assert.Contains(t, string(again), "async-workers: 4 # file")

	for _, tc := range []struct {
		file, env, want string
	}{
		{file: "async:\n  wrokers: 2\n", want: `line 2: unknown key "async.wrokers"`},
		{file: "max-parked: lots\n", want: `key "max-parked": bad value "lots"`},
		{env: "SIPASYNC_MAX_PARKD=1", want: "unknown variable SIPASYNC_MAX_PARKD"},
		{env: "SIPASYNC_SHUTDOWN_TIMEOUT=soon", want: `key "SIPASYNC_SHUTDOWN_TIMEOUT": bad value "soon"`},
	} {
		args := []string{"--listen", "udp:127.0.0.1:0"}
		if tc.file != "" {
			f := filepath.Join(dir, "bad.yaml")
			require.NoError(t, os.WriteFile(f, []byte(tc.file), 0o600))
			args = append(args, "--config", f)
		}
		cmd := exec.CommandContext(ctxT(t, 10*time.Second), bins["sipasync"], args...)
		cmd.Env = os.Environ()
		if tc.env != "" {
			cmd.Env = append(cmd.Env, tc.env)
		}
		out, _ := cmd.CombinedOutput()
		assert.Equal(t, 2, cmd.ProcessState.ExitCode(), string(out))
		assert.Contains(t, string(out), tc.want)
		assert.Equal(t, 1, strings.Count(strings.TrimSpace(string(out)), "\n")+1, "one line: %s", out)
	}
}

func TestAdminPortInUseIsAStartupError(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	out, code := runExit(t, "sipasync", "--listen", "udp:127.0.0.1:0", "--admin", ln.Addr().String())
	assert.Equal(t, 2, code, out)
	assert.Contains(t, out, "--admin")
	assert.Contains(t, out, "address already in use")
	out, code = runExit(t, "sipasync", "--listen", "udp:127.0.0.1:0", "--admin", "0.0.0.0:0")
	assert.Equal(t, 2, code, out)
	assert.Contains(t, out, "needs a token")
}

func TestSIGHUPReloadsLogLevelAndEvents(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	require.NoError(t, err)
	defer pc.Close()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "sipasync.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte("log-level: info\n"), 0o600))
	p := startProxy(t, "sipasync", "--config", cfg)
	addr := adminAddr(t, p)

	require.NoError(t, os.WriteFile(cfg, []byte("log-level: debug\nevent: [E_SIP_MESSAGE=udp:"+pc.LocalAddr().String()+"]\nmax-parked: 10\n"), 0o600))
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGHUP))
	waitLogged(t, p, "msg=reloaded")
	waitLogged(t, p, "these changes need a restart") // logged just after
	logs := p.Logs()
	assert.Contains(t, logs, `log-level: info -> debug`)
	assert.Contains(t, logs, `event +E_SIP_MESSAGE=udp:`)
	assert.Contains(t, logs, `msg="reload: these changes need a restart" flags=[max-parked]`)

	// The new subscription is live.
	_, errOut, code := ctl(t, addr, "events.raise", `{"event":"E_SIP_MESSAGE","attrs":{"user":"bob"}}`)
	require.Equal(t, 0, code, errOut)
	buf := make([]byte, 512)
	require.NoError(t, pc.SetReadDeadline(time.Now().Add(5*time.Second)))
	n, _, err := pc.ReadFrom(buf)
	require.NoError(t, err)
	assert.Equal(t, "E_SIP_MESSAGE\nuser::bob\n", string(buf[:n]))

	// A broken file changes nothing and says why.
	require.NoError(t, os.WriteFile(cfg, []byte("log-levle: info\n"), 0o600))
	out, errOut, code := ctl(t, addr, "core.reload")
	assert.Equal(t, 1, code, out)
	assert.Contains(t, errOut, `unknown key "log-levle"`)

	// Dropping the event from the file unsubscribes it.
	require.NoError(t, os.WriteFile(cfg, []byte("log-level: debug\n"), 0o600))
	var rep2 struct{ Reloaded []string }
	ctlJSON(t, addr, &rep2, "core.reload")
	require.Len(t, rep2.Reloaded, 1)
	assert.True(t, strings.HasPrefix(rep2.Reloaded[0], "event -E_SIP_MESSAGE"), rep2.Reloaded[0])
}

func waitLogged(t *testing.T, p *proxy, s string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if p.count(s) > 0 {
			return
		}
	}
	t.Fatalf("no %q in the log:\n%s", s, tail(p.Logs(), 10))
}

// TestLameDuckDrainsUnderLoad: INVITEs at 100/s for 3 s, each parked for
// 3 s, and SIGUSR2 after 1.5 s. Those parked before it resume on their own (404);
// those arriving after it get 503 with Retry-After at once; SIPp sees every
// call answered; the proxy exits 0 with nothing unfinished.
func TestLameDuckDrainsUnderLoad(t *testing.T) {
	const calls, rate = 300, 100
	p := startProxy(t, "resume404", "--delay", "3s", "--shutdown-timeout", "10s")
	addr := adminAddr(t, p)
	uac, err := sipptest.Start(ctxT(t, 60*time.Second), sipptest.Options{Scenario: scenario("uac_404_or_503.xml"),
		Target: p.addr, Service: "bob", MaxCalls: calls, Rate: rate, CallLimit: calls, Timeout: 40 * time.Second})
	require.NoError(t, err)
	time.Sleep(1500 * time.Millisecond)
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGUSR2))
	waitLogged(t, p, "lame duck")
	// While draining the admin listener still answers: the operator watches
	// the parked count fall.
	var stats map[string]any
	ctlJSON(t, addr, &stats, "tm.stats")
	assert.Equal(t, true, stats["draining"])
	m := scrape(t, addr)
	assert.Equal(t, 1.0, m[`sipasync_sipproxy_draining`])

	res, err := uac.Wait()
	require.NoError(t, err)
	sipptest.RequireSuccess(t, res, calls) // every call got 404 or 503: none unanswered
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		t.Fatal("no exit 20 s after SIGUSR2")
	}
	require.Equal(t, 0, p.cmd.ProcessState.ExitCode(), tail(p.Logs(), 10))
	parks, resumes, rejected := p.stat(t, "parks"), p.stat(t, "resumes"), p.stat(t, "rejected_503")
	assert.Equal(t, 0, p.stat(t, "unfinished"))
	assert.Greater(t, parks, 0)
	assert.Greater(t, rejected, 0, "calls after SIGUSR2 are refused")
	assert.Equal(t, parks, resumes, "every parked call resumed on its own: the 3 s park is within --shutdown-timeout")
	assert.Equal(t, calls, parks+rejected)
	t.Logf("lame duck: %d parked and resumed, %d refused with 503, exit 0", parks, rejected)
}

// TestJSONLogsCarryCallIDAndToken: with --log-format json, the line about a
// park that reached its deadline is one JSON object with the Call-ID and
// the transaction token.
func TestJSONLogsCarryCallIDAndToken(t *testing.T) {
	p := startProxy(t, "testproxy", "--mode", "suspend", "--suspend-timeout", "1s", "--log-format", "json")
	res := run(t, p, sipptest.Options{Scenario: scenario("uac_expect.xml"), Service: "bob", MaxCalls: 1,
		Keys: map[string]string{"code": "408"}})
	sipptest.RequireSuccess(t, res, 1)
	waitLogged(t, p, "suspend deadline")
	var found bool
	for _, line := range strings.Split(p.Logs(), "\n") {
		if !strings.Contains(line, "suspend deadline") {
			continue
		}
		var rec map[string]any
		require.NoError(t, json.Unmarshal([]byte(line), &rec), line)
		assert.Equal(t, "INFO", rec["level"])
		assert.Contains(t, rec["call_id"], "@127.0.0.1")
		assert.Regexp(t, `^\d+:\d+$`, rec["tx"])
		assert.Equal(t, "RESUME", rec["route"])
		found = true
	}
	assert.True(t, found)
}

// TestSecondStopSignalHurries: parks of 30 s, --shutdown-timeout 60 s. The
// first SIGTERM starts the drain; the second answers what is parked at
// once (503), and the proxy exits 0 long before either timeout.
func TestSecondStopSignalHurries(t *testing.T) {
	const calls = 5
	p := startProxy(t, "resume404", "--delay", "30s", "--shutdown-timeout", "60s")
	addr := adminAddr(t, p)
	uac, err := sipptest.Start(ctxT(t, 60*time.Second), sipptest.Options{Scenario: scenario("uac_expect.xml"),
		Target: p.addr, Service: "bob", MaxCalls: calls, Rate: 50, Timeout: 40 * time.Second,
		Keys: map[string]string{"code": "503"}})
	require.NoError(t, err)
	waitParked(t, addr, calls)
	start := time.Now()
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	waitLogged(t, p, "shutting down")
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		t.Fatal("no exit 15 s after the second SIGTERM")
	}
	assert.Less(t, time.Since(start), 15*time.Second)
	assert.Equal(t, 0, p.cmd.ProcessState.ExitCode())
	assert.Contains(t, p.Logs(), "second stop signal")
	res, err := uac.Wait()
	require.NoError(t, err)
	sipptest.RequireSuccess(t, res, calls)
	assert.Equal(t, 0, p.stat(t, "resumes"))
}
