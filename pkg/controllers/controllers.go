// Package controllers is the controllers' composition point (pkg/operator is
// the process's composition root): it builds every typed controller on one
// shared lasso controller factory, registers the handlers of each controller
// package and the inventories gauge, and starts them (inside leader election).
package controllers

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/rancher/lasso/pkg/cache"
	"github.com/rancher/lasso/pkg/controller"
	corectl "github.com/rancher/wrangler/v3/pkg/generated/controllers/core"
	corev1ctl "github.com/rancher/wrangler/v3/pkg/generated/controllers/core/v1"
	"github.com/rancher/wrangler/v3/pkg/generic"
	"github.com/rancher/wrangler/v3/pkg/schemes"
	"github.com/rancher/wrangler/v3/pkg/start"
	"github.com/sirupsen/logrus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"

	elementalv1 "github.com/elemental-operator/elemental-operator/pkg/apis/elemental.cattle.io/v1beta1"
	"github.com/elemental-operator/elemental-operator/pkg/controllers/machineinventory"
	"github.com/elemental-operator/elemental-operator/pkg/controllers/machineinventoryselector"
	"github.com/elemental-operator/elemental-operator/pkg/controllers/machineinventoryselectortemplate"
	"github.com/elemental-operator/elemental-operator/pkg/controllers/machineregistration"
	"github.com/elemental-operator/elemental-operator/pkg/crdwatch"
	"github.com/elemental-operator/elemental-operator/pkg/endpoints"
	capictl "github.com/elemental-operator/elemental-operator/pkg/generated/controllers/cluster.x-k8s.io"
	capiv1beta2ctl "github.com/elemental-operator/elemental-operator/pkg/generated/controllers/cluster.x-k8s.io/v1beta2"
	elementalctl "github.com/elemental-operator/elemental-operator/pkg/generated/controllers/elemental.cattle.io"
	elementalv1beta1ctl "github.com/elemental-operator/elemental-operator/pkg/generated/controllers/elemental.cattle.io/v1beta1"
	mgmtctl "github.com/elemental-operator/elemental-operator/pkg/generated/controllers/management.cattle.io"
	mgmtv3ctl "github.com/elemental-operator/elemental-operator/pkg/generated/controllers/management.cattle.io/v3"
	"github.com/elemental-operator/elemental-operator/pkg/inventory"
	"github.com/elemental-operator/elemental-operator/pkg/metrics"
)

// ControllerName is the field manager, user agent and event source.
const ControllerName = "elemental-operator"

// AppContext holds the typed controllers every handler package draws from.
// Caches are only started for the kinds a handler actually uses.
type AppContext struct {
	Elemental  elementalv1beta1ctl.Interface
	Core       corev1ctl.Interface
	CAPI       capiv1beta2ctl.Interface
	Management mgmtv3ctl.Interface

	K8s      kubernetes.Interface
	Recorder record.EventRecorder

	Namespace string
	starters  []start.Starter

	// cfg, factories and later start what depends on a kind whose CRD was
	// missing at start-up once it is installed (optional.go).
	cfg       *rest.Config
	factories []start.Starter
	laterMu   sync.Mutex
	later     []pending
}

// NewAppContext builds the factories on one shared controller factory.
// namespace is the operator's own namespace.
func NewAppContext(cfg *rest.Config, namespace string) (*AppContext, error) {
	cfg = rest.CopyConfig(cfg)
	cfg.UserAgent = ControllerName
	// Only plan Secrets are cached, the one kind of Secret a handler reads
	// from the cache: ours by label, plan by type (the generated registration
	// TLS Secret carries the label too, and the server watches it itself). A
	// Rancher management cluster has many more Secrets, and memory matters.
	// (ServiceAccounts, Roles and RoleBindings are never read from a cache:
	// pkg/credentials gets and creates them directly; bootstrap Secrets are
	// read live.)
	managed := func(opts *metav1.ListOptions) {
		opts.LabelSelector = elementalv1.ManagedLabel + "=true"
		opts.FieldSelector = fields.OneTermEqualSelector("type", elementalv1.PlanSecretType).String()
	}
	clients, err := newClientFactory(cfg, schemes.All)
	if err != nil {
		return nil, err
	}
	scf := controller.NewSharedControllerFactory(cache.NewSharedCachedFactory(clients, &cache.SharedCacheFactoryOptions{
		// A slow resync is a safety net, not the mechanism (docs/contracts.md, Cluster API).
		DefaultResync: 5 * time.Minute,
		KindTweakList: map[schema.GroupVersionKind]cache.TweakListOptionsFunc{
			corev1.SchemeGroupVersion.WithKind("Secret"): managed,
		},
	}), &controller.SharedControllerFactoryOptions{
		// Conflicts are expected under contention: retry fast, back off to 30s
		// (the cap on retrying missing bootstrap data, see docs/contracts.md,
		// Cluster API).
		DefaultRateLimiter: workqueue.NewTypedItemExponentialFailureRateLimiter[any](5*time.Millisecond, 30*time.Second),
		DefaultWorkers:     5,
	})
	opts := &generic.FactoryOptions{SharedControllerFactory: scf}

	elemental, err := elementalctl.NewFactoryFromConfigWithOptions(cfg, opts)
	if err != nil {
		return nil, err
	}
	core, err := corectl.NewFactoryFromConfigWithOptions(cfg, opts)
	if err != nil {
		return nil, err
	}
	capi, err := capictl.NewFactoryFromConfigWithOptions(cfg, opts)
	if err != nil {
		return nil, err
	}
	mgmt, err := mgmtctl.NewFactoryFromConfigWithOptions(cfg, opts)
	if err != nil {
		return nil, err
	}
	// Built-in kinds only (Secrets, Events, discovery, credentials): protobuf.
	k8s, err := kubernetes.NewForConfig(ProtobufConfig(cfg))
	if err != nil {
		return nil, err
	}

	broadcaster := record.NewBroadcaster()
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: k8s.CoreV1().Events("")})
	recorder := broadcaster.NewRecorder(schemes.All, corev1.EventSource{Component: ControllerName})

	return &AppContext{
		Elemental:  elemental.Elemental().V1beta1(),
		Core:       core.Core().V1(),
		CAPI:       capi.Cluster().V1beta2(),
		Management: mgmt.Management().V3(),
		K8s:        k8s,
		Recorder:   recorder,
		Namespace:  namespace,
		starters:   []start.Starter{elemental, core, capi, mgmt},
		cfg:        cfg,
		factories:  []start.Starter{elemental, core, capi, mgmt},
	}, nil
}

// Options are the knobs handlers need from the command line.
type Options struct {
	// Endpoints is the resolved registration mode and the command-line URLs.
	Endpoints endpoints.Static
	// ResetTimeout bounds the wait for a host to apply its reset plan.
	ResetTimeout time.Duration
	// QuarantineAfter cordons a host whose bootstrap plan failed that many times (0: never).
	QuarantineAfter int
}

// Register registers every handler.
//
// Handlers that map one object's events to another's key use
// EnqueueAfter(ns, name, 0), never Enqueue: lasso's Enqueue goes through the
// per-key failure rate limiter, so a burst of related events would back the
// key off exponentially (seconds) although nothing failed. It never starts anything: Start does,
// once, inside leader election.
func Register(ctx context.Context, app *AppContext, opts Options) error {
	logrus.WithField("namespace", app.Namespace).Debug("registering controllers")
	machineinventory.Register(ctx, app.Elemental.MachineInventory(), app.Elemental.MachineInventorySelector(),
		app.Core.Secret(), app.K8s, app.Recorder, machineinventory.Options{ResetTimeout: opts.ResetTimeout, QuarantineAfter: opts.QuarantineAfter})
	watchSettings, err := machineregistration.Register(ctx, app.Elemental.MachineRegistration(), app.Management.Setting(), app.K8s.Discovery(),
		app.Recorder, machineregistration.Options{Endpoints: opts.Endpoints})
	if err != nil {
		return err
	}
	if watchSettings != nil {
		app.whenServed("Rancher Settings", crdwatch.RancherSettings, func(ctx context.Context) []start.Starter {
			watchSettings(ctx)
			return nil
		})
	}
	machineinventoryselectortemplate.Register(ctx, app.Elemental.MachineInventorySelectorTemplate(), app.Elemental.MachineInventory())
	metrics.SetInventorySource(inventoryCounts(app.Elemental.MachineInventory().Cache()))
	metrics.SetTemplateSource(templateCounts(app.Elemental.MachineInventorySelectorTemplate().Cache()))
	if err := registerProvisioning(ctx, app); err != nil {
		return err
	}
	return nil
}

// inventoryCounts is what the elemental_operator_inventories gauge reports at
// scrape time: inventories per namespace and state (free, claimed, other),
// counted from the shared cache.
func inventoryCounts(cache elementalv1beta1ctl.MachineInventoryCache) func() map[[2]string]int {
	return func() map[[2]string]int {
		out := map[[2]string]int{}
		all, err := cache.List("", labels.Everything())
		if err != nil {
			return out
		}
		for _, mi := range all {
			state := "other"
			if inventory.Free(mi) {
				state = "free"
			} else if inventory.Claimed(mi) {
				state = "claimed"
			}
			out[[2]string{mi.Namespace, state}]++
		}
		return out
	}
}

// templateCounts is what the elemental_operator_template_inventories gauge
// reports at scrape time: each template's status counts, so the metric and
// `kubectl get elmist` never disagree.
func templateCounts(cache elementalv1beta1ctl.MachineInventorySelectorTemplateCache) func() []metrics.TemplateInventories {
	return func() []metrics.TemplateInventories {
		all, err := cache.List("", labels.Everything())
		if err != nil {
			return nil
		}
		out := make([]metrics.TemplateInventories, 0, len(all))
		for _, t := range all {
			st := t.Status
			out = append(out, metrics.TemplateInventories{Namespace: t.Namespace, Template: t.Name, ByClass: map[string]int{
				inventory.ClassAvailable.String():       st.AvailableInventories,
				inventory.ClassClaimed.String():         st.ClaimedInventories,
				inventory.ClassCordoned.String():        st.CordonedInventories,
				inventory.ClassPendingApproval.String(): st.PendingApprovalInventories,
				inventory.ClassNotReady.String():        st.NotReadyInventories,
				inventory.ClassDeleting.String():        st.DeletingInventories,
			}})
		}
		return out
	}
}

// registerProvisioning wires the selector side, which needs the Cluster API
// kinds: without their CRDs it is left out (nothing could create selectors).
func registerProvisioning(ctx context.Context, app *AppContext) error {
	served, err := crdwatch.Served(app.K8s.Discovery(), crdwatch.ClusterAPI...)
	if err != nil {
		return fmt.Errorf("discovering Cluster API: %w", err)
	}
	register := func(ctx context.Context) []start.Starter {
		return []start.Starter{machineinventoryselector.Register(ctx, app.Elemental.MachineInventorySelector(), app.Elemental.MachineInventory(),
			app.CAPI.Machine(), app.CAPI.Cluster(), app.Core.Secret(), app.K8s, app.Recorder)}
	}
	if !served {
		app.whenServed("provisioning (Cluster API Machine, Cluster)", crdwatch.ClusterAPI, register)
		return nil
	}
	app.starters = append(app.starters, register(ctx)...)
	return nil
}

// Start syncs the caches the handlers asked for, then runs the workers.
func (a *AppContext) Start(ctx context.Context, workers int) error {
	if err := start.All(ctx, workers, a.starters...); err != nil {
		return fmt.Errorf("starting controllers: %w", err)
	}
	return a.startLater(ctx, workers)
}
