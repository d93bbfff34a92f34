package operator

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"sync/atomic"
	"time"

	"github.com/rancher/wrangler/v3/pkg/kubeconfig"
	"github.com/sirupsen/logrus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/elemental-operator/elemental-operator/pkg/admission"
	"github.com/elemental-operator/elemental-operator/pkg/controllers"
	"github.com/elemental-operator/elemental-operator/pkg/crds"
	"github.com/elemental-operator/elemental-operator/pkg/leader"
	"github.com/elemental-operator/elemental-operator/pkg/metrics"
)

// LeaseName is the Lease every replica competes for.
const LeaseName = "elemental-operator"

// Run runs the operator until ctx is cancelled (nil) or something fatal
// happens: a bind failure, CRD installation failure, lost leadership.
func Run(ctx context.Context, cfg Config, version string) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	restCfg, err := kubeconfig.GetNonInteractiveClientConfig(cfg.Kubeconfig).ClientConfig()
	if err != nil {
		return fmt.Errorf("loading kubeconfig: %w", err)
	}
	return RunWithConfig(ctx, cfg, restCfg, version)
}

// RunWithConfig is Run with an already built rest.Config (tests, the demo).
func RunWithConfig(parent context.Context, cfg Config, restCfg *rest.Config, version string) error {
	err := run(parent, cfg, restCfg, version)
	if err != nil && parent.Err() != nil {
		// Stopped during start-up: the failed call was cut short by the
		// stop (or failed because an earlier one was), nothing to report.
		logrus.WithError(err).Debug("start-up cut short by the stop")
		return nil
	}
	return err
}

func run(parent context.Context, cfg Config, restCfg *rest.Config, version string) error {
	restCfg = rest.CopyConfig(restCfg)
	// Adoption bursts write a lot: the client-side limiter must not be what
	// bounds throughput (the API server has its own fairness).
	restCfg.QPS, restCfg.Burst = 500, 1000
	// The API server warns on every write that our (upstream-compatible)
	// finalizer names have no path: the controllers and the registration
	// server share one writer that says it once.
	restCfg.WarningHandler = rest.NewWarningWriter(logrus.StandardLogger().WriterLevel(logrus.WarnLevel), rest.WarningWriterOptions{Deduplicate: true})

	ctx, cancel := context.WithCancelCause(parent)
	defer cancel(nil)
	log := logrus.WithField("namespace", cfg.Namespace)

	metrics.Register(version)
	var ready atomic.Bool
	health := &healthChecks{ready: &ready}
	servers, err := startServers(cfg, health)
	if err != nil {
		return err
	}
	defer shutdown(servers)

	k8s, err := kubernetes.NewForConfig(restCfg)
	if err != nil {
		return err
	}
	if cfg.CreateNamespace {
		ensureNamespace(ctx, k8s, cfg.Namespace)
	}

	if cfg.InstallCRDs {
		objs, err := crds.Objects()
		if err != nil {
			return err
		}
		if err := crds.Install(ctx, restCfg, objs); err != nil {
			return err
		}
		// The plan-Secret policy ships with the CRDs: whoever installs them
		// (this flag or the charts) also keeps hosts from reprogramming plans.
		switch err := admission.Install(ctx, k8s); {
		case errors.Is(err, admission.ErrNotServed):
			log.Warn("ValidatingAdmissionPolicy is not served (Kubernetes before 1.30?): a host's token can rewrite its plan Secret; tamper detection still repairs data.plan")
		case err != nil:
			return fmt.Errorf("installing the plan Secret admission policy: %w", err)
		}
	}

	static, err := resolveEndpoints(cfg, k8s)
	if err != nil {
		return err
	}
	// The registration server runs on every replica, outside leader election.
	if err := startRegistration(ctx, cfg, restCfg, k8s, static, health); err != nil {
		return err
	}

	app, err := controllers.NewAppContext(restCfg, cfg.Namespace)
	if err != nil {
		return err
	}
	if err := controllers.Register(ctx, app, controllers.Options{Endpoints: static, ResetTimeout: cfg.ResetTimeout, QuarantineAfter: cfg.QuarantineAfter}); err != nil {
		return fmt.Errorf("registering controllers: %w", err)
	}
	ready.Store(true)
	log.WithField("version", version).Info("elemental-operator ready")

	runControllers := func(ctx context.Context) {
		if err := app.Start(ctx, cfg.Workers); err != nil {
			cancel(err)
		}
	}
	if !cfg.LeaderElect {
		metrics.Leader.Set(1)
		runControllers(ctx)
		<-ctx.Done()
		return causeUnlessParentDone(parent, ctx)
	}

	// The lease client must never be throttled behind controller traffic.
	leaseCfg := controllers.ProtobufConfig(restCfg)
	leaseCfg.QPS, leaseCfg.RateLimiter = -1, nil
	leaseClient, err := kubernetes.NewForConfig(leaseCfg)
	if err != nil {
		return err
	}
	err = leader.Run(ctx, leaseClient, leader.Options{
		Namespace:     cfg.Namespace,
		Name:          LeaseName,
		LeaseDuration: cfg.LeaseDuration,
		RenewDeadline: cfg.RenewDeadline,
		RetryPeriod:   cfg.RetryPeriod,
		OnLeading: func(leading bool) {
			if leading {
				metrics.Leader.Set(1)
			} else {
				metrics.Leader.Set(0)
			}
		},
	}, runControllers)
	if err != nil {
		return err
	}
	return causeUnlessParentDone(parent, ctx)
}

// causeUnlessParentDone turns an internal cancellation (a controller failing
// to start) into an error, and a requested shutdown into nil.
func causeUnlessParentDone(parent, ctx context.Context) error {
	if parent.Err() != nil {
		return nil
	}
	if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
		return cause
	}
	return nil
}

// ensureNamespace creates the operator namespace on a bare cluster (the chart
// normally does). Lacking the permission is not an error.
func ensureNamespace(ctx context.Context, k8s kubernetes.Interface, name string) {
	_, err := k8s.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	switch {
	case err == nil:
		logrus.WithField("namespace", name).Info("created operator namespace")
	case apierrors.IsAlreadyExists(err), apierrors.IsForbidden(err):
	default:
		logrus.WithError(err).WithField("namespace", name).Warn("could not create operator namespace")
	}
}

func startServers(cfg Config, health *healthChecks) ([]*http.Server, error) {
	var servers []*http.Server
	serve := func(addr string, h http.Handler) error {
		if addr == "" {
			return nil
		}
		// Listen synchronously so a taken port is a start-up error, not a log line.
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("listening on %s: %w", addr, err)
		}
		srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
		servers = append(servers, srv)
		go func() {
			if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
				logrus.WithError(err).WithField("addr", addr).Error("server stopped")
			}
		}()
		return nil
	}

	if err := serve(cfg.HealthAddr, health.mux()); err != nil {
		return nil, err
	}
	metricsMux := http.NewServeMux()
	metricsMux.Handle("/metrics", metrics.Handler())
	if cfg.Profiling {
		metricsMux.HandleFunc("/debug/pprof/", pprof.Index)
		metricsMux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		metricsMux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	if err := serve(cfg.MetricsAddr, metricsMux); err != nil {
		shutdown(servers)
		return nil, err
	}
	return servers, nil
}

func shutdown(servers []*http.Server) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, s := range servers {
		_ = s.Shutdown(ctx)
	}
}
