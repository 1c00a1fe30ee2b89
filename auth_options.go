package sipasync

import (
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/pflag"

	"github.com/sipasync/sipasync/sipauth"
)

// AuthOptions configure digest authentication (package sipauth) in the
// default route. Without --auth-file nothing is challenged.
type AuthOptions struct {
	File        string
	Realm       string
	Methods     []string
	Algorithms  []string
	NonceExpiry time.Duration
}

// Register adds the --auth-* flags.
func (f *AuthOptions) Register(fs *pflag.FlagSet) {
	fs.StringVar(&f.File, "auth-file", "", "digest credentials, one a line: user:realm:password, user:realm:MD5:HA1 or user:realm:SHA-256:HA1; set, the default route challenges --auth-methods")
	fs.StringVar(&f.Realm, "auth-realm", sipauth.DefaultRealm, "digest realm challenged with; --auth-file must have users in it")
	fs.StringSliceVar(&f.Methods, "auth-methods", sipauth.DefaultMethods, "methods challenged (REGISTER: 401, others: 407), comma-separated")
	fs.StringSliceVar(&f.Algorithms, "auth-algorithms", sipauth.DefaultAlgorithms, "digest algorithms offered, one challenge each, in this order (RFC 8760: SHA-256 first): SHA-256, MD5")
	fs.DurationVar(&f.NonceExpiry, "auth-nonce-expiry", sipauth.DefaultNonceExpiry, "a nonce older than this is answered with a new challenge marked stale=true")
}

// build loads the credentials file: nil without --auth-file.
func (f *AuthOptions) build(log *slog.Logger) (*sipauth.Auth, error) {
	if f.File == "" {
		return nil, nil
	}
	store, err := sipauth.ReadFile(f.File)
	if err != nil {
		return nil, fmt.Errorf("%w: --auth-file: %v", ErrUsage, strings.TrimPrefix(err.Error(), sipauth.ErrFile.Error()+": "))
	}
	if f.NonceExpiry < time.Second {
		return nil, fmt.Errorf("%w: --auth-nonce-expiry %s: want at least 1s", ErrUsage, f.NonceExpiry)
	}
	a, err := sipauth.New(sipauth.Options{Credentials: store, Realm: f.Realm, Methods: f.Methods,
		Algorithms: f.Algorithms, NonceExpiry: f.NonceExpiry})
	if err != nil {
		return nil, fmt.Errorf("%w: --auth-*: %v", ErrUsage, strings.TrimPrefix(err.Error(), sipauth.ErrOptions.Error()+": "))
	}
	log.Info("digest authentication on", "realm", a.Realm(), "methods", strings.Join(a.Methods(), ","),
		"algorithms", strings.Join(a.Algorithms(), ","), "users", store.Users(a.Realm()))
	return a, nil
}

// authCollector puts the authentication counters on /metrics as
// sipasync_sipauth_requests_total{outcome}.
type authCollector struct {
	a    *sipauth.Auth
	desc *prometheus.Desc
}

func newAuthCollector(a *sipauth.Auth) *authCollector {
	return &authCollector{a: a, desc: prometheus.NewDesc("sipasync_sipauth_requests_total",
		"Requests of the challenged methods by outcome: challenged (no credentials), authorized, failed (challenged again), stale, replayed, forbidden (403), malformed (400).",
		[]string{"outcome"}, nil)}
}

func (c *authCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *authCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.a.Stats()
	for _, o := range []struct {
		name string
		v    uint64
	}{{"challenged", s.Challenged}, {"authorized", s.Authorized}, {"failed", s.Failed}, {"stale", s.Stale},
		{"replayed", s.Replayed}, {"forbidden", s.Forbidden}, {"malformed", s.Malformed}} {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, float64(o.v), o.name)
	}
}
