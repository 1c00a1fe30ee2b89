package e2e

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sipasync/sipasync/devicestate/devicestatetest"
	"github.com/sipasync/sipasync/internal/sipptest"
	"github.com/sipasync/sipasync/internal/testlock"
)

// Faults under SIP load (issue 11, item 4): the broker and the cluster's
// NATS server go away and come back, and a node dies with SIGKILL, while
// SIPp keeps traffic going through sipasync. Latency figures are logged and
// recorded in benchmarks/RESULTS.md (## Faults), never asserted.

const amqpURL = "amqp://guest:guest@127.0.0.1:5672/"

// load is a SIPp client run in the background.
type load struct {
	name string
	proc *sipptest.Process
}

func startLoad(t *testing.T, p *proxy, name string, o sipptest.Options) *load {
	t.Helper()
	o.Target = p.addr
	o.TraceRTT = true
	if o.Timeout == 0 {
		o.Timeout = 120 * time.Second
	}
	return &load{name: name, proc: sipptest.StartT(t, o)}
}

// wait returns the run's result, failing the test if SIPp could not run.
func (l *load) wait(t *testing.T) *sipptest.Result {
	t.Helper()
	res, err := l.proc.Wait()
	if res == nil {
		t.Fatalf("%s: %v", l.name, err)
	}
	return res
}

// longUAS starts a SIPp UAS that lives for the whole test and registers
// it as user with the proxy (uas's UAS stops after 60 s).
func longUAS(t *testing.T, p *proxy, scen, user string) *sipptest.Process {
	t.Helper()
	u := sipptest.StartT(t, sipptest.Options{Scenario: scenario(scen), Timeout: 300 * time.Second})
	reg := run(t, p, sipptest.Options{Scenario: scenario("register.xml"), Service: user, MaxCalls: 1,
		Keys: map[string]string{"contact_port": strconv.Itoa(u.Port())}})
	sipptest.RequireSuccess(t, reg, 1)
	return u
}

func pct(r *sipptest.Result) string {
	return fmt.Sprintf("p50 %s p99 %s max %s (%d samples)", r.Percentile(50), r.Percentile(99), r.Percentile(100),
		len(r.ResponseTimes))
}

// RabbitMQ is stopped and started (rabbitmqctl stop_app / start_app) while
// SIPp places calls (no event) and sends MESSAGEs (each raises
// E_SIP_MESSAGE to RabbitMQ in sync mode, persistent, into a durable
// queue) through sipasync. SIP keeps flowing: no call or MESSAGE fails.
// Every MESSAGE's event is delivered (in the queue) or reported (the route
// got the error and logged it with the MESSAGE's Call-ID), none is lost.
// The response times of calls and MESSAGEs, with and without the restart,
// are logged for benchmarks/RESULTS.md.
func TestFaultRabbitMQRestartUnderLoad(t *testing.T) {
	if _, err := exec.LookPath("rabbitmqctl"); err != nil {
		t.Skip("rabbitmqctl is needed")
	}
	testlock.Exclusive(t, testlock.RabbitMQ) // nobody else's test uses the broker meanwhile
	t.Cleanup(func() { brokerUp(t) })
	queue := fmt.Sprintf("sipasync.faults.%d", time.Now().UnixNano())
	withChannel(t, func(ch *amqp.Channel) {
		_, err := ch.QueueDeclare(queue, true, false, false, false, nil) // durable: survives the restart
		require.NoError(t, err)
	})
	t.Cleanup(func() {
		withChannel(t, func(ch *amqp.Channel) { _, _ = ch.QueueDelete(queue, false, false, false) })
	})
	p := startProxy(t, "sipasync", "--event",
		"E_SIP_MESSAGE=rabbitmq:guest:guest@127.0.0.1:5672/"+queue+";sync=1;persistent=1")
	longUAS(t, p, "uas_call.xml", "carol")
	longUAS(t, p, "uas_message.xml", "bob")

	const rate, seconds = 40, 25
	phase := func(name string, fault func()) (calls, msgs *sipptest.Result, logFrom int) {
		logFrom = len(p.Logs())
		c := startLoad(t, p, name+" calls", sipptest.Options{Scenario: scenario("uac_call.xml"), Service: "carol",
			MaxCalls: rate * seconds, Rate: rate})
		m := startLoad(t, p, name+" messages", sipptest.Options{Scenario: scenario("uac_message_200.xml"), Service: "bob",
			MaxCalls: rate * seconds, Rate: rate})
		if fault != nil {
			fault()
		}
		return c.wait(t), m.wait(t), logFrom
	}

	// without a fault: every event is in the queue, nothing reported
	calls, msgs, from := phase("baseline", nil)
	sipptest.RequireSuccess(t, calls, rate*seconds)
	sipptest.RequireSuccess(t, msgs, rate*seconds)
	delivered, dups := drainEvents(t, queue, rate*seconds, nil, 15*time.Second)
	reported := reportedEvents(p.Logs()[from:])
	require.Len(t, delivered, rate*seconds, "baseline: events in the queue")
	require.Empty(t, reported, "baseline: events reported as failed")
	t.Logf("baseline: calls %s; MESSAGEs %s; events delivered %d (duplicates %d)",
		pct(calls), pct(msgs), len(delivered), dups)

	// the broker goes away 5 s into the run, for 4 s and what rabbitmqctl
	// takes, and comes back
	var away time.Duration
	calls2, msgs2, from := phase("restart", func() {
		time.Sleep(5 * time.Second)
		start := time.Now()
		rabbitctl(t, "stop_app")
		// away longer than evi's send timeout (2 s): sync raises fail and
		// are reported, not only delayed
		time.Sleep(4 * time.Second)
		rabbitctl(t, "start_app")
		away = time.Since(start)
	})
	logs := p.Logs()[from:]
	// SIP kept flowing: every call and every MESSAGE got its 200
	sipptest.RequireSuccess(t, calls2, rate*seconds)
	sipptest.RequireSuccess(t, msgs2, rate*seconds)
	reported = reportedEvents(logs)
	delivered, dups = drainEvents(t, queue, rate*seconds, reported, 30*time.Second)
	var lost []int
	both := 0
	for n := 1; n <= rate*seconds; n++ {
		d, r := delivered[n], reported[n]
		if !d && !r {
			lost = append(lost, n)
		}
		if d && r {
			both++
		}
	}
	for n := range delivered {
		require.True(t, n >= 1 && n <= rate*seconds, "an event for MESSAGE %d that was never sent", n)
	}
	require.Empty(t, lost, "MESSAGEs whose event was neither delivered nor reported")
	t.Logf("restart: broker away %s; calls %s; MESSAGEs %s", away.Round(time.Millisecond), pct(calls2), pct(msgs2))
	t.Logf("restart: %d MESSAGEs: events delivered %d (duplicates by message id %d), reported to the route %d "+
		"(of which delivered later anyway %d), lost 0", rate*seconds, len(delivered), dups, len(reported), both)
	t.Logf("calls p99: baseline %s, with the restart %s", calls.Percentile(99), calls2.Percentile(99))
	require.Equal(t, 0, p.Stop())
	assert.Equal(t, 0, p.stat(t, "panics"))
}

var (
	reportedRE  = regexp.MustCompile(`msg="cannot raise E_SIP_MESSAGE" call_id=(\d+)-`)
	deliveredRE = regexp.MustCompile(`test call (\d+)\.`)
)

// reportedEvents returns the MESSAGE call numbers whose event raise failed,
// as the route logged them.
func reportedEvents(logs string) map[int]bool {
	out := map[int]bool{}
	for _, m := range reportedRE.FindAllStringSubmatch(logs, -1) {
		n, _ := strconv.Atoi(m[1])
		out[n] = true
	}
	return out
}

// drainEvents takes the queue's events until every MESSAGE 1..n is
// delivered or reported, or within passes; it returns the call numbers
// delivered and how many duplicates (same AMQP message id) came.
func drainEvents(t *testing.T, queue string, n int, reported map[int]bool, within time.Duration) (map[int]bool, int) {
	t.Helper()
	got, ids, dups := map[int]bool{}, map[string]bool{}, 0
	deadline := time.Now().Add(within)
	for {
		withChannel(t, func(ch *amqp.Channel) {
			for {
				msg, ok, err := ch.Get(queue, true)
				require.NoError(t, err)
				if !ok {
					return
				}
				if ids[msg.MessageId] {
					dups++
					continue
				}
				ids[msg.MessageId] = true
				m := deliveredRE.FindStringSubmatch(string(msg.Body))
				require.NotNil(t, m, "event %q", msg.Body)
				k, _ := strconv.Atoi(m[1])
				got[k] = true
			}
		})
		done := true
		for k := 1; k <= n; k++ {
			if !got[k] && !reported[k] {
				done = false
				break
			}
		}
		if done || time.Now().After(deadline) {
			return got, dups
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// withChannel runs f on a fresh AMQP channel (the broker may have
// restarted since the last one).
func withChannel(t *testing.T, f func(ch *amqp.Channel)) {
	t.Helper()
	var conn *amqp.Connection
	var err error
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		if conn, err = amqp.Dial(amqpURL); err == nil || time.Now().After(deadline) {
			break
		}
	}
	require.NoError(t, err, "RabbitMQ at 127.0.0.1:5672 (make test starts it)")
	defer conn.Close()
	ch, err := conn.Channel()
	require.NoError(t, err)
	defer ch.Close()
	f(ch)
}

func rabbitctl(t *testing.T, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "rabbitmqctl", args...).CombinedOutput(); err != nil {
		t.Fatalf("rabbitmqctl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// brokerUp starts the RabbitMQ application again if a failed test left it
// stopped.
func brokerUp(t *testing.T) {
	if c, err := net.DialTimeout("tcp", "127.0.0.1:5672", time.Second); err == nil {
		_ = c.Close()
		return
	}
	if out, err := exec.Command("rabbitmqctl", "start_app").CombinedOutput(); err != nil {
		t.Errorf("rabbitmqctl start_app: %v\n%s", err, out)
	}
}

// Two sipasync nodes share device state over a NATS server of the test's
// own, plus a third node that dies. Under SIPp call load through node A:
//
//   - node K is killed with SIGKILL: A keeps serving (no call fails) and B
//     reads K's device UNAVAILABLE after the expiry (the view details are
//     TestDeviceStateThreeNodes's);
//   - the NATS server is killed: calls keep flowing on local state, a call
//     and a registration made during the outage change A's state; when
//     NATS is back (same port, the bucket gone with the server's memory),
//     B converges: it reads the outage's changes.
func TestFaultNATSRestartAndNodeKilled(t *testing.T) {
	srv := devicestatetest.StartServer(t, devicestatetest.ServerOptions{})
	bucket := devicestatetest.Bucket(t)
	a := dsNode(t, "a", srv.URL, bucket)
	b := dsNode(t, "b", srv.URL, bucket)
	k := dsNode(t, "k", srv.URL, bucket)
	alice := devicestatetest.NewUA(t, "alice")
	kate := devicestatetest.NewUA(t, "kate")
	probe := devicestatetest.NewUA(t, "probe")
	alice.Register(a.addr, 3600)
	kate.Register(k.addr, 3600)
	dsWaitState(t, probe, b, "alice", "NOT_INUSE", 10*time.Second)
	dsWaitState(t, probe, b, "kate", "NOT_INUSE", 5*time.Second)
	longUAS(t, a, "uas_call.xml", "carol")

	const rate, seconds = 20, 15
	// K dies while calls go through A
	l := startLoad(t, a, "calls while K dies", sipptest.Options{Scenario: scenario("uac_call.xml"), Service: "carol",
		MaxCalls: rate * seconds, Rate: rate})
	time.Sleep(3 * time.Second)
	killed := k.sigkill(t)
	took := dsWaitState(t, probe, b, "kate", "UNAVAILABLE", devExpiry+3*time.Second)
	took = time.Since(killed)
	res := l.wait(t)
	sipptest.RequireSuccess(t, res, rate*seconds)
	dsWaitState(t, probe, a, "kate", "UNAVAILABLE", time.Second)
	t.Logf("K killed: B read kate UNAVAILABLE %s later (expiry %s); calls through A: %s",
		took.Round(time.Millisecond), devExpiry, pct(res))

	// NATS dies while calls go through A
	l = startLoad(t, a, "calls while NATS is down", sipptest.Options{Scenario: scenario("uac_call.xml"), Service: "carol",
		MaxCalls: rate * seconds, Rate: rate})
	time.Sleep(2 * time.Second)
	srv.Kill()
	down := time.Now()
	// during the outage: dave registers at A, bob calls alice through A and
	// she answers; A's own state has them at once
	dave := devicestatetest.NewUA(t, "dave")
	dave.Register(a.addr, 3600)
	bob := devicestatetest.NewUA(t, "bob")
	call := bob.Invite(a.addr, "sip:alice@"+a.addr, "sip:alice@127.0.0.1")
	dsAnswer(dsRinging(alice), call, alice)
	dsWaitState(t, probe, a, "alice", "INUSE", time.Second)
	dsWaitState(t, probe, a, "dave", "NOT_INUSE", time.Second)
	time.Sleep(3 * time.Second) // well into the outage (B meanwhile expires A's views)
	srv.Restart()
	outage := time.Since(down)
	tookA := dsWaitState(t, probe, b, "alice", "INUSE", 15*time.Second)
	dsWaitState(t, probe, b, "dave", "NOT_INUSE", 5*time.Second)
	dsWaitState(t, probe, b, "bob", "INUSE", 5*time.Second)
	res = l.wait(t)
	sipptest.RequireSuccess(t, res, rate*seconds)
	t.Logf("NATS down %s: calls through A %s; B converged %s after NATS came back",
		outage.Round(time.Millisecond), pct(res), tookA.Round(time.Millisecond))
	// after the outage, changes flow again
	dsHangup(call, bob, alice)
	dsWaitState(t, probe, b, "alice", "NOT_INUSE", 5*time.Second)
	for _, n := range []*proxy{a, b} {
		require.Equal(t, 0, n.Stop())
		assert.Equal(t, 0, n.stat(t, "panics"))
	}
	assert.Contains(t, a.Logs(), "reconnected to NATS")
}
