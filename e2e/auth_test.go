package e2e

import (
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sipasync/sipasync/devicestate/devicestatetest"
	"github.com/sipasync/sipasync/internal/sipptest"
)

// Digest authentication (issue 11, item 7) through the main binary, and
// secrets kept out of everything it prints.

const (
	alicePW = "Al1ce-pw:with:colons"
	bobPW   = "B0b-Secret"
)

// usersFile writes a credentials file for realm "sipasync": alice in
// clear, bob as MD5 and SHA-256 HA1s.
func usersFile(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "users")
	body := "# sipasync users\nalice:sipasync:" + alicePW + "\n" +
		"bob:sipasync:MD5:" + ha1(t, "MD5", "bob", bobPW) + "\n" +
		"bob:sipasync:SHA-256:" + ha1(t, "SHA-256", "bob", bobPW) + "\n"
	require.NoError(t, os.WriteFile(p, []byte(body), 0o600))
	return p
}

// ha1 computes H(user:sipasync:pw).
func ha1(t *testing.T, alg, user, pw string) string {
	t.Helper()
	if alg == "MD5" {
		b := md5.Sum([]byte(user + ":sipasync:" + pw))
		return hex.EncodeToString(b[:])
	}
	b := sha256.Sum256([]byte(user + ":sipasync:" + pw))
	return hex.EncodeToString(b[:])
}

// SIPp (MD5, the only digest algorithm SIPp 3.6 answers, offered first
// with --auth-algorithms) registers bob and places calls from alice to him
// through the proxy; without credentials, an INVITE gets 407 and a
// REGISTER does not bind.
func TestDigestAuthWithSIPp(t *testing.T) {
	p := startProxy(t, "sipasync", "--auth-file", usersFile(t), "--auth-algorithms", "MD5,SHA-256")
	require.Contains(t, p.Logs(), `msg="digest authentication on" realm=sipasync methods=INVITE,REGISTER algorithms=MD5,SHA-256 users=2`)
	u := sipptest.StartT(t, sipptest.Options{Scenario: scenario("uas_call.xml"), Timeout: 60 * time.Second})
	reg := run(t, p, sipptest.Options{Scenario: scenario("register_auth.xml"), Service: "bob", MaxCalls: 1,
		Keys: map[string]string{"contact_port": strconv.Itoa(u.Port())}, ExtraArgs: []string{"-ap", bobPW}})
	sipptest.RequireSuccess(t, reg, 1)
	const calls = 20
	res := run(t, p, sipptest.Options{Scenario: scenario("uac_call_auth.xml"), Service: "bob", MaxCalls: calls, Rate: 20,
		Keys: map[string]string{"caller": "alice"}, ExtraArgs: []string{"-au", "alice", "-ap", alicePW}})
	sipptest.RequireSuccess(t, res, calls)
	// no credentials: 407 (uac_expect ACKs it)
	res = run(t, p, sipptest.Options{Scenario: scenario("uac_expect.xml"), Service: "bob", MaxCalls: 1,
		Keys: map[string]string{"code": "407"}})
	sipptest.RequireSuccess(t, res, 1)
	// the wrong password: challenged again, so the scenario fails on the
	// second 401 and nothing is bound for carol
	res, err := sipptest.Run(ctxT(t, 30*time.Second), sipptest.Options{Scenario: scenario("register_auth.xml"),
		Target: p.addr, Service: "alice", MaxCalls: 1, Timeout: 10 * time.Second,
		Keys: map[string]string{"contact_port": strconv.Itoa(u.Port())}, ExtraArgs: []string{"-ap", "wrong"}})
	if err == nil {
		require.Zero(t, res.Successful, "a wrong password registered")
	}
	addr := adminAddr(t, p)
	m := scrape(t, addr)
	assert.Equal(t, float64(1+calls), m[`sipasync_sipauth_requests_total{outcome="authorized"}`])
	assert.GreaterOrEqual(t, m[`sipasync_sipauth_requests_total{outcome="failed"}`], float64(1))
	assert.GreaterOrEqual(t, m[`sipasync_sipauth_requests_total{outcome="challenged"}`], float64(1+calls+1+1))
	require.Equal(t, 0, p.Stop())
	assert.Equal(t, 0, p.stat(t, "panics"))
}

// A Go client answers with SHA-256 (RFC 8760; the default order offers it
// first): REGISTER and INVITE go through, the relayed INVITE carries no
// credentials, a REGISTER of another user's address is 403, and a reused
// nonce count is challenged again.
func TestDigestAuthSHA256GoClient(t *testing.T) {
	p := startProxy(t, "sipasync", "--auth-file", usersFile(t))
	alice := devicestatetest.NewUA(t, "alice")
	bob := devicestatetest.NewUA(t, "bob")

	// bob registers (401, then SHA-256)
	regLines := func(ua *devicestatetest.UA, aor string, cseq int, extra ...string) []string {
		l := []string{"REGISTER sip:" + p.addr + " SIP/2.0", via(ua), "Max-Forwards: 70",
			"From: <sip:" + aor + "@127.0.0.1>;tag=reg1", "To: <sip:" + aor + "@127.0.0.1>",
			"Call-ID: reg-" + aor + "-" + ua.User, "CSeq: " + strconv.Itoa(cseq) + " REGISTER",
			"Contact: <" + ua.URI() + ">", "Expires: 600"}
		return append(append(l, extra...), "Content-Length: 0")
	}
	bob.Send(p.addr, regLines(bob, "bob", 1)...)
	ch := bob.ExpectStatus(401, "REGISTER")
	hs := ch.GetHeaders("WWW-Authenticate")
	require.Len(t, hs, 2)
	assert.Contains(t, hs[0].Value(), "algorithm=SHA-256")
	assert.Contains(t, hs[1].Value(), "algorithm=MD5")
	cred := digestAnswer(t, hs[0], "REGISTER", "sip:"+p.addr, "bob", bobPW, 1)
	bob.Send(p.addr, regLines(bob, "bob", 2, "Authorization: "+cred)...)
	ok := bob.ExpectStatus(200, "REGISTER")
	require.NotNil(t, ok.Contact())

	// the same credentials again (nonce count 1 reused): a replay
	bob.Send(p.addr, regLines(bob, "bob", 3, "Authorization: "+cred)...)
	bob.ExpectStatus(401, "REGISTER")
	// bob's credentials on alice's address of record: 403, nothing bound
	cred2 := digestAnswer(t, hs[0], "REGISTER", "sip:"+p.addr, "bob", bobPW, 2)
	bob.Send(p.addr, regLines(bob, "alice", 4, "Authorization: "+cred2)...)
	res := bob.ExpectStatus(403, "REGISTER")
	assert.Contains(t, res.Reason, "To User")

	// alice calls bob: 407, ACK, then with SHA-256
	inviteLines := func(cseq int, branch string, extra ...string) []string {
		l := []string{"INVITE sip:bob@127.0.0.1 SIP/2.0", "Via: SIP/2.0/UDP " + alice.Addr() + ";branch=" + branch + ";rport",
			"Max-Forwards: 70", "From: <sip:alice@127.0.0.1>;tag=a1", "To: <sip:bob@127.0.0.1>",
			"Call-ID: call-auth-1", "CSeq: " + strconv.Itoa(cseq) + " INVITE", "Contact: <" + alice.URI() + ">"}
		return append(append(l, extra...), "Content-Length: 0")
	}
	alice.Send(p.addr, inviteLines(1, "z9hG4bK-inv1")...)
	r407 := alice.ExpectStatus(407, "INVITE")
	alice.Send(p.addr, "ACK sip:bob@127.0.0.1 SIP/2.0", "Via: SIP/2.0/UDP "+alice.Addr()+";branch=z9hG4bK-inv1;rport",
		"Max-Forwards: 70", "From: <sip:alice@127.0.0.1>;tag=a1", "To: "+r407.To().Value(), "Call-ID: call-auth-1",
		"CSeq: 1 ACK", "Content-Length: 0")
	pa := r407.GetHeaders("Proxy-Authenticate")
	require.Len(t, pa, 2)
	cred = digestAnswer(t, pa[0], "INVITE", "sip:bob@127.0.0.1", "alice", alicePW, 1)
	alice.Send(p.addr, inviteLines(2, "z9hG4bK-inv2", "Proxy-Authorization: "+cred)...)
	in := bob.ExpectRequest("INVITE")
	assert.Empty(t, in.Req.GetHeaders("Proxy-Authorization"), "credentials consumed before the relay")
	in.Reply(486, "Busy Here")
	alice.ExpectStatus(486, "INVITE")

	// an INVITE that claims to be from bob with alice's credentials: 403
	cred = digestAnswer(t, pa[0], "INVITE", "sip:bob@127.0.0.1", "alice", alicePW, 2)
	alice.Send(p.addr, "INVITE sip:bob@127.0.0.1 SIP/2.0", "Via: SIP/2.0/UDP "+alice.Addr()+";branch=z9hG4bK-inv3;rport",
		"Max-Forwards: 70", "From: <sip:bob@127.0.0.1>;tag=a3", "To: <sip:bob@127.0.0.1>", "Call-ID: call-auth-3",
		"CSeq: 1 INVITE", "Proxy-Authorization: "+cred, "Content-Length: 0")
	alice.ExpectStatus(403, "INVITE")

	m := scrape(t, adminAddr(t, p))
	assert.Equal(t, float64(2), m[`sipasync_sipauth_requests_total{outcome="authorized"}`])
	assert.Equal(t, float64(1), m[`sipasync_sipauth_requests_total{outcome="replayed"}`])
	assert.Equal(t, float64(2), m[`sipasync_sipauth_requests_total{outcome="forbidden"}`])
}

func via(ua *devicestatetest.UA) string {
	return "Via: SIP/2.0/UDP " + ua.Addr() + ";branch=z9hG4bK-" + strconv.FormatInt(time.Now().UnixNano(), 36) + ";rport"
}

// digestAnswer answers a challenge header as a client (icholy/digest, the
// library sipgo's client uses).
func digestAnswer(t *testing.T, h sip.Header, method, uri, user, pw string, nc int) string {
	t.Helper()
	ch, err := digest.ParseChallenge(h.Value())
	require.NoError(t, err)
	cred, err := digest.Digest(ch, digest.Options{Method: method, URI: uri, Username: user, Password: pw, Count: nc})
	require.NoError(t, err)
	return cred.String()
}

// A malformed credentials file, or flags that cannot work, stop the start
// with one line naming the problem (the line of the file), exit 2, and no
// password in it.
func TestAuthFlagsErrorsExitTwo(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad")
	require.NoError(t, os.WriteFile(bad, []byte("alice:sipasync:"+alicePW+"\nbob:sipasync:MD5:0123\n"), 0o600))
	good := usersFile(t)
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"--auth-file", bad}, "line 2: MD5 HA1: want 32 hex digits"},
		{[]string{"--auth-file", filepath.Join(dir, "missing")}, "no such file"},
		{[]string{"--auth-file", good, "--auth-realm", "other"}, `no credentials in realm "other"`},
		{[]string{"--auth-file", good, "--auth-methods", "INVITE,ACK"}, "ACK cannot be challenged"},
		{[]string{"--auth-file", good, "--auth-algorithms", "SHA-512"}, "want MD5 or SHA-256"},
		{[]string{"--auth-file", good, "--auth-nonce-expiry", "10ms"}, "--auth-nonce-expiry"},
	}
	for _, c := range cases {
		out, code := runExit(t, "sipasync", append([]string{"--listen", "udp:127.0.0.1:0", "--admin", "127.0.0.1:0"}, c.args...)...)
		assert.Equal(t, 2, code, "%v: %s", c.args, out)
		assert.Contains(t, out, c.want, c.args)
		assert.Equal(t, 1, strings.Count(out, "\n"), "one line: %q", out)
		assert.NotContains(t, out, alicePW)
	}
}

// Secrets — the credentials file's passwords, an AMQP password in an
// --event socket, NATS credentials in --cluster, the admin token — never
// appear in the logs (debug level, with authentication failures and a
// broker refusing the login), in start-up errors, in --print-config, or on
// /metrics.
func TestSecretsNeverShown(t *testing.T) {
	const (
		amqpPW     = "Amqp-S3cret-pw"
		natsPW     = "Nats-S3cret-pw"
		adminToken = "Adm1n-T0ken-xyz"
	)
	nats := devicestatetest.StartServer(t, devicestatetest.ServerOptions{})
	natsURL := "nats://sipuser:" + natsPW + "@127.0.0.1:" + strconv.Itoa(nats.Port)
	secrets := []string{alicePW, bobPW, amqpPW, natsPW, adminToken}
	args := []string{"--log-level", "debug", "--auth-file", usersFile(t),
		"--event", "E_SIP_MESSAGE=rabbitmq:sipuser:" + amqpPW + "@127.0.0.1:5672/sipasync.secret;sync=0",
		"--cluster", natsURL, "--node-id", "secret", "--devstate-bucket", devicestatetest.Bucket(t),
		"--admin-token", adminToken}
	var printed []string
	check := func(what, s string) {
		t.Helper()
		printed = append(printed, s)
		for _, sec := range secrets {
			if strings.Contains(s, sec) {
				t.Errorf("%s shows secret %q:\n%s", what, sec, s)
			}
		}
	}

	// --print-config, with the same secrets also coming from the environment
	cmd := exec.CommandContext(ctxT(t, 10*time.Second), bins["sipasync"], append(args, "--print-config")...)
	cmd.Env = append(os.Environ(), "SIPASYNC_OUTBOUND=udp:127.0.0.1:5999")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, string(out))
	check("--print-config", string(out))
	require.Contains(t, string(out), "sipuser:xxxxx@127.0.0.1:5672", "the socket is printed, redacted")
	require.Contains(t, string(out), "admin-token: <redacted>")

	// start-up errors naming the flags that hold them
	for _, bad := range [][]string{
		{"--cluster", "http://sipuser:" + natsPW + "@127.0.0.1:1"},
		{"--event", "E_SIP_MESSAGE=rabbitmq:sipuser:" + amqpPW + "@127.0.0.1:99999/q"},
		{"--admin", "0.0.0.0:0", "--admin-token", ""},
	} {
		o, code := runExit(t, "sipasync", append([]string{"--listen", "udp:127.0.0.1:0", "--admin", "127.0.0.1:0"}, bad...)...)
		assert.Equal(t, 2, code, o)
		check("start-up error", o)
	}

	// running: authentication failures, a broker refusing the login
	p := startProxy(t, "sipasync", args...)
	ua := devicestatetest.NewUA(t, "alice")
	for i := 0; i < 3; i++ {
		ua.Send(p.addr, "REGISTER sip:"+p.addr+" SIP/2.0", via(ua), "Max-Forwards: 70",
			"From: <sip:alice@127.0.0.1>;tag=s"+strconv.Itoa(i), "To: <sip:alice@127.0.0.1>", "Call-ID: secret-"+strconv.Itoa(i),
			"CSeq: 1 REGISTER", "Contact: <"+ua.URI()+">", "Content-Length: 0")
		ch := ua.ExpectStatus(401, "REGISTER")
		cred := digestAnswer(t, ch.GetHeaders("WWW-Authenticate")[0], "REGISTER", "sip:"+p.addr, "alice", "not-"+alicePW, 1)
		ua.Send(p.addr, "REGISTER sip:"+p.addr+" SIP/2.0", via(ua), "Max-Forwards: 70",
			"From: <sip:alice@127.0.0.1>;tag=s"+strconv.Itoa(i), "To: <sip:alice@127.0.0.1>", "Call-ID: secret-"+strconv.Itoa(i),
			"CSeq: 2 REGISTER", "Contact: <"+ua.URI()+">", "Authorization: "+cred, "Content-Length: 0")
		ua.ExpectStatus(401, "REGISTER")
	}
	// a MESSAGE raises the event: the transport tries the broker with a
	// password it refuses (logged, retried)
	ua.Send(p.addr, "MESSAGE sip:bob@127.0.0.1 SIP/2.0", via(ua), "Max-Forwards: 70",
		"From: <sip:alice@127.0.0.1>;tag=m1", "To: <sip:bob@127.0.0.1>", "Call-ID: secret-msg", "CSeq: 1 MESSAGE",
		"Content-Type: text/plain", "Content-Length: 2", "", "hi")
	ua.ExpectStatus(404, "MESSAGE")
	addr := adminAddr(t, p)
	// /metrics: refused without the token, served with it
	res, err := http.Get("http://" + addr + "/metrics")
	require.NoError(t, err)
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	assert.Equal(t, http.StatusUnauthorized, res.StatusCode)
	check("/metrics without token", string(body))
	req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	res, err = http.DefaultClient.Do(req)
	require.NoError(t, err)
	body, _ = io.ReadAll(res.Body)
	res.Body.Close()
	require.Equal(t, http.StatusOK, res.StatusCode)
	check("/metrics", string(body))
	assert.Contains(t, string(body), `sipasync_sipauth_requests_total{outcome="failed"} 3`)
	assert.Contains(t, string(body), "sipuser:xxxxx@", "the RabbitMQ socket's label is there, redacted")
	// the log has the refused logins and the broker's refusal
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(p.Logs(), "rabbitmq") && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	assert.Equal(t, 0, p.Stop())
	logs := p.Logs()
	assert.Contains(t, logs, "authentication refused")
	assert.Contains(t, logs, "device_state=\"cluster nats://sipuser:xxxxx@127.0.0.1:")
	check("the log", logs)
	if !t.Failed() {
		t.Logf("%d bytes printed, none shows a secret", len(strings.Join(printed, "")))
	}
}
