// Command httproute is the default registrar + proxy with every initial
// INVITE routed by an HTTP service, asked while the INVITE is parked
// (Kamailio's http_async_client, OpenSIPS's async(rest_get(...),
// resume_route)) with package async/asynchttp:
//
//	go run ./examples/httproute --lookup-url http://127.0.0.1:8080/route
//
// For an initial INVITE to one of its users (after the default route's own
// checks: Max-Forwards, preloaded Route, authentication) it asks
//
//	GET {--lookup-url}?user=USER&from=FROMUSER
//
// (USER the Request-URI's user, FROMUSER the From's) and parks the INVITE
// until the answer, a JSON object, says what to do:
//
//	{"action":"relay"}                                location lookup and relay, as the default route
//	{"action":"reply","code":486,"reason":"Busy Here"} answer that (300 to 699)
//	{"action":"redirect","target":"sip:bob@10.0.0.2"}  relay to that URI
//
// A malformed answer or an unknown action is answered 500. No answer within
// --lookup-timeout is 504 Server Time-out, a transport error or a non-2xx
// HTTP status 502 Bad Gateway (route[LOOKUP_FAILED]). With
// --lookup-max-in-flight lookups waiting, the next INVITE is answered 503
// with Retry-After. Every other request (REGISTER, MESSAGE, in-dialog
// requests, ...) takes the default route. The lookup client's metrics are on
// /metrics as sipasync_asynchttp_*. See README.md here for a lookup service
// to try it with.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
	"unicode"

	"github.com/emiago/sipgo/sip"
	"github.com/spf13/pflag"

	"github.com/sipasync/sipasync"
	"github.com/sipasync/sipasync/async/asynchttp"
	"github.com/sipasync/sipasync/routes"
	"github.com/sipasync/sipasync/sipproxy"
)

// The routes the lookup resumes into.
const (
	RouteLookup       = "LOOKUP"        // the answer, or the timeout
	RouteLookupFailed = "LOOKUP_FAILED" // no usable answer: 504 or 502
)

// options are the program's own flags.
type options struct {
	url         string
	timeout     time.Duration
	maxInFlight int
	maxConns    int
}

func (o *options) register(fs *pflag.FlagSet) {
	fs.StringVar(&o.url, "lookup-url", "", "HTTP service asked for every initial INVITE: GET URL?user=USER&from=FROMUSER (required)")
	fs.DurationVar(&o.timeout, "lookup-timeout", 500*time.Millisecond, "no answer within this: 504 Server Time-out (1ms up to --suspend-timeout)")
	fs.IntVar(&o.maxInFlight, "lookup-max-in-flight", 1024, "lookups waiting at once; past it an INVITE is answered 503 with Retry-After")
	fs.IntVar(&o.maxConns, "lookup-max-conns-per-host", asynchttp.DefaultMaxConnsPerHost, "keep-alive connections to the lookup service; lookups beyond them queue for one")
}

func main() {
	var o options
	var client *asynchttp.Client
	code := sipasync.Main("httproute", os.Args[1:], os.Stderr, o.register, func(a *sipasync.Server) error {
		r, err := setup(a, o)
		if r != nil {
			client = r.client
		}
		return err
	})
	// sipasync.Main returns after the proxy drained: lookups still in flight
	// can only be late now.
	if client != nil {
		client.Close()
	}
	os.Exit(code)
}

// router holds what the routes need.
type router struct {
	proxy   *sipproxy.Proxy
	client  *asynchttp.Client
	base    *url.URL
	timeout time.Duration
}

// setup checks the flags, builds the lookup client and registers the
// routes. A flag it cannot use is an error, which sipasync.Main prints as one
// line before exiting 2.
func setup(a *sipasync.Server, o options) (*router, error) {
	base, err := parseLookupURL(o.url)
	if err != nil {
		return nil, err
	}
	if o.timeout < time.Millisecond || o.timeout > a.Options.SuspendTimeout {
		return nil, fmt.Errorf("--lookup-timeout %s: want 1ms to --suspend-timeout (%s)", o.timeout, a.Options.SuspendTimeout)
	}
	if o.maxInFlight < 1 || o.maxConns < 1 {
		return nil, fmt.Errorf("--lookup-max-in-flight and --lookup-max-conns-per-host must be >= 1")
	}
	cl, err := asynchttp.New(asynchttp.Options{MaxInFlight: o.maxInFlight, MaxConnsPerHost: o.maxConns,
		Timeout: o.timeout, Logger: a.Log})
	if err != nil {
		return nil, err
	}
	r := &router{proxy: a.Proxy, client: cl, base: base, timeout: o.timeout}
	if err := a.Registry.Register(cl); err != nil {
		return r, fmt.Errorf("lookup metrics: %w", err)
	}
	a.Routes.Expect(routes.KindNamed, RouteLookup, "request_route")
	a.Routes.Expect(routes.KindNamed, RouteLookupFailed, "route["+RouteLookup+"]")
	if err := a.Routes.Route(RouteLookup, routes.HandlerFunc(r.resumed)); err != nil {
		return r, err
	}
	if err := a.Routes.Route(RouteLookupFailed, routes.HandlerFunc(r.failed)); err != nil {
		return r, err
	}
	a.Log.Info("httproute: INVITEs routed by lookup", "lookup_url", base.Redacted(), "lookup_timeout", o.timeout.String(),
		"lookup_max_in_flight", o.maxInFlight)
	return r, a.Routes.Request(a.Proxy.DefaultRoute(sipproxy.DefaultOptions{BeforeRelay: routes.HandlerFunc(r.ask)}))
}

// parseLookupURL checks --lookup-url: an absolute http or https URL.
func parseLookupURL(s string) (*url.URL, error) {
	if s == "" {
		return nil, errors.New("--lookup-url is required: the HTTP service that routes INVITEs")
	}
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("--lookup-url: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("--lookup-url %q: want an http:// or https:// URL with a host", s)
	}
	return u, nil
}

// lookupURL is the query for one INVITE: the base URL with user and from
// set (other parameters of the base kept).
func lookupURL(base *url.URL, user, from string) string {
	u := *base
	q := u.Query()
	q.Set("user", user)
	q.Set("from", from)
	u.RawQuery = q.Encode()
	return u.String()
}

// ask runs in the default route just before the location lookup, for an
// initial request to a local user. An INVITE is parked on its lookup; any
// other request goes on to the lookup and relay.
func (r *router) ask(c *routes.Context) error {
	req := c.Request()
	if !req.IsInvite() {
		return nil
	}
	hreq, err := http.NewRequest(http.MethodGet, lookupURL(r.base, req.Recipient.User, sipproxy.FromUser(req)), nil)
	if err != nil {
		return routes.Error(500, "Server Internal Error", err)
	}
	hreq.Header.Set("Accept", "application/json")
	err = r.client.Do(c, hreq, RouteLookup, r.timeout)
	if errors.Is(err, asynchttp.ErrBusy) {
		// The proxy adds Retry-After to a 503.
		return routes.Error(503, "Service Unavailable", err)
	}
	// nil: parked. Another error (the table's parked bound, a CANCEL that
	// came first) is answered by the proxy: 503 for a bound, else 500.
	return err
}

// decision is the lookup service's answer.
type decision struct {
	Action string `json:"action"`
	Code   int    `json:"code"`
	Reason string `json:"reason"`
	Target string `json:"target"`

	uri sip.Uri // Target parsed, for redirect
}

// parseDecision reads and checks an answer body.
func parseDecision(body []byte) (*decision, error) {
	var d decision
	if err := json.Unmarshal(body, &d); err != nil {
		return nil, fmt.Errorf("lookup answer: %w", err)
	}
	switch d.Action {
	case "relay":
	case "reply":
		if d.Code < 300 || d.Code > 699 {
			return nil, fmt.Errorf("lookup answer: reply code %d: want 300 to 699", d.Code)
		}
		if d.Reason == "" {
			d.Reason = "Rejected"
		}
		// The reason goes into the status line: no line breaks or other
		// control characters.
		if len(d.Reason) > 128 || strings.IndexFunc(d.Reason, unicode.IsControl) >= 0 {
			return nil, fmt.Errorf("lookup answer: reason %q: want up to 128 printable characters", d.Reason)
		}
	case "redirect":
		if err := sip.ParseUri(d.Target, &d.uri); err != nil {
			return nil, fmt.Errorf("lookup answer: redirect target %q: %w", d.Target, err)
		}
		if (d.uri.Scheme != "sip" && d.uri.Scheme != "sips") || d.uri.Host == "" {
			return nil, fmt.Errorf("lookup answer: redirect target %q: want a sip: or sips: URI with a host", d.Target)
		}
	default:
		return nil, fmt.Errorf("lookup answer: unknown action %q", d.Action)
	}
	return &d, nil
}

// resumed is route[LOOKUP]: the lookup's answer (or its timeout) decides.
func (r *router) resumed(c *routes.Context) error {
	res, ok := asynchttp.ResultOf(c)
	if !ok {
		return routes.Error(500, "Server Internal Error", errors.New("route[LOOKUP] was not resumed by a lookup"))
	}
	if res.Err != nil || res.Status < 200 || res.Status > 299 {
		return c.Route(RouteLookupFailed)
	}
	d, err := parseDecision(res.Body)
	if err != nil {
		c.Logger().Info("httproute: unusable lookup answer: 500", "error", err)
		return c.Reply(500, "Server Internal Error - Bad Lookup Answer")
	}
	switch d.Action {
	case "reply":
		return c.Reply(d.Code, d.Reason)
	case "redirect":
		c.Request().Recipient = d.uri
		return c.Relay()
	}
	return r.proxy.LookupRelay(c)
}

// failed is route[LOOKUP_FAILED]: no usable answer. The lookup's errors are
// counted on /metrics (sipasync_asynchttp_errors_total), so each is logged
// at debug only: an outage of the service would flood the log otherwise.
func (r *router) failed(c *routes.Context) error {
	res, _ := asynchttp.ResultOf(c)
	if res != nil && res.Timeout {
		c.Logger().Debug("httproute: lookup timed out: 504", "after", res.Duration.String())
		return c.Reply(504, "Server Time-out")
	}
	why := "no result"
	if res != nil && res.Err != nil {
		why = res.Err.Error()
	} else if res != nil {
		why = fmt.Sprintf("HTTP status %d", res.Status)
	}
	c.Logger().Debug("httproute: lookup failed: 502", "why", why)
	return c.Reply(502, "Bad Gateway")
}
