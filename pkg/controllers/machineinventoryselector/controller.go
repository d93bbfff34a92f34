// Package machineinventoryselector is the heart of provisioning: it pairs each
// MachineInventorySelector (the CAPI InfraMachine) with exactly one free,
// matching MachineInventory, writes the bootstrap plan, marks the selector
// ready once the agent applied it, and returns the inventory to the pool when
// the selector goes. It is the only writer of MachineInventorySelector status.
package machineinventoryselector

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/rancher/wrangler/v3/pkg/start"
	"github.com/sirupsen/logrus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/record"
	capiv1beta2 "sigs.k8s.io/cluster-api/api/core/v1beta2"

	corev1ctl "github.com/rancher/wrangler/v3/pkg/generated/controllers/core/v1"

	elementalv1 "github.com/elemental-operator/elemental-operator/pkg/apis/elemental.cattle.io/v1beta1"
	capictl "github.com/elemental-operator/elemental-operator/pkg/generated/controllers/cluster.x-k8s.io/v1beta2"
	elementalctl "github.com/elemental-operator/elemental-operator/pkg/generated/controllers/elemental.cattle.io/v1beta1"
	"github.com/elemental-operator/elemental-operator/pkg/inventory"
	"github.com/elemental-operator/elemental-operator/pkg/metrics"
	"github.com/elemental-operator/elemental-operator/pkg/stale"
)

// bootstrapRetry re-checks bootstrap data that is not there yet; the Machine
// watch usually makes progress sooner.
const bootstrapRetry = 30 * time.Second

type handler struct {
	selectors   elementalctl.MachineInventorySelectorController
	inventories elementalctl.MachineInventoryController
	machines    capictl.MachineCache
	clusters    capictl.ClusterCache
	secrets     corev1ctl.SecretController
	k8s         kubernetes.Interface
	recorder    record.EventRecorder
	alloc       *allocator
	written     *stale.Guard

	deferred *stale.Window // selector UID → wait on CAPI or the agent held back, and since when (transient.go)
	planned  *plannedPlans
	whyNots  *whyNots     // selector UID → its last why-not message (whynot.go)
	cleaned  cleanupWatch // quarantined hosts given up, until cleaned (quarantine.go)
	fast     *fastPath
	locks    keyLocks

	inventoryChanges stale.Changes // inventory key → version onInventory last woke for
}

// Register wires the selector handlers and returns the allocator, which must
// be started with the other controllers.
func Register(ctx context.Context, selectors elementalctl.MachineInventorySelectorController,
	inventories elementalctl.MachineInventoryController, machines capictl.MachineController,
	clusters capictl.ClusterController, secrets corev1ctl.SecretController,
	k8s kubernetes.Interface, recorder record.EventRecorder) start.Starter {
	h := &handler{
		selectors:   selectors,
		inventories: inventories,
		machines:    machines.Cache(),
		clusters:    clusters.Cache(),
		secrets:     secrets,
		k8s:         k8s,
		recorder:    recorder,
		written:     stale.New(),
		deferred:    stale.NewWindow(transientDelay),
		planned:     &plannedPlans{m: map[types.UID]plannedPlan{}},
		whyNots:     newWhyNots(),
	}
	h.alloc = newAllocator(inventories, inventories.Cache(), selectors.Cache())
	h.alloc.paused = h.paused
	h.alloc.onJudged = func(mis *elementalv1.MachineInventorySelector) {
		selectors.EnqueueAfter(mis.Namespace, mis.Name, 0)
	}
	h.fast = newFastPath(h.runClaimed)
	h.alloc.onClaimed = func(mis *elementalv1.MachineInventorySelector) {
		h.fast.Add(mis.Namespace + "/" + mis.Name)
	}

	inventories.Cache().AddIndexer(ByOwnerSelectorUID, indexOwnerSelectorUID)
	inventories.Cache().AddIndexer(FreeByNamespace, indexFree)
	selectors.Cache().AddIndexer(WaitingByNamespace, indexWaiting)
	selectors.Cache().AddIndexer(ByCluster, indexCluster)
	selectors.Cache().AddIndexer(ByPool, indexPool)
	inventories.Cache().AddIndexer(ReleasingFor, indexReleasingFor)

	selectors.OnChange(ctx, "machineinventoryselector", func(key string, mis *elementalv1.MachineInventorySelector) (*elementalv1.MachineInventorySelector, error) {
		unlock := h.locks.lock(key)
		defer unlock()
		out, err := h.OnChange(key, mis)
		if err != nil {
			metrics.ReconcileErrors.WithLabelValues("machineinventoryselector").Inc()
			logrus.WithError(err).WithField("selector", key).Debug("selector reconcile failed; retrying")
		}
		return out, err
	})
	inventories.OnChange(ctx, "inventory-to-selector", h.onInventory)
	secrets.OnChange(ctx, "plan-secret-to-selector", h.onPlanSecret)
	machines.OnChange(ctx, "machine-to-selector", func(_ string, m *capiv1beta2.Machine) (*capiv1beta2.Machine, error) {
		if m != nil {
			ref := m.Spec.InfrastructureRef
			if ref.APIGroup == elementalv1.SchemeGroupVersion.Group && ref.Kind == "MachineInventorySelector" {
				selectors.EnqueueAfter(m.Namespace, ref.Name, 0)
			}
		}
		return m, nil
	})
	clusters.OnChange(ctx, "cluster-to-selector", func(_ string, c *capiv1beta2.Cluster) (*capiv1beta2.Cluster, error) {
		if c != nil {
			list, _ := selectors.Cache().GetByIndex(ByCluster, c.Namespace+"/"+c.Name)
			for _, mis := range list {
				selectors.EnqueueAfter(mis.Namespace, mis.Name, 0)
			}
		}
		return c, nil
	})
	return starters{h.alloc, h.fast}
}

// runClaimed is the fast path's run of one selector (fastpath.go): the
// handler, on the freshest cached selector, after any run of the regular
// queue on it; an error goes back to the regular queue. A cached selector
// older than our last write of it (the finalizer, just before the claim) is
// tried again shortly, when the watch has brought the newer one.
func (h *handler) runClaimed(key string) bool {
	unlock := h.locks.lock(key)
	defer unlock()
	ns, name := splitKey(key)
	mis, err := h.selectors.Cache().Get(ns, name)
	if err != nil {
		return false // gone: the regular queue has its deletion
	}
	if h.written.Stale(mis) {
		return true
	}
	if _, err := h.OnChange(key, mis); err != nil {
		logrus.WithError(err).WithField("selector", key).Debug("selector fast path failed; retrying in the regular queue")
		h.selectors.EnqueueAfter(ns, name, 0)
	}
	return false
}

// onInventory maps inventory changes to the selector that claims it, and a
// free inventory to an allocation pass over its namespace. Only a changed
// inventory wakes anyone: the inventory controller's selector-to-inventory
// mapping wakes the inventory back (stale.Changes).
func (h *handler) onInventory(key string, mi *elementalv1.MachineInventory) (*elementalv1.MachineInventory, error) {
	changed := h.inventoryChanges.Changed(key, mi)
	if mi == nil {
		return nil, nil
	}
	if c, ok := inventory.ClaimOf(mi); ok {
		name, uid := c.Selector, string(c.UID)
		if h.orphaned(mi, name, uid) {
			return mi, h.releaseOrphan(mi, name, uid)
		}
		if changed {
			h.selectors.EnqueueAfter(mi.Namespace, name, 0)
		}
	} else if inventory.Free(mi) && changed {
		h.alloc.Enqueue(mi.Namespace)
	}
	if name, ok := h.cleaned.done(mi); ok {
		h.selectors.EnqueueAfter(mi.Namespace, name, 0)
	}
	return mi, nil
}

// orphaned: the claiming selector is gone (e.g. deleted while a claim was in
// flight). Confirmed with a live read: the cache may lag a new selector.
func (h *handler) orphaned(mi *elementalv1.MachineInventory, name, uid string) bool {
	if mis, err := h.selectors.Cache().Get(mi.Namespace, name); err == nil && string(mis.UID) == uid {
		return false
	}
	mis, err := h.selectors.Get(mi.Namespace, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return true
	}
	return err == nil && string(mis.UID) != uid
}

// releaseOrphan returns an inventory whose selector no longer exists.
func (h *handler) releaseOrphan(mi *elementalv1.MachineInventory, name, uid string) error {
	logrus.WithFields(logrus.Fields{"inventory": mi.Namespace + "/" + mi.Name, "selector": name}).Warn("releasing inventory claimed by a selector that no longer exists")
	gone := &elementalv1.MachineInventorySelector{ObjectMeta: metav1.ObjectMeta{Namespace: mi.Namespace, Name: name, UID: types.UID(uid)}}
	return h.release(gone, mi)
}

// onPlanSecret wakes the selector whose bootstrap plan the agent just reported on.
func (h *handler) onPlanSecret(_ string, s *corev1.Secret) (*corev1.Secret, error) {
	if s == nil || s.Type != elementalv1.PlanSecretType {
		return s, nil
	}
	mi, err := h.inventories.Cache().Get(s.Namespace, s.Name)
	if err != nil {
		return s, nil
	}
	// The fast path too: the agent's verdict is what a claimed selector
	// waits for, and it must not queue behind new selectors' finalizers.
	if c, ok := inventory.ClaimOf(mi); ok {
		h.fast.Add(mi.Namespace + "/" + c.Selector)
	} else if name, ok := h.alloc.pendingSelector(s.Namespace + "/" + s.Name); ok {
		h.fast.Add(s.Namespace + "/" + name) // our claim, not in the cache yet
	}
	return s, nil
}

func (h *handler) log(mis *elementalv1.MachineInventorySelector) *logrus.Entry {
	return logrus.WithField("selector", mis.Namespace+"/"+mis.Name)
}

// paused: the selector's own annotation, or its CAPI Cluster's spec.paused.
func (h *handler) paused(mis *elementalv1.MachineInventorySelector) bool {
	if _, ok := mis.Annotations[pausedAnnotation]; ok {
		return true
	}
	if name := mis.Labels[clusterNameLabel]; name != "" {
		if c, err := h.clusters.Get(mis.Namespace, name); err == nil && c.Spec.Paused != nil && *c.Spec.Paused {
			return true
		}
	}
	return false
}

func splitKey(key string) (string, string) {
	ns, name, _ := strings.Cut(key, "/")
	return ns, name
}

// plannedPlans remembers, per selector UID, the bootstrap plan this process
// wrote (inventory and checksum) until the status records it, so the
// handler runs between the plan write and that status write do not read the
// bootstrap Secret and rebuild the plan each time.
type plannedPlans struct {
	mu sync.Mutex
	m  map[types.UID]plannedPlan
}

type plannedPlan struct{ inventory, checksum, secretRV string }

// get returns the checksum of the plan written for uid on inventory, and the
// plan Secret's resourceVersion before that write: while the cache still
// shows it, the cache is behind our write, not the Secret.
func (p *plannedPlans) get(uid types.UID, inventory string) (string, string, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	pp, ok := p.m[uid]
	return pp.checksum, pp.secretRV, ok && pp.inventory == inventory
}

func (p *plannedPlans) set(uid types.UID, inventory, checksum, secretRV string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.m[uid] = plannedPlan{inventory: inventory, checksum: checksum, secretRV: secretRV}
}

func (p *plannedPlans) forget(uid types.UID) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.m, uid)
}
