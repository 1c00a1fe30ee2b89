// Package promkit is what each sipasync package uses to expose its own
// counters to Prometheus: metric descriptions under the "sipasync"
// namespace with the package's subsystem, and a collector that reads the
// package's Stats at scrape time, so the request path pays nothing for
// metrics. Each package's metrics.go builds its collector with it.
package promkit

import "github.com/prometheus/client_golang/prometheus"

// Namespace is the prefix of every sipasync metric.
const Namespace = "sipasync"

// Metric is one metric a collector emits: its description and type.
type Metric struct {
	desc *prometheus.Desc
	typ  prometheus.ValueType
}

// Counter describes a counter sipasync_SUB_NAME with the given labels.
func Counter(sub, name, help string, labels ...string) Metric {
	return Metric{prometheus.NewDesc(prometheus.BuildFQName(Namespace, sub, name), help, labels, nil), prometheus.CounterValue}
}

// Gauge describes a gauge sipasync_SUB_NAME with the given labels.
func Gauge(sub, name, help string, labels ...string) Metric {
	return Metric{prometheus.NewDesc(prometheus.BuildFQName(Namespace, sub, name), help, labels, nil), prometheus.GaugeValue}
}

// Emitter sends the values of one scrape.
type Emitter struct{ ch chan<- prometheus.Metric }

// Number is what Emit takes.
type Number interface {
	~int | ~int32 | ~int64 | ~uint32 | ~uint64 | ~float64
}

// Emit sends m's value v with its label values.
func Emit[N Number](e Emitter, m Metric, v N, labels ...string) {
	e.ch <- prometheus.MustNewConstMetric(m.desc, m.typ, float64(v), labels...)
}

// Bool is 1 for true, 0 for false, for gauges of a state.
func Bool(b bool) int {
	if b {
		return 1
	}
	return 0
}

// Collector is a prometheus.Collector over a fixed set of metrics whose
// values collect reads at scrape time.
type Collector struct {
	metrics []Metric
	collect func(Emitter)
}

// NewCollector returns a collector of ms; collect emits their values.
func NewCollector(ms []Metric, collect func(Emitter)) *Collector {
	return &Collector{metrics: ms, collect: collect}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, m := range c.metrics {
		ch <- m.desc
	}
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) { c.collect(Emitter{ch}) }
