package machineinventory

import (
	"github.com/sirupsen/logrus"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	elementalv1 "github.com/elemental-operator/elemental-operator/pkg/apis/elemental.cattle.io/v1beta1"
	"github.com/elemental-operator/elemental-operator/pkg/conditions"
	"github.com/elemental-operator/elemental-operator/pkg/inventory"
	"github.com/elemental-operator/elemental-operator/pkg/metrics"
	"github.com/elemental-operator/elemental-operator/pkg/plans"
)

func (h *handler) log(mi *elementalv1.MachineInventory) *logrus.Entry {
	return logrus.WithFields(logrus.Fields{"machineinventory": mi.Namespace + "/" + mi.Name})
}

// OnChange drives one inventory. mi comes from the cache: it is copied
// before anything is changed.
func (h *handler) OnChange(_ string, mi *elementalv1.MachineInventory) (*elementalv1.MachineInventory, error) {
	if mi == nil {
		return nil, nil
	}
	if h.written.Stale(mi) {
		return mi, nil // our newer write is on its way through the watch
	}
	if mi.DeletionTimestamp != nil {
		return h.finalize(mi)
	}
	if !inventory.HasFinalizer(mi) {
		return h.update(inventory.WithFinalizer(mi))
	}

	if err := h.rotateCredential(mi); err != nil {
		return mi, err
	}

	obs := observation{ownerName: selectorOwner(mi)}
	if obs.ownerName != "" {
		owner, err := h.selectors.Get(mi.Namespace, obs.ownerName)
		if err == nil {
			obs.owner = owner
		}
	}
	secret, conflict, err := h.planSecret(mi)
	if err != nil {
		return mi, err
	}
	if secret != nil && !conflict {
		if secret, obs.tamper, err = h.guardPlan(mi, secret); err != nil {
			return mi, err
		}
		if obs.tamper != nil {
			h.tampers.Store(mi.UID, obs.tamper)
		} else if t, ok := h.tampers.Load(mi.UID); ok {
			obs.tamper = t.(*tamper) // found on a pass whose status write failed
		}
	}
	obs.secret, obs.secretConflict = secret, conflict

	if inventory.Releasing(mi) && secret != nil {
		var done bool
		if secret, done, err = h.release(mi, secret); err != nil {
			return mi, err
		}
		obs.secret = secret
		if done {
			if mi, err = h.update(inventory.Released(mi)); err != nil {
				return nil, err
			}
		}
	}
	if mi, err = h.quarantine(mi, obs.secret); err != nil {
		return mi, err
	}
	out, err := h.writeStatus(mi, obs)
	if err == nil && obs.tamper != nil {
		h.tampers.Delete(mi.UID)
	}
	return out, err
}

// planSecret returns the inventory's plan Secret, creating it with the empty
// plan when missing. conflict is true when the name is taken by a Secret that
// is not ours; it is then never touched.
func (h *handler) planSecret(mi *elementalv1.MachineInventory) (*corev1.Secret, bool, error) {
	// The Secret cache only holds managed Secrets (see controllers.go).
	secret, err := h.secrets.Cache().Get(mi.Namespace, mi.Name)
	if err == nil {
		return secret, !plans.OwnedBy(secret, mi), nil
	}
	if !apierrors.IsNotFound(err) {
		return nil, false, err
	}
	return h.newPlanSecret(mi) // with the agent's access first (credentials.go)
}

// writePlan patches data.plan and the plan.type annotation, nothing else.
func (h *handler) writePlan(secret *corev1.Secret, plan []byte, planType string) (*corev1.Secret, error) {
	return h.secrets.Patch(secret.Namespace, secret.Name, types.MergePatchType, plans.Patch(plan, planType))
}

// release runs the cleanup plan after a bootstrap, then the empty plan
// (docs/contracts.md, Plan Secret). done means the inventory is back to the empty plan.
func (h *handler) release(mi *elementalv1.MachineInventory, secret *corev1.Secret) (*corev1.Secret, bool, error) {
	planType := secret.Annotations[elementalv1.PlanTypeAnnotation]
	current := plans.Checksum(secret.Data[plans.KeyPlan])
	switch planType {
	case elementalv1.PlanTypeBootstrap:
		plan, err := plans.Release()
		if err != nil {
			return secret, false, err
		}
		h.log(mi).Info("writing release plan")
		secret, err = h.writePlan(secret, plan, elementalv1.PlanTypeRelease)
		return secret, false, err
	case elementalv1.PlanTypeRelease:
		if plans.Observe(secret.Data, current).State != elementalv1.PlanApplied {
			return secret, false, nil // the agent retries a failing release every 30s
		}
		h.log(mi).Info("release applied, writing the empty plan")
		secret, err := h.writePlan(secret, plans.Empty, elementalv1.PlanTypeEmpty)
		return secret, err == nil, err
	default:
		// Nothing was ever bootstrapped: nothing to clean up.
		return secret, true, nil
	}
}

// writeStatus is the one place MachineInventory status is written, and only
// when it changed. Transitions of Ready and PlanReady become Events.
func (h *handler) writeStatus(mi *elementalv1.MachineInventory, obs observation) (*elementalv1.MachineInventory, error) {
	status := buildStatus(mi, obs)
	if apiequality.Semantic.DeepEqual(mi.Status, status) {
		return mi, nil
	}
	if h.deferTransient(mi, obs, status) {
		return mi, nil
	}
	countPlan(mi.Status.Plan, status.Plan)
	h.recordTransitions(mi, mi.Status.Conditions, status.Conditions)
	updated := mi.DeepCopy()
	updated.Status = status
	updated, err := h.inventories.UpdateStatus(updated)
	if err == nil {
		h.written.Wrote(mi)
	}
	return updated, err
}

// update writes metadata/spec changes of a copy, remembering what it replaced.
func (h *handler) update(mi *elementalv1.MachineInventory) (*elementalv1.MachineInventory, error) {
	updated, err := h.inventories.Update(mi)
	if err == nil {
		h.written.Wrote(mi)
	}
	return updated, err
}

// countPlan counts a plan outcome once: when the verdict on the current
// checksum is new (deferred in-progress writes may skip condition changes).
func countPlan(before, after *elementalv1.PlanStatus) {
	if after == nil || after.State == "" {
		return
	}
	if before != nil && before.Checksum == after.Checksum && before.State == after.State {
		return
	}
	result := "applied"
	if after.State == elementalv1.PlanFailed {
		result = "failed"
	}
	metrics.Plans.WithLabelValues(after.Type, result).Inc()
}

func (h *handler) recordTransitions(mi *elementalv1.MachineInventory, before, after []metav1.Condition) {
	if !conditions.Changed(before, after, elementalv1.ConditionReady) {
		return
	}
	c := meta.FindStatusCondition(after, elementalv1.ConditionReady)
	switch c.Reason {
	case elementalv1.ReasonPlanFailure:
		h.recorder.Event(mi, corev1.EventTypeWarning, "PlanFailed", c.Message)
	case elementalv1.ReasonReleaseFailed:
		h.recorder.Event(mi, corev1.EventTypeWarning, "ReleaseFailed", c.Message)
	case elementalv1.ReasonResetTimedOut:
		h.recorder.Event(mi, corev1.EventTypeWarning, "ResetTimedOut", c.Message)
	case elementalv1.ReasonPlanCreationFailure:
		h.recorder.Event(mi, corev1.EventTypeWarning, "PlanCreationFailed", c.Message)
	}
}
