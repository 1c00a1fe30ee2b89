package e2e

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sipasync/sipasync/devicestate/devicestatetest"
	"github.com/sipasync/sipasync/internal/sipptest"
)

// devExpiry is the --devstate-expiry of the cluster tests' nodes.
const devExpiry = 2 * time.Second

// dsBucket returns the shared NATS server's URL and a bucket of the
// test's own, deleted at the end.
func dsBucket(t *testing.T) (string, string) {
	t.Helper()
	url := devicestatetest.RequireNATS(t)
	bucket := devicestatetest.Bucket(t)
	t.Cleanup(func() { devicestatetest.DeleteBucket(url, bucket, "") })
	return url, bucket
}

// dsNode starts testproxy --mode devstate as node id of the cluster at url:
// the default registrar + proxy, OPTIONS answered with the device state.
func dsNode(t *testing.T, id, url, bucket string, extra ...string) *proxy {
	t.Helper()
	args := []string{"--mode", "devstate", "--cluster", url, "--node-id", id, "--shutdown-timeout", "2s",
		"--devstate-bucket", bucket, "--devstate-expiry", devExpiry.String()}
	return startProxy(t, "testproxy", append(args, extra...)...)
}

// sigkill stops the node with SIGKILL, as a crash: no last writes, no
// heartbeat removed.
func (p *proxy) sigkill(t *testing.T) time.Time {
	t.Helper()
	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-p.done
	return time.Now()
}

// dsWaitState asks node p (OPTIONS from ua) for user's state until it reads
// want, and returns how long that took; it fails after within.
func dsWaitState(t *testing.T, ua *devicestatetest.UA, p *proxy, user, want string, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		res := ua.Options(p.addr, user)
		got, views := res.GetHeader("X-Device-State"), res.GetHeader("X-Device-Views")
		if got != nil && got.Value() == want {
			return time.Since(start)
		}
		if time.Since(start) > within {
			t.Fatalf("node %s: %s reads %v (views %v) after %s, want %s", p.addr, user, got, views, within, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// dsViews returns user's per-node views as node p reports them.
func dsViews(t *testing.T, ua *devicestatetest.UA, p *proxy, user string) string {
	t.Helper()
	if h := ua.Options(p.addr, user).GetHeader("X-Device-Views"); h != nil {
		return h.Value()
	}
	return ""
}

// dsRinging takes the INVITE waiting at callee and answers 180.
func dsRinging(callee *devicestatetest.UA) *devicestatetest.Incoming {
	in := callee.ExpectRequest("INVITE")
	in.Reply(180, "Ringing")
	return in
}

// dsAnswer answers 200 and waits for the caller's ACK through the proxy.
func dsAnswer(in *devicestatetest.Incoming, call *devicestatetest.Call, callee *devicestatetest.UA) {
	in.Reply(200, "OK")
	call.Answered()
	callee.ExpectRequest("ACK")
}

// dsHangup: the caller sends BYE, the callee answers it.
func dsHangup(call *devicestatetest.Call, caller, callee *devicestatetest.UA) {
	call.Bye()
	callee.ExpectRequest("BYE").Reply(200, "OK")
	caller.ExpectStatus(200, "BYE")
}

// Issue 9, item 5: three sipasync processes on NATS. alice registers on A;
// bob calls her through B (B relays to her contact, it has no binding of
// her); C, which takes part in neither, reads her RINGING, then INUSE, then
// NOT_INUSE after the BYE. With two calls on her (one answered, one ringing)
// C reads RINGINUSE, and INUSE once the second is rejected. Then B is killed
// in the middle of the answered call:
// within the expiry C reads alice NOT_INUSE (A's view) and bob, whom only B
// knew, UNAVAILABLE — not a stale INUSE.
func TestDeviceStateThreeNodes(t *testing.T) {
	url, bucket := dsBucket(t)
	a := dsNode(t, "a", url, bucket)
	b := dsNode(t, "b", url, bucket)
	c := dsNode(t, "c", url, bucket)
	alice := devicestatetest.NewUA(t, "alice")
	bob := devicestatetest.NewUA(t, "bob")
	probe := devicestatetest.NewUA(t, "probe")

	alice.Register(a.addr, 3600)
	dsWaitState(t, probe, c, "alice", "NOT_INUSE", 10*time.Second)
	dsWaitState(t, probe, b, "alice", "NOT_INUSE", 5*time.Second)

	call := bob.Invite(b.addr, alice.URI(), "sip:alice@127.0.0.1")
	in := dsRinging(alice)
	dsWaitState(t, probe, c, "alice", "RINGING", 5*time.Second)
	dsWaitState(t, probe, c, "bob", "INUSE", 5*time.Second)
	dsAnswer(in, call, alice)
	dsWaitState(t, probe, c, "alice", "INUSE", 5*time.Second)
	dsWaitState(t, probe, a, "alice", "INUSE", 5*time.Second) // the registrar node sees B's call too
	if v := dsViews(t, probe, c, "alice"); v != "a=NOT_INUSE,b=INUSE" {
		t.Fatalf("C's views of alice: %q", v)
	}
	dsHangup(call, bob, alice)
	dsWaitState(t, probe, c, "alice", "NOT_INUSE", 5*time.Second)
	dsWaitState(t, probe, c, "bob", "UNKNOWN", 5*time.Second) // B withdrew its view of bob

	// two calls on one device: one answered, a second one ringing
	// (call waiting), then rejected; B dies in the first
	call = bob.Invite(b.addr, alice.URI(), "sip:alice@127.0.0.1")
	dsAnswer(dsRinging(alice), call, alice)
	dsWaitState(t, probe, c, "alice", "INUSE", 5*time.Second)
	dsWaitState(t, probe, c, "bob", "INUSE", 5*time.Second)
	bob.Invite(b.addr, alice.URI(), "sip:alice@127.0.0.1")
	in = dsRinging(alice)
	dsWaitState(t, probe, c, "alice", "RINGINUSE", 5*time.Second)
	in.Reply(486, "Busy Here")
	bob.ExpectStatus(486, "INVITE")
	dsWaitState(t, probe, c, "alice", "INUSE", 5*time.Second)
	killed := b.sigkill(t)
	took := dsWaitState(t, probe, c, "alice", "NOT_INUSE", devExpiry+3*time.Second)
	dsWaitState(t, probe, c, "bob", "UNAVAILABLE", time.Second)
	dsWaitState(t, probe, a, "bob", "UNAVAILABLE", time.Second)
	took = time.Since(killed)
	t.Logf("B killed: C read alice NOT_INUSE %s later (expiry %s)", took.Round(time.Millisecond), devExpiry)
	// B heartbeats every expiry/3 and C judges every expiry/10: B's views
	// go between expiry-expiry/3 and expiry+expiry/10 after the kill
	if took < devExpiry/2 || took > devExpiry+time.Second {
		t.Fatalf("B's views expired %s after the kill, want about %s", took, devExpiry)
	}
	if v := dsViews(t, probe, c, "alice"); v != "a=NOT_INUSE,b=INUSE(gone)" {
		t.Fatalf("C's views of alice after B died: %q", v)
	}
	if c.count("node gone") == 0 || !strings.Contains(c.Logs(), "peer=b") {
		t.Fatalf("C did not log B gone:\n%s", tail(c.Logs(), 20))
	}
}

// The WAN case: two NATS servers joined as hub and leaf node (a remote
// site), one sipasync node on each; the bucket lives in the hub's JetStream
// domain. alice registers at the branch, bob calls her through the hub's
// node: both sites converge, and when the branch node dies the hub reads
// alice UNAVAILABLE within the expiry.
func TestDeviceStateWAN(t *testing.T) {
	sipptest.Require(t)
	hub := devicestatetest.StartServer(t, devicestatetest.ServerOptions{Name: "hub", Domain: "hub", Hub: true})
	leaf := devicestatetest.StartServer(t, devicestatetest.ServerOptions{Name: "leaf", Domain: "leaf", LeafOf: hub})
	bucket := devicestatetest.Bucket(t)
	hq := dsNode(t, "hq", hub.URL, bucket, "--cluster-domain", "hub")
	branch := dsNode(t, "branch", leaf.URL, bucket, "--cluster-domain", "hub")
	alice := devicestatetest.NewUA(t, "alice")
	bob := devicestatetest.NewUA(t, "bob")
	probe := devicestatetest.NewUA(t, "probe")

	alice.Register(branch.addr, 3600)
	dsWaitState(t, probe, hq, "alice", "NOT_INUSE", 15*time.Second) // the leaf connection may take a moment
	call := bob.Invite(hq.addr, alice.URI(), "sip:alice@127.0.0.1")
	in := dsRinging(alice)
	dsWaitState(t, probe, branch, "alice", "RINGING", 5*time.Second)
	dsAnswer(in, call, alice)
	dsWaitState(t, probe, branch, "alice", "INUSE", 5*time.Second)
	dsWaitState(t, probe, branch, "bob", "INUSE", 5*time.Second)
	if v := dsViews(t, probe, branch, "alice"); v != "branch=NOT_INUSE,hq=INUSE" {
		t.Fatalf("branch's views of alice: %q", v)
	}
	dsHangup(call, bob, alice)
	dsWaitState(t, probe, branch, "alice", "NOT_INUSE", 5*time.Second)
	dsWaitState(t, probe, hq, "alice", "NOT_INUSE", 5*time.Second)

	killed := branch.sigkill(t)
	dsWaitState(t, probe, hq, "alice", "UNAVAILABLE", devExpiry+3*time.Second)
	took := time.Since(killed)
	t.Logf("branch killed: hq read alice UNAVAILABLE %s later (expiry %s)", took.Round(time.Millisecond), devExpiry)
	if took < devExpiry/2 || took > devExpiry+time.Second {
		t.Fatalf("branch's views expired %s after the kill, want about %s", took, devExpiry)
	}
}

// dsWaitLog waits until p has logged s at least n times.
func dsWaitLog(t *testing.T, p *proxy, s string, n int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for p.count(s) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%q logged %d times, want %d:\n%s", s, p.count(s), n, tail(p.Logs(), 30))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// dsRegister registers user at p with its contact on port.
func dsRegister(t *testing.T, p *proxy, user string, port int) {
	t.Helper()
	res := run(t, p, sipptest.Options{Scenario: scenario("register.xml"), Service: user, MaxCalls: 1,
		Keys: map[string]string{"contact_port": strconv.Itoa(port)}})
	sipptest.RequireSuccess(t, res, 1)
}

// examples/queue on two nodes, driven by SIPp as its README does: agents
// alice and bob register with the queue node q1; alice's phone is also
// registered with node b, and a call to her through b makes her busy there.
// A call to the queue then goes to bob, never to alice; with bob busy too
// the queue answers 486 Busy Here; once alice's call ends she gets the next
// queue call.
func TestQueueExample(t *testing.T) {
	url, bucket := dsBucket(t)
	cl := []string{"--cluster", url, "--devstate-bucket", bucket, "--devstate-expiry", devExpiry.String(),
		"--shutdown-timeout", "2s"}
	q := startProxy(t, "queue", append([]string{"--agents", "alice,bob", "--node-id", "q1"}, cl...)...)
	b := startProxy(t, "sipasync", append([]string{"--node-id", "b"}, cl...)...)
	aliceUAS := sipptest.StartT(t, sipptest.Options{Scenario: scenario("uas_call.xml"), Timeout: 90 * time.Second})
	bobUAS := sipptest.StartT(t, sipptest.Options{Scenario: scenario("uas_call.xml"), Timeout: 90 * time.Second})
	dsRegister(t, q, "alice", aliceUAS.Port())
	dsRegister(t, b, "alice", aliceUAS.Port())
	dsRegister(t, q, "bob", bobUAS.Port())
	dsWaitLog(t, q, `device=alice state=NOT_INUSE old=INVALID views="q1=NOT_INUSE"`, 1, 5*time.Second)
	dsWaitLog(t, q, `device=alice state=NOT_INUSE old=NOT_INUSE views="b=NOT_INUSE,q1=NOT_INUSE"`, 1, 10*time.Second)
	dsWaitLog(t, q, `device=bob state=NOT_INUSE`, 1, 5*time.Second)

	// alice takes a 6 s call through node b
	long := sipptest.StartT(t, sipptest.Options{Scenario: scenario("uac_call.xml"), Target: b.addr, Service: "alice",
		MaxCalls: 1, Pause: 6 * time.Second, Timeout: 30 * time.Second})
	dsWaitLog(t, q, `device=alice state=INUSE old=RINGING views="b=INUSE,q1=NOT_INUSE"`, 1, 5*time.Second)

	// a queue call: alice is busy on b, so bob gets it
	res := run(t, q, sipptest.Options{Scenario: scenario("uac_call.xml"), Service: "queue", MaxCalls: 1})
	sipptest.RequireSuccess(t, res, 1)
	if q.count(`queue=queue agent=bob`) != 1 || q.count(`agent=alice`) != 0 {
		t.Fatalf("the first queue call did not go to bob alone:\n%s", tail(q.Logs(), 30))
	}
	if !strings.Contains(q.Logs(), `skipped="alice=INUSE"`) {
		t.Fatalf("the queue did not skip alice as INUSE:\n%s", tail(q.Logs(), 30))
	}

	// bob takes a 6 s call through q: nobody is free
	dsWaitLog(t, q, `device=bob state=NOT_INUSE old=INUSE`, 1, 5*time.Second)
	bobLong := sipptest.StartT(t, sipptest.Options{Scenario: scenario("uac_call.xml"), Target: q.addr, Service: "bob",
		MaxCalls: 1, Pause: 6 * time.Second, Timeout: 30 * time.Second})
	dsWaitLog(t, q, `device=bob state=INUSE old=RINGING`, 2, 5*time.Second)
	res = run(t, q, sipptest.Options{Scenario: scenario("uac_expect.xml"), Service: "queue", MaxCalls: 1,
		Keys: map[string]string{"code": "486"}})
	sipptest.RequireSuccess(t, res, 1)
	dsWaitLog(t, q, `"queue: no agent free"`, 1, time.Second)

	// alice's call through b ends: she is free everywhere and gets the next call
	if r, err := long.Wait(); err != nil || r.Successful != 1 {
		t.Fatalf("alice's call through b: %v %+v", err, r)
	}
	dsWaitLog(t, q, `device=alice state=NOT_INUSE old=INUSE`, 1, 5*time.Second)
	res = run(t, q, sipptest.Options{Scenario: scenario("uac_call.xml"), Service: "queue", MaxCalls: 1})
	sipptest.RequireSuccess(t, res, 1)
	dsWaitLog(t, q, `queue=queue agent=alice`, 1, time.Second)
	if r, err := bobLong.Wait(); err != nil || r.Successful != 1 {
		t.Fatalf("bob's call: %v %+v", err, r)
	}
	// each agent's phone took exactly the calls meant for it
	ra, _ := aliceUAS.Stop()
	rb, _ := bobUAS.Stop()
	if ra.Successful != 2 || rb.Successful != 2 {
		t.Fatalf("alice's phone took %d calls, bob's %d; want 2 each", ra.Successful, rb.Successful)
	}
}

// Bad device state and queue flags: exit 2 with one line naming the flag.
func TestDeviceStateBadFlagsExitTwo(t *testing.T) {
	cases := []struct {
		program string
		args    []string
		want    string
	}{
		{"sipasync", []string{"--cluster", "http://127.0.0.1:4222"}, "--cluster"},
		{"sipasync", []string{"--cluster", "nats://127.0.0.1:4222", "--node-id", "a b"}, "node id"},
		{"sipasync", []string{"--cluster", "nats://127.0.0.1:4222", "--devstate-expiry", "10ms"}, "--devstate-expiry"},
		{"sipasync", []string{"--devstate-busy-at", "-1"}, "--devstate-busy-at"},
		{"queue", nil, "--agents"},
		{"queue", []string{"--agents", "alice,alice"}, "listed twice"},
		{"queue", []string{"--agents", "alice,queue"}, "the queue itself"},
	}
	for _, c := range cases {
		out, code := runExit(t, c.program, c.args...)
		if code != 2 || !strings.Contains(out, c.want) {
			t.Errorf("%s %v: exit %d, output %q; want 2 and %q", c.program, c.args, code, out, c.want)
			continue
		}
		if lines := strings.Count(strings.TrimSpace(out), "\n") + 1; lines != 1 {
			t.Errorf("%s %v: want one line, got %q", c.program, c.args, out)
		}
	}
}

// A node whose NATS server is unreachable starts anyway and works on its own
// state (in-process), counting the failure, until NATS comes.
func TestDeviceStateWithoutNATSWorksLocally(t *testing.T) {
	port := sipptest.FreeTCPPort(t) // nothing listens there
	p := dsNode(t, "lonely", "nats://127.0.0.1:"+strconv.Itoa(port), devicestatetest.Bucket(t))
	alice := devicestatetest.NewUA(t, "alice")
	probe := devicestatetest.NewUA(t, "probe")
	alice.Register(p.addr, 3600)
	dsWaitState(t, probe, p, "alice", "NOT_INUSE", time.Second)
	if v := dsViews(t, probe, p, "alice"); v != "lonely=NOT_INUSE" {
		t.Fatalf("views %q", v)
	}
}
