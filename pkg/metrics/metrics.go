// Package metrics holds the operator's Prometheus registry: Go and process
// collectors, lasso's controller and workqueue metrics, and our own series.
package metrics

import (
	"net/http"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	lassometrics "github.com/rancher/lasso/pkg/metrics"
)

const namespace = "elemental_operator"

var (
	// Registry is what /metrics serves. A private registry (not the default
	// one) keeps client-go's own registrations from colliding with lasso's.
	Registry = prometheus.NewRegistry()

	// Leader is 1 while this process holds the controller lease.
	Leader = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace,
		Name:      "leader",
		Help:      "1 while this replica holds the elemental-operator lease and runs the controllers.",
	})

	// BuildInfo carries the version as a label.
	BuildInfo = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: namespace,
		Name:      "build_info",
		Help:      "Build information; the value is always 1.",
	}, []string{"version"})

	once sync.Once
)

// Register adds every collector to Registry; safe to call more than once
// (tests run several operators in one process).
func Register(version string) {
	once.Do(func() {
		Registry.MustRegister(
			collectors.NewGoCollector(),
			collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
			Leader,
			BuildInfo,
		)
		lassometrics.MustRegisterWithWorkqueue(Registry)
	})
	BuildInfo.WithLabelValues(version).Set(1)
}

// Handler serves Registry in the Prometheus text format.
func Handler() http.Handler {
	return promhttp.HandlerFor(Registry, promhttp.HandlerOpts{Registry: Registry})
}
