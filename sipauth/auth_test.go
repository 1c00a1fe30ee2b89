package sipauth

import (
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const realm = "sip.test"

// RFC 2617 §3.5 and RFC 7616 §3.9.1 give HTTP examples; the computation is
// the same for SIP (A2 = method:uri).
func TestResponseRFCVectors(t *testing.T) {
	cases := []struct {
		name, alg, realm, password, nonce, cnonce, want string
	}{
		{"RFC 2617 MD5", MD5, "testrealm@host.com", "Circle Of Life",
			"dcd98b7102dd2f0e8b11d0f600bfb0c093", "0a4f113b", "6629fae49393a05397450978507c4ef1"},
		{"RFC 7616 MD5", MD5, "http-auth@example.org", "Circle of Life",
			"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
			"8ca523f5e9506fed4657c9700eebdbec"},
		{"RFC 7616 SHA-256", SHA256, "http-auth@example.org", "Circle of Life",
			"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
			"753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a := &Auth{realm: c.realm}
			ha1 := HA1(c.alg, "Mufasa", c.realm, c.password)
			cred := &digest.Credentials{Username: "Mufasa", Realm: c.realm, Nonce: c.nonce, URI: "/dir/index.html",
				Cnonce: c.cnonce, Nc: 1, QOP: "auth", Algorithm: c.alg, Response: c.want}
			assert.True(t, a.responseOK("GET", cred, c.alg, ha1))
			cred.Response = strings.ToUpper(c.want) // hex is case-insensitive
			assert.True(t, a.responseOK("GET", cred, c.alg, ha1))
			cred.Nc = 2
			assert.False(t, a.responseOK("GET", cred, c.alg, ha1))
			cred.Nc = 1
			assert.False(t, a.responseOK("POST", cred, c.alg, ha1))
			assert.False(t, a.responseOK("GET", cred, c.alg, HA1(c.alg, "Mufasa", c.realm, "circle of life")))
		})
	}
	// RFC 2617 §3.5's HA1 (htdigest writes it after the realm)
	assert.Equal(t, "939e7578ed9e3c518a452acee763bce9", HA1(MD5, "Mufasa", "testrealm@host.com", "Circle Of Life"))
}

func testStore(t *testing.T) *Store {
	t.Helper()
	s, err := Parse(strings.NewReader(fmt.Sprintf(`# users of %[1]s
alice:%[1]s:alice-pw:with:colons
bob:%[1]s:MD5:%[2]s
carol:other.realm:x
`, realm, HA1(MD5, "bob", realm, "bob-pw"))), "users")
	require.NoError(t, err)
	return s
}

func newAuth(t *testing.T, mod func(*Options)) (*Auth, *clock.Mock) {
	t.Helper()
	mc := clock.NewMock()
	mc.Set(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	o := Options{Credentials: testStore(t), Realm: realm, Clock: mc}
	if mod != nil {
		mod(&o)
	}
	a, err := New(o)
	require.NoError(t, err)
	return a, mc
}

func request(t *testing.T, method, ruri, from, to string, extra ...string) *sip.Request {
	t.Helper()
	raw := method + " " + ruri + " SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-1\r\n" +
		"From: <sip:" + from + "@" + realm + ">;tag=1\r\n" +
		"To: <sip:" + to + "@" + realm + ">\r\n" +
		"Call-ID: c1\r\nCSeq: 1 " + method + "\r\nMax-Forwards: 70\r\n"
	for _, h := range extra {
		raw += h + "\r\n"
	}
	raw += "Content-Length: 0\r\n\r\n"
	m, err := sip.ParseMessage([]byte(raw))
	require.NoError(t, err)
	return m.(*sip.Request)
}

// answer builds the credentials header a client sends back to the
// challenge of algorithm alg in d, as RFC 8760 clients do (with icholy/digest).
func answer(t *testing.T, d Decision, alg, method, uri, user, password string, nc int) string {
	t.Helper()
	for _, h := range d.Headers {
		ch, err := digest.ParseChallenge(h.Value())
		require.NoError(t, err)
		if ch.Algorithm != alg {
			continue
		}
		cred, err := digest.Digest(ch, digest.Options{Method: method, URI: uri, Username: user, Password: password, Count: nc})
		require.NoError(t, err)
		return credName(method) + ": " + cred.String()
	}
	t.Fatalf("no %s challenge in %v", alg, d.Headers)
	return ""
}

func credName(method string) string {
	if method == "REGISTER" {
		return "Authorization"
	}
	return "Proxy-Authorization"
}

func TestChallengeThenAuthorize(t *testing.T) {
	for _, method := range []string{"REGISTER", "INVITE"} {
		for _, alg := range []string{SHA256, MD5} {
			t.Run(method+"/"+alg, func(t *testing.T) {
				a, _ := newAuth(t, nil)
				ruri, owner := "sip:"+realm, "alice"
				if method == "INVITE" {
					ruri = "sip:bob@" + realm
				}
				d := a.Check(request(t, method, ruri, "alice", map[bool]string{true: owner, false: "bob"}[method == "REGISTER"]))
				require.False(t, d.OK)
				wantCode, wantHdr := 407, "Proxy-Authenticate"
				if method == "REGISTER" {
					wantCode, wantHdr = 401, "WWW-Authenticate"
				}
				assert.Equal(t, wantCode, d.Code)
				require.Len(t, d.Headers, 2)
				for i, want := range []string{"SHA-256", "MD5"} { // RFC 8760: the strongest first
					assert.Equal(t, wantHdr, d.Headers[i].Name())
					v := d.Headers[i].Value()
					assert.Contains(t, v, `realm="`+realm+`"`)
					assert.Contains(t, v, "algorithm="+want)
					assert.Contains(t, v, `qop="auth"`)
					assert.NotContains(t, v, "stale")
				}
				to := "bob"
				if method == "REGISTER" {
					to = "alice"
				}
				cred := answer(t, d, alg, method, ruri, "alice", "alice-pw:with:colons", 1)
				d = a.Check(request(t, method, ruri, "alice", to, cred))
				assert.True(t, d.OK, "%+v", d)
				assert.Equal(t, "alice", d.User)
				s := a.Stats()
				assert.Equal(t, uint64(1), s.Challenged)
				assert.Equal(t, uint64(1), s.Authorized)
			})
		}
	}
}

// A client written from RFC 3261 §22.4 alone (no library), MD5, qop=auth,
// against an HA1-only user.
func TestHandComputedMD5(t *testing.T) {
	a, _ := newAuth(t, nil)
	d := a.Check(request(t, "REGISTER", "sip:"+realm, "bob", "bob"))
	require.Equal(t, 401, d.Code)
	ch, err := digest.ParseChallenge(d.Headers[1].Value())
	require.NoError(t, err)
	require.Equal(t, MD5, ch.Algorithm)
	h := func(s string) string { b := md5.Sum([]byte(s)); return hex.EncodeToString(b[:]) }
	ha1 := h("bob:" + realm + ":bob-pw")
	resp := h(ha1 + ":" + ch.Nonce + ":00000001:abcdef:auth:" + h("REGISTER:sip:"+realm))
	cred := fmt.Sprintf(`Authorization: Digest username="bob", realm="%s", nonce="%s", uri="sip:%s", `+
		`response="%s", algorithm=MD5, cnonce="abcdef", qop=auth, nc=00000001`, realm, ch.Nonce, realm, resp)
	d = a.Check(request(t, "REGISTER", "sip:"+realm, "bob", "bob", cred))
	assert.True(t, d.OK, "%+v", d)
	// bob has no SHA-256 HA1: a SHA-256 answer cannot be checked, so it fails
	d = a.Check(request(t, "REGISTER", "sip:"+realm, "bob", "bob"))
	cred = answer(t, d, SHA256, "REGISTER", "sip:"+realm, "bob", "bob-pw", 1)
	d = a.Check(request(t, "REGISTER", "sip:"+realm, "bob", "bob", cred))
	assert.False(t, d.OK)
	assert.Equal(t, 401, d.Code)
}

func TestWrongPasswordAndUnknownUserAreChallengedAgain(t *testing.T) {
	a, _ := newAuth(t, nil)
	for _, c := range []struct{ user, pw string }{{"alice", "nope"}, {"mallory", "x"}, {"carol", "x"}} {
		d := a.Check(request(t, "INVITE", "sip:bob@"+realm, c.user, "bob"))
		cred := answer(t, d, MD5, "INVITE", "sip:bob@"+realm, c.user, c.pw, 1)
		d = a.Check(request(t, "INVITE", "sip:bob@"+realm, c.user, "bob", cred))
		assert.False(t, d.OK)
		assert.Equal(t, 407, d.Code, c.user)
		assert.NotContains(t, d.Headers[0].Value(), "stale")
		assert.NotContains(t, d.Why, c.pw)
	}
	assert.Equal(t, uint64(3), a.Stats().Failed)
	assert.Equal(t, uint64(0), a.Stats().Authorized)
}

func TestStaleNonce(t *testing.T) {
	a, mc := newAuth(t, func(o *Options) { o.NonceExpiry = 10 * time.Second })
	d := a.Check(request(t, "REGISTER", "sip:"+realm, "alice", "alice"))
	mc.Add(10 * time.Second) // still good at its expiry
	cred := answer(t, d, SHA256, "REGISTER", "sip:"+realm, "alice", "alice-pw:with:colons", 1)
	require.True(t, a.Check(request(t, "REGISTER", "sip:"+realm, "alice", "alice", cred)).OK)
	mc.Add(time.Millisecond)
	cred = answer(t, d, SHA256, "REGISTER", "sip:"+realm, "alice", "alice-pw:with:colons", 2)
	d = a.Check(request(t, "REGISTER", "sip:"+realm, "alice", "alice", cred))
	require.False(t, d.OK)
	assert.Equal(t, 401, d.Code)
	for _, h := range d.Headers {
		ch, err := digest.ParseChallenge(h.Value())
		require.NoError(t, err)
		assert.True(t, ch.Stale, h.Value())
	}
	assert.Equal(t, uint64(1), a.Stats().Stale)
	// the fresh nonce of the stale challenge works without asking the user again
	cred = answer(t, d, SHA256, "REGISTER", "sip:"+realm, "alice", "alice-pw:with:colons", 1)
	assert.True(t, a.Check(request(t, "REGISTER", "sip:"+realm, "alice", "alice", cred)).OK)
}

func TestReplayedNonceCount(t *testing.T) {
	a, _ := newAuth(t, nil)
	d := a.Check(request(t, "INVITE", "sip:bob@"+realm, "alice", "bob"))
	for _, step := range []struct {
		nc int
		ok bool
	}{{1, true}, {1, false}, {2, true}, {5, true}, {3, false}, {5, false}, {6, true}} {
		cred := answer(t, d, MD5, "INVITE", "sip:bob@"+realm, "alice", "alice-pw:with:colons", step.nc)
		got := a.Check(request(t, "INVITE", "sip:bob@"+realm, "alice", "bob", cred))
		assert.Equal(t, step.ok, got.OK, "nc %d: %+v", step.nc, got)
		if !step.ok {
			assert.Equal(t, 407, got.Code)
		}
	}
	assert.Equal(t, uint64(3), a.Stats().Replayed)
	assert.Equal(t, uint64(4), a.Stats().Authorized)
}

// The tracker holds MaxNonces nonces; a nonce evicted while still fresh is
// answered stale (its counts are unknown), a newer one is not affected.
func TestNonceTrackerBound(t *testing.T) {
	a, mc := newAuth(t, func(o *Options) { o.MaxNonces = 2 })
	var creds []string
	var chals []Decision
	for i := 0; i < 3; i++ {
		d := a.Check(request(t, "REGISTER", "sip:"+realm, "alice", "alice"))
		chals = append(chals, d)
		creds = append(creds, answer(t, d, MD5, "REGISTER", "sip:"+realm, "alice", "alice-pw:with:colons", 1))
		mc.Add(time.Millisecond)
	}
	for _, c := range creds {
		require.True(t, a.Check(request(t, "REGISTER", "sip:"+realm, "alice", "alice", c)).OK)
	}
	assert.Equal(t, 2, a.counts.len())
	// the first nonce was evicted: nc 2 with it is answered stale
	c0 := answer(t, chals[0], MD5, "REGISTER", "sip:"+realm, "alice", "alice-pw:with:colons", 2)
	d := a.Check(request(t, "REGISTER", "sip:"+realm, "alice", "alice", c0))
	require.False(t, d.OK)
	assert.Contains(t, d.Headers[0].Value(), "stale=true")
	// the others are tracked: a reused count is a replay
	d = a.Check(request(t, "REGISTER", "sip:"+realm, "alice", "alice", creds[2]))
	require.False(t, d.OK)
	assert.Equal(t, uint64(1), a.Stats().Replayed)
	// past their expiry they leave the tracker
	mc.Add(DefaultNonceExpiry + time.Second)
	d = a.Check(request(t, "REGISTER", "sip:"+realm, "alice", "alice"))
	require.True(t, a.Check(request(t, "REGISTER", "sip:"+realm, "alice", "alice",
		answer(t, d, MD5, "REGISTER", "sip:"+realm, "alice", "alice-pw:with:colons", 1))).OK)
	assert.Equal(t, 1, a.counts.len())
}

func TestForbiddenWhenNotTheOwner(t *testing.T) {
	a, _ := newAuth(t, nil)
	// alice's valid credentials on a REGISTER of bob's address
	d := a.Check(request(t, "REGISTER", "sip:"+realm, "alice", "bob"))
	cred := answer(t, d, SHA256, "REGISTER", "sip:"+realm, "alice", "alice-pw:with:colons", 1)
	d = a.Check(request(t, "REGISTER", "sip:"+realm, "alice", "bob", cred))
	assert.False(t, d.OK)
	assert.Equal(t, 403, d.Code)
	assert.Contains(t, d.Reason, "To User")
	// an INVITE from bob's address with alice's credentials
	d = a.Check(request(t, "INVITE", "sip:carol@"+realm, "bob", "carol"))
	cred = answer(t, d, SHA256, "INVITE", "sip:carol@"+realm, "alice", "alice-pw:with:colons", 1)
	d = a.Check(request(t, "INVITE", "sip:carol@"+realm, "bob", "carol", cred))
	assert.Equal(t, 403, d.Code)
	assert.Contains(t, d.Reason, "From User")
	assert.Equal(t, uint64(2), a.Stats().Forbidden)
}

func TestNonceOfAnotherKeyOrForged(t *testing.T) {
	a, _ := newAuth(t, func(o *Options) { o.Key = []byte("key one") })
	b, _ := newAuth(t, func(o *Options) { o.Key = []byte("key two") })
	d := b.Check(request(t, "REGISTER", "sip:"+realm, "alice", "alice"))
	cred := answer(t, d, MD5, "REGISTER", "sip:"+realm, "alice", "alice-pw:with:colons", 1)
	got := a.Check(request(t, "REGISTER", "sip:"+realm, "alice", "alice", cred))
	assert.False(t, got.OK)
	assert.NotContains(t, got.Headers[0].Value(), "stale") // not ours: a plain new challenge
	// a nonce with its time changed no longer verifies
	d = a.Check(request(t, "REGISTER", "sip:"+realm, "alice", "alice"))
	ch, _ := digest.ParseChallenge(d.Headers[0].Value())
	forged := []byte(ch.Nonce)
	forged[3] ^= 1
	st, _ := a.nonces.check(string(forged), time.Now())
	assert.Equal(t, nonceInvalid, st)
	// shared key: nodes take each other's nonces
	c, _ := newAuth(t, func(o *Options) { o.Key = []byte("key two") })
	assert.True(t, c.Check(request(t, "REGISTER", "sip:"+realm, "alice", "alice", cred)).OK)
	assert.Equal(t, uint64(1), a.Stats().Failed)
	assert.Equal(t, uint64(0), a.Stats().Stale)
}

func TestMalformedCredentials(t *testing.T) {
	a, _ := newAuth(t, nil)
	d := a.Check(request(t, "REGISTER", "sip:"+realm, "alice", "alice"))
	good := answer(t, d, MD5, "REGISTER", "sip:"+realm, "alice", "alice-pw:with:colons", 1)
	cases := map[string]string{
		"unterminated quote": `Authorization: Digest username="alice, realm="` + realm + `"`,
		"no response":        `Authorization: Digest username="alice", realm="` + realm + `", nonce="x", uri="sip:` + realm + `"`,
		"uri not a uri":      strings.Replace(good, `uri="sip:`+realm+`"`, `uri="::"`, 1),
		"bad nc":             strings.Replace(good, "nc=00000001", "nc=zz", 1),
	}
	for name, h := range cases {
		got := a.Check(request(t, "REGISTER", "sip:"+realm, "alice", "alice", h))
		assert.Equal(t, 400, got.Code, name)
		assert.False(t, got.OK, name)
	}
	assert.Equal(t, uint64(len(cases)), a.Stats().Malformed)
	// another scheme, or another realm, is not ours: challenged
	for _, h := range []string{`Authorization: Basic YWxpY2U6eA==`, strings.Replace(good, `realm="`+realm, `realm="x`, 1)} {
		got := a.Check(request(t, "REGISTER", "sip:"+realm, "alice", "alice", h))
		assert.Equal(t, 401, got.Code, h)
	}
	// another uri than the one the response was computed for: wrong response
	got := a.Check(request(t, "REGISTER", "sip:"+realm, "alice", "alice",
		strings.Replace(good, `uri="sip:`+realm+`"`, `uri="sip:other.test"`, 1)))
	assert.Equal(t, 401, got.Code)
	// the uri is not compared with the Request-URI (SIPp writes the proxy's address)
	d = a.Check(request(t, "REGISTER", "sip:"+realm, "alice", "alice"))
	elsewhere := answer(t, d, MD5, "REGISTER", "sip:127.0.0.1:5060", "alice", "alice-pw:with:colons", 1)
	assert.True(t, a.Check(request(t, "REGISTER", "sip:"+realm, "alice", "alice", elsewhere)).OK)
	// qop missing (RFC 2069 style) or an algorithm not offered: challenged
	noQop := strings.NewReplacer(", qop=auth", "", "qop=auth, ", "").Replace(good)
	require.NotEqual(t, good, noQop)
	got = a.Check(request(t, "REGISTER", "sip:"+realm, "alice", "alice", noQop))
	assert.Equal(t, 401, got.Code)
	sha, _ := newAuth(t, func(o *Options) { o.Algorithms = []string{SHA256} })
	got = sha.Check(request(t, "REGISTER", "sip:"+realm, "alice", "alice", good))
	assert.Equal(t, 401, got.Code)
	assert.Len(t, got.Headers, 1)
}

func TestMethodsNotChallengedGoOn(t *testing.T) {
	a, _ := newAuth(t, nil)
	for _, m := range []string{"OPTIONS", "MESSAGE", "BYE"} {
		d := a.Check(request(t, m, "sip:bob@"+realm, "alice", "bob"))
		assert.True(t, d.OK, m)
		assert.Empty(t, d.User)
	}
	b, _ := newAuth(t, func(o *Options) { o.Methods = []string{"message"} })
	assert.Equal(t, 407, b.Check(request(t, "MESSAGE", "sip:bob@"+realm, "alice", "bob")).Code)
	assert.True(t, b.Check(request(t, "REGISTER", "sip:"+realm, "alice", "alice")).OK)
	assert.Equal(t, []string{"MESSAGE"}, b.Methods())
}

func TestConsumeKeepsOtherRealms(t *testing.T) {
	a, _ := newAuth(t, nil)
	d := a.Check(request(t, "INVITE", "sip:bob@"+realm, "alice", "bob"))
	ours := answer(t, d, MD5, "INVITE", "sip:bob@"+realm, "alice", "alice-pw:with:colons", 1)
	theirs := `Proxy-Authorization: Digest username="a", realm="upstream", nonce="n", uri="sip:bob@` + realm + `", response="r"`
	req := request(t, "INVITE", "sip:bob@"+realm, "alice", "bob", theirs, ours)
	require.True(t, a.Check(req).OK)
	a.consume(req)
	hs := req.GetHeaders("Proxy-Authorization")
	require.Len(t, hs, 1)
	assert.Contains(t, hs[0].Value(), `realm="upstream"`)
}

func TestNewOptions(t *testing.T) {
	s := testStore(t)
	cases := []struct {
		o    Options
		want string
	}{
		{Options{}, "no credentials"},
		{Options{Credentials: s}, `no credentials in realm "sipasync"`},
		{Options{Credentials: s, Realm: `a"b`}, "realm"},
		{Options{Credentials: s, Realm: realm, Methods: []string{"ACK"}}, "ACK cannot be challenged"},
		{Options{Credentials: s, Realm: realm, Methods: []string{"INV1TE"}}, "letters only"},
		{Options{Credentials: s, Realm: realm, Algorithms: []string{"SHA-512"}}, `"SHA-512"`},
		{Options{Credentials: s, Realm: realm, Algorithms: []string{"md5", "MD5"}}, "twice"},
		{Options{Credentials: s, Realm: realm, Algorithms: []string{" "}}, "want MD5 or SHA-256"},
	}
	for _, c := range cases {
		_, err := New(c.o)
		require.ErrorIs(t, err, ErrOptions)
		assert.Contains(t, err.Error(), c.want)
	}
	a, err := New(Options{Credentials: s, Realm: realm, Algorithms: []string{"md5"}})
	require.NoError(t, err)
	assert.Equal(t, []string{MD5}, a.Algorithms())
	assert.Equal(t, []string{"INVITE", "REGISTER"}, a.Methods())
}

func TestRefusalLogIsRateLimited(t *testing.T) {
	var l logLimit
	now := time.Unix(100, 0)
	for i := 0; i < logBurst; i++ {
		ok, skipped := l.allow(now)
		require.True(t, ok)
		require.Zero(t, skipped)
	}
	for i := 0; i < 5; i++ {
		ok, _ := l.allow(now.Add(900 * time.Millisecond))
		require.False(t, ok)
	}
	ok, skipped := l.allow(now.Add(time.Second))
	assert.True(t, ok)
	assert.Equal(t, 5, skipped)
	ok, skipped = l.allow(now.Add(time.Second))
	assert.True(t, ok)
	assert.Zero(t, skipped)
}
