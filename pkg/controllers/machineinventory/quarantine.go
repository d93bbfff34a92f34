package machineinventory

import (
	corev1 "k8s.io/api/core/v1"

	elementalv1 "github.com/elemental-operator/elemental-operator/pkg/apis/elemental.cattle.io/v1beta1"
	"github.com/elemental-operator/elemental-operator/pkg/inventory"
	"github.com/elemental-operator/elemental-operator/pkg/metrics"
	"github.com/elemental-operator/elemental-operator/pkg/plans"
)

// quarantine cordons an inventory whose bootstrap plan the agent reports
// failed --quarantine-after times: one metadata write, a Warning Event and
// the metric. The claim is left alone; the selector decides whether to give
// the host up (only while it is not ready: docs/contracts.md, Cluster API).
func (h *handler) quarantine(mi *elementalv1.MachineInventory, secret *corev1.Secret) (*elementalv1.MachineInventory, error) {
	reason, ok := quarantineReason(mi, secret, h.opts.QuarantineAfter)
	if !ok {
		return mi, nil
	}
	updated, err := h.update(inventory.Quarantine(mi, reason))
	if err != nil {
		return mi, err
	}
	h.log(mi).WithField("reason", reason).Warn("inventory quarantined")
	h.recorder.Event(updated, corev1.EventTypeWarning, elementalv1.ReasonInventoryQuarantined, reason)
	metrics.InventoriesQuarantined.Inc()
	return updated, nil
}

// quarantineReason decides, from the plan Secret alone, whether the
// inventory is to be quarantined now, and with which cordon reason: its
// current plan is a bootstrap plan the agent reports failed at least after
// times, and nobody has cordoned it yet (an admin's reason is never
// replaced).
func quarantineReason(mi *elementalv1.MachineInventory, secret *corev1.Secret, after int) (string, bool) {
	if after <= 0 || secret == nil || inventory.Cordoned(mi) || inventory.Deleting(mi) || inventory.Releasing(mi) {
		return "", false
	}
	if secret.Annotations[elementalv1.PlanTypeAnnotation] != elementalv1.PlanTypeBootstrap {
		return "", false
	}
	o := plans.Observe(secret.Data, plans.Checksum(secret.Data[plans.KeyPlan]))
	if o.State != elementalv1.PlanFailed || o.FailureCount < after {
		return "", false
	}
	return inventory.QuarantineReason(o.FailureCount, o.FailureOutput), true
}
