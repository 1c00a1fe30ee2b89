// Package sipauth is SIP digest authentication on the server side (RFC 3261
// §22 with RFC 8760's SHA-256 next to MD5, qop=auth): it challenges requests
// with 401 (REGISTER: WWW-Authenticate) or 407 (other methods:
// Proxy-Authenticate) and verifies the credentials of the retried request
// against a Store loaded from a credentials file.
//
// Nonces are stateless HMACs carrying their issue time: one past its expiry
// is answered with a new challenge marked stale=true. The nonce counts of
// nonces that authenticated a request are tracked (bounded), so a request
// replayed with a count already used is refused. The authenticated user must
// be the request's owner: the To user of a REGISTER (a user registers only
// its own bindings), the From user of anything else.
//
// The digest computation is github.com/icholy/digest's (sipgo's client
// side uses it too); this package adds the server's half: nonces, counts,
// credentials, identities and the SIP answers.
package sipauth

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"

	"github.com/sipasync/sipasync/routes"
)

// Defaults of Options.
const (
	DefaultRealm       = "sipasync"
	DefaultNonceExpiry = 30 * time.Second
	DefaultMaxNonces   = 65536
)

// DefaultMethods are the methods challenged when Options.Methods is empty.
var DefaultMethods = []string{sip.REGISTER.String(), sip.INVITE.String()}

// DefaultAlgorithms are offered, in this order of preference (RFC 8760
// §2.4: the strongest first), when Options.Algorithms is empty.
var DefaultAlgorithms = []string{SHA256, MD5}

// ErrOptions marks unusable Options.
var ErrOptions = errors.New("sipauth: options")

// Options configure an Auth.
type Options struct {
	// Credentials are the users' HA1s (required).
	Credentials *Store
	// Realm is the realm challenged with and the one credentials must name
	// (DefaultRealm when empty). The Store must hold at least one user in it.
	Realm string
	// Methods are the request methods challenged (DefaultMethods when
	// empty); ACK and CANCEL cannot be (RFC 3261 §22.1).
	Methods []string
	// Algorithms are offered in each challenge, one challenge header per
	// algorithm, in this order (DefaultAlgorithms when empty): MD5, SHA-256.
	Algorithms []string
	// NonceExpiry is how long a nonce is good for (DefaultNonceExpiry).
	NonceExpiry time.Duration
	// MaxNonces bounds the nonces whose counts are tracked
	// (DefaultMaxNonces).
	MaxNonces int
	// Key signs nonces; a random one when empty. Nodes sharing a key accept
	// each other's nonces (their counts are tracked per node).
	Key   []byte
	Clock clock.Clock
}

// Stats are an Auth's counters.
type Stats struct {
	Challenged uint64 // requests without credentials for the realm: challenged
	Authorized uint64 // requests authenticated
	Failed     uint64 // wrong password, unknown user, nonce not ours, algorithm or qop not offered: challenged again
	Stale      uint64 // nonce expired (or its counts forgotten): challenged with stale=true
	Replayed   uint64 // nonce count already used: challenged again
	Forbidden  uint64 // authenticated as another user than the request's owner: 403
	Malformed  uint64 // credentials that do not parse, or lack a parameter: 400
}

// Auth challenges and verifies requests. It is safe for concurrent use.
type Auth struct {
	store   *Store
	realm   string
	methods map[string]bool
	algs    []string
	clock   clock.Clock
	nonces  *nonces
	counts  *ncTracker
	logs    logLimit

	stats struct {
		challenged, authorized, failed, stale, replayed, forbidden, malformed atomic.Uint64
	}
}

// New validates the options and returns an Auth.
func New(o Options) (*Auth, error) {
	if o.Credentials == nil {
		return nil, fmt.Errorf("%w: no credentials", ErrOptions)
	}
	if o.Realm == "" {
		o.Realm = DefaultRealm
	}
	if err := checkToken("realm", o.Realm); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrOptions, err)
	}
	if o.Credentials.Users(o.Realm) == 0 {
		return nil, fmt.Errorf("%w: no credentials in realm %q", ErrOptions, o.Realm)
	}
	if len(o.Methods) == 0 {
		o.Methods = DefaultMethods
	}
	if len(o.Algorithms) == 0 {
		o.Algorithms = DefaultAlgorithms
	}
	if o.NonceExpiry <= 0 {
		o.NonceExpiry = DefaultNonceExpiry
	}
	if o.MaxNonces <= 0 {
		o.MaxNonces = DefaultMaxNonces
	}
	if o.Clock == nil {
		o.Clock = clock.New()
	}
	a := &Auth{store: o.Credentials, realm: o.Realm, methods: map[string]bool{}, clock: o.Clock,
		nonces: newNonces(o.Key, o.Realm, o.NonceExpiry), counts: newNCTracker(o.MaxNonces, o.NonceExpiry)}
	for _, m := range o.Methods {
		m = strings.ToUpper(strings.TrimSpace(m))
		switch {
		case m == "":
			return nil, fmt.Errorf("%w: empty method", ErrOptions)
		case m == sip.ACK.String() || m == sip.CANCEL.String():
			return nil, fmt.Errorf("%w: %s cannot be challenged", ErrOptions, m)
		case strings.IndexFunc(m, func(r rune) bool { return r < 'A' || r > 'Z' }) >= 0:
			return nil, fmt.Errorf("%w: method %q: letters only", ErrOptions, m)
		}
		a.methods[m] = true
	}
	for _, alg := range o.Algorithms {
		alg = strings.TrimSpace(alg)
		c := canonAlg(alg)
		if c == "" || alg == "" {
			return nil, fmt.Errorf("%w: algorithm %q: want MD5 or SHA-256", ErrOptions, alg)
		}
		if slices.Contains(a.algs, c) {
			return nil, fmt.Errorf("%w: algorithm %s listed twice", ErrOptions, c)
		}
		a.algs = append(a.algs, c)
	}
	return a, nil
}

// Realm returns the realm challenged with.
func (a *Auth) Realm() string { return a.realm }

// Methods returns the challenged methods, sorted.
func (a *Auth) Methods() []string {
	ms := make([]string, 0, len(a.methods))
	for m := range a.methods {
		ms = append(ms, m)
	}
	slices.Sort(ms)
	return ms
}

// Algorithms returns the algorithms offered, in order.
func (a *Auth) Algorithms() []string { return slices.Clone(a.algs) }

// Challenges reports whether requests of the method are challenged.
func (a *Auth) Challenges(method string) bool { return a.methods[method] }

// Stats returns the counters.
func (a *Auth) Stats() Stats {
	return Stats{Challenged: a.stats.challenged.Load(), Authorized: a.stats.authorized.Load(),
		Failed: a.stats.failed.Load(), Stale: a.stats.stale.Load(), Replayed: a.stats.replayed.Load(),
		Forbidden: a.stats.forbidden.Load(), Malformed: a.stats.malformed.Load()}
}

// Decision is the outcome of Check: either the request may go on
// (OK, as User), or it is to be answered with Code, Reason and Headers.
type Decision struct {
	OK      bool
	User    string // the authenticated user ("" when the method is not challenged)
	Code    int
	Reason  string
	Headers []sip.Header
	// Why says, for logs, why a request was not let through ("" when OK):
	// never a password or a hash.
	Why string
}

// Check decides on a request: a method not challenged goes on; otherwise
// the request needs valid credentials for the realm, of its owner. It
// does not change the request.
func (a *Auth) Check(req *sip.Request) Decision {
	if !a.methods[req.Method.String()] {
		return Decision{OK: true}
	}
	now := a.clock.Now()
	hdr := a.credentialsHeader(req.Method)
	var cred *digest.Credentials
	for _, h := range req.GetHeaders(hdr) {
		c, err := digest.ParseCredentials(h.Value())
		if err != nil {
			if digest.IsDigest(h.Value()) {
				a.stats.malformed.Add(1)
				return Decision{Code: 400, Reason: "Bad Request - Malformed " + hdr, Why: "malformed credentials"}
			}
			continue // another scheme: not ours
		}
		if c.Realm == a.realm {
			cred = c
			break
		}
	}
	if cred == nil {
		a.stats.challenged.Add(1)
		return a.challenge(req.Method, now, false, "no credentials")
	}
	if cred.Username == "" || cred.Nonce == "" || cred.URI == "" || cred.Response == "" {
		a.stats.malformed.Add(1)
		return Decision{Code: 400, Reason: "Bad Request - Incomplete " + hdr, Why: "credentials lack username, nonce, uri or response"}
	}
	// The uri must be a URI; it is covered by the response but not compared
	// with the Request-URI: SIPp and some phones put the proxy's address
	// there, and a proxy on the way may have rewritten the Request-URI.
	// Replays are stopped by the nonce counts instead.
	var uri sip.Uri
	if err := sip.ParseUri(cred.URI, &uri); err != nil {
		a.stats.malformed.Add(1)
		return Decision{Code: 400, Reason: "Bad Request - Malformed Digest URI", Why: "digest uri does not parse"}
	}
	alg := canonAlg(cred.Algorithm)
	if alg == "" || !slices.Contains(a.algs, alg) {
		a.stats.failed.Add(1)
		return a.challenge(req.Method, now, false, "algorithm not offered")
	}
	if !strings.EqualFold(cred.QOP, "auth") || cred.Cnonce == "" || cred.Nc <= 0 {
		a.stats.failed.Add(1)
		return a.challenge(req.Method, now, false, "qop=auth with cnonce and nc required")
	}
	state, issued := a.nonces.check(cred.Nonce, now)
	switch state {
	case nonceInvalid:
		a.stats.failed.Add(1)
		return a.challenge(req.Method, now, false, "nonce not ours")
	case nonceStale:
		a.stats.stale.Add(1)
		return a.challenge(req.Method, now, true, "nonce expired")
	}
	ha1, ok := a.store.Lookup(cred.Username, a.realm, alg)
	if !ok || !a.responseOK(req.Method.String(), cred, alg, ha1) {
		a.stats.failed.Add(1)
		return a.challenge(req.Method, now, false, "wrong credentials for user "+strconv.Quote(cred.Username))
	}
	switch a.counts.use(cred.Nonce, issued, uint32(cred.Nc), now) {
	case ncReplay:
		a.stats.replayed.Add(1)
		return a.challenge(req.Method, now, false, "nonce count reused (replay)")
	case ncLost:
		a.stats.stale.Add(1)
		return a.challenge(req.Method, now, true, "nonce counts forgotten")
	}
	owner, ownerHdr := owner(req)
	if owner != cred.Username {
		a.stats.forbidden.Add(1)
		return Decision{Code: 403, Reason: "Forbidden - " + ownerHdr + " User Is Not The Authenticated User",
			Why: fmt.Sprintf("authenticated as %q, %s user is %q", cred.Username, ownerHdr, owner)}
	}
	a.stats.authorized.Add(1)
	return Decision{OK: true, User: cred.Username}
}

// Authorize is Check in a route: when the request may go on it removes our
// credentials from a request that is relayed (anything but REGISTER, as
// Kamailio's consume_credentials) and returns the user and true; otherwise
// it answers the request and returns false.
func (a *Auth) Authorize(c *routes.Context) (string, bool) {
	req := c.Request()
	d := a.Check(req)
	if d.OK {
		if d.User != "" && req.Method != sip.REGISTER {
			a.consume(req)
		}
		return d.User, true
	}
	if d.Why != "no credentials" {
		if ok, skipped := a.logs.allow(a.clock.Now()); ok {
			c.Logger().Info("authentication refused", "method", req.Method.String(), "code", d.Code, "why", d.Why,
				"not_logged_before", skipped)
		}
	}
	if err := c.Reply(d.Code, d.Reason, d.Headers...); err != nil {
		c.Logger().Debug("cannot answer an authentication", "error", err)
	}
	return "", false
}

// consume removes the credentials for our realm, keeping others'.
func (a *Auth) consume(req *sip.Request) {
	name := a.credentialsHeader(req.Method)
	hs := req.GetHeaders(name)
	if len(hs) == 0 {
		return
	}
	for _, h := range hs {
		req.RemoveHeader(h.Name())
	}
	for _, h := range hs {
		if c, err := digest.ParseCredentials(h.Value()); err == nil && c.Realm == a.realm {
			continue
		}
		req.AppendHeader(h)
	}
}

// credentialsHeader is where a request of the method carries credentials:
// REGISTER is challenged by the registrar (401), the rest by the proxy (407).
func (a *Auth) credentialsHeader(m sip.RequestMethod) string {
	if m == sip.REGISTER {
		return "Authorization"
	}
	return "Proxy-Authorization"
}

// challenge returns a 401 or 407 with one challenge per algorithm.
func (a *Auth) challenge(m sip.RequestMethod, now time.Time, stale bool, why string) Decision {
	code, reason, name := 407, "Proxy Authentication Required", "Proxy-Authenticate"
	if m == sip.REGISTER {
		code, reason, name = 401, "Unauthorized", "WWW-Authenticate"
	}
	nonce := a.nonces.issue(now)
	hs := make([]sip.Header, 0, len(a.algs))
	for _, alg := range a.algs {
		ch := digest.Challenge{Realm: a.realm, Nonce: nonce, Algorithm: alg, QOP: []string{"auth"}, Stale: stale}
		hs = append(hs, sip.NewHeader(name, ch.String()))
	}
	return Decision{Code: code, Reason: reason, Headers: hs, Why: why}
}

// responseOK compares the credentials' response with the one HA1 gives, in
// constant time.
func (a *Auth) responseOK(method string, cred *digest.Credentials, alg, ha1 string) bool {
	want, err := digest.Digest(&digest.Challenge{Realm: a.realm, Nonce: cred.Nonce, Algorithm: alg, QOP: []string{"auth"}},
		digest.Options{Method: method, URI: cred.URI, A1: ha1, Cnonce: cred.Cnonce, Count: cred.Nc})
	if err != nil {
		return false
	}
	got := strings.ToLower(cred.Response)
	return subtle.ConstantTimeCompare([]byte(got), []byte(want.Response)) == 1
}

// owner returns the user the request speaks for: the To user of a
// REGISTER, the From user of anything else.
func owner(req *sip.Request) (string, string) {
	if req.Method == sip.REGISTER {
		if to := req.To(); to != nil {
			return to.Address.User, "To"
		}
		return "", "To"
	}
	if from := req.From(); from != nil {
		return from.Address.User, "From"
	}
	return "", "From"
}

// logLimit lets through at most logBurst refusal lines a second, so a
// password-guessing flood does not flood the log; the next line logged says
// how many were not (all are counted in Stats).
type logLimit struct {
	mu      sync.Mutex
	second  int64
	n       int
	skipped int
}

const logBurst = 10

func (l *logLimit) allow(now time.Time) (bool, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if sec := now.Unix(); sec != l.second {
		l.second, l.n = sec, 0
	}
	if l.n >= logBurst {
		l.skipped++
		return false, 0
	}
	l.n++
	skipped := l.skipped
	l.skipped = 0
	return true, skipped
}
