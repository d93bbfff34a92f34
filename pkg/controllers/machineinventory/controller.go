// Package machineinventory runs the MachineInventory lifecycle: the plan
// Secret, plan state from the agent's write-back, release back to the pool,
// and deletion (reset, then explicit cleanup of everything the inventory owns).
// It is the only writer of MachineInventory status.
package machineinventory

import (
	"context"
	"sync"
	"time"

	corev1ctl "github.com/rancher/wrangler/v3/pkg/generated/controllers/core/v1"
	"github.com/sirupsen/logrus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/record"

	elementalv1 "github.com/elemental-operator/elemental-operator/pkg/apis/elemental.cattle.io/v1beta1"
	elementalctl "github.com/elemental-operator/elemental-operator/pkg/generated/controllers/elemental.cattle.io/v1beta1"
	"github.com/elemental-operator/elemental-operator/pkg/metrics"
	"github.com/elemental-operator/elemental-operator/pkg/stale"
)

// Options tune the controller.
type Options struct {
	// ResetTimeout bounds how long a deleting, resettable inventory waits for
	// its host to apply the reset plan (an offline host never blocks deletion).
	ResetTimeout time.Duration
	// QuarantineAfter cordons an inventory whose bootstrap plan the agent
	// reports failed this many times (quarantine.go); 0 disables it.
	QuarantineAfter int
}

type handler struct {
	inventories elementalctl.MachineInventoryController
	selectors   elementalctl.MachineInventorySelectorCache
	secrets     corev1ctl.SecretController
	k8s         kubernetes.Interface
	recorder    record.EventRecorder
	opts        Options
	now         func() time.Time
	// written skips cache copies older than our own last write.
	written *stale.Guard

	deferred *stale.Window // inventory UID → in-progress state held back, and since when (transient.go)
	// tampers: inventory UID → a tampering found whose status is not written yet (tamper.go).
	tampers sync.Map
	// rotations: inventory UID → the rotate-credential value its
	// ServiceAccount is known to record (credentials.go). Accounts are not
	// cached, so this spares a live read on every pass.
	rotations sync.Map
}

// Register wires the handlers. Plan Secret and selector changes are mapped back
// to the inventory they concern.
func Register(ctx context.Context, inventories elementalctl.MachineInventoryController,
	selectors elementalctl.MachineInventorySelectorController, secrets corev1ctl.SecretController,
	k8s kubernetes.Interface, recorder record.EventRecorder, opts Options) {
	h := &handler{
		inventories: inventories,
		selectors:   selectors.Cache(),
		secrets:     secrets,
		k8s:         k8s,
		recorder:    recorder,
		opts:        opts,
		now:         time.Now,
		written:     stale.New(),
		deferred:    stale.NewWindow(transientDelay),
	}
	inventories.OnChange(ctx, "machineinventory", func(key string, mi *elementalv1.MachineInventory) (*elementalv1.MachineInventory, error) {
		out, err := h.OnChange(key, mi)
		if err != nil {
			metrics.ReconcileErrors.WithLabelValues("machineinventory").Inc()
			logrus.WithError(err).WithField("machineinventory", key).Debug("inventory reconcile failed; retrying")
		}
		return out, err
	})
	secrets.OnChange(ctx, "plan-secret-to-machineinventory", func(_ string, s *corev1.Secret) (*corev1.Secret, error) {
		if s != nil && s.Type == elementalv1.PlanSecretType {
			inventories.EnqueueAfter(s.Namespace, s.Name, 0) // not Enqueue: lasso rate-limits that per key (see controllers.go)
		}
		return s, nil
	})
	// Only a changed selector wakes its inventory: the selector controller's
	// inventory-to-selector wakes the selector back (stale.Changes).
	var selectorChanges stale.Changes
	selectors.OnChange(ctx, "selector-to-machineinventory", func(key string, mis *elementalv1.MachineInventorySelector) (*elementalv1.MachineInventorySelector, error) {
		if !selectorChanges.Changed(key, mis) {
			return mis, nil
		}
		if mis != nil && mis.Status.MachineInventoryRef != nil && mis.Status.MachineInventoryRef.Name != "" {
			inventories.EnqueueAfter(mis.Namespace, mis.Status.MachineInventoryRef.Name, 0) // not Enqueue: lasso rate-limits that per key (see controllers.go)
		}
		return mis, nil
	})
}
