package asynchttp

import "github.com/prometheus/client_golang/prometheus"

// The client's metrics, read from its counters at scrape time (the latency
// histogram is the one thing counted on the request path). Register one
// Client per registry: a second would repeat the names.
const (
	namespace = "sipasync"
	subsystem = "asynchttp"
)

var (
	descInFlight = prometheus.NewDesc(prometheus.BuildFQName(namespace, subsystem, "in_flight"),
		"HTTP requests in flight: parked transactions waiting for their answer.", nil, nil)
	descMaxInFlight = prometheus.NewDesc(prometheus.BuildFQName(namespace, subsystem, "max_in_flight"),
		"The bound on requests in flight (MaxInFlight); over it Do answers busy.", nil, nil)
	descRequests = prometheus.NewDesc(prometheus.BuildFQName(namespace, subsystem, "requests_total"),
		"HTTP requests sent, by how they ended: answered (any status), timeout, transport, body_too_large, "+
			"canceled (the park ended first: SIP CANCEL, timeout route, shutdown), closed (the client was closed).",
		[]string{"outcome"}, nil)
	descResponses = prometheus.NewDesc(prometheus.BuildFQName(namespace, subsystem, "responses_total"),
		"Answered requests by HTTP status class (1xx..5xx, other).", []string{"class"}, nil)
	descErrors = prometheus.NewDesc(prometheus.BuildFQName(namespace, subsystem, "errors_total"),
		"Errors by kind: timeout, transport, body_too_large, busy (Do refused: in-flight bound), "+
			"late (a result the engine refused: the park had ended), resume_failed (the engine could not run the route). "+
			"A request may count twice: a timeout whose park had ended is also late.",
		[]string{"kind"}, nil)
)

var classNames = [6]string{"other", "1xx", "2xx", "3xx", "4xx", "5xx"}

var _ prometheus.Collector = (*Client)(nil)

// Describe implements prometheus.Collector.
func (cl *Client) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descInFlight, descMaxInFlight, descRequests, descResponses, descErrors} {
		ch <- d
	}
	cl.hist.Describe(ch)
}

// Collect implements prometheus.Collector.
func (cl *Client) Collect(ch chan<- prometheus.Metric) {
	s := cl.Stats()
	ch <- prometheus.MustNewConstMetric(descInFlight, prometheus.GaugeValue, float64(s.InFlight))
	ch <- prometheus.MustNewConstMetric(descMaxInFlight, prometheus.GaugeValue, float64(s.MaxInFlight))
	type labelled struct {
		label string
		v     uint64
	}
	emit := func(d *prometheus.Desc, vs ...labelled) {
		for _, v := range vs {
			ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v.v), v.label)
		}
	}
	emit(descRequests, labelled{"answered", s.Answered}, labelled{"timeout", s.Timeouts},
		labelled{"transport", s.TransportErrors}, labelled{"body_too_large", s.BodyTooLarge},
		labelled{"canceled", s.Canceled}, labelled{"closed", s.Closed})
	for i, name := range classNames {
		emit(descResponses, labelled{name, s.Classes[i]})
	}
	emit(descErrors, labelled{"timeout", s.Timeouts}, labelled{"transport", s.TransportErrors},
		labelled{"body_too_large", s.BodyTooLarge}, labelled{"busy", s.Busy}, labelled{"late", s.Late},
		labelled{"resume_failed", s.ResumeFailed})
	cl.hist.Collect(ch)
}
