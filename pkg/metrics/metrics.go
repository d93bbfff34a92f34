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
			Registrations,
			AdoptionSeconds,
			Plans,
			PlanTampered,
			ReconcileErrors,
			TunnelConnected,
			TunnelConnects,
			RegistrationRefusals,
			InventoriesQuarantined,
			RegistrationTLSReloads,
			inventoriesGauge,
			templateGauge,
		)
		lassometrics.MustRegisterWithWorkqueue(Registry)
		// Export zero error counts rather than no series at all.
		for _, c := range []string{"machineinventory", "machineinventoryselector"} {
			ReconcileErrors.WithLabelValues(c)
		}
	})
	BuildInfo.WithLabelValues(version).Set(1)
}

// Handler serves Registry in the Prometheus text format.
func Handler() http.Handler {
	return promhttp.HandlerFor(Registry, promhttp.HandlerOpts{Registry: Registry})
}

// The operator's own series (see README "Metrics").
var (
	// Registrations counts registration attempts by the registration's auth
	// method and the outcome: registered, reregistered or failed.
	Registrations = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "registrations_total",
		Help: "Host registrations by auth method (tpm, mac, sys-uuid) and result (registered, reregistered, failed).",
	}, []string{"auth", "result"})

	// AdoptionSeconds is the time from a selector's creation to its readiness
	// (claim, bootstrap plan written and applied).
	AdoptionSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: namespace, Name: "adoption_duration_seconds",
		Help:    "Seconds from MachineInventorySelector creation to ready (bootstrap plan applied).",
		Buckets: prometheus.ExponentialBuckets(0.5, 2, 14),
	})

	// Plans counts the agent's verdicts on plans, by plan type and result.
	Plans = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "plans_total",
		Help: "Plan outcomes reported by agents, by plan type (empty, bootstrap, reset, release) and result (applied, failed).",
	}, []string{"type", "result"})

	// PlanTampered counts plan Secrets found with a data.plan that differs
	// from the operator's record, by plan type and whether it was restored.
	PlanTampered = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "plan_tampered_total",
		Help: "Plan Secrets whose data.plan was changed outside the operator, by plan type and whether the recorded plan was restored (true, false).",
	}, []string{"type", "restored"})

	// ReconcileErrors counts handler errors (conflicts included) by controller.
	ReconcileErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "reconcile_errors_total",
		Help: "Reconcile errors by controller; each is retried.",
	}, []string{"controller"})

	// TunnelConnected is 1 while this replica holds a session on Rancher's
	// APIService tunnel (rancher mode), 0 otherwise.
	TunnelConnected = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace, Name: "rancher_tunnel_connected",
		Help: "1 while this replica's tunnel to Rancher (APIService /v3/connect) is connected.",
	})

	// TunnelConnects counts tunnel dial attempts by result (connected, failed).
	TunnelConnects = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "rancher_tunnel_dials_total",
		Help: "Dials of Rancher's APIService tunnel by result (connected, failed).",
	}, []string{"result"})

	// RegistrationRefusals counts connections, requests and conversations
	// the registration server refused or cut short for exceeding a limit.
	RegistrationRefusals = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "registration_refusals_total",
		Help: "Registration connections, requests and conversations refused for exceeding a limit, by reason.",
	}, []string{"reason"})

	// InventoriesQuarantined counts inventories cordoned for failing their
	// bootstrap plan --quarantine-after times.
	InventoriesQuarantined = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: namespace, Name: "inventories_quarantined_total",
		Help: "Inventories cordoned (quarantined) because their bootstrap plan failed --quarantine-after times.",
	})
	// RegistrationTLSReloads counts changes of the registration server's TLS
	// Secret by result: loaded, invalid (the last good certificate stays),
	// deleted.
	RegistrationTLSReloads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "registration_tls_reloads_total",
		Help: "Changes of the registration TLS Secret by result (loaded, invalid: the last good certificate is kept, deleted).",
	}, []string{"result"})

	inventoriesGauge = &scraped[map[[2]string]int]{
		desc: prometheus.NewDesc(namespace+"_inventories",
			"MachineInventories by namespace and state (free, claimed, other), from the operator's cache.",
			[]string{"namespace", "state"}, nil),
		emit: func(ch chan<- prometheus.Metric, desc *prometheus.Desc, counts map[[2]string]int) {
			for k, v := range counts {
				ch <- prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, float64(v), k[0], k[1])
			}
		},
	}
	templateGauge = &scraped[[]TemplateInventories]{
		desc: prometheus.NewDesc(namespace+"_template_inventories",
			"Inventories a MachineInventorySelectorTemplate's selector matches, by class (available, claimed, cordoned, pendingApproval, notReady, deleting): its status counts.",
			[]string{"namespace", "template", "class"}, nil),
		emit: func(ch chan<- prometheus.Metric, desc *prometheus.Desc, templates []TemplateInventories) {
			for _, t := range templates {
				for class, v := range t.ByClass {
					ch <- prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, float64(v), t.Namespace, t.Template, class)
				}
			}
		},
	}
)

// SetInventorySource sets what the inventories gauge reports at scrape time:
// counts keyed by {namespace, state}. Computed from a cache when scraped, so
// it costs nothing between scrapes.
func SetInventorySource(f func() map[[2]string]int) { inventoriesGauge.set(f) }

// TemplateInventories is one template's counts by class.
type TemplateInventories struct {
	Namespace, Template string
	ByClass             map[string]int
}

// SetTemplateSource sets what the template gauge reports at scrape time.
// Being computed from the templates that exist when scraped, a deleted
// template's series disappear with it: no stale series to delete.
func SetTemplateSource(f func() []TemplateInventories) { templateGauge.set(f) }

// scraped is a gauge computed from its source (set at start-up) when
// scraped.
type scraped[T any] struct {
	desc   *prometheus.Desc
	emit   func(ch chan<- prometheus.Metric, desc *prometheus.Desc, v T)
	mu     sync.Mutex
	source func() T
}

func (s *scraped[T]) set(f func() T) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.source = f
}

func (s *scraped[T]) Describe(ch chan<- *prometheus.Desc) { ch <- s.desc }

func (s *scraped[T]) Collect(ch chan<- prometheus.Metric) {
	s.mu.Lock()
	f := s.source
	s.mu.Unlock()
	if f != nil {
		s.emit(ch, s.desc, f())
	}
}
