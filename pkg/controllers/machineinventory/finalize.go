package machineinventory

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	elementalv1 "github.com/elemental-operator/elemental-operator/pkg/apis/elemental.cattle.io/v1beta1"
	"github.com/elemental-operator/elemental-operator/pkg/credentials"
	"github.com/elemental-operator/elemental-operator/pkg/inventory"
	"github.com/elemental-operator/elemental-operator/pkg/plans"
)

// finalize resets the host when the inventory is resettable (bounded by the
// reset timeout), then deletes everything the inventory owns explicitly
// (no reliance on garbage collection) and removes the finalizer.
func (h *handler) finalize(mi *elementalv1.MachineInventory) (*elementalv1.MachineInventory, error) {
	if !inventory.HasFinalizer(mi) {
		return mi, nil
	}
	secret, err := h.secrets.Cache().Get(mi.Namespace, mi.Name)
	if apierrors.IsNotFound(err) {
		secret, err = nil, nil
	}
	if err != nil {
		return mi, err
	}
	if secret != nil && !plans.OwnedBy(secret, mi) {
		secret = nil // someone else's Secret: never reset through it, never delete it
	}

	if inventory.ResetOnDelete(mi) && secret != nil {
		obs := observation{ownerName: selectorOwner(mi), secret: secret, resetState: resetPending}
		if secret.Annotations[elementalv1.PlanTypeAnnotation] != elementalv1.PlanTypeReset {
			plan, err := h.resetPlan(mi)
			if err != nil {
				return mi, err
			}
			h.log(mi).Info("writing reset plan")
			if obs.secret, err = h.writePlan(secret, plan, elementalv1.PlanTypeReset); err != nil {
				return mi, err
			}
			return h.writeStatus(mi, obs)
		}
		applied := plans.Observe(secret.Data, plans.Checksum(secret.Data[plans.KeyPlan])).State == elementalv1.PlanApplied
		if !applied {
			waited := h.now().Sub(mi.DeletionTimestamp.Time)
			if waited < h.opts.ResetTimeout {
				h.inventories.EnqueueAfter(mi.Namespace, mi.Name, h.opts.ResetTimeout-waited)
				return h.writeStatus(mi, obs)
			}
			h.log(mi).WithField("timeout", h.opts.ResetTimeout).Warn("reset plan not applied in time, deleting anyway")
			obs.resetState = resetTimedOut
			if mi, err = h.writeStatus(mi, obs); err != nil {
				return mi, err
			}
		}
	}

	if err := h.cleanup(mi, secret); err != nil {
		return mi, err
	}
	mi = inventory.WithoutFinalizer(mi)
	h.log(mi).Info("inventory cleaned up")
	h.written.Forget(mi.UID)
	h.deferred.Forget(mi.UID)
	h.tampers.Delete(mi.UID)
	h.rotations.Delete(mi.UID)
	return h.inventories.Update(mi)
}

func (h *handler) resetPlan(mi *elementalv1.MachineInventory) ([]byte, error) {
	if mi.Annotations[elementalv1.OSUnmanagedAnnotation] == "true" {
		return plans.UnmanagedReset(h.now())
	}
	c := mi.Spec.Network.Configurator
	return plans.Reset(c != "" && c != elementalv1.NetworkConfiguratorNone)
}

// cleanup deletes the plan Secret (if ours) and the agent credentials, which
// also revokes the host's token.
func (h *handler) cleanup(mi *elementalv1.MachineInventory, secret *corev1.Secret) error {
	if secret != nil {
		uid := secret.UID
		err := h.secrets.Delete(secret.Namespace, secret.Name, &metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("deleting plan secret: %w", err)
		}
	}
	return credentials.Delete(context.Background(), h.k8s, mi)
}
