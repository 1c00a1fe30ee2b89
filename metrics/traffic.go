package metrics

import (
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/emiago/sipgo/sip"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sipasync/sipasync/transaction"
)

// methods are the request methods counted under their own label; any other
// method (they come off the network) is counted as "other", so a peer cannot
// grow the label set.
var methods = []string{"INVITE", "ACK", "BYE", "CANCEL", "REGISTER", "OPTIONS", "MESSAGE",
	"SUBSCRIBE", "NOTIFY", "PUBLISH", "INFO", "PRACK", "UPDATE", "REFER"}

const otherMethod = "other"

// Codes outside 100..699 are counted as "other".
const minCode, maxCode = 100, 699

// Traffic counts what happens per message and per park: requests by method,
// responses by method and code, parks by kind, ends of parks by kind and
// reason, how long parks last and how late timed resumes run. Its methods
// are the hooks of sipproxy.Config.OnRequest, transaction.Options.OnRespond
// and transaction.Options.OnChange. They are safe for concurrent use and do
// not allocate once a (method, code) pair has been seen.
type Traffic struct {
	clock clock.Clock

	requests  *prometheus.CounterVec
	responses *prometheus.CounterVec
	parks     *prometheus.CounterVec
	ends      *prometheus.CounterVec
	duration  *prometheus.HistogramVec
	lateness  prometheus.Histogram

	reqByMethod []prometheus.Counter                 // index: methodIndex
	resByCode   []atomic.Pointer[prometheus.Counter] // index: methodIndex*(codes)+code-minCode
	otherCode   []prometheus.Counter                 // index: methodIndex
	methodIdx   map[string]int                       // read-only after NewTraffic
	names       []string                             // label of each methodIndex

	// The park series, resolved once per label set: WithLabelValues hashes
	// the labels on every call, which the CPU profile at the S1 limit showed
	// as 8 % of the proxy (benchmarks/RESULTS.md).
	parkBy     labelCache[prometheus.Counter]
	endBy      labelCache[prometheus.Counter]
	durationBy labelCache[prometheus.Observer]
}

// labelKey is one or two label values.
type labelKey struct{ a, b string }

// labelCache maps label values to their resolved series. Kinds and reasons
// are a small fixed set, so it stays small.
type labelCache[T any] struct {
	mu   sync.RWMutex
	m    map[labelKey]T
	make func(labelKey) T
}

func (c *labelCache[T]) get(a, b string) T {
	k := labelKey{a, b}
	c.mu.RLock()
	v, ok := c.m[k]
	c.mu.RUnlock()
	if ok {
		return v
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if v, ok = c.m[k]; !ok {
		if c.m == nil {
			c.m = make(map[labelKey]T)
		}
		v = c.make(k)
		c.m[k] = v
	}
	return v
}

// NewTraffic makes the per-message collectors and registers them on reg.
// clk is the time source of the park histograms (nil: the real clock).
func NewTraffic(reg prometheus.Registerer, clk clock.Clock) (*Traffic, error) {
	if clk == nil {
		clk = clock.New()
	}
	t := &Traffic{
		clock: clk,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Subsystem: "sipproxy",
			Name: "requests_total", Help: "SIP requests received, by method (unknown methods: other)."}, []string{"method"}),
		responses: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Subsystem: "sipproxy",
			Name: "replies_total", Help: "SIP responses sent upstream (our own and relayed), by request method and status code."},
			[]string{"method", "code"}),
		parks: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Subsystem: "async",
			Name: "parks_total", Help: "Transactions parked, by kind (async_route, async_ms_route, async_sleep, async_ms_sleep, async_task_route, suspend)."}, []string{"kind"}),
		ends: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Subsystem: "async",
			Name: "resumes_total", Help: "Parks that ended, by kind and reason: timer, task, external (resumed into a route), timeout (answered at the suspend deadline), cancel (CANCEL received)."},
			[]string{"kind", "reason"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: Namespace, Subsystem: "async",
			Name: "park_duration_seconds", Help: "How long a transaction stayed parked, by kind.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 18)}, []string{"kind"}),
		lateness: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: Namespace, Subsystem: "async",
			Name: "resume_lateness_seconds", Help: "Timer resumes: when the resume ran minus when it was due.",
			Buckets: []float64{0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5}}),
		methodIdx: make(map[string]int, len(methods)),
	}
	for _, c := range []prometheus.Collector{t.requests, t.responses, t.parks, t.ends, t.duration, t.lateness} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	t.parkBy.make = func(k labelKey) prometheus.Counter { return t.parks.WithLabelValues(k.a) }
	t.endBy.make = func(k labelKey) prometheus.Counter { return t.ends.WithLabelValues(k.a, k.b) }
	t.durationBy.make = func(k labelKey) prometheus.Observer { return t.duration.WithLabelValues(k.a) }
	all := append(append([]string{}, methods...), otherMethod)
	t.names = all
	t.reqByMethod = make([]prometheus.Counter, len(all))
	t.otherCode = make([]prometheus.Counter, len(all))
	t.resByCode = make([]atomic.Pointer[prometheus.Counter], len(all)*(maxCode-minCode+1))
	for i, m := range all {
		t.methodIdx[m] = i
		t.reqByMethod[i] = t.requests.WithLabelValues(m)
		t.otherCode[i] = t.responses.WithLabelValues(m, "other")
	}
	return t, nil
}

func (t *Traffic) method(req *sip.Request) int {
	if i, ok := t.methodIdx[string(req.Method)]; ok {
		return i
	}
	return t.methodIdx[otherMethod]
}

// Request counts a request received (sipproxy.Config.OnRequest).
func (t *Traffic) Request(req *sip.Request) { t.reqByMethod[t.method(req)].Inc() }

// Response counts a response sent for req (transaction.Options.OnRespond).
func (t *Traffic) Response(req *sip.Request, code int) {
	m := t.method(req)
	if code < minCode || code > maxCode {
		t.otherCode[m].Inc()
		return
	}
	slot := &t.resByCode[m*(maxCode-minCode+1)+code-minCode]
	c := slot.Load()
	if c == nil {
		n := t.responses.WithLabelValues(t.names[m], strconv.Itoa(code))
		slot.CompareAndSwap(nil, &n)
		c = slot.Load()
	}
	(*c).Inc()
}

// Transaction counts parks and their ends (transaction.Options.OnChange).
func (t *Traffic) Transaction(tx *transaction.Tx, ev transaction.Event) {
	switch ev {
	case transaction.EvSuspended:
		t.parkBy.get(tx.Suspension().Kind, "").Inc()
	case transaction.EvResumed:
		s := tx.Suspension()
		reason, _ := tx.ResumeReason()
		now := t.clock.Now()
		t.ended(s, reason.String(), now)
		if reason == transaction.ReasonTimer && !s.Due.IsZero() {
			t.lateness.Observe(now.Sub(s.Due).Seconds())
		}
	case transaction.EvExpired:
		t.ended(tx.Suspension(), transaction.ReasonTimeout.String(), t.clock.Now())
	case transaction.EvCanceled:
		// A CANCEL ends a parked transaction (state Done, it had parks); a
		// live one is left to its route.
		if tx.State() == transaction.Done && tx.Parks() > 0 && !tx.FinalSent() {
			t.ended(tx.Suspension(), transaction.ReasonCancel.String(), t.clock.Now())
		}
	}
}

func (t *Traffic) ended(s transaction.Suspension, reason string, now time.Time) {
	t.endBy.get(s.Kind, reason).Inc()
	if !s.Since.IsZero() {
		t.durationBy.get(s.Kind, "").Observe(now.Sub(s.Since).Seconds())
	}
}
